"""Have the messages become forces? Sparsity and R² of a trained GN's messages on test graphs.

Definitions (pinned in DESIGN.md):
* Per-component standard deviation of the messages over all test edges; the top ``dim`` components
  by std (KL model: by the mean per-component KL term, since a sampled channel with prior-like noise
  can have a large spread without carrying anything).
* Sparsity holds when every top component's std is at least 100x every other component's std
  (vacuously true for the bottleneck model, whose messages have exactly dim components).
* R² per top component: ordinary least squares of the component on [F_x, F_y, (F_z), 1] over all test
  edges, R² = 1 - SS_res / SS_tot, averaged over the top components. Against the true pairwise force
  (``messages/r2_force``) and against the force divided by the receiver's mass (``messages/r2_accel``,
  the pairwise acceleration, which messages often encode). Robust variants (``..._robust``) refit and
  score on the 90% of edges with the smallest residuals of the first fit, as the original notebook did.

Edge convention: dx = x_sender - x_receiver; the force is the force on the receiver (raysym.physics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from raysym import physics, regularizers
from raysym.model import GraphNetwork, complete_edges, node_features
from raysym.simulate import Snapshots

SPARSITY_RATIO = 100.0
ROBUST_FRACTION = 0.9


@dataclass
class EdgeData:
    """Per-edge quantities of a set of test graphs, one row per edge (E edges).

    messages: (E, message size) at evaluation (KL: the means); logvar: (E, 100) or None.
    dx: (E, dim) x_sender - x_receiver; r: (E,); q_recv, q_send, m_recv, m_send: (E,);
    force: (E, dim) true force on the receiver.
    """

    messages: np.ndarray
    logvar: np.ndarray | None
    dx: np.ndarray
    r: np.ndarray
    q_recv: np.ndarray
    q_send: np.ndarray
    m_recv: np.ndarray
    m_send: np.ndarray
    force: np.ndarray
    potential: np.ndarray | None = None  # (E,) the true pair potential U(r') of each edge
    pair_force: np.ndarray | None = None  # (E, dim) energy models: the force their pair energies imply


@torch.no_grad()
def edge_data(model: GraphNetwork, graphs: Snapshots, system: str, batch: int = 4096) -> EdgeData:
    """Evaluate the edge model on every edge of ``graphs`` and pair it with the true forces."""
    model.eval()
    device = next(model.parameters()).device
    x, _ = node_features(graphs)
    n = x.shape[1]
    recv, send = (t.cpu().numpy() for t in complete_edges(n, "cpu"))
    messages, logvars, pair_forces = [], [], []
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch].to(device))
        messages.append((out.mu if out.mu is not None else out.messages).cpu().numpy())
        if out.logvar is not None:
            logvars.append(out.logvar.cpu().numpy())
        if hasattr(model, "pair_forces"):  # the Hamiltonian GN
            pair_forces.append(model.pair_forces(x[i : i + batch].to(device)).reshape(-1, x.shape[-1] // 2 - 1).cpu().numpy())
    pos = graphs.pos.astype(np.float64)
    dx = (pos[:, send] - pos[:, recv]).reshape(-1, pos.shape[-1])
    q, m = graphs.charge.astype(np.float64), graphs.mass.astype(np.float64)
    q_recv, q_send = q[:, recv].ravel(), q[:, send].ravel()
    m_recv, m_send = m[:, recv].ravel(), m[:, send].ravel()
    return EdgeData(
        messages=np.concatenate(messages).astype(np.float64),
        logvar=np.concatenate(logvars).astype(np.float64) if logvars else None,
        dx=dx, r=np.sqrt((dx**2).sum(-1)), q_recv=q_recv, q_send=q_send, m_recv=m_recv, m_send=m_send,
        force=physics.pair_force(system, dx, q_recv, q_send, m_recv, m_send),
        potential=physics.get_law(system).potential(np.sqrt((dx**2).sum(-1)) + physics.SOFTENING, q_recv, q_send, m_recv, m_send),
        pair_force=np.concatenate(pair_forces).astype(np.float64) if pair_forces else None,
    )


def r2_linear(target: np.ndarray, features: np.ndarray) -> tuple[float, np.ndarray]:
    """R² of the least-squares fit target ~ [features, 1]; returns (R², fitted values)."""
    design = np.column_stack([features, np.ones(len(features))])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    fitted = design @ coef
    ss_tot = np.sum((target - target.mean()) ** 2)
    ss_res = np.sum((target - fitted) ** 2)
    return (1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0), fitted


def r2_prediction(truth: np.ndarray, predicted: np.ndarray, keep: float = 1.0) -> float:
    """R² of ``predicted`` as a prediction of ``truth`` (both (E, dim)), no fitting: 1 - sum of squared
    residuals / sum of squared deviations from the mean, pooled over components. ``keep`` < 1 scores only
    that fraction of rows with the smallest residuals (the robust variant)."""
    residual = ((truth - predicted) ** 2).sum(-1)
    rows = np.argsort(residual)[: max(2, int(keep * len(truth)))]
    ss_tot = ((truth[rows] - truth[rows].mean(0)) ** 2).sum()
    return float(1.0 - residual[rows].sum() / ss_tot) if ss_tot > 0 else 0.0


def r2_robust(target: np.ndarray, features: np.ndarray, keep: float = ROBUST_FRACTION) -> float:
    """Fit, keep the ``keep`` fraction of rows with the smallest residuals, refit and score on them."""
    _, fitted = r2_linear(target, features)
    residual = np.abs(target - fitted)
    rows = np.argsort(residual)[: max(2, int(keep * len(target)))]
    return r2_linear(target[rows], features[rows])[0]


@dataclass
class MessageAnalysis:
    stds: np.ndarray  # (message size,) per-component standard deviation
    top: list[int]  # indices of the top-dim components
    sparse: bool
    sparsity_ratio: float  # min top std / max other std (inf when there are no others)
    r2_force: float
    r2_accel: float
    r2_force_robust: float
    r2_accel_robust: float
    per_component: dict[str, list[float]] = field(default_factory=dict)
    r2_potential: float | None = None  # energy models (hgn): R² of the pair energy on [U(r'), 1]
    r2_pair_force: float | None = None  # energy models: R² of the implied pair force vs the true one
    r2_pair_force_robust: float | None = None

    def metrics(self) -> dict:
        """Flat, namespaced metrics (the names MLflow and metrics.json use)."""
        extra = {} if self.r2_potential is None else {
            "messages/r2_potential": self.r2_potential, "messages/r2_pair_force": self.r2_pair_force,
            "messages/r2_pair_force_robust": self.r2_pair_force_robust}
        return extra | {
            "messages/r2_force": self.r2_force,
            "messages/r2_accel": self.r2_accel,
            "messages/r2_force_robust": self.r2_force_robust,
            "messages/r2_accel_robust": self.r2_accel_robust,
            # the better of the two targets: what the L1 schedule search maximises
            "messages/r2_best": max(self.r2_force, self.r2_accel),
            "messages/sparse": bool(self.sparse),
            # None (JSON null) when there are no other components (the bottleneck model)
            "messages/sparsity_ratio": float(self.sparsity_ratio) if np.isfinite(self.sparsity_ratio) else None,
            "messages/top_std": [float(self.stds[k]) for k in self.top],
            "messages/top_components": [int(k) for k in self.top],
            # for box plots across seeds in reports; largest first
            "messages/stds_top15": [float(v) for v in np.sort(self.stds)[::-1][:15]],
        }


def analyze(edges: EdgeData, dim: int, kl_prior: str = "gaussian") -> MessageAnalysis:
    stds = edges.messages.std(axis=0)
    if edges.messages.shape[1] == 1 and dim > 1:
        # A scalar per edge is a pair energy (the Hamiltonian GN): compare it with the true potential (which
        # is blind to the offsets training leaves free) and its implied pair force with the true one (which
        # is not); the message R² do not apply.
        nan = float("nan")
        r2 = r2_linear(edges.messages[:, 0], edges.potential[:, None])[0] if edges.potential is not None else nan
        implied = edges.pair_force
        return MessageAnalysis(stds=stds, top=[0], sparse=True, sparsity_ratio=float("inf"), r2_force=nan, r2_accel=nan,
                               r2_force_robust=nan, r2_accel_robust=nan, r2_potential=float(r2),
                               r2_pair_force=r2_prediction(edges.force, implied) if implied is not None else nan,
                               r2_pair_force_robust=r2_prediction(edges.force, implied, ROBUST_FRACTION) if implied is not None else nan)
    if edges.logvar is not None:
        mu = torch.from_numpy(edges.messages)
        kl = regularizers.kl_per_component(mu, torch.from_numpy(edges.logvar), kl_prior).mean(0).numpy()
        top = list(np.argsort(-kl)[:dim])
    else:
        top = list(np.argsort(-stds)[:dim])
    others = np.delete(stds, top)
    ratio = float(stds[top].min() / others.max()) if len(others) and others.max() > 0 else float("inf")
    accel = edges.force / edges.m_recv[:, None]
    per = {"r2_force": [], "r2_accel": [], "r2_force_robust": [], "r2_accel_robust": []}
    for k in top:
        y = edges.messages[:, k]
        per["r2_force"].append(r2_linear(y, edges.force)[0])
        per["r2_accel"].append(r2_linear(y, accel)[0])
        per["r2_force_robust"].append(r2_robust(y, edges.force))
        per["r2_accel_robust"].append(r2_robust(y, accel))
    mean = {key: float(np.mean(v)) for key, v in per.items()}
    return MessageAnalysis(
        stds=stds, top=[int(k) for k in top], sparse=ratio >= SPARSITY_RATIO, sparsity_ratio=ratio,
        per_component={k: [float(x) for x in v] for k, v in per.items()}, **mean,
    )


SAMPLE = "messages.npz"


def _savefig(fig, path: Path) -> None:
    """Write a figure under a temporary name, then rename: a crash never leaves half a PNG."""
    import matplotlib.pyplot as plt

    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def save_sample(edges: EdgeData, analysis: MessageAnalysis, out_dir: str | Path, size: int = 2000, seed: int = 0) -> Path:
    """A small, fixed sample of test edges for reports (``messages.npz``, about 100 kB): the top message
    components (size, dim), the true force (size, dim), the receiver mass (size,), plus every component's
    std (message size,) and the top indices. Written to a temporary name, then renamed."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(edges.force), size=min(size, len(edges.force)), replace=False))
    path = Path(out_dir) / SAMPLE
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, messages=edges.messages[rows][:, analysis.top].astype(np.float32), force=edges.force[rows].astype(np.float32),
             m_recv=edges.m_recv[rows].astype(np.float32), stds=analysis.stds.astype(np.float32), top=np.asarray(analysis.top))
    tmp.replace(path)
    return path


