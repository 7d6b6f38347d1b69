"""The tables of a halo-catalog sweep's report (raysym.report calls these when the sweep's trials are
node-level GNs on halo catalogs).

Rows group trials by catalog and every swept setting except the seed, so a row is the mean over seeds.
Neither publication's dark-matter numbers (Quijote) are in raysym/published.csv, so there is no
published column: on synthetic catalogs the truth is known instead, and the tables judge against it.
"""

from __future__ import annotations

from collections import defaultdict

from raysym.report_cells import (
    EMPTY,
    Row,
    Section,
    Table,
    count_cell,
    formulas,
    num,
    stat_cell,
    trials_table,
    verdict_of_trial,
    why_missing,
)
from raysym.report_data import Sweep, mean_std


def halo_rows(sweep: Sweep) -> tuple[list[str], list[Row]]:
    """(the settings that distinguish rows, one Row per catalog and setting, seeds pooled)."""
    others = [k for k in sweep.swept() if k not in ("seed", "catalog")]
    grouped: dict[tuple[str, str], list] = defaultdict(list)
    for t in sweep.trials:  # a sweep has one kind: every trial is a halo trial
        grouped[(t.system, ", ".join(f"{k}={t.setting(k)}" for k in others))].append(t)
    return others, [
        Row(system, 3, "nodegn", None, other, grouped[(system, other)]) for system, other in sorted(grouped)
    ]


def _lead(row: Row, others: list[str]) -> list[str]:
    return [row.system] + ([row.other] if others else [])


def _truth_cell(row: Row, metric: str) -> str:
    """A value judged against the true edge term: known for synthetic catalogs only."""
    if all(t.setting("catalog") != "synthetic" for t in row.trials):
        return "n/a (real catalog)"
    return stat_cell(row, metric)


def gn_table(sweep: Sweep) -> Table:
    others, rows = halo_rows(sweep)
    body = [
        _lead(r, others)
        + [
            str(len(r.trials)),
            stat_cell(r, "data/points", 0),
            stat_cell(r, "data/neighbours_per_point", 1),
            stat_cell(r, "data/target_std"),
            stat_cell(r, "test/mae"),
            stat_cell(r, "test/mae_over_std"),
            stat_cell(r, "messages/leading_variance"),
            _truth_cell(r, "messages/r2_vs_true_edge"),
        ]
        for r in rows
    ]
    return Table(
        "Node-level GN on the catalogs",
        ["catalog"]
        + (["settings"] if others else [])
        + [
            "trials",
            "points",
            "neighbours per point",
            "target std",
            "test MAE",
            "test MAE / target std",
            "variance on the leading direction",
            "R² leading direction vs true edge term",
        ],
        body,
        "Test MAE on held-out nodes, in the target's units, mean ± std over seeds. The leading direction is "
        "the messages' first principal axis (the L1 messages on halo graphs do not concentrate in one component); "
        "its R² is that of a linear fit on the true edge term m2 / (r + 1), known for synthetic catalogs only.",
    )


def distill_table(sweep: Sweep) -> Table:
    others, rows = halo_rows(sweep)
    body = []
    for r in rows:
        distilled = [t for t in r.finished if t.distill]
        first = distilled[0].distill if distilled else {}
        if "distill/recovered" in {k for t in distilled for k in t.metrics}:
            law = count_cell(r, "distill/recovered")
        elif distilled:
            law = first.get("distill/recovered_as", EMPTY)
        else:
            law = "not distilled" if r.finished else why_missing(r.trials)
        both = [
            t for t in r.finished if "distill/test_mae" in t.metrics and t.metrics.get("distill/gn_test_mae", 0) > 0
        ]
        ratio = mean_std([t.metrics["distill/test_mae"] / t.metrics["distill/gn_test_mae"] for t in both])
        body.append(
            _lead(r, others)
            + [
                law,
                _truth_cell(r, "distill/r2_vs_true_edge"),
                formulas(first.get("distill/edge_formulas", "")),
                formulas(first.get("distill/node_formulas", "")),
                stat_cell(r, "distill/test_mae"),
                stat_cell(r, "distill/gn_test_mae"),
                f"{ratio[0]:.2f}" if ratio else EMPTY,
            ]
        )
    return Table(
        "Distilled edge and node functions",
        ["catalog"]
        + (["settings"] if others else [])
        + [
            "edge function recovered",
            "R² edge formula vs true",
            "edge formula (first trial)",
            "node formula (first trial)",
            "symbolic MAE",
            "GN MAE",
            "symbolic / GN",
        ],
        body,
        "Recovered: the edge formula, on every edge, is a linear transformation of the true m2 / (r + 1) with "
        "R² ≥ 0.99 (synthetic catalogs). Inputs: dx, dy, dz, r, m1 (receiver mass), m2 (sender mass) for the edge "
        "function; m (the node's mass) and s (its summed edge values) for the node function. Symbolic MAE: "
        "the composed formulas (edge formula summed at each receiver, then the node formula) on held-out nodes.",
    )


HALO_TRIAL_COLUMNS = [
    ("test MAE", lambda t: num(t.metrics.get("test/mae"))),
    ("R² vs true edge term", lambda t: num(t.metrics.get("messages/r2_vs_true_edge"))),
    ("edge function", verdict_of_trial),
]


def halo_sections(sweep: Sweep) -> list[Section]:
    return [
        Section(
            "Halo catalogs",
            text="A node-level Graph Network on each catalog's radius graph, L1 on its messages "
            "(the paper's dark-matter experiment). The paper's Quijote results have no counterpart here: raysym "
            "cannot fetch Quijote, and synthetic catalogs have a known edge function instead.",
            tables=[gn_table(sweep), distill_table(sweep)],
        ),
        Section("Trials", tables=[trials_table(sweep, HALO_TRIAL_COLUMNS)]),
    ]
