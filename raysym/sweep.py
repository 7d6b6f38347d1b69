"""``raysym sweep``: a grid (or an Optuna search) of training trials on Ray Tune, tracked in MLflow.

Stages, in order:
1. plan: expand the sweep YAML into trials (data grid x prune k x trial grid, duplicates removed);
2. data: make or reuse the shards each data point needs (Ray Data), in folders named by a hash of the
   simulation parameters, so two sweeps that need the same data share it;
3. tune: one Tune trial per point (or per Optuna sample) running ``raysym.train.run_trial``; each epoch
   is reported to Tune with a checkpoint, so a crashed trial is retried from its last epoch and an
   interrupted sweep resumes (``Tuner.restore``);
4. track: a driver-side Tune callback mirrors every trial into an MLflow child run of the sweep's parent
   run (params = the swept settings, tags = the rest, per-epoch metrics, artifacts at the end);
5. report: a table of every trial's test MAE, R², and sparsity, also written as CSV.

Trials never talk to MLflow themselves: only the driver does, so a cluster's workers need no route to
the tracking server and a local sqlite database has a single writer.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from raysym import track
from raysym.sweep_tracking import Distiller, distill_summaries, law_lines, tracking_callback, verdict_of
from raysym.config import HaloConfig, SimulationConfig, SweepConfig, TrainConfig, from_dict
from raysym.errors import UserError

RESULTS_CSV = "sweep_results.csv"
# Fault injection for the retry test: "EPOCH:MARKER" makes each trial crash once after that epoch
# (the marker file records that it did). Read on the driver and handed to trials in their config.
INJECT_ENV = "RAYSYM_INJECT_CRASH"


# --------------------------------------------------------------------------------------------------
# 1. Plan
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrialSpec:
    """One point of the sweep: which data, how much pruning, how to train; JSON-able for Tune."""

    key: str  # t000, t001, ... in grid order
    data: dict[str, Any]  # SimulationConfig keywords
    data_dir: str
    prune_k: float | None
    train: dict[str, Any]  # TrainConfig keywords without data and prune_k
    params: dict[str, Any]  # the swept settings of this trial (MLflow params)
    kind: str = "nbody"  # or "halos": a node-level GN on a halo catalog (data: the graph, train: the rest)

    def label(self) -> str:
        t = self.train
        if self.kind == "halos":
            catalog = self.data["catalog"]
            name = catalog if catalog == "synthetic" else Path(catalog).stem
            return f"halos-{name} r={self.data['radius']:g} l1={t['l1']:g}"
        model = model_label(t)
        return f"{self.data['system']}-{self.data.get('dim', 2)}d {model} k={self.prune_k}"

    def epochs(self) -> int:
        return self.train.get("epochs", HaloConfig.epochs if self.kind == "halos" else TrainConfig.epochs)


def _penalty(train: dict[str, Any]) -> str:
    """The message penalty of a trial's settings (TrainConfig.regularizer)."""
    return TrainConfig(model=train.get("model", TrainConfig.model),
                       newtonian_messages=train.get("newtonian_messages", TrainConfig.newtonian_messages)).regularizer


def model_label(train: dict[str, Any], with_penalty: bool = True) -> str:
    """A trial's model as tables show it: bottleneck, l1-linear, kl-gaussian, newtonian, newtonian-l1-linear,
    ...; ``with_penalty`` False leaves out the L1 schedule and the KL prior (a table with its own column)."""
    model = train.get("model", TrainConfig.model)
    if model == "newtonian" and train.get("newtonian_messages", TrainConfig.newtonian_messages) != "bottleneck":
        model += "-" + train["newtonian_messages"]
    penalty = _penalty(train)
    if with_penalty and penalty == "l1":
        model += "-" + train.get("l1_schedule", TrainConfig.l1_schedule)
    elif with_penalty and penalty == "kl":
        model += "-" + train.get("kl_prior", TrainConfig.kl_prior)
    return model


