"""What a report is made of: a sweep's runs read back from MLflow, and the published numbers.

Everything here reads; nothing writes to MLflow. A sweep is found by its name (the ``raysym.sweep`` tag of
its parent run) or its parent run id. Each trial becomes a :class:`Trial` with its final metrics, its
settings (swept ones are MLflow params, the others ``cfg.*`` tags), its distillation verdict and, when
asked for, its per-epoch metric histories. Trials the sweep planned but never started are listed too, so
tables can say "not run" instead of leaving a hole.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raysym import track, trial_kind
from raysym.errors import UserError

# A progress bar per downloaded file would drown the report's own progress lines.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# The per-epoch curves the report draws.
HISTORY_KEYS = ("train/loss", "test/mae", "train/l1_coeff")
DISTILL_RUN = "raysym.distill_run_id"  # in Trial.distill: the distillation run's id
PUBLISHED_CSV = Path(__file__).resolve().parent / "published.csv"  # shipped inside the package


@dataclass
class Trial:
    """One trial of a sweep as MLflow recorded it (or as the sweep planned it, status ``NOT RUN``)."""

    key: str  # t000, t001, ... (the sweep's grid point)
    label: str
    status: str  # FINISHED, FAILED, KILLED, RUNNING, STOPPED EARLY (by ASHA), or NOT RUN
    run_id: str | None = None
    trial_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the last value of each metric
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> [(epoch, value)]
    distill: dict[str, str] = field(default_factory=dict)  # the distillation run's tags (and id), if any

    def setting(self, name: str, default: Any = None) -> str | None:
        """A training or data setting as recorded: a swept param, else a ``cfg.`` / ``cfg.data.`` tag."""
        for source in (self.params.get(name), self.tags.get(f"cfg.{name}"), self.tags.get(f"cfg.data.{name}")):
            if source is not None:
                return source
        return default

    @property
    def kind_name(self) -> str:
        """The trial kind (raysym.trial_kind) the run records; runs from before the record: halo trials are
        those with a catalog setting."""
        recorded = self.tags.get(trial_kind.KIND_TAG)
        if recorded:
            return recorded
        return "halos" if self.setting("catalog") is not None else trial_kind.LEGACY_KIND

    def names(self) -> trial_kind.TrialNames:
        """How tables and figures name this trial, as its kind says."""
        return trial_kind.get(self.kind_name).names(self)

    @property
    def system(self) -> str:
        return self.names().system

    @property
    def dim(self) -> int:
        return self.names().dim

    @property
    def model(self) -> str:
        """The model as the papers name it (e.g. bottleneck, l1-linear, newtonian-kl, nodegn)."""
        return self.names().model

    @property
    def group(self) -> str:
        """The row and figure panel this trial shares with its other seeds."""
        return self.names().group

    @property
    def prune_k(self) -> float | None:
        value = self.setting("prune_k")
        return None if value in (None, "None", "null") else float(value)

    @property
    def seed(self) -> str:
        return self.setting("seed", "0")

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    def top_stds(self) -> list[float]:
        """The 15 largest message-component stds (a tag written as a list), largest first."""
        raw = self.tags.get("messages/stds_top15")
        try:
            return [float(v) for v in json.loads(raw)] if raw else []
        except (ValueError, TypeError):  # edited in the store: no stds rather than a failed report
            return []


@dataclass
class Sweep:
    name: str
    uri: str
    run_id: str
    experiment_id: str
    status: str
    config: dict[str, Any] | None  # the sweep's resolved YAML (the parent run's sweep.json), if readable
    trials: list[Trial]
    tags: dict[str, str] = field(default_factory=dict)  # the parent run's (source, version, commit)
    start_time: float | None = None  # when the sweep started, seconds since the epoch

    @property
    def search(self) -> str:
        return (self.config or {}).get("search", {}).get("kind", "grid")

    def search_metric(self) -> tuple[str, str]:
        """(metric, mode) the sweep's search optimised: its YAML's, else the default of the raysym that ran it
        (val/r2_best on the validation split; messages/r2_best, on test graphs, before the split existed)."""
        search = (self.config or {}).get("search", {})
        metric = search.get("metric")
        if metric is None:
            newer = any("val/r2_best" in t.metrics for t in self.trials)
            metric = "val/r2_best" if newer else "messages/r2_best"
        return metric, search.get("mode", "max")

    def kind(self) -> trial_kind.TrialKind:
        """The sweep's trial kind (one per sweep), from its trials; an empty sweep reads as N-body."""
        return trial_kind.get(self.trials[0].kind_name if self.trials else trial_kind.LEGACY_KIND)

    def swept(self) -> list[str]:
        """Settings that vary across trials (from the params MLflow holds)."""
        keys: set[str] = set()
        for t in self.trials:
            keys.update(t.params)
        return sorted(keys)


