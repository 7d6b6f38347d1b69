"""The test tiers and their shared fixtures.

Tiers, one folder each, each with its marker (set here from the folder, so ``-m unit`` and
``tests/unit`` select the same tests):

- ``tests/unit``: no Ray, no MLflow, tiny tensors; runs in about a minute (``pytest tests/unit``);
- ``tests/e2e``: real local Ray, Tune, Ray Data and MLflow on sqlite;
- ``tests/faults``: the fault-injection and bad-input suites (RELIABILITY.md);
- ``tests/cluster``: a two-node Ray cluster and the cluster YAML.

``tests/`` itself is put on the path of this process and, through PYTHONPATH, of the Ray workers a
local Ray starts, so ``helpers`` (and a trial kind a test defines in its own module) import in both.
"""

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "e2e", "faults", "cluster")
sys.path.insert(0, str(TESTS))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)


# The slower tiers' files, longest first: seconds each took in two pytest-xdist processes on the 2-core
# machine (BENCHMARKS.md, "The test suite's time"). README's command runs them with `--dist loadfile
# --no-loadscope-reorder`: one file at a time per process, handed out in this order, so that short files end
# the run and both processes finish together (longest-first scheduling; xdist's own order, by number of tests,
# ended the run on a 74-s file with the other process idle for 33 s). A new file of those tiers is placed here
# by its measured time (collection stops and says so until it is).
LONGEST_FIRST = {
    "faults/test_reliability.py": 200,
    "e2e/test_sweep.py": 171,
    "e2e/test_report.py": 94,
    "e2e/test_trials.py": 75,
    "e2e/test_halo_sweep.py": 59,
    "faults/test_sweep_integrity.py": 55,
    "e2e/test_device_script.py": 45,
    "faults/test_safety.py": 43,
    "e2e/test_cli.py": 34,
    "e2e/test_shards.py": 31,
    "cluster/test_two_nodes.py": 30,
    "faults/test_disk.py": 23,
    "faults/test_bad_input.py": 22,
    "e2e/test_api.py": 20,
    "e2e/test_reused_actors.py": 18,
    "e2e/test_trial_kinds.py": 17,
    "e2e/test_tracking_writer.py": 15,
    "faults/test_round_three.py": 11,
    "cluster/test_cluster_config.py": 0,
    # the unit tier runs alone (`-n 2`, test by test): its one long test (16 s, the halo law recovered by
    # the documented defaults) starts first instead of ending the tier with the other process idle
    "unit/test_halos.py": 16,
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath)).resolve().relative_to(TESTS)
        tier = path.parts[0]
        assert tier in TIERS, f"{item.nodeid}: put the test in one of the tier folders {TIERS}"
        assert tier == "unit" or path.as_posix() in LONGEST_FIRST, (
            f"{item.nodeid}: give {path.as_posix()} its place in tests/conftest.py's LONGEST_FIRST (its seconds "
            "in README's test command)"
        )
        item.add_marker(getattr(pytest.mark, tier))
    # longest file first (a stable sort: each file's tests keep their order; unit files not listed keep theirs)
    items.sort(key=lambda item: -LONGEST_FIRST.get(Path(str(item.fspath)).resolve().relative_to(TESTS).as_posix(), 0))


@pytest.fixture(scope="session")
def local_ray():
    """A real local Ray for the whole session (started once: it takes a few seconds)."""
    import ray

    from raysym._ray import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_spring(local_ray, tmp_path_factory):
    """A small 2D spring dataset written by the real Ray Data pipeline (3 train shards, 2 test)."""
    from raysym import shards
    from raysym.config import SimulationConfig

    cfg = SimulationConfig(
        system="spring", dim=2, particles=4, sims=12, test_sims=6, steps=60, stride=5, seed=3, sims_per_shard=5
    )
    out = tmp_path_factory.mktemp("data") / "spring-2d"
    shards.write_dataset(cfg, out)
    return cfg, out
