"""The run sections of a sweep YAML: how to search (grid or Optuna), schedule (FIFO or ASHA), which
resources each trial and distillation actor takes, and where MLflow tracks. raysym.config's SweepConfig
holds one of each; the data and trials sections are the trial kind's (raysym.trial_kind).
"""

from __future__ import annotations

import dataclasses
import math

from raysym.schedules import ScheduleShape
from raysym.strict import _require, did_you_mean


@dataclasses.dataclass(frozen=True)
class SearchRange:
    """A continuous search dimension for Optuna: uniform on [low, high], or log-uniform if ``log``."""

    low: float
    high: float
    log: bool = False


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """``grid`` runs every point of the trial grid; ``optuna`` samples ``space`` (the L1 schedule-shape
    family: keys ``schedule_shape.start``, ``.peak``, ``.end``, ``.peak_at``, ``.curvature``) for
    ``trials`` trials. The Optuna study lives in ``storage`` under ``study`` (default: the sweep name),
    so a later run continues it and optuna-dashboard can open it."""

    kind: str = "grid"
    sampler: str = "tpe"
    seed: int = 0
    trials: int = 8
    # Read at the end of each trial, from the validation split (never the test split): val/r2_best, or
    # val/sparsity_objective for a search for sparse L1 schedules (raysym.metrics names both)
    metric: str = "val/r2_best"
    mode: str = "max"
    storage: str = "sqlite:///optuna.db"
    study: str | None = None
    space: dict[str, SearchRange] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        _require(self.kind in ("grid", "optuna"), f"search.kind must be 'grid' or 'optuna', got '{self.kind}'.")
        samplers = ("tpe", "random")
        _require(
            self.sampler in samplers, f"Unknown search.sampler '{self.sampler}'.{did_you_mean(self.sampler, samplers)}"
        )
        _require(self.mode in ("min", "max"), f"search.mode must be 'min' or 'max', got '{self.mode}'.")
        _require(self.trials > 0, f"search.trials must be a positive integer, got {self.trials}.")
        shape_keys = [f"schedule_shape.{f.name}" for f in dataclasses.fields(ScheduleShape)]
        for key, rng in self.space.items():
            _require(
                key in shape_keys, f"search.space has an unknown dimension '{key}'.{did_you_mean(key, shape_keys)}"
            )
            _require(
                math.isfinite(rng.low)
                and math.isfinite(rng.high)
                and rng.low < rng.high
                and (not rng.log or rng.low > 0),
                f"search.space.{key} needs low < high (and low > 0 when log is true), got low={rng.low}, "
                f"high={rng.high}.",
            )
        if self.kind == "optuna":
            _require(
                bool(self.space),
                "search.kind 'optuna' needs a search.space, e.g. {schedule_shape.peak: {low: 0.01, high: 1, log: "
                "true}}.",
            )


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    """``fifo`` runs every trial to the end; ``asha`` stops trials whose error lags after ``grace_period``
    epochs (Ray Tune's ASHAScheduler; N-body trials are compared by their validation MAE, ``val/mae``)."""

    kind: str = "fifo"
    grace_period: int = 5
    reduction_factor: float = 3.0

    def validate(self) -> None:
        _require(self.kind in ("fifo", "asha"), f"scheduler.kind must be 'fifo' or 'asha', got '{self.kind}'.")
        _require(self.grace_period > 0, f"scheduler.grace_period must be a positive integer, got {self.grace_period}.")
        _require(self.reduction_factor > 1, f"scheduler.reduction_factor must be above 1, got {self.reduction_factor}.")


