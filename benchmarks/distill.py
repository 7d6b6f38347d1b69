"""Distillation benchmarks: can the embedded engine recover the laws, and does the actor pool scale?

Usage:
    python benchmarks/distill.py laws      # 8 laws (spring, charge, r1, r2 in 2D and 3D), thorough operon
    python benchmarks/distill.py scaling   # N jobs on N actors against one job on one actor

laws: for each system and dimension, "messages" that are an exact random linear transformation of the
true pairwise force (m = A F + b, A a random dim x dim matrix) on 3,000 edges of simulated test graphs,
with the edge inputs of a real job (dx, dy, (dz), r, m1, m2, q1, q2). Each message component is one job
on the actor pool; the law counts as recovered when raysym's verdict (the chosen formulas, evaluated on
other graphs, are a linear transformation of the force with R² >= 0.99) says so. Prints each law's
verdict, formulas and the time of its jobs.

scaling: identical independent fits (thorough setting by default) on a pool of 1 actor and of N actors (default: the
number of CPUs). The ratio of wall times (N jobs on N actors over 1 job on 1 actor) is 1.0 when the
pool scales perfectly.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np

from raysym import distill_jobs
from raysym._ray import ensure_ray
from raysym.config import DistillConfig, SimulationConfig
from raysym.distill_jobs import edge_names
from raysym.distill_pool import DistillPool
from raysym.simulate import simulate

LAWS = [(s, d) for d in (2, 3) for s in ("spring", "charge", "r1", "r2")]


def edges_of(system: str, dim: int, sims: int, seed: int):
    """(edge inputs (E, dim + 5), force (E, dim), graphs) of simulated test graphs."""
    cfg = SimulationConfig(system=system, dim=dim, sims=sims, steps=200, stride=20, seed=seed)
    graphs = simulate(cfg, "test", np.arange(sims))
    X, force, _ = distill_jobs.graph_edges(graphs, system)
    return X, force, graphs


def laws(args) -> None:
    cfg = DistillConfig(backend="operon", setting=args.setting, seed=0)
    ensure_ray(num_cpus=args.workers)
    pool = DistillPool(args.workers)
    rng = np.random.default_rng(0)
    recovered = 0
    print(f"{'law':<10} {'verdict':<12} {'R² force':>9} {'job s':>7}  formulas")
    try:
        for system, dim in LAWS:
            X, force, _ = edges_of(system, dim, 30, seed=1)
            rows = rng.choice(len(X), size=min(args.samples, len(X)), replace=False)
            A, b = rng.normal(size=(dim, dim)), rng.normal(size=dim)
            if args.only and f"{system}-{dim}d" not in args.only:  # after the draws: --only gives the same data
                continue
            messages = force @ A.T + b
            jobs = [
                dict(
                    kind="edge",
                    index=k,
                    component=k,
                    X=X[rows],
                    y=messages[rows, k],
                    names=edge_names(dim),
                    cfg=dataclasses.asdict(cfg),
                    workdir="/tmp/raysym-bench",
                )
                for k in range(dim)
            ]
            start = time.perf_counter()
            results = pool.map(jobs)
            wall = time.perf_counter() - start
            errors = [r["error"] for r in results if "error" in r]
            if errors:
                print(f"{system}-{dim}d  error: {errors[0]}")
                continue
            eqs = [r["front"][r["chosen"]]["equation"] for r in results]
            _, _, other = edges_of(system, dim, 10, seed=2)  # verdict on unseen graphs
            v = distill_jobs.verdict(eqs, other, system)
            recovered += v["recovered"]
            job_s = sum(r["seconds"] for r in results) / len(results)
            print(
                f"{system}-{dim}d{'':<4} {v['which'] if v['recovered'] else 'NOT':<12} {v['r2_force']:>9.5f} "
                f"{job_s:>7.1f}  "
                f"{' | '.join(e[:70] for e in eqs)}  (wall {wall:.0f} s)",
                flush=True,
            )
    finally:
        pool.shutdown()
    print(
        f"recovered {recovered} of {len(args.only or LAWS)} laws ({args.setting} setting, {args.samples} edges per job)"
    )


def scaling(args) -> None:
    cfg = DistillConfig(backend="operon", setting=args.setting, seed=0)
    workers = args.workers or os.cpu_count() or 1
    ensure_ray(num_cpus=workers)
    X, force, _ = edges_of("spring", 2, 30, seed=1)
    job = dict(
        kind="edge",
        index=0,
        component=0,
        X=X[:2000],
        y=force[:2000, 0],
        names=edge_names(2),
        cfg=dataclasses.asdict(cfg),
        workdir="/tmp/raysym-bench",
    )

    def wall(n_actors: int, n_jobs: int) -> float:
        pool = DistillPool(n_actors)
        try:
            pool.map([job] * n_actors)  # warm-up: actor start and imports
            start = time.perf_counter()
            pool.map([job] * n_jobs)
            return time.perf_counter() - start
        finally:
            pool.shutdown()

    one = wall(1, 1)
    many = wall(workers, workers)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    print(
        f"1 job on 1 actor: {one:.2f} s; {workers} jobs on {workers} actors: {many:.2f} s; "
        f"ratio {many / one:.2f} (1.0 = perfect scaling); throughput {workers * one / many:.2f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("laws")
    p.add_argument("--setting", default="thorough")
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--only", nargs="+", metavar="LAW", help="only these laws, e.g. r1-2d charge-3d")
    p = sub.add_parser("scaling")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--setting", default="thorough", help="thorough: fits of about a minute; fast: about a second")
    args = ap.parse_args()
    laws(args) if args.what == "laws" else scaling(args)


if __name__ == "__main__":
    main()
