"""Draw the report's figures for one sweep as PNG files, from any MLflow tracking URI.

    python analysis/figures.py SWEEP [--tracking-uri URI] [--experiment NAME] [--out DIR]

Writes into DIR (default figures/<sweep>): l1_schedules.png, loss_curves.png, messages_vs_force.png,
message_stds.png, r2_vs_prune.png (sweeps over the pruning factor) and optuna_shapes.png (Optuna searches),
and says which it skipped because the sweep has nothing to draw for them.
"""

from pathlib import Path

from _cli import run, sweep_parser

from raysym.report import draw_figures
from raysym.report_data import load_sweep


def main() -> None:
    ap = sweep_parser(__doc__)
    ap.add_argument("--out", help="default: figures/<sweep>")
    args = ap.parse_args()
    sweep = load_sweep(args.tracking_uri, args.sweep, args.experiment)
    out = Path(args.out or f"figures/{sweep.name}")
    for caption, path in draw_figures(sweep, out):
        print(f"{str(path) if path else 'skipped':<40} {caption}")


if __name__ == "__main__":
    run(main)
