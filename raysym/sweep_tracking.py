"""The sweep's driver-side recording: a Tune callback that mirrors trials into MLflow, and the
distiller that turns finished trials into equations while the sweep goes on.

Trials never talk to MLflow themselves; everything here runs in the driver: the hooks on Tune's loop,
the writes they submit on the store's writer thread (raysym.track_writer), so that a slow store never
holds up Tune.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from raysym import metrics as metric_names
from raysym import track, track_writer, trial_kind
from raysym.config import SweepConfig

if TYPE_CHECKING:
    from raysym.sweep_plan import TrialSpec


def tracking_callback(
    tracker: track.MLflowTracker,
    parent_id: str,
    specs: dict[str, TrialSpec],
    swept: list[str],
    distiller: Distiller | None = None,
):
    from ray import tune

    from raysym.sweep_plan import trial_settings  # the trial's resolved settings, for tags and the config artifact

    class MLflowCallback(tune.Callback):
        """Mirror Tune trials into MLflow child runs of the sweep's parent run.

        The hooks run on Tune's loop and only submit writes to the store's writer thread
        (raysym.track_writer); the methods whose names end in ``_write`` are those writes. Only that
        thread touches ``per_epoch`` and ``epochs_logged``."""

        def __init__(self):
            self.runs: dict[str, Future] = {}  # trial id -> the Future of its run id
            self.per_epoch: dict[str, set[str]] = {}  # trial id -> the metric keys of its per-epoch results
            self.epochs_logged: dict[str, set[int]] = {}  # trial id -> the epochs logged to MLflow
            self.last_epoch: dict[str, int] = {}  # trial id -> the last epoch Tune's loop saw it report
            self.final_logged: set[str] = set()  # trials whose final result is in MLflow

        # Tune pickles its callbacks with the experiment (for --resume): run ids are found again in MLflow.
        def __getstate__(self) -> dict[str, Any]:
            return {"runs": {}, "per_epoch": {}, "epochs_logged": {}, "last_epoch": {}, "final_logged": set()}

        @property
        def writer(self) -> track_writer.Writer:
            return track_writer.current(tracker.uri)

        def _run(self, trial) -> Future:
            if trial.trial_id not in self.runs:
                spec = specs[trial.config["key"]]
                sampled = {k: v for k, v in trial.config.items() if k.startswith("schedule_shape.")}
                params = {**spec.params, **sampled}
                settings = trial_settings(dataclasses.asdict(spec), trial.config)
                tags = {f"cfg.{k}": v for k, v in settings.items() if k not in params}
                tags.update({f"cfg.data.{k}": v for k, v in spec.data.items() if k not in params})
                tags.update({"raysym.trial_key": spec.key, "raysym.label": spec.label(), "data.dir": spec.data_dir})
                tags[trial_kind.KIND_TAG] = spec.kind
                name = f"{spec.key} {spec.label()}"
                self.runs[trial.trial_id] = self.writer.submit(self._open_write, trial.trial_id, name, params, tags)
            return self.runs[trial.trial_id]

        def _open_write(self, trial_id: str, name: str, params: dict, tags: dict) -> str:
            run_id = tracker.start_trial(parent_id, trial_id, name, params, tags)
            # A resumed trial's run holds the epochs logged before the stop (an interrupt, a killed
            # driver): they come from MLflow itself, so that none is logged twice.
            logged = tracker.logged_steps(run_id, "test/mae")
            self.epochs_logged.setdefault(trial_id, set()).update(logged)
            if logged:  # its per-epoch metrics, which its final result repeats: logged once, not again
                self.per_epoch.setdefault(trial_id, set()).update(tracker.logged_keys(run_id))
            # A driver killed between a trial's final result and Tune's next save of its state resumes the
            # trial from its final checkpoint, and the trial reports its final result again.
            if tracker.logged_steps(run_id, "epochs_done"):
                self.final_logged.add(trial_id)
            return run_id

        def on_trial_start(self, iteration, trials, trial, **info):
            self._run(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            # A result that skips epochs (a resumed or retried trial's) may follow epochs that never reached
            # MLflow: their history is read now, from the checkpoint Tune just registered (a lagging writer
            # found it deleted, as Tune keeps two, and the epochs stayed missing: seen in CI, issue 29).
            epoch, history = int(result.get("epoch", 0)), None
            if epoch > self.last_epoch.get(trial.trial_id, 0) + 1 and trial.checkpoint is not None:
                history = _checkpoint_history(trial.checkpoint)
            self.last_epoch[trial.trial_id] = max(epoch, self.last_epoch.get(trial.trial_id, 0))
            self.writer.submit(self._result_write, trial.trial_id, self._run(trial), dict(result), history)

        def _result_write(self, trial_id: str, run_id: str, result: dict[str, Any], history: list | None = None):
            keys = [k for k in result if "/" in k or k in ("status", "reason", "epochs_done")]
            seen = self.per_epoch.setdefault(trial_id, set())
            if result.get("done_training"):  # the per-epoch curves are logged already; the rest is new
                if trial_id in self.final_logged:  # reported again by a trial resumed at its end: logged once
                    return
                self.final_logged.add(trial_id)
                keys = [k for k in keys if k not in seen]
            else:
                # A worker killed while its epoch's report was in flight can leave MLflow with that epoch
                # while Tune restores the checkpoint before it, so the retry trains the epoch again: keep
                # the first values, never a second point at the same step.
                epochs = self.epochs_logged.setdefault(trial_id, set())
                epoch = int(result.get("epoch", 0))
                seen.update(keys)  # before the check: the final result must not log them again either
                if epoch in epochs:
                    return
                if history and any(e not in epochs for e in range(1, epoch)):
                    self._backfill(trial_id, run_id, history, epoch)
                epochs.add(epoch)
            described = {k: result[k] for k in keys if k in metric_names.DESCRIPTIONS}  # e.g. data/dim: a tag
            if described:
                tracker.set_tags(run_id, described)
            measured = {k: result[k] for k in keys if k not in metric_names.DESCRIPTIONS}
            tracker.log_metrics(run_id, measured, step=int(result.get("epoch", 0)))

        def _backfill(self, trial_id: str, run_id: str, history: list[dict], epoch: int) -> None:
            """Log the epochs before ``epoch`` that MLflow lacks, from ``history`` (the per-epoch metrics in the
            trial's checkpoint): a sweep stopped after Tune saved a checkpoint but before the epoch's result reached
            MLflow (a disk-full stop, a killed driver) resumes from it, and that result never comes again."""
            for past in history:
                past_epoch = int(past.get("epoch", -1)) + 1  # the history counts epochs from 0, results from 1
                if 0 < past_epoch < epoch and past_epoch not in self.epochs_logged[trial_id]:
                    values = {k: v for k, v in past.items() if not isinstance(v, list)}
                    self._result_write(trial_id, run_id, {**values, "epoch": past_epoch})

        def on_trial_complete(self, iteration, trials, trial, **info):
            run = self._run(trial)
            result = dict(trial.last_result or {})
            spec = specs[trial.config["key"]]
            resolved = {
                "train": trial_settings(dataclasses.asdict(spec), trial.config),
                "data": spec.data,
                "tune_config": trial.config,
            }
            self.writer.submit(self._complete_write, run, trial.checkpoint, resolved, result)
            finished = result.get("done_training") and result.get("status") != "diverged"
            if distiller is None or not finished or trial.checkpoint is None:
                return
            # A trial resumed at its end (_open_write) may have been distilled, or distilled but not rolled
            # out, before the stop: only what is left runs.
            missing = distiller.left_to_do(spec.key, trial.trial_id)
            if missing is not None:
                with trial.checkpoint.as_directory() as folder:
                    distiller.submit(spec.key, trial.trial_id, folder, run, rollout_only=missing == "rollout")

        @staticmethod
        def _complete_write(run_id: str, checkpoint, resolved: dict[str, Any], result: dict[str, Any]) -> None:
            if checkpoint is not None:  # the checkpoint's files stay on disk: Tune keeps a trial's last ones
                with checkpoint.as_directory() as folder:
                    tracker.log_artifacts(run_id, folder)
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "trial_settings.json").write_text(json.dumps(resolved, indent=2, default=str))
                tracker.log_artifacts(run_id, tmp)
            diverged = result.get("status") == "diverged"
            finished = result.get("done_training") and not diverged
            if not result.get("done_training"):  # a trial returns only after its final result: the scheduler stopped it
                tracker.set_tags(
                    run_id,
                    {
                        track.STOPPED_TAG: f"by the ASHA scheduler after epoch {result.get('epoch', '?')}: "
                        "its test MAE lagged"
                    },
                )
                tracker.end_run(run_id, "KILLED")
            else:
                tracker.end_run(run_id, "FINISHED" if finished else "FAILED")

        def on_step_end(self, iteration, trials, **info):
            self.writer.check()  # a write that failed ends the sweep here, as it would have in place
            if distiller is not None:
                distiller.log_done()

        def on_experiment_end(self, trials, **info):
            if distiller is not None:
                distiller.finish()  # waits for the distillations still running
            self.writer.flush()

        def on_trial_error(self, iteration, trials, trial, **info):
            message = f"trial crashed {trial.num_failures} time(s); see {trial.path}"
            self.writer.submit(self._error_write, self._run(trial), message)

        @staticmethod
        def _error_write(run_id: str, message: str) -> None:
            tracker.set_tags(run_id, {"raysym.error": message})
            tracker.end_run(run_id, "FAILED")

    return MLflowCallback()


def _checkpoint_history(checkpoint) -> list[dict[str, Any]]:
    """The per-epoch metrics kept in a trial checkpoint's checkpoint.pt (raysym.train), or [] when it has none
    or cannot be read (read with weights_only: loading runs no code from the file)."""
    import torch

    try:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "checkpoint.pt", map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- a missing or unreadable history only means nothing to fill in
        return []
    history = state.get("history") if isinstance(state, dict) else None
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


class Distiller:
    """Distils finished trials while the sweep goes on, and records each as an MLflow child run.

    A finished trial's files are copied to ``<experiment>/distill/<key>_<trial id>`` and distilled there
    by a background thread on the shared actor pool (created on first use and stopped whenever nothing
    is left to distil, so idle actors never hold CPUs that waiting trials need). Finished distillations are
    handed to the store's writer thread from Tune's loop (``log_done``, called every step) and at the end
    (``finish``), never from the distilling threads, so the tracking store keeps a single writer.
    """

    def __init__(self, cfg: SweepConfig, tracker: track.MLflowTracker, root: Path):
        self.cfg, self.tracker, self.root = cfg, tracker, root
        self._start()

    def _start(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(max_workers=self.cfg.resources.distill_workers, thread_name_prefix="distill")
        self.pending: dict[str, tuple[Any, str, str]] = {}  # trial id -> (future, key, trial run id)
        self._pool = None
        self._lock = threading.Lock()

    # Tune pickles its callbacks with the experiment (for --resume): keep the settings, drop the threads
    # and actors, which a restored sweep starts afresh.
    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "tracker": self.tracker, "root": self.root}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start()

    def _get_pool(self):
        from raysym.distill_pool import DistillPool

        with self._lock:
            if self._pool is None:
                r = self.cfg.resources
                self._pool = DistillPool(r.distill_workers, self.cfg.distill.threads, r.distill_resources)
            return self._pool

    def left_to_do(self, key: str, trial_id: str) -> str | None:
        """What a finished trial still lacks: "distillation" (no summary.json: never started, or stopped by an
        interrupt or a killed driver), "rollout" (distilled, but the sweep's rollout never wrote its result),
        or None when nothing is left."""
        from raysym.rollout import OUT, RESULT

        folder = self.root / f"{key}_{trial_id}"
        if not (folder / "distill" / "summary.json").is_file():
            return "distillation"
        if self.cfg.rollout is not None and not (folder / OUT / RESULT).is_file():
            return "rollout"
        return None

    def submit(
        self, key: str, trial_id: str, trial_folder: str, run_id: str | Future, rollout_only: bool = False
    ) -> None:
        """Distil (and roll out, when the sweep asks for it) the trial whose checkpoint folder is
        ``trial_folder`` in the background, to be recorded under the run ``run_id`` (or the Future of its id,
        from the writer thread). ``rollout_only``: the distillation is on disk already (a sweep
        interrupted during the rollout), so only the rollout runs."""
        from raysym.distill import load_summary
        from raysym.trial_kind import distil

        folder = self.root / f"{key}_{trial_id}"
        if not rollout_only:
            shutil.rmtree(folder, ignore_errors=True)  # a distillation cut short leaves half-written files
            folder.mkdir(parents=True)
            for name in ("checkpoint.pt", "config.json", "metrics.json"):
                shutil.copy(Path(trial_folder) / name, folder / name)
        span: dict[str, float] = {}  # when the distillation started and ended (its MLflow run spans it)

        def work():
            span["start"] = time.time()
            try:
                if rollout_only:
                    summary = load_summary(folder / "distill" / "summary.json")
                else:
                    summary = distil(folder, self.cfg.distill, self._get_pool())
            finally:
                span["end"] = time.time()
            if self.cfg.rollout is not None:
                summary = {**summary, **rollout_metrics(folder, self.cfg.rollout, key)}
            return summary

        future = self.executor.submit(work)
        self.pending[trial_id] = (future, key, run_id, span, rollout_only)

    def log_done(self) -> None:
        for trial_id in [t for t, (f, *_) in self.pending.items() if f.done()]:
            self._log(trial_id, *self.pending.pop(trial_id))
        if not self.pending:
            self._release_pool()

    def _release_pool(self) -> None:
        """Stop the actors while nothing is left to distil: idle actors keep their CPUs, and trials still
        waiting for CPUs would wait for ever (4 trials and 2 actors on a 2-CPU machine did). The next
        finished trial starts a new pool (a few seconds)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None

    def _log(
        self, trial_id: str, future, key: str, run_id: str, span: dict[str, float], rollout_only: bool = False
    ) -> None:
        try:
            summary = future.result()
        except Exception as exc:  # noqa: BLE001 -- a failed distillation must not end the sweep
            summary = {"distill/errors": [f"{type(exc).__name__}: {exc}"]}
        if rollout_only:  # the distillation's numbers are on the trial's run already: log each value once
            summary = {k: v for k, v in summary.items() if not (k.startswith("distill/") and _is_number(v))}
        folder = self.root / f"{key}_{trial_id}" / "distill"
        self.writer.submit(
            log_distillation, self.tracker, self.cfg.distill, run_id, trial_id, key, folder, summary, span
        )

    @property
    def writer(self) -> track_writer.Writer:
        return track_writer.current(self.tracker.uri)

    def finish(self) -> None:
        """Wait for every distillation still running, log them (and wait for the writes), and stop the pool."""
        for trial_id in list(self.pending):
            self._log(trial_id, *self.pending.pop(trial_id))
        self.executor.shutdown(wait=True)
        self._release_pool()
        self.writer.flush()


def distil_left_over(path: str, tracker: track.MLflowTracker, distiller: Distiller, say: Callable[[str], None]) -> None:
    """Hand the distiller every trial that finished training before the sweep stopped but was never
    distilled or rolled out: Tune calls ``on_trial_complete`` once, so a distillation cut short by Ctrl-C or
    a killed driver would otherwise be lost for good (the trial is done as far as Tune is concerned)."""
    for trial in saved_trials(path):
        result = trial.last_result or {}
        finished = result.get("done_training") and result.get("status") != "diverged"
        if trial.status != "TERMINATED" or not finished or trial.checkpoint is None:
            continue
        key = trial.config.get("key", "trial")
        missing = distiller.left_to_do(key, trial.trial_id)
        if missing is None:
            continue
        run_id = tracker.find_trial(trial.trial_id)
        if run_id is None:  # the tracking store was replaced: nowhere to record it
            say(
                f"{key}: its {missing} did not finish, and the tracking store has no run of it to record one "
                f"on; distil its checkpoint with `raysym distill {trial.checkpoint.path}`"
            )
            continue
        say(f"{key}: trained before the sweep stopped, but its {missing} did not finish; running it now")
        with trial.checkpoint.as_directory() as folder:
            distiller.submit(key, trial.trial_id, folder, run_id, rollout_only=missing == "rollout")


def saved_trials(path: str) -> list:
    """The trials of the Tune experiment saved at ``path``. Tune warns, one line per trial, about every trial that
    has reported nothing yet (the pending ones of an interrupted sweep): normal here, so not shown."""
    import logging

    from ray.tune import ExperimentAnalysis

    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return ExperimentAnalysis(path).trials
    finally:
        log.setLevel(level)


def rollout_metrics(folder: Path, cfg, key: str) -> dict[str, Any]:
    """The ood/* metrics of a distilled trial's rollout (raysym.rollout), or ``ood/errors`` saying why it
    failed: a rollout that fails must not end the sweep, nor hide the distillation before it."""
    from raysym.rollout import onestep_key
    from raysym.trial_kind import rollout

    start = time.time()
    try:
        metrics = rollout(folder, cfg)
    except Exception as exc:  # noqa: BLE001 -- reported on the trial's distillation run and the console
        print(f"rollout {key}: failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return {"ood/errors": [f"{type(exc).__name__}: {exc}"]}
    pairs = ", ".join(
        f"{name} {metrics[onestep_key(name, 'gn')]:.3g} vs {metrics[onestep_key(name, 'symbolic')]:.3g}"
        for name in cfg.all_regimes()
    )
    print(
        f"rollout {key}: one-step MAE, GN vs symbolic: {pairs} ({cfg.sims} systems per regime; "
        f"{time.time() - start:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    return metrics


def log_distillation(
    tracker: track.MLflowTracker,
    cfg,
    run_id: str,
    trial_id: str,
    key: str,
    folder: Path,
    summary: dict[str, Any],
    span: dict[str, float] | None = None,
) -> str:
    """One distillation run nested under the trial's run ``run_id`` (found again, not duplicated, when a
    trial is distilled twice), spanning the distillation (``span``: its start and end, seconds since the
    epoch): the backend and setting as params, the formulas and verdict as tags, the fronts as artifacts.
    The numeric distill/* metrics go on the trial's run, once, where MLflow's comparison of trials shows
    them beside the trial's other metrics. ``folder``: the distill output (fronts, summary.json). Returns
    the distillation run's id."""
    from raysym.rollout import OUT as OOD

    numeric = {k: v for k, v in summary.items() if _is_number(v)}
    settings = summary.get("distill/settings", {})
    tags = {
        "raysym.distill_of": trial_id,
        "distill/edge_formulas": summary.get("distill/edge_formulas"),
        "distill/node_formulas": summary.get("distill/node_formulas"),
        "distill/recovered_as": summary.get("distill/recovered_as", "none"),
        "distill/errors": summary.get("distill/errors"),
        "ood/errors": summary.get("ood/errors"),
        **{f"distill.settings.{k}": v for k, v in settings.items()},
    }
    params = {"backend": summary.get("distill/backend", cfg.backend), "setting": cfg.setting}
    span = span or {}
    child = tracker.start_trial(
        run_id,
        f"distill-{trial_id}",
        f"{key} distillation",
        params,
        {k: v for k, v in tags.items() if v is not None},
        start_time=span.get("start"),
    )
    if folder.exists():
        tracker.log_artifacts(child, folder)
    if (folder.parent / OOD).is_dir():  # the rollout's result and figure (raysym.rollout)
        tracker.log_artifacts(child, folder.parent / OOD, artifact_path=OOD)
    tracker.end_run(child, "FAILED" if summary.get("distill/errors") else "FINISHED", end_time=span.get("end"))
    tracker.log_metrics(run_id, numeric, step=0)
    return child


def distill_summaries(root: Path) -> dict[str, dict[str, Any]]:
    """Trial id -> the distillation summary (summary.json) found under ``root`` (folders <key>_<trial id>)."""
    from raysym.distill import load_summary

    return {
        path.parent.parent.name.split("_", 1)[1]: load_summary(path)
        for path in Path(root).glob("*/distill/summary.json")
    }


def verdict_of(summary: dict[str, Any]) -> str:
    """The distillation verdict of a summary: force, force/mass, potential, none, or error."""
    return "error" if summary.get("distill/errors") else summary.get("distill/recovered_as", "-")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def law_lines(summary: dict[str, Any], dim: int) -> list[str]:
    """A trial's law as text: the verdict with its R² (in distribution and on every edge) and each edge
    formula with its constants to 4 significant digits."""
    from raysym.distill import readable
    from raysym.distill_jobs import edge_names

    verdict = verdict_of(summary)
    if verdict == "error":
        return ["distillation failed: " + "; ".join(summary["distill/errors"])[:300]]
    which = {"force/mass": "accel", "potential": "pair_force"}.get(verdict, "force")
    if f"distill/r2_{which}_min" in summary:  # the verdict's own numbers: the worst formula, and the map's spread
        r2, r2_all = summary[f"distill/r2_{which}_min"], summary.get(f"distill/r2_{which}_all_min")
        cond = summary.get(f"distill/condition_{which}")
        inside, scored = summary.get("distill/in_range_graphs"), summary.get("distill/score_graphs")
        share = f" ({100 * inside / scored:.0f}% of the scoring graphs)" if inside is not None and scored else ""
        scores = f"R² {r2:.4f} in distribution{share}, {_num(r2_all)} on every test edge (worst formula)" + (
            "" if cond is None else f"; condition number {cond:.3g}"
        )
    else:  # energy models and distillations before the rank check: the mean over the formulas
        r2, r2_all = summary.get(f"distill/r2_{which}"), summary.get(f"distill/r2_{which}_all")
        scores = f"R² {_num(r2)} in distribution, {_num(r2_all)} on every test edge" if r2 is not None else ""
    recovered = summary.get("distill/recovered")
    head = f"law recovered ({verdict}): {scores}" if recovered else f"no law recovered ({scores})"
    label = "pair energy" if verdict == "potential" or "distill/r2_pair_force" in summary else "message"
    lines = [head]
    for k, eq in enumerate(summary.get("distill/edge_formulas", [])):
        try:
            text = readable(eq, edge_names(dim))
        except ValueError:
            text = eq
        lines.append(f"  {label} {k + 1} = {text}")
    return lines


def distill_runs(
    run_ids: list[str],
    cfg,
    uri: str,
    *,
    workers: int | None = None,
    address: str | None = None,
    say=lambda m: None,
    work_root: Path = Path("distill_runs"),
) -> list[dict[str, Any]]:
    """``raysym distill --run``: distil finished trials recorded in MLflow, afterwards.

    A run id may name a trial run or a sweep's parent run (all its finished trials). Each trial's
    checkpoint.pt, config.json and metrics.json are downloaded to ``work_root/<run id>``, distilled on one
    actor pool, and logged as a distillation run nested under the trial's run.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from raysym.distill_pool import start_pool
    from raysym.errors import UserError
    from raysym.trial_kind import distil

    track.check_reachable(uri)
    client = track.PatientClient(uri)
    trials = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise UserError(
                f"No MLflow run '{run_id}' in {uri}. Copy the run id from the MLflow UI, and pass --tracking-uri if "
                "the runs live elsewhere."
            ) from None
        tags = run.data.tags
        if track.TRIAL_TAG in tags and "raysym.distill_of" not in tags:
            trials.append(run)
        elif track.SWEEP_TAG in tags and track.PARENT_TAG not in tags:
            children = client.search_runs(
                [run.info.experiment_id], filter_string=f"tags.`{track.PARENT_TAG}` = {track.quoted(run_id)}"
            )
            trials += [c for c in children if track.TRIAL_TAG in c.data.tags and c.info.status == "FINISHED"]
        else:
            raise UserError(
                f"MLflow run '{run_id}' is neither a raysym trial nor a raysym sweep. Pass the id of a trial's run or "
                "of a sweep's parent run."
            )
    if not trials:
        raise UserError("None of the given runs has a finished trial to distil.")
    pool = start_pool(cfg, workers=workers, address=address, say=say, what=f"{len(trials)} trial run(s)")
    tracker = track.MLflowTracker.for_experiment_id(uri, trials[0].info.experiment_id)
    summaries = []
    try:
        for run in trials:
            folder = work_root / run.info.run_id
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("checkpoint.pt", "config.json", "metrics.json"):
                try:
                    mlflow.artifacts.download_artifacts(
                        run_id=run.info.run_id, artifact_path=name, dst_path=str(folder), tracking_uri=uri
                    )
                except (MlflowException, OSError):
                    raise UserError(
                        f"MLflow run {run.info.run_id} has no artifact {name}: it is not a finished raysym trial."
                    ) from None
            span = {"start": time.time()}
            summary = distil(folder, cfg, pool)
            span["end"] = time.time()
            trial_id = run.data.tags[track.TRIAL_TAG]
            log_distillation(
                tracker,
                cfg,
                run.info.run_id,
                trial_id,
                run.data.tags.get("raysym.trial_key", trial_id),
                folder / "distill",
                summary,
                span,
            )
            summaries.append(summary)
    finally:
        pool.shutdown()
    return summaries
