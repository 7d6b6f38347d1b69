"""Experiment tracking behind one small interface, with MLflow as the implementation.

A sweep is one parent run; each trial is a child run (tag ``mlflow.parentRunId``, which the MLflow UI
shows as nesting). Child runs carry the swept settings as params (and nothing else, so the UI's
comparison views stay readable), every other setting as tags, per-epoch metrics with namespaced names
(``train/loss``, ``test/mae``, ``messages/r2_force``, ...) and the trial's files as artifacts.

Runs are addressed by id through ``MlflowClient``, never through MLflow's global "active run", so the
Tune callback can keep many trials open at once. A trial's child run is found again by its tag
``raysym.trial_id``, which is how a resumed sweep continues its runs instead of duplicating them.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Protocol

from raysym.errors import UserError

TRIAL_TAG = "raysym.trial_id"
SWEEP_TAG = "raysym.sweep"
PARENT_TAG = "mlflow.parentRunId"
STOPPED_TAG = "raysym.stopped_early"  # why a scheduler stopped a trial (its run ends KILLED)


def source_tags() -> dict[str, str]:
    """What produced a run, as MLflow's own source tags (the UI shows them): the command, raysym's version
    and, when raysym runs from a git checkout, the commit (``raysym.git_dirty`` when the checkout had
    uncommitted changes to tracked files). Computed once per process."""
    global _SOURCE
    if _SOURCE is None:
        import subprocess
        from importlib.metadata import PackageNotFoundError, version

        try:
            raysym_version = version("raysym")
        except PackageNotFoundError:
            raysym_version = "unknown"
        _SOURCE = {
            "mlflow.source.type": "LOCAL",
            "mlflow.source.name": " ".join(["raysym", *sys.argv[1:3]]) if sys.argv else "raysym",
            "raysym.version": raysym_version,
        }
        where = str(Path(__file__).resolve().parent)

        def git(*args: str) -> str | None:
            try:
                out = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.SubprocessError):  # no git, or a hung one
                return None
            return out.stdout.strip() if out.returncode == 0 else None

        commit = git("rev-parse", "HEAD")
        if commit:  # a checkout (an installed wheel has no commit to name)
            _SOURCE["mlflow.source.git.commit"] = commit
            if git("status", "--porcelain", "--untracked-files=no"):
                _SOURCE["raysym.git_dirty"] = "true"
    return dict(_SOURCE)


_SOURCE: dict[str, str] | None = None


def quoted(value: str) -> str:
    """``value`` as a string literal of an MLflow search filter. MLflow's filter language has no escapes: a
    value is wrapped in the quote it does not contain (so "x' OR tags.a = 'b" stays one value, never a
    clause of the filter), and a value holding both quotes cannot be searched for at all."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise UserError(
        f"The name {value!r} holds both kinds of quote (' and \"), which an MLflow search cannot express. "
        "Use a name without quotes, or pass the sweep's parent run id."
    )


