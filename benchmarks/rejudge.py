"""Re-judge the stored distillations with the law verdict of raysym.verdict (every formula's R² >= 0.99 and a
well-conditioned map of full rank, decided in distribution), beside the verdict they were given (the mean R²
over the formulas >= 0.99, no rank check).

Usage:
    python benchmarks/rejudge.py                      # every stored distillation
    python benchmarks/rejudge.py --sims 200           # fewer fresh simulations (faster)

Stored distillations: the rows of benchmarks/results/time_to_law_issue15.jsonl (time_to_law.py before issue
27) and the law table of benchmarks/results/cpu_table_issue15/report.md (its formulas, where the report did
not shorten them with "…"). Each set of edge formulas is evaluated on fresh test simulations that no network
or symbolic regression has seen (the same system, dimension and simulation settings as the trial's data,
another seed), judged inside the trial's pruning bounds (k = 1.5 on the trial's own training set) by both
rules. The table lists both verdicts, the mean and smallest R² of the formulas, the fitted map's condition
number, and says which verdicts changed.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from raysym import shards
from raysym.config import SimulationConfig
from raysym.distill_jobs import verdict
from raysym.simulate import simulate
from raysym.verdict import RECOVERED_R2

FRESH_SEED = 27  # the fresh test simulations' seed (the trials' data used seed 0)


def cpu_table_rows(report: Path) -> list[dict]:
    """(system, dim, model, formulas, verdict) of each row of the report's law table with every formula whole."""
    rows, in_table = [], False
    for line in report.read_text().splitlines():
        if line.startswith("| system | model | k | sparse |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if not in_table or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        system, dim = cells[0].rsplit("-", 1)
        law, formulas = cells[5], cells[7]
        rows.append(
            {
                "source": "cpu_table",
                "system": system,
                "dim": int(dim[0]),
                "model": cells[1],
                "formulas": None if "…" in formulas else [f.strip() for f in formulas.split(";")],
                "stored": "no" if law.startswith("no") else re.search(r"as ([a-z/]+)", law).group(1),
            }
        )
    return rows


def time_to_law_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        rows.append(
            {
                "source": "time_to_law",
                "system": r["system"],
                "dim": r["dim"],
                "model": r["model"],
                "formulas": r["edge_formulas"],
                "stored": r["recovered_as"] if r["recovered"] else "no",
            }
        )
    return rows


def rejudge(row: dict, data_root: Path, sims: int) -> dict:
    cfg = SimulationConfig(system=row["system"], dim=row["dim"], sims=2000)
    data = data_root / f"{row['system']}-{row['dim']}d-2000"
    shards.write_dataset(cfg, data)  # the trial's own data (reused when present): its pruning bounds
    bounds = shards.prune_bounds(shards.read_manifest(data), 1.5)
    fresh_cfg = SimulationConfig(system=row["system"], dim=row["dim"], sims=sims, seed=FRESH_SEED)
    fresh = simulate(fresh_cfg, "test", np.arange(sims))
    v = verdict(row["formulas"], fresh, row["system"], bounds)
    # the rule before: the mean R² over the formulas, against force or force/mass, no rank check
    mean_rule = max(v["r2_force"], v["r2_accel"]) >= RECOVERED_R2
    old = ("force" if v["r2_force"] >= v["r2_accel"] else "force/mass") if mean_rule else "no"
    new = v["which"] if v["recovered"] else "no"
    target = "force" if v["r2_force"] >= v["r2_accel"] else "accel"
    return {
        **row,
        "old_rule": old,
        "new_rule": new,
        "r2_mean": v[f"r2_{target}"],
        "r2_min": v[f"r2_{target}_min"],
        "condition": v[f"condition_{target}"],
        "target": target,
        "in_range_graphs": v["in_range_graphs"],
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| source | system | model | stored verdict | mean rule, fresh sims | new verdict | R² mean / min (target) | "
        "condition | changed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["formulas"] is None:
            lines.append(
                f"| {r['source']} | {r['system']}-{r['dim']}d | {r['model']} | {r['stored']} | formulas shortened "
                "in the report: not re-judged | | | | |"
            )
            continue
        changed = "**yes**" if (r["new_rule"] == "no") != (r["stored"] == "no") else "no"
        target = "force÷m" if r["target"] == "accel" else "force"
        lines.append(
            f"| {r['source']} | {r['system']}-{r['dim']}d | {r['model']} | {r['stored']} | {r['old_rule']} | "
            f"{r['new_rule']} | {r['r2_mean']:.4f} / {r['r2_min']:.4f} ({target}) | {r['condition']:.3g} | {changed} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=500, help="fresh test simulations per system (default 500)")
    ap.add_argument("--data-root", default="data/bench")
    ap.add_argument("--time-to-law", default="benchmarks/results/time_to_law_issue15.jsonl")
    ap.add_argument("--cpu-table", default="benchmarks/results/cpu_table_issue15/report.md")
    ap.add_argument("--out", default="benchmarks/results/rejudged.jsonl")
    args = ap.parse_args()
    rows = time_to_law_rows(Path(args.time_to_law)) + cpu_table_rows(Path(args.cpu_table))
    judged = [rejudge(r, Path(args.data_root), args.sims) if r["formulas"] else r for r in rows]
    Path(args.out).write_text("".join(json.dumps(r, default=float) + "\n" for r in judged))
    print(table(judged))


if __name__ == "__main__":
    main()
