"""A sweep's records tell the truth (issue 16): a resume is the same sweep or is refused (class 2), a
failed start leaves no MLflow run RUNNING and a reused name is flagged by the report (class 7), and the
exit status says whether every trial finished (class 9). Real local Ray, Tune and MLflow on sqlite."""

from __future__ import annotations

import json

import pytest
from helpers import mlflow_runs, sweep_dict, write_yaml
from ray import tune

from raysym.cli import main
from raysym.config import SweepConfig, from_dict
from raysym.sweep import run_sweep
from raysym.sweep_plan import PLAN_FILE


def _statuses(tmp_path) -> list[tuple[str, str]]:
    _, runs = mlflow_runs(tmp_path)
    return sorted((r.info.run_name, r.info.status) for r in runs)


def test_a_resume_with_another_plan_is_refused_and_the_same_plan_resumes(local_ray, tmp_path, capsys):
    cfg = sweep_dict(tmp_path, name="fp", trials={"model": ["bottleneck", "l1"], "epochs": 1})
    path = write_yaml(tmp_path / "s.yaml", cfg)
    assert main(["sweep", str(path)]) == 0
    capsys.readouterr()
    runs_before = _statuses(tmp_path)
    assert len(runs_before) == 3 and (tmp_path / "runs" / "fp" / PLAN_FILE).is_file()

    changes = [
        ({"trials": {**cfg["trials"], "model": ["l1", "bottleneck"]}}, 'trials.t000.train.model: "bottleneck" -> "l1"'),
        ({"trials": {**cfg["trials"], "epochs": 2}}, "train.epochs: 1 -> 2"),
        ({"data": {**cfg["data"], "sims": 9}}, "data.sims: 8 -> 9"),
        ({"distill": {"backend": "operon", "setting": "fast"}}, "distill: null ->"),
        ({"scheduler": {"kind": "asha"}}, 'scheduler.kind: "fifo" -> "asha"'),
    ]
    for change, expected in changes:
        changed = write_yaml(tmp_path / "changed.yaml", {**cfg, **change})
        assert main(["sweep", str(changed), "--resume"]) == 2
        err = capsys.readouterr().err
        assert expected in err and "different plan" in err and "Traceback" not in err, err
    assert _statuses(tmp_path) == runs_before  # nothing recorded, nothing reopened

    # resources, tracking and the trials' PNGs may change: a resume with more concurrent trials (the tests'
    # sweeps run one at a time) and figures on is the same sweep
    same = write_yaml(
        tmp_path / "same.yaml",
        {
            **cfg,
            "trials": {**cfg["trials"], "figures": True},
            "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 2},
        },
    )
    assert main(["sweep", str(same), "--resume"]) == 0
    assert "2 of 2 trials finished" in capsys.readouterr().out
    assert _statuses(tmp_path) == runs_before  # one run per trial, no duplicates, all FINISHED


