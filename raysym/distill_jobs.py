"""Distilling a trained trial: edge and node jobs, the composed symbolic model, the law verdict, and the
pool of Ray actors that runs the jobs of many trials in parallel.

For a trained GN and its test graphs (split in two by simulation, a seeded permutation: fitting graphs and
unseen scoring graphs; with ``fit_range: train`` only the fitting graphs within the trial's pruning bounds are
used, the range the GN was trained on, while every scoring graph counts):

* edge jobs, one per top message component k: inputs on fitting edges dx, dy, (dz), r, m1, m2, q1, q2
  (1 = the receiver, 2 = the sender, dx = x_sender - x_receiver, r = |dx|) -> message component k;
* node jobs, one per acceleration component: inputs s1..s_dim (the summed top message components at a
  node, as the GN computes them) and the node's features x, y, (z), vx, vy, (vz), q, m -> the GN's
  predicted acceleration component (the node model is distilled, as in the paper);
* the composed symbolic model: edge formulas on every edge, summed over senders, node formulas; its
  MAE on the scoring graphs against the true accelerations, next to the GN's MAE on the same graphs;
* the verdict (raysym.verdict): the edge formulas evaluated on the scoring edges of graphs inside the
  trial's pruning bounds (in distribution: where the GN was trained), each fitted by least squares to
  [F_x, F_y, (F_z), 1] and to [F / m_receiver, 1]; the law is recovered against either when every formula's
  R² reaches 0.99 (the minimum decides) and the fitted map spans all dim directions (full rank, condition
  number at most 10), and the verdict says which. The same R² on every scoring edge (``..._all``,
  extrapolation included) is reported beside it and decides nothing.

Fitting and scoring graphs come from different test simulations (half of them each, by a seeded
permutation): snapshots of one simulation a few steps apart are nearly the same graph, so a split by graph
would score formulas on near-copies of the edges they were fitted on.

The Newtonian GN (``model: newtonian``) has no node MLP to distil: its accelerations are the summed
messages (through its linear readout when messages have more than dim components) over the receiver's
mass, so its composed model is the edge formulas summed and divided by m, plus, when the model has a
non-pairwise term g(v, q, m), node jobs that distil g from vx, vy, (vz), q, m.

The Hamiltonian GN (``model: hgn``) has one edge job, its pair energy, judged by the pair force it implies
against the true one (:func:`energy_verdict`); its composed model is the formula's H, differentiated
(:func:`energy_accelerations`).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

from raysym import distill, physics
from raysym.config import DistillConfig
from raysym.distill_pool import RECOVERED_R2, DistillPool, run_job, start_pool, write_outputs
from raysym.errors import UserError
from raysym.messages import r2_linear
from raysym.verdict import judge


def edge_names(dim: int) -> list[str]:
    return ["dx", "dy", "dz"][:dim] + ["r", "m1", "m2", "q1", "q2"]


def node_names(dim: int) -> list[str]:
    return [f"s{k + 1}" for k in range(dim)] + ["x", "y", "z"][:dim] + ["vx", "vy", "vz"][:dim] + ["q", "m"]


def node_term_names(dim: int) -> list[str]:
    """The inputs of the Newtonian GN's non-pairwise term g(v, q, m)."""
    return ["vx", "vy", "vz"][:dim] + ["q", "m"]


@dataclasses.dataclass
class TrialData:
    """What the jobs of one trial need, as plain arrays (so it travels to Ray actors cheaply)."""

    dim: int
    top: list[int]
    edge_X: np.ndarray  # (E, len(edge_names)) fitting edges
    messages: np.ndarray  # (E, dim) top components on those edges
    node_X: np.ndarray  # (N, len(node_names)) fitting nodes
    node_y: np.ndarray  # (N, dim) the GN's predicted accelerations there (newtonian: its term g)
    pair_force: np.ndarray | None = None  # (E, dim) energy models: the force the GN's pair energies imply
    node_names: list[str] | None = None  # the node jobs' inputs; None: no node jobs


def _edge_matrix(edges) -> np.ndarray:
    """(E, dim + 5) columns in edge_names order."""
    return np.column_stack([edges.dx, edges.r, edges.m_recv, edges.m_send, edges.q_recv, edges.q_send])


