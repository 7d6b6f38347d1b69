"""Helpers the test tiers share: a tiny sweep YAML, its MLflow runs, free ports, waiting for services."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

TINY_DATA = {"system": "spring", "dim": 2, "particles": 4, "sims": 8, "test_sims": 3, "steps": 60, "stride": 5}


TINY_TRIALS = {"epochs": 2, "hidden": 16, "batch_size": 32, "analysis_graphs": 50}


def sweep_dict(tmp_path: Path, name: str = "tiny", **over) -> dict:
    cfg = {
        "name": name,
        "storage": str(tmp_path / "runs"),
        "data": {"root": str(tmp_path / "data"), **TINY_DATA},
        "trials": {"model": ["bottleneck", "l1"], "l1_schedule": "linear", **TINY_TRIALS},
        # One trial at a time: Tune's reused actor (reuse_actors, as every sweep runs) takes each next trial,
        # so a test sweep pays one trial worker's start-up (ray.tune, torch, torch._dynamo and matplotlib
        # imported: ~5 core-s) instead of one per trial. The suite is CPU-bound (97% of both cores), so the
        # trials' lost overlap costs no time (issue 29). Tests about concurrency say so in their resources.
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 1},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }
    for key, value in over.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def mlflow_runs(tmp_path: Path, experiment: str = "tests"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, seconds: float, every: float = 1.0) -> None:
    deadline = time.monotonic() + seconds
    last = None
    while True:
        try:
            if check():
                return
        except Exception as exc:  # not up yet
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"the service did not come up: {last!r}")  # a start-up failure, not a speed check
        time.sleep(every)


def _alive_nodes(address: str, env: dict) -> int:
    code = (
        "import ray; ray.init(address=%r, log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))" % address
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def spring_edges(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    dx, dy = rng.normal(size=n), rng.normal(size=n)
    r = np.sqrt(dx**2 + dy**2)
    return dx, dy, r
