"""Distilling a halo trial: the edge function and the node function of the node-level GN, the composed
symbolic model, and (for synthetic catalogs) the verdict against the true edge term.

For a trained NodeGN on its catalog graph (rebuilt from the trial's config.json):

* the messages' leading direction u (raysym.halos.leading_direction) turns each edge's message into
  one number, y_e = message_e . u;
* edge job: inputs dx, dy, dz, r, m1, m2 (1 = receiver, 2 = sender) on edges into training nodes ->
  y_e (the paper's edge function);
* node job: inputs m (the node's mass) and s = sum of y_e over the node's incoming edges -> the GN's
  prediction of the node's target (the paper's node function);
* the composed symbolic model: the edge formula on every edge, summed at each receiver, the node
  formula; its MAE against the true target on the held-out nodes, next to the GN's;
* the verdict (synthetic catalogs only): the edge formula on every edge is a linear transformation of
  the true edge term m2 / (r + 1) with R² >= 0.99.

Jobs run on the sweep's DistillPool (or one after the other without a pool) and the results land in
``<trial>/distill/`` exactly as an N-body trial's do, so ``raysym distill``, sweeps and reports treat
both kinds alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from raysym import distill
from raysym.config import DistillConfig
from raysym.distill_pool import RECOVERED_R2, run_job, write_outputs
from raysym.halo_data import EDGE_NAMES, build_graph
from raysym.halos import GraphTensors, leading_direction, load_halo_trial, run_halo_trial
from raysym.messages import r2_linear

NODE_NAMES = ["m", "s"]
# The selection's loss factor when the distill section sets none (DistillConfig.loss_factor says why 1.5 here).
LOSS_FACTOR = 1.5


def halo_jobs(
    graph, messages: np.ndarray, prediction: np.ndarray, cfg: DistillConfig, workdir: Path
) -> list[dict[str, Any]]:
    """The edge and node jobs of one halo trial (see the module doc); messages (E, msg_dim), prediction
    (N,) the GN's output in the target's units."""
    axis, _ = leading_direction(messages)
    y_edge = messages @ axis
    rng = np.random.default_rng(cfg.seed)
    train_edges = np.flatnonzero(~graph.test[graph.receivers])
    rows = np.sort(rng.choice(train_edges, size=min(cfg.samples, len(train_edges)), replace=False))
    s = np.zeros(len(graph.catalog))
    np.add.at(s, graph.receivers, y_edge)
    nodes = np.flatnonzero(~graph.test)
    nodes = np.sort(rng.choice(nodes, size=min(cfg.samples, len(nodes)), replace=False))
    node_x = np.column_stack([graph.catalog.mass, s])
    settings = dataclasses.asdict(cfg)
    return [
        dict(
            kind="edge",
            index=0,
            component=0,
            X=graph.edge_x[rows],
            y=y_edge[rows],
            names=EDGE_NAMES,
            cfg=settings,
            workdir=str(workdir / "edge0"),
        ),
        dict(
            kind="node",
            index=0,
            component=0,
            X=node_x[nodes],
            y=prediction[nodes],
            names=NODE_NAMES,
            cfg=settings,
            workdir=str(workdir / "node0"),
        ),
    ]


def composed_prediction(edge_eq: str, node_eq: str, graph) -> np.ndarray:
    """(N,) the symbolic model's target: the edge formula on every edge, summed at each receiver, then
    the node formula of [m, s]."""
    y_edge = distill.evaluate(edge_eq, graph.edge_x, EDGE_NAMES)
    s = np.zeros(len(graph.catalog))
    np.add.at(s, graph.receivers, y_edge)
    return distill.evaluate(node_eq, np.column_stack([graph.catalog.mass, s]), NODE_NAMES)


def halo_summary(results: list[dict[str, Any]], graph, prediction: np.ndarray) -> dict[str, Any]:
    """Flat ``distill/...`` metrics and the formulas (the same keys as an N-body trial's summary)."""
    errors = [f"{r['kind']} {r['index']}: {r['error']}" for r in results if "error" in r]
    chosen = {r["kind"]: r["front"][r["chosen"]] for r in results if "front" in r}
    test, target = graph.test, graph.catalog.target
    out: dict[str, Any] = {
        "distill/backend": next((r["backend"] for r in results if "backend" in r), ""),
        "distill/gn_test_mae": float(np.mean(np.abs(prediction[test] - target[test]))),
        "distill/seconds": float(sum(r["seconds"] for r in results)),
        "distill/errors": errors,
        "distill/edge_formulas": [chosen["edge"]["equation"]] if "edge" in chosen else [],
        "distill/node_formulas": [chosen["node"]["equation"]] if "node" in chosen else [],
        "distill/complexity": int(sum(c["complexity"] for c in chosen.values())),
        "distill/settings": next((r["settings"] for r in results if "settings" in r), {}),
    }
    if "edge" in chosen:
        true = graph.true_edge()
        if true is not None:
            with np.errstate(all="ignore"):
                value = distill.evaluate(chosen["edge"]["equation"], graph.edge_x, EDGE_NAMES)
            r2 = float(r2_linear(value, true[:, None])[0]) if np.all(np.isfinite(value)) else 0.0
            out.update(
                {
                    "distill/r2_vs_true_edge": r2,
                    "distill/recovered": int(r2 >= RECOVERED_R2),
                    "distill/recovered_as": "edge term" if r2 >= RECOVERED_R2 else "none",
                }
            )
        else:
            out["distill/recovered_as"] = "unknown (real catalog)"
        if "node" in chosen:
            with np.errstate(all="ignore"):
                composed = composed_prediction(chosen["edge"]["equation"], chosen["node"]["equation"], graph)
                mae = float(np.mean(np.abs(composed[test] - target[test])))
            out["distill/test_mae"] = mae if np.isfinite(mae) else float("inf")
    return out


def distill_halo_trial(trial_dir: str | Path, cfg: DistillConfig, pool=None) -> dict[str, Any]:
    """Distil a halo trial folder into ``<trial>/distill/`` (fronts, summary.json); returns the summary."""
    from raysym.errors import UserError
    from raysym.trial_folder import TrialFolder

    trial_dir = Path(trial_dir)
    cfg = dataclasses.replace(cfg, loss_factor=cfg.window(LOSS_FACTOR))  # the jobs' fits read it (raysym.distill.fit)
    halo_cfg, model = load_halo_trial(trial_dir)
    metrics_path = trial_dir / "metrics.json"
    if not metrics_path.exists() or TrialFolder(trial_dir).read_json("metrics.json").get("status") != "finished":
        raise UserError(
            f"{trial_dir} is a halo trial that did not finish training (see its metrics.json). Train it again first."
        )
    graph = build_graph(halo_cfg)
    scaled, messages = GraphTensors(graph, "cpu").evaluate(model, halo_cfg.batch_nodes)  # as in training
    # the GN predicts the target divided by its std (raysym.halos.train_halos)
    prediction = scaled.numpy().astype(np.float64) * (float(np.std(graph.catalog.target)) or 1.0)
    messages = messages.numpy()  # float32: (E, msg_dim) can be large

    def summary_of(workdir: Path):
        job_list = halo_jobs(graph, messages, prediction, cfg, workdir)
        results = pool.map(job_list, trial_dir.name) if pool is not None else [run_job(j) for j in job_list]
        return results, halo_summary(results, graph, prediction)

    return write_outputs(trial_dir, summary_of)


def run_halos(cfg, distill_cfg: DistillConfig, out: str | Path, say=lambda m: None) -> dict[str, Any]:
    """``raysym halos``: one halo trial, trained then distilled, in ``out`` (the trial folder, with
    ``distill/`` inside), and ``out/halos.json``: its metrics and distillation summary in one file.
    cfg: a HaloConfig."""
    from raysym.train import _write_json

    out = Path(out)
    say(f"catalog {cfg.catalog}: training the node-level GN for {cfg.epochs} epochs")

    def report(m):
        say(f"epoch {m['epoch'] + 1}/{cfg.epochs}: train loss {m['train/loss']:.4g}, test MAE {m['test/mae']:.4g}")

    metrics = run_halo_trial(cfg, out, callback=report, resume=False)
    if metrics["status"] != "finished":
        from raysym.errors import UserError

        raise UserError(f"Training diverged ({metrics['reason']}). Lower lr (now {cfg.lr}) or l1 (now {cfg.l1}).")
    say(
        f"{metrics['data/points']:,} points, {metrics['data/edges']:,} edges; test MAE {metrics['test/mae']:.4g} "
        f"(target std {metrics['data/target_std']:.4g}); distilling the edge and node functions"
    )
    found = distill_halo_trial(out, distill_cfg)
    summary = {"config": dataclasses.asdict(cfg), **metrics, **found}
    _write_json(out / "halos.json", summary)
    return summary