def plot(edges: EdgeData, analysis: MessageAnalysis, out_dir: str | Path, target: str = "best") -> list[Path]:
    """Two PNGs: each top component against its least-squares fit on the force or on force / mass
    ("best": whichever has the higher R²), and the 15 largest component standard deviations.
    Returns the paths written."""
    if analysis.r2_potential is not None:
        target = "potential"
    elif target == "best":
        target = "force" if analysis.r2_force >= analysis.r2_accel else "accel"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    features = {"accel": lambda: edges.force / edges.m_recv[:, None], "force": lambda: edges.force,
                "potential": lambda: edges.potential[:, None]}[target]()
    label = {"accel": "force / receiver mass", "force": "force", "potential": "true pair potential U(r')"}[target]
    rng = np.random.default_rng(0)
    shown = rng.choice(len(features), size=min(5000, len(features)), replace=False)
    panels = len(analysis.top) + (edges.pair_force is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4), squeeze=False)
    if edges.pair_force is not None:  # energy models: the force the pair energies imply, radial component
        radial = lambda f: (f * edges.dx).sum(-1) / np.maximum(edges.r, 1e-12)  # noqa: E731 -- + is away from the sender
        truth, implied = radial(edges.force)[shown], radial(edges.pair_force)[shown]
        ax = axes[0, -1]
        ax.scatter(truth, implied, s=2, alpha=0.3)
        lim = np.percentile(np.abs(truth), 99)
        ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="true pair force, radial component",
               ylabel="-d(pair energies)/dq, radial", title=f"R² = {analysis.r2_pair_force:.3f} (robust {analysis.r2_pair_force_robust:.3f})")
    for ax, k in zip(axes[0], analysis.top):
        y = edges.messages[:, k]
        r2, fitted = r2_linear(y, features)
        lim = np.percentile(np.abs(np.concatenate([fitted[shown], y[shown]])), 99)
        ax.scatter(fitted[shown], y[shown], s=2, alpha=0.3)
        ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel=f"linear fit on {label}", ylabel=f"message component {k}", title=f"R² = {r2:.3f}")
    fig.tight_layout()
    scatter = out_dir / "messages_vs_force.png"
    _savefig(fig, scatter)

    order = np.argsort(-analysis.stds)[:15]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(order)), analysis.stds[order], color=["C1" if k in analysis.top else "C0" for k in order])
    ax.set_yscale("log")
    ax.set_xticks(range(len(order)), [str(k) for k in order], fontsize=8)
    ax.set(xlabel="message component", ylabel="std over test edges", title=f"15 largest message stds (sparse: {analysis.sparse})")
    fig.tight_layout()
    stds = out_dir / "message_stds.png"
    _savefig(fig, stds)
    return [scatter, stds]


def plot_stds_over_epochs(epochs: np.ndarray, stds: np.ndarray, dim: int, out_dir: str | Path, shown: int = 10) -> Path:
    """``message_stds_by_epoch.png``: the std of the components that are largest at the end, one line
    each over the epochs (the top dim bold), and the largest of all the others dashed, so sparsity can
    be seen to emerge. epochs: (E,); stds: (E, message size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-stds[-1])
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for rank, k in enumerate(order[:shown]):
        ax.plot(epochs, stds[:, k], lw=2.2 if rank < dim else 0.9, label=f"component {k}" if rank < dim else None)
    if stds.shape[1] > shown:
        ax.plot(epochs, stds[:, order[shown:]].max(axis=1), "k--", lw=1, label=f"largest of the other {stds.shape[1] - shown}")
    ax.set(xlabel="epoch", ylabel="std over test edges", yscale="log", title=f"message stds over training ({shown} largest at the end)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out_dir) / "message_stds_by_epoch.png"
    _savefig(fig, path)
    return path
