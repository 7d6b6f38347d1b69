"""Halo catalogs: the paper's dark-matter experiment on point catalogs.

A catalog is a table of points (dark-matter halos) with positions x, y, z, velocities vx, vy, vz, a mass,
and a node target (the paper: the overdensity delta of each halo). raysym builds one graph over the
catalog with an edge from every point to every other point within a radius (both directions, periodic
when the box size is given), trains a node-level Graph Network with L1 messages to predict the target,
and distils the edge function.

catalog (Parquet or CSV)  ->  radius graph (scipy cKDTree)  ->  node-level GN (edge model on
[dx, dy, dz, r, m_receiver, m_sender], messages summed at the receiver, node model on [m, summed])
->  top message component  ->  symbolic regression (raysym.distill)  ->  verdict against the true edge term

The Quijote catalogs the paper used cannot be fetched here, so :func:`synthetic_catalog` makes catalogs
whose target is a known function of the neighbours:

    target_i = sum over j with |r_ij| < radius of  m_j / (|r_ij| + 1)

so the edge function to recover is m_sender / (r + 1). A real catalog is read by :func:`read_catalog`
from named columns (``target`` names the target column).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raysym.errors import UserError
from raysym.model import mlp

COLUMNS = ("x", "y", "z", "vx", "vy", "vz", "mass")
EDGE_NAMES = ["dx", "dy", "dz", "r", "m1", "m2"]  # 1 = receiver, 2 = sender, dx = x_sender - x_receiver


@dataclass
class Catalog:
    """N points: pos, vel (N, 3); mass, target (N,); ``box`` the periodic box size, or None."""

    pos: np.ndarray
    vel: np.ndarray
    mass: np.ndarray
    target: np.ndarray
    box: float | None = None

    def __len__(self) -> int:
        return len(self.mass)


def synthetic_catalog(points: int = 2000, box: float = 20.0, radius: float = 2.0, seed: int = 0) -> Catalog:
    """Uniform points in a periodic box, lognormal masses, and the known target (see the module doc)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, box, size=(points, 3))
    vel = rng.normal(size=(points, 3))
    mass = np.exp(rng.normal(0.0, 0.5, size=points))
    senders, receivers = radius_graph(pos, radius, box)
    r = np.linalg.norm(_offsets(pos, senders, receivers, box), axis=1)
    target = np.zeros(points)
    np.add.at(target, receivers, edge_term(r, mass[senders]))
    return Catalog(pos, vel, mass, target, box)


def edge_term(r: np.ndarray, m_sender: np.ndarray) -> np.ndarray:
    """The synthetic catalogs' true edge function: m_sender / (r + 1)."""
    return m_sender / (r + 1.0)


def read_catalog(path: str | Path, target: str = "delta", box: float | None = None) -> Catalog:
    """A catalog from a Parquet or CSV file with columns x, y, z, vx, vy, vz, mass and ``target``."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pcsv.read_csv(path) if path.suffix.lower() == ".csv" else pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"The catalog {path} cannot be read ({exc}). Give a Parquet or CSV file.") from None
    missing = [c for c in (*COLUMNS, target) if c not in table.column_names]
    if missing:
        raise UserError(f"The catalog {path} has no column(s) {', '.join(missing)} (it has {', '.join(table.column_names)}). "
                        f"Rename them, or name the target column with target=...")
    col = lambda name: table[name].to_numpy().astype(np.float64)  # noqa: E731
    cat = Catalog(np.stack([col(c) for c in "xyz"], 1), np.stack([col(c) for c in ("vx", "vy", "vz")], 1), col("mass"), col(target), box)
    if not all(np.isfinite(a).all() for a in (cat.pos, cat.vel, cat.mass, cat.target)):
        raise UserError(f"The catalog {path} holds NaN or infinite values. Clean it first.")
    return cat


def radius_graph(pos: np.ndarray, radius: float, box: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(senders, receivers) of every ordered pair of distinct points closer than ``radius`` (periodic
    distances in a box of side ``box`` when given), sorted by receiver then sender. pos: (N, 3)."""
    from scipy.spatial import cKDTree

    if box is not None and radius >= box / 2:
        raise UserError(f"The radius {radius} must be below half the box size {box}: a periodic pair would be counted twice.")
    tree = cKDTree(np.mod(pos, box) if box else pos, boxsize=box)
    pairs = tree.query_pairs(radius, output_type="ndarray")  # i < j, within radius (<=)
    if len(pairs):
        d = np.linalg.norm(_offsets(pos, pairs[:, 0], pairs[:, 1], box), axis=1)
        pairs = pairs[d < radius]
    senders = np.concatenate([pairs[:, 0], pairs[:, 1]])
    receivers = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.lexsort((senders, receivers))
    return senders[order].astype(np.int64), receivers[order].astype(np.int64)


