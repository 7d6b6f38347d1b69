"""Two nodes: a sweep on a Ray cluster started with `ray start` (a head and a worker on this machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys

from helpers import _alive_nodes, _free_port, _wait_for, mlflow_runs, sweep_dict, write_yaml


def test_sweep_on_a_two_node_cluster_started_with_ray_start(tmp_path):
    """`ray start --head` plus a second `ray start --address` node on this machine, then the CLI with
    --address: the multi-node path (joining a cluster, trials placed on either node)."""
    import tempfile

    port = _free_port()
    # RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0: at the end, each node stops at SIGTERM instead of draining first
    # (for up to 30 s: the head waited them out after the sweep, 31 s of this test's 54; draining hands work
    # over to other nodes, and these are all going)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    temp_dir = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths have a length limit
    head = subprocess.Popen(
        [
            "ray",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    worker = None
    try:
        address = f"127.0.0.1:{port}"
        _wait_for(
            lambda: (
                subprocess.run(["ray", "status", f"--address={address}"], env=env, capture_output=True).returncode == 0
            ),
            120,
        )
        worker = subprocess.Popen(
            ["ray", "start", "--block", f"--address={address}", "--num-cpus=1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for(lambda: _alive_nodes(address, env) == 2, 120)
        path = write_yaml(
            tmp_path / "s.yaml", sweep_dict(tmp_path, trials={"model": ["bottleneck", "l1"], "epochs": 1})
        )
        done = subprocess.run(
            [sys.executable, "-m", "raysym.cli", "sweep", str(path), "--address", address],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "2 of 2 trials finished" in done.stdout
        _, runs = mlflow_runs(tmp_path)
        assert len(runs) == 3
    finally:
        for proc in (worker, head):
            if proc is not None:
                # SIGTERM to `ray start` alone (it stops its node's processes), then SIGKILL to whatever is left
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