def find_sweep(uri: str, sweep: str, experiment: str | None = None):
    """The parent run of ``sweep`` (a sweep name or a parent run id) in ``uri``."""
    from mlflow.exceptions import MlflowException

    track.check_reachable(uri)
    client = track.PatientClient(uri)  # a store that another writer holds is waited for, not a traceback
    try:
        run = client.get_run(sweep)
        if track.SWEEP_TAG in run.data.tags and track.PARENT_TAG not in run.data.tags:
            return client, run
    except MlflowException:
        pass
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise UserError(
                f"There is no MLflow experiment '{experiment}' in {uri}. Check the name (the sweep YAML's "
                "tracking.experiment) or leave --experiment out."
            )
        experiments = [found.experiment_id]
    else:
        experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.`{track.SWEEP_TAG}` = {track.quoted(sweep)}",
        order_by=["attributes.start_time DESC"],
    )
    runs = [r for r in runs if track.PARENT_TAG not in r.data.tags]
    if not runs:
        names = sorted(
            {
                r.data.tags[track.SWEEP_TAG]
                for r in client.search_runs(
                    experiments, filter_string=f"tags.`{track.SWEEP_TAG}` LIKE '%'", max_results=500
                )
                if track.PARENT_TAG not in r.data.tags
            }
        )
        known = f"Sweeps recorded there: {', '.join(names)}." if names else "No sweep is recorded there yet."
        raise UserError(
            f"No sweep named '{sweep}' in the MLflow store {uri}. {known} Pass the sweep's name (its YAML's name key) "
            "or its parent run id (raysym report also takes the YAML file); use --tracking-uri if the runs live "
            "elsewhere."
        )
    if len(runs) > 1:  # a name used again (a sweep deleted and rerun, a failed start, another experiment)
        import sys
        from datetime import datetime, timezone

        def when(r) -> str:
            return datetime.fromtimestamp(r.info.start_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

        others = "; ".join(f"{r.info.run_id} ({r.info.status}, {when(r)})" for r in runs[1:6])
        print(
            f"raysym: warning: {len(runs)} sweeps are named '{sweep}' in {uri}; reporting the newest, "
            f"{runs[0].info.run_id} ({runs[0].info.status}, started {when(runs[0])}). The others: {others}. "
            "Pass a parent run id instead of the name to choose one.",
            file=sys.stderr,
        )
    return client, runs[0]


def _search_all(client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _sweep_config(uri: str, parent) -> dict[str, Any] | None:
    folder = _download(uri, parent.info.run_id, "sweep.json")  # None: an older or foreign sweep, no plan
    if folder is None:
        return None
    try:
        return json.loads(Path(folder).read_text())
    except (OSError, ValueError):  # a damaged plan: the report works without it, as for an older sweep
        return None


def _planned(config: dict[str, Any] | None) -> list[Trial]:
    """One ``NOT RUN`` Trial per trial the sweep planned, from its resolved config (planned once). Each
    carries its settings as ``cfg.`` tags, so a trial that never ran lands in the right table row."""
    if config is None:
        return []
    from raysym.config import SweepConfig, from_dict
    from raysym.sweep_plan import plan

    try:
        cfg = from_dict(SweepConfig, config)
    except (UserError, TypeError, ValueError):
        return []
    per_point = cfg.search.trials if cfg.search.kind == "optuna" else 1
    planned = []
    for spec in plan(cfg):
        tags = {f"cfg.data.{k}": str(v) for k, v in spec.data.items()}
        tags.update({f"cfg.{k}": str(v) for k, v in spec.train.items()})
        tags["cfg.prune_k"] = str(spec.prune_k)
        tags[trial_kind.KIND_TAG] = spec.kind
        planned += [
            Trial(key=spec.key, label=spec.label(), status="NOT RUN", tags=dict(tags)) for _ in range(per_point)
        ]
    return planned


def load_sweep(
    uri: str, sweep: str, experiment: str | None = None, *, histories: bool = True, threads: int = 8
) -> Sweep:
    """Read a sweep (name or parent run id) and all its trials from the MLflow store at ``uri``.

    ``histories`` also reads the per-epoch curves in HISTORY_KEYS (one request per trial and metric, on
    ``threads`` threads: the slow part of a large report)."""
    client, parent = find_sweep(uri, sweep, experiment)
    exp = parent.info.experiment_id
    children = _search_all(client, exp, f"tags.`{track.PARENT_TAG}` = {track.quoted(parent.info.run_id)}")
    runs = [r for r in children if track.TRIAL_TAG in r.data.tags and "raysym.distill_of" not in r.data.tags]
    trial_run_ids = {r.info.run_id for r in runs}
    distills = {}
    for r in _search_all(client, exp, "tags.`raysym.distill_of` LIKE '%'"):
        if r.data.tags.get(track.PARENT_TAG) in trial_run_ids:
            distills[r.data.tags[track.PARENT_TAG]] = {**r.data.tags, DISTILL_RUN: r.info.run_id}
    trials = [
        Trial(
            key=r.data.tags.get("raysym.trial_key", "?"),
            label=r.data.tags.get("raysym.label", r.info.run_name),
            status="STOPPED EARLY" if track.STOPPED_TAG in r.data.tags else r.info.status,
            run_id=r.info.run_id,
            trial_id=r.data.tags[track.TRIAL_TAG],
            params=dict(r.data.params),
            tags=dict(r.data.tags),
            metrics=dict(r.data.metrics),
            distill=distills.get(r.info.run_id, {}),
        )
        for r in runs
    ]
    config = _sweep_config(uri, parent)
    seen: dict[str, int] = {}
    for t in trials:
        seen[t.key] = seen.get(t.key, 0) + 1
    for missing in _planned(config):  # the planned trials beyond those recorded never started
        if seen.get(missing.key, 0) > 0:
            seen[missing.key] -= 1
        else:
            trials.append(missing)
    trials.sort(key=lambda t: (t.key, t.trial_id or "~"))
    if histories:
        _read_histories(client, [t for t in trials if t.run_id], threads)
    return Sweep(
        parent.data.tags[track.SWEEP_TAG],
        uri,
        parent.info.run_id,
        exp,
        parent.info.status,
        config,
        trials,
        dict(parent.data.tags),
        parent.info.start_time / 1000 if parent.info.start_time else None,
    )


def _read_histories(client, trials: list[Trial], threads: int) -> None:
    def one(pair):
        trial, key = pair
        if key in trial.metrics:
            points = client.get_metric_history(trial.run_id, key)
            trial.history[key] = sorted((m.step, m.value) for m in points)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, [(t, k) for t in trials for k in HISTORY_KEYS]))


