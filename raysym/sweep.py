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

import contextlib
import dataclasses
import gc
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from raysym import disk, track, track_writer, trial_kind
from raysym.config import SweepConfig
from raysym.errors import UserError
from raysym.sweep_plan import (
    PLAN_FILE,
    TrialSpec,
    check_memory,
    check_resources,
    check_same_plan,
    check_search,
    describe_plan,
    experiment_path,
    launch_order,
    plan,
    plan_record,
    save_plan,
    select,
    slice_name,
)
from raysym.sweep_results import laws_text, results_table, row_of, write_csv
from raysym.sweep_tracking import (
    Distiller,
    distil_left_over,
    distill_summaries,
    saved_trials,
    tracking_callback,
    verdict_of,
)
from raysym.sweep_trainable import INJECT_ENV, trainable

# --------------------------------------------------------------------------------------------------
# 1. Plan: raysym.sweep_plan
# 2. Data
# --------------------------------------------------------------------------------------------------


def prepare_data(specs: list[TrialSpec], say: Callable[[str], None], address: str | None = None) -> None:
    """Make, reuse or read every trial's data before Tune starts, as the sweep's trial kind does it."""
    if specs:
        trial_kind.get(specs[0].kind).prepare_data(specs, say, address)


# --------------------------------------------------------------------------------------------------
# 3. The Tune trainable: raysym.sweep_trainable
# 4. Running the sweep
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepOutcome:
    rows: list[dict[str, Any]]
    experiment_path: str
    parent_run_id: str | None
    table: str
    interrupted: bool = False


def _find_parent(tracker: track.MLflowTracker, name: str) -> str | None:
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`{track.SWEEP_TAG}` = {track.quoted(name)}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _search_alg(cfg: SweepConfig):
    import optuna

    from raysym._optuna import EndOfTrialOptunaSearch

    s = cfg.search
    sampler = (
        optuna.samplers.TPESampler(seed=s.seed) if s.sampler == "tpe" else optuna.samplers.RandomSampler(seed=s.seed)
    )
    storage = optuna_storage(s.storage)
    return EndOfTrialOptunaSearch(
        metric=s.metric, mode=s.mode, sampler=sampler, study_name=s.study or cfg.name, storage=storage
    )


def optuna_storage(url: str):
    """The Optuna study store at ``url``, or one paragraph saying why it cannot be opened (a database server
    that does not answer, a driver that is not installed, a sqlite file in a missing folder)."""
    import optuna

    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 -- SQLAlchemy and the drivers raise many kinds
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"The Optuna study store search.storage '{url}' cannot be opened ({type(exc).__name__}: {reason}). Use "
            "sqlite:///optuna.db (a local file), or the URL of a database server that answers and whose Python driver "
            "is installed (postgresql:// needs psycopg2, mysql:// needs pymysql)."
        ) from None


def trial_scheduler(cfg: SweepConfig, specs: list[TrialSpec]):
    """Tune's trial scheduler: None (FIFO) or ASHA, comparing trials by the trial kind's per-epoch error
    (N-body: ``val/mae``, the validation split's; the test split decides nothing)."""
    if cfg.scheduler.kind != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # Time is the epoch each result reports (halo trials report every report_every epochs), so grace_period
    # counts epochs for both kinds. max_t lies past the last epoch: ASHA stops any trial that reaches max_t,
    # and the final result (the message analysis) repeats the last epoch.
    return ASHAScheduler(
        metric=trial_kind.get(specs[0].kind).schedule_metric,
        mode="min",  # per epoch; the search's own metric comes at the end
        time_attr="epoch",
        max_t=max(s.epochs() for s in specs) + 1,
        grace_period=cfg.scheduler.grace_period,
        reduction_factor=cfg.scheduler.reduction_factor,
    )