class Tracker(Protocol):
    def find_trial(self, trial_id: str) -> str | None:
        """The run id of a trial's child run, if there is one."""
        return self._find(TRIAL_TAG, trial_id)

    def start_sweep(self, name: str, tags: dict[str, str]) -> str: ...
    def start_trial(
        self,
        parent_id: str,
        trial_id: str,
        name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        start_time: float | None = None,
    ) -> str: ...
    def log_metrics(self, run_id: str, metrics: dict[str, Any], step: int) -> None: ...
    def logged_steps(self, run_id: str, key: str) -> set[int]: ...
    def logged_keys(self, run_id: str) -> set[str]: ...
    def log_artifacts(self, run_id: str, folder: str | Path, artifact_path: str | None = None) -> None: ...
    def end_run(self, run_id: str, status: str = "FINISHED", end_time: float | None = None) -> None: ...


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail early, with a fix, when the tracking URI cannot work (before any trial starts)."""
    if uri.startswith(("http://", "https://")):
        _check_mlflow_server(uri, timeout)
    elif uri.startswith("sqlite:///"):
        _check_sqlite(uri, Path(uri[len("sqlite:///") :]).expanduser().resolve())
    elif "://" not in uri:
        raise UserError(
            f"tracking.uri '{uri}' is not a URI. Use sqlite:///mlflow.db (a local database) or the "
            "http:// address of an MLflow tracking server."
        )
    elif uri.split("://", 1)[0].split("+", 1)[0].lower() not in _STORE_SCHEMES:
        raise UserError(
            f"The tracking URI '{uri}' names a kind of store MLflow cannot keep runs in "
            f"('{uri.split('://', 1)[0]}'). Use sqlite:///mlflow.db (a local database), the http(s):// address of an "
            "MLflow tracking server, a database URL (postgresql://, mysql://) or file:///a/folder."
        )


# The tracking stores MLflow's client opens (a database dialect may carry a driver: postgresql+psycopg2://)
_STORE_SCHEMES = {"sqlite", "file", "databricks", "uc", "postgresql", "mysql", "mssql", "oracle"}


_START_SERVER = (
    "Start it (e.g. `mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000`), fix "
    "tracking.uri in the sweep YAML, or leave tracking.uri out to use the local database sqlite:///mlflow.db."
)


def _check_mlflow_server(uri: str, timeout: float) -> None:
    """Ask the server an MLflow question (the Default experiment, by name), not just for /health, which any
    web service may answer: an MLflow server replies with JSON, an experiment or an MLflow error code."""

    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(65536)
    except urllib.error.HTTPError as exc:  # MLflow answers a missing experiment with 404 and a JSON error
        if exc.code in (401, 403):  # a server behind a login: MLflow's client brings the credentials
            return
        body = exc.read(65536) if exc.fp is not None else b""
        if not _mlflow_json(body):
            raise UserError(
                f"{uri} answers, but not as an MLflow tracking server (HTTP {exc.code} to an MLflow API request, "
                "without MLflow's JSON). Check the address and port in tracking.uri. " + _START_SERVER
            ) from None
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"The MLflow tracking server at {uri} cannot be reached ({reason}). " + _START_SERVER) from None
    if not _mlflow_json(body):
        raise UserError(
            f"{uri} answers, but not as an MLflow tracking server (its reply to an MLflow API request is not "
            "MLflow's JSON). Check the address and port in tracking.uri. " + _START_SERVER
        )


def _mlflow_json(body: bytes) -> bool:
    import json

    try:
        reply = json.loads(body)
    except ValueError:
        return False
    return isinstance(reply, dict) and ("experiment" in reply or "error_code" in reply)


def split_values(values: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """(numeric metrics, everything else as tag strings). Booleans become 0/1 metrics; lists and
    strings become tags; NaN and None are dropped (MLflow stores NaN, but it breaks the UI's charts)."""
    metrics, tags = {}, {}
    for key, value in values.items():
        if isinstance(value, bool):
            metrics[key] = float(value)
        elif isinstance(value, (int, float)):
            if math.isfinite(value):
                metrics[key] = float(value)
        elif value is not None:
            tags[key] = str(value)
    return metrics, tags


# MLflow error codes that no amount of waiting fixes (a bad request, a missing run); anything else from
# the store (TEMPORARILY_UNAVAILABLE for a locked sqlite file, a refused connection) is worth a retry.
_PERMANENT = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
    "BAD_REQUEST",
    "INVALID_STATE",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "ENDPOINT_NOT_FOUND",
}


class TrackingUnavailable(UserError):
    """The tracking store stopped answering for longer than the sweep's patience."""


def _check_sqlite(uri: str, path: Path) -> None:
    """The local database must be creatable, or be an SQLite file this user can write (MLflow would
    otherwise fail on its first write, after the data stage and Ray have run, with a driver's error)."""
    fix = "choose another tracking.uri (e.g. sqlite:///mlflow.db)"
    if not path.parent.is_dir():
        raise UserError(
            f"The MLflow database {uri} lies in a folder that does not exist ({path.parent}). "
            f"Create the folder or {fix}."
        )
    if path.is_dir():
        raise UserError(f"The MLflow database {uri} names a folder, not a file. Add a file name, or {fix}.")
    if not path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise UserError(
                f"The MLflow database {uri} cannot be created: the folder {path.parent} is not writable. "
                f"Make it writable or {fix}."
            )
        _create_store(uri, path)
        return
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise UserError(
            f"The MLflow database {uri} cannot be read ({exc.strerror}). Fix its permissions or {fix}."
        ) from None
    if header and header != b"SQLite format 3\x00":
        raise UserError(
            f"{path} is not an SQLite database (it starts with {header[:8]!r}), so MLflow cannot record "
            f"runs in it. Point tracking.uri at another file (nothing was changed in this one), or {fix}."
        )
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        where = path if not os.access(path, os.W_OK) else f"its folder {path.parent} (SQLite writes a journal there)"
        raise UserError(
            f"The MLflow database {uri} is read-only here: {where} is not writable. Make it writable or {fix}."
        )
    _create_store(uri, path)  # a file another program has only begun: wait until its tables are made


