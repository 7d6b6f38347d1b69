"""The ``raysym`` commands that read trained trials: ``distill`` (any trial kind), ``halos`` (the
dark-matter experiment, trained then distilled) and ``report`` (a sweep's tables and figures)."""

from __future__ import annotations

import argparse

from raysym.cli_common import _positive_int, _say, config_flag, config_from, load_config
from raysym.errors import UserError

# --------------------------------------------------------------------------------------------------
# raysym distill
# --------------------------------------------------------------------------------------------------


def _add_distill(sub) -> None:
    from raysym.config import DistillConfig

    p = sub.add_parser(
        "distill",
        help="distil a trained trial's messages into equations (PySR or Operon) and judge the law",
        description=(
            "Symbolic regression of a trained Graph Network: one job per top message component (edge "
            "inputs dx, dy, (dz), r, m1, m2, q1, q2; 1 = receiver, 2 = sender) and one per acceleration "
            "component (node inputs: summed messages and node features), run in parallel on a pool of Ray "
            "actors. Writes TRIAL/distill/ with each Pareto front (CSV and Markdown with LaTeX), the chosen "
            "formulas, the composed symbolic model's test MAE next to the GN's, and the verdict: is the "
            "edge formula a linear transformation of the true force (or force / receiver mass)?"
        ),
        epilog="example:\n  raysym train --data data/spring-2d --model bottleneck --out runs/bn\n"
        "  raysym distill runs/bn --backend operon",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("trials", nargs="*", metavar="TRIAL", help="trial folder(s) written by raysym train")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="RUN_ID",
        help="an MLflow run to distil instead: a trial's run, or a sweep's parent run (all its finished "
        "trials); results are logged as nested distillation runs. Repeatable",
    )
    p.add_argument(
        "--tracking-uri",
        default="sqlite:///mlflow.db",
        help="MLflow tracking URI for --run (default sqlite:///mlflow.db)",
    )
    D = DistillConfig
    config_flag(p, D, "backend", "auto (pysr where Julia is found, else operon), operon or pysr")
    config_flag(p, D, "setting", "fast (seconds per fit) or thorough (about a minute)")
    config_flag(p, D, "samples", "edges and nodes per job")
    config_flag(
        p,
        D,
        "fit_range",
        "fit only on test graphs within the trial's pruning bounds, where the GN was trained (train), or on every "
        "test graph of the fitting half (all); the verdict is decided on unseen graphs within the bounds either way, "
        "with the all-edges R² beside it",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="Ray actors fitting in parallel, 1 or more (default: one per CPU)",
    )
    config_flag(p, D, "seed", "random seed")
    p.add_argument("--address", help="Ray cluster to join; default: a local Ray")
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> int:
    from raysym.config import DistillConfig
    from raysym.distill_jobs import run_trials

    cfg = config_from(args, DistillConfig, "distillation settings")
    if bool(args.trials) == bool(args.run):
        raise UserError("Give either trial folders or --run RUN_ID (one or more), not both and not neither.")
    if args.run:
        from raysym.sweep_tracking import distill_runs

        summaries = distill_runs(args.run, cfg, args.tracking_uri, workers=args.workers, address=args.address, say=_say)
        names = [f"run {i + 1}" for i in range(len(summaries))]
    else:
        summaries = run_trials(args.trials, cfg, workers=args.workers, address=args.address, say=_say)
        names = args.trials
    failed = 0
    for trial, summary in zip(names, summaries):
        print(f"\n{trial}:")
        for k in (
            "distill/backend",
            "distill/edge_formulas",
            "distill/node_formulas",
            "distill/recovered_as",
            "distill/r2_force",
            "distill/r2_force_all",
            "distill/r2_accel",
            "distill/r2_accel_all",
            "distill/r2_pair_force",
            "distill/r2_pair_force_all",
            "distill/r2_pair_force_robust",
            "distill/test_mae",
            "distill/gn_test_mae",
            "distill/test_mae_in_range",
            "distill/gn_test_mae_in_range",
            "distill/errors",
        ):
            if k in summary:
                print(f"  {k.split('/', 1)[1]:<20} {summary[k]}")
        failed += bool(summary.get("distill/errors"))
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------------
# raysym halos
# --------------------------------------------------------------------------------------------------