def _param_space(cfg: SweepConfig, specs: list[TrialSpec]) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    # Each trial carries its swept settings into Tune beside its key (Tune's table, params.json, the
    # results dataframe): values looked up from the key the grid chose.
    swept = {s.key: {k: _tune_value(v) for k, v in s.params.items()} for s in specs}
    if cfg.search.kind == "grid":
        space["key"] = tune.grid_search([s.key for s in launch_order(specs)])
        for name in dict.fromkeys(k for p in swept.values() for k in p):
            space[name] = tune.sample_from(lambda spec, name=name: swept[spec.config.key].get(name))
    else:  # one point (check_search)
        space["key"] = specs[0].key
        space.update(swept[specs[0].key])
        for key, rng in cfg.search.space.items():
            space[key] = tune.loguniform(rng.low, rng.high) if rng.log else tune.uniform(rng.low, rng.high)
    injected = os.environ.get(INJECT_ENV)
    if injected:
        epoch, marker = injected.split(":", 1)
        space["inject_crash"] = {"epoch": int(epoch), "marker": marker}
    return space


def _tune_value(value: Any) -> Any:
    """A swept value as Tune shows and logs it: numbers, strings and booleans as they are, the rest as text."""
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


def run_sweep(
    cfg: SweepConfig,
    *,
    address: str | None = None,
    resume: bool = False,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
    verbose: int = 1,
    only: dict[str, list[str]] | None = None,
) -> SweepOutcome:
    """Plan, make the data, run every trial on Ray Tune and track them in MLflow; see the module doc.

    ``only`` (setting -> values, ``raysym sweep --only``) runs the slice of the grid that matches it."""
    cfg.validate()  # a SweepConfig built in Python skipped the YAML loader's checks (its name becomes a folder)
    specs = select(plan(cfg), only or {})
    if only:  # a slice is a sweep of its own, beside the others of this YAML
        cfg = dataclasses.replace(cfg, name=slice_name(cfg.name, only))
        cfg.validate()
    check_search(cfg, specs)
    path = experiment_path(cfg)
    if address is None:  # on a cluster the trials run on other machines, checked once Ray is joined
        check_memory(specs)
        check_resources(cfg)
        if cfg.distill is not None:  # before hours of training, not at the first distillation
            from raysym.distill import get_backend

            get_backend(cfg.distill)
    if dry_run:
        text = describe_plan(cfg, specs)
        say(text)
        return SweepOutcome([], path, None, text)

    if "://" not in path:
        track.check_writable_folder(path, "The sweep's Tune folder", "storage")
        # Only data still to be made needs a writable root: a read-only one holding every dataset is used
        # as `raysym train` uses it (the manifest's folder name carries the parameters' hash).
        made = all((Path(s.data_dir) / "dataset.json").is_file() for s in specs)
        if trial_kind.get(cfg.trial_kind).writes_data_root and not made:
            track.check_writable_folder(cfg.data_root, "The data folder", "data.root")
        folders = disk_folders(cfg, path, with_data=not made)
        disk.require_free(folders, cfg.resources.disk_reserve_mb, "Nothing was started.")
    # The stores last: opening a new sqlite store creates its file, which a refusal above must not leave behind
    track.check_reachable(cfg.tracking.uri)
    if cfg.search.kind == "optuna":
        optuna_storage(cfg.search.storage)
    with sweep_lock(path, cfg.name):
        return _run_locked(cfg, specs, path, address, resume, say, verbose)


def disk_folders(cfg: SweepConfig, path: str, with_data: bool = True) -> dict[str, str]:
    """The local folders a sweep writes to, by what they are: its Tune folder, the data (``with_data``: when
    some is still to be made), a sqlite MLflow store."""
    folders = {"the sweep's Tune folder": path}
    if with_data:
        folders["the data folder"] = cfg.data_root
    if cfg.tracking.uri.startswith("sqlite:///"):
        folders["the MLflow database"] = str(Path(cfg.tracking.uri[len("sqlite:///") :]).parent)
    return folders


