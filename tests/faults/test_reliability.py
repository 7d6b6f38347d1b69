"""Faults injected into real Ray and MLflow (killed processes, a locked or vanished tracking store), the
bad-input suite, and the safety defaults. RELIABILITY.md says what each test promises."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import (
    _free_port,
    _wait_for,
    mlflow_runs,
    mlflow_server_env,
    on_session_ray,
    presimulate,
    sweep_dict,
    write_yaml,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raysym.cli import main
from raysym.config import SweepConfig, from_dict
from raysym.errors import UserError
from raysym.sweep import run_sweep
from raysym.sweep_tracking import saved_trials
from raysym.track import SQLITE_BUSY_S

# Trials slow enough (about a second an epoch) for a fault to land in the middle of an epoch.
SLOW_DATA = {"sims": 120, "test_sims": 10, "steps": 500, "stride": 5}


def _processes(fragment: str):
    """This test session's processes (descendants: the local Ray it started) whose command line
    contains ``fragment``; never another program's Ray workers."""
    import psutil

    found = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if any(fragment in part for part in p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _epochs_logged(client, run) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "test/mae"))


# --------------------------------------------------------------------------------------------------
# Killed processes
# --------------------------------------------------------------------------------------------------


def test_trial_worker_killed_mid_epoch_is_retried_from_its_checkpoint(local_ray, tmp_path):
    epochs = 6
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, data=SLOW_DATA, trials={"model": "bottleneck", "epochs": epochs}))
    killed = []

    def kill_worker_after_two_epochs():
        _wait_for(lambda: len(list((tmp_path / "runs" / "tiny").glob("t000*/checkpoint_*"))) >= 2, seconds=600)
        time.sleep(0.3)  # into the next epoch
        for proc in _processes("ImplicitFunc"):
            proc.send_signal(signal.SIGKILL)
            killed.append(proc.pid)

    killer = threading.Thread(target=kill_worker_after_two_epochs, daemon=True)
    killer.start()
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    killer.join(timeout=60)
    assert killed, "no trial worker process was found to kill"
    (row,) = outcome.rows
    assert row["status"] == "finished" and row["epochs"] == epochs
    client, runs = mlflow_runs(tmp_path)
    (child,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED" and "messages/r2_force" in child.data.metrics
    # every epoch logged exactly once
    assert _epochs_logged(client, child) == list(range(1, epochs + 1))
    # and the retry restarted from a checkpoint: Tune's own record of the reports (result.json) holds each
    # epoch once, except at most the one whose report was in flight when the worker died (Tune may restore
    # the checkpoint before it; seen once in a full CI run on 2 loaded cores)
    (result_json,) = (tmp_path / "runs" / "tiny").glob("t000*/result.json")
    reported = [json.loads(line)["epoch"] for line in result_json.read_text().splitlines() if line.strip()]
    trained = [e for e in reported if e <= epochs]
    assert sorted(set(trained)) == list(range(1, epochs + 1)) and len(trained) <= epochs + 2, reported


def test_driver_killed_outright_then_resumed_runs_no_finished_trial_again(local_ray, tmp_path):
    """SIGKILL (no chance to clean up) of `raysym sweep` after its first trial finished."""
    epochs = 8
    cfg = sweep_dict(
        tmp_path,
        name="kill9",
        data=SLOW_DATA,
        trials={"model": ["bottleneck", "l1"], "epochs": epochs},
        resources={"cpus_per_trial": 1, "max_concurrent_trials": 1},
    )
    path = write_yaml(tmp_path / "s.yaml", cfg)
    presimulate(cfg)  # on the session's Ray: the program below reuses the data (helpers.presimulate)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "raysym.cli", "sweep", str(path)]
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def first_trial_done():
        if first.poll() is not None:  # it must still be running when it is killed
            pytest.fail(
                f"the sweep ended by itself (exit {first.returncode}): {(tmp_path / 'first.log').read_text()[-3000:]}"
            )
        if not (tmp_path / "runs" / "kill9").exists():
            return False  # not before the sweep created its MLflow store: two processes creating one race
        _, runs = mlflow_runs(tmp_path)
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        return any(r.info.status == "FINISHED" for r in children) and len(children) == 2

    try:
        _wait_for(first_trial_done, seconds=900)
        time.sleep(1.0)
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    client, runs = mlflow_runs(tmp_path)
    done_before = {
        r.info.run_id: _epochs_logged(client, r)
        for r in runs
        if "mlflow.parentRunId" in r.data.tags and r.info.status == "FINISHED"
    }
    assert len(done_before) == 1

    second = subprocess.run(cmd + ["--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 of 2 trials finished" in second.stdout
    client, runs = mlflow_runs(tmp_path)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in runs} == {"FINISHED"}  # one run per trial, no duplicates
    for run in children:
        assert _epochs_logged(client, run) == list(range(1, epochs + 1))  # each epoch once
        if run.info.run_id in done_before:  # the finished trial did not run again
            assert client.get_metric_history(run.info.run_id, "messages/r2_force").__len__() == 1


def _saved_done(experiment: Path) -> bool:
    """Whether Tune's saved state of the sweep at ``experiment`` has a trial marked done (TERMINATED)."""
    try:
        return any(t.status == "TERMINATED" for t in saved_trials(str(experiment)))
    except Exception:  # not saved yet, or caught in the middle of Tune's copy of it
        return False


def test_driver_killed_during_distillation_then_resumed_distils_the_trial(local_ray, tmp_path):
    """SIGKILL of `raysym sweep` while its first trained trial is being distilled and the second waits or
    trains (issue 28, 1c): Tune had marked the first done, so before the fix --resume said "finished" with law
    "-" and never distilled it. The leftover distillation must also let go of its CPUs before the second
    trial needs them (a first fix left its actors holding both CPUs: the resumed sweep waited for ever)."""
    cfg = sweep_dict(
        tmp_path,
        name="killdistil",
        # the second trial trains long enough to be still training (or waiting) when the first is killed: one
        # graph a batch, ~9 s on this 2-core machine under load, where 40 epochs of 2 batches took 1.7 s, ended
        # before the kill and failed a CI run; the kill comes ~1.7 s after the first trial ends (Tune saves its
        # state once a second). Both as long, so that they start in grid order. Newtonian GNs: their two edge
        # formulas are one round of fits on the two actors (the bottleneck and L1 GNs' node formulas made three).
        trials={"model": "newtonian", "seed": [0, 1], "epochs": 40, "batch_size": 1},
        resources={"cpus_per_trial": 1, "max_concurrent_trials": 1, "distill_workers": 2},
        # fits cut short at 5 s: a window of several seconds to kill the driver in (it is polled every 0.1 s),
        # at a third of the CPU of the three rounds of 3-s fits this test had before (CI's time, issue 29)
        distill={"backend": "operon", "setting": "thorough", "samples": 300, "timeout_s": 5},
    )
    path = write_yaml(tmp_path / "s.yaml", cfg)
    presimulate(cfg)  # on the session's Ray: the program below reuses the data (helpers.presimulate)
    # both programs join the session's Ray (helpers.on_session_ray): the leftover distillation actors of the
    # killed driver are then Ray's to end, not gone with a local Ray, and must not keep the resumed sweep waiting
    cmd, env = on_session_ray([sys.executable, "-m", "raysym.cli", "sweep", str(path)])
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    distill_root = tmp_path / "runs" / "killdistil" / "distill"

    def distilling():
        if first.poll() is not None:
            pytest.fail(f"the sweep ended before it was killed: {(tmp_path / 'first.log').read_text()[-3000:]}")
        # the distillation has started (its half-written folder is there: fits of 5 s each, one round on 2 actors)
        started = list(distill_root.glob("t000_*/.distill.tmp-*"))
        # and Tune's saved state has the trial done: the case this test is about
        return (
            started and not list(distill_root.glob("t000_*/distill/summary.json")) and _saved_done(distill_root.parent)
        )

    try:
        # polled often and killed at once: the second trial has only its own few seconds to finish in
        _wait_for(distilling, seconds=900, every=0.1)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert not list(distill_root.glob("t000_*/distill/summary.json")), "the distillation finished before the kill"
    assert not list(distill_root.glob("t001_*")), "the second trial finished before the kill"

    second = subprocess.run(cmd + ["--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert "t000: trained before the sweep stopped, but its distillation did not finish; running it now" in out
    assert "2 of 2 trials finished" in second.stdout and "not distilled" not in second.stdout
    for key in ("t000", "t001"):
        (summary,) = distill_root.glob(f"{key}_*/distill/summary.json")
        assert "distill/recovered_as" in json.loads(summary.read_text())
    assert not list(distill_root.glob("t000_*/.distill.tmp-*"))  # the half-written attempt is gone
    client, runs = mlflow_runs(tmp_path)
    trials = [r for r in runs if "raysym.trial_id" in r.data.tags and "raysym.distill_of" not in r.data.tags]
    distills = [r for r in runs if "raysym.distill_of" in r.data.tags]
    assert len(trials) == 2 and len(distills) == 2
    assert {d.data.tags["mlflow.parentRunId"] for d in distills} == {t.info.run_id for t in trials}
    assert {d.info.status for d in distills} == {"FINISHED"}
    for trial in trials:
        assert "distill/test_mae" in trial.data.metrics
        # no trial trained twice: one value per epoch
        assert _epochs_logged(client, trial) == list(range(1, 40 + 1))


def test_a_second_driver_on_a_running_sweep_is_refused(tmp_path, capsys):
    """Two drivers on one sweep name (issue 28, 1c): the second is refused, naming the first, in the CLI and
    the Python API; nothing of the first is touched. The lock goes with its holder."""
    from raysym.sweep import experiment_path, sweep_lock

    data = sweep_dict(tmp_path, name="twice")
    cfg = from_dict(SweepConfig, data)
    path = write_yaml(tmp_path / "s.yaml", data)
    with sweep_lock(experiment_path(cfg), cfg.name):  # the first driver, in this process
        assert main(["sweep", str(path)]) == 2
        err = capsys.readouterr().err
        assert "is running already" in err and f"process {os.getpid()}" in err and "Traceback" not in err
        with pytest.raises(UserError, match="is running already"):
            run_sweep(cfg, say=lambda m: None, verbose=0)
        assert not (tmp_path / "runs" / "twice").exists()  # the refused drivers wrote nothing
    with sweep_lock(experiment_path(cfg), cfg.name):  # released when its holder ended: taken again
        pass


def test_distillation_actor_killed_mid_fit_is_replaced_and_its_job_rerun(local_ray, tmp_path):
    import dataclasses

    import numpy as np
    import ray

    from raysym.config import DistillConfig
    from raysym.distill_jobs import edge_names
    from raysym.distill_pool import DistillPool

    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 2, size=(300, 7))
    # a fit of a few seconds (the thorough search, cut short by its timeout)
    cfg = DistillConfig(backend="operon", setting="thorough", timeout_s=6, seed=0)
    job = dict(
        kind="edge",
        index=0,
        component=0,
        X=X,
        y=X[:, 0] / X[:, 2],
        names=edge_names(2),
        cfg=dataclasses.asdict(cfg),
        workdir=str(tmp_path / "w"),
    )
    pool = DistillPool(2)
    try:
        pids = ray.get([a.pid.remote() for a in pool.actors])
        result = {}
        worker = threading.Thread(target=lambda: result.update(out=pool.map([job, dict(job, index=1)])))
        worker.start()
        time.sleep(3.0)  # both actors are fitting
        os.kill(pids[0], signal.SIGKILL)
        worker.join(timeout=300)
        out = result["out"]
        assert all("error" not in r for r in out), out
        assert sorted(r.get("attempts", 1) for r in out) == [1, 2]  # the killed actor's job ran again
        assert pool.replaced == 1
        # the pool still works, with a fresh actor (a fast fit: what is checked is that it runs)
        again = pool.map([dict(job, index=2, cfg=dataclasses.asdict(dataclasses.replace(cfg, setting="fast")))])
        assert "error" not in again[0]
    finally:
        pool.shutdown()


# --------------------------------------------------------------------------------------------------
# The tracking store: locked, or gone
# --------------------------------------------------------------------------------------------------


def test_locked_sqlite_store_makes_the_sweep_wait_not_fail(local_ray, tmp_path, capsys):
    """Another program holds an exclusive lock on mlflow.db for 8 s, four times the wait raysym lets MLflow's
    sqlite store make per call (track.SQLITE_BUSY_S; MLflow's own is 20 s)."""
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, data=SLOW_DATA, trials={"model": "bottleneck", "epochs": 4}))
    db = tmp_path / "mlflow.db"
    held = []

    def lock_after_first_epoch():
        _wait_for(lambda: len(list((tmp_path / "runs" / "tiny").glob("t000*/checkpoint_*"))) >= 1, seconds=600)
        con = sqlite3.connect(db, timeout=60, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        held.append(time.monotonic())
        time.sleep(4 * SQLITE_BUSY_S)
        con.execute("COMMIT")
        con.close()
        held.append(time.monotonic())

    locker = threading.Thread(target=lock_after_first_epoch, daemon=True)
    locker.start()
    outcome = run_sweep(cfg, say=print, verbose=0)
    locker.join(timeout=120)
    assert len(held) == 2
    assert "unavailable" in capsys.readouterr().err  # it said it was waiting
    assert outcome.rows[0]["status"] == "finished"
    client, runs = mlflow_runs(tmp_path)
    (child,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED"
    assert _epochs_logged(client, child) == [1, 2, 3, 4]


def test_a_report_waits_for_a_locked_store_instead_of_a_traceback(tmp_path, capsys, monkeypatch):
    """Issue 28, item 5: `raysym report` while another program holds mlflow.db in a write transaction (8 s:
    four times the wait raysym lets MLflow's sqlite store make per call) waits, says so, and writes the report;
    before, opening the store raised sqlite3.OperationalError: database is locked."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    client.create_run(client.create_experiment("tests"), tags={"raysym.sweep": "locked"})
    locked = threading.Event()

    def hold():
        con = sqlite3.connect(db, timeout=60, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(4 * SQLITE_BUSY_S)
        con.execute("COMMIT")
        con.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    locked.wait(timeout=60)
    code = main(["report", "locked", "--tracking-uri", uri, "--out", str(tmp_path / "rep")])
    holder.join(timeout=120)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "unavailable" in err and "retrying" in err and "Traceback" not in err
    assert (tmp_path / "rep" / "report.md").is_file()


def test_tracking_server_gone_mid_sweep_stops_clearly_and_records_nothing_false(local_ray, tmp_path):
    port = _free_port()
    store = tmp_path / "server.db"
    server_cmd = [
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{store}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--default-artifact-root",
        str(tmp_path / "artifacts"),
        "--workers",
        "1",
    ]
    server = subprocess.Popen(
        server_cmd,
        env=mlflow_server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _healthy(uri), seconds=120)
        cfg = from_dict(
            SweepConfig,
            sweep_dict(
                tmp_path,
                data=SLOW_DATA,
                trials={"model": "bottleneck", "epochs": 6},
                tracking={"uri": uri, "experiment": "tests", "patience_s": 5},
            ),
        )

        def trial_run_stored() -> bool:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(uri)
            exp = client.get_experiment_by_name("tests")
            return exp is not None and any(
                "mlflow.parentRunId" in r.data.tags for r in client.search_runs([exp.experiment_id])
            )

        def stop_server_after_first_epoch():
            # after the first epoch's checkpoint and once the server holds the trial's run: MLflow writes go
            # through a writer thread, which on a busy machine can be behind the checkpoint
            _wait_for(lambda: len(list((tmp_path / "runs" / "tiny").glob("t000*/checkpoint_*"))) >= 1, seconds=600)
            _wait_for(trial_run_stored, seconds=600)
            os.killpg(server.pid, signal.SIGKILL)

        threading.Thread(target=stop_server_after_first_epoch, daemon=True).start()
        with pytest.raises(UserError, match="did not answer for 5 s"):
            run_sweep(cfg, say=lambda m: None, verbose=0)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")  # what the server had stored
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert [r.info.status for r in runs if "mlflow.parentRunId" in r.data.tags] == ["RUNNING"]  # not FINISHED


def _healthy(uri: str) -> bool:
    """Whether the server answers an MLflow API question (not only /health): its worker opens the store on
    the first such request, which on a busy machine took over the sweep's 5 s start-up check (a failed run)."""
    import urllib.error
    import urllib.request

    try:
        question = uri + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
        with urllib.request.urlopen(question, timeout=30):
            return True
    except urllib.error.HTTPError:
        return True  # an MLflow error reply (e.g. no such experiment) is an answer
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# Bad input: every malformed sweep YAML and CLI call exits 2 with a message that names the problem
# --------------------------------------------------------------------------------------------------

BAD_SWEEPS = [
    ({"nmae": "x"}, "Did you mean 'name'"),
    ({"data": {"partcles": 4}}, "Did you mean 'particles'"),
    ({"trials": {"hiden": 8}}, "Did you mean 'hidden'"),
    ({"resources": {"cpus_per_trail": 1}}, "Did you mean 'cpus_per_trial'"),
    ({"tracking": {"url": "sqlite:///m.db"}}, "Did you mean 'uri'"),
    ({"trials": {"lr": "fast"}}, "lr"),
    ({"data": {"sims": "many"}}, "sims"),
    ({"data": {"dim": 2.5}}, "dim"),
    ({"trials": {"epochs": [1, "two"]}}, "epochs"),
    ({"data": {"sims": 0}}, "sims"),
    ({"data": {"sims": -5}}, "sims"),
    ({"data": {"particles": 1}}, "particles"),
    ({"data": {"steps": 0}}, "steps"),
    ({"data": {"dim": 4}}, "dim"),
    ({"trials": {"epochs": 0}}, "epochs"),
    ({"trials": {"batch_size": 0}}, "batch_size"),
    ({"trials": {"hidden": -1}}, "hidden"),
    ({"trials": {"lr": float("nan")}}, "lr"),
    ({"trials": {"lr": -0.1}}, "lr"),
    ({"data": {"dt": float("nan")}}, "dt"),
    ({"data": {"prune_k": float("nan")}}, "prune_k"),
    ({"data": {"prune_k": -1}}, "prune_k"),
    ({"resources": {"cpus_per_trial": 0}}, "cpus_per_trial"),
    ({"resources": {"gpus_per_trial": float("nan")}}, "gpus_per_trial"),
    ({"tracking": {"patience_s": 0}}, "patience_s"),
    ({"trials": {"model": []}}, "grid is empty"),
    ({"data": {"system": []}}, "grid is empty"),
    ({"data": {"system": "gravity"}}, "Unknown system 'gravity'"),
    ({"trials": {"model": "transformer"}}, "Unknown model 'transformer'"),
    ({"trials": {"l1_schedule": "cosine"}}, "cosine"),
    ({"search": {"kind": "bayes"}}, "bayes"),
    ({"scheduler": {"kind": "hyperband"}}, "hyperband"),
    ({"name": "has space"}, "name must be"),
    ({"data": {"particles": 100000, "sims": 100000}}, "memory"),
    ({"data": {"sims": 10**12}}, "memory"),
    ({"distill": {"fit_range": "pruned"}}, "fit_range must be"),
    ({"distill": {"fit_ragne": "all"}}, "Did you mean 'fit_range'"),
]


@pytest.mark.parametrize("change, expected", BAD_SWEEPS, ids=[str(c) for c, _ in BAD_SWEEPS])
def test_malformed_sweep_yaml_exits_2_with_the_problem_named(tmp_path, capsys, change, expected):
    path = write_yaml(tmp_path / "bad.yaml", sweep_dict(tmp_path, **change))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert expected.lower() in err.lower(), err
    assert "Traceback" not in err and err.count("\n") <= 2  # one paragraph


BAD_FILES = [
    ("", "empty"),
    ("name: [unclosed", "YAML"),
    ("- just\n- a list\n", "mapping"),
]


@pytest.mark.parametrize("text, expected", BAD_FILES)
def test_unreadable_sweep_files_exit_2(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert expected.lower() in err.lower() and "Traceback" not in err


BAD_CALLS = [
    (["sweep", "no/such/file.yaml"], "no/such/file.yaml"),
    (["simulate", "--system", "gravity", "--out", "x"], "gravity"),
    (["simulate", "--system", "spring", "--sims", "-3", "--out", "x"], "sims"),
    (["simulate", "--system", "spring", "--sims", "ten", "--out", "x"], "invalid int"),
    (["train", "--data", "no/such/data", "--out", "x"], "no/such/data"),
    (["train", "--data", "d", "--model", "cnn", "--out", "x"], "cnn"),
    (["distill"], "either trial folders or --run"),
    (["distill", "no/such/trial"], "no/such/trial"),
    (["distill", "t", "--backend", "eureqa"], "eureqa"),
    (["distill", "t", "--fit-range", "outside"], "fit_range must be"),
    (["distill", "t", "--workers", "-1"], "must be 1 or more"),
    (["halos", "--batch-nodes", "0", "--out", "x"], "batch_nodes must be"),
    (["halos", "--msg-dim", "-1", "--out", "x"], "msg_dim must be"),
    (["report", "no-such-sweep", "--tracking-uri", "sqlite:///{tmp}/m.db"], "No sweep named"),
    # names are values of the MLflow search, never parts of it (issue 28, item 2)
    (["report", "x' OR tags.a = 'b", "--tracking-uri", "sqlite:///{tmp}/m.db"], "No sweep named 'x' OR tags.a = 'b'"),
    (["report", "a'b", "--tracking-uri", "sqlite:///{tmp}/m.db"], "No sweep named 'a'b'"),
    (["report", "a'b\"c", "--tracking-uri", "sqlite:///{tmp}/m.db"], "holds both kinds of quote"),
    (["report", "x", "--tracking-uri", "http://127.0.0.1:9"], "cannot be reached"),
    (["inspect", "no/such/data"], "no/such/data"),
    (["nonsense"], "invalid choice"),
]


@pytest.mark.parametrize("argv, expected", BAD_CALLS, ids=[" ".join(a) for a, _ in BAD_CALLS])
def test_malformed_cli_calls_exit_2_with_the_problem_named(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected.lower() in err.lower(), err
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# The config loader, property-based: any mapping either loads or fails as a UserError
# --------------------------------------------------------------------------------------------------


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
)
_keys = st.sampled_from(
    [
        "name",
        "storage",
        "data",
        "trials",
        "search",
        "scheduler",
        "resources",
        "tracking",
        "distill",
        "system",
        "dim",
        "sims",
        "epochs",
        "lr",
        "model",
        "prune_k",
        "kind",
        "trials_",
        "uri",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(top=st.dictionaries(_keys, st.one_of(_values, st.dictionaries(_keys, _values, max_size=4)), max_size=6))
def test_config_loader_accepts_or_rejects_cleanly(top):
    try:
        cfg = from_dict(SweepConfig, top)
    except UserError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()
        return
    assert isinstance(cfg, SweepConfig)
    for sim in cfg.data_points():  # what loads is usable
        assert sim.sims > 0 and sim.particles >= 2


def test_a_value_with_a_newline_is_quoted_in_a_one_paragraph_error():
    """Found by the property test above: a sweep named '\\n' gave a two-line message."""
    for top in ({"name": "\n"}, {"name": "a\r\nb"}, {"name": "ok", "distill": {"backend": "x\ny"}}):
        with pytest.raises(UserError) as exc:
            from_dict(SweepConfig, top)
        assert "\n" not in str(exc.value) and "\r" not in str(exc.value) and "\\n" in str(exc.value)


@settings(max_examples=200, deadline=None)
@given(
    epochs=st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5)),
    lr=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.none()),
)
def test_trial_settings_are_range_checked(epochs, lr):
    try:
        from_dict(SweepConfig, {"trials": {"epochs": epochs, "lr": lr}})
    except UserError:
        return
    assert isinstance(epochs, int) and epochs > 0
    assert lr is not None and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0


# --------------------------------------------------------------------------------------------------
# Safety defaults
# --------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]  # the repository


def test_checkpoints_are_loaded_without_unpickling_code():
    for path in (ROOT / "raysym").glob("*.py"):
        for line in path.read_text().splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path.name}: {line.strip()}"


def test_cluster_yaml_binds_dashboards_to_localhost_and_holds_no_secrets():
    text = (ROOT / "cluster.yaml").read_text()
    assert "0.0.0.0" not in text
    lowered = text.lower()
    for secret in ("aws_secret_access_key", "aws_access_key_id", "password", "token:", "akia"):
        assert secret not in lowered, secret
    cluster = yaml.safe_load(text)
    commands = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in commands


def test_the_python_api_applies_the_clis_rules(tmp_path, monkeypatch):
    """What the CLI refuses, the API refuses too (issue 28, item 6): an empty config (never the whole default
    sweep), a name that is a path, a report folder named by a tampered MLflow tag."""
    from mlflow.tracking import MlflowClient

    import raysym

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="is empty"):
        raysym.run_sweep({})
    with pytest.raises(UserError, match="name must be letters"):
        run_sweep(SweepConfig(name="../up", storage=str(tmp_path / "runs")), say=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, least of all above storage
    uri = f"sqlite:///{tmp_path}/m.db"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("e"), tags={"raysym.sweep": "../../x"})
    with pytest.raises(UserError, match="not a plain folder name"):
        raysym.make_report(run.info.run_id, tracking_uri=uri, say=lambda m: None)
    assert not (tmp_path / "reports").exists() and not (tmp_path.parent / "x").exists()


def test_a_web_service_that_is_not_mlflow_is_refused_before_anything_starts():
    """A service that answers /health (and nothing else MLflow would) is not taken for a tracking server
    (issue 28, item 9): the check asks an MLflow question and wants MLflow's JSON back."""
    import http.server

    class NotMLflow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/health"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"OK" if ok else b"<html><body>Not Found</body></html>")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotMLflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from raysym.track import check_reachable

        with pytest.raises(UserError, match="not as an MLflow tracking server"):
            check_reachable(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()


def test_damaged_result_files_name_the_file_and_are_never_unpickled(tmp_path):
    """Issue 28, item 4: a damaged JSON or npz artifact read back by the report names the run and the file
    (one paragraph, UserError), and an npz holding a pickled object is refused rather than unpickled."""
    import numpy as np

    from raysym.report_data import _artifact_json, _artifact_npz

    bad = tmp_path / "rollout.json"
    bad.write_text('{"regimes": {')
    with pytest.raises(UserError, match="rollout.json of MLflow run abc is damaged"):
        _artifact_json(bad, "abc", "rollout.json")
    npz = tmp_path / "messages.npz"
    npz.write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(UserError, match="messages.npz of MLflow run abc is damaged"):
        _artifact_npz(npz, "abc", "messages.npz")
    np.savez(tmp_path / "pickled.npz", payload=np.array([{"code": "would run on unpickling"}], dtype=object))
    with pytest.raises(UserError, match="is damaged"):
        _artifact_npz(tmp_path / "pickled.npz", "abc", "pickled.npz")
    np.savez(tmp_path / "fine.npz", stds=np.arange(3.0))
    assert _artifact_npz(tmp_path / "fine.npz", "abc", "fine.npz")["stds"].tolist() == [0.0, 1.0, 2.0]
