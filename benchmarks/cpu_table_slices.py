"""The paper's tables from `tune_configs/cpu_table.yaml` run in slices (`raysym sweep ... --only`), one
`raysym report` per slice kept in benchmarks/results/cpu_table_issue27/<slice>/report.md.

A slice's report lists the grid's other cells as "not run"; this takes from each report the rows of the
cells its slice ran (the paper's Table 1 and Table 5, and the law-and-sparsity table), puts them together by
system, and counts what the issue asks for: laws recovered by the paper's models (bottleneck, L1) out of
the cells run (the paper: 14 of 16) and sparse L1 cells (share >= 0.95 and ratio >= 10) out of those run.

    python benchmarks/cpu_table_slices.py            # markdown on stdout, for the README and docs/results.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "results" / "cpu_table_issue27"
TABLES = (
    "**The paper's Table 1: R² of the messages against the force**",
    "**The paper's Table 5: was the correct law recovered?**",
    "**Law recovered and sparsity reached**",
)


def table(text: str, title: str) -> tuple[list[str], list[str]]:
    """(header lines, data rows) of the markdown table under ``title``."""
    lines = text.splitlines()
    start = lines.index(title) + 2
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start : start + 2], lines[start + 2 : end]


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(ROOT), help="folder of the slices' report folders")
    args = parser.parse_args()
    reports = sorted(Path(args.root).glob("*/report.md"))
    if not reports:
        raise SystemExit(f"no slice reports under {args.root}")
    print(f"Slices: {', '.join(r.parent.name for r in reports)}\n")
    merged: dict[str, tuple[list[str], dict[str, str]]] = {}
    for report in reports:
        text = report.read_text()
        for title in TABLES:
            header, rows = table(text, title)
            kept = merged.setdefault(title, (header, {}))[1]
            for row in rows:
                c = cells(row)
                if "not run" in row:
                    continue  # cells another slice runs (slices by system and dim run whole rows)
                key = " | ".join(c[:2]) if title == TABLES[2] else c[0]
                kept[key] = row
    for title in TABLES:
        header, rows = merged[title]
        print(title + "\n")
        print("\n".join(header + [rows[k] for k in sorted(rows)]) + "\n")
    # Counts: laws per model, then over the paper's models (bottleneck, L1)
    header, rows = merged[TABLES[2]]
    names = cells(header[0])
    per_model: dict[str, list[int]] = {}  # model -> [laws, cells run]
    sparse = 0
    for row in rows.values():
        c = dict(zip(names, cells(row)))
        tally = per_model.setdefault(c["model"], [0, 0])
        tally[0] += c["law recovered"].startswith("yes")
        tally[1] += 1
        if c["model"].startswith("l1"):
            sparse += float(c["sparsity share"]) >= 0.95 and float(c["sparsity ratio"]) >= 10
    paper = [t for m, t in per_model.items() if m == "bottleneck" or m.startswith("l1")]
    laws, cells_run = sum(t[0] for t in paper), sum(t[1] for t in paper)
    l1_run = sum(t[1] for m, t in per_model.items() if m.startswith("l1"))
    print(
        f"Paper models: laws recovered in {laws} of the {cells_run} cells run (the paper: 14 of 16); "
        f"sparse L1 (share >= 0.95 and ratio >= 10) in {sparse} of the {l1_run} L1 cells run (of 8)."
    )
    print("Laws by model: " + "; ".join(f"{m} {n} of {run}" for m, (n, run) in sorted(per_model.items())) + ".")


if __name__ == "__main__":
    main()