def dataset_dir(root: str, sim: SimulationConfig) -> str:
    """Content-addressed shard folder: the same simulation parameters always map to the same folder."""
    digest = hashlib.sha256(json.dumps(sim.data_params(), sort_keys=True).encode()).hexdigest()[:10]
    return str(Path(root) / f"{sim.system}-{sim.dim}d-{digest}")


# The HaloConfig keys that define a halo trial's graph (its "data"); the others are training settings.
HALO_GRAPH_KEYS = ("catalog", "target", "box", "radius", "points")


def plan(cfg: SweepConfig) -> list[TrialSpec]:
    swept = cfg.swept_keys()
    specs = []
    if cfg.halos:
        for point in cfg.halo_points():
            fields = dataclasses.asdict(point)
            params = {key: fields[key] for key in swept}  # as the YAML wrote them
            if point.catalog != "synthetic":  # trials run in their own folders: a relative path would break
                fields["catalog"] = str(Path(point.catalog).expanduser().resolve())
            data = {k: fields[k] for k in HALO_GRAPH_KEYS}
            train = {k: v for k, v in fields.items() if k not in HALO_GRAPH_KEYS}
            specs.append(TrialSpec(f"t{len(specs):03d}", data, data["catalog"], None, train, params, kind="halos"))
        return specs
    root = str(Path(cfg.data_root).expanduser().resolve())
    for sim in cfg.data_points():
        sim_fields = {f.name: getattr(sim, f.name) for f in dataclasses.fields(sim)}
        for k in cfg.prune_ks:
            for train in cfg.trial_points():
                values = {**sim_fields, "prune_k": k, **train}
                params = {key: values[key] for key in swept if key in values}
                specs.append(TrialSpec(f"t{len(specs):03d}", sim_fields, dataset_dir(root, sim), k, train, params))
    return specs


def describe_plan(cfg: SweepConfig, specs: list[TrialSpec]) -> str:
    r = cfg.resources
    lines = [f"sweep '{cfg.name}': {len(specs)} trial point(s)"]
    if cfg.search.kind == "optuna":
        space = ", ".join(f"{k} in [{v.low:g}, {v.high:g}]{' (log)' if v.log else ''}" for k, v in cfg.search.space.items())
        lines.append(f"optuna ({cfg.search.sampler}, seed {cfg.search.seed}): {cfg.search.trials} trials per point over {space}; "
                     f"objective {cfg.search.mode} {cfg.search.metric}; study '{cfg.search.study or cfg.name}' in {cfg.search.storage}")
    for s in specs:
        epochs = s.train.get("epochs", TrainConfig.epochs)
        lines.append(f"  {s.key}  {s.label():<40} epochs={epochs}  {json.dumps(s.params) if s.params else ''}")
    datasets = sorted({s.data_dir for s in specs})
    lines.append(f"{'catalogs' if cfg.halos else 'datasets'} ({len(datasets)}): " + ", ".join(datasets))
    concurrent = r.max_concurrent_trials or "as many as fit"
    lines.append(
        f"resources per trial: {r.cpus_per_trial:g} CPU, {r.gpus_per_trial:g} GPU; concurrent trials: {concurrent}; "
        f"retries after a crash: {r.retries}; scheduler: {cfg.scheduler.kind}"
    )
    d = cfg.distill
    lines.append(
        f"distillation: {d.backend} backend ({d.setting}), {d.samples} samples per job, {r.distill_workers} actor(s)"
        + (f" with {r.distill_resources}" if r.distill_resources else "") if d else "distillation: off (add a distill section)"
    )
    lines.append(f"tracking: {cfg.tracking.uri} (experiment '{cfg.tracking.experiment}'); Tune results: {experiment_path(cfg)}")
    return "\n".join(lines)