@contextlib.contextmanager
def sweep_lock(path: str, name: str):
    """Hold ``<storage>/.<name>.lock`` for the life of this driver, so that a second driver on the same sweep
    (two terminals, a script started twice) is refused instead of writing the same Tune state and MLflow runs.
    An advisory ``flock``: the kernel lets go when the process ends, however it ends, so a killed driver never
    leaves a stale lock behind. Remote storage (``s3://``) and systems without ``fcntl`` go unlocked."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        fcntl = None
    if "://" in path or fcntl is None:
        yield
        return
    lock = Path(path).parent / f".{Path(path).name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"Sweep '{name}' is running already ({holder}); a second driver would write the same Tune state "
            f"({path}) and MLflow runs. Wait for it to end, or stop it (Ctrl-C) and continue it with --resume; "
            "to run another sweep beside it, give this one another name (the YAML's name key)."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    try:
        yield
    finally:
        handle.close()  # lets go of the lock; the file stays (removing it could race a waiting driver)


def _run_locked(
    cfg: SweepConfig,
    specs: list[TrialSpec],
    path: str,
    address: str | None,
    resume: bool,
    say: Callable[[str], None],
    verbose: int,
) -> SweepOutcome:
    """run_sweep, once the plan is checked and this driver holds the sweep's lock."""
    from ray import tune

    from raysym._ray import ensure_ray, node_resources

    local = "://" not in path
    record = plan_record(cfg, specs)
    if local and resume:
        if not tune.Tuner.can_restore(path) or not _has_tune_state(path):
            raise UserError(
                f"There is no interrupted sweep '{cfg.name}' to resume in {path}. Run without --resume to start it."
            )
        if not check_same_plan(path, record, cfg.name):
            say(
                f"note: sweep '{cfg.name}' was started by a raysym that kept no plan, so this YAML cannot be checked "
                "against it; make sure it is unchanged."
            )
    if local and not resume and Path(path).exists() and any(p.name != PLAN_FILE for p in Path(path).iterdir()):
        if not _has_tune_state(path):
            raise UserError(
                f"{path} exists but holds no saved sweep progress (a start killed before its first trial, or a "
                f"folder of another program), so it can neither be resumed nor safely reused. Delete it, or give "
                "this sweep another name (the YAML's name key) or storage."
            )
        raise UserError(
            f"A sweep named '{cfg.name}' already exists in {path}. Continue it with --resume, or give this "
            "sweep another name (the YAML's name key), or delete that folder to start over."
        )
    ensure_ray(address)
    if address is not None:
        check_resources(
            cfg, node_resources(), where="this Ray cluster (its nodes and the node types its autoscaler may add)"
        )
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
    existed = Path(path).exists()
    try:
        return _tune(cfg, specs, path, record, resume, tracker, parent_id, say, verbose)
    except BaseException as exc:
        with _ctrl_c_held():
            _end_parent_after(tracker, parent_id, exc)
        if local and not existed and not _has_tune_state(path):
            # Tune failed before it saved any state: what it left (tuner.pkl, a marker, the plan) cannot be
            # resumed and would only block starting the sweep again.
            shutil.rmtree(path, ignore_errors=True)
        raise


def _has_tune_state(path: str) -> bool:
    return any(Path(path).glob("experiment_state-*.json"))


def _end_parent_after(tracker: track.MLflowTracker, parent_id: str, exc: BaseException) -> None:
    """End the sweep's parent run after a failure (KILLED after an interrupt), so that MLflow never
    shows a dead sweep as RUNNING; --resume sets it running again."""
    if _cause(exc, track.TrackingUnavailable) is not None:
        return  # the store is away: nothing can be recorded, and --resume will set it right
    status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
    try:
        tracker.set_tags(parent_id, {"raysym.failure": f"{type(exc).__name__}: {exc}"[:1000]})
        children = tracker.client.search_runs(
            [tracker.experiment_id],
            filter_string=f"tags.`{track.PARENT_TAG}` = {track.quoted(parent_id)} and attributes.status = 'RUNNING'",
        )
        for run in children:  # the trials it was running: continued (set RUNNING again) by --resume
            tracker.end_run(run.info.run_id, "KILLED")
        tracker.end_run(parent_id, status)
    except Exception:  # noqa: BLE001 -- the original error is the one to report
        pass


