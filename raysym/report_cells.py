"""The cells and tables both report kinds share (N-body sweeps in raysym.report, halo sweeps in
raysym.report_halos): table and section containers, rows that group a sweep's trials, and the cells
that summarise them (mean ± std, counts, verdicts, formulas). Both import this module; it imports
neither.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from raysym.report_data import Published, Sweep, Trial, mean_std

IGNORED_IN_ROWS = {"system", "dim", "model", "l1_schedule", "kl_prior", "seed", "prune_k"}


EMPTY = "—"  # a cell the published source does not have


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png)


@dataclass
class Row:
    system: str
    dim: int
    model: str
    prune_k: float | None
    other: str  # other swept settings, "lr=0.001"
    trials: list[Trial]

    @property
    def k(self) -> str:
        return "none" if self.prune_k is None else f"{self.prune_k:g}"

    @property
    def finished(self) -> list[Trial]:
        return [t for t in self.trials if t.finished]

    def lead(self) -> list[str]:
        cells = [f"{self.system}-{self.dim}d", self.model, self.k]
        return cells + [self.other] if self.other is not None else cells


def rows_of(sweep: Sweep, keep: Callable[[Trial], bool] = lambda t: True) -> list[Row]:
    others = [k for k in sweep.swept() if k not in IGNORED_IN_ROWS and not k.startswith("schedule_shape.")]
    grouped: dict[tuple, list[Trial]] = defaultdict(list)
    for t in sweep.trials:
        if keep(t):
            other = ", ".join(f"{k}={t.setting(k)}" for k in others)
            grouped[(t.system, t.dim, t.model, t.prune_k, other)].append(t)
    order = sorted(grouped, key=lambda g: (g[0], g[1], g[2], g[3] is None, g[3] or 0.0, g[4]))
    return [Row(*g[:4], g[4] if others else None, grouped[g]) for g in order]


def lead_header(sweep: Sweep) -> list[str]:
    others = [k for k in sweep.swept() if k not in IGNORED_IN_ROWS and not k.startswith("schedule_shape.")]
    return ["system", "model", "k"] + (["other settings"] if others else [])


def why_missing(trials: list[Trial]) -> str:
    """What happened to a row's trials when none finished: 'failed (2)', 'not run', ..."""
    counts: dict[str, int] = defaultdict(int)
    for t in trials:
        counts[t.status.lower()] += 1
    return ", ".join(f"{status}" + (f" ({n})" if n > 1 else "") for status, n in sorted(counts.items()))


def stat_cell(row: Row, metric: str, digits: int = 3) -> str:
    """Mean ± std over the row's finished trials that have ``metric``; n when not every trial counts."""
    values = [t.metrics[metric] for t in row.finished if metric in t.metrics]
    summary = mean_std(values)
    if summary is None:
        return why_missing(row.trials) if not row.finished else "not recorded"
    mean, std = summary
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(values) > 1 else "")
    if len(values) < len(row.trials):
        text += f" ({len(values)} of {len(row.trials)})"
    return text


def count_cell(row: Row, metric: str) -> str:
    """For a 0/1 metric: 'yes' / 'no' for one trial, '2 of 3' trials where it is 1 for several."""
    values = [t.metrics[metric] for t in row.finished if metric in t.metrics]
    if not values:
        return why_missing(row.trials) if not row.finished else "not recorded"
    hits = sum(v >= 0.5 for v in values)
    return ("yes" if hits else "no") if len(values) == 1 else f"{hits} of {len(values)}"


def published(
    pub: Published, source: str, metric: str, row: Row, table: str | None = None, model: str | None = None
) -> str:
    value = pub.value(source, metric, row.system, row.dim, model or row.model, table)
    if value is None:
        return EMPTY
    return {"1": "yes", "0": "no"}.get(value, value) if metric in ("law_recovered", "sparse") else value


def verdict_of_trial(t: Trial) -> str:
    """What a trial's distilled law matched (force, force/mass, ...), or EMPTY."""
    return t.distill.get("distill/recovered_as", EMPTY) if t.distill else EMPTY


# The per-trial columns after key, trial, seed and status: (header, cell of a trial).
TRIAL_COLUMNS: list[tuple[str, Callable[[Trial], str]]] = [
    ("test MAE", lambda t: num(t.metrics.get("test/mae"))),
    ("R² vs force, in distribution", lambda t: num(t.metrics.get("messages/r2_force"))),
    ("all edges", lambda t: num(t.metrics.get("messages/r2_force_all"))),
    ("sparse", lambda t: {1.0: "yes", 0.0: "no"}.get(t.metrics.get("messages/sparse"), EMPTY)),
    ("law", verdict_of_trial),
]


def trials_table(sweep: Sweep, columns: list[tuple[str, Callable[[Trial], str]]] = TRIAL_COLUMNS) -> Table:
    rows = [
        [t.key, t.label, t.seed, t.status.lower()] + [cell(t) for _, cell in columns] + [t.run_id or EMPTY]
        for t in sweep.trials
    ]
    return Table("Every trial", ["key", "trial", "seed", "status"] + [h for h, _ in columns] + ["MLflow run"], rows)


def num(value: float | None) -> str:
    return EMPTY if value is None else f"{value:.4f}"


def short(formula: str, width: int = 90) -> str:
    return formula if len(formula) <= width else formula[: width - 1] + "…"


REFUSED = "(not a formula raysym writes, shown as text:)"


class Formulas(str):
    """A cell of formulas: plain text (Markdown, the console), and ``html``, the same formulas as MathML
    that the HTML report shows as mathematics."""

    html: str = ""


def formula_cell(equation: str) -> str:
    """One formula as a cell: plain text with 4 significant digits, and MathML for the HTML report."""
    import html

    from raysym.distill import mathml, readable

    try:
        cell = Formulas(readable(equation, []))
        cell.html = mathml(equation, [])
    except ValueError:  # edited in the store: shown as the text it is, never read as a formula
        cell = Formulas(f"{REFUSED} {equation}")
        cell.html = html.escape(cell)
    return cell


def formulas(tag: str, width: int = 160) -> str:
    """A distillation run's formulas tag (a list written as text) as "f1; f2", constants to 4 significant
    digits, shortened to ``width`` characters in text; whole, as mathematics, in the HTML report."""
    import ast
    import html

    from raysym.distill import mathml, readable

    try:
        found = ast.literal_eval(tag) if tag else []
    except (ValueError, SyntaxError):
        return short(tag, width)
    found = found if isinstance(found, list) else [str(found)]
    shown, rendered = [], []
    for eq in found:
        try:
            shown.append(readable(eq, []))
            rendered.append(mathml(eq, []))
        except ValueError:  # edited in the store: shown as the text it is, never read as a formula
            shown.append(f"{REFUSED} {eq}")
            rendered.append(html.escape(shown[-1]))
    cell = Formulas(short("; ".join(shown), width))
    cell.html = "; ".join(rendered)
    return cell
