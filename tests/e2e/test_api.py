"""raysym from Python: a tiny sweep returns a DataFrame, a second call returns the same results without a
second run, Ray is shut down when the API started it, and the MLflow results load as a DataFrame."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import mlflow_runs, sweep_dict, write_yaml

SCRIPT = """
import json, sys
import ray, raysym
path = sys.argv[1]
first = raysym.run_sweep(path, say=lambda m: None)
after_first = ray.is_initialized()
again = raysym.run_sweep(path, say=lambda m: None)
runs = raysym.load_results(path)
print(json.dumps({
    "first": first.to_dict("records"),
    "again": again.to_dict("records"),
    "ray_after": after_first,
    "runs": runs.to_dict("records"),
    "parent": first.attrs.get("parent_run_id"),
}, default=str))
"""


def test_a_sweep_from_python_returns_one_row_per_trial_and_a_rerun_returns_them_again(tmp_path):
    path = write_yaml(tmp_path / "sweep.yaml", sweep_dict(tmp_path))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])

    first = result["first"]
    assert [(r["trial"], r["model"], r["status"]) for r in first] == [
        ("t000", "bottleneck", "finished"),
        ("t001", "l1", "finished"),
    ]
    assert all(r["test_mae"] > 0 and r["test_mae_in"] > 0 for r in first)
    assert result["ray_after"] is False  # the API started Ray, so it shut it down

    # a second call: the same rows, from the finished sweep, and no second run in MLflow
    again = result["again"]
    assert [(r["trial"], r["status"]) for r in again] == [(r["trial"], r["status"]) for r in first]
    assert [round(r["test_mae"], 6) for r in again] == [round(r["test_mae"], 6) for r in first]
    _, runs = mlflow_runs(tmp_path)
    assert len([r for r in runs if "raysym.trial_id" in r.data.tags]) == 2

    # load_results: every final metric under its namespaced name, one row per trial
    loaded = {r["trial"]: r for r in result["runs"]}
    assert sorted(loaded) == ["t000", "t001"] and all(r["status"] == "finished" for r in loaded.values())
    for row in first:
        # the same measurements along both paths (Tune's results and MLflow), not just numbers in range
        for column, metric in (("test_mae", "test/mae"), ("r2_force", "messages/r2_force"), ("in_range", None)):
            metric = metric or "messages/in_range_fraction"
            assert abs(loaded[row["trial"]][metric] - row[column]) < 1e-9, (column, row)
        assert loaded[row["trial"]]["model"] in ("bottleneck", "l1")  # the swept setting
    assert result["parent"]

    # Issue 30, item 2: the same name with a config that changes what the trials are (epochs, hidden) is
    # another sweep: refused, saying what differs, instead of the old table passing for this config's
    import pytest

    import raysym
    from raysym.errors import UserError

    changed = sweep_dict(tmp_path, trials={"epochs": 3, "hidden": 8})
    with pytest.raises(UserError, match="finished, but with a different plan") as refused:
        raysym.run_sweep(changed, say=lambda m: None)
    assert "epochs" in str(refused.value) and "hidden" in str(refused.value)
    _, runs = mlflow_runs(tmp_path)
    assert len([r for r in runs if "raysym.trial_id" in r.data.tags]) == 2  # nothing ran
