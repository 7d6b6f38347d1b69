"""The sweep's results as a table: one row per trial (its settings, status and final metrics), printed on
the console, written to ``sweep_results.csv`` in the sweep's Tune folder, and followed by its distilled laws."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raysym import trial_kind
from raysym.sweep_tracking import law_lines
from raysym.trial_folder import atomic_path

if TYPE_CHECKING:
    from raysym.sweep_plan import TrialSpec

RESULTS_CSV = "sweep_results.csv"


def row_of(result, specs: dict[str, TrialSpec], interrupted: set[str] = frozenset()) -> dict[str, Any]:
    config = result.config or {}
    spec = dataclasses.asdict(specs[config["key"]]) if config.get("key") in specs else {}
    m = result.metrics or {}
    status = m.get("status") or ("crashed" if result.error else "stopped")
    if m.get("trial_id") in interrupted:
        status = "interrupted"
    elif result.error is None and not m.get("done_training"):
        status = "stopped early"  # by the ASHA scheduler
    sampled = {k.split(".", 1)[1]: round(v, 4) for k, v in config.items() if k.startswith("schedule_shape.")}
    kind = trial_kind.get(spec.get("kind", trial_kind.LEGACY_KIND))
    return {
        "trial": spec.get("key", "?") + (f"-{m.get('trial_id', '')}" if sampled else ""),
        **kind.table_names(spec, sampled),
        "prune_k": spec.get("prune_k"),
        "status": status,
        "epochs": m.get("epochs_done", m.get("epoch")),
        "test_mae": m.get("test/mae"),
        "test_mae_in": m.get("test/mae_in_range"),
        "r2_force": m.get("messages/r2_force"),
        "in_range": m.get("messages/in_range_fraction"),
        "r2_force_all": m.get("messages/r2_force_all"),
        "r2_accel": m.get("messages/r2_accel"),
        # n/a: the messages carry no sparsity prior (bottleneck, standard, ...), so none is asked of them
        "sparse": "n/a" if "messages/sparse" in m and m["messages/sparse"] is None else m.get("messages/sparse"),
        "share": m.get("messages/sparsity_share") if m.get("messages/sparse") is not None else None,
        "r2_edge": m.get("messages/r2_vs_true_edge"),
        "reason": m.get("reason") or (str(result.error).splitlines()[0] if result.error else ""),
        "trial_id": m.get("trial_id"),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else str(value)
    return "-" if value is None else str(value)


def results_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """The console table of a sweep: ``columns`` are its trial kind's (TrialKind.results_columns)."""
    cols = list(columns)
    if any("law" in r for r in rows):
        cols.append("law")  # the distillation verdict: force, force/mass, none
    cells = [[_fmt(r[c]) for c in cols] for r in sorted(rows, key=lambda r: r["trial"])]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(row) for row in cells)])


def laws_text(rows: list[dict[str, Any]], summaries: dict[str, dict[str, Any]]) -> str:
    """The distilled laws of the rows' trials, recovered ones first."""
    lines = [
        "Laws: the distilled edge formulas count as recovered when, on unseen test simulations inside the training "
        "range, together they are a linear transformation of the true force (or force / receiver mass): every "
        "formula with R² >= 0.99, spanning all dim directions (condition number <= 10)."
    ]
    distilled = [r for r in rows if r.get("trial_id") in summaries]
    distilled.sort(key=lambda r: (not summaries[r["trial_id"]].get("distill/recovered"), r["trial"]))
    for r in distilled:
        body = law_lines(summaries[r["trial_id"]], r.get("dim") or 3)
        lines += [f"{r['trial']} {r['system']} {r['model']}: {body[0]}", *body[1:]]
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], path: str) -> None:
    if "://" in path or not rows:
        return
    with atomic_path(Path(path) / RESULTS_CSV) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
