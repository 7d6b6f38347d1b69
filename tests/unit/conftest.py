"""The unit tier runs without Ray and without MLflow: a test that starts either fails here, so the tier
stays fast (and a test that needs them belongs in tests/e2e)."""

import sys

import pytest


@pytest.fixture(scope="session")
def local_ray():
    pytest.fail("unit tests run without Ray: move this test to tests/e2e")


@pytest.fixture(autouse=True)
def _no_ray_no_mlflow():
    yield
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "this unit test started Ray: move it to tests/e2e"
    assert "mlflow" not in sys.modules, "this unit test imported MLflow: move it to tests/e2e"
