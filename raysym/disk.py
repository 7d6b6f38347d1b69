"""Free disk space: a full disk is a clean stop with a sweep that resumes, never a traceback or a
half-written state file.

Three guards, in the order a sweep meets them:

1. **Before it starts** (``require_free``): the folders a sweep writes to (its Tune storage, the data root,
   a local MLflow database) must each have ``resources.disk_reserve_mb`` free.
2. **While it runs** (``guard_callback``, a Tune callback): every second the driver reads the free
   space of those folders; below the reserve it stops the sweep the way Ctrl-C does (``request_stop``:
   Tune's own stop signal, so Tune writes its state one last time, naming the newest checkpoints), and the
   sweep then ends with ``DiskFull``, so that ``--resume`` continues once space is freed. The reserve is
   there so the stop comes *before* a write fails: Tune copies its experiment state into the storage folder without a
   temporary name, so a write cut short by a full disk leaves a truncated ``experiment_state-*.json``
   that Tune cannot restore (it then starts the sweep's trials afresh, without their settings). A trial
   that fails with "No space left on device" anyway (another program filled the disk between two
   checks) stops the sweep the same way.
3. **When it resumes** (``repair_state``): the guard keeps a copy of Tune's last readable state files in
   ``<storage>/.raysym_state``; a state file left truncated is replaced by that copy before Tune reads it.
   Then ``restore_named_checkpoints`` puts back any checkpoint that state names but that Tune deleted after
   saving it (a driver killed outright between two saves).

Outside sweeps, any write that meets a full disk ends in one paragraph (``explain``, used by the CLI).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from raysym.errors import UserError

BACKUP = ".raysym_state"  # inside the sweep's Tune folder
STATE_GLOB = "experiment_state-*.json"
# The searchers' states beside it (pickles, whatever their suffix): Tune's grid, search generator, Optuna
SEARCHER_GLOBS = ("basic-variant-state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")
CHECK_EVERY_S = 1.0  # seconds between two looks at the free space
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXT = ("No space left on device", "[Errno 28]", "Disk quota exceeded", "[Errno 122]")


_ALL_GLOBS = (STATE_GLOB, *SEARCHER_GLOBS)


class DiskFull(UserError):
    """The disk holding a folder raysym writes to is full (or under the sweep's reserve)."""


def free_bytes(path: str | Path) -> int:
    """Free bytes for this user on the file system holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def require_free(folders: dict[str, str | Path], reserve_mb: float, resume_hint: str) -> None:
    """Raise DiskFull when a folder in ``folders`` (what it is -> path) has less than ``reserve_mb`` free."""
    for what, folder in folders.items():
        free = free_bytes(folder)
        if free < reserve_mb * 2**20:
            raise DiskFull(
                f"The disk holding {what} ({folder}) has {_mb(free)} free, under the sweep's reserve of "
                f"{reserve_mb:g} MB (resources.disk_reserve_mb), below which a checkpoint or Tune's state could be "
                f"cut short. {resume_hint} Free space there (or point the folder at another disk), or lower "
                "resources.disk_reserve_mb if the trials' checkpoints are small."
            )


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error in its chain, or the text of one raised in a Ray worker) is a full disk."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if any(text in str(exc) for text in _FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def explain(exc: BaseException, doing: str, then: str = "run the command again") -> DiskFull:
    """The one paragraph for a write that met a full disk while ``doing`` (e.g. "writing the report")."""
    where = getattr(exc, "filename", None)
    place = f" ({where})" if where else ""
    return DiskFull(
        f"The disk is full: {doing} failed with 'No space left on device'{place}. Nothing was left half-written "
        "(raysym writes each file under a temporary name and renames it when complete). Free space on that disk "
        f"and {then}."
    )


def text_of_trial_error(trial: Any) -> str:
    """The error text Tune saved for a trial (its error file), or "" when there is none."""
    try:
        return Path(trial.error_file).read_text(errors="replace") if getattr(trial, "error_file", None) else ""
    except OSError:
        return ""


class _OneLineWhenFull(logging.Filter):
    """Tune's syncer logs a failed copy of its files with the whole traceback as the message: on a full disk,
    one line instead (the guard's paragraph follows), once; for a temporary file renamed under it, nothing."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if ".tmp-" in message and "No such file or directory" in message:
            # Tune listed a file raysym was still writing under its temporary name, which was renamed before
            # the copy: the next sync copies the finished file, so the traceback is noise
            return False
        if not any(text in message for text in _FULL_TEXT):
            return True
        if self.said:
            return False
        self.said = True
        record.msg, record.args, record.exc_info = (
            "Tune could not copy its state into the storage folder: no space left on device.",
            (),
            None,
        )
        return True


_stop_reason: list[DiskFull] = []  # what request_stop asked for, until the sweep takes it (stop_requested)


def request_stop(reason: DiskFull) -> None:
    """Stop the running Tune loop as Ctrl-C does, for ``reason``: Tune's stop signal (SIGUSR1, which Tune
    handles in the main thread) makes it leave its loop and write its state one last time, naming every
    trial's newest checkpoint. A stop by an exception on Tune's loop skips that last write, and the state
    saved before can name a checkpoint Tune has since deleted (it keeps a trial's last two), which --resume
    then cannot find. The sweep reads the reason back with :func:`stop_requested`. Where Tune's handler is
    not installed (a sweep run outside the main thread), the reason is raised instead."""
    handler = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
    if threading.current_thread() is not threading.main_thread() or not callable(handler):
        raise reason
    if not _stop_reason:  # asked once: the loop may step again before the handler runs
        _stop_reason.append(reason)
        print(
            "raysym: a disk is under the sweep's reserve; stopping the sweep as Ctrl-C would (Tune saves its "
            "state first, then the reason follows).",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGUSR1)


def stop_requested() -> DiskFull | None:
    """The reason a guard stopped the sweep (once; None when nothing did)."""
    return _stop_reason.pop() if _stop_reason else None


def guard_callback(folders: dict[str, str], reserve_mb: float, storage: str, resume_hint: str):
    """The Tune callback that stops a sweep before its disk fills, and keeps a copy of Tune's state."""
    from ray import tune

    syncer = logging.getLogger("ray.train._internal.syncer")
    if not any(isinstance(f, _OneLineWhenFull) for f in syncer.filters):
        syncer.addFilter(_OneLineWhenFull())

    class DiskGuard(tune.Callback):
        def __init__(self):
            self.checked = 0.0
            self.saved: tuple | None = None  # (name, size, mtime) of the state file last copied

        def __getstate__(self) -> dict[str, Any]:
            return {"checked": 0.0, "saved": None}

        def on_step_end(self, iteration, trials, **info):
            # Copied whenever a trial's record changes: a copy naming checkpoints since deleted is mended on
            # --resume (restore_named_checkpoints), but the newer the copy, the fewer epochs are trained again.
            self.saved = backup_state(storage, self.saved)
            if time.monotonic() - self.checked >= CHECK_EVERY_S:
                self.checked = time.monotonic()
                try:
                    require_free(folders, reserve_mb, f"The sweep stopped here, its progress saved: {resume_hint}")
                except DiskFull as low:
                    request_stop(low)

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.on_trial_error(iteration, trials, trial)  # a retry on a full disk would only fail again

        def on_trial_error(self, iteration, trials, trial, **info):
            if any(text in text_of_trial_error(trial) for text in _FULL_TEXT):
                raise DiskFull(
                    f"Trial {trial.trial_id} failed with 'No space left on device' (its error: {trial.error_file}). "
                    f"The sweep stopped here, its progress saved: free space on the disk holding {storage} and "
                    f"the data, then {resume_hint[0].lower()}{resume_hint[1:]}"
                )

    return DiskGuard()


def _state_set(storage: Path, state: Path) -> list[Path]:
    """Tune's state files of one session: experiment_state-<stamp>.json and the searcher's *-<stamp>.json."""
    stamp = state.name[len("experiment_state-") : -len(".json")]
    return [p for p in storage.glob(f"*-{stamp}.*") if p.is_file() and any(p.match(g) for g in _ALL_GLOBS)]


def backup_state(storage: str | Path, saved: tuple | None) -> tuple | None:
    """Copy Tune's newest state files into ``<storage>/.raysym_state`` when the trials they record changed and
    they are readable (each copy written under a temporary name and renamed). Returns what was copied, for
    the next call.

    Tune rewrites its state at every save even when no trial moved (its loop counter and clock change), so
    the files' dates say little: the copy is made when the trials' records differ from the last copy's."""
    from raysym.trial_folder import atomic_path

    storage = Path(storage)
    states = sorted(storage.glob(STATE_GLOB))
    if not states:
        return saved
    newest = states[-1]
    stat = newest.stat()
    now = (newest.name, stat.st_size, stat.st_mtime_ns)
    if saved is not None and now == saved[:3]:
        return saved
    # Read once, check, write what was read: Tune may be rewriting a file while it is copied.
    files = {path.name: _read(path) for path in _state_set(storage, newest)}
    if not all(data is not None and _readable(name, data) for name, data in files.items()):
        return saved
    trials = _trial_records(files[newest.name])
    if saved is not None and saved[0] == newest.name and saved[3] == trials:
        return (*now, trials)  # the same trials, a newer date: nothing to copy
    folder = storage / BACKUP
    folder.mkdir(exist_ok=True)
    for name in sorted(files, key=lambda n: n == newest.name):  # the experiment state last
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(files[name])
    return (*now, trials)


def _trial_records(state: bytes) -> int:
    """A fingerprint of the trials an experiment state records (their settings, results, checkpoints)."""
    return hash(json.dumps(json.loads(state).get("trial_data")))


def restore_named_checkpoints(storage: str | Path, say: Callable[[str], None]) -> None:
    """Before Tune restores a sweep: put back the checkpoints its saved state names that no longer exist.

    Tune saves its state at most once a second (raysym.sweep) and keeps a trial's last two checkpoints, so a
    driver killed outright (SIGKILL, a lost head node) can leave a state naming a checkpoint that Tune deleted
    after that save, once newer ones existed; Tune would then refuse to restore the trial. The trial's newest
    checkpoint is copied under the missing name, so the trial continues from its newest epoch."""
    storage = Path(storage)
    named: set[tuple[str, str]] = set()
    for state in storage.glob(STATE_GLOB):
        named |= _named_checkpoints(_read(state) or b"")
    for trial_dir, name in sorted(named):
        missing = storage / trial_dir / name
        if missing.exists() or not (storage / trial_dir).is_dir():
            continue
        newer = sorted(p for p in (storage / trial_dir).glob("checkpoint_*") if p.is_dir() and p.name > name)
        if not newer:
            continue  # nothing to continue from: Tune reports the trial as it would have
        tmp = missing.with_name(f".{name}.raysym-tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(newer[-1], tmp)
        os.replace(tmp, missing)
        say(
            f"note: {trial_dir}/{name}, named by the saved state, had been replaced by newer checkpoints before the "
            f"driver stopped; the trial continues from its newest one ({newer[-1].name})"
        )


def _named_checkpoints(state: bytes) -> set[tuple[str, str]]:
    """(trial folder, checkpoint folder) pairs named in an experiment state. Tune keeps each trial's checkpoint
    manager as a hex-encoded cloudpickle; the paths are read out of its bytes as text, nothing is unpickled."""
    found: set[tuple[str, str]] = set()
    for run in re.findall(rb"[0-9a-f]{64,}", state):
        try:
            data = bytes.fromhex(run.decode()[: len(run) // 2 * 2])
        except ValueError:
            continue
        for trial_dir, name in re.findall(rb"/([\w.-]+)/(checkpoint_\d{6})", data):
            found.add((trial_dir.decode(), name.decode()))
    return found


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _readable(name: str, data: bytes) -> bool:
    """An experiment state is JSON (Tune's own encoding); a searcher's state is a pickle, which ends in
    pickle's STOP byte unless it was cut short. Neither is unpickled here."""
    if name.startswith("experiment_state-"):
        try:
            json.loads(data)
        except ValueError:
            return False
        return True
    return data.endswith(b".")


def repair_state(storage: str | Path, say: Callable[[str], None]) -> None:
    """Before Tune restores a sweep: replace state files a full disk left cut short by the guard's copies.
    Raises UserError when a state file is damaged and no copy of it exists."""
    storage = Path(storage)
    folder = storage / BACKUP
    for path in [p for pattern in _ALL_GLOBS for p in sorted(storage.glob(pattern))]:
        data = _read(path)
        if data is not None and _readable(path.name, data):
            continue
        copy = folder / path.name
        kept = _read(copy) if copy.is_file() else None
        if kept is not None and _readable(copy.name, kept):
            from raysym.trial_folder import atomic_path

            with atomic_path(path) as tmp:
                tmp.write_bytes(kept)
            say(
                f"note: {path.name} was cut short (a full disk); restored raysym's copy of it from "
                f"{time.strftime('%H:%M:%S', time.localtime(copy.stat().st_mtime))}: trials continue from the "
                "checkpoints it names (epochs after it are trained again)"
            )
            continue
        raise UserError(
            f"Tune's saved state {path} is damaged (cut short, probably by a full disk) and raysym kept no copy of "
            "it, so the sweep cannot be resumed from it. Move that file away to resume from the state saved before "
            "it (if another experiment_state file remains), or delete the sweep's folder to start over."
        )
    for stray in storage.glob(".*.tmp-*"):  # a copy cut short (a driver killed while it copied)
        stray.unlink(missing_ok=True)
