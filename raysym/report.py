"""``raysym report``: a finished (or half-finished) sweep as the paper's tables and figures.

read the sweep from MLflow (raysym.report_data) -> the tables its trial kind lays out (N-body:
raysym.report_nbody, halos: raysym.report_halos), with the published numbers in adjacent columns ->
the kind's figures (raysym.report_figures) -> report.md and a self-contained report.html (figures
embedded), written to temporary names and renamed.
"""

from __future__ import annotations

import base64
import html
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from raysym import report_figures as figs
from raysym.report_cells import (
    EMPTY,
    REFUSED,
    Formulas,
    Section,
    Table,
)
from raysym.report_data import (
    Published,
    Sweep,
    halo_sample,
    load_sweep,
    message_sample,
    rollout_result,
    stds_by_epoch,
)
from raysym.trial_folder import write_text

# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(text: Any) -> str:
    """Text as Markdown shows it, never as markup: Markdown's own characters backslash-escaped, HTML's
    (<, >, &) as entities, one line. Every name, tag and value in a report comes from a store that others
    may write to; a report.md opened in a viewer must not run or hide anything."""
    one_line = str(text).replace("\r", " ").replace("\n", " ")
    return html.escape(_MD_SPECIAL.sub(r"\\\1", one_line), quote=False)


def _md_cell(cell: Any) -> str:
    """A table cell: formulas raysym read as a code span (legible as written), anything else escaped."""
    if isinstance(cell, Formulas) and cell.html and "`" not in cell and REFUSED not in cell:
        return "`" + str(cell).replace("|", "\\|") + "`"
    return md(cell)


def table_markdown(t: Table) -> list[str]:
    lines = [f"**{md(t.title)}**", "", "| " + " | ".join(md(h) for h in t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return lines + [""] + ([f"_{md(t.note)}_", ""] if t.note else [])


def to_markdown(title: str, intro: str, sections: list[Section], out: Path) -> str:
    lines = [f"# {md(title)}", "", md(intro), ""]
    for s in sections:
        lines += [f"## {md(s.title)}", ""] + ([md(s.text), ""] if s.text else [])
        for t in s.tables:
            lines += table_markdown(t)
        for caption, png in s.figures:
            lines += [f"![{md(caption)}]({png.relative_to(out).as_posix()})", "", f"_{md(caption)}_", ""]
    return "\n".join(lines)


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px "
    "7px;text-align:left}"
    "th{background:#f3f3f3}.note{color:#555;font-size:13px}img{max-width:100%}code{font-size:12px}"
)


def _html_cell(cell: Any) -> str:
    """A table cell in HTML: formulas as MathML (rendered by the browser), anything else as escaped text."""
    return cell.html if isinstance(cell, Formulas) and cell.html else html.escape(str(cell))


def to_html(title: str, intro: str, sections: list[Section]) -> str:
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1><p>{e(intro)}</p>",
    ]
    for s in sections:
        parts.append(f"<h2>{e(s.title)}</h2>" + (f"<p>{e(s.text)}</p>" if s.text else ""))
        for t in s.tables:
            head = "".join(f"<th>{e(h)}</th>" for h in t.header)
            body = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in t.rows)
            parts.append(
                f"<h3>{e(t.title)}</h3><table><tr>{head}</tr>{body}</table>"
                + (f"<p class='note'>{e(t.note)}</p>" if t.note else "")
            )
        for caption, png in s.figures:  # embedded, so the file stands alone
            data = base64.b64encode(png.read_bytes()).decode()
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{e(caption)}'><figcaption "
                f"class='note'>{e(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


_write = write_text  # atomic (raysym.trial_folder)


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


@dataclass
class ReportOutcome:
    markdown: Path
    html: Path
    sweep: Sweep
    sections: list[Section]
    seconds: dict[str, float]


def _setting_text(values: dict[str, Any]) -> str:
    """A config section as "key: value; ...": a list is a grid dimension, shown as [a, b]."""
    return "; ".join(f"{k}: {v}" for k, v in values.items() if v not in (None, {}, [])) or "defaults"


