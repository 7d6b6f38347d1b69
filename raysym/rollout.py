"""``raysym rollout``: the paper's central claim, measured: does the distilled symbolic model generalise
better out of distribution than the network it came from?

For a trained and distilled N-body trial, fresh systems are drawn outside the training distribution (more
particles; initial positions and velocities scaled by ``scale``) and three integrators start from the same
states: the simulator (the truth), the trained Graph Network, and the composed symbolic model. Each is
integrated with the simulator's RK4 and time step. Reported, per model and regime: the one-step
acceleration error on the initial states, and the position error against the truth at every step (the
metrics keep steps 1, 10 and the last). The regime ``in_dist`` is the baseline the others are read
against: fresh draws of the training distribution whose true trajectories stay inside the trial's pruning
bounds for the whole rollout (every acceleration component of every state, the test pruning applies to
training graphs), drawn by rejection from up to :data:`OVERSAMPLE` times as many candidates. Without that
filter about half of r2's fresh systems hold close encounters the network never trained on, and "in
distribution" would not be. The other regimes are not filtered: leaving the training range is their point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from raysym import physics
from raysym.config import SimulationConfig
from raysym.errors import UserError
from raysym.simulate import Snapshots, _rk4_step, initial_state
from raysym.sweep_sections import IN_DISTRIBUTION, RolloutConfig

AccFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (pos, vel) (S, n, dim) -> accelerations (S, n, dim)


def ood_states(params: dict[str, Any], particles: int, sims: int, scale: float, seed: int):
    """Initial (pos, vel, charge, mass) of ``sims`` fresh systems of ``particles`` particles, positions and
    velocities scaled by ``scale``: the training distribution's draws (raysym.simulate) from another seed."""
    keys = ("system", "dim", "dt", "substeps", "potential")
    cfg = SimulationConfig(
        **{k: params[k] for k in keys if k in params}, particles=particles, sims=sims, seed=seed, steps=2
    )
    pos, vel, charge, mass = initial_state(cfg, "test", np.arange(sims))
    return pos * scale, vel * scale, charge, mass


def integrate(acc: AccFn, pos: np.ndarray, vel: np.ndarray, dt: float, steps: int, velocities: bool = False):
    """Positions (steps + 1, S, n, dim) of an RK4 integration from (pos, vel); with ``velocities``, the
    pair (positions, velocities)."""
    out, vels = [pos], [vel]
    with np.errstate(all="ignore"):  # a model that blows up gives non-finite errors, reported as such
        for _ in range(steps):
            pos, vel = _rk4_step(acc, pos, vel, acc(pos, vel), dt)
            out.append(pos)
            vels.append(vel)
    return (np.stack(out), np.stack(vels)) if velocities else np.stack(out)


OVERSAMPLE = 32  # the in_dist regime examines up to this many candidate systems per system it keeps


def in_range_states(params: dict[str, Any], truth_of, bounds, sims: int, steps: int, seed: int):
    """(pos, vel, charge, mass, drawn) of up to ``sims`` fresh systems of the training distribution whose true
    trajectories (``steps`` steps) keep every acceleration component inside ``bounds`` (lo, hi): the first
    such among ``OVERSAMPLE * sims`` candidates in draw order; ``drawn`` is how many candidates were
    examined. ``truth_of(charge, mass)`` gives the simulator's accelerations for those particles."""
    pos, vel, charge, mass = ood_states(params, params["particles"], OVERSAMPLE * sims, 1.0, seed)
    path, vels = integrate(truth_of(charge, mass), pos, vel, params["dt"], steps, velocities=True)
    acc = np.stack([truth_of(charge, mass)(p, v) for p, v in zip(path, vels)])  # (steps + 1, S, n, dim)
    flat = acc.transpose(1, 0, 2, 3).reshape(len(pos), -1)
    inside = np.flatnonzero(np.all(np.isfinite(flat), 1) & (flat.min(1) >= bounds[0]) & (flat.max(1) <= bounds[1]))
    keep = inside[:sims]
    if len(keep) == 0:
        raise UserError(
            f"None of {len(pos)} fresh systems stays inside the training range (accelerations within "
            f"[{bounds[0]:.4g}, {bounds[1]:.4g}]) for {steps} steps, so the in-distribution rollout has nothing to "
            "integrate. Use fewer rollout steps, or a trial trained with a larger prune_k."
        )
    drawn = int(keep[-1]) + 1 if len(keep) == sims else len(pos)
    return pos[keep], vel[keep], charge[keep], mass[keep], drawn