def test_a_failed_start_ends_its_parent_run_and_a_reused_name_is_flagged(local_ray, tmp_path, capsys, monkeypatch):
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, name="twice", trials={"model": "bottleneck", "epochs": 1}))

    def broken_fit(self):  # a failure after the parent run exists (a full disk, a Tune bug)
        raise RuntimeError("storage went away")

    with monkeypatch.context() as patch:
        patch.setattr(tune.Tuner, "fit", broken_fit)
        with pytest.raises(RuntimeError, match="storage went away"):
            run_sweep(cfg, say=lambda m: None, verbose=0)
    client, runs = mlflow_runs(tmp_path)
    (parent,) = runs
    assert parent.info.status == "FAILED" and "storage went away" in parent.data.tags["raysym.failure"]

    # Tune had saved no state, so nothing can be resumed: the folder is gone and the sweep starts again,
    # as a second sweep of that name
    assert not (tmp_path / "runs" / "twice").exists()
    second = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert [r["status"] for r in second.rows] == ["finished"]
    parents = [r for r in mlflow_runs(tmp_path)[1] if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"]  # none left RUNNING

    capsys.readouterr()
    assert (
        main(["report", "twice", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--out", str(tmp_path / "rep")])
        == 0
    )
    err = capsys.readouterr().err
    assert "2 sweeps are named 'twice'" in err and second.parent_run_id in err and parent.info.run_id in err
    # class 4: a report is rewritten over an earlier raysym report, never over a report.md of the user's
    assert (
        main(["report", "twice", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--out", str(tmp_path / "rep")])
        == 0
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.md").write_text("# My notes\n")
    capsys.readouterr()
    assert (
        main(["report", "twice", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--out", str(tmp_path / "mine")])
        == 2
    )
    assert "is not a raysym report" in capsys.readouterr().err
    assert (tmp_path / "mine" / "report.md").read_text() == "# My notes\n" and len(
        list((tmp_path / "mine").iterdir())
    ) == 1


def test_the_exit_status_says_whether_every_trial_finished(local_ray, tmp_path, capsys):
    cfg = sweep_dict(tmp_path, name="exit", trials={"model": "standard", "lr": [1e-3, 1e30], "epochs": 1})
    path = write_yaml(tmp_path / "s.yaml", cfg)
    assert main(["sweep", str(path)]) == 1
    captured = capsys.readouterr()
    assert "1 of 2 trials finished" in captured.out
    assert "t001 spring-2d standard: diverged" in captured.out
    assert "1 of 2 trials did not finish" in captured.err and "Traceback" not in captured.err
    rows = (tmp_path / "runs" / "exit" / "sweep_results.csv").read_text()
    assert "diverged" in rows and json.loads((tmp_path / "runs" / "exit" / PLAN_FILE).read_text())["fingerprint"]


def test_a_distillation_pool_no_node_can_host_fails_instead_of_hanging(local_ray):
    """Class 3, the bounded wait: actors asking for a resource no live node has (a lost node, an
    autoscaler that cannot add one) end the wait with a message; a sweep's up-front check refuses the
    same request before anything starts (tests/faults/test_bad_input.py)."""
    from raysym.distill_pool import DistillPool
    from raysym.errors import UserError

    said = []
    pool = DistillPool(1, resources={"nowhere": 1}, say=said.append)
    pool.poll_s, pool.start_timeout_s = 0.5, 2.0
    try:
        with pytest.raises(
            UserError, match=r"No distillation actor could start for \d+ s: each asks for CPU 1, nowhere 1"
        ):
            pool.map([{"kind": "edge", "index": 0, "component": 0}])
    finally:
        pool.shutdown()
    assert sum("a node with those resources (none is up)" in line for line in said) == 1  # said once
    # the job waits for its actor to start, and says so (it is not "running" on an actor that never started)
    assert said[0] == "distill: 1 job(s) (1 edge) on 1 actor(s)"
    assert "0/1 jobs done, 0 running, 1 waiting for an actor" in said[1]


def test_two_sweeps_on_one_storage_and_one_dataset_started_together_both_finish(tmp_path):
    """Issue 28, class 5: two different sweeps (two names) on one storage folder, sharing one dataset, started
    seconds apart, as two programs. Each has its own lock, Tune folder, local Ray and MLflow parent run; the
    dataset both need is written by whichever finishes first and used by the other (before: the second
    stopped with "was filled by something else"). Their MLflow store is a brand-new file (new_store): both
    programs open it, and one makes its tables while the other waits (raysym.track._create_store)."""
    import subprocess
    import sys

    from helpers import _wait_for

    procs = {}
    for name in ("left", "right"):
        path = write_yaml(
            tmp_path / f"{name}.yaml", sweep_dict(tmp_path, name=name, trials={"epochs": 1}, new_store=True)
        )
        if name == "right":  # once the first is writing the dataset (two Rays starting in the same instant
            # could race for a port, which is not what this test is about)
            _wait_for(lambda: (tmp_path / "data").is_dir() and any((tmp_path / "data").iterdir()), seconds=300)
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "raysym.cli", "sweep", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
        assert "2 of 2 trials finished" in out and "Traceback" not in err
    assert len(list((tmp_path / "data").iterdir())) == 1  # one dataset; no hidden half-written copy left
    parents = [r for r in mlflow_runs(tmp_path)[1] if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.run_name for r in parents) == ["left", "right"]
    assert all(r.info.status == "FINISHED" for r in parents)
