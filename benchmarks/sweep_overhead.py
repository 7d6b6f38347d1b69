"""What a sweep costs per trial beyond the trial's own work: raysym against bare Ray Tune (issue 29, item 1).

Usage:
    python benchmarks/sweep_overhead.py [--extra 20] [--base 2] [--gpus-per-trial 0] [--repeats 1]
    python benchmarks/sweep_overhead.py --smoke      # one 1-trial run of each side (CI, device.sh)
    python benchmarks/sweep_overhead.py --breakdown  # where a trivial trial's own CPU goes, in this process

Both sides run trivial trials, each in a fresh process as a user would start them (local Ray started and
stopped inside the measurement):

- raysym: `raysym sweep` of ``n`` trials that train the bottleneck GN for 1 epoch with 8 hidden units on
  20 simulations of 2D spring (seeds 0..n-1 as the grid), tracked in a sqlite MLflow store, no distillation;
- bare Ray Tune: `Tuner.fit()` of ``n`` trials of a function trainable that reports once, with the same
  resources per trial and the same storage kind (a local folder), Tune's defaults otherwise;
- the same with ``reuse_actors=True`` (as raysym runs its trials): what reusing workers alone is worth.

Each side runs ``base`` and ``base + extra`` trials; the marginal cost of a trial is
(cost of base + extra - cost of base) / extra, so what both pay once (Python and Ray start-up, the dataset
made before the runs) cancels. Cost is the CPU time of the whole machine (/proc/stat: user, nice, system,
irq, softirq; Ray's daemons and trial workers included) and wall time. Printed: both sides' marginal
core-seconds and wall seconds per trial and their ratio raysym / bare. The machine should be otherwise
idle: the script measures the background load before it starts and says so when it is not.

Where ``RAY_ADDRESS`` is set, both sides join that Ray instead of starting their own (bare Tune's
``ray.init()`` reads it; raysym gets ``--address``): Ray's start-up then falls out of both sides' costs, and
the marginal cost per trial, in which it cancels anyway, stays comparable. The test of benchmarks/device.sh
runs the smoke run that way, on the test session's Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / CLK_TCK


def background_load(seconds: float = 3.0) -> float:
    """Cores busy while nothing of this benchmark runs (0 on a quiet machine)."""
    before, start = machine_cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    return (machine_cpu_seconds() - before) / (time.perf_counter() - start)


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(machine core-seconds, wall seconds) of running ``cmd`` to its end; a failure stops the benchmark."""
    cpu0, wall0 = machine_cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall0, machine_cpu_seconds() - cpu0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    return cpu, wall


def raysym_config(root: Path, n: int, tag: str, gpus: float, figures: bool = True) -> Path:
    cfg = {
        "name": f"overhead_{tag}_{n}",
        "storage": str(root / "runs"),
        "data": {"root": str(root / "data"), "system": "spring", "dim": 2, "particles": 4, "sims": 20,
                 "test_sims": 5, "steps": 100, "stride": 5, "seed": 0},
        "trials": {"model": "bottleneck", "epochs": 1, "hidden": 8, "batch_size": 64, "analysis_graphs": 50,
                   "seed": list(range(n)), "figures": figures},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": gpus},
        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "experiment": "overhead"},
    }  # fmt: skip
    path = root / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def raysym_sweep(config: Path) -> list[str]:
    """The `raysym sweep` command of one side's run: on a local Ray of its own, or joining RAY_ADDRESS."""
    address = os.environ.get("RAY_ADDRESS")
    return [sys.executable, "-m", "raysym.cli", "sweep", str(config), *(["--address", address] if address else [])]