def settings_section(sweep: Sweep) -> Section:
    """What produced the results: the sweep's settings (its resolved YAML), when and by which raysym."""
    import datetime

    from raysym.track import source_tags

    def when(seconds: float | None) -> str:
        if seconds is None:
            return EMPTY
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def made_by(tags: dict[str, str]) -> str:
        commit = tags.get("mlflow.source.git.commit")
        text = f"raysym {tags.get('raysym.version', '?')}"
        text += f", commit {commit[:12]}" if commit else " (no git commit recorded)"
        return text + (" with uncommitted changes" if tags.get("raysym.git_dirty") else "")

    cfg = sweep.config or {}
    rows = [
        [
            "sweep",
            f"'{sweep.name}', MLflow run {sweep.run_id} ({sweep.status.lower()}), started {when(sweep.start_time)}",
        ],
        ["run by", made_by(sweep.tags)],
        ["report", f"written {when(time.time())} by {made_by(source_tags())}"],
        ["trial kind", sweep.kind().name],
    ]
    for section in ("data", "trials", "halos"):
        if cfg.get(section):
            rows.append([section, _setting_text({k: v for k, v in cfg[section].items() if k != "root"})])
    search = cfg.get("search", {})
    if search:
        rows.append(["search", _setting_text(search)])
    if cfg.get("scheduler"):
        rows.append(["scheduler", _setting_text(cfg["scheduler"])])
    distill = cfg.get("distill")
    rows.append(["distillation", _setting_text(distill) if distill else "off"])
    if cfg.get("resources"):
        rows.append(["resources", _setting_text(cfg["resources"])])
    note = (
        "The sweep's resolved YAML (the sweep.json artifact of its MLflow run); settings left out take the defaults "
        "of raysym.config. A list is a grid dimension."
        if cfg
        else "The sweep's YAML could not be read back from MLflow (sweep.json): only its runs are known."
    )
    return Section("Settings", tables=[Table("What produced these results", ["", "settings"], rows, note)])


def table_sections(sweep: Sweep, pub: Published) -> list[Section]:
    """Every table of the report, in sections, as the sweep's trial kind lays them out; the last section
    lists every trial."""
    return sweep.kind().report_sections(sweep, pub)


def draw_figures(sweep: Sweep, folder: Path) -> list[tuple[str, Path | None]]:
    """Every figure of the report as (caption, PNG written in ``folder``, or None: nothing to draw)."""
    folder.mkdir(parents=True, exist_ok=True)
    metric, _ = sweep.search_metric()
    drawers = {  # called only for the figures the sweep's trial kind lists (TrialKind.figures)
        "l1": lambda: (
            "L1 coefficient at the end of each epoch, per schedule: the penalty each schedule put on the messages "
            "as training went on",
            figs.l1_schedules(sweep, folder),
        ),
        "loss": lambda: (
            "Training loss and test MAE per epoch, every trial. Look for curves that flatten (trained enough) and "
            "test MAE that follows the training loss (no overfitting)",
            figs.loss_curves(sweep, folder),
        ),
        "force": lambda: (
            (
                "Top message components against their linear fit on the true force or force/mass (first trial of each "
                "group), fitted on in-distribution test edges (blue); edges outside the training range in grey, same "
                "fit; "
                "panel R² on the stored 2,000-edge sample, the tables' on every in-distribution edge. Points on the "
                "diagonal mean the message is a linear transformation of the force: the network learned the law"
            ),
            figs.messages_vs_force(sweep, folder, lambda t: message_sample(sweep.uri, t)),
        ),
        "halo": lambda: (
            "The messages' leading direction against the true edge term (first trial of each group), with its "
            "least-squares line: points on a line mean the network learned the edge function",
            figs.halo_messages(sweep, folder, lambda t: halo_sample(sweep.uri, t)),
        ),
        "stds": lambda: (
            "The 15 largest message standard deviations, box plots across seeds (points for a single trial). "
            "Look for a cliff after the first dim components: sparse messages drop by 100x or more there",
            figs.message_stds(sweep, folder),
        ),
        "stds_epochs": lambda: (
            "Message standard deviations over the epochs on the validation graphs (first trial of each group): the "
            "components that end largest, thick for the top dim, dashed the largest of the rest, dotted the sparsity "
            "share (the top dim's part of the summed stds, right axis). Look for the top dim separating from the "
            "rest and the share climbing towards 1 as the L1 penalty works",
            figs.stds_over_epochs(sweep, folder, lambda t: stds_by_epoch(sweep.uri, t)),
        ),
        "prune": lambda: (
            "R² of the messages against the pruning factor k (smaller k removes more outlier graphs from training): "
            "look for the k where the R² is highest",
            figs.r2_vs_prune(sweep, folder),
        ),
        "ood": lambda: (
            "Out of distribution (raysym rollout): each model's mean position error against the simulator's, step by "
            "step from the same fresh initial states, per regime (first rolled-out trial of each group). The Occam "
            "claim holds where a dashed line (the symbolic model) stays below the solid line of its colour (the GN)",
            figs.ood_rollouts(sweep, folder, lambda t: rollout_result(sweep.uri, t)),
        ),
        "optuna": lambda: (
            f"Optuna objective ({metric}) against each schedule-shape parameter, one point per trial: a trend says "
            "which part of the schedule matters",
            figs.optuna_shapes(sweep, folder, metric),
        ),
    }
    return [drawers[name]() for name in sweep.kind().figures]