def _graphs(pos, vel, charge, mass) -> Snapshots:
    s = len(pos)
    zeros = np.zeros(s, dtype=np.int64)
    return Snapshots(zeros, zeros, zeros.astype(np.float64), pos, vel, charge, mass, np.zeros_like(pos))


def gn_acc(model, charge, mass) -> AccFn:
    import torch

    from raysym.graph import node_features

    def acc(pos, vel):
        x, _ = node_features(_graphs(pos, vel, charge, mass))
        with torch.no_grad():
            return model(x).acc.numpy().astype(np.float64)

    return acc


def symbolic_acc(summary: dict[str, Any], model, charge, mass, law: str, dim: int) -> AccFn:
    """The composed symbolic model's accelerations (raysym.distill_jobs.symbolic_model)."""
    from raysym.distill_jobs import symbolic_model

    symbolic = symbolic_model(model, summary, law, dim)
    if symbolic is None:
        edges, nodes = summary.get("distill/edge_formulas", []), summary.get("distill/node_formulas", [])
        raise UserError(
            f"The distillation of this trial did not give every formula its symbolic model needs (model "
            f"{getattr(model, 'model', '?')}: {len(edges)} edge and {len(nodes)} node formulas, "
            f"errors: {summary.get('distill/errors') or 'none'}), so there is nothing to roll out. Distil it "
            "again (`raysym distill TRIAL`, setting thorough)."
        )
    return lambda pos, vel: symbolic(_graphs(pos, vel, charge, mass))


MODELS = ("gn", "symbolic")


def onestep_key(regime: str, model: str) -> str:
    return f"ood/{regime}/onestep_mae_{model}"


def position_key(regime: str, model: str, horizon: int | str) -> str:
    return f"ood/{regime}/position_error_{model}_t{horizon}"


def regime_errors(
    truth: AccFn, models: dict[str, AccFn], pos: np.ndarray, vel: np.ndarray, dt: float, steps: int
) -> dict[str, dict[str, Any]]:
    """Per model: the one-step MAE of its accelerations on the initial states, and its mean position
    error against the truth at every step (steps + 1,), from the same (pos, vel) (S, n, dim)."""
    true_path = integrate(truth, pos, vel, dt, steps)
    a_true = truth(pos, vel)
    out = {}
    for name, acc in models.items():
        with np.errstate(all="ignore"):
            onestep = float(np.mean(np.abs(acc(pos, vel) - a_true)))
            path = integrate(acc, pos, vel, dt, steps)
            error = np.sqrt(((path - true_path) ** 2).sum(-1)).mean(axis=(1, 2))
        out[name] = {"onestep_mae": onestep, "position_error": error}
    return out


