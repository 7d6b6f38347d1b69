"""Shared fixtures: a real local Ray (2 CPUs) and tiny datasets written through it."""

import pytest


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
