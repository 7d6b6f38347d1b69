"""Have the messages become forces? Sparsity and R² of a trained GN's messages on test graphs.

Definitions (also in docs/architecture.md):
* In range: a test graph lies inside the training set's pruning bounds when every one of its
  acceleration components does (the same test that pruning applies to training graphs); every test
  graph is in range when the trial trained without pruning. Test graphs outside the bounds hold close
  encounters whose forces the network never saw: on them it extrapolates.
* Per-component standard deviation of the messages over the in-range test edges; the top ``dim``
  components by std (KL model: by the mean per-component KL term, since a sampled channel with
  prior-like noise can have a large spread without carrying anything).
* Sparsity holds when every top component's std is at least 100x every other component's std
  (vacuously true when messages have exactly dim components: bottleneck, newtonian; the trial reports it
  only for messages with a sparsity prior, L1 or KL). Two numbers follow it: the sparsity ratio (the
  smallest top std over the largest other std; 100 is sparse) and the sparsity share (the top components'
  part of the summed stds of all components: 1 when the others are silent, dim / size for evenly spread
  messages). The ratio can sit near 1 while a handful of components carry everything; the share shows the
  thinning.
* R² per top component of a least-squares fit of the component on [F_x, F_y, (F_z), 1], R² = 1 -
  SS_res / SS_tot, averaged over the top components; against the true pairwise force (``r2_force``)
  and against the force divided by the receiver's mass (``r2_accel``, the pairwise acceleration, which
  messages often encode). Three variants, named apart:
  - ``messages/r2_force``, ``messages/r2_accel``: in distribution, on the edges of in-range test graphs
    (the headline);
  - ``..._all``: on every test edge (extrapolation included; for 1/r-type laws close encounters
    dominate it);
  - ``..._robust``: on every test edge, by least trimmed squares (:func:`r2_trimmed`): the fit itself
    ignores the worst 10% of edges, and R² is scored on the 90% it keeps. (A refit after an ordinary
    fit is not robust: when outliers dominate the first fit, its residuals point at the wrong edges.)
* A diagnostic, never a verdict: the paper's models see the receiver's mass on both sides of the sum,
  so nothing stops them from sending the force scaled by a function of it (the node model undoes any
  receiver-dependent scale). ``messages/mass_exponent`` is the alpha for which the messages are best a
  linear transformation of F * m_receiver^-alpha (0: the force, 1: force / mass), in distribution, and
  ``messages/r2_mass_scaled`` that fit's R². A high R² there with alpha between 0 and 1 says the network
  learned the force up to a power of the receiver's mass, a solution the R² against the force misses.
  ``messages/r2_receiver_map`` goes one step further, for the same reason: the R² of each top component as
  a linear function of [F, q_receiver F] m_receiver^-alpha (the best alpha on the same grid), that is of the
  force through a linear map that depends on the receiver's charge and mass. The node model sees both and
  can undo any such map, so nothing in training prefers the constant map the R² against the force asks for;
  a high value here with a low R² against the force says the network learned the force in that gauge.

Edge convention: dx = x_sender - x_receiver; the force is the force on the receiver (raysym.physics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from raysym import physics, regularizers
from raysym.graph import complete_edges, node_features
from raysym.model import GraphNetwork
from raysym.simulate import Snapshots

SPARSITY_RATIO = 100.0
ROBUST_FRACTION = 0.9


@dataclass
class EdgeData:
    """Per-edge quantities of a set of test graphs, one row per edge (E edges).

    messages: (E, message size) at evaluation (KL: the means); logvar: (E, 100) or None.
    dx: (E, dim) x_sender - x_receiver; r: (E,); q_recv, q_send, m_recv, m_send: (E,);
    force: (E, dim) true force on the receiver; in_range: (E,) bool, the edge's graph lies inside the
    training set's pruning bounds (all True without bounds).
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
    in_range: np.ndarray | None = None  # (E,) bool; None: every edge
    edges_per_graph: int = 1  # n (n - 1): turns edge counts into graph counts


def graphs_in_range(graphs: Snapshots, bounds: tuple[float, float] | None) -> np.ndarray:
    """(G,) bool: every acceleration component of the graph lies in [lo, hi] (pruning's test); all True
    when ``bounds`` is None (the trial trained without pruning)."""
    if bounds is None:
        return np.ones(graphs.pos.shape[0], dtype=bool)
    acc = graphs.acc.reshape(graphs.acc.shape[0], -1)
    return (acc.min(1) >= bounds[0]) & (acc.max(1) <= bounds[1])


