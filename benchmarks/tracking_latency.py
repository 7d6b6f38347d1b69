"""How long Tune's loop waits on MLflow during a sweep tracked on an http server (issue 28, item 5).

Usage:
    python benchmarks/tracking_latency.py [--latency-ms 100] [--epochs 6] [--trials 2]

Starts a real ``mlflow server`` (sqlite store, local artifact folder) behind a small forwarding proxy
that delays every request by ``--latency-ms`` (a tracking server across a network; 0 for none), and runs
the same tiny sweep (spring 2D, ``--trials`` trials of ``--epochs`` epochs, no distillation) twice
against it, in one process:

- reference: every write waited for in place, on Tune's loop (what raysym did before the writes were
  queued: ``Writer.submit`` patched to wait for its own job);
- raysym: the writes queued to the store's writer thread (raysym.track_writer), as a sweep runs them.

For each it prints the longest and the total time Tune spent in ``process_trial_result`` (the
operation Tune warns about when it passes 0.5 s: its processing of one trial's result, the callbacks
included) and in the trial-completion hooks, the number of requests the proxy forwarded, and the
ratio raysym / reference. The target: under 1 s for every result.
"""

from __future__ import annotations

import argparse
import http.server
import os
import platform
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from raysym import track_writer
from raysym.config import SweepConfig, from_dict
from raysym.sweep import run_sweep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DelayingProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Forwards every request to ``target`` after ``delay`` seconds; counts them."""

    daemon_threads = True

    def __init__(self, target: str, delay: float):
        self.target, self.delay, self.requests = target, delay, 0
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(http.server.BaseHTTPRequestHandler):
    def _forward(self) -> None:
        server: DelayingProxy = self.server  # type: ignore[assignment]
        server.requests += 1
        time.sleep(server.delay)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(server.target + self.path, data=body, headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                status, payload, answer_headers = answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as err:
            status, payload, answer_headers = err.code, err.read(), err.headers
        self.send_response(status)
        for k, v in answer_headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    def log_message(self, *args) -> None:  # quiet
        pass


def start_mlflow(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder}/server.db"]
    cmd += ["--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "2"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return server, uri
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit("mlflow server did not start in 120 s")


class Timings:
    """Wraps TuneController's result processing and trial completion with a stopwatch."""

    def __init__(self):
        from ray.tune.execution.tune_controller import TuneController

        self.results: list[float] = []
        self.completions: list[float] = []
        original = TuneController._process_trial_result

        def timed(controller, trial, result):
            start = time.perf_counter()
            try:
                return original(controller, trial, result)
            finally:
                self.results.append(time.perf_counter() - start)

        TuneController._process_trial_result = timed

        from ray.tune.callback import CallbackList

        complete = CallbackList.on_trial_complete

        def timed_complete(callbacks, **info):
            start = time.perf_counter()
            try:
                return complete(callbacks, **info)
            finally:
                self.completions.append(time.perf_counter() - start)

        CallbackList.on_trial_complete = timed_complete

    def clear(self) -> None:
        self.results.clear()
        self.completions.clear()


def sweep(folder: Path, uri: str, name: str, args) -> SweepConfig:
    return from_dict(
        SweepConfig,
        {
            "name": name,
            "storage": str(folder / "runs"),
            "data": {
                "root": str(folder / "data"),
                "system": "spring",
                "dim": 2,
                "particles": 4,
                "sims": 40,
                "test_sims": 8,
                "steps": 200,
                "stride": 5,
            },
            "trials": {
                "model": ["bottleneck", "l1", "standard", "kl"][: args.trials],
                "epochs": args.epochs,
                "hidden": 32,
                "batch_size": 64,
                "analysis_graphs": 50,
            },
            "resources": {"cpus_per_trial": 1},
            "tracking": {"uri": uri, "experiment": "latency"},
        },
    )


def in_place():
    """The writes waited for in place: the reference (raysym before the writer thread)."""
    submit = track_writer.Writer.submit

    def waiting(self, fn, *a, **kw):
        future = submit(self, fn, *a, **kw)
        future.exception()
        self.check()
        return future

    track_writer.Writer.submit = waiting
    return submit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=100.0, help="delay added to every MLflow request")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--trials", type=int, default=2, choices=[1, 2, 3, 4])
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    folder = Path(tempfile.mkdtemp(prefix="raysym-latency-"))
    server, target = start_mlflow(folder)
    proxy = DelayingProxy(target, args.latency_ms / 1000)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{proxy.server_address[1]}"
    timings = Timings()
    figures = {}
    try:
        for label in ("reference (in place)", "raysym (queued)"):
            undo = in_place() if label.startswith("reference") else None
            timings.clear()
            proxy.requests = 0
            start = time.perf_counter()
            run_sweep(sweep(folder, uri, label.split()[0], args), say=lambda m: None, verbose=0)
            wall = time.perf_counter() - start
            if undo is not None:
                track_writer.Writer.submit = undo
            figures[label] = (max(timings.results), sum(timings.results), max(timings.completions), wall)
            print(
                f"{label:<22} process_trial_result: longest {figures[label][0]:.3f} s, total {figures[label][1]:.2f} s "
                f"over {len(timings.results)} results; on_trial_complete longest {figures[label][2]:.3f} s; "
                f"{proxy.requests} requests; sweep wall {wall:.0f} s",
                flush=True,
            )
    finally:
        proxy.shutdown()
        os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
    ref, new = figures["reference (in place)"], figures["raysym (queued)"]
    print(
        f"\nlongest process_trial_result: raysym {new[0]:.3f} s vs reference {ref[0]:.3f} s "
        f"(ratio {new[0] / ref[0]:.3f}); target < 1 s: {'met' if new[0] < 1.0 else 'MISSED'}"
    )
    print(f"longest trial completion: raysym {new[2]:.3f} s vs reference {ref[2]:.3f} s (ratio {new[2] / ref[2]:.3f})")
    print(
        f"request latency {args.latency_ms:.0f} ms; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
