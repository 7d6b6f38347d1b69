"""The report's figures, each a function from a :class:`~raysym.report_data.Sweep` to one PNG.

Every function returns the path it wrote, or None when the sweep has nothing to draw (no L1 trial, a
single pruning factor, ...), so the report can say why a figure is absent. Trials are grouped the way the
tables group them (system, model, pruning factor); groups are drawn in a fixed order and colour, so the
same sweep always gives the same pictures.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from raysym.report_data import Sweep, Trial
from raysym.trial_folder import atomic_path

MAX_PANELS = 12  # groups shown in the per-group figures; the tables list every group


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def group_name(t: Trial) -> str:
    """A figure panel's title: the trials its kind groups together (seeds share a group)."""
    return t.group


def _groups(trials: list[Trial]) -> dict[str, list[Trial]]:
    groups: dict[str, list[Trial]] = defaultdict(list)
    for t in sorted(trials, key=lambda t: (t.system, t.dim, t.model, t.prune_k or 0.0, t.key)):
        groups[group_name(t)].append(t)
    return dict(groups)


def _panels(count: int):
    """(figure, axes) for ``count`` small panels, three to a row; the unused ones are hidden."""
    plt = _plt()
    cols = min(3, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel()[count:]:
        ax.axis("off")
    return fig, axes.ravel()[:count]


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    _plt().close(fig)
    return path


def l1_schedules(sweep: Sweep, out: Path) -> Path | None:
    """The L1 coefficient at the end of each epoch, one line per distinct L1 schedule (and shape)."""
    curves = {}
    for t in sweep.trials:
        points = t.history.get("train/l1_coeff")
        if t.model.startswith("l1-") and points:
            shape = ", ".join(
                f"{k.split('.', 1)[1]}={float(v):.3g}"
                for k, v in sorted(t.params.items())
                if k.startswith("schedule_shape.")
            )
            curves.setdefault(t.model + (f" ({shape})" if shape else ""), points)
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (name, points) in enumerate(sorted(curves.items())[:20]):
        steps, values = zip(*points)
        ax.plot(np.asarray(steps), values, marker="o", ms=3, label=name, color=f"C{i % 10}")
    ax.set(xlabel="epoch", ylabel="L1 coefficient", title="L1 schedules over training")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "l1_schedules.png")


def loss_curves(sweep: Sweep, out: Path) -> Path | None:
    """Training loss and test MAE per epoch, every trial, coloured by model."""
    trials = [t for t in sweep.trials if t.history.get("train/loss") or t.history.get("test/mae")]
    if not trials:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    models = sorted({t.model for t in trials})
    for t in trials:
        colour = f"C{models.index(t.model) % 10}"
        for ax, key in zip(axes, ("train/loss", "test/mae")):
            if t.history.get(key):
                steps, values = zip(*t.history[key])
                ax.plot(steps, values, color=colour, alpha=0.7, lw=1)
    for ax, key in zip(axes, ("train/loss (with regulariser)", "test/mae")):
        ax.set(xlabel="epoch", ylabel=key, yscale="log")
    for i, m in enumerate(models):
        axes[0].plot([], [], color=f"C{i % 10}", label=m)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"loss curves, {len(trials)} trial(s)")
    fig.tight_layout()
    return _save(fig, out / "loss_curves.png")


def messages_vs_force(sweep: Sweep, out: Path, sample_of: Callable[[Trial], dict | None]) -> Path | None:
    """For the first finished trial of each group: each top message component against its least-squares
    fit on the force (or force / mass, whichever fits better), from the trial's messages.npz. The fit and
    its R² use the in-distribution edges (the headline); edges outside the training range are drawn in
    grey with the same fit. Samples from before raysym stored ``in_range`` are fitted on every edge, and
    the panel says so."""
    from raysym.messages import r2_linear_within

    rows = []
    for name, trials in list(_groups([t for t in sweep.trials if t.finished]).items())[:MAX_PANELS]:
        sample = sample_of(trials[0])
        if sample is not None:
            rows.append((name, sample))
    if not rows:
        return None
    plt = _plt()
    cols = max(s["messages"].shape[1] for _, s in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 3.0 * len(rows)), squeeze=False)
    for (name, s), row in zip(rows, axes):
        accel = s["force"] / s["m_recv"][:, None]
        known = "in_range" in s
        inside = s["in_range"].astype(bool) if known else np.ones(len(accel), dtype=bool)
        where = "in distribution" if known else "all edges"
        for k, ax in enumerate(row):
            if k >= s["messages"].shape[1]:
                ax.axis("off")
                continue
            y = s["messages"][:, k].astype(np.float64)
            (r2f, fit_f), (r2a, fit_a) = (
                r2_linear_within(y, s["force"].astype(np.float64), inside),
                r2_linear_within(y, accel.astype(np.float64), inside),
            )
            fitted, label, r2 = (fit_f, "force", r2f) if not r2a > r2f else (fit_a, "force/mass", r2a)
            lim = (
                float(np.percentile(np.abs(np.concatenate([fitted[inside], y[inside]])), 99)) if inside.any() else 0.0
            ) or 1.0
            ax.scatter(fitted[~inside], y[~inside], s=2, alpha=0.3, color="0.6", label="outside training range")
            ax.scatter(fitted[inside], y[inside], s=2, alpha=0.3, color="C0", label=where)
            ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
            ax.set(
                xlim=(-lim, lim), ylim=(-lim, lim), title=f"{name}\ncomponent {int(s['top'][k])}, R² {r2:.3f} ({where})"
            )
            ax.set_xlabel(f"linear fit on {label}", fontsize=8)
            ax.set_ylabel("message component", fontsize=8)
            ax.title.set_fontsize(8)
            ax.legend(fontsize=6, markerscale=4, loc="upper left")
    fig.tight_layout()
    return _save(fig, out / "messages_vs_force.png")


