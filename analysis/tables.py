"""Print the report's tables for one sweep as Markdown, from any MLflow tracking URI.

    python analysis/tables.py SWEEP [--tracking-uri URI] [--experiment NAME] [--published CSV]

SWEEP is the sweep's name or its parent run id. The tables are the ones `raysym report` writes (test
MAE, R² by model and by L1 schedule, law and sparsity, symbolic against GN MAE, pruning, Optuna, every
trial), with the published values of raysym/published.csv in adjacent columns. Only run metadata is
read (no metric histories, no artifacts), so this is fast on large sweeps.
"""

from _cli import run, sweep_parser

from raysym.report import table_markdown, table_sections
from raysym.report_data import Published, load_sweep


def main() -> None:
    ap = sweep_parser(__doc__)
    ap.add_argument("--published", help="default: raysym/published.csv (shipped in the package)")
    args = ap.parse_args()
    sweep = load_sweep(args.tracking_uri, args.sweep, args.experiment, histories=False)
    for section in table_sections(sweep, Published.load(args.published)):
        print(f"## {section.title}\n")
        for table in section.tables:
            print("\n".join(table_markdown(table)))


if __name__ == "__main__":
    run(main)