def pareto_front(uri: str, trial: Trial, job: str = "edge0") -> list[dict[str, str]] | None:
    """The Pareto front of one distillation job of the trial (``<job>_front.csv`` of its distillation run:
    complexity, loss, score, equation, chosen), simplest first; None when the trial was not distilled."""
    run_id = trial.distill.get(DISTILL_RUN)
    path = _download(uri, run_id, f"{job}_front.csv") if run_id else None  # a failed job has no front
    if path is None:
        return None
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def message_sample(uri: str, trial: Trial) -> dict[str, Any] | None:
    """The trial's ``messages.npz`` artifact (top components and forces of sampled test edges), or None."""
    path = _download(uri, trial.run_id, "messages.npz")  # older trials have no sample; the figure says so
    return None if path is None else _artifact_npz(path, trial.run_id, "messages.npz")


def rollout_result(uri: str, trial: Trial) -> dict[str, Any] | None:
    """The trial's rollout (``ood/rollout.json`` of its distillation run, raysym.rollout), or None."""
    from raysym.rollout import OUT, RESULT

    run_id = trial.distill.get(DISTILL_RUN)
    path = _download(uri, run_id, f"{OUT}/{RESULT}") if run_id else None  # a sweep without a rollout has none
    return None if path is None else _artifact_json(path, run_id, f"{OUT}/{RESULT}")