def build_sections(
    sweep: Sweep, pub: Published, out: Path, say: Callable[[str], None] = lambda m: None
) -> list[Section]:
    """The report's sections: the tables, then the figures (written under ``out/figures``), then every trial."""
    sections = [settings_section(sweep)] + table_sections(sweep, pub)
    say("drawing figures")
    drawn = draw_figures(sweep, out / "figures")
    absent = [caption for caption, path in drawn if path is None]
    figures = Section(
        "Figures",
        text=("Not drawn (nothing to show in this sweep): " + "; ".join(absent) + ".") if absent else "",
        figures=[(c, p) for c, p in drawn if p is not None],
    )
    return sections[:-1] + [figures, sections[-1]]


def claim_report_folder(folder: Path) -> None:
    """Refuse (UserError) to write a report over files that are not a raysym report: an earlier raysym
    report there is rewritten, a report.md or report.html of the user's is not."""
    from raysym.errors import UserError

    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder. Give --out a folder for the report.")
    for name, mark in (("report.md", "# raysym report:"), ("report.html", "<title>raysym report:")):
        path = folder / name
        if path.exists():
            head = path.read_bytes()[:2000].decode("utf-8", "replace")
            if mark not in head:
                raise UserError(
                    f"{path} exists and is not a raysym report; writing the report there would overwrite it. "
                    "Give --out another folder."
                )


def _folder_name(name: str) -> bool:
    """One folder name, never a path: the sweep name rule of raysym.config."""
    return bool(name) and name.strip(".") != "" and len(name) <= 100 and all(c.isalnum() or c in "-_." for c in name)


def make_report(
    uri: str,
    sweep: str,
    out: str | Path | None = None,
    *,
    experiment: str | None = None,
    published_csv: str | Path | None = None,
    say: Callable[[str], None] = print,
) -> ReportOutcome:
    """Read ``sweep`` (a name or parent run id) from the MLflow store at ``uri``; write report.md and
    report.html (plus figures/) to ``out`` (default ``reports/<sweep name>``). The CLI's and the tests' entry."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    pub = Published.load(published_csv)
    say(f"reading sweep '{sweep}' from {uri}")
    data = load_sweep(uri, sweep, experiment)
    seconds["read"] = time.perf_counter() - start
    counts: dict[str, int] = defaultdict(int)
    for t in data.trials:
        counts[t.status.lower()] += 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    say(f"{len(data.trials)} trial(s): {summary}")
    from raysym.errors import UserError

    if out is None and not _folder_name(data.name):  # a tag anyone with access to the store may have set
        raise UserError(
            f"The sweep's name as MLflow records it, {data.name[:80]!r}, is not a plain folder name (letters, digits, "
            "'-', '_', '.'), so it cannot name the report's folder under reports/. Pass --out (out=) to choose one."
        )
    folder = Path(out) if out else Path("reports") / data.name
    claim_report_folder(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"The report's folder {folder} cannot be created ({exc.strerror}). Choose another --out."
        ) from None
    mid = time.perf_counter()
    sections = build_sections(data, pub, folder, say)
    seconds["build"] = time.perf_counter() - mid
    title = f"raysym report: sweep '{data.name}'"
    intro = (
        f"{len(data.trials)} trial(s) ({summary}); sweep run {data.run_id} ({data.status.lower()}) in {uri}, "
        f"experiment {data.experiment_id}. Published values: Cranmer et al. 2020 and the 2024 reproduction "
        f"(raysym/published.csv). {EMPTY} marks a cell the publication does not have."
    )
    md, page = folder / "report.md", folder / "report.html"
    _write(md, to_markdown(title, intro, sections, folder))
    _write(page, to_html(title, intro, sections))
    seconds["total"] = time.perf_counter() - start
    say(f"report: {md} and {page} ({seconds['total']:.1f} s)")
    return ReportOutcome(md, page, data, sections, seconds)
