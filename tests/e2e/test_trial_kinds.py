"""A new trial kind needs its own module and one registry line, nothing else: tests/toy_kind.py, registered
here, is planned, trained on Ray Tune, tracked in MLflow, distilled and reported by raysym unchanged."""

from __future__ import annotations

import pytest
from helpers import mlflow_runs

from raysym import trial_kind
from raysym.config import SweepConfig, from_dict
from raysym.errors import UserError
from raysym.report import make_report
from raysym.sweep import run_sweep


def line_sweep(tmp_path, **over) -> dict:
    return {
        "name": "lines",
        "kind": "line",
        "storage": str(tmp_path / "runs"),
        "data": {"slope": [2.0, -1.0]},
        "trials": {"epochs": 3, "lr": 0.3},
        "resources": {"cpus_per_trial": 1, "distill_workers": 1},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
        "distill": {"backend": "operon", "setting": "fast"},
        **over,
    }


def test_a_new_kind_runs_through_sweep_distillation_and_report(local_ray, tmp_path, monkeypatch):
    monkeypatch.setitem(trial_kind.KINDS, "line", "toy_kind")  # the one registry line
    cfg = from_dict(SweepConfig, line_sweep(tmp_path))
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)

    # the sweep's table has the kind's columns and every trial finished with its law
    assert outcome.table.splitlines()[0].split() == ["trial", "system", "model", "status", "epochs", "test_mae", "law"]
    assert [(r["status"], r["epochs"], r["law"]) for r in outcome.rows] == [("finished", 3, "line")] * 2
    assert all(r["test_mae"] < 0.1 for r in outcome.rows)

    # MLflow: one parent, two trials recording their kind, each with a distillation run
    client, runs = mlflow_runs(tmp_path)
    trials = [r for r in runs if r.data.tags.get("raysym.kind") == "line"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert all(r.data.metrics["distill/slope_error"] < 0.05 for r in trials)
    distillations = [r for r in runs if "raysym.distill_of" in r.data.tags]
    assert len(distillations) == 2

    # the report lays out the kind's own sections and figures
    report = make_report(cfg.tracking.uri, "lines", tmp_path / "report", say=lambda m: None)
    assert [s.title for s in report.sections] == ["Settings", "Lines", "Figures", "Trials"]
    fitted = report.sections[1].tables[0]
    assert sorted(row[1] for row in fitted.rows) == ["line slope=-1 lr=0.3", "line slope=2 lr=0.3"]
    assert "Fitted lines" in (tmp_path / "report" / "report.md").read_text()


def test_a_kind_not_in_the_registry_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(UserError, match="Unknown trial kind 'lines'.*nbody|halos"):
        from_dict(SweepConfig, line_sweep(tmp_path, kind="lines"))