def trial_memory(spec: TrialSpec) -> tuple[int, int]:
    """(bytes of graphs a trial holds in memory, bytes of edge activations of its largest batch): a
    rough upper estimate, enough to refuse sizes that cannot fit, not to plan a cluster."""
    from raysym.shards import row_bytes
    from raysym.simulate import bytes_per_sim

    sim = from_dict(SimulationConfig, spec.data, where="data")
    cfg = train_config(dataclasses.asdict(spec), {})
    per_sim = sim.snapshots_per_sim
    train = sim.sims * per_sim if cfg.max_train_graphs is None else min(sim.sims * per_sim, cfg.max_train_graphs)
    test = sim.resolved_test_sims * per_sim if cfg.max_test_graphs is None else min(sim.resolved_test_sims * per_sim, cfg.max_test_graphs)
    graphs = 2 * (train + test) * row_bytes(sim.particles, sim.dim)  # Arrow arrays, then torch tensors
    edges = sim.particles * (sim.particles - 1)
    wide = cfg.model == "wide"  # five hidden layers, up to 600 units (raysym.model.WIDE_LAYERS)
    width, layers = max(cfg.hidden, cfg.msg_dim, 600 if wide else 0), 5 if wide else cfg.layers
    # training: every layer's activations kept for the backward pass, and their gradients; evaluation
    # runs 4,096 graphs at a time without gradients
    activations = max(cfg.batch_size * edges * width * 4 * (layers + 1) * 2, 4096 * edges * width * 4 * 2)
    return graphs + bytes_per_sim(sim), activations


def check_memory(specs: list[TrialSpec], memory: int | None = None) -> None:
    """Refuse a sweep whose trials cannot fit in this machine's memory (before any data is made)."""
    memory = memory or os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for spec in specs:
        if spec.kind == "halos":  # the graph's size is known only once the catalog is read (prepare_data)
            continue
        graphs, activations = trial_memory(spec)
        if graphs + activations > memory:
            raise UserError(
                f"Trial {spec.key} ({spec.label()}) would need about {(graphs + activations) / 2**30:,.1f} GiB of memory "
                f"({graphs / 2**30:,.1f} GiB of graphs, {activations / 2**30:,.1f} GiB of edge activations per batch), more "
                f"than this machine's {memory / 2**30:,.0f} GiB. Lower data.sims, data.steps or data.particles, raise "
                "data.stride, set trials.max_train_graphs, or lower trials.batch_size."
            )


def experiment_path(cfg: SweepConfig) -> str:
    storage = cfg.storage if "://" in cfg.storage else str(Path(cfg.storage).expanduser().resolve())
    return f"{storage.rstrip('/')}/{cfg.name}"


# --------------------------------------------------------------------------------------------------
# 2. Data
# --------------------------------------------------------------------------------------------------

def prepare_data(specs: list[TrialSpec], say: Callable[[str], None], address: str | None = None) -> None:
    from raysym import shards

    done = set()
    for s in specs:
        if s.kind == "halos":  # read (or make) each catalog now, so a bad file stops the sweep before Tune
            from raysym.halos import build_graph, check_memory

            seed = s.train["seed"] if s.data["catalog"] == "synthetic" else None  # a synthetic catalog is made from it
            graph_key = json.dumps([s.data, s.train["hidden"], seed], sort_keys=True)
            if graph_key in done:  # the same graph (and model width) as an earlier point
                continue
            done.add(graph_key)
            cfg = halo_config(dataclasses.asdict(s))
            graph = build_graph(cfg)
            if address is None:  # on a cluster the trials run on other machines
                check_memory(graph, cfg)
            say(f"catalog {s.data_dir}: {len(graph.catalog):,} points, {len(graph.senders):,} edges within radius {s.data['radius']:g}")
            continue
        if s.data_dir in done:
            continue
        done.add(s.data_dir)
        sim = from_dict(SimulationConfig, s.data, where="data")
        result = shards.write_dataset(sim, s.data_dir, address=address)
        how = "reused" if result.reused else f"written in {result.seconds:.1f} s"
        say(f"data {s.data_dir}: {shards.describe(result.manifest).splitlines()[0]} ({how})")


# --------------------------------------------------------------------------------------------------
# 3. The Tune trainable
# --------------------------------------------------------------------------------------------------