def halo_sample(uri: str, trial: Trial) -> dict[str, Any] | None:
    """A halo trial's ``halo_messages.npz`` (edge inputs, the messages' leading projection and, for
    synthetic catalogs, the true edge term on sampled edges), or None."""
    path = _download(uri, trial.run_id, "halo_messages.npz")  # a trial that did not finish has none
    return None if path is None else _artifact_npz(path, trial.run_id, "halo_messages.npz")


def stds_by_epoch(uri: str, trial: Trial) -> dict[str, Any] | None:
    """The trial's ``message_stds_by_epoch.json`` ({"epoch": [...], "stds": [[...], ...]}), or None."""
    path = _download(uri, trial.run_id, "message_stds_by_epoch.json")  # trials from before raysym kept it
    return None if path is None else _artifact_json(path, trial.run_id, "message_stds_by_epoch.json")


def _download(uri: str, run_id: str, artifact_path: str) -> str | None:
    """The local path of a run's artifact, or None when the run has no such artifact. A store that another
    writer holds (a locked sqlite file) is waited for, as every other read of the report is, never mistaken
    for a missing artifact (the figure or table would then be silently left out)."""
    import mlflow

    try:
        return track.patient_client(uri).call(
            f"downloading {artifact_path}",
            mlflow.artifacts.download_artifacts,
            run_id=run_id,
            artifact_path=artifact_path,
            tracking_uri=uri,
            only_locked=True,
        )
    except track.TrackingUnavailable:
        raise
    except Exception:  # noqa: BLE001 -- absent (older trials, failed jobs, sweeps without the section)
        return None


def _artifact_npz(path: str | Path, run_id: str, name: str) -> dict[str, Any]:
    """A downloaded npz artifact's arrays (never pickled objects); UserError naming the run and the artifact
    when it is damaged."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        from raysym.errors import UserError

        raise UserError(
            f"The artifact {name} of MLflow run {run_id} is damaged ({type(exc).__name__}: {exc}). Delete that "
            "artifact (or the run) in MLflow, or re-run the trial that wrote it, and report again."
        ) from None


def _artifact_json(path: str | Path, run_id: str, name: str) -> Any:
    """A downloaded JSON artifact; UserError naming the run and the artifact when it is damaged."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        from raysym.errors import UserError

        raise UserError(
            f"The artifact {name} of MLflow run {run_id} is damaged ({type(exc).__name__}: {exc}). Delete that "
            "artifact (or the run) in MLflow, or re-run what wrote it (raysym rollout / the trial), and report again."
        ) from None


# --------------------------------------------------------------------------------------------------
# Published numbers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """raysym/published.csv: one published value per row (source, table, metric, system, dim, model)."""

    rows: tuple[dict[str, str], ...]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Published":
        path = Path(path) if path else PUBLISHED_CSV
        if not path.is_file():
            raise UserError(
                f"The published numbers file {path} does not exist. Pass --published raysym/published.csv from a "
                "raysym checkout."
            )
        with open(path, newline="") as f:
            rows = tuple(csv.DictReader(line for line in f if not line.startswith("#")))
        return cls(rows)

    def value(
        self, source: str, metric: str, system: str, dim: int, model: str, table: str | None = None
    ) -> str | None:
        """The published value as written in the source, or None when the source has no such cell."""
        for r in self.rows:
            if (
                r["source"] == source
                and r["metric"] == metric
                and r["system"] == system
                and int(r["dim"]) == dim
                and r["model"] == model
                and (table is None or table in r["table"])
            ):
                return r["value"]
        return None


def paper_model(model: str) -> str:
    """The original paper's name for a raysym model label. The paper had one L1 variant (a constant
    coefficient); every L1 schedule is shown next to it, and next to its own schedule's reproduction value."""
    return model.split("-")[0] if model.startswith(("l1-", "hgn-")) else model


def mean_std(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
