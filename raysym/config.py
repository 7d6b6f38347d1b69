"""Typed configuration: one frozen dataclass per pipeline stage, loaded from YAML or from a dict.

Loading is strict on purpose (raysym.strict): an unknown key is an error that suggests the closest valid
key, and a value of the wrong type is an error that names the field, the expected type and the value
received. Each config's ``validate()`` then checks the values themselves (ranges, names, sizes) and raises
:class:`~raysym.errors.UserError` with a message that says how to fix the problem.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from raysym import physics
from raysym.halo_config import HaloConfig  # noqa: F401 -- the halo kind's stage config, re-exported
from raysym.names import (
    BACKENDS,
    DEVICES,
    L1_MODELS,
    LOSSES,
    MODELS,
    NEWTONIAN_MESSAGES,
    OPERATORS,
    PENALTY_UNITS,
    PRIORS,
    SCHEDULES,
)
from raysym.schedules import ScheduleShape
from raysym.strict import _coerce, _require, did_you_mean, from_dict, load_yaml  # noqa: F401 -- load_yaml: re-exported
from raysym.sweep_sections import ResourcesConfig, RolloutConfig, SchedulerConfig, SearchConfig, TrackingConfig

# --------------------------------------------------------------------------------------------------
# Stage configs
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """What to simulate: one physical system, its size, and how many trajectories.

    ``steps`` integrator steps of size ``dt`` make one trajectory (states at t = 0, dt, ...,
    (steps-1) dt); every ``stride``-th state is stored as a snapshot (a graph), so a trajectory gives
    ceil(steps / stride) graphs. ``sims`` training trajectories and ``test_sims`` test trajectories
    are drawn from different random streams of the same ``seed``.
    """

    system: str = "spring"
    dim: int = 2
    particles: int = 4
    sims: int = 1000
    test_sims: int | None = None  # default: sims // 4, at least 1
    steps: int = 500
    stride: int = 5
    dt: float | None = None  # default: the system's own (physics.SYSTEMS)
    substeps: int = 1  # RK4 steps per dt: more is more accurate and proportionally slower
    seed: int = 0
    damping: float | None = None  # damped system only; default physics.DEFAULT_DAMPING
    sims_per_shard: int | None = None  # layout only (default: ~32 MiB of rows per file); data unchanged
    # system custom only: the pair potential U(r, q1, q2, m1, m2) as a formula (raysym.potential)
    potential: str | None = None

    def validate(self) -> None:
        systems = [*physics.SYSTEMS, physics.CUSTOM]
        _require(self.system in systems, f"Unknown system '{self.system}'.{did_you_mean(self.system, systems)}")
        if self.system == physics.CUSTOM:
            _require(
                self.potential is not None,
                'system custom needs a potential, e.g. potential: "(r - 1)^2" (or --potential on the command line).',
            )
            from raysym.potential import custom_law

            custom_law(self.potential)  # parsed and checked now: a bad formula stops before anything runs
        else:
            _require(
                self.potential is None,
                f"potential applies only to system custom, not '{self.system}'. Remove it or use system: custom.",
            )
        _require(self.dim in (2, 3), f"dim must be 2 or 3, got {self.dim}. Use --dim 2 or --dim 3.")
        _require(
            self.particles >= 2,
            f"particles must be at least 2 (a graph needs an edge), got {self.particles}. Use --particles 2 or more.",
        )
        for name in ("sims", "steps", "stride", "substeps", "sims_per_shard"):
            value = getattr(self, name)
            _require(
                value is None or value > 0,
                f"{name} must be a positive integer, got {value}. Pass a value of 1 or more.",
            )
        _require(
            self.test_sims is None or self.test_sims > 0,
            f"test_sims must be a positive integer, got {self.test_sims}. Pass 1 or more, or leave it "
            "out for the default (a quarter of sims).",
        )
        _require(
            self.dt is None or (math.isfinite(self.dt) and self.dt > 0),
            f"dt must be a positive finite number, got {self.dt}. Leave it out for the system's default.",
        )
        _require(self.seed >= 0, f"seed must be a non-negative integer, got {self.seed}.")
        if self.damping is not None:
            _require(
                self.system == "damped",
                f"damping applies only to the 'damped' system, not '{self.system}'. Remove --damping "
                "or use --system damped.",
            )
            _require(
                math.isfinite(self.damping) and self.damping >= 0,
                f"damping must be a non-negative finite number, got {self.damping}.",
            )

    # Resolved values: defaults filled in from the physics registry.
    @property
    def resolved_dt(self) -> float:
        return self.dt if self.dt is not None else physics.get_law(self.law).default_dt

    @property
    def law(self) -> str:
        """The law's key in raysym.physics: the system, or custom:<potential>."""
        return physics.law_key(self.system, self.potential)

    @property
    def resolved_test_sims(self) -> int:
        return self.test_sims if self.test_sims is not None else max(1, self.sims // 4)

    @property
    def resolved_damping(self) -> float:
        if self.system != "damped":
            return 0.0
        return self.damping if self.damping is not None else physics.DEFAULT_DAMPING

    @property
    def snapshots_per_sim(self) -> int:
        return -(-self.steps // self.stride)

    def data_params(self) -> dict[str, Any]:
        """The parameters that determine the data, with defaults resolved.

        Two configs with equal ``data_params`` produce identical datasets; ``sims_per_shard`` is
        left out because it changes only how the rows are split into files.
        """
        params = {
            "system": self.system,
            "dim": self.dim,
            "particles": self.particles,
            "sims": self.sims,
            "test_sims": self.resolved_test_sims,
            "steps": self.steps,
            "stride": self.stride,
            "dt": self.resolved_dt,
            "substeps": self.substeps,
            "seed": self.seed,
        }
        if self.system == "damped":
            params["damping"] = self.resolved_damping
        if self.system == physics.CUSTOM:  # the manifest records the formula; another formula is other data
            params["potential"] = self.potential
        return params


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training trial of the Graph Network (defaults: the paper-faithful settings).

    ``l1_schedule`` applies to the l1 model; "shape" uses ``schedule_shape`` (the family in
    raysym.schedules). Its values and ``kl_alpha`` are in ``penalty_units``: "paper" (the default) gives a
    coefficient the meaning the publications' has (the notebook's L1 1e-2 and KL 1 for the same system,
    particle count and dim; raysym.regularizers); "per_edge" is how trials before that scale ran (config.json
    files without the key read so). ``prune_k`` None trains on every graph. ``validation_fraction`` of the
    training simulations (whole simulations, the same ones for every trial on a dataset) are held out as the
    validation split: per-epoch R², sparsity and MAE, ``stop_r2``, ASHA and Optuna read it; the test split
    is only reported. ``max_train_graphs`` and ``max_test_graphs`` subsample (seeded) for quick runs.
    """

    data: str = ""
    model: str = "l1"
    l1_schedule: str = "linear"
    schedule_shape: ScheduleShape | None = None
    kl_prior: str = "gaussian"
    kl_alpha: float = 1.0
    penalty_units: str = "paper"  # what l1_schedule values and kl_alpha mean (raysym.regularizers)
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3  # OneCycleLR's max learning rate
    final_div_factor: float = 1e5
    warmup_fraction: float = 0.3  # OneCycleLR's pct_start: the share of the steps spent raising the learning rate
    weight_decay: float = 1e-8
    loss: str = "mae"
    hidden: int = 300
    layers: int = 3
    msg_dim: int = 100
    augment: float = 3.0  # std of the per-batch random translation of positions; 0 turns it off
    prune_k: float | None = 1.5
    validation_fraction: float = 0.1  # of the training simulations, held out for decisions during training
    max_train_graphs: int | None = None
    max_test_graphs: int | None = None
    analysis_graphs: int = 2000  # test graphs whose edges the message analysis uses
    # Stop after the first epoch whose in-distribution R² of the messages (against the force or force / mass,
    # the better) reaches this; None trains every epoch. Energy models use the R² of their pair force.
    stop_r2: float | None = None
    newtonian_messages: str = "bottleneck"  # newtonian model only: bottleneck, l1 or kl (raysym.newtonian)
    node_term: bool | None = None  # newtonian model only: the non-pairwise g(v, q, m); None: on for damped data
    seed: int = 0
    device: str = "auto"
    # The trial folder's PNGs (messages_vs_force, message_stds, message_stds_by_epoch). Off for sweeps of many
    # short trials, where drawing them costs more than the training: 0.9 core-s a trial, plus 0.75 for
    # matplotlib's import per trial worker, against 0.1 core-s for 2 epochs of a tiny trial (issue 29). The
    # data they draw (messages.npz, message_stds_by_epoch.json, metrics.json) is written either way, and
    # `raysym report` draws its figures from that data. Not part of what the trial is (config.json).
    figures: bool = True

    @property
    def regularizer(self) -> str:
        """The penalty on the messages: "l1" (scaled by the L1 schedule), "kl" (scaled by kl_alpha) or
        "none". The Newtonian GN's comes from its message form."""
        if self.model == "newtonian":
            return "none" if self.newtonian_messages == "bottleneck" else self.newtonian_messages
        return "l1" if self.model in L1_MODELS else "kl" if self.model == "kl" else "none"

    def validate(self) -> None:
        _require(bool(self.data), "data must name a dataset folder (made by `raysym simulate`). Use --data DIR.")
        _require(self.model in MODELS, f"Unknown model '{self.model}'.{did_you_mean(self.model, MODELS)}")
        schedules = [*SCHEDULES, "shape"]
        _require(
            self.l1_schedule in schedules,
            f"Unknown L1 schedule '{self.l1_schedule}'.{did_you_mean(self.l1_schedule, schedules)}",
        )
        _require(
            self.l1_schedule != "shape" or self.schedule_shape is not None,
            "l1_schedule 'shape' needs schedule_shape (start, peak, end, peak_at, curvature).",
        )
        _require(
            self.newtonian_messages in NEWTONIAN_MESSAGES,
            "Unknown newtonian_messages "
            f"'{self.newtonian_messages}'.{did_you_mean(self.newtonian_messages, NEWTONIAN_MESSAGES)}",
        )
        _require(
            self.penalty_units in PENALTY_UNITS,
            f"Unknown penalty_units '{self.penalty_units}'.{did_you_mean(self.penalty_units, PENALTY_UNITS)} "
            "'paper' gives coefficients the publications' meaning (raysym.regularizers).",
        )
        _require(
            math.isfinite(self.validation_fraction) and 0 < self.validation_fraction < 0.5,
            f"validation_fraction must lie between 0 and 0.5 (a share of the training simulations), got "
            f"{self.validation_fraction}. Leave it out for the default 0.1.",
        )
        _require(self.kl_prior in PRIORS, f"Unknown KL prior '{self.kl_prior}'.{did_you_mean(self.kl_prior, PRIORS)}")
        losses = LOSSES
        _require(self.loss in losses, f"Unknown loss '{self.loss}'.{did_you_mean(self.loss, losses)}")
        devices = DEVICES
        _require(
            self.device in devices or self.device.startswith("cuda:"),
            f"Unknown device '{self.device}'. Use auto, cpu or cuda.",
        )
        for name in ("epochs", "batch_size", "hidden", "layers", "msg_dim", "analysis_graphs"):
            value = getattr(self, name)
            _require(value > 0, f"{name} must be a positive integer, got {value}.")
        for name in ("max_train_graphs", "max_test_graphs"):
            value = getattr(self, name)
            _require(value is None or value > 0, f"{name} must be a positive integer or left out, got {value}.")
        for name in ("lr", "final_div_factor", "kl_alpha"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value > 0, f"{name} must be a positive finite number, got {value}.")
        _require(
            self.stop_r2 is None or 0 < self.stop_r2 <= 1,
            f"stop_r2 must lie in (0, 1] or be left out, got {self.stop_r2}.",
        )
        _require(
            0 < self.warmup_fraction < 1,
            f"warmup_fraction must lie between 0 and 1 (OneCycle's pct_start), got {self.warmup_fraction}.",
        )
        for name in ("weight_decay", "augment"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value >= 0, f"{name} must be a non-negative finite number, got {value}.")
        _require(
            self.prune_k is None or (math.isfinite(self.prune_k) and self.prune_k >= 0),
            f"prune_k must be a non-negative number or left out (no pruning), got {self.prune_k}.",
        )
        shape = self.schedule_shape
        if shape is not None:
            _require(0 < shape.peak_at <= 1, f"schedule_shape.peak_at must lie in (0, 1], got {shape.peak_at}.")
            _require(shape.curvature > 0, f"schedule_shape.curvature must be positive, got {shape.curvature}.")
            for name in ("start", "peak", "end"):
                value = getattr(shape, name)
                _require(
                    math.isfinite(value) and value >= 0,
                    f"schedule_shape.{name} must be a non-negative number, got {value}.",
                )


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Symbolic distillation of a trained GN's messages (raysym.distill, raysym.distill_jobs).

    ``backend``: auto (pysr where Julia is found, else operon), operon or pysr. ``setting``: fast (tests,
    smoke runs) or thorough. ``samples`` test edges (and nodes) are drawn per job, from the test graphs of
    the fitting half that lie inside the trial's pruning bounds, where the GN was trained (``fit_range:
    train``, the default: outside them the GN extrapolates, and on 1/r-type laws its extrapolated close
    encounters would dominate the fit), or from every one of them (``all``). Formulas are scored on the
    unseen half, in range (the verdict) and on every graph (reported beside it). A formula is chosen by
    the highest score among those within ``loss_factor`` of the best loss.
    """

    backend: str = "auto"
    setting: str = "thorough"
    operators: list[str] = dataclasses.field(default_factory=lambda: ["+", "-", "*", "/"])
    max_size: int | None = None  # largest expression (nodes); default: the setting's
    parsimony: float = 0.0032  # pysr only
    timeout_s: float | None = None
    # The choice among a front's formulas (raysym.distill.select): the highest score (the drop in log loss
    # per added node, the paper's criterion) among formulas within loss_factor x the best loss or that
    # explain 99% of the target's variance. PySR's own "best" rule looks within 1.5x only. A GN's messages
    # carry the network's small errors, which longer formulas learn to fit: on Newtonian GNs trained to R²
    # 0.9995-0.9999, the laws of spring (11 nodes) and charge (10-12 nodes) sat 3.6x to 16x above the best
    # loss of 20- to 27-node formulas, some with poles inside the data range, and 1.5x chose those.
    # Halo GNs' edge messages are smoother and less noisy: there 10x admitted an 8-node linear
    # approximation of m2 / (r + 1) (R² 0.958 against the true edge term) over the law's rational forms,
    # and 1.5x chooses the law (0.997). None (the default): 10 for N-body trials, 1.5 for halo trials
    # (raysym.halo_distill.LOSS_FACTOR).
    loss_factor: float | None = None
    samples: int = 5000
    fit_range: str = (
        "train"  # train: fit only on test graphs within the pruning bounds (where the GN was trained); all: every one
    )
    threads: int = 1  # per job (operon's n_threads, Julia's threads)
    seed: int = 0

    def validate(self) -> None:
        _require(
            self.backend in BACKENDS,
            f"Unknown distillation backend '{self.backend}'.{did_you_mean(self.backend, BACKENDS)}",
        )
        _require(
            self.setting in ("fast", "thorough"), f"distill setting must be 'fast' or 'thorough', got '{self.setting}'."
        )
        for op in self.operators:
            _require(op in OPERATORS, f"Unknown operator '{op}'.{did_you_mean(op, OPERATORS)}")
        _require(all(op in self.operators for op in "+*"), "operators must include at least + and *.")
        _require(self.max_size is None or self.max_size >= 3, f"max_size must be at least 3, got {self.max_size}.")
        _require(
            self.loss_factor is None or self.loss_factor >= 1,
            f"loss_factor must be at least 1, got {self.loss_factor}.",
        )
        _require(self.samples >= 10, f"samples must be at least 10, got {self.samples}.")
        _require(
            self.fit_range in ("train", "all"),
            f"fit_range must be 'train' (the pruning bounds the GN was trained in) or 'all', got '{self.fit_range}'.",
        )
        _require(self.threads >= 1, f"threads must be at least 1, got {self.threads}.")
        _require(self.timeout_s is None or self.timeout_s > 0, f"timeout_s must be positive, got {self.timeout_s}.")

    def window(self, default: float = 10.0) -> float:
        """The selection's loss factor: ``loss_factor`` when set, else the trial kind's ``default``."""
        return self.loss_factor if self.loss_factor is not None else default


# --------------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------------

# Trial settings that only mean something for some models; dropped for the others so that, e.g., a
# bottleneck model crossed with three L1 schedules is one trial, not three identical ones.
_MODEL_ONLY = {"newtonian_messages": ("newtonian",), "node_term": ("newtonian",)}
_PENALTY_ONLY = {"l1_schedule": "l1", "schedule_shape": "l1", "kl_prior": "kl", "kl_alpha": "kl"}


def _applies(key: str, point: dict[str, Any]) -> bool:
    """Does the trial setting ``key`` mean anything for the model of this grid point?"""
    model = point.get("model", TrainConfig.model)
    if key in _MODEL_ONLY:
        return model in _MODEL_ONLY[key]
    if key in _PENALTY_ONLY:
        messages = point.get("newtonian_messages", TrainConfig.newtonian_messages)
        return TrainConfig(model=model, newtonian_messages=messages).regularizer == _PENALTY_ONLY[key]
    return True


_SWEEP_DATA_EXTRA = ("root", "prune_k")
# trials.per_model: a model's own settings over the grid's (e.g. a longer schedule for the L1 model)
PER_MODEL = "per_model"
_NOT_IN_TRIALS = ("data", "prune_k")  # set by the data section


# The most trial points one sweep expands to (before duplicates are removed).
MAX_GRID = 10_000


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A sweep: a data grid times a trial grid (or an Optuna search), run by Ray Tune, tracked in MLflow.

    ``distill`` (a DistillConfig) turns on symbolic distillation of each finished trial, on a pool of
    Ray actors, while other trials still train; ``rollout`` (a RolloutConfig) then tests each distilled
    trial out of distribution, the network against its symbolic model.

    ``data`` holds SimulationConfig keys plus ``root`` (the shard folder) and ``prune_k``; ``trials``
    holds TrainConfig keys. In both, a list is a grid dimension and a single value is fixed, e.g.
    ``data: {system: [spring, charge], prune_k: [1.5, null]}``. ``trials.per_model`` gives a model its own
    settings over the grid's (``per_model: {l1: {epochs: 260}}``). ``storage`` is where Ray Tune keeps
    trial results and checkpoints: a local folder, or shared storage (NFS path, s3://...) on a cluster.
    """

    name: str = "sweep"
    storage: str = "runs"
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    trials: dict[str, Any] = dataclasses.field(default_factory=dict)
    resources: ResourcesConfig = dataclasses.field(default_factory=ResourcesConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = dataclasses.field(default_factory=SchedulerConfig)
    tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)
    distill: DistillConfig | None = None  # distil every finished trial (None: no distillation)
    # roll out every distilled trial out of distribution, GN against symbolic model (None: no rollout)
    rollout: RolloutConfig | None = None
    halos: dict[str, Any] = dataclasses.field(default_factory=dict)  # a halo-catalog sweep (see above)
    # The trial kind (raysym.trial_kind): empty picks it from the sections, halos with a halos section,
    # else nbody. Another registered kind reads its own data and trials sections.
    kind: str = ""

    @property
    def trial_kind(self) -> str:
        return self.kind or ("halos" if self.halos else "nbody")

    def validate(self) -> None:
        _require(
            bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name),
            f"name must be letters, digits, '-', '_' or '.', got {self.name!r} (it names folders and runs).",
        )
        _require(
            self.name.strip(".") != "" and len(self.name) <= 100,
            f"name must not be only dots and at most 100 characters, got {self.name[:40]!r}"
            f"{'...' if len(self.name) > 40 else ''} (it names a folder under storage, never a path).",
        )
        self._check_grid_size()
        from raysym import trial_kind  # the kind validates its own sections

        kind = trial_kind.get(self.trial_kind)  # registers the kind's own metric names too
        kind.validate_sweep(self)
        if self.search.kind == "optuna":
            from raysym import metrics

            _require(
                metrics.name_of(self.search.metric) is not None,
                f"search.metric '{self.search.metric}' is not a metric raysym records, so no trial would give the "
                f"search a value.{did_you_mean(self.search.metric, list(metrics.METRICS))} The objective is read at "
                "the end of each trial, e.g. val/r2_best or val/sparsity_objective (raysym/metrics.py names them).",
            )
        if self.rollout is not None:
            _require(
                self.distill is not None,
                "The rollout section compares each trial's network with its distilled symbolic model, so it needs "
                "a distill section too (e.g. distill: {setting: fast}). Add one, or remove the rollout section.",
            )
            _require(
                kind.rolls_out,
                f"Trials of kind '{kind.name}' have no rollout (it integrates simulated particle systems; the "
                "N-body kind has one). Remove the rollout section.",
            )

    def validate_nbody(self) -> None:
        """The data and trials sections of an N-body sweep (raysym.kind_nbody)."""
        _require(
            not self.halos,
            f"A sweep of kind '{self.trial_kind}' has no halos section; halo catalogs are swept by a YAML of "
            "their own.",
        )
        data_keys = [f.name for f in dataclasses.fields(SimulationConfig)] + list(_SWEEP_DATA_EXTRA)
        for key in self.data:
            _require(key in data_keys, f"data has an unknown key '{key}'.{did_you_mean(key, data_keys)}")
        trial_keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_IN_TRIALS]
        for key in self.trials:
            if key == PER_MODEL:
                continue
            hint = (
                " Set it in the data section." if key in _NOT_IN_TRIALS else did_you_mean(key, [*trial_keys, PER_MODEL])
            )
            _require(key in trial_keys, f"trials has an unknown key '{key}'.{hint}")
        self._check_per_model(trial_keys)
        for section, values in (("data", self.data), ("trials", self.trials)):
            for key, value in values.items():
                _require(
                    value != [], f"{section}.{key} is an empty list, so the grid is empty. Give it at least one value."
                )
        self.data_points()  # builds (and so type-checks and validates) every point
        self.trial_points()

    def _check_per_model(self, trial_keys: list[str]) -> None:
        """trials.per_model: {model name: {setting: one value}} (a model's own recipe inside one grid)."""
        per_model = self.trials.get(PER_MODEL, {})
        example = "e.g. per_model: {l1: {epochs: 260, lr: 0.001}}"
        _require(isinstance(per_model, dict), f"trials.per_model maps a model to its own settings, {example}.")
        for model, settings in per_model.items():
            _require(model in MODELS, f"trials.per_model has an unknown model '{model}'.{did_you_mean(model, MODELS)}")
            _require(isinstance(settings, dict), f"trials.per_model.{model} must map settings to values, {example}.")
            for key, value in settings.items():
                _require(
                    key in trial_keys and key != "model",
                    f"trials.per_model.{model} has an unknown key '{key}'.{did_you_mean(key, trial_keys)}",
                )
                _require(
                    not isinstance(value, list),
                    f"trials.per_model.{model}.{key} must be one value (a model's own setting); put grid "
                    "dimensions in the trials section itself.",
                )

    def _check_grid_size(self) -> None:
        """Count the grid before building it: a million points would take minutes and gigabytes to
        expand, only to be refused later or to run for ever."""
        dims = {f"halos.{k}": len(v) for k, v in self.halos.items() if isinstance(v, list)}
        if not self.halos:
            dims.update({f"data.{k}": len(v) for k, v in self.data.items() if isinstance(v, list) and k != "root"})
            dims.update({f"trials.{k}": len(v) for k, v in self.trials.items() if isinstance(v, list)})
        size = math.prod(dims.values())
        if size > MAX_GRID:
            largest = ", ".join(f"{k} ({n})" for k, n in sorted(dims.items(), key=lambda kv: -kv[1])[:3])
            _require(
                False,
                f"The sweep's grid has {size:,} points, more than the {MAX_GRID:,} one sweep runs (the longest lists: "
                f"{largest}). Shorten those lists, split the sweep, or search the space with search.kind: optuna.",
            )

    def validate_halos(self) -> None:
        """The halos section of a halo sweep (raysym.kind_halos)."""
        _require(
            not self.data and not self.trials,
            "A sweep trains either on simulated N-body data (the data and trials sections) or on halo catalogs "
            "(the halos section), not both; this one has halos and "
            f"{' and '.join(k for k in ('data', 'trials') if getattr(self, k))}. "
            "Split it into two sweep YAMLs.",
        )
        _require(
            self.search.kind == "grid",
            "A halo sweep is a grid (search.kind: grid); the Optuna search explores "
            "the L1 schedule shapes of N-body trials. Give the halos settings as lists instead.",
        )
        keys = [f.name for f in dataclasses.fields(HaloConfig)]
        for key, value in self.halos.items():
            _require(key in keys, f"halos has an unknown key '{key}'.{did_you_mean(key, keys)}")
            _require(value != [], f"halos.{key} is an empty list, so the grid is empty. Give it at least one value.")
        self.halo_points()

    def halo_points(self) -> list[HaloConfig]:
        """One HaloConfig per point of the halos grid, in grid order."""
        return [from_dict(HaloConfig, point, where="halos") for point in _product(self.halos)]

    def data_points(self) -> list[SimulationConfig]:
        """One SimulationConfig per point of the data grid (prune_k and root excluded)."""
        grid = {k: v for k, v in self.data.items() if k not in _SWEEP_DATA_EXTRA}
        return [from_dict(SimulationConfig, point, where="data") for point in _product(grid)]

    @property
    def data_root(self) -> str:
        root = self.data.get("root", "data")
        _require(isinstance(root, str) and bool(root), f"data.root must be a folder path, got {root!r}.")
        return root

    @property
    def prune_ks(self) -> list[float | None]:
        values = self.data.get("prune_k", 1.5)
        values = values if isinstance(values, list) else [values]
        return [_coerce(v, float | None, "data.prune_k") for v in values]

    def trial_points(self) -> list[dict[str, Any]]:
        """The trial grid as TrainConfig keyword dicts (without data and prune_k), settings that do
        not apply to a point's model dropped and duplicates removed, in grid order."""
        points, seen = [], set()
        per_model = self.trials.get(PER_MODEL, {})
        for point in _product({k: v for k, v in self.trials.items() if k != PER_MODEL}):
            point = {**point, **per_model.get(point.get("model", TrainConfig.model), {})}
            point = {k: v for k, v in point.items() if _applies(k, point)}
            if self.search.kind == "optuna" and _applies("l1_schedule", point):
                point["l1_schedule"] = "shape"
                point.setdefault("schedule_shape", {})
            key = repr(sorted(point.items(), key=lambda kv: kv[0]))
            if key not in seen:
                seen.add(key)
                from_dict(TrainConfig, {**point, "data": "<data>"}, where="trials")  # type-check now
                points.append(point)
        return points

    def swept_keys(self) -> list[str]:
        """The settings that vary across the sweep (the MLflow params)."""
        keys = [k for k, v in self.data.items() if isinstance(v, list) and len(v) > 1 and k != "root"]
        keys += [k for k, v in self.trials.items() if isinstance(v, list) and len(v) > 1]
        keys += [
            k for k in dict.fromkeys(k for o in self.trials.get(PER_MODEL, {}).values() for k in o) if k not in keys
        ]
        keys += [k for k, v in self.halos.items() if isinstance(v, list) and len(v) > 1]
        return keys + sorted(self.search.space) if self.search.kind == "optuna" else keys


def _product(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Cartesian product of a mapping whose list values are grid dimensions (first key slowest)."""
    import itertools

    keys = list(grid)
    axes = [grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*axes)]