def _tune(
    cfg: SweepConfig,
    specs: list[TrialSpec],
    path: str,
    record: dict[str, Any],
    resume: bool,
    tracker: track.MLflowTracker,
    parent_id: str,
    say: Callable[[str], None],
    verbose: int,
) -> SweepOutcome:
    """Stages 3 to 5 (Tune, tracking, the results table), once the data and the parent run exist."""
    from ray import tune

    local = "://" not in path
    writer = track_writer.start(tracker.uri)  # the callback's and distiller's writes, off Tune's loop
    distiller = (
        Distiller(cfg, tracker, Path(path) / "distill") if cfg.distill is not None and "://" not in path else None
    )
    callback = tracking_callback(tracker, parent_id, {s.key: s for s in specs}, cfg.swept_keys(), distiller)
    # Stops the sweep (resumable) when a disk runs low; Tune keeps it with the experiment for --resume.
    guard = disk.guard_callback(
        disk_folders(cfg, path, with_data=False), cfg.resources.disk_reserve_mb, path, "continue it with --resume."
    )

    # Per-epoch results cannot carry the search metric (the message R² exists only once training ends);
    # Tune's strict check would fail them. A trial stopped before the end counts as pruned in Optuna.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Checkpoints every epoch are the point (retries resume from them); Tune's warning about the
    # experiment snapshots they trigger is noise for trials of this size.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's default loggers are CSV, JSON and TensorBoard; the TensorBoard one imports torch into the driver
    # (the driver of a tiny sweep: 5.2 -> 4.1 CPU-s without it) and writes every result again as events (MLflow
    # holds the metrics). CSV and JSON are passed below: Tune's result files and its resume read them.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if local:
        # Save the experiment state once a second: Tune's "auto" default waits 10 s or more, and after every
        # step of its loop (ten a second) the saves took about a fifth of a core in a long sweep's driver
        # (BENCHMARKS.md, "A quiet driver"). A driver killed outright (SIGKILL, a lost head node) between two
        # saves can leave a state naming a checkpoint Tune deleted since (it keeps a trial's last two):
        # --resume puts it back from the trial's newest (disk.restore_named_checkpoints).
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    r = cfg.resources
    fn = tune.with_resources(
        tune.with_parameters(
            trainable,
            specs={s.key: dataclasses.asdict(s) for s in specs},
            kinds={s.kind: trial_kind.get(s.kind) for s in specs},
        ),
        {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial},
    )
    if resume:
        if local:
            disk.repair_state(path, say)  # state files a full disk cut short, from the guard's copies
            disk.restore_named_checkpoints(path, say)  # deleted after the last save of a driver killed outright
            _restore_snapshot_period(path, os.environ["TUNE_GLOBAL_CHECKPOINT_S"])
        tuner = tune.Tuner.restore(path, fn, resume_unfinished=True, resume_errored=True)
        if distiller is not None:
            # Tune restores its own copy of the callback (and of its distiller): this one is ours alone, so it
            # finishes here, before any trial starts. Left running beside Tune, its actors would hold the
            # CPUs the waiting trials need, and nothing in Tune's loop would ever release them.
            distil_left_over(path, tracker, distiller, say)
            distiller.finish()
    else:
        scheduler = trial_scheduler(cfg, specs)
        optuna = cfg.search.kind == "optuna"
        tuner = tune.Tuner(
            fn,
            param_space=_param_space(cfg, specs),
            tune_config=tune.TuneConfig(
                search_alg=_search_alg(cfg) if optuna else None,
                scheduler=scheduler,
                num_samples=cfg.search.trials if optuna else 1,
                max_concurrent_trials=r.max_concurrent_trials,
                # One worker trains one trial after another: torch, its compiler front end (imported by the
                # first optimiser) and matplotlib load once per worker, not once per trial (about 6 of a
                # trivial trial's 10 CPU-seconds; BENCHMARKS.md, "Sweep overhead"). Each trial seeds
                # everything it draws from, so a reused worker gives the numbers of a fresh one
                # (tests/e2e/test_reused_actors.py).
                reuse_actors=True,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=cfg.name,
                storage_path=path.rsplit("/", 1)[0],
                failure_config=tune.FailureConfig(max_failures=r.retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[callback, guard, *_result_loggers()] if local else [callback, *_result_loggers()],
                verbose=verbose,
            ),
        )
    if local:
        save_plan(path, record)  # what --resume compares against
    disk.stop_requested()  # a stop asked of an earlier sweep in this process is not this one's
    # Ray's core worker asks the driver for a full garbage collection every few tens of seconds; over the
    # heap of torch, MLflow, Ray and Tune (a few hundred thousand objects) each took about a second: 4.3
    # points of a core in a long sweep's driver (BENCHMARKS.md, "A quiet driver"). Frozen, what exists now is left
    # out of every collection until the sweep ends.
    gc.collect()
    gc.freeze()
    try:
        grid = tuner.fit()  # the callback waits for the last distillations before this returns
        writer.flush()  # an interrupted sweep's last writes (Tune skips on_experiment_end then)
        low_disk = disk.stop_requested()  # the disk guard stopped Tune as Ctrl-C does (its state saved last)
        if low_disk is not None:
            disk.backup_state(path, None)  # raysym's copy of that last state, for a file a full disk cuts short
            raise low_disk
    except Exception as exc:  # noqa: BLE001 -- Tune wraps what its callbacks raise
        cause = _cause(exc, track.TrackingUnavailable) or _cause(exc, disk.DiskFull)
        if cause is None and disk.is_full(exc):  # a write of Tune's own (a trial's checkpoint, its state)
            cause = disk.explain(
                exc, "writing the sweep's files (checkpoints, Tune's state)", "continue it with --resume"
            )
        with _ctrl_c_held():
            _flush_quietly(writer, cfg.tracking.patience_s)
        if cause is None:
            raise
        raise cause from None
    except BaseException:
        with _ctrl_c_held():  # a Ctrl-C pressed again must not cut this short (the runs would stay RUNNING)
            _flush_quietly(writer, cfg.tracking.patience_s)  # before the parent run is ended KILLED
        raise
    finally:
        gc.unfreeze()  # collectable again: a process that runs sweeps one after another keeps no garbage
    summaries = distill_summaries(Path(path) / "distill") if cfg.distill is not None else {}
    by_key = {s.key: s for s in specs}
    unfinished = _unfinished_trials(path)  # left PENDING by an interruption (Ctrl-C, SIGTERM)
    rows = [row_of(result, by_key, interrupted=unfinished) for result in grid]
    for row in rows:
        if cfg.distill is not None:
            summary = summaries.get(row.get("trial_id"))
            row["law"] = verdict_of(summary) if summary else "-"
            if not summary and row["status"] == "finished":  # never a silent "-" beside a finished trial
                row["law"] = "not distilled"
                row["reason"] = row["reason"] or "its distillation did not finish; --resume distils it"
    table = results_table(rows, trial_kind.get(cfg.trial_kind).results_columns)
    if summaries:
        table += "\n\n" + laws_text(rows, summaries)
    say(table)
    write_csv(rows, path)
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


@contextlib.contextmanager
def _ctrl_c_held():
    """Ignore Ctrl-C while an interrupted sweep records its end. Users press it two or three times; Tune
    answers the first, the second interrupts Tune's own stop, and a third landing in the middle of this
    clean-up once left the writer thread's queued MLflow writes to land after the runs were ended KILLED (a
    trial run left RUNNING for ever). The clean-up is bounded by the store's patience."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _result_loggers() -> list:
    """Tune's result.json and progress.csv per trial (its default loggers less TensorBoard's, see above)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [CSVLoggerCallback(), JsonLoggerCallback()]


