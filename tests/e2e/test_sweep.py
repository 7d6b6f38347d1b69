"""The sweep service: config validation, planning, and tiny sweeps through real Ray Tune and MLflow."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
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

from raysym.cli import main
from raysym.config import SweepConfig, from_dict
from raysym.errors import UserError
from raysym.sweep import run_sweep
from raysym.sweep_plan import dataset_dir, plan

# --------------------------------------------------------------------------------------------------
# Config and plan (no Ray)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"tials": {}}, "Did you mean 'trials'"),
        ({"data": {"systm": "spring"}}, "Did you mean 'system'"),
        ({"trials": {"epoch": 3}}, "Did you mean 'epochs'"),
        ({"trials": {"epochs": "many"}}, "wrong type"),
        ({"trials": {"model": []}}, "grid is empty"),
        ({"data": {"system": "sprung"}}, "Unknown system 'sprung'"),
        ({"trials": {"model": ["l1", "l2"]}}, "Unknown model 'l2'"),
        ({"resources": {"gpus_per_trial": -1}}, "gpus_per_trial"),
        ({"search": {"kind": "optuna"}}, "needs a search.space"),
        (
            {"search": {"kind": "optuna", "space": {"schedule_shape.peek": {"low": 0.1, "high": 1}}}},
            "Did you mean 'schedule_shape.peak'",
        ),
        ({"rollout": {"sims": 2}}, "needs a distill section"),
        ({"distill": {"setting": "fast"}, "rollout": {"regimes": {"in_dist": {}}}}, "baseline every rollout runs"),
        ({"distill": {"setting": "fast"}, "rollout": {"regimes": {"2x": {"scale": 2}}}}, "letters, digits"),
        (
            {"distill": {"setting": "fast"}, "rollout": {"regimes": {"more": {"particles": 8, "particle_factor": 2}}}},
            "not both",
        ),
        ({"distill": {"setting": "fast"}, "rollout": {"regimes": {"hot": {"scael": 2}}}}, "Did you mean 'scale'"),
        ({"distill": {"setting": "fast"}, "rollout": {"regimes": {"hot": {"scale": -1}}}}, "positive factor"),
    ],
)
def test_bad_sweep_configs_fail_with_a_hint(tmp_path, change, expected, capsys):
    with pytest.raises(UserError, match=expected):
        from_dict(SweepConfig, sweep_dict(tmp_path, **change))
    path = write_yaml(tmp_path / "bad.yaml", sweep_dict(tmp_path, **change))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert expected.split("'")[0] in err and "Traceback" not in err


def test_plan_expands_the_grid_and_drops_settings_a_model_ignores(tmp_path):
    cfg = from_dict(
        SweepConfig,
        sweep_dict(
            tmp_path,
            data={"system": ["spring", "charge"], "prune_k": [1.5, None]},
            trials={"model": ["standard", "bottleneck", "l1", "kl"], "l1_schedule": ["constant", "linear", "triangle"]},
        ),
    )
    specs = plan(cfg)
    # 2 systems x 2 prune k x (standard, bottleneck, kl, 3 x l1) = 24, not 2 x 2 x 4 x 3 = 48
    assert len(specs) == 24
    assert len({s.key for s in specs}) == 24
    assert cfg.swept_keys() == ["system", "prune_k", "model", "l1_schedule"]
    bottleneck = [s for s in specs if s.train["model"] == "bottleneck"]
    assert all("l1_schedule" not in s.train and "l1_schedule" not in s.params for s in bottleneck)
    assert {s.data_dir for s in specs} == {dataset_dir(str(tmp_path / "data"), p) for p in cfg.data_points()}
    assert len({s.data_dir for s in specs}) == 2


def test_dataset_folders_are_content_addressed(tmp_path):
    from raysym.config import SimulationConfig

    a = dataset_dir("d", SimulationConfig(system="spring", sims=10))
    assert a == dataset_dir("d", SimulationConfig(system="spring", sims=10, sims_per_shard=3))  # layout only
    assert a != dataset_dir("d", SimulationConfig(system="spring", sims=11))
    assert a != dataset_dir("d", SimulationConfig(system="spring", sims=10, seed=1))


def test_dry_run_prints_the_trials_and_resources(tmp_path, capsys):
    path = write_yaml(
        tmp_path / "s.yaml", sweep_dict(tmp_path, resources={"cpus_per_trial": 0.5, "max_concurrent_trials": 3})
    )
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 trial point(s)" in out and "t000" in out and "t001" in out
    assert "0.5 CPU, 0 GPU" in out and "concurrent trials: 3" in out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()  # nothing written


def test_dry_run_of_a_slice_lists_its_trials_with_their_grid_keys(capsys):
    cpu_table = str(Path(__file__).resolve().parents[2] / "tune_configs" / "cpu_table.yaml")
    assert main(["sweep", cpu_table, "--dry-run", "--only", "system=charge", "--only", "dim=3"]) == 0
    out = capsys.readouterr().out
    assert "sweep 'cpu_table.dim-3.system-charge': 3 trial point(s)" in out and "datasets (1)" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  t")] == ["t009", "t010", "t011"]
    assert main(["sweep", cpu_table, "--dry-run", "--only", "system=charg"]) == 2
    err = capsys.readouterr().err
    assert "no trial with system = charg" in err and "charge, r1, r2, spring" in err and "Traceback" not in err


def test_every_shipped_sweep_config_is_valid():
    configs = sorted(Path(__file__).resolve().parents[2].glob("tune_configs/*.yaml"))
    assert len(configs) >= 6
    for path in configs:
        cfg = from_dict(SweepConfig, yaml.safe_load(path.read_text()), where=str(path))
        assert plan(cfg), path


# --------------------------------------------------------------------------------------------------
# Real sweeps: local Ray, Tune, MLflow on sqlite
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_sweep(local_ray, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sweep")
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, trials={"figures": True}))  # its PNGs are checked in MLflow
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    return tmp_path, cfg, outcome


def test_a_slice_runs_as_a_sweep_of_its_own_with_its_grid_keys(local_ray, tmp_path, capsys):
    """`raysym sweep --only`: the slice's Tune folder and MLflow parent run are named after its filters, its
    trial keeps its key from the full grid, and `raysym report --only` finds it."""
    path = write_yaml(tmp_path / "s.yaml", sweep_dict(tmp_path))
    assert main(["sweep", str(path), "--only", "model=l1"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 trials finished" in out and "(parent run 'tiny.model-l1')" in out
    assert [p.name.split("_")[0] for p in (tmp_path / "runs" / "tiny.model-l1").glob("t0*")] == ["t001"]
    _, runs = mlflow_runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_name for r in parents] == ["tiny.model-l1"]
    assert main(["report", str(path), "--only", "model=l1", "--out", str(tmp_path / "report")]) == 0
    assert "'tiny.model-l1'" in (tmp_path / "report" / "report.md").read_text().replace("\\", "")


def test_sweep_records_parent_and_child_runs_in_mlflow(finished_sweep):
    tmp_path, cfg, outcome = finished_sweep
    assert [r["status"] for r in outcome.rows] == ["finished", "finished"]
    client, runs = mlflow_runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "tiny" and parents[0].info.status == "FINISHED"
    assert len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    for run in children:
        assert run.info.status == "FINISHED"
        assert set(run.data.params) == {"model"}  # only the swept setting is a param
        assert run.data.tags["cfg.hidden"] == "16" and run.data.tags["cfg.epochs"] == "2"
        history = client.get_metric_history(run.info.run_id, "test/mae")
        assert sorted(m.step for m in history) == [1, 2]  # one value per epoch
        for key in ("messages/r2_force", "messages/r2_accel", "messages/sparsity_share", "train/loss", "val/mae"):
            assert key in run.data.metrics
        # "sparse" is a verdict only for a model with a sparsity prior (L1 here); the bottleneck's is n/a
        assert ("messages/sparse" in run.data.metrics) == (run.data.params["model"] == "l1")
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {
            "metrics.json",
            "checkpoint.pt",
            "messages_vs_force.png",
            "message_stds.png",
            "config.json",
            "trial_settings.json",
        } <= artifacts
    assert {"sweep.json"} <= {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    table = (Path(outcome.experiment_path) / "sweep_results.csv").read_text()
    assert table.count("finished") == 2 and "bottleneck" in table
    assert all(r.data.tags["data/system"] == "spring" and "data/dim" not in r.data.metrics for r in children)
    # Tune knows each trial's swept settings, not only its key (params.json, Tune's results)
    tune_params = [json.loads(p.read_text()) for p in Path(outcome.experiment_path).glob("t00*/params.json")]
    assert sorted((p["key"], p["model"]) for p in tune_params) == [("t000", "bottleneck"), ("t001", "l1")]
    # and its live table leads with the validation error, R² and sparsity share and ratio (the L1 trial: a
    # bottleneck's messages have no other components to be sparse against)
    first = json.loads(next(Path(outcome.experiment_path).glob("t001*/result.json")).read_text().splitlines()[0])
    assert list(first)[:4] == ["val/mae", "val/r2_best", "val/sparsity_share", "val/sparsity_ratio"]
    bottleneck = json.loads(next(Path(outcome.experiment_path).glob("t000*/result.json")).read_text().splitlines()[0])
    assert list(bottleneck)[:2] == ["val/mae", "val/r2_best"] and "val/sparsity_share" not in bottleneck
    # Tune's CSV and JSON result files per trial, and no TensorBoard events (its logger imported torch into the
    # driver and wrote every result again; MLflow holds the metrics)
    trials = list(Path(outcome.experiment_path).glob("t00*_*"))
    assert len(trials) == 2 and all((t / "progress.csv").is_file() and (t / "result.json").is_file() for t in trials)
    assert not list(Path(outcome.experiment_path).rglob("events.out.tfevents*"))


def test_sweep_distils_finished_trials_into_nested_mlflow_runs(local_ray, tmp_path):
    cfg = from_dict(
        SweepConfig,
        sweep_dict(
            tmp_path,
            trials={"model": ["bottleneck", "standard"], "epochs": 2, "lr": [1e-3, 1e30]},
            distill={"backend": "operon", "setting": "fast", "samples": 200},
        ),
    )
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    by_trial = {(r["model"], r["status"]): r for r in outcome.rows}
    # the finished bottleneck trial got a verdict; diverged trials are not distilled
    assert by_trial[("bottleneck", "finished")]["law"] in ("force", "force/mass", "none")
    assert all(r["law"] == "-" for r in outcome.rows if r["status"] != "finished")
    assert "law" in outcome.table
    client, runs = mlflow_runs(tmp_path)
    distills = [r for r in runs if "raysym.distill_of" in r.data.tags]
    finished = [r for r in outcome.rows if r["status"] == "finished"]
    assert len(distills) == len(finished) >= 1
    trial_runs = {
        r.info.run_id: r for r in runs if "raysym.trial_id" in r.data.tags and "raysym.distill_of" not in r.data.tags
    }
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    for run in distills:
        trial = trial_runs[run.data.tags["mlflow.parentRunId"]]  # nested under its trial's run
        assert run.data.params == {"backend": "operon", "setting": "fast"}
        # the metrics sit on the trial's run, once: MLflow's comparison of trials shows them there
        for key in ("distill/test_mae", "distill/gn_test_mae", "distill/recovered", "distill/complexity"):
            assert key in trial.data.metrics and key not in run.data.metrics
            assert len(client.get_metric_history(trial.info.run_id, key)) == 1
        assert run.data.tags["distill/edge_formulas"].startswith("[")
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"summary.json", "edge0_front.csv", "edge0_front.md", "node1_front.md"} <= artifacts
        # the distillation run spans the distillation (it was created after the fact, 25 ms long, before): at
        # least half the distillation's own measured time (its jobs ran on 2 actors). Not an absolute floor:
        # on a quiet machine this distillation takes well under a second (0.6 s, 2026-12-07).
        seconds = (run.info.end_time - run.info.start_time) / 1000
        assert trial.data.metrics["distill/seconds"] > 0.1, trial.data.metrics["distill/seconds"]
        assert seconds >= trial.data.metrics["distill/seconds"] / 2, (seconds, trial.data.metrics["distill/seconds"])
        assert trial.info.start_time <= run.info.start_time and run.info.end_time >= trial.info.end_time
    # every run names its source and, from a git checkout, the commit
    for run in runs:
        assert run.data.tags["mlflow.source.name"].startswith("raysym") and run.data.tags["raysym.version"]
        if commit.returncode == 0:
            assert run.data.tags["mlflow.source.git.commit"] == commit.stdout.strip()


def test_distill_a_finished_sweep_afterwards_from_mlflow(finished_sweep, tmp_path, monkeypatch, capsys):
    db_path, cfg, outcome = finished_sweep
    monkeypatch.chdir(tmp_path)  # downloads go to ./distill_runs
    uri = f"sqlite:///{db_path}/mlflow.db"
    args = [
        "distill",
        "--run",
        outcome.parent_run_id,
        "--tracking-uri",
        uri,
        "--backend",
        "operon",
        "--setting",
        "fast",
        "--samples",
        "200",
    ]
    assert main(args) in (0, 1)  # 1 only if a job failed; the runs are logged either way
    assert "edge_formulas" in capsys.readouterr().out
    client, runs = mlflow_runs(db_path)
    distills = [r for r in runs if "raysym.distill_of" in r.data.tags]
    trial_runs = {
        r.info.run_id for r in runs if "raysym.trial_id" in r.data.tags and "raysym.distill_of" not in r.data.tags
    }
    assert len(distills) == 2 and {r.data.tags["mlflow.parentRunId"] for r in distills} == trial_runs
    assert all(
        "distill/gn_test_mae" in client.get_run(r.data.tags["mlflow.parentRunId"]).data.metrics for r in distills
    )
    # distilling again continues the same nested runs instead of adding new ones
    main(args)
    _, again = mlflow_runs(db_path)
    assert len([r for r in again if "raysym.distill_of" in r.data.tags]) == 2
    assert main(["distill", "--run", "0123456789abcdef", "--tracking-uri", uri]) == 2
    assert "No MLflow run" in capsys.readouterr().err


def test_same_name_without_resume_is_refused_and_resume_adds_no_runs(finished_sweep, capsys):
    tmp_path, cfg, _ = finished_sweep
    path = write_yaml(tmp_path / "again.yaml", sweep_dict(tmp_path))
    assert main(["sweep", str(path)]) == 2
    assert "already exists" in capsys.readouterr().err
    _, before = mlflow_runs(tmp_path)
    outcome = run_sweep(cfg, resume=True, say=lambda m: None, verbose=0)
    assert len(outcome.rows) == 2
    _, after = mlflow_runs(tmp_path)
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)


def _interrupt_then_resume(tmp_path: Path, cfg: dict, presses: int = 1, own_ray: bool = False) -> None:
    """Run `raysym sweep` in a subprocess, Ctrl-C (SIGINT) it after its first two checkpoints (``presses``
    times, 0.1 s apart: an impatient user), check that it says how to resume, then run it again with
    --resume until it finishes. Both programs join the session's Ray (helpers.on_session_ray), or with
    ``own_ray`` each starts and stops a local Ray of its own, as on a laptop."""
    path = write_yaml(tmp_path / "s.yaml", cfg)
    presimulate(cfg)  # on the session's Ray: the program below reuses the data (helpers.presimulate)
    cmd = [sys.executable, "-m", "raysym.cli", "sweep", str(path)]
    if own_ray:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    else:
        cmd, env = on_session_ray(cmd)
    first = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs_dir = tmp_path / "runs" / cfg["name"]

    def two_checkpoints():
        if first.poll() is not None:  # ended before the Ctrl-C: say why now, not after the wait's 10 minutes
            pytest.fail(f"the sweep ended by itself (exit {first.returncode}): {first.stdout.read()[-3000:]}")
        return len(list(runs_dir.glob("t00*/checkpoint_*"))) >= 2

    _wait_for(two_checkpoints, seconds=600, every=0.2)
    for press in range(presses):
        if first.poll() is None:
            first.send_signal(signal.SIGINT)
            time.sleep(0.1)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 130, out[-3000:]
    assert "--resume" in out and "interrupted" in out
    assert "KeyboardInterrupt" not in out and "Exception ignored" not in out, out[-3000:]  # no traceback
    _, runs = mlflow_runs(tmp_path)
    assert {r.info.status for r in runs} == {"KILLED"}
    # As a sweep started with another period left it (Tune's own default, say). Tune restores the period with
    # the state, so --resume must set it back to raysym's (once a second).
    for state_file in runs_dir.glob("experiment_state-*.json"):
        state = json.loads(state_file.read_text())
        assert state["runner_data"]["_checkpoint_period"] == "1"
        state["runner_data"]["_checkpoint_period"] = "auto"
        state_file.write_text(json.dumps(state))

    second = subprocess.run(cmd + ["--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 of 2 trials finished" in second.stdout
    periods = {
        json.loads(f.read_text())["runner_data"]["_checkpoint_period"] for f in runs_dir.glob("experiment_state-*.json")
    }
    assert periods == {"1"}


def test_interrupted_sweep_resumes_where_it_stopped_without_duplicate_runs(local_ray, tmp_path):
    epochs = 40
    _interrupt_then_resume(
        tmp_path, sweep_dict(tmp_path, name="intr", trials={"model": ["bottleneck", "l1"], "epochs": epochs})
    )
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 3  # the same parent and two children, continued
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        if "mlflow.parentRunId" in run.data.tags:
            steps = {m.step for m in client.get_metric_history(run.info.run_id, "test/mae")}
            assert steps == set(range(1, epochs + 1))
            assert run.data.metrics["epochs_done"] == epochs


def test_ctrl_c_pressed_three_times_still_stops_cleanly_and_resumes(local_ray, tmp_path):
    epochs = 40
    _interrupt_then_resume(
        tmp_path,
        sweep_dict(tmp_path, name="intr3", trials={"model": ["bottleneck", "l1"], "epochs": epochs}),
        presses=3,
        own_ray=True,  # the presses land while the program stops its own Ray too
    )
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        if "mlflow.parentRunId" in run.data.tags:
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "test/mae")) == list(
                range(1, epochs + 1)
            )


def test_interrupted_optuna_search_resumes_the_same_study(local_ray, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path}/optuna.db"
    search = {
        "kind": "optuna",
        "trials": 2,
        "seed": 0,
        "storage": storage,
        "study": "st",
        "space": {"schedule_shape.peak": {"low": 0.01, "high": 1.0, "log": True}},
    }
    cfg = sweep_dict(
        tmp_path,
        name="intr-opt",
        trials={"model": "l1", "epochs": 40},
        search=search,
        resources={"max_concurrent_trials": 1},
    )
    _interrupt_then_resume(tmp_path, cfg)
    study = optuna.load_study(study_name="st", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]  # the interrupted one finished
    _, runs = mlflow_runs(tmp_path)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}
    sampled = sorted(float(r.data.params["schedule_shape.peak"]) for r in children)
    assert sampled == pytest.approx(sorted(t.params["schedule_shape.peak"] for t in study.trials))


def test_mlflow_server_serves_the_sweep_runs(finished_sweep, tmp_path):
    db_path, _, _ = finished_sweep
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{db_path}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=mlflow_server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: urllib.request.urlopen(base + "/health", timeout=2).status == 200, seconds=120)
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=tests") as resp:
            exp_id = json.load(resp)["experiment"]["experiment_id"]
        req = urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [exp_id]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as resp:
            runs = json.load(resp)["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        parents = [t for t in tags if "mlflow.parentRunId" not in t]
        trials = [t for t in tags if "raysym.trial_id" in t and "raysym.distill_of" not in t]
        assert [t["mlflow.runName"] for t in parents] == ["tiny"]
        assert len(trials) == 2 and all("mlflow.parentRunId" in t for t in trials)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_unreachable_tracking_server_is_a_user_error(tmp_path, capsys):
    port = _free_port()
    path = write_yaml(tmp_path / "s.yaml", sweep_dict(tmp_path, tracking={"uri": f"http://127.0.0.1:{port}"}))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_too_many_gpus_per_trial_is_refused_before_any_trial(local_ray, tmp_path, capsys):
    path = write_yaml(tmp_path / "s.yaml", sweep_dict(tmp_path, resources={"gpus_per_trial": 1}))
    assert main(["sweep", str(path)]) == 2
    assert "but this machine has no GPU" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_crashed_trial_is_retried_from_its_checkpoint(local_ray, tmp_path, monkeypatch):
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv("RAYSYM_INJECT_CRASH", f"1:{marker}")
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, trials={"model": "l1", "epochs": 3}))
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert marker.exists()  # it did crash once
    (row,) = outcome.rows
    assert row["status"] == "finished" and row["epochs"] == 3
    client, runs = mlflow_runs(tmp_path)
    child = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(child) == 1 and child[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(child[0].info.run_id, "test/mae")]
    assert sorted(set(steps)) == [1, 2, 3]  # epoch 1 was not trained again after the crash
    assert steps.count(1) == 1


def test_diverged_trial_is_marked_failed_and_the_sweep_goes_on(local_ray, tmp_path, monkeypatch):
    from ray import tune

    frozen, fit = [], tune.Tuner.fit

    def fit_seeing_the_heap(self):  # the driver's heap is out of Ray's frequent collections during the loop
        frozen.append(gc.get_freeze_count())
        return fit(self)

    monkeypatch.setattr(tune.Tuner, "fit", fit_seeing_the_heap)
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, trials={"model": "standard", "lr": [1e-3, 1e30], "epochs": 1}))
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert len(frozen) == 1 and frozen[0] > 100_000 and gc.get_freeze_count() == 0  # and collectable again after
    status = {r["trial"]: r["status"] for r in outcome.rows}
    assert status == {"t000": "finished", "t001": "diverged"}
    _, runs = mlflow_runs(tmp_path)
    by_lr = {r.data.params.get("lr"): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert by_lr["1e+30"].info.status == "FAILED" and "non-finite" in by_lr["1e+30"].data.tags["reason"]
    assert by_lr["0.001"].info.status == "FINISHED"


def test_asha_stops_a_lagging_trial_and_mlflow_and_the_report_say_so(local_ray, tmp_path):
    """Two trials one after the other: lr 3e-3, then lr 1e-9 (the untrained network's MAE). At the rung of
    epoch 2 the second lags the first, so ASHA stops it: its run ends KILLED with the reason, its curves
    stop at epoch 2, it is not distilled, and the report counts it as stopped early."""
    from raysym.report import make_report

    cfg = from_dict(
        SweepConfig,
        sweep_dict(
            tmp_path,
            name="asha",
            trials={"model": "bottleneck", "lr": [3e-3, 1e-9], "epochs": 4},
            scheduler={"kind": "asha", "grace_period": 2, "reduction_factor": 2},
            resources={"cpus_per_trial": 1, "max_concurrent_trials": 1},
            distill={"backend": "operon", "setting": "fast", "samples": 200},
        ),
    )
    from raysym import trial_kind
    from raysym.sweep import trial_scheduler

    # ASHA compares trials on the validation split, never the test split
    assert trial_scheduler(cfg, trial_kind.get("nbody").plan(cfg))._metric == "val/mae"
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert [r["status"] for r in outcome.rows] == ["finished", "stopped early"]
    client, runs = mlflow_runs(tmp_path)
    trials = {
        float(r.data.params["lr"]): r
        for r in runs
        if "raysym.trial_id" in r.data.tags and "raysym.distill_of" not in r.data.tags
    }
    good, bad = trials[3e-3], trials[1e-9]
    assert good.info.status == "FINISHED" and "raysym.stopped_early" not in good.data.tags
    assert bad.info.status == "KILLED" and "after epoch 2" in bad.data.tags["raysym.stopped_early"]
    assert [m.step for m in client.get_metric_history(bad.info.run_id, "test/mae")] == [1, 2]
    lagging = [m.value for m in client.get_metric_history(bad.info.run_id, "val/mae")]
    leading = [m.value for m in client.get_metric_history(good.info.run_id, "val/mae")]
    assert len(lagging) == 2 and lagging[-1] > leading[1]  # the rung's comparison, on the validation error
    assert [m.step for m in client.get_metric_history(good.info.run_id, "test/mae")] == [1, 2, 3, 4]
    distilled = {r.data.tags["mlflow.parentRunId"] for r in runs if "raysym.distill_of" in r.data.tags}
    assert distilled == {good.info.run_id}
    report = make_report(cfg.tracking.uri, "asha", tmp_path / "report", say=lambda m: None)
    text = report.markdown.read_text()
    assert "stopped early" in text, text


def test_optuna_search_runs_and_a_second_run_continues_the_study(local_ray, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path}/optuna.db"
    search = {
        "kind": "optuna",
        "trials": 2,
        "seed": 1,
        "storage": storage,
        "study": "shapes",
        "space": {"schedule_shape.peak": {"low": 0.01, "high": 1.0, "log": True}},
    }
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, trials={"model": "l1", "epochs": 1}, search=search))
    first = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert len(first.rows) == 2 and all(r["status"] == "finished" for r in first.rows)
    study = optuna.load_study(study_name="shapes", storage=storage)
    assert len(study.trials) == 2
    peaks = [t.params["schedule_shape.peak"] for t in study.trials]
    assert all(0.01 <= p <= 1.0 for p in peaks)
    # the objective Optuna was told is each trial's validation R² (val/r2_best), not a test-split number
    _, runs = mlflow_runs(tmp_path)
    scored = [
        (float(r.data.params["schedule_shape.peak"]), r.data.metrics) for r in runs if "val/r2_best" in r.data.metrics
    ]
    for t in study.trials:
        peak, metrics = min(scored, key=lambda pm: abs(pm[0] - t.params["schedule_shape.peak"]))
        assert peak == pytest.approx(t.params["schedule_shape.peak"], rel=1e-4)
        assert t.value == pytest.approx(metrics["val/r2_best"], abs=1e-9) and "messages/r2_best" in metrics

    cfg2 = from_dict(
        SweepConfig, sweep_dict(tmp_path, name="tiny-more", trials={"model": "l1", "epochs": 1}, search=search)
    )
    run_sweep(cfg2, say=lambda m: None, verbose=0)
    study = optuna.load_study(study_name="shapes", storage=storage)
    assert len(study.trials) == 4
    assert [t.params["schedule_shape.peak"] for t in study.trials[:2]] == peaks
    _, runs = mlflow_runs(tmp_path)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4
    assert all("schedule_shape.peak" in r.data.params for r in children)


# --------------------------------------------------------------------------------------------------
