"""Issue 29: trials run in reused Tune actors (one worker process trains one trial after another, so torch,
its compiler front end and matplotlib are imported once per worker, not once per trial). A trial trained
in a reused worker must give bit-identical numbers to the same trial in a fresh one, on CPU."""

from __future__ import annotations

from helpers import sweep_dict

from raysym.config import SweepConfig, from_dict
from raysym.sweep import run_sweep
from raysym.sweep_tracking import saved_trials


def _numbers(result: dict) -> dict:
    """The trial's own measurements (Tune's bookkeeping, times and process ids left out)."""
    return {k: v for k, v in result.items() if "/" in k and isinstance(v, (int, float)) and "time" not in k}


def test_a_trial_in_a_reused_worker_gives_the_numbers_of_a_fresh_one(local_ray, tmp_path):
    one_at_a_time = {"cpus_per_trial": 1, "max_concurrent_trials": 1}
    both = from_dict(
        SweepConfig,
        sweep_dict(tmp_path, name="reused", trials={"model": "bottleneck", "seed": [0, 1]}, resources=one_at_a_time),
    )
    run_sweep(both)
    trials = {t.config["key"]: t for t in saved_trials(str(tmp_path / "runs" / "reused"))}
    first, second = (trials[k].last_result for k in sorted(trials))
    assert first["pid"] == second["pid"]  # the second trial ran in the first one's worker

    alone = from_dict(
        SweepConfig,
        sweep_dict(tmp_path, name="fresh", trials={"model": "bottleneck", "seed": 1}, resources=one_at_a_time),
    )
    run_sweep(alone)
    (fresh,) = (t.last_result for t in saved_trials(str(tmp_path / "runs" / "fresh")))
    assert fresh["pid"] != second["pid"]
    expected = _numbers(fresh)
    assert len(expected) > 10 and "messages/r2_force" in expected
    assert _numbers(second) == expected  # bit-identical: == on floats