def _restore_snapshot_period(path: str, period: str) -> None:
    """Give a resumed sweep this raysym's snapshot period. Tune restores the period from its saved state, so
    a sweep started with another one (another raysym, a TUNE_GLOBAL_CHECKPOINT_S of the user's) kept it on
    every --resume. The state files are rewritten under a temporary name, then renamed; one that cannot be
    read is left as it is (Tune reports it)."""
    for state_file in Path(path).glob("experiment_state-*.json"):
        try:
            state = json.loads(state_file.read_text())
            if state["runner_data"].get("_checkpoint_period") == period:
                continue
            state["runner_data"]["_checkpoint_period"] = period
        except (OSError, ValueError, KeyError, TypeError):
            continue
        tmp = state_file.with_name(f".{state_file.name}.raysym-tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, state_file)


def _flush_quietly(writer: track_writer.Writer, timeout: float) -> None:
    """Let the writes already queued land before the sweep's failure is recorded (else a late "FINISHED"
    could overwrite a "KILLED"); their own errors are not the failure to report."""
    try:
        writer.flush(timeout)
    except BaseException:  # noqa: BLE001
        pass


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
    try:
        trials = saved_trials(path)
    except Exception:  # no saved state (e.g. remote storage not readable here): nothing to report
        return set()
    return {t.trial_id for t in trials if t.status in ("PENDING", "RUNNING", "PAUSED")}


def _trial_name(trial) -> str:
    return f"{trial.config.get('key', 'trial')}_{trial.trial_id}"