def bare_tune(n: int, storage: str, gpus: float, reuse: bool = False) -> None:
    """The reference: what a user of Ray Tune alone would write for ``n`` trivial trials (Tune's defaults;
    ``reuse``: with ``reuse_actors=True``, as raysym runs its trials, to show what reuse alone is worth)."""
    from ray import tune

    def trainable(config):
        tune.report({"loss": float(config["seed"])})

    fn = tune.with_resources(trainable, {"cpu": 1, "gpu": gpus})
    tuner = tune.Tuner(
        fn,
        param_space={"seed": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(reuse_actors=reuse),
        run_config=tune.RunConfig(name=f"bare_{n}", storage_path=storage, verbose=0),
    )
    tuner.fit()


# Where a trial's own CPU goes, by the raysym function it is spent in (cumulative time under cProfile).
PARTS = {
    "reading the shards, pruning": ("raysym/train.py", "load_training_data"),
    "training (epochs, validation probe)": ("raysym/train.py", "train"),
    "message analysis (test graphs)": ("raysym/messages.py", "analyze"),
    "edge data for the analysis": ("raysym/messages.py", "edge_data"),
    "MAE in range": ("raysym/train.py", "mae_in_range"),
    "figures: messages vs force, stds": ("raysym/message_figures.py", "plot"),
    "figures: stds over epochs": ("raysym/message_figures.py", "plot_stds_over_epochs"),
    "message sample for reports": ("raysym/message_figures.py", "save_sample"),
}


def breakdown(root: Path, trials: int = 3) -> None:
    """The trial itself, as a reused worker runs it: ``raysym.train.run_trial`` of the benchmark's trivial
    trial ``trials`` times in this process (the first pays the imports; the later ones are what each further
    trial of a reused worker costs), the last under cProfile, its CPU split by PARTS."""
    import cProfile
    import pstats

    from raysym import shards
    from raysym.config import SimulationConfig, TrainConfig
    from raysym.train import run_trial

    sim = SimulationConfig(system="spring", dim=2, particles=4, sims=20, test_sims=5, steps=100, stride=5, seed=0)
    data = shards.write_dataset(sim, root / "data" / "spring", engine="local").path
    cpu = []
    for seed in range(trials):
        cfg = TrainConfig(data=str(data), model="bottleneck", epochs=1, hidden=8, batch_size=64, analysis_graphs=50,
                          seed=seed)  # fmt: skip
        profile = cProfile.Profile() if seed == trials - 1 else None
        start = time.process_time()
        if profile:
            profile.enable()
        run_trial(cfg, root / "trials" / f"t{seed}", resume=False)
        if profile:
            profile.disable()
        cpu.append(time.process_time() - start)
    stats = pstats.Stats(profile).stats
    print(f"a trivial trial run in this process, CPU seconds: first {cpu[0]:.2f} (imports included), then "
          + ", ".join(f"{c:.2f}" for c in cpu[1:]))  # fmt: skip
    print(f"where the last one's {cpu[-1]:.2f} s went (cProfile, cumulative):")
    for label, (file, name) in PARTS.items():
        spent = sum(v[3] for (f, _, n), v in stats.items() if f.endswith(file) and n == name)
        print(f"  {label:40s}{spent:7.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extra", type=int, default=20, help="trials added to the base sweep (default 20)")
    ap.add_argument("--base", type=int, default=2, help="trials of the base sweep (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="measure each side this many times (default 1)")
    ap.add_argument("--gpus-per-trial", type=float, default=0.0, help="0.25: four trials share a GPU")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="one 1-trial run per side, no warm-up, no reused-actor side: checks that both sides run and are "
        "measured (no marginal cost: that needs two sizes)",
    )
    ap.add_argument(
        "--no-figures",
        dest="figures",
        action="store_false",
        help="raysym's trials without their PNGs (`figures: false`, as a sweep of many short trials would run)",
    )
    ap.add_argument("--results", default=None, help="append the figures to this JSON-lines file")
    ap.add_argument("--breakdown", action="store_true", help="only where a trial's own CPU goes (no Ray)")
    ap.add_argument("--bare", type=int, default=None, help=argparse.SUPPRESS)  # internal: one bare Tune run
    ap.add_argument("--storage", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--reuse", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare is not None:
        bare_tune(args.bare, args.storage, args.gpus_per_trial, args.reuse)
        return
    if args.breakdown:
        with tempfile.TemporaryDirectory(prefix="raysym-breakdown-") as tmp:
            breakdown(Path(tmp))
        return
    if args.smoke:
        args.base, args.extra, args.repeats = 1, 0, 1
    if args.base < 1 or (args.extra < 1 and not args.smoke) or args.repeats < 1:
        sys.exit("--base, --extra and --repeats must be at least 1.")

    # A smoke run checks that every step runs, not its figures: it skips the quiet-machine check and the
    # warm-up sweep (its base sweep makes the dataset instead), one local Ray start fewer (CI's time, issue 29).
    load = 0.0 if args.smoke else background_load()
    # Ray's token authentication off unless the caller chose (a Ray joined through RAY_ADDRESS may want one)
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="raysym-overhead-") as tmp:
        root = Path(tmp)
        if not args.smoke:
            # The dataset is made once, outside the measurement (both sides would otherwise differ by it).
            warmup = raysym_config(root, 1, "warmup", 0.0)
            measure(raysym_sweep(warmup), env, root)
        # A smoke run leaves out the reused-actor side (a flag of the bare side's code: the smoke run took 91
        # core-s with that side, issue 29).
        sides = ("bare", "raysym") if args.smoke else ("bare", "bare_reuse", "raysym")
        costs: dict[str, dict[int, list[tuple[float, float]]]] = {side: {} for side in sides}
        # A smoke run: each side once, one trial (2 processes instead of 4: CI's time, issue 29)
        sizes = (args.base,) if args.smoke else (args.base, args.base + args.extra)
        for rep in range(args.repeats):
            for n in sizes:
                cfg = raysym_config(root, n, f"r{rep}", args.gpus_per_trial, args.figures)
                raysym_cmd = raysym_sweep(cfg)
                bare_cmd = [sys.executable, __file__, "--bare", str(n), "--storage", str(root / "bare" / f"r{rep}"),
                            "--gpus-per-trial", str(args.gpus_per_trial)]  # fmt: skip
                reuse_cmd = [*bare_cmd, "--reuse"]
                reuse_cmd[reuse_cmd.index("--storage") + 1] += "-reuse"
                commands = {"bare": bare_cmd, "bare_reuse": reuse_cmd, "raysym": raysym_cmd}
                for side in sides:
                    cmd = commands[side]
                    costs[side].setdefault(n, []).append(measure(cmd, env, root))
                    cpu, wall = costs[side][n][-1]
                    print(f"  {side:10s} {n:3d} trials: {cpu:7.1f} core-s  {wall:6.1f} s wall", flush=True)

    runs = {side: [[n, round(cpu, 2), round(wall, 2)] for n, ran in by_n.items() for cpu, wall in ran]
            for side, by_n in costs.items()}  # fmt: skip
    if args.smoke:
        # one size only: the runs are what a smoke run shows (Ray's and Python's start-up included)
        print(f"\nsmoke run: one {args.base}-trial run per side (no marginal cost: that needs two sizes)")
        record_figures(args, runs, None, 0.0)
        return

    def marginal(side: str, which: int) -> float:
        big = min(c[which] for c in costs[side][args.base + args.extra])  # the least disturbed repeat
        small = min(c[which] for c in costs[side][args.base])
        return (big - small) / args.extra

    rows = {side: (marginal(side, 0), marginal(side, 1)) for side in costs}
    print(f"\nmarginal cost per trivial trial ({args.extra} extra over {args.base}; machine: {platform.node()}, "
          f"{os.cpu_count()} cores; background load before the runs {load:.2f} cores)")  # fmt: skip
    if os.environ.get("RAY_ADDRESS"):
        print(f"(both sides joined the Ray at {os.environ['RAY_ADDRESS']}: its start-up is in neither)")
    print(f"{'':24s}{'core-seconds':>14s}{'wall seconds':>14s}")
    labels = {"raysym": "raysym sweep", "bare": "bare Ray Tune", "bare_reuse": "bare Tune, reused actors"}
    for side, label in labels.items():
        if side not in rows:
            continue
        print(f"{label:24s}{rows[side][0]:14.2f}{rows[side][1]:14.2f}")
    ratio = over(rows, "bare")
    print(f"{'ratio raysym / bare':24s}{ratio[0]:13.2f}x{ratio[1]:13.2f}x")
    if "bare_reuse" in rows:
        reused = over(rows, "bare_reuse")
        print(f"{'raysym / reused bare':24s}{reused[0]:13.2f}x{reused[1]:13.2f}x")
    if load > 0.2:
        print(f"note: {load:.2f} cores were busy before the runs started; these figures are disturbed.")
    record_figures(args, runs, rows, load)


def over(rows: dict[str, tuple[float, float]], side: str) -> tuple[float, float]:
    """raysym's marginal cost over ``side``'s, in core-seconds and in wall seconds."""
    return tuple(rows["raysym"][i] / rows[side][i] if rows[side][i] > 0 else float("nan") for i in (0, 1))


def record_figures(args, runs: dict[str, list], rows: dict[str, tuple[float, float]] | None, load: float) -> None:
    """Append one JSON line to ``--results``: every run ([trials, core-s, wall s] per side) and, unless a smoke
    run, the marginal costs per trial and their ratios (None in a smoke run)."""
    if not args.results:
        return
    rows = rows or {}
    nothing = (None, None)
    ratio = over(rows, "bare") if rows else nothing
    reused = over(rows, "bare_reuse") if "bare_reuse" in rows else nothing
    record = {
        "when": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(), "cores": os.cpu_count(),
        "base": args.base, "extra": args.extra, "repeats": args.repeats, "gpus_per_trial": args.gpus_per_trial,
        "figures": args.figures, "ray_address": os.environ.get("RAY_ADDRESS"), "smoke": args.smoke,
        "background_load": None if args.smoke else round(load, 3), "runs": runs,
        "raysym_core_s": rows.get("raysym", nothing)[0], "raysym_wall_s": rows.get("raysym", nothing)[1],
        "bare_core_s": rows.get("bare", nothing)[0], "bare_wall_s": rows.get("bare", nothing)[1],
        "ratio_core_s": ratio[0], "ratio_wall_s": ratio[1], "bare_reuse_core_s": rows.get("bare_reuse", nothing)[0],
        "bare_reuse_wall_s": rows.get("bare_reuse", nothing)[1], "ratio_reuse_core_s": reused[0],
    }  # fmt: skip
    with open(args.results, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