@torch.no_grad()
def edge_data(
    model: GraphNetwork, graphs: Snapshots, system: str, batch: int = 4096, bounds: tuple[float, float] | None = None
) -> EdgeData:
    """Evaluate the edge model on every edge of ``graphs`` and pair it with the true forces; ``bounds``
    (the trial's pruning bounds) mark the edges of in-range graphs."""
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
            pair_forces.append(
                model.pair_forces(x[i : i + batch].to(device)).reshape(-1, x.shape[-1] // 2 - 1).cpu().numpy()
            )
    pos = graphs.pos.astype(np.float64)
    dx = (pos[:, send] - pos[:, recv]).reshape(-1, pos.shape[-1])
    q, m = graphs.charge.astype(np.float64), graphs.mass.astype(np.float64)
    q_recv, q_send = q[:, recv].ravel(), q[:, send].ravel()
    m_recv, m_send = m[:, recv].ravel(), m[:, send].ravel()
    return EdgeData(
        messages=np.concatenate(messages).astype(np.float64),
        logvar=np.concatenate(logvars).astype(np.float64) if logvars else None,
        dx=dx,
        r=np.sqrt((dx**2).sum(-1)),
        q_recv=q_recv,
        q_send=q_send,
        m_recv=m_recv,
        m_send=m_send,
        force=physics.pair_force(system, dx, q_recv, q_send, m_recv, m_send),
        potential=physics.get_law(system).potential(
            np.sqrt((dx**2).sum(-1)) + physics.SOFTENING, q_recv, q_send, m_recv, m_send
        ),
        pair_force=np.concatenate(pair_forces).astype(np.float64) if pair_forces else None,
        in_range=np.repeat(graphs_in_range(graphs, bounds), len(recv)),
        edges_per_graph=len(recv),
    )


def _design(features: np.ndarray) -> np.ndarray:
    return np.column_stack([features, np.ones(len(features))])


def _r2(target: np.ndarray, fitted: np.ndarray) -> float:
    ss_tot = np.sum((target - target.mean()) ** 2)
    return float(1.0 - np.sum((target - fitted) ** 2) / ss_tot) if ss_tot > 0 else 0.0


def r2_linear(target: np.ndarray, features: np.ndarray) -> tuple[float, np.ndarray]:
    """R² of the least-squares fit target ~ [features, 1]; returns (R², fitted values). NaN when there
    are fewer rows than coefficients."""
    return r2_linear_within(target, features, np.ones(len(target), dtype=bool))


def r2_linear_within(target: np.ndarray, features: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
    """As ``r2_linear``, but fitted and scored on ``rows`` only ((E,) bool, e.g. the in-distribution
    edges); the fitted values are returned for every row, so the others show how the in-range fit
    extrapolates. NaN when too few rows."""
    design = _design(features)
    if int(rows.sum()) < design.shape[1] + 1:
        return float("nan"), np.full(len(target), np.nan)
    coef, *_ = np.linalg.lstsq(design[rows], target[rows], rcond=None)
    fitted = design @ coef
    return _r2(target[rows], fitted[rows]), fitted


def r2_prediction(truth: np.ndarray, predicted: np.ndarray, keep: float = 1.0) -> float:
    """R² of ``predicted`` as a prediction of ``truth`` (both (E, dim)), no fitting: 1 - sum of squared
    residuals / sum of squared deviations from the mean, pooled over components. ``keep`` < 1 scores only
    that fraction of rows with the smallest residuals (the robust variant). NaN without rows."""
    if len(truth) < 2:
        return float("nan")
    residual = ((truth - predicted) ** 2).sum(-1)
    rows = np.argsort(residual)[: max(2, int(keep * len(truth)))]
    ss_tot = ((truth[rows] - truth[rows].mean(0)) ** 2).sum()
    return float(1.0 - residual[rows].sum() / ss_tot) if ss_tot > 0 else 0.0


def r2_trimmed(
    target: np.ndarray,
    features: np.ndarray,
    keep: float = ROBUST_FRACTION,
    starts: int = 20,
    seed: int = 0,
    max_steps: int = 50,
) -> float:
    """R² of the least trimmed squares fit of target ~ [features, 1]: the coefficients that minimise the
    sum of the ``keep`` fraction of smallest squared residuals, scored on the rows they keep.

    FAST-LTS (Rousseeuw and Van Driessen 2006): from the ordinary fit and from ``starts`` fits through
    random minimal sets of rows (a minimal set of clean rows gives a clean start even when outliers steer
    the ordinary fit), concentration steps (refit on the h rows with the smallest residuals, which never
    raises the trimmed objective) until the kept rows stop changing; the start with the lowest objective
    wins. Seeded, so the same data give the same number. target: (E,); features: (E, k)."""
    design = _design(features)
    n, p = design.shape
    h = max(p + 1, int(keep * n))
    if n < p + 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    inits = [np.arange(n)] + [rng.choice(n, size=p, replace=False) for _ in range(starts)]
    best_obj, best_rows = np.inf, None
    for rows in inits:
        coef, *_ = np.linalg.lstsq(design[rows], target[rows], rcond=None)
        kept = None
        for _ in range(max_steps):
            residual = (target - design @ coef) ** 2
            new = np.sort(np.argpartition(residual, h - 1)[:h])
            if kept is not None and np.array_equal(new, kept):
                break
            kept = new
            coef, *_ = np.linalg.lstsq(design[kept], target[kept], rcond=None)
        objective = float(np.sum((target[kept] - design[kept] @ coef) ** 2))
        if objective < best_obj:
            best_obj, best_rows, best_coef = objective, kept, coef
    return _r2(target[best_rows], design[best_rows] @ best_coef)


def r2_refit(target: np.ndarray, features: np.ndarray, keep: float = ROBUST_FRACTION) -> float:
    """The scheme raysym used before least trimmed squares, kept to show why it was replaced (a test
    plants outliers that defeat it): an ordinary fit, then a refit on the ``keep`` fraction of rows with
    the smallest residuals of that first fit, scored on them."""
    _, fitted = r2_linear(target, features)
    rows = np.argsort(np.abs(target - fitted))[: max(2, int(keep * len(target)))]
    return r2_linear(target[rows], features[rows])[0]


@dataclass
class MessageAnalysis:
    """The message analysis of one trial; see the module docstring for each R² variant."""

    stds: np.ndarray  # (message size,) per-component standard deviation over in-range edges
    top: list[int]  # indices of the top-dim components
    sparse: bool
    sparsity_ratio: float  # min top std / max other std over in-range edges (inf when there are no others)
    sparsity_ratio_all: float  # the same over every test edge
    sparsity_share: float  # the top components' part of the summed stds, in distribution
    r2_force: float  # in distribution
    r2_accel: float
    r2_force_all: float  # every test edge
    r2_accel_all: float
    r2_force_robust: float  # least trimmed squares on every test edge
    r2_accel_robust: float
    in_range_graphs: int
    graphs: int
    mass_exponent: float = float("nan")  # diagnostic: messages ~ F m_receiver^-alpha (module docstring)
    r2_mass_scaled: float = float("nan")
    r2_receiver_map: float = float("nan")  # diagnostic: messages ~ (A + B q_r) F m_r^-alpha (module docstring)
    per_component: dict[str, list[float]] = field(default_factory=dict)
    r2_potential: float | None = None  # energy models (hgn): R² of the pair energy on [U(r'), 1], in range
    r2_pair_force: float | None = None  # energy models: R² of the implied pair force vs the true one, in range
    r2_pair_force_all: float | None = None
    r2_pair_force_robust: float | None = None

    def metrics(self) -> dict:
        """Flat, namespaced metrics (the names MLflow and metrics.json use)."""
        finite = lambda v: float(v) if np.isfinite(v) else None  # JSON null for "does not apply"
        extra = (
            {}
            if self.r2_potential is None
            else {
                "messages/r2_potential": self.r2_potential,
                "messages/r2_pair_force": self.r2_pair_force,
                "messages/r2_pair_force_all": self.r2_pair_force_all,
                "messages/r2_pair_force_robust": self.r2_pair_force_robust,
            }
        )
        return extra | {
            "messages/r2_force": self.r2_force,
            "messages/r2_accel": self.r2_accel,
            "messages/r2_force_all": self.r2_force_all,
            "messages/r2_accel_all": self.r2_accel_all,
            "messages/r2_force_robust": self.r2_force_robust,
            "messages/r2_accel_robust": self.r2_accel_robust,
            # the better of the two in-distribution targets: what the L1 schedule search maximises
            "messages/r2_best": max(self.r2_force, self.r2_accel),
            "messages/mass_exponent": finite(self.mass_exponent),
            "messages/r2_mass_scaled": finite(self.r2_mass_scaled),
            "messages/r2_receiver_map": finite(self.r2_receiver_map),
            "messages/in_range_fraction": self.in_range_graphs / max(self.graphs, 1),
            "messages/sparse": bool(self.sparse),
            # None (JSON null) when there are no other components (bottleneck, newtonian)
            "messages/sparsity_ratio": finite(self.sparsity_ratio),
            "messages/sparsity_ratio_all": finite(self.sparsity_ratio_all),
            "messages/sparsity_share": finite(self.sparsity_share),
            "messages/top_std": [float(self.stds[k]) for k in self.top],
            "messages/top_components": [int(k) for k in self.top],
            # for box plots across seeds in reports; largest first
            "messages/stds_top15": [float(v) for v in np.sort(self.stds)[::-1][:15]],
        }


MASS_EXPONENTS = np.round(np.arange(-0.5, 1.5001, 0.05), 2) + 0.0  # + 0.0: no -0.0 in the grid


def mass_exponent(messages_top: np.ndarray, force: np.ndarray, m_recv: np.ndarray) -> tuple[float, float]:
    """(alpha, R²): the exponent on a 0.05 grid over [-0.5, 1.5] for which the top message components
    (E, k) are best, on average, a linear transformation of force * m_recv^-alpha (E, dim); NaN without edges."""
    if len(force) < force.shape[1] + 2:
        return float("nan"), float("nan")
    scores = [
        np.mean([r2_linear(messages_top[:, k], force * m_recv[:, None] ** -a)[0] for k in range(messages_top.shape[1])])
        for a in MASS_EXPONENTS
    ]
    best = int(np.argmax(scores))
    return float(MASS_EXPONENTS[best]), float(scores[best])


def receiver_map(messages_top: np.ndarray, force: np.ndarray, m_recv: np.ndarray, q_recv: np.ndarray) -> float:
    """The best R² (mean over the top components (E, k)), over the exponents of :data:`MASS_EXPONENTS`, of a
    least-squares fit on [F, q_recv F] m_recv^-alpha ((E, 2 dim), and a constant): the force through a linear
    map that depends on the receiver's charge and mass (module docstring); NaN without enough edges."""
    if len(force) < 2 * force.shape[1] + 2:
        return float("nan")
    mixed = np.hstack([force, q_recv[:, None] * force])
    return float(
        max(
            np.mean(
                [r2_linear(messages_top[:, k], mixed * m_recv[:, None] ** -a)[0] for k in range(messages_top.shape[1])]
            )
            for a in MASS_EXPONENTS
        )
    )


def sparsity_ratio(stds: np.ndarray, top: list[int]) -> float:
    """The smallest std among the ``top`` components over the largest among the others (inf without others)."""
    others = np.delete(stds, top)
    return float(stds[top].min() / others.max()) if len(others) and others.max() > 0 else float("inf")


def sparsity_share(stds: np.ndarray, top: list[int]) -> float:
    """The ``top`` components' part of the summed stds of every component, in [0, 1]."""
    total = float(np.sum(stds))
    return float(np.sum(stds[top]) / total) if total > 0 else float("nan")


SPARSITY_TARGET_R2 = 0.99
OBJECTIVE_PENALTY = 10.0


def sparsity_objective(share: float, r2_best: float) -> float:
    """The schedule-shape search's objective (``val/sparsity_objective``): the sparsity share, less 10 times
    the shortfall of the R² below 0.99. A shape that thins the messages by giving up the law (R² 0.98
    costs 0.1 of share) loses to one that keeps it; above 0.99 only the share counts."""
    return float(share - OBJECTIVE_PENALTY * max(0.0, SPARSITY_TARGET_R2 - r2_best))


def analyze(edges: EdgeData, dim: int, kl_prior: str = "gaussian") -> MessageAnalysis:
    """Sparsity and the three R² variants (module docstring) of the top-dim message components."""
    inside = edges.in_range if edges.in_range is not None else np.ones(len(edges.r), dtype=bool)
    counts = dict(
        in_range_graphs=int(inside.sum()) // edges.edges_per_graph, graphs=len(inside) // edges.edges_per_graph
    )
    stds_all = edges.messages.std(axis=0)
    stds = edges.messages[inside].std(axis=0) if inside.any() else np.full_like(stds_all, np.nan)
    nan = float("nan")
    if edges.messages.shape[1] == 1 and dim > 1:
        # A scalar per edge is a pair energy (the Hamiltonian GN): compare it with the true potential (which
        # is blind to the offsets training leaves free) and its implied pair force with the true one (which
        # is not); the message R² do not apply.
        implied = edges.pair_force
        r2u = (
            r2_linear(edges.messages[inside, 0], edges.potential[inside, None])[0]
            if edges.potential is not None
            else nan
        )
        pf = dict(r2_pair_force=nan, r2_pair_force_all=nan, r2_pair_force_robust=nan)
        if implied is not None:
            pf = dict(
                r2_pair_force=r2_prediction(edges.force[inside], implied[inside]),
                r2_pair_force_all=r2_prediction(edges.force, implied),
                r2_pair_force_robust=r2_prediction(edges.force, implied, ROBUST_FRACTION),
            )
        return MessageAnalysis(
            stds=stds,
            top=[0],
            sparse=True,
            sparsity_ratio=float("inf"),
            sparsity_ratio_all=float("inf"),
            sparsity_share=1.0,
            r2_force=nan,
            r2_accel=nan,
            r2_force_all=nan,
            r2_accel_all=nan,
            r2_force_robust=nan,
            r2_accel_robust=nan,
            r2_potential=float(r2u),
            **pf,
            **counts,
        )
    if edges.logvar is not None:
        mu = torch.from_numpy(edges.messages[inside] if inside.any() else edges.messages)
        logvar = torch.from_numpy(edges.logvar[inside] if inside.any() else edges.logvar)
        kl = regularizers.kl_per_component(mu, logvar, kl_prior).mean(0).numpy()
        top = list(np.argsort(-kl)[:dim])
    else:
        top = list(np.argsort(-np.nan_to_num(stds, nan=-1.0))[:dim])
    ratio = sparsity_ratio(stds, top)
    accel = edges.force / edges.m_recv[:, None]
    per: dict[str, list[float]] = {
        key: []
        for key in ("r2_force", "r2_accel", "r2_force_all", "r2_accel_all", "r2_force_robust", "r2_accel_robust")
    }
    for k in top:
        y = edges.messages[:, k]
        for name, target in (("force", edges.force), ("accel", accel)):
            per[f"r2_{name}"].append(r2_linear(y[inside], target[inside])[0])
            per[f"r2_{name}_all"].append(r2_linear(y, target)[0])
            per[f"r2_{name}_robust"].append(r2_trimmed(y, target))
    mean = {key: float(np.mean(v)) for key, v in per.items()}
    alpha, r2_scaled = mass_exponent(edges.messages[inside][:, top], edges.force[inside], edges.m_recv[inside])
    r2_map = receiver_map(
        edges.messages[inside][:, top], edges.force[inside], edges.m_recv[inside], edges.q_recv[inside]
    )
    return MessageAnalysis(
        stds=stds,
        top=[int(k) for k in top],
        sparse=bool(ratio >= SPARSITY_RATIO),
        sparsity_ratio=ratio,
        sparsity_share=sparsity_share(stds, top),
        mass_exponent=alpha,
        r2_mass_scaled=r2_scaled,
        r2_receiver_map=r2_map,
        sparsity_ratio_all=sparsity_ratio(stds_all, top),
        per_component={k: [float(x) for x in v] for k, v in per.items()},
        **mean,
        **counts,
    )


def epoch_metrics(model, graphs: Snapshots, system: str, dim: int) -> dict[str, float]:
    """The per-epoch R² of the messages on validation ``graphs`` (in distribution by construction):
    ``val/r2_force`` and ``val/r2_accel`` (the top-dim components by std, ordinary least squares, mean over
    them) and ``val/r2_best`` (the better); energy models: ``val/r2_pair_force`` (= ``val/r2_best``).
    One forward pass: cheap enough for every epoch."""
    edges = edge_data(model, graphs, system)
    if not np.all(np.isfinite(edges.messages)):  # a diverging model: train() stops it on its validation MAE
        return {}
    if edges.messages.shape[1] == 1 and dim > 1:
        r2 = r2_prediction(edges.force, edges.pair_force)
        return {"val/r2_pair_force": r2, "val/r2_best": r2}
    stds = edges.messages.std(axis=0)
    top = list(np.argsort(-stds)[:dim])
    accel = edges.force / edges.m_recv[:, None]
    out = {
        "val/r2_force": float(np.mean([r2_linear(edges.messages[:, k], edges.force)[0] for k in top])),
        "val/r2_accel": float(np.mean([r2_linear(edges.messages[:, k], accel)[0] for k in top])),
    }
    out["val/r2_best"] = max(out["val/r2_force"], out["val/r2_accel"])
    return out
