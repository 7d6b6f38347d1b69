"""The message analysis's files in a trial folder: the messages against the force (``messages_vs_force.png``),
the largest component stds (``message_stds.png``), their course over the epochs with the sparsity share and
ratio (``message_stds_by_epoch.png``), and a small sample of test edges for reports (``messages.npz``). The
numbers themselves come from raysym.messages; this module only draws and stores them, each file written under
a temporary name and then renamed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raysym.messages import EdgeData, MessageAnalysis, r2_linear_within
from raysym.trial_folder import atomic_path

SAMPLE = "messages.npz"


def _savefig(fig, path: Path) -> None:
    """Write a figure under a temporary name, then rename: a crash never leaves half a PNG."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def save_sample(
    edges: EdgeData, analysis: MessageAnalysis, out_dir: str | Path, size: int = 2000, seed: int = 0
) -> Path:
    """A small, fixed sample of test edges for reports (``messages.npz``, about 100 kB): the top message
    components (size, dim), the true force (size, dim), the receiver mass (size,), whether each edge is
    in distribution (size,) bool, plus every component's std (message size,) and the top indices. Written
    to a temporary name, then renamed."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(edges.force), size=min(size, len(edges.force)), replace=False))
    inside = edges.in_range if edges.in_range is not None else np.ones(len(edges.force), dtype=bool)
    path = Path(out_dir) / SAMPLE
    with atomic_path(path) as tmp:
        np.savez(
            tmp,
            messages=edges.messages[rows][:, analysis.top].astype(np.float32),
            force=edges.force[rows].astype(np.float32),
            m_recv=edges.m_recv[rows].astype(np.float32),
            in_range=inside[rows],
            stds=analysis.stds.astype(np.float32),
            top=np.asarray(analysis.top),
        )
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
    features = {
        "accel": lambda: edges.force / edges.m_recv[:, None],
        "force": lambda: edges.force,
        "potential": lambda: edges.potential[:, None],
    }[target]()
    label = {"accel": "force / receiver mass", "force": "force", "potential": "true pair potential U(r')"}[target]
    rng = np.random.default_rng(0)
    shown = rng.choice(len(features), size=min(5000, len(features)), replace=False)
    panels = len(analysis.top) + (edges.pair_force is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4), squeeze=False)
    if edges.pair_force is not None:  # energy models: the force the pair energies imply, radial component
        radial = lambda f: (f * edges.dx).sum(-1) / np.maximum(edges.r, 1e-12)  # + is away from the sender
        truth, implied = radial(edges.force)[shown], radial(edges.pair_force)[shown]
        ax = axes[0, -1]
        ax.scatter(truth, implied, s=2, alpha=0.3)
        lim = np.percentile(np.abs(truth), 99)
        ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
        ax.set(
            xlim=(-lim, lim),
            ylim=(-lim, lim),
            xlabel="true pair force, radial component",
            ylabel="-d(pair energies)/dq, radial",
            title=f"R² = {analysis.r2_pair_force:.3f} (robust {analysis.r2_pair_force_robust:.3f})",
        )
    inside = edges.in_range if edges.in_range is not None else np.ones(len(features), dtype=bool)
    for ax, k in zip(axes[0], analysis.top):
        # Fitted on the in-distribution edges (the headline R²); the others, drawn in grey with the same
        # fit, show the extrapolation instead of dragging the fit (1/r^2 close encounters would).
        y = edges.messages[:, k]
        r2, fitted = r2_linear_within(y, features, inside)
        ins, out = shown[inside[shown]], shown[~inside[shown]]
        lim = (np.percentile(np.abs(np.concatenate([fitted[ins], y[ins]])), 99) if len(ins) else 0.0) or 1.0
        ax.scatter(fitted[out], y[out], s=2, alpha=0.3, color="0.6", label="outside the training range")
        ax.scatter(fitted[ins], y[ins], s=2, alpha=0.3, color="C0", label="in distribution")
        ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
        ax.set(
            xlim=(-lim, lim),
            ylim=(-lim, lim),
            xlabel=f"linear fit on {label} (in-distribution edges)",
            ylabel=f"message component {k}",
            title=f"R² in distribution = {r2:.3f}",
        )
        ax.legend(fontsize=7, markerscale=4, loc="upper left")
    fig.tight_layout()
    scatter = out_dir / "messages_vs_force.png"
    _savefig(fig, scatter)

    order = np.argsort(-analysis.stds)[:15]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(order)), analysis.stds[order], color=["C1" if k in analysis.top else "C0" for k in order])
    ax.set_yscale("log")
    ax.set_xticks(range(len(order)), [str(k) for k in order], fontsize=8)
    ax.set(
        xlabel="message component",
        ylabel="std over test edges",
        title=f"15 largest message stds (sparse: {analysis.sparse})",
    )
    fig.tight_layout()
    stds = out_dir / "message_stds.png"
    _savefig(fig, stds)
    return [scatter, stds]


def plot_stds_over_epochs(
    epochs: np.ndarray,
    stds: np.ndarray,
    dim: int,
    out_dir: str | Path,
    shown: int = 10,
    curves: dict[str, list[float | None]] | None = None,
) -> Path:
    """``message_stds_by_epoch.png``: the std of the components that are largest at the end, one line
    each over the epochs (the top dim bold), and the largest of all the others dashed, so sparsity can
    be seen to emerge; with ``curves`` (per epoch, "share" and "ratio" from the validation graphs) a second
    panel follows the sparsity share and ratio against their targets. epochs: (E,); stds: (E, message size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: np.array([np.nan if v is None else v for v in vs], dtype=float) for k, vs in (curves or {}).items()}
    series = {k: v for k, v in series.items() if len(v) == len(epochs) and np.isfinite(v).any()}
    fig, axes = plt.subplots(1, 2 if series else 1, figsize=(11 if series else 6, 3.8), squeeze=False)
    ax = axes[0, 0]
    order = np.argsort(-stds[-1])
    for rank, k in enumerate(order[:shown]):
        ax.plot(epochs, stds[:, k], lw=2.2 if rank < dim else 0.9, label=f"component {k}" if rank < dim else None)
    if stds.shape[1] > shown:
        ax.plot(
            epochs,
            stds[:, order[shown:]].max(axis=1),
            "k--",
            lw=1,
            label=f"largest of the other {stds.shape[1] - shown}",
        )
    ax.set(
        xlabel="epoch",
        ylabel="std over validation edges",
        yscale="log",
        title=f"message stds over training ({shown} largest at the end)",
    )
    ax.legend(fontsize=7)
    if series:
        ax = axes[0, 1]
        if "share" in series:
            ax.plot(epochs, series["share"], color="C0", lw=2, label="share of the summed stds in the top dim")
            ax.axhline(0.95, color="C0", ls=":", lw=1, label="share 0.95")
            ax.set_ylim(0, 1.02)
            ax.set_ylabel("sparsity share")
        if "ratio" in series:
            twin = ax.twinx()
            twin.plot(epochs, series["ratio"], color="C3", lw=1.5, label="ratio: dim-th / next std")
            twin.axhline(100, color="C3", ls=":", lw=1, label="ratio 100 (sparse)")
            twin.set(yscale="log", ylabel="sparsity ratio")
            twin.legend(fontsize=7, loc="lower right")
        ax.set(xlabel="epoch", title="sparsity on the validation graphs")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(out_dir) / "message_stds_by_epoch.png"
    _savefig(fig, path)
    return path