def message_stds(sweep: Sweep, out: Path) -> Path | None:
    """The 15 largest message-component stds of each group as box plots across its trials (seeds)."""
    finished = _groups([t for t in sweep.trials if t.finished])
    groups = {n: [t.top_stds() for t in ts if t.top_stds()] for n, ts in finished.items()}
    groups = {n: v for n, v in groups.items() if v}
    if not groups:
        return None
    shown = list(groups.items())[:MAX_PANELS]
    fig, axes = _panels(len(shown))
    for ax, (name, stds) in zip(axes, shown):
        sparsity = _sparsity_note(finished[name])
        width = max(len(s) for s in stds)
        columns = [[s[i] for s in stds if i < len(s)] for i in range(width)]
        if len(stds) > 1:  # a box per rank across the seeds
            boxes = ax.boxplot(columns, positions=range(1, width + 1))
            ax.legend([boxes["boxes"][0]], [f"spread over {len(stds)} trials (seeds)"], fontsize=7)
        else:  # one trial: its values (a box of one value says nothing)
            ax.plot(range(1, width + 1), columns, "o", ms=4, label="the trial's stds")
            ax.legend(fontsize=7)
        ax.set_yscale("log")
        ax.set_title(f"{name} ({len(stds)} trial(s)){sparsity}", fontsize=8)
        ax.set_xlabel("rank of std", fontsize=8)
        ax.set_ylabel("std over test edges", fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "message_stds.png")


def _sparsity_note(trials: list[Trial]) -> str:
    """A panel title's sparsity summary: mean share and ratio over the trials, for messages with a prior."""
    shares = [t.metrics["messages/sparsity_share"] for t in trials if t.metrics.get("messages/sparse") is not None]
    ratios = [t.metrics["messages/sparsity_ratio"] for t in trials if t.metrics.get("messages/sparse") is not None]
    if not shares or not ratios:
        return ""
    return f"\nsparsity share {np.mean(shares):.3f}, ratio {np.mean(ratios):.3g} (100: sparse)"


def stds_over_epochs(sweep: Sweep, out: Path, stds_of: Callable[[Trial], dict | None]) -> Path | None:
    """For the first finished trial of each group: its ten largest final message stds over the epochs,
    the largest of the other components dashed, and, where there are more than dim components, the sparsity
    share per epoch on a right axis (from message_stds_by_epoch.json, validation graphs)."""
    panels = []
    for name, trials in list(_groups([t for t in sweep.trials if t.finished]).items())[:MAX_PANELS]:
        data = stds_of(trials[0])
        if data and data.get("stds"):
            panels.append((name, trials[0].dim, np.asarray(data["epoch"]), np.asarray(data["stds"])))
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    for ax, (name, dim, epochs, stds) in zip(axes, panels):
        order = np.argsort(-stds[-1])
        for rank, k in enumerate(order[:10]):
            label = f"top {dim} at the end (thick)" if rank == 0 else ("next largest" if rank == dim else None)
            ax.plot(epochs, stds[:, k], lw=2 if rank < dim else 0.8, label=label)
        if stds.shape[1] > 10:
            ax.plot(epochs, stds[:, order[10:]].max(axis=1), "k--", lw=0.8, label="largest of the rest")
        ax.legend(fontsize=7, loc="lower left")
        if stds.shape[1] > dim:  # the sparsity share per epoch: the top dim's part of the summed stds
            ranked = -np.sort(-stds, axis=1)
            share = ranked[:, :dim].sum(1) / np.maximum(ranked.sum(1), 1e-30)
            twin = ax.twinx()
            twin.plot(epochs, share, color="0.3", ls=":", lw=1.5, label="sparsity share (right axis)")
            twin.set_ylim(0, 1.02)
            twin.set_ylabel("sparsity share", fontsize=8)
            twin.legend(fontsize=7, loc="upper right")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("message std", fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "message_stds_by_epoch.png")


