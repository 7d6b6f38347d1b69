"""Simulation throughput: raysym's vectorised Ray Data pipeline against a per-simulation solve_ivp loop.

Usage:
    python benchmarks/simulate.py                       # seed-paper scale: 10,000 sims x 500 steps, spring 2D
    python benchmarks/simulate.py --sims 2000 --system r2 --dim 3

Prints, from one run on one machine:
  * pipeline:  the whole dataset (train + test) written as Parquet shards by `write_dataset` on a local
               Ray using every core, Ray start-up excluded (printed separately);
  * kernel:    raysym's integrator alone, one process, one core (no Ray, no files);
  * reference: a straightforward loop of scipy.integrate.solve_ivp, one simulation at a time, on a
               sample of the same simulations, computing the stored accelerations like raysym does. Its
               tolerances (RK45, rtol 1e-6, atol 1e-8) give about the same trajectory error as raysym's
               RK4; solve_ivp's defaults (rtol 1e-3) run faster but are thousands of times less
               accurate, and are printed too;
and the ratios to the reference in snapshots (graphs) per second, with each method's measured error.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

from raysym import physics, shards, simulate
from raysym.config import SimulationConfig


def solve_ivp_loop(cfg: SimulationConfig, sample: int, **solver) -> tuple[np.ndarray, float]:
    """Positions (sample, K, n, dim) and snapshots per second of a per-simulation solve_ivp loop.

    Like raysym, it also computes the stored accelerations at the stored states.
    """
    ids = np.arange(sample)
    pos0, vel0, charge, mass = simulate.initial_state(cfg, "train", ids)
    n, dim = cfg.particles, cfg.dim
    times = np.arange(0, cfg.steps, cfg.stride) * cfg.resolved_dt
    damping = cfg.resolved_damping
    start = time.perf_counter()
    out = []
    for s in range(sample):
        q, m = charge[s : s + 1], mass[s : s + 1]

        def rhs(t, y):
            p, v = y[: n * dim].reshape(1, n, dim), y[n * dim :].reshape(1, n, dim)
            return np.concatenate([v.ravel(), physics.accelerations(cfg.system, p, v, q, m, damping).ravel()])

        y0 = np.concatenate([pos0[s].ravel(), vel0[s].ravel()])
        sol = solve_ivp(rhs, (0.0, times[-1]), y0, t_eval=times, **solver)
        p = sol.y[: n * dim].T.reshape(-1, n, dim)
        v = sol.y[n * dim :].T.reshape(-1, n, dim)
        physics.accelerations(cfg.system, p, v, np.repeat(q, len(p), 0), np.repeat(m, len(p), 0), damping)
        out.append(p)
    seconds = time.perf_counter() - start
    return np.stack(out), sample * len(times) / seconds


def median_error(traj: np.ndarray, truth: np.ndarray) -> float:
    """Median over simulations of the largest position error along the trajectory."""
    return float(np.median(np.abs(traj - truth).reshape(len(truth), -1).max(axis=1)))


def kernel_rate(cfg: SimulationConfig, sims: int) -> float:
    start = time.perf_counter()
    graphs = simulate.simulate(cfg, "train", np.arange(sims))
    return len(graphs) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", default="spring", choices=list(physics.SYSTEMS))
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--sims", type=int, default=10_000, help="training simulations (test adds a quarter)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--stride", type=int, default=5)
    ap.add_argument("--reference-sample", type=int, default=40, help="simulations in the solve_ivp loop")
    ap.add_argument("--kernel-sims", type=int, default=1024, help="simulations for the one-core kernel figure")
    args = ap.parse_args()

    cfg = SimulationConfig(
        system=args.system, dim=args.dim, particles=args.particles, sims=args.sims, steps=args.steps, stride=args.stride
    )
    rows = (cfg.sims + cfg.resolved_test_sims) * cfg.snapshots_per_sim
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}"
    )
    print(
        f"dataset: {cfg.system} {cfg.dim}D, {cfg.particles} particles, {cfg.sims:,} train + {cfg.resolved_test_sims:,} "
        f"test sims x {cfg.steps} steps, stride {cfg.stride} -> {rows:,} graphs"
    )

    sample = args.reference_sample
    truth, _ = solve_ivp_loop(cfg, sample, method="DOP853", rtol=1e-12, atol=1e-12)
    matched, ref = solve_ivp_loop(cfg, sample, rtol=1e-6, atol=1e-8)
    default, ref_default = solve_ivp_loop(cfg, sample)
    ours = simulate.simulate(cfg, "train", np.arange(sample)).pos.reshape(truth.shape)
    kernel = kernel_rate(cfg, args.kernel_sims)

    from raysym._ray import ensure_ray

    t0 = time.perf_counter()
    ensure_ray()
    ray_start = time.perf_counter() - t0
    workdir = Path(tempfile.mkdtemp(prefix="raysym-bench-"))
    try:
        result = shards.write_dataset(cfg, workdir / "ds")
        size = sum(f.stat().st_size for f in (workdir / "ds").rglob("*.parquet"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    pipeline = rows / result.seconds

    rows_fmt = "{:<58}{:>12,.0f} graphs/s {:>8.1f}x   error {:.1e}"
    print("(error: median over the sample of the largest position error against DOP853 at rtol = atol = 1e-12)")
    print(
        rows_fmt.format("reference  solve_ivp RK45 rtol 1e-6 atol 1e-8, 1 core", ref, 1.0, median_error(matched, truth))
    )
    print(
        rows_fmt.format(
            "           solve_ivp RK45 defaults (rtol 1e-3), 1 core",
            ref_default,
            ref_default / ref,
            median_error(default, truth),
        )
    )
    print(rows_fmt.format("kernel     raysym RK4 (1 substep), 1 core", kernel, kernel / ref, median_error(ours, truth)))
    print(
        rows_fmt.format(
            f"pipeline   raysym Ray Data -> Parquet, {os.cpu_count()} cores",
            pipeline,
            pipeline / ref,
            median_error(ours, truth),
        )
    )
    print(f"pipeline / solve_ivp at default tolerances: {pipeline / ref_default:.1f}x")
    print(
        f"pipeline wall time: {result.seconds:.1f} s for {rows:,} graphs ({size / 2**20:,.0f} MiB of Parquet); "
        f"Ray start-up {ray_start:.1f} s (not included)"
    )
    print(f"the matched-accuracy loop would take {rows / ref / 60:,.1f} min for the same dataset")


if __name__ == "__main__":
    main()
