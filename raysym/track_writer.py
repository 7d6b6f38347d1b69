"""MLflow writes off Tune's loop: one thread per tracking store drains a queue of writes, in order.

Tune calls its callbacks on the driver's event loop, between scheduling decisions: a callback that
waits on a tracking server (a slow network, a busy sqlite file, a checkpoint uploaded as artifacts)
stops every trial's bookkeeping for as long (Tune warned "`process_trial_result` took 39.4 s" on an
http server). So the sweep's callback and distiller only *submit* writes here and return at once.

The writes keep their order, and so stay correct without locks: a trial's run is created by the job
that ``start`` submitted, and every later job that names that run receives the ``Future`` of its id,
resolved in the writer thread (it is done by then: the queue is first in, first out). A write that
fails stops the queue: the jobs after it are dropped (they would fail the same way, each after the
store's patience) and the error is raised on the loop by the next ``check`` or ``flush``, so the
sweep ends as it did when writes were made in place.

One writer per store and process (``start`` / ``current``): Tune restores its own pickled copy of
the callback on ``--resume``, and that copy finds the writer again by the store's URI.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

_WRITERS: dict[str, Writer] = {}
_LOCK = threading.Lock()


class Writer:
    """A queue of tracking writes drained by one daemon thread, with the time they took."""

    def __init__(self, uri: str):
        self.uri = uri
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.jobs = 0  # writes done
        self.busy_s = 0.0  # seconds the writes took, summed
        self.slowest_s = 0.0  # the longest single write

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)``; arguments that are Futures (of earlier jobs) are replaced by
        their results when it runs. Raises the error of an earlier write, if one failed."""
        self.check()
        future: Future = Future()
        self._put((future, fn, args, kwargs))
        return future

    def _put(self, job: tuple | None) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name=f"mlflow-writer {self.uri}", daemon=True)
                self._thread.start()
        self._queue.put(job)

    def check(self) -> None:
        """Raise the error of a write that failed (once; the queue runs again afterwards)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write submitted so far is done, then raise the error of one that failed."""
        if self._thread is not None:
            done: Future = Future()
            self._put((done, _NOOP, (), {}))
            done.exception(timeout)
        self.check()

    def close(self) -> None:
        """Finish the writes submitted so far, then end the thread (the next submit starts another)."""
        if self._thread is not None:
            self._put(None)
            self._thread.join()
            self._thread = None

    def _drain(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:  # close()
                return
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            if self._error is not None and fn is not _NOOP:
                future.set_exception(RuntimeError("an earlier tracking write failed"))
                continue
            try:
                args = tuple(_resolved(a) for a in args)
                kwargs = {k: _resolved(v) for k, v in kwargs.items()}
                start = time.perf_counter()
                result = fn(*args, **kwargs)
                took = time.perf_counter() - start
            except BaseException as exc:  # noqa: BLE001 -- handed to the loop by check()
                if self._error is None and not isinstance(exc, _Dropped):
                    self._error = exc
                future.set_exception(exc)
                continue
            self.jobs += 1
            self.busy_s += took
            self.slowest_s = max(self.slowest_s, took)
            future.set_result(result)


class _Dropped(RuntimeError):
    """A job whose input came from a write that failed."""


def _NOOP() -> None:
    return None


def _resolved(value: Any) -> Any:
    if isinstance(value, Future):
        if value.exception() is not None:
            raise _Dropped("an earlier tracking write failed")
        return value.result()
    return value


def start(uri: str) -> Writer:
    """A fresh writer for the store ``uri`` (a sweep's start): the one before it, if any, is flushed first."""
    with _LOCK:
        old = _WRITERS.get(uri)
        _WRITERS[uri] = Writer(uri)
    if old is not None:
        old.close()  # its errors were that sweep's to report
    return _WRITERS[uri]


def current(uri: str) -> Writer:
    """The writer of the store ``uri`` in this process (started if there is none)."""
    with _LOCK:
        if uri not in _WRITERS:
            _WRITERS[uri] = Writer(uri)
        return _WRITERS[uri]