def _add_halos(sub) -> None:
    from raysym.config import DistillConfig, HaloConfig

    p = sub.add_parser(
        "halos",
        help="the dark-matter experiment: a node-level GN on a halo catalog's radius graph, distilled",
        description=(
            "Read a halo catalog (Parquet or CSV with columns x, y, z, vx, vy, vz, mass and a target column) or "
            "make a synthetic one whose target is a known sum over neighbours of m_sender / (r + 1); link "
            "every pair within --radius (periodic with --box); train a node-level GN with L1 messages on "
            "the target; distil the edge function (the messages' leading direction on dx, dy, dz, r, m1, m2) "
            "and the node function (the GN's output on the node's mass m and its summed edge values s). "
            "--out becomes a trial folder (checkpoint, metrics, figures, distill/ with the Pareto fronts) with "
            "halos.json summing it up. For synthetic catalogs it also says whether the true edge function was "
            "recovered. To sweep settings, track in MLflow and report, use a sweep YAML with a halos section "
            "(tune_configs/halos.yaml)."
        ),
        epilog="examples:\n  raysym halos --out runs/halos-synthetic\n"
        "  raysym halos --catalog my_halos.parquet --target delta --box 1000 --radius 50 --out runs/halos",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--config", metavar="YAML", help="read settings from a YAML file (flags override it)")
    H = HaloConfig
    config_flag(p, H, "catalog", "catalog file, or 'synthetic'")
    config_flag(p, H, "target", "the target column of a catalog file")
    config_flag(
        p, H, "box", "periodic box size of the catalog", default="none; synthetic: about 9 neighbours per point"
    )
    config_flag(p, H, "radius", "link points closer than this")
    config_flag(p, H, "points", "points of a synthetic catalog")
    config_flag(p, H, "epochs", "passes over the training nodes")
    config_flag(
        p,
        H,
        "batch_nodes",
        "training nodes (with their incoming edges) per step",
        default="all: one full-batch step per epoch",
    )
    config_flag(p, H, "lr", "Adam's learning rate, decayed to 1%% by a cosine")
    config_flag(p, H, "l1", "L1 coefficient on the messages")
    config_flag(p, H, "msg_dim", "message size; 1 is a bottleneck")
    config_flag(p, H, "seed", "random seed")
    config_flag(p, DistillConfig, "setting", "symbolic regression: fast or thorough")
    p.add_argument("--out", required=True, help="the trial folder to write (halos.json, distill/, ...)")
    p.set_defaults(func=_cmd_halos)


def _cmd_halos(args: argparse.Namespace) -> int:
    import json

    from raysym.config import DistillConfig, HaloConfig
    from raysym.halo_distill import run_halos

    cfg = config_from(args, HaloConfig, "halo config")
    # the distillation's settings are --setting; its seed is the trial's (a --config YAML holds halo settings)
    distill_cfg = config_from(
        argparse.Namespace(**{**vars(args), "config": None}), DistillConfig, "flags", seed=cfg.seed
    )
    summary = run_halos(cfg, distill_cfg, args.out, say=_say)
    keys = [
        "data/points",
        "data/edges",
        "data/target_std",
        "test/mae",
        "messages/r2_vs_true_edge",
        "distill/edge_formulas",
        "distill/node_formulas",
        "distill/r2_vs_true_edge",
        "distill/recovered_as",
        "distill/test_mae",
        "distill/gn_test_mae",
    ]
    print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2, default=float))
    return 0


# --------------------------------------------------------------------------------------------------
# raysym report
# --------------------------------------------------------------------------------------------------