def train_config(spec: dict[str, Any], config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a trial: its spec's settings plus any Optuna-sampled shape values in the Tune
    trial ``config``."""
    train = dict(spec["train"])
    sampled = {k.split(".", 1)[1]: v for k, v in config.items() if k.startswith("schedule_shape.")}
    if sampled:
        train["schedule_shape"] = {**train.get("schedule_shape", {}), **sampled}
    return from_dict(TrainConfig, {**train, "data": spec["data_dir"], "prune_k": spec["prune_k"]}, where="trial")


def halo_config(spec: dict[str, Any]) -> HaloConfig:
    """The HaloConfig of a halo trial's spec."""
    return from_dict(HaloConfig, {**spec["data"], **spec["train"]}, where="trial")


def trial_settings(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A trial's resolved training settings (TrainConfig or HaloConfig fields) as a dict, for MLflow."""
    if spec.get("kind") == "halos":
        return {k: v for k, v in dataclasses.asdict(halo_config(spec)).items() if k not in HALO_GRAPH_KEYS}
    return dataclasses.asdict(train_config(spec, config))


def trainable(config: dict[str, Any], specs: dict[str, dict[str, Any]]) -> None:
    """Ray Tune function trainable: restore the last checkpoint if any, train, report every epoch.

    ``config["key"]`` names the trial's spec in ``specs`` (bound with ``tune.with_parameters``, so Tune's
    progress table shows the short key instead of the whole spec).
    """
    from ray import tune

    from raysym.halos import run_halo_trial
    from raysym.train import CHECKPOINT, run_trial

    spec = specs[config["key"]]
    if spec["kind"] == "halos":
        cfg, run = halo_config(spec), run_halo_trial
    else:
        cfg, run = train_config(spec, config), run_trial
    work = Path(tune.get_context().get_trial_dir()) / "work"
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after a crash, or a resumed sweep
        with checkpoint.as_directory() as folder:
            shutil.copy(Path(folder) / CHECKPOINT, work / CHECKPOINT)
    inject = config.get("inject_crash")

    def report(metrics: dict[str, float]) -> None:
        epoch = int(metrics["epoch"]) + 1
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(work / CHECKPOINT, Path(tmp) / CHECKPOINT)
            tune.report({**metrics, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(tmp))
        if inject and epoch == inject["epoch"] and not os.path.exists(inject["marker"]):
            Path(inject["marker"]).write_text(tune.get_context().get_trial_id())
            raise RuntimeError(f"fault injected by {INJECT_ENV} after epoch {epoch}")

    metrics = run(cfg, work, callback=report, resume=True)
    # The final report carries the message analysis and every file of the trial as its checkpoint.
    final = {k: v for k, v in metrics.items() if not isinstance(v, list)}
    for key in ("messages/top_std", "messages/stds_top15"):  # lists: MLflow tags
        final[key] = metrics.get(key)
    tune.report({**final, "epoch": cfg.epochs, "done_training": True}, checkpoint=tune.Checkpoint.from_directory(work))


# --------------------------------------------------------------------------------------------------
# 5. Running the sweep
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SweepOutcome:
    rows: list[dict[str, Any]]
    experiment_path: str
    parent_run_id: str | None
    table: str
    interrupted: bool = False


def _check_cluster(cfg: SweepConfig) -> None:
    """Refuse trials that ask for more CPUs or GPUs than any node of the cluster has."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    r = cfg.resources
    if r.gpus_per_trial > most_gpus:
        raise UserError(
            f"Each trial asks for {r.gpus_per_trial:g} GPU(s) (resources.gpus_per_trial) but no node of this "
            f"Ray cluster has more than {most_gpus:g}. Lower gpus_per_trial (0 trains on CPU, 0.25 packs four "
            "trials on a GPU), or run on a cluster with GPU workers (`ray up cluster.yaml`, then --address auto)."
        )
    if r.cpus_per_trial > most_cpus:
        raise UserError(
            f"Each trial asks for {r.cpus_per_trial:g} CPUs (resources.cpus_per_trial) but no node of this Ray "
            f"cluster has more than {most_cpus:g}. Lower cpus_per_trial."
        )


def _find_parent(tracker: track.MLflowTracker, name: str) -> str | None:
    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`{track.SWEEP_TAG}` = '{name}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _search_alg(cfg: SweepConfig):
    import optuna

    from raysym._optuna import EndOfTrialOptunaSearch

    s = cfg.search
    sampler = optuna.samplers.TPESampler(seed=s.seed) if s.sampler == "tpe" else optuna.samplers.RandomSampler(seed=s.seed)
    storage = optuna.storages.RDBStorage(s.storage)
    return EndOfTrialOptunaSearch(metric=s.metric, mode=s.mode, sampler=sampler, study_name=s.study or cfg.name, storage=storage)


def _param_space(cfg: SweepConfig, specs: list[TrialSpec]) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    if cfg.search.kind == "grid":
        space["key"] = tune.grid_search([s.key for s in specs])
    else:
        if len(specs) != 1:
            raise UserError(
                f"An Optuna search explores the schedule shape of one trial setting, but this sweep's grid "
                f"has {len(specs)} points. Give single values in data and trials (model: l1), or use search.kind: grid."
            )
        space["key"] = specs[0].key
        for key, rng in cfg.search.space.items():
            space[key] = tune.loguniform(rng.low, rng.high) if rng.log else tune.uniform(rng.low, rng.high)
    injected = os.environ.get(INJECT_ENV)
    if injected:
        epoch, marker = injected.split(":", 1)
        space["inject_crash"] = {"epoch": int(epoch), "marker": marker}
    return space


def run_sweep(
    cfg: SweepConfig,
    *,
    address: str | None = None,
    resume: bool = False,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
    verbose: int = 1,
) -> SweepOutcome:
    """Plan, make the data, run every trial on Ray Tune and track them in MLflow; see the module doc."""
    specs = plan(cfg)
    path = experiment_path(cfg)
    if address is None:  # on a cluster the trials run on other machines
        check_memory(specs)
    if dry_run:
        text = describe_plan(cfg, specs)
        say(text)
        return SweepOutcome([], path, None, text)

    from ray import tune

    from raysym._ray import ensure_ray

    track.check_reachable(cfg.tracking.uri)
    local = "://" not in path
    if local and resume and not tune.Tuner.can_restore(path):
        raise UserError(f"There is no interrupted sweep '{cfg.name}' to resume in {path}. Run without --resume to start it.")
    if local and not resume and Path(path).exists():
        raise UserError(
            f"A sweep named '{cfg.name}' already exists in {path}. Continue it with --resume, or give this "
            "sweep another name (the YAML's name key), or delete that folder to start over."
        )
    ensure_ray(address)
    _check_cluster(cfg)
    say(describe_plan(cfg, specs))
    prepare_data(specs, say, address)

    tracker = track.MLflowTracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.patience_s)
    parent_id = _find_parent(tracker, cfg.name) if resume else None
    if parent_id is None:
        parent_id = tracker.start_sweep(cfg.name, {"raysym.trials": str(len(specs)), "raysym.search": cfg.search.kind})
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "sweep.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
            tracker.log_artifacts(parent_id, tmp)
    else:
        tracker.client.update_run(parent_id, status="RUNNING")
    distiller = Distiller(cfg, tracker, Path(path) / "distill") if cfg.distill is not None and "://" not in path else None
    callback = tracking_callback(tracker, parent_id, {s.key: s for s in specs}, cfg.swept_keys(), distiller)

    # Per-epoch results cannot carry the search metric (the message R² exists only once training ends);
    # Tune's strict check would fail them. A trial stopped before the end counts as pruned in Optuna.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Checkpoints every epoch are the point (retries resume from them); Tune's warning about the
    # experiment snapshots they trigger is noise for trials of this size.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if local:
        # Save the experiment state after every step (Tune's "auto" default spaces the saves out), so that
        # a driver killed outright (SIGKILL, a lost head node) resumes without re-running finished trials.
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    r = cfg.resources
    fn = tune.with_resources(
        tune.with_parameters(trainable, specs={s.key: dataclasses.asdict(s) for s in specs}),
        {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial},
    )
    if resume:
        tuner = tune.Tuner.restore(path, fn, resume_unfinished=True, resume_errored=True)
    else:
        scheduler = None
        if cfg.scheduler.kind == "asha":
            from ray.tune.schedulers import ASHAScheduler

            # Time is the epoch each result reports (halo trials report every report_every epochs), so
            # grace_period counts epochs for both kinds. max_t lies past the last epoch: ASHA stops any
            # trial that reaches max_t, and the final result (the message analysis) repeats the last epoch.
            scheduler = ASHAScheduler(
                metric="test/mae", mode="min",  # per epoch; the search's own metric comes at the end
                time_attr="epoch", max_t=max(s.epochs() for s in specs) + 1,
                grace_period=cfg.scheduler.grace_period, reduction_factor=cfg.scheduler.reduction_factor,
            )
        optuna = cfg.search.kind == "optuna"
        tuner = tune.Tuner(
            fn,
            param_space=_param_space(cfg, specs),
            tune_config=tune.TuneConfig(
                search_alg=_search_alg(cfg) if optuna else None,
                scheduler=scheduler,
                num_samples=cfg.search.trials if optuna else 1,
                max_concurrent_trials=r.max_concurrent_trials,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=cfg.name,
                storage_path=path.rsplit("/", 1)[0],
                failure_config=tune.FailureConfig(max_failures=r.retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[callback],
                verbose=verbose,
            ),
        )
    try:
        grid = tuner.fit()  # the callback waits for the last distillations before this returns
    except Exception as exc:  # noqa: BLE001 -- Tune wraps what its callbacks raise
        cause = _cause(exc, track.TrackingUnavailable)
        if cause is None:
            raise
        raise cause from None
    summaries = distill_summaries(Path(path) / "distill") if cfg.distill is not None else {}
    by_key = {s.key: s for s in specs}
    unfinished = _unfinished_trials(path)  # left PENDING by an interruption (Ctrl-C, SIGTERM)
    rows = [_row(result, by_key, interrupted=unfinished) for result in grid]
    for row in rows:
        if cfg.distill is not None:
            summary = summaries.get(row.get("trial_id"))
            row["law"] = verdict_of(summary) if summary else "-"
    table = results_table(rows)
    if summaries:
        table += "\n\n" + laws_text(rows, summaries)
    say(table)
    _write_csv(rows, path)
    if unfinished:
        for trial_id in unfinished:  # their MLflow runs continue on --resume
            run_id = tracker.find_trial(trial_id)
            if run_id is not None:
                tracker.end_run(run_id, "KILLED")
        tracker.end_run(parent_id, "KILLED")
        say(f"Interrupted with {len(unfinished)} trial(s) unfinished; their progress is saved. Continue with --resume.")
        return SweepOutcome(rows, path, parent_id, table, interrupted=True)
    failed = sum(row["status"] != "finished" for row in rows)
    tracker.set_tags(parent_id, {"raysym.failed_trials": failed})
    tracker.end_run(parent_id, "FINISHED")
    return SweepOutcome(rows, path, parent_id, table)


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of type ``kind`` in ``exc``'s chain of causes, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _unfinished_trials(path: str) -> set[str]:
    """Ids of the trials an interrupted Tune run saved as not yet done."""
    from ray.tune import ExperimentAnalysis

    try:
        analysis = ExperimentAnalysis(path)
    except Exception:  # no saved state (e.g. remote storage not readable here): nothing to report
        return set()
    return {t.trial_id for t in analysis.trials if t.status in ("PENDING", "RUNNING", "PAUSED")}


def _trial_name(trial) -> str:
    return f"{trial.config.get('key', 'trial')}_{trial.trial_id}"


def _row(result, specs: dict[str, TrialSpec], interrupted: set[str] = frozenset()) -> dict[str, Any]:
    config = result.config or {}
    spec = dataclasses.asdict(specs[config["key"]]) if config.get("key") in specs else {}
    m = result.metrics or {}
    status = m.get("status") or ("crashed" if result.error else "stopped")
    if m.get("trial_id") in interrupted:
        status = "interrupted"
    elif result.error is None and not m.get("done_training"):
        status = "stopped early"  # by the ASHA scheduler
    sampled = {k.split(".", 1)[1]: round(v, 4) for k, v in config.items() if k.startswith("schedule_shape.")}
    train = spec.get("train", {})
    model = model_label(train, with_penalty=False)
    schedule = train.get("l1_schedule", TrainConfig.l1_schedule) if _penalty(train) == "l1" else "-"
    if sampled:
        schedule = "shape " + json.dumps(sampled)
    data = spec.get("data", {})
    system = f"{data.get('system')}-{data.get('dim')}d"
    if spec.get("kind") == "halos":
        system, model, schedule = "halos-" + Path(data["catalog"]).stem, "nodegn", f"l1={train['l1']:g}"
    return {
        "trial": spec.get("key", "?") + (f"-{m.get('trial_id', '')}" if sampled else ""),
        "system": system,
        "dim": data.get("dim"),
        "model": model,
        "schedule": schedule,
        "prune_k": spec.get("prune_k"),
        "status": status,
        "epochs": m.get("epochs_done", m.get("epoch")),
        "test_mae": m.get("test/mae"),
        "r2_force": m.get("messages/r2_force"),
        "r2_force_all": m.get("messages/r2_force_all"),
        "r2_accel": m.get("messages/r2_accel"),
        "sparse": m.get("messages/sparse"),
        "r2_edge": m.get("messages/r2_vs_true_edge"),
        "reason": m.get("reason") or (str(result.error).splitlines()[0] if result.error else ""),
        "trial_id": m.get("trial_id"),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else str(value)
    return "-" if value is None else str(value)


def results_table(rows: list[dict[str, Any]]) -> str:
    # r2_force and r2_accel: in distribution (test graphs inside the training range); r2_force_all: every test edge
    cols = ["trial", "system", "model", "schedule", "prune_k", "status", "epochs", "test_mae", "r2_force", "r2_force_all", "r2_accel", "sparse"]
    if any(r.get("r2_edge") is not None for r in rows):  # halo trials: R² of the messages vs the true edge term
        cols = [c for c in cols if c not in ("prune_k", "r2_force", "r2_force_all", "r2_accel", "sparse")] + ["r2_edge"]
    if any("law" in r for r in rows):
        cols.append("law")  # the distillation verdict: force, force/mass, none
    cells = [[_fmt(r[c]) for c in cols] for r in sorted(rows, key=lambda r: r["trial"])]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(row) for row in cells)])


def laws_text(rows: list[dict[str, Any]], summaries: dict[str, dict[str, Any]]) -> str:
    """The distilled laws of the rows' trials, recovered ones first."""
    lines = ["Laws: a distilled edge formula counts as recovered when, on unseen test graphs inside the training range, "
             "it is a linear transformation of the true force (or force / receiver mass) with R² >= 0.99."]
    distilled = [r for r in rows if r.get("trial_id") in summaries]
    distilled.sort(key=lambda r: (not summaries[r["trial_id"]].get("distill/recovered"), r["trial"]))
    for r in distilled:
        body = law_lines(summaries[r["trial_id"]], r.get("dim") or 3)
        lines += [f"{r['trial']} {r['system']} {r['model']}: {body[0]}", *body[1:]]
    return "\n".join(lines)


def _write_csv(rows: list[dict[str, Any]], path: str) -> None:
    if "://" in path or not rows:
        return
    out = Path(path) / RESULTS_CSV
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out)
