"""L1 coefficient schedules: the named values at their landmarks, and the shape family."""

import pytest

from raysym.schedules import NAMED, ScheduleShape


@pytest.mark.parametrize(
    "name, expected",
    [
        ("constant", {0: 0.01, 50: 0.01, 100: 0.01}),
        ("linear", {0: 0.01, 50: 0.055, 100: 0.1}),
        ("triangle", {0: 0.01, 25: 0.055, 50: 0.1, 75: 0.055, 100: 0.01}),
    ],
)
def test_named_schedules(name, expected):
    for step, value in expected.items():
        assert NAMED[name](step, 100) == pytest.approx(value)


def test_shape_family_curvature_and_clamping():
    late = ScheduleShape(start=0.0, peak=1.0, end=0.0, peak_at=0.5, curvature=2.0)
    assert late(25, 100) == pytest.approx(0.25)  # (0.5)^2 of the way up
    assert late(75, 100) == pytest.approx(0.75)  # 1 - (0.5)^2 on the way down
    assert late(-5, 100) == 0.0 and late(500, 100) == 0.0  # clamped to [0, 1] progress
    values = [late(s, 100) for s in range(101)]
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 50
