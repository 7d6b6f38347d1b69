"""How long `raysym report` takes for a large sweep, against the floor of reading the same runs.

Usage:
    python benchmarks/report.py [--trials 100] [--epochs 50] [--db /tmp/raysym-report-bench/mlflow.db]

Builds a real MLflow sqlite store holding one sweep of ``--trials`` trial runs the way `raysym sweep`
records them (parent run with sweep.json; per-trial params, cfg.* tags, ``--epochs`` per-epoch metrics,
final message and distillation metrics, a messages.npz artifact; one nested distillation run per trial),
with synthetic values (the report's cost does not depend on what the numbers are). It then times:

- reference: ``mlflow.search_runs`` of the sweep's experiment into a DataFrame plus
  ``MlflowClient.get_metric_history`` of the three curves the report draws, serially, for every trial
  (what a notebook does before it can draw anything);
- raysym: the whole ``raysym report`` (read, tables, six figures, report.md and a self-contained HTML).

and prints both with their ratio. The store is built once and reused when it exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from raysym.config import SweepConfig, from_dict
from raysym.report import make_report
from raysym.report_data import HISTORY_KEYS
from raysym.track import MLflowTracker

SYSTEMS = ["spring", "charge", "r1", "r2"]
MODELS = ["standard", "bottleneck", "l1", "kl"]


def build_store(uri: str, trials: int, epochs: int) -> None:
    """One sweep named 'bench' over 4 systems x 5 models (L1 with two schedules) x seeds; the first
    ``trials`` of its plan are recorded (the rest show up in the report as not run)."""
    seeds = list(range(-(-trials // (len(SYSTEMS) * 5))))
    cfg = from_dict(
        SweepConfig,
        {
            "name": "bench",
            "data": {"system": SYSTEMS, "sims": 100},
            "trials": {"model": MODELS, "l1_schedule": ["linear", "constant"], "seed": seeds, "epochs": epochs},
            "tracking": {"uri": uri, "experiment": "bench"},
        },
    )
    tracker = MLflowTracker(uri, "bench")
    parent = tracker.start_sweep("bench", {})
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sweep.json").write_text(json.dumps(dataclasses.asdict(cfg), default=str))
        tracker.log_artifacts(parent, tmp)
    from raysym.sweep_plan import plan

    for i, spec in enumerate(plan(cfg)[:trials]):
        run = tracker.start_trial(
            parent,
            f"bench_{i:05d}",
            f"{spec.key} {spec.label()}",
            spec.params,
            {"raysym.trial_key": spec.key, "raysym.label": spec.label(), "cfg.dim": 2},
        )
        for epoch in range(1, epochs + 1):
            loss = float(np.exp(-epoch / 10) + rng.uniform(0, 0.05))
            tracker.log_metrics(
                run,
                {
                    "train/loss": loss,
                    "train/base_loss": loss,
                    "train/regularizer": 0.01,
                    "train/lr": 1e-3,
                    "train/l1_coeff": 0.01 * epoch / epochs,
                    "test/mae": loss * 1.1,
                },
                step=epoch,
            )
        stds = np.sort(rng.lognormal(-3, 1, 100))[::-1]
        tracker.log_metrics(
            run,
            {
                "messages/r2_force": rng.uniform(0.5, 1),
                "messages/r2_accel": rng.uniform(0.5, 1),
                "messages/sparse": bool(rng.integers(2)),
                "messages/sparsity_ratio": float(stds[1] / stds[2]),
                "messages/stds_top15": [float(s) for s in stds[:15]],
                "distill/recovered": int(rng.integers(2)),
                "distill/test_mae": rng.uniform(0.5, 2),
                "distill/gn_test_mae": rng.uniform(0.3, 1),
            },
            step=epochs,
        )
        with tempfile.TemporaryDirectory() as tmp:
            force = rng.normal(size=(2000, 2))
            np.savez(
                Path(tmp) / "messages.npz",
                messages=(force @ rng.normal(size=(2, 2))).astype(np.float32),
                force=force.astype(np.float32),
                m_recv=np.ones(2000, np.float32),
                stds=stds.astype(np.float32),
                top=np.arange(2),
            )
            tracker.log_artifacts(run, tmp)
        child = tracker.start_trial(
            run,
            f"distill-bench_{i:05d}",
            "distillation",
            {"backend": "operon"},
            {
                "raysym.distill_of": f"bench_{i:05d}",
                "distill/recovered_as": "force",
                "distill/edge_formulas": "['dx - r']",
            },
        )
        tracker.end_run(child)
        tracker.end_run(run)
    tracker.end_run(parent)


def reference(uri: str) -> float:
    import mlflow
    from mlflow.tracking import MlflowClient

    start = time.perf_counter()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bench")
    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs([exp.experiment_id])
    trials = frame[frame["tags.raysym.trial_id"].notna() & frame["tags.raysym.distill_of"].isna()]
    for run_id in trials["run_id"]:
        for key in HISTORY_KEYS:
            client.get_metric_history(run_id, key)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--db", default="/tmp/raysym-report-bench/mlflow.db")
    args = ap.parse_args()
    db = Path(args.db)
    db.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{db}"
    os.chdir(db.parent)  # MLflow's default artifact root (./mlruns) lands beside the database
    if not db.exists():
        start = time.perf_counter()
        build_store(uri, args.trials, args.epochs)
        print(f"built the store: {args.trials} trials x {args.epochs} epochs in {time.perf_counter() - start:.0f} s")
    ref = reference(uri)
    outcome = make_report(uri, "bench", db.parent / "report", say=lambda m: None)
    ours = outcome.seconds["total"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"reference (search_runs + serial metric histories): {ref:.2f} s")
    print(
        f"raysym report ({len(outcome.sweep.trials)} trials): {ours:.2f} s  (read {outcome.seconds['read']:.2f} s, "
        f"tables + figures {outcome.seconds['build']:.2f} s); ratio {ours / ref:.2f}"
    )


if __name__ == "__main__":
    main()