def prepare(
    model, graphs, system: str, top: list[int], samples: int, seed: int, fit_bounds: tuple[float, float] | None = None
):
    """(TrialData on fitting graphs, scoring graphs) for a trained model; top: the message components.
    ``fit_bounds`` (lo, hi): fit only on graphs whose acceleration components all lie within them (the
    trial's pruning bounds, where the GN was trained; outside it extrapolates). Scoring graphs are kept
    whole either way."""
    import torch

    from raysym.graph import node_features
    from raysym.messages import edge_data
    from raysym.simulate import Snapshots

    rng = np.random.default_rng(seed)
    sims = np.unique(graphs.sim)
    if len(sims) < 2 or len(graphs) < 4:
        raise UserError(
            f"Distillation needs test graphs of at least 2 simulations (fitting and scoring halves are split by "
            f"simulation); this trial has {len(graphs)} graph(s) of {len(sims)}. Simulate more test data "
            "(--test-sims)."
        )
    fit_sims = sims[rng.permutation(len(sims))[: len(sims) // 2]]
    in_fit = np.isin(graphs.sim, fit_sims)
    pick = lambda idx: Snapshots(**{f: getattr(graphs, f)[np.sort(idx)] for f in Snapshots.__dataclass_fields__})
    fit_rows, score_rows = np.flatnonzero(in_fit), np.flatnonzero(~in_fit)
    if fit_bounds is not None:
        acc = graphs.acc[fit_rows].reshape(len(fit_rows), -1)
        inside = fit_rows[(acc.min(1) >= fit_bounds[0]) & (acc.max(1) <= fit_bounds[1])]
        fit_rows = inside if len(inside) >= 2 else fit_rows  # too few inside: fit on all rather than fail
    fit_graphs, score_graphs = pick(fit_rows), pick(score_rows)
    dim = graphs.pos.shape[-1]
    edges = edge_data(model, fit_graphs, system)
    edge_rows = rng.choice(len(edges.r), size=min(samples, len(edges.r)), replace=False)
    edge_X = _edge_matrix(edges)[edge_rows]
    messages = edges.messages[edge_rows][:, top]
    x, _ = node_features(fit_graphs)
    kind = getattr(model, "model", "")
    with torch.no_grad():
        if kind == "newtonian":  # node jobs: its non-pairwise term g(v, q, m), if it has one
            node_X = x[..., dim:].reshape(-1, dim + 2).numpy().astype(np.float64)
            term = model.node_term
            node_y = (
                term(x[..., dim:].to(next(model.parameters()).device)).cpu().numpy().reshape(-1, dim)
                if term is not None
                else None
            )
            names = node_term_names(dim) if term is not None else None
        else:  # node jobs: the GN's own summed messages and predictions at each node of the fitting graphs
            out = model(x.to(next(model.parameters()).device))
            n = x.shape[1]
            summed = out.messages.reshape(len(x), n, n - 1, -1).sum(2)[..., top].cpu().numpy()
            node_X = (
                np.concatenate([summed, x.numpy()], axis=-1).reshape(len(x) * n, -1).astype(np.float64)
            )  # (nodes, len(top) + features)
            node_y = out.acc.cpu().numpy().reshape(-1, dim)
            names = None if kind == "hgn" else node_names(dim)  # hgn: accelerations come from differentiating H
    node_rows = rng.choice(len(node_X), size=min(samples, len(node_X)), replace=False)
    node_y = np.zeros((len(node_X), dim)) if node_y is None else node_y.astype(np.float64)
    pair_force = edges.pair_force[edge_rows] if edges.pair_force is not None else None
    data = TrialData(
        dim,
        list(top),
        edge_X.astype(np.float64),
        messages.astype(np.float64),
        node_X[node_rows],
        node_y[node_rows],
        pair_force,
        names,
    )
    return data, score_graphs


def jobs(data: TrialData, cfg: DistillConfig, workdir: Path) -> list[dict[str, Any]]:
    """One job per top message component (edge) and, where the model has a node function to distil
    (``data.node_names``), one per acceleration component (node). The Hamiltonian GN has one edge job,
    its pair energy, and no node jobs (its accelerations come from differentiating H); the Newtonian GN
    has node jobs only for its non-pairwise term."""
    out = []
    for k, comp in enumerate(data.top):
        out.append(
            dict(
                kind="edge",
                index=k,
                component=comp,
                X=data.edge_X,
                y=data.messages[:, k],
                names=edge_names(data.dim),
                cfg=dataclasses.asdict(cfg),
                workdir=str(workdir / f"edge{k}"),
            )
        )
    if data.node_names is None:
        return out
    for d in range(data.dim):
        out.append(
            dict(
                kind="node",
                index=d,
                component=d,
                X=data.node_X,
                y=data.node_y[:, d],
                names=list(data.node_names),
                cfg=dataclasses.asdict(cfg),
                workdir=str(workdir / f"node{d}"),
            )
        )
    return out


# --------------------------------------------------------------------------------------------------
# Composed model and verdict
# --------------------------------------------------------------------------------------------------


def graph_edges(graphs, system: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every edge of ``graphs`` (receiver-major, as the GN orders them): (edge inputs (G*n*(n-1), dim + 5)
    in edge_names order, true force on the receiver (same rows, dim), receiver mass (same rows))."""
    from raysym.graph import complete_edges

    n, dim = graphs.pos.shape[1], graphs.pos.shape[2]
    recv, send = (t.numpy() for t in complete_edges(n, "cpu"))
    pos = graphs.pos.astype(np.float64)
    dx = (pos[:, send] - pos[:, recv]).reshape(-1, dim)
    q, m = graphs.charge.astype(np.float64), graphs.mass.astype(np.float64)
    q1, q2, m1, m2 = q[:, recv].ravel(), q[:, send].ravel(), m[:, recv].ravel(), m[:, send].ravel()
    force = physics.pair_force(system, dx, q1, q2, m1, m2)
    return np.column_stack([dx, np.sqrt((dx**2).sum(-1)), m1, m2, q1, q2]), force, m1


def composed_accelerations(edge_eqs: list[str], node_eqs: list[str], graphs, system: str) -> np.ndarray:
    """Accelerations (G, n, dim) of the symbolic model: edge formulas, sum over senders, node formulas."""
    from raysym.graph import node_features

    g, n, dim = graphs.pos.shape
    edge_X, _, _ = graph_edges(graphs, system)
    messages = np.column_stack([distill.evaluate(eq, edge_X, edge_names(dim)) for eq in edge_eqs]).reshape(
        g, n, n - 1, -1
    )
    x, _ = node_features(graphs)
    node_X = np.concatenate([messages.sum(2), x.numpy().astype(np.float64)], -1).reshape(g * n, -1)
    return np.column_stack([distill.evaluate(eq, node_X, node_names(dim)) for eq in node_eqs]).reshape(g, n, dim)


def newtonian_accelerations(
    edge_eqs: list[str], node_eqs: list[str], readout: np.ndarray, graphs, system: str
) -> np.ndarray:
    """Accelerations (G, n, dim) of the Newtonian GN's symbolic model: edge formulas summed over senders,
    mapped by ``readout`` (dim, len(edge_eqs)): the model's readout columns of the distilled components
    (the identity's for dim-component messages), divided by the receiver's mass, plus the node formulas
    of g(v, q, m) when there are any."""
    g, n, dim = graphs.pos.shape
    edge_X, _, _ = graph_edges(graphs, system)
    summed = (
        np.column_stack([distill.evaluate(eq, edge_X, edge_names(dim)) for eq in edge_eqs])
        .reshape(g, n, n - 1, -1)
        .sum(2)
    )
    acc = (summed @ readout.T) / graphs.mass.astype(np.float64)[..., None]
    if node_eqs:
        node_X = (
            np.concatenate([graphs.vel, graphs.charge[..., None], graphs.mass[..., None]], -1)
            .astype(np.float64)
            .reshape(g * n, -1)
        )
        acc = acc + np.column_stack([distill.evaluate(eq, node_X, node_term_names(dim)) for eq in node_eqs]).reshape(
            g, n, dim
        )
    return acc


@functools.lru_cache(maxsize=64)
def _energy_gradient_fn(pair_eq: str, dim: int):
    """grad_dx of a pair-energy formula, differentiated and compiled once per process."""
    import sympy

    names = edge_names(dim)
    expr = distill.parse(pair_eq, names)
    sym = {name: sympy.Symbol(name, real=True) for name in names}
    r = sym["r"]
    grad = [sympy.diff(expr, sym[d]) + sympy.diff(expr, r) * sym[d] / r for d in ("dx", "dy", "dz")[:dim]]
    return sympy.lambdify([sym[name] for name in names], grad, modules="numpy")


def energy_gradient(pair_eq: str, edge_X: np.ndarray, dim: int) -> np.ndarray:
    """grad_dx f of a pair-energy formula f(dx, r, ...) on edge rows (E, dim + 5) in edge_names order,
    (E, dim), with dx = x_sender - x_receiver and r = |dx| (sympy: grad_dx f = df/ddx + df/dr dx / r).
    It enters the sender's dH/dq with a plus sign and the receiver's with a minus sign."""
    fn = _energy_gradient_fn(pair_eq, dim)
    with np.errstate(all="ignore"):
        columns = fn(*[edge_X[:, i] for i in range(edge_X.shape[1])])
    return np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (len(edge_X),)) for c in columns], -1)


def reverse_edge_rows(edge_X: np.ndarray, dim: int) -> np.ndarray:
    """The rows of the reverse edges (sender and receiver swapped): -dx, the same r, m1 <-> m2, q1 <-> q2.
    Built from each row alone, so sampled edges need no graph (raysym.graph.reverse_edges indexes them
    within a complete graph instead)."""
    out = edge_X.copy()
    out[:, :dim] *= -1
    m1, m2, q1, q2 = dim + 1, dim + 2, dim + 3, dim + 4
    out[:, [m1, m2, q1, q2]] = edge_X[:, [m2, m1, q2, q1]]
    return out


def formula_pair_forces(pair_eq: str, edge_X: np.ndarray, dim: int) -> np.ndarray:
    """The force on each edge's receiver from the pair-energy formula on that edge and on its reverse,
    (E, dim): -dH/dq_receiver = grad f(edge) - grad f(reverse edge)."""
    return energy_gradient(pair_eq, edge_X, dim) - energy_gradient(pair_eq, reverse_edge_rows(edge_X, dim), dim)


def energy_accelerations(pair_eq: str, graphs, system: str) -> np.ndarray:
    """Accelerations (G, n, dim) of the Hamiltonian GN's symbolic model: H = the pair-energy formula
    summed over every directed edge (the self energies are left out: their dependence on position is
    not distilled), a = -(dH/dq) / m."""
    from raysym.graph import complete_edges

    g, n, dim = graphs.pos.shape
    edge_X, _, _ = graph_edges(graphs, system)
    per_edge = energy_gradient(pair_eq, edge_X, dim).reshape(g, n * (n - 1), dim)
    recv, send = (t.numpy() for t in complete_edges(n, "cpu"))
    dH_dq = np.zeros((g, n, dim))
    for e in range(n * (n - 1)):  # n (n - 1) edges, each a whole (G, dim) column
        dH_dq[:, send[e]] += per_edge[:, e]
        dH_dq[:, recv[e]] -= per_edge[:, e]
    return -dH_dq / graphs.mass.astype(np.float64)[..., None]


def force_front(
    front_rows: list[dict[str, Any]], names: list[str], data: TrialData, loss_factor: float
) -> distill.Front:
    """The pair-energy front re-scored by what training fixes: each formula's implied pair force
    (:func:`formula_pair_forces`) against the GN's (``data.pair_force``) on the fitting edges, mean
    squared error, then the same Pareto front and choice rule. The energy's own loss also counts the
    offsets the GN carries in its energy (terms without positions in them, which no law needs), so it
    prefers formulas that model them; this front does not."""
    scored = []
    for row in front_rows:
        with np.errstate(all="ignore"):
            implied = formula_pair_forces(row["equation"], data.edge_X, data.dim)
        scored.append(
            distill.Formula(row["equation"], row["complexity"], float(np.mean((implied - data.pair_force) ** 2)))
        )
    return distill.pareto_front(scored, names, float(np.var(data.pair_force)), loss_factor)


VERDICT_KEYS = tuple(
    f"{stat}_{target}{suffix}"
    for target in ("force", "accel")
    for stat, suffix in (("r2", ""), ("r2", "_min"), ("condition", ""), ("r2", "_all"), ("r2", "_all_min"))
)  # what a distillation records of the verdict, as distill/<key>


def verdict(edge_eqs: list[str], graphs, system: str, bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Are the edge formulas together a linear transformation of the true force (or force / receiver mass)?
    :func:`raysym.verdict.judge` on every edge of ``graphs``, decided in distribution: on the edges of the
    graphs inside ``bounds`` (the trial's pruning bounds; every graph when None). Keys: ``recovered``,
    ``which`` (force, force/mass or none), per target (force, accel) the mean and minimum R² and the fitted
    map's condition number in distribution, the mean and minimum R² on every edge, and ``in_range_graphs``."""
    from raysym.messages import graphs_in_range

    edge_X, force, m_recv = graph_edges(graphs, system)
    n = graphs.pos.shape[1]
    inside = np.repeat(graphs_in_range(graphs, bounds), n * (n - 1))
    names = edge_names(graphs.pos.shape[2])
    with np.errstate(all="ignore"):
        values = np.column_stack([distill.evaluate(eq, edge_X, names) for eq in edge_eqs])
    out = judge(values, {"force": force, "accel": force / m_recv[:, None]}, inside)
    out["which"] = {"accel": "force/mass"}.get(out["which"], out["which"])
    return {**out, "in_range_graphs": int(inside.sum()) // (n * (n - 1))}


def energy_verdict(pair_eq: str, graphs, system: str, bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Is the distilled pair energy (Hamiltonian GN) the true pair potential U(r')? Training fixes the
    energy only up to terms without positions in them (c q1 q2, constants, ...), so it is judged by what
    is fixed: the pair force it implies (:func:`formula_pair_forces`) against the true pair force, R²
    without fitting >= RECOVERED_R2 means recovered. Decided in distribution, on the edges of the graphs
    inside ``bounds`` (every graph when None); beside it, the same R² on every edge (``_all``: the
    simulator's softened law in close encounters included), on the 90% of edges the formula fits best
    (``_robust``), and R² of the formula as a linear function of U in distribution (blind to those
    offsets, so often low for a correct law)."""
    from raysym.messages import ROBUST_FRACTION, graphs_in_range, r2_prediction

    edge_X, force, _ = graph_edges(graphs, system)
    n, dim = graphs.pos.shape[1], graphs.pos.shape[2]
    inside = np.repeat(graphs_in_range(graphs, bounds), n * (n - 1))
    names = edge_names(dim)
    col = {n: edge_X[:, i] for i, n in enumerate(names)}
    potential = physics.get_law(system).potential(
        col["r"] + physics.SOFTENING, col["q1"], col["q2"], col["m1"], col["m2"]
    )
    value = distill.evaluate(pair_eq, edge_X, names)
    r2_u = r2_linear(value[inside], potential[inside, None])[0] if np.all(np.isfinite(value[inside])) else 0.0
    with np.errstate(all="ignore"):
        implied = formula_pair_forces(pair_eq, edge_X, dim)

    def score(rows, keep=1.0):
        return r2_prediction(force[rows], implied[rows], keep) if np.all(np.isfinite(implied[rows])) else 0.0

    r2_f = score(inside)
    return {
        "recovered": bool(r2_f >= RECOVERED_R2),
        "which": "potential" if r2_f >= RECOVERED_R2 else "none",
        "r2_potential": float(r2_u),
        "r2_pair_force": float(r2_f),
        "r2_pair_force_all": float(score(slice(None))),
        "r2_pair_force_robust": float(score(slice(None), ROBUST_FRACTION)),
        "in_range_graphs": int(inside.sum()) // (n * (n - 1)),
    }


# --------------------------------------------------------------------------------------------------
# One trial, end to end
# --------------------------------------------------------------------------------------------------


def distill_trial(trial_dir: str | Path, cfg: DistillConfig, pool: DistillPool | None = None) -> dict[str, Any]:
    """Distil an N-body trial folder (from ``raysym train`` or a sweep): write ``<trial>/distill/`` with the
    fronts (CSV and Markdown), the chosen formulas, the composed model's MAE and the verdict, and return
    the summary (also ``distill/summary.json``). Without a pool, jobs run one after another here.
    Hamiltonian GN: the pair-energy formula is chosen on its implied pair force (``edge0_front``, losses
    in force units squared); the front by the energy's loss is ``edge0_energy_front``."""
    from raysym import shards
    from raysym.train import load_trial
    from raysym.trial_folder import TrialFolder

    trial_dir = Path(trial_dir)
    train_cfg, model = load_trial(trial_dir)
    metrics_path = trial_dir / "metrics.json"
    metrics = TrialFolder(trial_dir).read_json("metrics.json") if metrics_path.exists() else {}  # damaged: named
    top = metrics.get("messages/top_components")
    if not top:
        raise UserError(
            f"{trial_dir} has no message analysis (messages/top_components in metrics.json): the trial did not finish. "
            "Train it to the end first."
        )
    params = shards.read_manifest(train_cfg.data)["params"]
    system = physics.law_key(params["system"], params.get("potential"))  # custom:<formula> for a user's law
    data = shards.load_dataset(train_cfg.data, prune_k=None)
    # The trial's pruning bounds: where the GN was trained. The verdict is decided inside them.
    bounds = shards.prune_bounds(data.manifest, train_cfg.prune_k) if train_cfg.prune_k is not None else None
    data_, score_graphs = prepare(
        model, data.test, system, top, cfg.samples, cfg.seed, fit_bounds=bounds if cfg.fit_range == "train" else None
    )
    energy = getattr(model, "model", "") == "hgn"

    def summary_of(workdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        job_list = jobs(data_, cfg, workdir)
        results = pool.map(job_list, trial_dir.name) if pool is not None else [run_job(j) for j in job_list]
        if energy:
            results = [choose_by_force(r, data_, cfg.window()) for r in results]
        return results, summarize(results, model, score_graphs, system, data_.dim, bounds=bounds)

    return write_outputs(trial_dir, summary_of)


def choose_by_force(result: dict[str, Any], data: TrialData, loss_factor: float) -> dict[str, Any]:
    """A pair-energy job's result with its formula chosen on :func:`force_front` (which becomes "front";
    the front by the energy's own loss is kept as "energy_front"). Unchanged when the job failed or no
    formula has a finite pair force."""
    if "front" not in result or data.pair_force is None:
        return result
    try:
        front = force_front(result["front"], result["names"], data, loss_factor)
    except ValueError:
        return result
    return result | {
        "front": front.rows(),
        "chosen": front.chosen,
        "energy_front": result["front"],
        "energy_chosen": result["chosen"],
    }


def summarize(
    results: list[dict[str, Any]], model, score_graphs, system: str, dim: int, bounds: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Flat ``distill/...`` metrics plus the formulas, from the job results of one trial: the verdict
    (decided on the scoring graphs inside ``bounds``, all-edges R² beside it) and the composed symbolic
    model's MAE next to the GN's, on every scoring graph and on those in range. The Hamiltonian GN's
    single pair-energy formula is judged by its implied pair force."""
    import torch

    from raysym.graph import node_features
    from raysym.messages import graphs_in_range

    errors = [f"{r['kind']} {r['index']}: {r['error']}" for r in results if "error" in r]
    chosen = {(r["kind"], r["index"]): r["front"][r["chosen"]] for r in results if "front" in r}
    edge_eqs = [chosen[("edge", k)]["equation"] for k in range(dim) if ("edge", k) in chosen]
    node_eqs = [chosen[("node", d)]["equation"] for d in range(dim) if ("node", d) in chosen]
    backend = next((r["backend"] for r in results if "backend" in r), "")
    x, y = node_features(score_graphs)
    inside = graphs_in_range(score_graphs, bounds)
    with torch.no_grad():
        gn_error = (model(x.to(next(model.parameters()).device)).acc.cpu() - y).abs().numpy()
    out: dict[str, Any] = {
        "distill/backend": backend,
        "distill/gn_test_mae": float(gn_error.mean()),
        "distill/gn_test_mae_in_range": float(gn_error[inside].mean()) if inside.any() else float("nan"),
        "distill/seconds": float(sum(r["seconds"] for r in results)),
        "distill/errors": errors,
        "distill/edge_formulas": edge_eqs,
        "distill/node_formulas": node_eqs,
        "distill/complexity": int(sum(chosen[k]["complexity"] for k in chosen)),
        "distill/settings": next((r["settings"] for r in results if "settings" in r), {}),
        "distill/in_range_graphs": int(inside.sum()),
        "distill/score_graphs": len(inside),
    }
    if getattr(model, "model", "") == "hgn":
        if edge_eqs:
            v = energy_verdict(edge_eqs[0], score_graphs, system, bounds)
            out.update(
                {
                    f"distill/{k}": v[k]
                    for k in ("r2_potential", "r2_pair_force", "r2_pair_force_all", "r2_pair_force_robust")
                }
            )
            out.update({"distill/recovered": int(v["recovered"]), "distill/recovered_as": v["which"]})
    elif len(edge_eqs) == dim:
        v = verdict(edge_eqs, score_graphs, system, bounds)
        out.update({f"distill/{k}": v[k] for k in VERDICT_KEYS})
        out.update({"distill/recovered": int(v["recovered"]), "distill/recovered_as": v["which"]})
    out["distill/edge_components"] = edge_components(results)
    symbolic = symbolic_model(model, out, system, dim)
    if symbolic is not None:
        with np.errstate(all="ignore"):  # a formula may overflow: its error is then infinite, not a crash
            error = np.abs(symbolic(score_graphs) - y.numpy())
        mae, mae_in = float(np.mean(error)), float(np.mean(error[inside])) if inside.any() else float("nan")
        out["distill/test_mae"] = mae if np.isfinite(mae) else float("inf")
        out["distill/test_mae_in_range"] = mae_in if np.isfinite(mae_in) or not inside.any() else float("inf")
    return out


def symbolic_model(model, summary: dict[str, Any], system: str, dim: int):
    """The composed symbolic model of a distilled trial, as a function of graphs (Snapshots with G graphs of
    n particles) to accelerations (G, n, dim), or None when the distillation lacks a formula it needs:
    the Hamiltonian GN's pair energy, differentiated; the Newtonian GN's edge formulas through the model's
    readout columns of the distilled components (the identity's for dim-component messages), over the
    receiver's mass, plus its node formulas; the
    paper's models' edge formulas summed over senders into their node formulas. ``summary``: the
    distillation's (distill/edge_formulas, distill/node_formulas, distill/edge_components)."""
    kind = getattr(model, "model", "")
    edge_eqs, node_eqs = summary.get("distill/edge_formulas", []), summary.get("distill/node_formulas", [])
    if kind == "hgn":
        return (lambda graphs: energy_accelerations(edge_eqs[0], graphs, system)) if edge_eqs else None
    if len(edge_eqs) != dim:
        return None
    if kind == "newtonian":
        if len(node_eqs) != (dim if model.node_term is not None else 0):
            return None
        # Edge jobs run in order of the components' variance, not of their index: a message whose largest
        # component is its y component has its y formula first. The readout's columns put them back.
        components = summary.get("distill/edge_components")
        if not components or len(components) != len(edge_eqs):
            return None  # a summary from before the components were recorded: distil again
        weight = np.eye(dim) if model.readout is None else model.readout.weight.detach().cpu().numpy()
        readout = weight.astype(np.float64)[:, components]
        return lambda graphs: newtonian_accelerations(edge_eqs, node_eqs, readout, graphs, system)
    if len(node_eqs) == dim:
        return lambda graphs: composed_accelerations(edge_eqs, node_eqs, graphs, system)
    return None


def edge_components(results: list[dict[str, Any]]) -> list[int]:
    """The message components the edge jobs distilled, in edge-job order."""
    return [r["component"] for r in sorted((r for r in results if r["kind"] == "edge"), key=lambda r: r["index"])]


def run_trials(
    trials: list[str | Path],
    cfg: DistillConfig,
    *,
    workers: int | None = None,
    address: str | None = None,
    say=lambda m: None,
) -> list[dict[str, Any]]:
    """Distil several trial folders, each with its own kind's jobs (raysym.trial_kind), on one actor pool
    (``raysym distill``)."""
    from raysym import trial_kind

    kinds = [trial_kind.of_folder(t) for t in trials]  # a folder that is no trial stops here, before Ray starts
    pool = start_pool(cfg, workers=workers, address=address, say=say, what=f"{len(trials)} trial(s)")
    try:
        return [kind.distil(Path(t), cfg, pool) for kind, t in zip(kinds, trials)]
    finally:
        pool.shutdown()