@dataclasses.dataclass(frozen=True)
class ResourcesConfig:
    """What each trial asks Ray for. Fractional GPUs pack several trials onto one GPU. A trial that
    crashes is retried from its last checkpoint up to ``retries`` times."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int | None = None
    retries: int = 2
    # The distillation actor pool: its size, and custom resources that steer its actors onto
    # distillation nodes of a cluster (cluster.yaml's {"distill": 1}); each actor also takes
    # distill.threads CPUs for as long as the sweep runs.
    distill_workers: int = 1
    distill_resources: dict[str, float] = dataclasses.field(default_factory=dict)
    # Free space the disks of the sweep's folders (Tune storage, data, a local MLflow database) must keep: below
    # it the sweep stops cleanly, resumable, before a checkpoint or Tune's state is cut short (raysym.disk).
    disk_reserve_mb: float = 256.0

    def validate(self) -> None:
        _require(self.cpus_per_trial > 0, f"resources.cpus_per_trial must be positive, got {self.cpus_per_trial}.")
        _require(self.gpus_per_trial >= 0, f"resources.gpus_per_trial must be 0 or more, got {self.gpus_per_trial}.")
        _require(
            self.max_concurrent_trials is None or self.max_concurrent_trials > 0,
            "resources.max_concurrent_trials must be a positive integer or left out, got "
            f"{self.max_concurrent_trials}.",
        )
        _require(self.retries >= 0, f"resources.retries must be 0 or more, got {self.retries}.")
        _require(self.distill_workers > 0, f"resources.distill_workers must be at least 1, got {self.distill_workers}.")
        _require(
            self.disk_reserve_mb >= 0 and math.isfinite(self.disk_reserve_mb),
            f"resources.disk_reserve_mb must be 0 or more megabytes, got {self.disk_reserve_mb}.",
        )


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    """Where MLflow records the sweep: a parent run named after the sweep, a child run per trial."""

    uri: str = "sqlite:///mlflow.db"
    experiment: str = "raysym"
    # How long a sweep keeps retrying when the tracking store stops answering (a locked sqlite file, a
    # restarting server) before it stops, with its progress saved for --resume.
    patience_s: float = 120.0

    def validate(self) -> None:
        _require(
            self.patience_s > 0 and math.isfinite(self.patience_s),
            f"tracking.patience_s must be a positive number of seconds, got {self.patience_s}.",
        )
        _require(
            bool(self.experiment.strip()) and len(self.experiment) <= 250,
            f"tracking.experiment must name an MLflow experiment (1 to 250 characters, not only spaces), got "
            f"{self.experiment[:40]!r}. Leave it out for the default 'raysym'.",
        )
        _require(
            bool(self.uri.strip()), "tracking.uri is empty. Leave it out for the local database sqlite:///mlflow.db."
        )


IN_DISTRIBUTION = "in_dist"  # the rollout's baseline regime: the training particles, initial states unscaled


@dataclasses.dataclass(frozen=True)
class RolloutRegime:
    """Fresh systems for the rollout: ``particles`` per system (an absolute count), or the training data's
    count times ``particle_factor``; initial positions and velocities multiplied by ``scale``."""

    particles: int | None = None
    particle_factor: int = 1
    scale: float = 1.0

    def validate(self) -> None:
        _require(
            self.particles is None or self.particle_factor == 1,
            "A rollout regime gives particles (a count) or particle_factor (a multiple of the training count), "
            "not both.",
        )
        _require(
            self.particles is None or 2 <= self.particles <= 1000,
            f"rollout particles must be 2 to 1000, got {self.particles}.",
        )
        _require(
            1 <= self.particle_factor <= 100, f"rollout particle_factor must be 1 to 100, got {self.particle_factor}."
        )
        _require(
            0 < self.scale < 1e3 and math.isfinite(self.scale),
            f"rollout scale must be a positive factor, got {self.scale}.",
        )

    def particles_for(self, trained: int) -> int:
        return self.particles if self.particles is not None else trained * self.particle_factor


def _default_regimes() -> dict[str, RolloutRegime]:
    return {"particles_x2": RolloutRegime(particle_factor=2), "states_x2": RolloutRegime(scale=2.0)}


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """The out-of-distribution test of every distilled trial (raysym.rollout): per regime, ``sims`` fresh
    systems integrated ``steps`` steps from the same initial states by the simulator, the Graph Network
    and the composed symbolic model. The regime ``in_dist`` (the training particles, states unscaled, other
    draws of the training distribution) always runs first: the baseline the other regimes are read
    against. Regime names become metric names (``ood/<regime>/...``): letters, digits and '_'."""

    sims: int = 8
    steps: int = 50
    seed: int = 10_000
    regimes: dict[str, RolloutRegime] = dataclasses.field(default_factory=_default_regimes)

    def validate(self) -> None:
        _require(1 <= self.sims <= 10_000, f"rollout.sims must be 1 to 10000, got {self.sims}.")
        _require(1 <= self.steps <= 100_000, f"rollout.steps must be 1 to 100000, got {self.steps}.")
        for name in self.regimes:
            _require(
                isinstance(name, str) and name.isidentifier() and name.isascii() and len(name) <= 40,
                f"rollout regime name {name!r} must be letters, digits and '_' (at most 40); it names metrics.",
            )
            _require(
                name != IN_DISTRIBUTION,
                f"rollout regime '{IN_DISTRIBUTION}' is the baseline every rollout runs; name yours otherwise.",
            )

    def all_regimes(self) -> dict[str, RolloutRegime]:
        """The baseline first, then the configured regimes."""
        return {IN_DISTRIBUTION: RolloutRegime(), **self.regimes}

    def horizons(self) -> tuple[int, ...]:
        """The steps at which position errors become metrics: 1, 10 and the last (those within ``steps``)."""
        return tuple(sorted({h for h in (1, 10, self.steps) if h <= self.steps}))
