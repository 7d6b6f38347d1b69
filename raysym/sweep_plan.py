"""Planning a sweep, without Ray: the sweep YAML expanded into trial specs, their description for
``--dry-run``, the checks that need no cluster (memory, resources), and the plan's fingerprint that
``--resume`` compares so that a resumed sweep is the same sweep.

The sweep (raysym.sweep), its tracking callback and the report import this module; it imports no Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from raysym import trial_kind
from raysym.config import SimulationConfig, SweepConfig, TrainConfig, from_dict
from raysym.errors import UserError
from raysym.outputs import differences
from raysym.strict import did_you_mean
from raysym.trial_folder import write_text
from raysym.trial_kind import TrialSpec  # noqa: F401 -- a sweep's plan is a list of them; callers import it here

# --------------------------------------------------------------------------------------------------
# 1. Plan
# --------------------------------------------------------------------------------------------------


def _penalty(train: dict[str, Any]) -> str:
    """The message penalty of a trial's settings (TrainConfig.regularizer)."""
    return TrainConfig(
        model=train.get("model", TrainConfig.model),
        newtonian_messages=train.get("newtonian_messages", TrainConfig.newtonian_messages),
    ).regularizer


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


def plan(cfg: SweepConfig) -> list[TrialSpec]:
    """The sweep's trial points, as its trial kind expands the YAML (raysym.trial_kind)."""
    return trial_kind.get(cfg.trial_kind).plan(cfg)


def parse_only(items: list[str]) -> dict[str, list[str]]:
    """``--only`` arguments (``system=spring,charge``, ``dim=2``) as setting -> accepted values."""
    only: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise UserError(
                f"--only {item!r} is not SETTING=VALUE[,VALUE...]. Write it like --only system=spring,charge "
                "(repeat --only to narrow by several settings)."
            )
        only.setdefault(name.strip(), []).extend(v.strip() for v in values.split(",") if v.strip())
    return only


def slice_name(name: str, only: dict[str, list[str]]) -> str:
    """The name a slice of sweep ``name`` runs under (its Tune folder, its MLflow parent run), so that slices
    of one YAML sit side by side: cpu_table + {system: [spring, charge], dim: [2]} -> cpu_table.dim-2.system-
    charge-spring, whatever the order of the filters (``raysym report YAML --only ...`` finds it the same way)."""
    if not only:
        return name
    parts = [name] + [f"{key}-{'-'.join(sorted(set(values)))}" for key, values in sorted(only.items())]
    return ".".join(part.replace("/", "-").replace(" ", "-") for part in parts)[:100]


def select(specs: list[TrialSpec], only: dict[str, list[str]]) -> list[TrialSpec]:
    """The trial points whose swept settings take one of the given values (every setting must match).

    Trial keys keep their place in the full grid (t013 stays t013), so slices of one YAML run on different
    days fill one table without clashing. Settings are the swept ones that ``--dry-run`` prints per trial."""
    if not only:
        return specs
    swept = sorted({name for s in specs for name in s.params})
    for name, values in only.items():
        if name not in swept:
            raise UserError(
                f"--only {name}=...: '{name}' is not a setting this sweep varies.{did_you_mean(name, swept)} "
                "--dry-run lists each trial's swept settings."
            )
        taken = sorted({_text(s.params[name]) for s in specs if name in s.params})
        unknown = [v for v in values if v not in taken]
        if unknown:
            raise UserError(
                f"--only {name}={','.join(values)}: the sweep has no trial with {name} = {', '.join(unknown)}. "
                f"Its values of {name} are: {', '.join(taken)}."
            )
    kept = [s for s in specs if all(_text(s.params.get(n)) in vs for n, vs in only.items())]
    if not kept:
        raise UserError(
            "--only: no trial of this sweep matches every filter given ("
            + "; ".join(f"{n} in {', '.join(vs)}" for n, vs in only.items())
            + "). Loosen one of them; --dry-run lists the trials and their settings."
        )
    return kept


def launch_order(specs: list[TrialSpec]) -> list[TrialSpec]:
    """The order Tune gets a grid's points in: longest (most epochs) first, ties in grid order.

    Tune starts grid points in list order as CPUs free up, so a long trial late in the grid would start last
    and run alone on an otherwise idle machine; longest first (the longest-processing-time rule) shortens the
    sweep. Keys, and so every table, are unchanged."""
    return sorted(specs, key=lambda s: -s.epochs())


def _text(value: Any) -> str:
    """A swept value as it is written on the command line (2, 0.001, spring, l1)."""
    return json.dumps(value) if not isinstance(value, str) else value