def rollout(trial_dir: str | Path, cfg: RolloutConfig) -> dict[str, Any]:
    """The rollout of a distilled N-body trial: per regime of ``cfg`` (the baseline ``in_dist`` first),
    its settings, the ``ood/<regime>/...`` metrics and each model's position error at every step."""
    from raysym import shards
    from raysym.distill import load_summary
    from raysym.train import load_trial

    trial_dir = Path(trial_dir)
    summary_path = trial_dir / "distill" / "summary.json"
    if not summary_path.is_file():
        raise UserError(
            f"{trial_dir} has not been distilled (no distill/summary.json). Run `raysym distill {trial_dir}`."
        )
    summary = load_summary(summary_path)
    train_cfg, model = load_trial(trial_dir)
    manifest = shards.read_manifest(train_cfg.data)
    params = manifest["params"]
    law = physics.law_key(params["system"], params.get("potential"))
    dim, dt, damping = params.get("dim", 2), params["dt"], params.get("damping", 0.0)
    bounds = shards.prune_bounds(manifest, train_cfg.prune_k) if train_cfg.prune_k is not None else None
    truth_of = lambda q, m: lambda p, v: physics.accelerations(law, p, v, q, m, damping)  # noqa: E731
    check_size(cfg, params["particles"], train_cfg.hidden)
    regimes = {}
    for name, regime in cfg.all_regimes().items():
        n = regime.particles_for(params["particles"])
        if name == IN_DISTRIBUTION and bounds is not None:  # inside the training range, the whole way
            pos, vel, charge, mass, drawn = in_range_states(params, truth_of, bounds, cfg.sims, cfg.steps, cfg.seed)
        else:
            pos, vel, charge, mass = ood_states(params, n, cfg.sims, regime.scale, cfg.seed)
            drawn = cfg.sims
        truth = truth_of(charge, mass)
        models = {"gn": gn_acc(model, charge, mass), "symbolic": symbolic_acc(summary, model, charge, mass, law, dim)}
        errors = regime_errors(truth, models, pos, vel, dt, cfg.steps)
        metrics = {onestep_key(name, m): errors[m]["onestep_mae"] for m in MODELS}
        for m in MODELS:
            metrics.update({position_key(name, m, h): float(errors[m]["position_error"][h]) for h in cfg.horizons()})
        regimes[name] = {
            "particles": n,
            "scale": regime.scale,
            "sims": len(pos),  # in_dist: those of the drawn candidates that stayed inside the training range
            "drawn": drawn,
            "inside_training_range": bool(name == IN_DISTRIBUTION and bounds is not None),
            "metrics": metrics,
            "position_error": {m: [float(e) for e in errors[m]["position_error"]] for m in MODELS},
        }
    return {"settings": {"sims": cfg.sims, "steps": cfg.steps, "seed": cfg.seed, "dt": dt}, "regimes": regimes}


# Edge evaluations (systems x ordered pairs x steps, each by the GN and the symbolic model) a rollout may ask
# for: 2e10 is hours of one CPU core; more is a typing slip (--steps 100000 for --steps 100), not a study.
MAX_EDGE_STEPS = 2e10


def check_size(cfg: RolloutConfig, trained_particles: int, hidden: int) -> None:
    """Refuse (UserError) a rollout whose one step would not fit in the memory available now, or whose whole
    run is beyond MAX_EDGE_STEPS, before anything is simulated; the message gives the sizes and the way out."""
    import psutil

    available = psutil.virtual_memory().available
    sizes = {name: regime.particles_for(trained_particles) for name, regime in cfg.all_regimes().items()}
    for name, n in sizes.items():
        edges = cfg.sims * n * (n - 1)
        # one evaluation of the edge model holds about 4 float32 activations of width `hidden` per edge, and
        # the integrator keeps a few of them alive at once
        step_bytes = edges * 4 * (4 * hidden + 32) * 3
        if step_bytes > 0.5 * available:
            raise UserError(
                f"The rollout regime '{name}' ({cfg.sims} systems of {n} particles, {edges:,} edges a step) needs "
                f"about {step_bytes / 2**30:.1f} GiB for one step, more than half the "
                f"{available / 2**30:.1f} GiB available. Use fewer systems (--sims) or particles."
            )
    for name, n in sizes.items():
        edges = cfg.sims * n * (n - 1)
        if edges * cfg.steps * 2 > MAX_EDGE_STEPS:
            raise UserError(
                f"The rollout regime '{name}' asks for {edges * cfg.steps * 2:.2g} edge evaluations ({cfg.sims} "
                f"systems of {n} particles for {cfg.steps} steps, two models), beyond the {MAX_EDGE_STEPS:.0e} "
                "that take hours on a CPU core. Use fewer systems, particles or steps."
            )


