"""The law verdict: are a trial's distilled edge formulas a linear transformation of the true force (or of the
force divided by the receiver's mass)?

Given the formulas' values on unseen edges, (E, k), and a target, (E, dim), each formula is fitted by least
squares on [target, 1] over the in-distribution edges: value_k ~ a_k . target + b_k. The law is recovered
against that target when

1. every formula's R² of that fit is at least :data:`RECOVERED_R2` (0.99): the minimum over the formulas
   decides, not their mean, so that one exact formula cannot carry a poor one; and
2. the fitted map A, whose rows are the a_k, spans every direction of the force: full rank dim and a
   condition number of at most :data:`MAX_CONDITION`, computed after scaling each row to unit length (a
   formula's overall size is free: the node model absorbs it, so only directions count). Two copies of the
   formula for the x component pass step 1, each being a linear function of the force, and fail here: A has
   two equal rows. A rotation of the force has condition number 1. For two rows at an angle theta the number
   is cot(theta / 2): 10 admits directions at least 11.4 degrees apart.

The same fits on every edge (``_all``: extrapolation included) are reported beside it and decide nothing.
Pure numpy (no torch): the distillation (raysym.distill_jobs) evaluates the formulas and calls :func:`judge`.
"""

from __future__ import annotations

import numpy as np

RECOVERED_R2 = 0.99
MAX_CONDITION = 10.0
CONDITION_CAP = 1e9  # reported for maps whose rows span fewer than dim directions (a finite number MLflow keeps)


def linear_map(values: np.ndarray, target: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """(A, R² per formula): each column of ``values`` (E, k) fitted on [target (E, dim), 1] over ``rows`` ((E,)
    bool); A (k, dim) holds the fitted coefficients of the target, without the constant. A formula that is not
    finite on some edge of ``rows`` scores R² 0 and a zero row (no law blows up where the network was trained)."""
    k, dim = values.shape[1], target.shape[1]
    a = np.zeros((k, dim))
    r2 = []
    design = np.column_stack([target[rows], np.ones(int(rows.sum()))])
    for j in range(k):
        v = values[rows, j]
        if not np.all(np.isfinite(v)) or len(v) < dim + 2:
            r2.append(0.0)
            continue
        coef, *_ = np.linalg.lstsq(design, v, rcond=None)
        a[j] = coef[:dim]
        ss_tot = float(np.sum((v - v.mean()) ** 2))
        r2.append(1.0 - float(np.sum((v - design @ coef) ** 2)) / ss_tot if ss_tot > 0 else 0.0)
    return a, r2


def condition(a: np.ndarray) -> float:
    """The condition number of the fitted map (k, dim) with rows scaled to unit length: the largest over the
    dim-th largest singular value, at most :data:`CONDITION_CAP`, which it is when a row is zero or the rows
    span fewer than dim directions."""
    k, dim = a.shape
    norms = np.linalg.norm(a, axis=1)
    if k < dim or not np.all(norms > 0) or not np.all(np.isfinite(a)):
        return CONDITION_CAP
    s = np.linalg.svd(a / norms[:, None], compute_uv=False)
    return float(min(s[0] / s[dim - 1], CONDITION_CAP)) if s[dim - 1] > 0 else CONDITION_CAP


def judge(values: np.ndarray, targets: dict[str, np.ndarray], inside: np.ndarray) -> dict:
    """The verdict for the formulas' ``values`` (E, k) against each target (name -> (E, dim)), decided on the
    ``inside`` edges ((E,) bool, in distribution). Returns, per target name: ``r2_{name}`` (mean R² over the
    formulas), ``r2_{name}_min``, ``condition_{name}`` (in distribution), ``r2_{name}_all`` and
    ``r2_{name}_all_min`` (every edge); and ``recovered`` with ``which`` (the target recovered, the first of
    ``targets`` on a tie; "none")."""
    out: dict = {}
    passed = []
    every = np.ones(len(values), dtype=bool)
    for name, target in targets.items():
        a, r2 = linear_map(values, target, inside)
        _, r2_all = linear_map(values, target, every)
        cond = condition(a)
        out.update(
            {
                f"r2_{name}": float(np.mean(r2)),
                f"r2_{name}_min": float(np.min(r2)),
                f"condition_{name}": cond,
                f"r2_{name}_all": float(np.mean(r2_all)),
                f"r2_{name}_all_min": float(np.min(r2_all)),
            }
        )
        if min(r2) >= RECOVERED_R2 and cond <= MAX_CONDITION:
            passed.append((min(r2), -len(passed), name))
    out["recovered"] = bool(passed)
    out["which"] = max(passed)[2] if passed else "none"
    return out
