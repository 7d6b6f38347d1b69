"""Time to law: how long from the start of training until the messages are the force, and until
distillation recovers the law, for each system, dimension and model, on this machine.

Usage:
    python benchmarks/time_to_law.py                                  # 4 systems x 2D, 3D x 3 models
    python benchmarks/time_to_law.py --systems spring --dims 2 --models newtonian
    python benchmarks/time_to_law.py --results benchmarks/results/time_to_law.jsonl   # resumes: done rows are kept
    python benchmarks/time_to_law.py --table-only                     # the tables of the rows already measured
    python benchmarks/time_to_law.py --systems spring --dims 2 --models l1 --hidden 300 --device cuda \
        --engine local                                                 # paper scale on a GPU without Ray (device.sh)

For each (system, dim, model) row:
1. data: ``--sims`` simulations made by raysym's simulator and Ray Data shards (cached under
   ``--data-root``; not timed: simulating 250,000 graphs takes about 10 s);
2. training: ``raysym.train.run_trial`` with the model's CPU recipe (RECIPES below, the outcome of
   ``benchmarks/recipe.py``); after every epoch the R² of the messages against the force or force / receiver
   mass (the better of the two) is measured on the validation graphs (held-out training simulations, in
   distribution by construction; the test split is only reported), and training stops at the first epoch
   that reaches the model's target (newtonian: R² >= 0.999; paper models: R² >= 0.99, and for L1 also sparse
   messages, share >= 0.95 and ratio >= 10 on the validation graphs) or when the cap (``--cap-min``,
   ``--newtonian-cap-min``, ``--l1-cap-min``) is spent;
3. distillation: ``raysym.distill_jobs.distill_trial`` (Operon, ``--setting``, ``--samples`` edges per
   job, on a pool of one Ray actor per CPU started for it, as ``raysym distill`` runs it) of the trained
   network, once.

``--engine local`` runs without Ray (a GPU machine where it is not installed): the data are simulated in
this process (the same data, raysym.shards) and the distillation's jobs run one after another. ``--hidden``
and ``--device`` change the recipes' width and where training runs (``--hidden 300``: the paper's size).

Seconds are wall time from the call to run_trial (data loading and pruning included, 2-5 s) to the
first epoch at or above R² 0.99 (and 0.999), to the first epoch with sparse messages (L1), and to the end of
distillation when it recovered the law
("to law" = training + final analysis + distillation). Ray starts once before the first row and is not
counted. A row that misses a target says "not reached" with the R² it got. Rows are appended to
``--results`` (JSON lines) as they finish; a later run skips rows already there, so an interrupted
benchmark continues where it stopped. The Markdown table at the end is what BENCHMARKS.md shows; below it,
the reference measured by the same benchmark: the paper's bottleneck model's time to R² 0.99 over the
Newtonian GN's, per system and dimension.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

from raysym import shards
from raysym.config import DistillConfig, SimulationConfig, TrainConfig
from raysym.distill_jobs import distill_trial
from raysym.distill_pool import DistillPool
from raysym.train import epoch_r2, run_trial

# The CPU recipes (benchmarks/recipe.py, BENCHMARKS.md "Training recipe"). ``steps`` (optimiser steps of
# the whole OneCycle schedule) is sized so that the schedule ends within the cap; training usually stops
# well before it.
RECIPES = {
    "newtonian": dict(model="newtonian", hidden=128, batch_size=64, lr=3e-3, steps=40_000),
    "bottleneck": dict(model="bottleneck", hidden=128, batch_size=64, lr=5e-4, steps=80_000),
    # the 2024 reproduction's linear schedule in the paper's units (raysym.regularizers), the recipe that
    # turned 2D spring's messages sparse (BENCHMARKS.md "Time to sparsity"); capped at --l1-cap-min
    "l1": dict(model="l1", l1_schedule="linear", hidden=128, batch_size=64, lr=1e-3, steps=300_000),
}
TARGETS = {"newtonian": 0.999, "bottleneck": 0.99, "l1": 0.99}
SPARSE_RATIO, SPARSE_SHARE = 10.0, 0.95  # issue 27's sparsity target (the paper's own ratio bar is 100)


def is_sparse(m: dict) -> bool:
    """An epoch's messages meet issue 27's sparsity target on the validation graphs."""
    return (m.get("val/sparsity_ratio") or 0) >= SPARSE_RATIO and (m.get("val/sparsity_share") or 0) >= SPARSE_SHARE


def dataset(root: Path, system: str, dim: int, sims: int, engine: str = "ray") -> Path:
    cfg = SimulationConfig(system=system, dim=dim, sims=sims)
    out = root / f"{system}-{dim}d-{sims}"
    shards.write_dataset(cfg, out, engine=engine)  # reuses an identical dataset (checksums verified)
    return out


def one_row(system: str, dim: int, model: str, args) -> dict:
    data = dataset(Path(args.data_root), system, dim, args.sims, args.engine)
    cap_s = 60 * {"newtonian": args.newtonian_cap_min, "l1": args.l1_cap_min}.get(model, args.cap_min)
    recipe = dict(RECIPES[model])
    if args.hidden is not None:
        recipe["hidden"] = args.hidden
    steps = recipe.pop("steps")
    epochs = max(
        1, math.ceil(steps / math.ceil(shards.training_graphs(data, TrainConfig.prune_k) / recipe["batch_size"]))
    )
    cfg = TrainConfig(data=str(data), seed=args.seed, epochs=epochs, device=args.device, **recipe)
    target = TARGETS[model]
    trial = Path(args.runs) / f"{system}-{dim}d-{model}"
    first: dict[float, float] = {}
    start = time.perf_counter()

    def record(m: dict) -> None:
        elapsed = time.perf_counter() - start
        r2 = epoch_r2(m)
        for level in (0.99, 0.999):
            if r2 >= level and level not in first:
                first[level] = elapsed
        if is_sparse(m) and "sparse" not in first:
            first["sparse"] = elapsed
        ratio, share = m.get("val/sparsity_ratio"), m.get("val/sparsity_share")
        print(
            f"  {system}-{dim}d {model} epoch {m['epoch'] + 1}: {elapsed:6.1f} s, validation R² {r2:.5f}"
            + (f", sparsity share {share:.3f} ratio {ratio:.3g}" if ratio is not None else ""),
            flush=True,
        )

    def stop(m: dict) -> bool:
        sparse_ok = model != "l1" or is_sparse(m)
        return (epoch_r2(m) >= target and sparse_ok) or time.perf_counter() - start >= cap_s

    metrics = run_trial(cfg, trial, callback=record, resume=False, until=stop)
    trained = time.perf_counter() - start
    # As `raysym distill` does: a pool of actors, one per CPU, started now (their CPUs would otherwise be
    # held while Ray Data simulates the next row's data) and stopped after.
    pool = DistillPool(os.cpu_count() or 1) if args.engine == "ray" else None  # None: one job after another
    try:
        summary = distill_trial(
            trial, DistillConfig(backend="operon", setting=args.setting, samples=args.samples), pool
        )
    finally:
        if pool is not None:
            pool.shutdown()
    total = time.perf_counter() - start
    recovered = bool(summary.get("distill/recovered"))
    return {
        "system": system,
        "dim": dim,
        "model": model,
        "epochs": metrics["epochs_done"],
        "stop": metrics["reason"] or "all epochs",
        "to_r2_0.99_s": first.get(0.99),
        "to_r2_0.999_s": first.get(0.999),
        "to_sparse_s": first.get("sparse"),
        "train_s": trained,
        "r2_force": metrics["messages/r2_force"],
        "r2_accel": metrics["messages/r2_accel"],
        "r2_force_all": metrics["messages/r2_force_all"],
        "r2_force_robust": metrics["messages/r2_force_robust"],
        "sparsity_ratio": metrics.get("messages/sparsity_ratio"),
        "sparsity_share": metrics.get("messages/sparsity_share"),
        "test_mae": metrics["test/mae"],
        "distill_s": total - trained,
        "recovered": recovered,
        "recovered_as": summary.get("distill/recovered_as"),
        "to_law_s": total if recovered else None,
        "formula_r2_force": summary.get("distill/r2_force"),
        "formula_r2_force_min": summary.get("distill/r2_force_min"),
        "formula_r2_accel_min": summary.get("distill/r2_accel_min"),
        "formula_condition_force": summary.get("distill/condition_force"),
        "formula_condition_accel": summary.get("distill/condition_accel"),
        "formula_r2_accel": summary.get("distill/r2_accel"),
        "formula_r2_force_all": summary.get("distill/r2_force_all"),
        "formula_r2_accel_all": summary.get("distill/r2_accel_all"),
        "edge_formulas": summary.get("distill/edge_formulas"),
        "composed_mae": summary.get("distill/test_mae"),
        "gn_mae": summary.get("distill/gn_test_mae"),
        "cap_s": cap_s,
        "target": target,
        "hidden": cfg.hidden,
        "device": args.device,
    }


def _s(value) -> str:
    return "not reached" if value is None else f"{value:.0f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| system | model | epochs | to R² 0.99 (s) | to R² 0.999 (s) | to sparse (s) | R² in-dist (force / accel) | "
        "R² all edges | R² robust | sparsity share, ratio | law recovered | to law (s) | formula R² in-dist / all "
        "edges |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        which = "force" if r["recovered_as"] == "force" else "accel"
        formula = (
            (r["formula_r2_force"], r["formula_r2_force_all"])
            if which == "force"
            else (r["formula_r2_accel"], r["formula_r2_accel_all"])
        )
        formula_cell = "-" if formula[0] is None else f"{formula[0]:.4f} / {formula[1]:.4f}"
        if r.get(f"formula_r2_{which}_min") is not None:  # the verdict's own number: the worst formula
            formula_cell = f"{r[f'formula_r2_{which}_min']:.4f} (worst formula) / {formula[1]:.4f}"
        sparsity = "-" if r["sparsity_ratio"] is None else f"{r['sparsity_ratio']:.3g}"
        if r.get("sparsity_share") is not None and r["sparsity_ratio"] is not None:
            sparsity = f"{r['sparsity_share']:.3f}, {r['sparsity_ratio']:.3g}"
        lines.append(
            f"| {r['system']}-{r['dim']}d | {r['model']} | {r['epochs']} | {_s(r['to_r2_0.99_s'])} | "
            f"{_s(r['to_r2_0.999_s'])} | {_s(r.get('to_sparse_s')) if r['model'] == 'l1' else '-'} | "
            f"{r['r2_force']:.4f} / {r['r2_accel']:.4f} | {r['r2_force_all']:.4f} | {r['r2_force_robust']:.4f} | "
            f"{sparsity} | "
            f"{r['recovered_as'] if r['recovered'] else 'no'} | {_s(r['to_law_s'])} | {formula_cell} |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict]) -> str:
    """The reference measured in the same benchmark: for each system and dimension with both rows, the
    paper's bottleneck model's time to in-distribution R² 0.99 over the Newtonian GN's (a capped time
    when the bottleneck never got there, shown as a lower bound)."""
    lines = [
        "| system | newtonian to R² 0.99 (s) | bottleneck to R² 0.99 (s) | ratio (bottleneck / newtonian) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r["model"] != "newtonian" or r["to_r2_0.99_s"] is None:
            continue
        ref = next(
            (b for b in rows if b["model"] == "bottleneck" and (b["system"], b["dim"]) == (r["system"], r["dim"])), None
        )
        if ref is None:
            continue
        if ref["to_r2_0.99_s"] is None:
            cell, ratio = f"not reached in {ref['train_s']:.0f}", f"> {ref['train_s'] / r['to_r2_0.99_s']:.0f}"
        else:
            cell, ratio = f"{ref['to_r2_0.99_s']:.0f}", f"{ref['to_r2_0.99_s'] / r['to_r2_0.99_s']:.1f}"
        lines.append(f"| {r['system']}-{r['dim']}d | {r['to_r2_0.99_s']:.0f} | {cell} | {ratio} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--systems", nargs="+", default=["spring", "charge", "r1", "r2"])
    ap.add_argument("--dims", nargs="+", type=int, default=[2, 3])
    ap.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--sims", type=int, default=2000, help="training simulations per dataset (default 2000)")
    ap.add_argument(
        "--cap-min", type=float, default=15.0, help="training cap of the paper models, minutes (default 15)"
    )
    ap.add_argument(
        "--newtonian-cap-min", type=float, default=5.0, help="training cap of the newtonian model, minutes (default 5)"
    )
    ap.add_argument("--l1-cap-min", type=float, default=60.0, help="training cap of the L1 model, minutes (default 60)")
    ap.add_argument("--setting", default="thorough", help="Operon setting for distillation (default thorough)")
    ap.add_argument(
        "--samples", type=int, default=2000, help="edges per distillation job (default 2000, as the quickstart)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=None, help="MLP width of every recipe (default: the recipe's, 128)")
    ap.add_argument("--device", default="auto", help="where training runs: auto, cpu or cuda (default auto)")
    ap.add_argument(
        "--engine", choices=("ray", "local"), default="ray", help="local: no Ray (simulation and distillation here)"
    )
    ap.add_argument("--data-root", default="data/bench")
    ap.add_argument("--runs", default="runs/time_to_law")
    ap.add_argument("--results", default="benchmarks/results/time_to_law.jsonl")
    ap.add_argument(
        "--table-only", action="store_true", help="print the tables of the rows in --results; train nothing"
    )
    args = ap.parse_args()

    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    if not args.table_only:
        run_missing(done, results, args)
    wanted = [r for r in done if r["system"] in args.systems and r["dim"] in args.dims and r["model"] in args.models]
    ordered = sorted(
        wanted, key=lambda r: (r["model"] != "newtonian", r["model"], r["dim"], args.systems.index(r["system"]))
    )
    print(table(ordered))
    print(ratios(ordered))


def run_missing(done: list[dict], results: Path, args) -> None:
    """Run every requested row not yet in ``done``, appending each to ``results`` as it finishes."""
    if args.engine == "ray":
        from raysym._ray import ensure_ray

        ensure_ray(num_cpus=os.cpu_count())
    print(
        f"machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}"
    )
    for model in args.models:
        for dim in args.dims:
            for system in args.systems:
                if any((r["system"], r["dim"], r["model"]) == (system, dim, model) for r in done):
                    continue
                row = one_row(system, dim, model, args)
                done.append(row)
                with results.open("a") as fh:
                    fh.write(json.dumps(row, default=float) + "\n")
                print(table([row]).splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
