"""Helpers the test tiers share: a tiny sweep YAML, its MLflow runs, free ports, waiting for services."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

TINY_DATA = {"system": "spring", "dim": 2, "particles": 4, "sims": 8, "test_sims": 3, "steps": 60, "stride": 5}


# figures off: drawing a trial's three PNGs took 0.9 core-s a trial (and 0.75 for matplotlib's import per
# trial worker) against 0.1 for its training at these sizes (issue 29). Tests that check the PNGs turn them on.
TINY_TRIALS = {"epochs": 2, "hidden": 16, "batch_size": 32, "analysis_graphs": 50, "figures": False}


def sweep_dict(tmp_path: Path, name: str = "tiny", new_store: bool = False, **over) -> dict:
    """A tiny sweep's settings, its storage, data and sqlite MLflow store under ``tmp_path``; ``over``
    replaces keys (a dict merges into its section). The store starts as a copy of an empty one made once per
    process (see :func:`empty_store`) unless ``new_store`` or another tracking URI is given."""
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
    default_uri = cfg["tracking"]["uri"]
    for key, value in over.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    if not new_store and cfg["tracking"]["uri"] == default_uri and not (tmp_path / "mlflow.db").exists():
        tmp_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_store(), tmp_path / "mlflow.db")
    return cfg


@functools.cache
def empty_store() -> Path:
    """An empty MLflow sqlite store (its tables made, nothing else), made once per process. A test's store
    starts as a copy of it: making the tables (MLflow's schema migrations) took 1.1-1.9 core-s per new store,
    copying 0.04, and the suite made about 40 stores (issue 29). Making a new store, and two programs making
    one at once, stay covered: the tests that pass ``new_store`` and the CLI tests that name their own."""
    from raysym.track import PatientClient

    folder = Path(tempfile.mkdtemp(prefix="raysym-empty-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "mlflow.db"
    PatientClient(f"sqlite:///{path}").search_experiments(max_results=1)  # opening a new store makes its tables
    return path


def presimulate(cfg: dict) -> None:
    """Make the datasets of sweep ``cfg`` (a sweep_dict) on this process's local Ray (the session's
    ``local_ray``), before a test starts that sweep as a program of its own: the program then reuses them (its
    "data ready" path) instead of starting Ray Data in its fresh local Ray, whose coordinator and stats actors
    and simulation workers cost ~8 core-s there (issue 29). For the tests about interrupts and kills, which
    check what a resume does, not how data is made; tests of making data in a program keep doing it."""
    from raysym import sweep, sweep_plan
    from raysym.config import SweepConfig
    from raysym.strict import from_dict

    sweep.prepare_data(sweep_plan.plan(from_dict(SweepConfig, cfg)), say=lambda message: None)


def on_session_ray(cmd: list[str]) -> tuple[list[str], dict[str, str]]:
    """``cmd`` (a `raysym sweep` program) and its environment, made to join this process's local Ray (the
    session's ``local_ray``) with ``--address`` instead of starting one of its own: a local Ray's start and
    stop cost ~4 core-s and ~4 s a program (issue 29). For the tests about interrupted and resumed sweeps,
    whose subject is what the driver leaves behind, not the Ray it ran on; the laptop path (a program's own
    local Ray, stopped with it) stays covered by the SIGKILL and Ctrl-C x3 tests, test_safety and test_cli.

    The session's Ray listens on the loopback address only (raysym._ray), so the joining driver must take
    its own node address from the loopback too (the switch raysym sets for a local start): without it, it
    looks for its raylet at the machine's outward address and waits for ever."""
    address, env = session_ray_env()
    return [*cmd, "--address", address], env


def session_ray_env() -> tuple[str, dict[str, str]]:
    """The address of this process's local Ray and an environment in which a program can join it
    (:func:`on_session_ray`); ``RAY_ADDRESS`` is set in it too, for programs that call plain ``ray.init()``.
    The program authenticates as this process does: ``RAY_AUTH_MODE`` as set here, or Ray's default for a new
    local Ray (a token, read from the same ~/.ray/auth_token, or RAY_AUTH_TOKEN where raysym set one)."""
    import ray

    from raysym._ray import _LOOPBACK_SWITCH

    address = ray.get_runtime_context().gcs_address
    mode = os.environ.get("RAY_AUTH_MODE", "token")
    return address, {**os.environ, "RAY_AUTH_MODE": mode, _LOOPBACK_SWITCH: "0", "RAY_ADDRESS": address}


def mlflow_server_env() -> dict[str, str]:
    """The environment of an `mlflow server` a test starts: a real tracking server, without the job runner
    and the seven task consumers MLflow 3 starts beside it for its jobs feature (prompt optimisation and the
    like, which raysym never calls): ~20 core-s of start-up per server, measured (issue 29)."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


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