def describe_plan(cfg: SweepConfig, specs: list[TrialSpec]) -> str:
    r = cfg.resources
    lines = [f"sweep '{cfg.name}': {len(specs)} trial point(s)"]
    if cfg.search.kind == "optuna":
        space = ", ".join(
            f"{k} in [{v.low:g}, {v.high:g}]{' (log)' if v.log else ''}" for k, v in cfg.search.space.items()
        )
        lines.append(
            f"optuna ({cfg.search.sampler}, seed {cfg.search.seed}): {cfg.search.trials} trials per point over "
            f"{space}; "
            f"objective {cfg.search.mode} {cfg.search.metric}; study '{cfg.search.study or cfg.name}' in "
            f"{cfg.search.storage}"
        )
    for s in specs:
        lines.append(f"  {s.key}  {s.label():<40} epochs={s.epochs()}  {json.dumps(s.params) if s.params else ''}")
    datasets = sorted({s.data_dir for s in specs})
    noun = trial_kind.get(cfg.trial_kind).data_noun
    lines.append(f"{noun} ({len(datasets)}): " + ", ".join(datasets))
    concurrent = r.max_concurrent_trials or "as many as fit"
    lines.append(
        f"resources per trial: {r.cpus_per_trial:g} CPU, {r.gpus_per_trial:g} GPU; concurrent trials: {concurrent}; "
        f"retries after a crash: {r.retries}; scheduler: {cfg.scheduler.kind}"
    )
    d = cfg.distill
    lines.append(
        f"distillation: {d.backend} backend ({d.setting}), {d.samples} samples per job, {r.distill_workers} actor(s)"
        + (f" with {r.distill_resources}" if r.distill_resources else "")
        if d
        else "distillation: off (add a distill section)"
    )
    if cfg.rollout is not None:
        o = cfg.rollout
        lines.append(
            f"rollout of each distilled trial: {', '.join(o.all_regimes())}; {o.sims} fresh systems per regime, "
            f"{o.steps} steps (GN vs symbolic model vs simulator)"
        )
    lines.append(
        f"tracking: {cfg.tracking.uri} (experiment '{cfg.tracking.experiment}'); Tune results: {experiment_path(cfg)}"
    )
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
    test = (
        sim.resolved_test_sims * per_sim
        if cfg.max_test_graphs is None
        else min(sim.resolved_test_sims * per_sim, cfg.max_test_graphs)
    )
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
        trial_kind.get(spec.kind).check_memory(spec, memory)


def check_search(cfg: SweepConfig, specs: list[TrialSpec]) -> None:
    """An Optuna search samples the schedule shape of one trial setting: refuse a grid of several."""
    if cfg.search.kind == "optuna" and len(specs) != 1:
        raise UserError(
            f"An Optuna search explores the schedule shape of one trial setting, but this sweep's grid "
            f"has {len(specs)} points. Give single values in data and trials (model: l1), or use search.kind: grid."
        )


def local_cpus() -> int:
    """The CPUs a local Ray gets by default: those this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def local_gpus() -> int:
    """CUDA GPUs on this machine (torch is imported only when a sweep asks for GPUs)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_resources(cfg: SweepConfig, nodes: list[dict[str, float]] | None = None, where: str = "this machine") -> None:
    """Refuse requests no node can ever satisfy, before anything starts: Ray would otherwise keep the
    trial or the distillation actor pending for ever, without a word.

    ``nodes``: each node's total resources (Ray's names: CPU, GPU, custom keys); None means this
    machine as a local Ray would see it. A request must fit on one node: a trial or an actor runs on one.
    """
    r = cfg.resources
    if nodes is None:
        nodes = [{"CPU": float(local_cpus()), **({"GPU": float(local_gpus())} if r.gpus_per_trial > 0 else {})}]
    most = lambda key: max((n.get(key, 0.0) for n in nodes), default=0.0)
    if r.gpus_per_trial > most("GPU"):
        has = "no GPU" if most("GPU") == 0 else f"at most {most('GPU'):g} on a node"
        raise UserError(
            f"Each trial asks for {r.gpus_per_trial:g} GPU(s) (resources.gpus_per_trial) but {where} has {has}. Set "
            "gpus_per_trial: 0 to train "
            "on CPU (0.25 packs four trials on a GPU), or run on a cluster with GPU workers (`ray up cluster.yaml`, "
            "then --address auto)."
        )
    if r.cpus_per_trial > most("CPU"):
        raise UserError(
            f"Each trial asks for {r.cpus_per_trial:g} CPUs (resources.cpus_per_trial) but {where} has at most "
            f"{most('CPU'):g} on a node, so no trial could ever start. Lower cpus_per_trial to {most('CPU'):g} or less."
        )
    if cfg.distill is None:
        return
    want = {"CPU": float(cfg.distill.threads), **{k: float(v) for k, v in r.distill_resources.items()}}
    if not any(all(n.get(k, 0.0) >= v for k, v in want.items()) for n in nodes):
        missing = [k for k, v in want.items() if most(k) < v]
        what = (
            ", ".join(f"{k} {want[k]:g} (most on a node: {most(k):g})" for k in missing)
            or ", ".join(f"{k} {v:g}" for k, v in want.items()) + " together on one node"
        )
        raise UserError(
            f"Each distillation actor asks for {what}, and no node of {where} can host one, so distillation "
            "would wait for ever after training. Lower distill.threads to the CPUs a node has, and give "
            "resources.distill_resources only resources a node offers (on a local run: none; on a cluster: "
            "those of its distillation nodes, e.g. {distill: 1} with cluster.yaml)."
        )


