"""``raysym rollout``: the paper's central claim, measured: does the distilled symbolic model generalise
better out of distribution than the network it came from?

For a trained and distilled N-body trial, fresh systems are drawn outside the training distribution (more
particles; initial positions and velocities scaled by ``scale``) and three integrators start from the same
states: the simulator (the truth), the trained Graph Network, and the composed symbolic model. Each is
integrated with the simulator's RK4 and time step. Reported, per model: the one-step acceleration error on
the initial states, and the position error against the truth at several horizons.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from raysym import physics
from raysym.config import SimulationConfig
from raysym.errors import UserError
from raysym.simulate import Snapshots, _rk4_step, initial_state

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


def integrate(acc: AccFn, pos: np.ndarray, vel: np.ndarray, dt: float, steps: int) -> np.ndarray:
    """Positions (steps + 1, S, n, dim) of an RK4 integration from (pos, vel)."""
    out = [pos]
    with np.errstate(all="ignore"):  # a model that blows up gives non-finite errors, reported as such
        for _ in range(steps):
            pos, vel = _rk4_step(acc, pos, vel, acc(pos, vel), dt)
            out.append(pos)
    return np.stack(out)


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


def symbolic_acc(summary: dict[str, Any], model, charge, mass, law: str) -> AccFn:
    """The composed symbolic model's accelerations: edge formulas summed over senders, then (Newtonian
    GN) divided by the receiver's mass, or (paper models) the node formulas."""
    from raysym.distill_jobs import composed_accelerations, newtonian_accelerations

    edge_eqs, node_eqs = summary.get("distill/edge_formulas", []), summary.get("distill/node_formulas", [])
    kind = getattr(model, "model", "")
    dim = model.dim if hasattr(model, "dim") else len(edge_eqs)
    if kind == "newtonian" and model.readout is None and len(edge_eqs) == dim:
        readout = np.eye(dim)
        return lambda pos, vel: newtonian_accelerations(
            edge_eqs, node_eqs, readout, _graphs(pos, vel, charge, mass), law
        )
    if kind not in ("newtonian", "hgn") and edge_eqs and len(node_eqs) == dim:
        return lambda pos, vel: composed_accelerations(edge_eqs, node_eqs, _graphs(pos, vel, charge, mass), law)
    raise UserError(
        f"The rollout does not compose a symbolic model for this trial yet (model {kind or 'unknown'}, "
        f"{len(edge_eqs)} edge and {len(node_eqs)} node formulas): Newtonian GNs with dim-component messages and "
        "the paper's edge/node models are supported."
    )


HORIZONS = (1, 10, 50)


def position_key(model: str, horizon: int) -> str:
    return f"ood/position_error_{model}_t{horizon}"


def rollout(
    trial_dir: str | Path,
    *,
    particles: int | None = None,
    sims: int = 8,
    steps: int = 50,
    scale: float = 1.0,
    seed: int = 10_000,
) -> dict[str, float]:
    """``ood/*`` metrics of a distilled trial (see the module doc)."""
    from raysym import shards
    from raysym.train import load_trial

    trial_dir = Path(trial_dir)
    summary_path = trial_dir / "distill" / "summary.json"
    if not summary_path.is_file():
        raise UserError(
            f"{trial_dir} has not been distilled (no distill/summary.json). Run `raysym distill {trial_dir}`."
        )
    summary = json.loads(summary_path.read_text())
    train_cfg, model = load_trial(trial_dir)
    params = shards.read_manifest(train_cfg.data)["params"]
    law = physics.law_key(params["system"], params.get("potential"))
    n = particles or params["particles"]
    pos, vel, charge, mass = ood_states(params, n, sims, scale, seed)
    damping = params.get("damping", 0.0)
    truth = lambda p, v: physics.accelerations(law, p, v, charge, mass, damping)  # noqa: E731 -- three in a row
    models = {"gn": gn_acc(model, charge, mass), "symbolic": symbolic_acc(summary, model, charge, mass, law)}
    dt = params["dt"]
    true_path = integrate(truth, pos, vel, dt, steps)
    a_true = truth(pos, vel)
    out: dict[str, float] = {"particles": n}
    for name, acc in models.items():
        with np.errstate(all="ignore"):
            out[f"ood/onestep_mae_{name}"] = float(np.mean(np.abs(acc(pos, vel) - a_true)))
            path = integrate(acc, pos, vel, dt, steps)
            error = np.sqrt(((path - true_path) ** 2).sum(-1)).mean(axis=(1, 2))  # (steps + 1,)
        for h in HORIZONS:
            if h <= steps:
                out[position_key(name, h)] = float(error[h])
    return out


def write_rollout(trial_dir: str | Path, metrics: dict[str, float], settings: dict[str, Any]) -> Path:
    """``<trial>/ood.json`` (the settings and the ood/* metrics) and ``ood_position_error.png``."""
    from raysym.trial_folder import atomic_path, write_json

    trial_dir = Path(trial_dir)
    write_json(trial_dir / "ood.json", {"settings": settings, "metrics": metrics})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name in ("gn", "symbolic"):
        points = [(h, metrics[position_key(name, h)]) for h in HORIZONS if position_key(name, h) in metrics]
        if points:
            ax.plot(*zip(*points), "o-", label={"gn": "Graph Network", "symbolic": "symbolic model"}[name])
    ax.set(xlabel="steps from the same initial states", ylabel="mean position error", yscale="log")
    ax.set_title(f"{settings['particles']} particles, initial states x{settings['scale']:g}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = trial_dir / "ood_position_error.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
