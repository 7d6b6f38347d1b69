"""Trial kinds: what a sweep trains, as one object per kind, found by name in one registry.

raysym trains two kinds of trial today: ``nbody`` (an edge-level Graph Network on simulated particle
systems, the paper's section 4; raysym.kind_nbody) and ``halos`` (a node-level GN on a halo catalog's
radius graph, the paper's dark-matter experiment; raysym.kind_halos). The sweep, the distiller and the
report never branch on the kind: they ask the trial's :class:`TrialKind` to plan, make data, train,
distil and describe.

Adding a kind is one new module that defines ``KIND = MyKind()`` (a TrialKind subclass) and one line in
:data:`KINDS`. A sweep YAML picks it with ``kind: <name>``; its ``data`` and ``trials`` sections are then
the kind's to validate (``validate_sweep``) and expand (``plan``). docs/architecture.md walks through a
small kind that tests/e2e/test_trial_kinds.py runs end to end.

Kinds are plugins found by name (like entry points), so that the planning, distillation and report
floors below them can ask a kind without importing it: this module imports nothing of raysym's above
the foundations, and a kind module imports its heavy parts (torch, Ray) inside its methods, so planning
a sweep still imports neither torch nor Ray.

The kind of a trial folder is recorded once, as ``"kind"`` in its ``config.json``.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable

from raysym import metrics
from raysym.errors import UserError
from raysym.strict import did_you_mean
from raysym.trial_folder import LEGACY_KIND, TrialFolder  # noqa: F401 -- LEGACY_KIND: read by the report

# Type names in the signatures below: SweepConfig and DistillConfig are raysym.config's, which sits on a
# floor above this module (config validates a sweep by asking its kind), so they are written as Any.
SweepConfig = DistillConfig = Any

# The registry: kind name -> the module whose KIND attribute is the kind.
KINDS: dict[str, str] = {
    "nbody": "raysym.kind_nbody",
    "halos": "raysym.kind_halos",
}

KIND_TAG = "raysym.kind"  # the MLflow tag of a trial run naming its kind


@dataclasses.dataclass
class TrialSpec:
    """One point of a sweep: which data, how to train; JSON-able, so Tune can hand it to a worker.

    ``data`` and ``train`` are the kind's own keyword dicts (N-body: SimulationConfig and TrainConfig
    keywords; halos: the graph's HaloConfig keys and the rest); ``data_dir`` names the data the trial
    reads (a shard folder, a catalog); ``params`` are the swept settings (MLflow params)."""

    key: str  # t000, t001, ... in grid order
    data: dict[str, Any]
    data_dir: str
    prune_k: float | None
    train: dict[str, Any]
    params: dict[str, Any]
    kind: str = "nbody"

    def label(self) -> str:
        return get(self.kind).label(self)

    def epochs(self) -> int:
        return get(self.kind).epochs(self)


@dataclasses.dataclass(frozen=True)
class TrialNames:
    """How tables and figures name a trial (from its MLflow record): system (e.g. spring-2d), the
    dimension of its space, the model as the papers name it, and the group that seeds share."""

    system: str
    dim: int
    model: str
    group: str


class TrialKind:
    """One kind of trial. Subclasses set the attributes and implement every method; the base class
    only documents the contract. Planning methods run on the driver and must not import torch or Ray at
    module level; ``train`` runs on a Tune worker; ``distil`` on the driver (its jobs on Ray actors)."""

    name: str = ""
    data_noun: str = "datasets"  # what --dry-run calls the data folders of a plan
    writes_data_root: bool = True  # the sweep writes this kind's data under data.root
    # The columns of the sweep's console table and sweep_results.csv (raysym.sweep_results.results_table)
    results_columns: tuple[str, ...] = ()
    # The report's figures, by name (raysym.report.draw_figures), in order
    figures: tuple[str, ...] = ()
    # The per-epoch metrics Tune's live table shows (it shows four: these first, then the epoch)
    live_metrics: tuple[str, ...] = ("test/mae",)
    # The per-epoch metric (minimised) an ASHA scheduler compares trials by. A kind with a validation split
    # names its validation error here, so that no decision reads the test split.
    schedule_metric: str = "test/mae"
    # Metrics the kind writes beyond those raysym.metrics names: name -> one-line meaning
    metrics: dict[str, str] = {}
    # Whether ``rollout`` exists (a sweep's rollout section is refused for kinds without one)
    rolls_out: bool = False

    # -- planning (driver, no torch, no Ray) -------------------------------------------------------
    def validate_sweep(self, cfg: SweepConfig) -> None:
        """Raise UserError for a sweep YAML whose sections this kind cannot run."""
        raise NotImplementedError

    def plan(self, cfg: SweepConfig) -> list[TrialSpec]:
        """The sweep's trial points, in grid order, keys t000, t001, ..."""
        raise NotImplementedError

    def label(self, spec: TrialSpec) -> str:
        """A one-line name of a trial point, for --dry-run, the console and the MLflow run name."""
        raise NotImplementedError

    def epochs(self, spec: TrialSpec) -> int:
        raise NotImplementedError

    def trial_config(self, spec: dict[str, Any], tune_config: dict[str, Any]) -> Any:
        """The typed config ``train`` takes, from a spec (as a dict) and the Tune trial's config (which
        holds any values an Optuna search sampled)."""
        raise NotImplementedError

    def settings(self, spec: dict[str, Any], tune_config: dict[str, Any]) -> dict[str, Any]:
        """A trial's resolved training settings as a flat dict (MLflow ``cfg.`` tags)."""
        return dataclasses.asdict(self.trial_config(spec, tune_config))

    def check_memory(self, spec: TrialSpec, memory: int) -> None:
        """Raise UserError when a trial cannot fit in ``memory`` bytes (before any data is made)."""

    def table_names(self, spec: dict[str, Any], sampled: dict[str, float]) -> dict[str, Any]:
        """The system, dim, model and schedule cells of a trial's row in the sweep's console table."""
        raise NotImplementedError

    # -- data (driver; Ray Data where the kind simulates) --------------------------------------------
    def prepare_data(self, specs: list[TrialSpec], say: Callable[[str], None], address: str | None) -> None:
        """Make, reuse or read the data the trials need, before Tune starts (a bad file stops the sweep here)."""
        raise NotImplementedError

    # -- training (a Tune worker) -------------------------------------------------------------------
    def train(
        self, cfg: Any, out_dir: Path, *, callback: Callable[[dict[str, float]], None], resume: bool, claim: bool
    ) -> dict[str, Any]:
        """Train one trial into ``out_dir`` (config.json with the kind, checkpoint.pt, metrics.json, ...),
        calling ``callback`` with each reported epoch's metrics; return the final metrics."""
        raise NotImplementedError

    # -- distillation (driver; jobs on the actor pool) ------------------------------------------------
    def distil(self, trial_dir: Path, cfg: DistillConfig, pool: Any = None) -> dict[str, Any]:
        """Distil a trained trial folder into ``<trial>/distill/``; return its summary."""
        raise NotImplementedError

    def rollout(self, trial_dir: Path, cfg: Any) -> dict[str, float]:
        """Test a distilled trial out of distribution (a raysym.sweep_sections.RolloutConfig): write its
        files into the folder and return the ``ood/...`` metrics. Only kinds with ``rolls_out``."""
        raise NotImplementedError

    # -- report (driver, from MLflow) ----------------------------------------------------------------
    def names(self, trial: Any) -> TrialNames:
        """How the report names a trial (a raysym.report_data.Trial)."""
        raise NotImplementedError

    def report_sections(self, sweep: Any, published: Any) -> list[Any]:
        """The report's table sections for a sweep of this kind, the last one listing every trial."""
        raise NotImplementedError