def _create_store(uri: str, path: Path) -> None:
    """Make a new sqlite store's tables while holding a lock beside it (``.<name>.raysym-lock``). Two programs
    that open a brand-new file at the same instant (two sweeps started together) both tried to create its
    tables, and one failed with "table experiments already exists". The second waits here, then finds
    the tables made."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: left to MLflow
        return
    with open(path.with_name(f".{path.name}.raysym-lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, however this process ends
        PatientClient(uri).search_experiments(max_results=1)  # opening the store makes its tables


def check_writable_folder(folder: str | Path, what: str, key: str) -> None:
    """Refuse, before anything starts, an output folder that cannot be created or written: the nearest
    existing folder above it must be a writable folder."""
    path = Path(folder).expanduser().resolve()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what} {path} cannot be created: {probe} is a file, not a folder. Choose another {key}.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(
            f"{what} {path} cannot be written: {probe} is not writable by this user. Make it writable "
            f"or choose another {key}."
        )


class PatientClient:
    """An ``MlflowClient`` whose every call is retried, with growing pauses, while the store is only
    temporarily unavailable (a sqlite file locked by another writer, a tracking server restarting), for
    up to ``patience_s`` seconds; then :class:`TrackingUnavailable`. Retrying a call whose reply was lost
    can log a metric value twice at the same step; it never loses one."""

    def __init__(self, uri: str, patience_s: float = 120.0, say: Callable[[str], None] | None = None):
        from mlflow.tracking import MlflowClient

        # MLflow's own HTTP retries would wait minutes before this class sees the failure.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        self.uri, self.patience_s, self._say = uri, patience_s, say or _to_stderr
        # MLflow's sqlite store logs each failed query, traceback and all, and then raises it: the raised error
        # is what this class waits out or reports in one paragraph, so the log would be a second, louder copy.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        if uri.startswith("sqlite:"):
            _cap_sqlite_busy_wait()
        # Opening a sqlite store reads its schema: a store locked by another writer fails here already.
        self._client = self._retry("opening the store", MlflowClient, (), {"tracking_uri": uri})

    def __getattr__(self, name: str):
        if name.startswith("_"):  # not a client method (and no recursion while unpickling)
            raise AttributeError(name)
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            return self._retry(name, attr, args, kwargs)

        return call

    def call(self, name: str, fn, *args, only_locked: bool = False, **kwargs):
        """``fn(*args, **kwargs)`` (an MLflow call outside the client: ``mlflow.artifacts``), as patiently;
        ``only_locked``: retry only a locked sqlite store (where a missing file would look transient too)."""
        return self._retry(name, fn, args, kwargs, only_locked)

    def _retry(self, name: str, fn, args, kwargs, only_locked: bool = False):
        deadline = time.monotonic() + self.patience_s
        pause, said = 0.5, False
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- sorted into transient and permanent below
                if not (_locked(exc) if only_locked else _transient(exc)):
                    raise
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                if time.monotonic() + pause > deadline:
                    raise TrackingUnavailable(
                        f"The MLflow tracking store {self.uri} did not answer for {self.patience_s:.0f} s ({name}: "
                        f"{reason}). Nothing was recorded as finished without its metrics (a sweep's trials keep "
                        "their progress). Make the store reachable (start the tracking server, or close the "
                        "program holding the sqlite file) and run the command again (a sweep: with --resume); "
                        "raise tracking.patience_s to wait longer."
                    ) from None
                if not said:
                    self._say(
                        f"MLflow store {self.uri} unavailable ({reason}); retrying for up to {self.patience_s:.0f} s"
                    )
                    said = True
                time.sleep(pause)
                pause = min(pause * 2, 10.0)


# MLflow tells sqlite to wait up to 20 s for a store that another program holds, on every session
# (mlflow.store.db.utils: "PRAGMA busy_timeout = 20000"): one call then sat silent for 20 s, whatever
# tracking.patience_s said (a patience of 5 s waited 20). Capped, the waiting is PatientClient's: its line on
# the console after ~2 s, and the patience kept to within one wait. 2 s is still 100x a metric write's
# transaction, so two sweeps sharing a store take turns without a retry.
SQLITE_BUSY_S = 2.0


@functools.lru_cache(maxsize=1)
def _cap_sqlite_busy_wait() -> None:
    """In this process, every SQLAlchemy engine's ``PRAGMA busy_timeout`` (MLflow's) becomes SQLITE_BUSY_S.
    Only that statement is touched; a store opened without one keeps sqlite3's own 5-s default."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    capped = f"PRAGMA busy_timeout = {int(SQLITE_BUSY_S * 1000)};"

    def shorter_busy_wait(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("PRAGMA busy_timeout"):  # MLflow's, verbatim (tests/e2e/test_tracking_writer.py)
            return capped, parameters
        return statement, parameters

    event.listen(Engine, "before_cursor_execute", shorter_busy_wait, retval=True)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _transient(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT
    if type(exc).__name__ == "OperationalError":
        return _locked(exc)
    return isinstance(exc, (OSError, ConnectionError, TimeoutError))


def _locked(exc: Exception) -> bool:
    """A sqlite store that another writer holds (raw sqlite3, through SQLAlchemy, or wrapped by MLflow)."""
    return any(word in str(exc) for word in ("database is locked", "database is busy"))


@functools.lru_cache(maxsize=8)
def patient_client(uri: str) -> PatientClient:
    """One PatientClient per store and process (opening a sqlite store reads its schema: once is enough)."""
    return PatientClient(uri)


class MLflowTracker:
    """The Tracker on MLflow (any tracking URI: the local sqlite default or a server). Every call to
    the store is patient (see :class:`PatientClient`)."""

    def __init__(self, uri: str, experiment: str, patience_s: float = 120.0):
        self.uri = uri
        self.client = PatientClient(uri, patience_s)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)

    @classmethod
    def for_experiment_id(cls, uri: str, experiment_id: str, patience_s: float = 120.0) -> "MLflowTracker":
        """A tracker on an existing experiment, known by id (e.g. the experiment of a given run)."""
        tracker = cls.__new__(cls)
        tracker.uri, tracker.client, tracker.experiment_id = uri, PatientClient(uri, patience_s), experiment_id
        return tracker

    def _find(self, key: str, value: str) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{key}` = {quoted(value)}", max_results=1
        )
        return runs[0].info.run_id if runs else None

    def find_trial(self, trial_id: str) -> str | None:
        """The run id of a trial's child run, if there is one."""
        return self._find(TRIAL_TAG, trial_id)

    def start_sweep(self, name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={**source_tags(), SWEEP_TAG: name, **tags})
        return run.info.run_id

    def start_trial(
        self,
        parent_id: str,
        trial_id: str,
        name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        start_time: float | None = None,
    ) -> str:
        """The child run of ``trial_id``: the existing one (a resumed sweep) or a new one, started at
        ``start_time`` (seconds since the epoch; default now)."""
        from mlflow.entities import Param, RunTag

        tags = {k: str(v)[:5000] for k, v in tags.items()}  # MLflow tags are strings of bounded length
        run_id = self._find(TRIAL_TAG, trial_id)
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            start_time=None if start_time is None else int(start_time * 1000),
            tags={**source_tags(), PARENT_TAG: parent_id, TRIAL_TAG: trial_id, **tags},
        )
        self.client.log_batch(
            run.info.run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: dict[str, Any], step: int) -> None:
        """Numeric values as metrics at ``step``; the rest (lists, strings) as tags. One request. Every
        namespaced key must be named in raysym.metrics."""
        from mlflow.entities import Metric, RunTag

        from raysym import metrics as names

        names.check(metrics)
        numeric, tags = split_values(metrics)
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v in numeric.items()],
            tags=[RunTag(k, v[:5000]) for k, v in tags.items()],
        )

    def logged_steps(self, run_id: str, key: str) -> set[int]:
        """The steps at which ``key`` was logged on the run (a resumed trial's epochs)."""
        return {m.step for m in self.client.get_metric_history(run_id, key)}

    def logged_keys(self, run_id: str) -> set[str]:
        """The names of the metrics logged on the run so far."""
        return set(self.client.get_run(run_id).data.metrics)

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_artifacts(self, run_id: str, folder: str | Path, artifact_path: str | None = None) -> None:
        """The files of ``folder`` as the run's artifacts, under ``artifact_path`` (default: at the top)."""
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED", end_time: float | None = None) -> None:
        """End a run with ``status`` at ``end_time`` (seconds since the epoch; default now)."""
        self.client.set_terminated(run_id, status=status, end_time=None if end_time is None else int(end_time * 1000))
