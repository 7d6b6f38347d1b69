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


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = Path(str(item.fspath)).resolve().relative_to(TESTS).parts[0]
        assert tier in TIERS, f"{item.nodeid}: put the test in one of the tier folders {TIERS}"
        item.add_marker(getattr(pytest.mark, tier))


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
