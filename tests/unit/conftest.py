"""The unit tier runs without Ray and without MLflow: a test that starts Ray or imports MLflow fails here,
so the tier stays fast (a test that needs them belongs in tests/e2e). Only what the test itself started
counts, so the tiers can also run in one session (`pytest tests`), where e2e tests come first."""

import sys

import pytest


@pytest.fixture(scope="session")
def local_ray():
    pytest.fail("unit tests run without Ray: move this test to tests/e2e")


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.fixture(autouse=True)
def _no_ray_no_mlflow():
    ray_before, mlflow_before = _ray_running(), "mlflow" in sys.modules
    yield
    assert ray_before or not _ray_running(), "this unit test started Ray: move it to tests/e2e"
    assert mlflow_before or "mlflow" not in sys.modules, "this unit test imported MLflow: move it to tests/e2e"