def experiment_path(cfg: SweepConfig) -> str:
    storage = cfg.storage if "://" in cfg.storage else str(Path(cfg.storage).expanduser().resolve())
    return f"{storage.rstrip('/')}/{cfg.name}"


def train_config(spec: dict[str, Any], config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a trial: its spec's settings plus any Optuna-sampled shape values in the Tune
    trial ``config``."""
    train = dict(spec["train"])
    sampled = {k.split(".", 1)[1]: v for k, v in config.items() if k.startswith("schedule_shape.")}
    if sampled:
        train["schedule_shape"] = {**train.get("schedule_shape", {}), **sampled}
    return from_dict(TrainConfig, {**train, "data": spec["data_dir"], "prune_k": spec["prune_k"]}, where="trial")


def trial_settings(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A trial's resolved training settings as a dict, for MLflow (its kind's ``settings``)."""
    return trial_kind.get(spec.get("kind", trial_kind.LEGACY_KIND)).settings(spec, config)


# --------------------------------------------------------------------------------------------------
# The plan's fingerprint: a resumed sweep must be the same sweep
# --------------------------------------------------------------------------------------------------

# Kept in the sweep's Tune folder beside Tune's own state. Tune restores trials by their position in
# the grid, so a resumed sweep whose YAML lists the models in another order would load one model's
# checkpoints into another and record them under the wrong name; the plan kept here lets --resume refuse.
PLAN_FILE = "raysym_plan.json"


def plan_record(cfg: SweepConfig, specs: list[TrialSpec]) -> dict[str, Any]:
    """What makes a sweep this sweep: every trial's data and settings under its key, the search, the
    scheduler and the distillation. Resources and tracking may change on a resume (fewer concurrent
    trials, a tracking server that moved), and so may whether trials draw their PNGs (``figures``, also
    left out of a trial's config.json); they do not change what a trial means."""
    record = {
        "trials": {
            s.key: {
                "kind": s.kind,
                "data": s.data,
                "data_dir": s.data_dir,
                "prune_k": s.prune_k,
                "train": {k: v for k, v in s.train.items() if k != "figures"},
            }
            for s in specs
        },
        "search": dataclasses.asdict(cfg.search),
        "scheduler": dataclasses.asdict(cfg.scheduler),
        "distill": dataclasses.asdict(cfg.distill) if cfg.distill is not None else None,
    }
    return json.loads(json.dumps(record, sort_keys=True, default=str))  # the form it has once read back


def fingerprint(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def save_plan(folder: str | Path, record: dict[str, Any]) -> None:
    """Write the plan (and its fingerprint) into the sweep's folder, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(
        folder / PLAN_FILE, json.dumps({"fingerprint": fingerprint(record), "plan": record}, indent=1, sort_keys=True)
    )


def check_same_plan(folder: str | Path, record: dict[str, Any], name: str, finished: bool = False) -> bool:
    """Refuse (UserError) to resume the sweep in ``folder`` with a plan other than the one it started
    with, saying what differs; ``finished``: to hand back its results as this plan's (raysym.run_sweep on a
    finished sweep). False when the folder holds no plan (a sweep started before raysym kept one): nothing to
    compare, the caller says so."""
    path = Path(folder) / PLAN_FILE
    if not path.exists():
        return False
    try:
        stored = json.loads(path.read_text())["plan"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"The plan kept with sweep '{name}' ({path}) cannot be read ({exc}), so raysym cannot check "
            "that this YAML is the sweep being resumed. Start the sweep under another name."
        ) from None
    if fingerprint(stored) == fingerprint(record):
        return True
    changes = differences(stored, record)
    shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
    if finished:
        raise UserError(
            f"Sweep '{name}' has finished, but with a different plan than this config's, so its results would pass "
            f"for this config's. What differs (was -> now): {shown}. Run this config under another name (its name "
            "key), or restore it as it was to get that sweep's results."
        )
    raise UserError(
        f"--resume would continue sweep '{name}' with a different plan than it started with, so checkpoints and "
        f"MLflow runs would be attached to the wrong trials. What differs (was -> now): {shown}. Restore the YAML "
        "as it was to resume, or run this one under another name (the YAML's name key)."
    )