def _add_rollout(sub) -> None:
    from raysym.sweep_sections import RolloutConfig

    p = sub.add_parser(
        "rollout",
        help="out of distribution: roll out the simulator, the GN and its symbolic model from the same states",
        description=(
            "The paper's claim, measured on a distilled N-body trial: simulate fresh systems outside the training "
            "distribution (--particles more particles, initial positions and velocities scaled by --scale) and "
            "integrate them three ways from the same states with the simulator's RK4 and time step: the simulator "
            "(the truth), the trained Graph Network, and the composed symbolic model from `raysym distill`. The "
            "regime in_dist (fresh draws of the training distribution) runs first, as the baseline. Prints and "
            "writes TRIAL/ood/rollout.json (per regime and model: the one-step acceleration MAE and the position "
            "error at every step; the metrics keep steps 1, 10 and the last) and TRIAL/ood/position_error.png. "
            "In a sweep, "
            "a rollout section runs it for every distilled trial and logs the ood/* metrics to MLflow."
        ),
        epilog="example:\n  raysym distill runs/nt\n  raysym rollout runs/nt --particles 8 --scale 1.5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("trial", metavar="TRIAL", help="a trial folder, trained and distilled")
    p.add_argument("--particles", type=_positive_int, help="particles per fresh system (default: the training data's)")
    p.add_argument("--scale", type=float, default=1.0, help="factor on initial positions and velocities (default 1)")
    p.add_argument("--name", default="ood", help="the regime's name in rollout.json and the metrics (default ood)")
    config_flag(p, RolloutConfig, "sims", "fresh systems per regime")
    config_flag(p, RolloutConfig, "steps", "integration steps")
    config_flag(p, RolloutConfig, "seed", "seed of the fresh systems")
    p.set_defaults(func=_cmd_rollout)


def _cmd_rollout(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from raysym.rollout import describe
    from raysym.sweep_sections import RolloutConfig
    from raysym.trial_kind import rollout

    regime = {"particles": args.particles, "scale": args.scale}
    regimes = {} if regime == {"particles": None, "scale": 1.0} else {args.name: regime}
    cfg = config_from(args, RolloutConfig, "the rollout", regimes=regimes)
    metrics = rollout(args.trial, cfg)  # writes TRIAL/ood/
    from raysym.rollout import FIGURE, OUT, RESULT

    out = Path(args.trial) / OUT
    print(describe(json.loads((out / RESULT).read_text())))
    _say(f"raysym rollout: {out / RESULT} and {out / FIGURE} ({len(metrics)} ood/* metrics)")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a sweep's tables and figures (report.md, report.html) next to the published numbers",
        description=(
            "Read a sweep's runs from MLflow and write report.md and a self-contained report.html: test MAE, "
            "R² of the messages by model and by L1 schedule, sparsity and law recovered, symbolic MAE next to "
            "the GN's, R² against the pruning factor, the best Optuna schedule shapes, and figures (L1 "
            "schedules, loss curves, messages against force, the largest message stds across seeds). The "
            "published values of the 2020 paper and the 2024 reproduction sit in adjacent columns. Trials that "
            "failed or never ran are shown as such."
        ),
        epilog="examples:\n  raysym report tune_configs/quickstart.yaml\n"
        "  raysym report quickstart --tracking-uri sqlite:///mlflow.db --out reports/qs\n"
        "  raysym report 3f2a...c1 --tracking-uri http://127.0.0.1:5000   (a sweep's parent run id)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "sweep",
        metavar="SWEEP",
        help="the sweep's YAML file (its name and tracking URI are used), its name, or its parent run id",
    )
    p.add_argument("--out", help="output folder (default reports/<sweep name>)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SETTING=VALUES",
        help="with a YAML: the slice that `raysym sweep YAML --only ...` ran (the same filters)",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the YAML's, else sqlite:///mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment to look in (default: the YAML's, else every experiment)")
    p.add_argument("--published", help="CSV of published numbers (default: raysym/published.csv, shipped with raysym)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raysym.report import make_report

    sweep, uri, experiment = args.sweep, "sqlite:///mlflow.db", None
    if sweep.endswith((".yaml", ".yml")):
        if not Path(sweep).is_file():
            raise UserError(
                f"The sweep YAML {sweep} does not exist. Pass an existing file, or the sweep's name or parent run id."
            )
        from raysym.config import SweepConfig
        from raysym.sweep_plan import parse_only, slice_name

        cfg = load_config(sweep, SweepConfig, "sweep config")
        sweep, uri, experiment = slice_name(cfg.name, parse_only(args.only)), cfg.tracking.uri, cfg.tracking.experiment
    elif args.only:
        raise UserError("--only needs the sweep's YAML file (the slice's name is made from it and the filters).")
    make_report(
        args.tracking_uri or uri,
        sweep,
        args.out,
        experiment=args.experiment or experiment,
        published_csv=args.published,
        say=_say,
    )
    return 0