def _offsets(pos: np.ndarray, senders: np.ndarray, receivers: np.ndarray, box: float | None) -> np.ndarray:
    """x_sender - x_receiver per edge (E, 3), the nearest periodic image when ``box`` is given."""
    d = pos[senders] - pos[receivers]
    if box:
        d = d - box * np.round(d / box)
    return d


def edge_inputs(cat: Catalog, senders: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """(E, 6) columns in EDGE_NAMES order: dx, dy, dz, r, m_receiver, m_sender."""
    d = _offsets(cat.pos, senders, receivers, cat.box)
    r = np.linalg.norm(d, axis=1)
    return np.column_stack([d, r, cat.mass[receivers], cat.mass[senders]])


class NodeGN(nn.Module):
    """Node-level GN: messages = edge_model(edge inputs) (E, msg_dim), summed at each receiver; the
    node model maps [mass, summed messages] to the node's target (N,)."""

    def __init__(self, hidden: int = 128, layers: int = 3, msg_dim: int = 100):
        super().__init__()
        self.msg_dim = msg_dim
        self.edge_model = mlp(len(EDGE_NAMES), msg_dim, hidden, layers)
        self.node_model = mlp(1 + msg_dim, 1, hidden, layers)

    def forward(self, edge_x: torch.Tensor, receivers: torch.Tensor, node_mass: torch.Tensor):
        """edge_x (E, 6), receivers (E,) int64, node_mass (N,) -> (prediction (N,), messages (E, msg_dim))."""
        messages = self.edge_model(edge_x)
        summed = torch.zeros(len(node_mass), self.msg_dim, dtype=messages.dtype, device=messages.device)
        summed = summed.index_add(0, receivers, messages)
        return self.node_model(torch.cat([node_mass[:, None], summed], dim=1)).squeeze(1), messages


@dataclass
class HaloResult:
    model: NodeGN
    history: list[dict[str, float]]
    test_mae: float
    edge_x: np.ndarray  # (E, 6) every edge's inputs
    messages: np.ndarray  # (E, msg_dim) after training
    top: int  # the message component with the largest std


def train_halos(cat: Catalog, radius: float, *, epochs: int = 300, lr: float = 3e-3, l1: float = 1e-2, hidden: int = 128,
                test_fraction: float = 0.2, seed: int = 0) -> HaloResult:
    """Train a NodeGN on one catalog graph: full-batch Adam on the training nodes' targets (MAE) plus
    ``l1`` times the mean over edges of the summed |messages|; test MAE on held-out nodes."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    senders, receivers = radius_graph(cat.pos, radius, cat.box)
    if len(senders) == 0:
        raise UserError(f"No two points of the catalog lie within radius {radius}. Raise the radius.")
    edge_x_np = edge_inputs(cat, senders, receivers)
    # standardise the target so one learning rate suits any catalog
    scale = float(np.std(cat.target)) or 1.0
    edge_x = torch.tensor(edge_x_np, dtype=torch.float32)
    recv = torch.from_numpy(receivers)
    mass = torch.tensor(cat.mass, dtype=torch.float32)
    y = torch.tensor(cat.target / scale, dtype=torch.float32)
    test = torch.from_numpy(rng.random(len(cat)) < test_fraction)
    model = NodeGN(hidden=hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # a cosine decay to lr / 100: full-batch Adam at a constant rate keeps oscillating around the minimum
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr / 100)
    history = []
    for epoch in range(epochs):
        model.train()
        pred, messages = model(edge_x, recv, mass)
        base = (pred[~test] - y[~test]).abs().mean()
        loss = base + l1 * messages.abs().sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if epoch % 25 == 0 or epoch == epochs - 1:
            history.append({"epoch": epoch, "train/loss": loss.item(), "test/mae": (pred[test] - y[test]).abs().mean().item() * scale})
    model.eval()
    with torch.no_grad():
        pred, messages = model(edge_x, recv, mass)
    messages_np = messages.numpy().astype(np.float64)
    return HaloResult(model, history, float((pred[test] - y[test]).abs().mean()) * scale, edge_x_np, messages_np,
                      int(np.argmax(messages_np.std(0))))


def leading_direction(messages: np.ndarray) -> np.ndarray:
    """The unit vector (msg_dim,) of the messages' first principal axis, signed so that the projection
    grows with the largest component. On halo graphs the L1 messages do not concentrate in one
    component, but they vary along one direction (the second singular value is a fifth of the first on
    the synthetic catalogs), and that direction carries the edge function."""
    centred = messages - messages.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axis = vt[0]
    return axis if axis[np.argmax(np.abs(axis))] > 0 else -axis


def distill_halos(result: HaloResult, cfg, samples: int = 3000, seed: int = 0, workdir: Path | None = None) -> dict:
    """Symbolic regression of the messages' leading direction on the edge inputs (dx, dy, dz, r, m1, m2),
    and, for synthetic catalogs, the verdict: is the chosen formula a linear transformation of the true
    edge term m2 / (r + 1) on every edge (R² >= 0.99)? ``cfg``: a DistillConfig."""
    from raysym import distill
    from raysym.distill_jobs import RECOVERED_R2
    from raysym.messages import r2_linear

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(result.edge_x), size=min(samples, len(result.edge_x)), replace=False)
    y = result.messages @ leading_direction(result.messages)
    front = distill.fit(result.edge_x[rows], y[rows], EDGE_NAMES, cfg, workdir)
    formula = front.formulas[front.chosen].equation
    value = distill.evaluate(formula, result.edge_x, EDGE_NAMES)
    true = edge_term(result.edge_x[:, 3], result.edge_x[:, 5])
    r2_true = r2_linear(value, true[:, None])[0] if np.all(np.isfinite(value)) else 0.0
    return {"formula": formula, "front": front, "r2_messages_vs_true": r2_linear(y, true[:, None])[0],
            "r2_formula_vs_true": float(r2_true), "recovered": bool(r2_true >= RECOVERED_R2)}


def run_halos(cfg, distill_cfg, out: str | Path, say=lambda m: None) -> dict:
    """``raysym halos``: read (or make) the catalog, train, distil, and write ``out/halos.json`` (settings,
    test MAE, the formula, R² against the messages and, for synthetic catalogs, the verdict against the
    true edge term) and the Pareto front (``edge_front.csv`` / ``.md``). cfg: a HaloConfig."""
    import dataclasses
    import json
    import time

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    synthetic = cfg.catalog == "synthetic"
    if synthetic:
        cat = synthetic_catalog(cfg.points, cfg.synthetic_box(), cfg.radius, cfg.seed)
    else:
        cat = read_catalog(cfg.catalog, cfg.target, cfg.box)
    say(f"{len(cat):,} points; training the node-level GN for {cfg.epochs} epochs")
    start = time.perf_counter()
    result = train_halos(cat, cfg.radius, epochs=cfg.epochs, lr=cfg.lr, l1=cfg.l1, hidden=cfg.hidden,
                         test_fraction=cfg.test_fraction, seed=cfg.seed)
    trained = time.perf_counter() - start
    say(f"test MAE {result.test_mae:.4g} (target std {np.std(cat.target):.4g}); distilling the edge function")
    found = distill_halos(result, distill_cfg, samples=distill_cfg.samples, seed=cfg.seed)
    summary = {
        "config": dataclasses.asdict(cfg), "points": len(cat), "edges": len(result.edge_x),
        "test/mae": result.test_mae, "target_std": float(np.std(cat.target)), "time/train_seconds": trained,
        "history": result.history, "distill/formula": found["formula"], "distill/backend": found["front"].backend,
    }
    if synthetic:  # the true edge function is known only for synthetic catalogs
        summary.update({"messages/r2_vs_true_edge": found["r2_messages_vs_true"], "distill/r2_vs_true_edge": found["r2_formula_vs_true"],
                        "distill/recovered": found["recovered"]})
    for name, text in (("halos.json", json.dumps(summary, indent=2, default=float) + "\n"), ("edge_front.md", found["front"].to_markdown() + "\n")):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    tmp = out / ".edge_front.csv.tmp"
    found["front"].to_csv(tmp)
    tmp.replace(out / "edge_front.csv")
    return summary