def get(name: str) -> TrialKind:
    """The registered kind called ``name``."""
    if name not in KINDS:
        raise UserError(f"Unknown trial kind '{name}'.{did_you_mean(name, list(KINDS))}")
    kind = importlib.import_module(KINDS[name]).KIND
    assert kind.name == name, f"{KINDS[name]}.KIND is named {kind.name!r}, registered as {name!r}"
    metrics.register(kind.metrics)
    return kind


def read_config(trial_dir: str | Path) -> dict[str, Any]:
    """A trial folder's config.json, with its kind under ``"kind"`` (raysym.trial_folder)."""
    return TrialFolder(trial_dir).config()


def of_folder(trial_dir: str | Path) -> TrialKind:
    """The kind of a trial folder, as its config.json records it."""
    return get(str(read_config(trial_dir)["kind"]))


def distil(trial_dir: str | Path, cfg: DistillConfig, pool: Any = None) -> dict[str, Any]:
    """Distil any trial folder with its own kind's jobs and verdict (``raysym distill``, the sweep)."""
    return of_folder(trial_dir).distil(Path(trial_dir), cfg, pool)


def rollout(trial_dir: str | Path, cfg: Any) -> dict[str, float]:
    """Roll out any distilled trial folder out of distribution with its kind's rollout (``raysym rollout``,
    the sweep's rollout section)."""
    kind = of_folder(trial_dir)
    if not kind.rolls_out:
        raise UserError(f"{trial_dir} is a '{kind.name}' trial, and that kind has no rollout (N-body trials do).")
    return kind.rollout(Path(trial_dir), cfg)