def metrics_of(result: dict[str, Any]) -> dict[str, float]:
    """The flat ``ood/...`` metrics of a rollout result (non-finite errors as inf: a model that blew up)."""
    out = {}
    for regime in result["regimes"].values():
        out.update({k: v if np.isfinite(v) else float("inf") for k, v in regime["metrics"].items()})
    return out


def describe(result: dict[str, Any]) -> str:
    """A rollout result as a console table: per regime and model, the one-step MAE and the position errors."""
    lines = [
        f"{'regime':<14} {'particles':>9} {'scale':>6} {'systems':>9}  {'model':<9} {'one-step MAE':>12}  "
        "position error after"
    ]
    for name, r in result["regimes"].items():
        systems = f"{r['sims']}/{r['drawn']}" if r.get("inside_training_range") else str(r.get("sims", "?"))
        for model in MODELS:
            horizons = [k.rsplit("_t", 1)[1] for k in r["metrics"] if k.startswith(position_key(name, model, ""))]
            errors = ", ".join(f"{h} steps {r['metrics'][position_key(name, model, h)]:.3g}" for h in horizons)
            onestep = r["metrics"][onestep_key(name, model)]
            lines.append(
                f"{name:<14} {r['particles']:>9} {r['scale']:>6g} {systems:>9}  {model:<9} {onestep:>12.4g}  {errors}"
            )
    if any(r.get("inside_training_range") for r in result["regimes"].values()):
        lines.append(
            "systems k/m: k of m fresh systems drawn stayed inside the training range for the whole rollout (in_dist)"
        )
    return "\n".join(lines)


def run_rollout(trial_dir: str | Path, cfg: RolloutConfig) -> dict[str, float]:
    """Roll out a distilled trial, write ``<trial>/ood/`` (rollout.json, position_error.png) and return
    the ``ood/...`` metrics (the N-body kind's rollout)."""
    rollout_folder(trial_dir)  # before the work, not after it
    result = rollout(trial_dir, cfg)
    write_rollout(trial_dir, result)
    return metrics_of(result)


OUT = "ood"  # the rollout's folder in a trial folder
RESULT, FIGURE = "rollout.json", "position_error.png"


def rollout_folder(trial_dir: str | Path) -> Path:
    """``<trial>/ood``, refused (UserError) when it is a link or a file: a rollout is written only into a real
    folder inside the trial, never through a link to somewhere else."""
    out = Path(trial_dir) / OUT
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(
            f"{out} is a {'link' if out.is_symlink() else 'file'}, not the rollout's folder; raysym writes a rollout "
            "only into a real folder inside the trial. Move it away and roll out again."
        )
    return out


def write_rollout(trial_dir: str | Path, result: dict[str, Any]) -> Path:
    """``<trial>/ood/rollout.json`` (:func:`rollout`'s result) and ``<trial>/ood/position_error.png``: one
    panel per regime, each model's mean position error against the simulator's at every step."""
    from raysym.trial_folder import atomic_path, write_json

    out = rollout_folder(trial_dir)
    out.mkdir(exist_ok=True)
    write_json(out / RESULT, result)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = result["regimes"]
    fig, axes = plt.subplots(1, len(regimes), figsize=(3.6 * len(regimes), 3.2), sharey=True, squeeze=False)
    labels = {"gn": "Graph Network", "symbolic": "symbolic model"}
    for ax, (name, regime) in zip(axes[0], regimes.items()):
        for m, style in zip(MODELS, ("-", "--")):
            error = np.asarray(regime["position_error"][m], dtype=float)
            steps = np.arange(len(error))
            ax.plot(steps[1:], error[1:], style, label=labels[m])  # step 0 is the shared start, error 0
        ax.set_yscale("log")
        within = ", inside the training range" if regime.get("inside_training_range") else ""
        ax.set_title(f"{name}: {regime['particles']} particles, states x{regime['scale']:g}{within}", fontsize=8)
        ax.set_xlabel("steps from the same initial states")
    axes[0][0].set_ylabel("mean position error")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = out / FIGURE
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
