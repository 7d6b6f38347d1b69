"""L1 coefficient schedules: pure functions of (step, total steps), evaluated per optimisation step.

Every schedule is a member of one shape family (the space Optuna searches explore):

    u = step / total (training progress in [0, 1]); value rises from ``start`` to ``peak`` while
    u <= ``peak_at``, then moves from ``peak`` to ``end``:
        u <= peak_at:  start + (peak - start) * (u / peak_at) ** curvature
        u >  peak_at:  peak + (end - peak) * ((u - peak_at) / (1 - peak_at)) ** curvature
    curvature 1 gives straight lines; above 1 the change comes late in each leg, below 1 early.

The reproduction's named schedules are points of that family:
    constant  0.01 throughout
    linear    0.01 -> 0.1 over training
    triangle  0.01 -> 0.1 at mid-training -> 0.01
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleShape:
    start: float = 0.01
    peak: float = 0.1
    end: float = 0.01
    peak_at: float = 0.5  # fraction of training at which the peak is reached, in (0, 1]
    curvature: float = 1.0

    def __call__(self, step: int, total: int) -> float:
        u = min(max(step / max(total, 1), 0.0), 1.0)
        if u <= self.peak_at:
            return self.start + (self.peak - self.start) * (u / self.peak_at) ** self.curvature
        tail = (u - self.peak_at) / (1.0 - self.peak_at)
        return self.peak + (self.end - self.peak) * tail**self.curvature


NAMED = {
    "constant": ScheduleShape(start=0.01, peak=0.01, end=0.01, peak_at=1.0),
    "linear": ScheduleShape(start=0.01, peak=0.1, end=0.1, peak_at=1.0),
    "triangle": ScheduleShape(start=0.01, peak=0.1, end=0.01, peak_at=0.5),
}


def get_schedule(name: str, shape: ScheduleShape | None = None) -> ScheduleShape:
    """A named schedule, or ``shape`` when name is "shape"."""
    if name == "shape":
        if shape is None:
            raise ValueError("schedule 'shape' needs its parameters")
        return shape
    return NAMED[name]