def ood_rollouts(sweep: Sweep, out: Path, result_of: Callable[[Trial], dict | None]) -> Path | None:
    """For the first rolled-out trial of each group: the mean position error against the simulator at every
    step, per rollout regime (one colour each), the GN solid and its symbolic model dashed."""
    panels = []
    for name, trials in _groups([t for t in sweep.trials if t.finished]).items():
        result = next((r for r in map(result_of, trials) if r and r.get("regimes")), None)
        if result:
            panels.append((name, result["regimes"]))
        if len(panels) == MAX_PANELS:
            break
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    for ax, (name, regimes) in zip(axes, panels):
        for i, (regime, r) in enumerate(regimes.items()):
            colour = f"C{i % 10}"
            for model, style in (("gn", "-"), ("symbolic", "--")):
                error = np.asarray(r["position_error"][model], dtype=float)
                label = f"{regime} ({r['particles']} particles, x{r['scale']:g})" if model == "gn" else None
                ax.plot(np.arange(1, len(error)), error[1:], style, color=colour, lw=1.2, label=label)
        ax.set_yscale("log")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("steps from the same initial states", fontsize=8)
        ax.set_ylabel("mean position error", fontsize=8)
        ax.legend(fontsize=6, title="GN solid, symbolic dashed", title_fontsize=6)
    fig.tight_layout()
    return _save(fig, out / "ood_position_error.png")


def r2_vs_prune(sweep: Sweep, out: Path) -> Path | None:
    """R² of messages against force by pruning factor k (mean over trials; 'none' drawn at the right)."""
    finished = [t for t in sweep.trials if t.finished and "messages/r2_force" in t.metrics]
    ks = sorted({t.prune_k for t in finished}, key=lambda k: (k is None, k or 0.0))
    if len(ks) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    lines: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for t in finished:
        lines[f"{t.system}-{t.dim}d {t.model}"][t.prune_k].append(t.metrics["messages/r2_force"])
    for i, (name, by_k) in enumerate(sorted(lines.items())):
        xs = [j for j, k in enumerate(ks) if by_k.get(k)]
        ax.plot(xs, [np.mean(by_k[ks[j]]) for j in xs], marker="o", label=name, color=f"C{i % 10}")
    ax.set_xticks(range(len(ks)), ["none" if k is None else f"{k:g}" for k in ks])
    ax.set(xlabel="pruning factor k (IQR whiskers)", ylabel="R² of messages vs force", title="R² against pruning")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "r2_vs_prune.png")


def optuna_shapes(sweep: Sweep, out: Path, metric: str) -> Path | None:
    """The search objective against each schedule-shape parameter, one point per finished trial."""
    finished = [t for t in sweep.trials if t.finished and metric in t.metrics]
    names = sorted({k for t in finished for k in t.params if k.startswith("schedule_shape.")})
    if not names or not finished:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        xs = [float(t.params[name]) for t in finished if name in t.params]
        ys = [t.metrics[metric] for t in finished if name in t.params]
        ax.scatter(xs, ys, s=14, label="one trial")
        ax.set(xlabel=name.split(".", 1)[1], ylabel=metric)
        ax.legend(fontsize=7)
    fig.suptitle("objective against each schedule-shape parameter")
    fig.tight_layout()
    return _save(fig, out / "optuna_shapes.png")


def halo_messages(sweep: Sweep, out: Path, sample_of: Callable[[Trial], dict | None]) -> Path | None:
    """For the first finished halo trial of each group: the messages' leading projection against the
    true edge term m2 / (r + 1) with its least-squares line (synthetic catalogs), or against the
    distance r coloured by the sender's mass (real catalogs), from halo_messages.npz."""
    from raysym.messages import r2_linear

    panels = []
    for name, trials in list(_groups([t for t in sweep.trials if t.finished]).items())[:MAX_PANELS]:
        sample = sample_of(trials[0])
        if sample is not None:
            panels.append((name, sample))
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    for ax, (name, s) in zip(axes, panels):
        y = s["projection"].astype(np.float64)
        if "true_edge" in s:
            r2, fitted = r2_linear(y, s["true_edge"][:, None].astype(np.float64))
            order = np.argsort(s["true_edge"])
            ax.scatter(s["true_edge"], y, s=2, alpha=0.3, label="sampled edges")
            ax.plot(s["true_edge"][order], fitted[order], color="k", lw=0.8, label="least-squares line")
            ax.legend(fontsize=6, markerscale=4, loc="upper left")
            ax.set_xlabel("true edge term m2 / (r + 1)", fontsize=8)
            ax.set_title(f"{name}\nR² {r2:.3f}", fontsize=8)
        else:
            points = ax.scatter(s["edge_x"][:, 3], y, c=s["edge_x"][:, 5], s=2, alpha=0.5)
            fig.colorbar(points, ax=ax, label="m2")
            ax.set_xlabel("distance r", fontsize=8)
            ax.set_title(name, fontsize=8)
        ax.set_ylabel("message . leading direction", fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "halo_messages.png")
