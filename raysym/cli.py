"""The ``raysym`` command: parse flags, build the stage's config, call the same function the tests call.

User errors (:class:`~raysym.errors.UserError`) are printed as one paragraph with exit code 2 and no
traceback; argparse's own usage errors also exit with 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap

from raysym import __version__, physics
from raysym.config import SimulationConfig, from_dict, load_yaml
from raysym.errors import UserError


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _config_from(args: argparse.Namespace, cls, what: str):
    """A stage's config from the optional --config YAML, with the flags given on the command line on top."""
    given = vars(args)
    data = load_yaml(given["config"]) if "config" in given else {}
    data.update({k: v for k, v in given.items() if k in cls.__dataclass_fields__})
    return from_dict(cls, data, where=f"{what} ({given.get('config', 'flags')})")


def _systems_table() -> str:
    rows = [f"  {law.name:<14} U = {law.formula:<28} dt = {law.default_dt:g}" for law in physics.SYSTEMS.values()]
    return "systems (pair potential of r' = r + 0.01, default dt):\n" + "\n".join(rows)


# --------------------------------------------------------------------------------------------------
# raysym simulate
# --------------------------------------------------------------------------------------------------


def _add_simulate(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate an N-body system on Ray Data and write Parquet shards",
        description=(
            "Simulate many independent N-body systems (RK4, vectorised across simulations, on Ray Data) "
            "and write their snapshots as Parquet shards with a manifest (dataset.json). Training and "
            "test simulations come from different random streams of the same seed. Re-running with the "
            "same parameters reuses the existing data; an output folder holding other data is never "
            "overwritten."
        ),
        epilog=_systems_table()
        + "\n\nexample:\n  raysym simulate --system spring --dim 2 --particles 4 --sims 1000 --steps 500 "
        "--stride 5 --seed 0 --out data/spring-2d",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only flags actually given override the YAML / defaults
    )
    d = SimulationConfig()
    p.add_argument("--config", metavar="YAML", help="read settings from a YAML file (flags override it)")
    p.add_argument("--system", help=f"force law, one of: {', '.join(physics.SYSTEMS)} (default {d.system})")
    p.add_argument("--dim", type=int, help=f"2 or 3 (default {d.dim})")
    p.add_argument("--particles", type=int, help=f"particles per system, at least 2 (default {d.particles})")
    p.add_argument("--sims", type=int, help=f"training simulations (default {d.sims})")
    p.add_argument(
        "--test-sims",
        dest="test_sims",
        type=int,
        help="test simulations, from other random streams (default sims // 4)",
    )
    p.add_argument("--steps", type=int, help=f"states per simulation, dt apart (default {d.steps})")
    p.add_argument("--stride", type=int, help=f"store every stride-th state as a graph (default {d.stride})")
    p.add_argument("--dt", type=float, help="time between states (default: the system's, see below)")
    p.add_argument(
        "--substeps", type=int, help=f"RK4 steps per dt; more is more accurate and slower (default {d.substeps})"
    )
    p.add_argument(
        "--damping",
        type=float,
        help=f"damped system only: damping c in a = ... - c v (default {physics.DEFAULT_DAMPING})",
    )
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument(
        "--sims-per-shard",
        dest="sims_per_shard",
        type=int,
        help="simulations per Parquet file; layout only, the data do not change (default: ~32 MiB per file)",
    )
    p.add_argument("--out", required=True, help="dataset folder to create (or reuse, if it holds the same dataset)")
    p.add_argument("--address", help="Ray cluster address ('auto' on a cluster); default: a local Ray")
    p.add_argument(
        "--num-cpus", dest="num_cpus", type=_positive_int, help="CPUs for a local Ray, 1 or more (default: all)"
    )
    p.add_argument(
        "--prune-k",
        dest="prune_k",
        type=float,
        help="also report how many training graphs IQR pruning with this k removes",
    )
    p.set_defaults(func=_cmd_simulate)


def _positive_int(text: str) -> int:
    """argparse type: a whole number of 1 or more (argparse turns the ValueError into exit 2 and usage)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be 1 or more, got {value} (a local Ray with no CPU would wait for ever)"
        )
    return value


def _cmd_simulate(args: argparse.Namespace) -> int:
    from raysym import shards

    given = vars(args)
    cfg = _config_from(args, SimulationConfig, "simulation config")

    rows = (cfg.sims + cfg.resolved_test_sims) * cfg.snapshots_per_sim
    _say(
        f"raysym simulate: {cfg.system} {cfg.dim}D, {cfg.particles} particles, {cfg.sims:,} train + "
        f"{cfg.resolved_test_sims:,} test sims x {cfg.steps} steps (stride {cfg.stride}) = {rows:,} graphs -> "
        f"{args.out}"
    )
    result = shards.write_dataset(
        cfg, args.out, address=given.get("address"), num_cpus=given.get("num_cpus"), progress=_say
    )
    if result.reused:
        print(f"Reusing the existing dataset at {result.path} (same parameters; checksums verified).")
    else:
        print(
            f"Wrote {rows:,} graphs to {result.path} in {result.seconds:.1f} s ({rows / result.seconds:,.0f} graphs/s)."
        )
    print(shards.describe(result.manifest))
    if "prune_k" in given:
        print(shards.prune_report(result.path, given["prune_k"]).summary())
    return 0


# --------------------------------------------------------------------------------------------------
# raysym inspect
# --------------------------------------------------------------------------------------------------


def _add_inspect(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise a dataset folder, verify its checksums, preview pruning",
        description="Print a dataset's parameters and sizes, verify every shard's sha256, and report how "
        "many training graphs IQR pruning removes for each given whisker factor k.",
    )
    p.add_argument("path", help="dataset folder (made by raysym simulate)")
    p.add_argument(
        "--prune-k",
        dest="prune_k",
        type=float,
        nargs="*",
        default=[1.5, 3.0, 10.0],
        help="whisker factors to preview (default 1.5 3 10)",
    )
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from raysym import shards

    manifest = shards.read_manifest(args.path)
    print(shards.describe(manifest))
    shards.verify_shards(args.path, manifest)
    print("checksums: all shards verified")
    q = manifest["train_acc_quartiles"]
    print(f"training accelerations: Q1 = {q['q1']:.4g}, Q3 = {q['q3']:.4g}")
    for k in args.prune_k:
        print(shards.prune_report(args.path, k).summary())
    return 0


# --------------------------------------------------------------------------------------------------
# raysym train
# --------------------------------------------------------------------------------------------------


def _add_train(sub) -> None:
    from raysym.config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train one Graph Network on a dataset and measure its messages",
        description=(
            "Train the Graph Network of Cranmer et al. 2020 on a dataset made by `raysym simulate`, then "
            "measure on held-out test graphs whether its messages became the pairwise forces (sparsity, R² "
            "against force and force/mass: in distribution, i.e. on test graphs inside the training set's pruning "
            "bounds, "
            "on every test edge, and by a trimmed robust fit). Each epoch prints the in-distribution R². Writes "
            "metrics.json, "
            "checkpoint.pt (training resumes from it when run again with the same --out) and figures. Defaults are the "
            "paper-faithful settings; --model newtonian --hidden 128 --lr 3e-3 reaches R² 0.999 on spring in about a "
            "minute on 2 cores."
        ),
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--config", metavar="YAML", help="read settings from a YAML file (flags override it)")
    p.add_argument("--data", help="dataset folder (made by raysym simulate)")
    p.add_argument(
        "--model",
        help="the paper's standard, bottleneck, l1 or kl; wide or inverse (L1 edge-model variants); hgn (the "
        "Hamiltonian GN); or newtonian (a = sum of messages / m built in: its messages are the pair force, the fast "
        f"path to a law) (default {d.model})",
    )
    p.add_argument(
        "--newtonian-messages",
        dest="newtonian_messages",
        help="newtonian model: bottleneck (dim components, the force; "
        f"default), l1 or kl (--msg-dim components with that penalty) (default {d.newtonian_messages})",
    )
    p.add_argument(
        "--node-term",
        dest="node_term",
        action=argparse.BooleanOptionalAction,
        help="newtonian model: add a small MLP g(v, q, m) for forces that are not pairwise, such as damping "
        "(default: on for damped data only)",
    )
    p.add_argument(
        "--l1-schedule",
        dest="l1_schedule",
        help=f"constant, linear, triangle (default {d.l1_schedule}); 'shape' via --config",
    )
    p.add_argument("--kl-prior", dest="kl_prior", help=f"gaussian or laplace (default {d.kl_prior})")
    p.add_argument("--epochs", type=int, help=f"passes over the training graphs (default {d.epochs})")
    p.add_argument("--batch-size", dest="batch_size", type=int, help=f"graphs per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"OneCycleLR's max learning rate (default {d.lr})")
    p.add_argument("--loss", help=f"mae, mse or huber (default {d.loss})")
    p.add_argument("--hidden", type=int, help=f"units per hidden layer (default {d.hidden})")
    p.add_argument("--msg-dim", dest="msg_dim", type=int, help=f"message size of standard/l1/kl (default {d.msg_dim})")
    p.add_argument(
        "--prune-k", dest="prune_k", type=float, help=f"IQR whisker factor for training graphs (default {d.prune_k})"
    )
    p.add_argument("--no-prune", dest="prune_k", action="store_const", const=None, help="train on every graph")
    p.add_argument(
        "--max-train-graphs", dest="max_train_graphs", type=int, help="random subset of training graphs (default all)"
    )
    p.add_argument(
        "--max-test-graphs", dest="max_test_graphs", type=int, help="random subset of test graphs (default all)"
    )
    p.add_argument(
        "--warmup-fraction",
        dest="warmup_fraction",
        type=float,
        help=f"share of the steps OneCycle spends raising the learning rate (default {d.warmup_fraction})",
    )
    p.add_argument(
        "--stop-r2",
        dest="stop_r2",
        type=float,
        help="stop after the first epoch whose in-distribution R² of the messages "
        "(against force or force/mass) reaches this, e.g. 0.999 (default: train every epoch)",
    )
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--device", help="auto, cpu or cuda (default auto: the GPU when there is one)")
    p.add_argument("--out", required=True, help="trial folder for metrics.json, checkpoint.pt and figures")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="ignore an existing checkpoint in --out")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    import json

    from raysym.config import TrainConfig
    from raysym.train import run_trial

    given = vars(args)
    cfg = _config_from(args, TrainConfig, "training config")
    _say(f"raysym train: {cfg.model} model on {cfg.data}, {cfg.epochs} epochs, batch {cfg.batch_size} -> {args.out}")

    def progress(m: dict) -> None:
        r2 = next(
            (
                f", in-distribution R² {name} {m[key]:.4f}"
                for key, name in (
                    ("messages/r2_force_epoch", "vs force"),
                    ("messages/r2_pair_force_epoch", "of the pair force"),
                )
                if key in m
            ),
            "",
        )
        _say(f"epoch {m['epoch'] + 1}/{cfg.epochs}: train loss {m['train/loss']:.4g}, test MAE {m['test/mae']:.4g}{r2}")

    metrics = run_trial(cfg, args.out, callback=progress, resume=given.get("resume", True))
    keys = [
        "status",
        "reason",
        "test/mae",
        "messages/r2_force",
        "messages/r2_accel",
        "messages/r2_force_all",
        "messages/r2_accel_all",
        "messages/r2_force_robust",
        "messages/r2_accel_robust",
        "messages/in_range_fraction",
        "messages/r2_pair_force",
        "messages/r2_pair_force_all",
        "messages/r2_pair_force_robust",
        "messages/r2_potential",
        "messages/sparse",
        "messages/sparsity_ratio",
        "time/train_seconds",
    ]
    print(json.dumps({k: metrics[k] for k in keys if k in metrics}, indent=2))
    if metrics["status"] != "finished":
        _say(f"raysym train: the trial {metrics['status']}: {metrics['reason']}")
        return 1
    return 0


# --------------------------------------------------------------------------------------------------
# raysym sweep
# --------------------------------------------------------------------------------------------------


def _add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep YAML: data on Ray Data, trials on Ray Tune, runs in MLflow",
        description=(
            "Run the whole pipeline for a sweep YAML (see tune_configs/): make or reuse the shards each data "
            "setting needs, train one Graph Network per grid point (or per Optuna sample) on Ray Tune, and "
            "record every trial as a child run of one MLflow parent run. Prints a results table at the end "
            "and writes it as sweep_results.csv next to Tune's results. A YAML with a halos section instead of "
            "data and trials sweeps node-level GNs on halo catalogs (tune_configs/halos.yaml). On a laptop it "
            "starts a local Ray; on a cluster made with `ray up cluster.yaml`, pass --address auto."
        ),
        epilog="examples:\n  raysym sweep tune_configs/quickstart.yaml\n"
        "  raysym sweep tune_configs/paper_2d.yaml --dry-run\n"
        "  raysym sweep tune_configs/paper_2d.yaml --address auto --resume\n"
        "  raysym sweep tune_configs/halos.yaml\n"
        "then: mlflow ui --backend-store-uri sqlite:///mlflow.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="sweep YAML file")
    p.add_argument("--address", help="Ray cluster to join ('auto' on a cluster node); default: a local Ray")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep of the same name (Tuner.restore); its MLflow runs are continued, "
        "not duplicated",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the expanded trials and the resources they ask for, then stop"
    )
    p.set_defaults(
        func=_cmd_sweep,
        interrupted=(
            "raysym: interrupted; the sweep's saved progress is kept (finished trials and each running trial's last "
            "checkpoint). Continue with `raysym sweep CONFIG --resume`; if training had not started, run it again "
            "without --resume."
        ),
    )


def _cmd_sweep(args: argparse.Namespace) -> int:
    from raysym.config import SweepConfig
    from raysym.sweep import run_sweep

    cfg = from_dict(SweepConfig, load_yaml(args.config), where=f"sweep config ({args.config})")
    outcome = run_sweep(cfg, address=args.address, resume=args.resume, dry_run=args.dry_run, say=print)
    if args.dry_run:
        return 0
    if outcome.interrupted:
        print(f"Continue it with: raysym sweep {args.config} --resume")
        return 130
    # A trial the ASHA scheduler stopped early ended as the sweep asked; any other status is a failure.
    failed = [r for r in outcome.rows if r["status"] not in ("finished", "stopped early")]
    done = sum(r["status"] == "finished" for r in outcome.rows)
    print(f"\n{done} of {len(outcome.rows)} trials finished. Tune results: {outcome.experiment_path}")
    print(f"Compare them in MLflow: mlflow ui --backend-store-uri {cfg.tracking.uri}  (parent run '{cfg.name}')")
    if failed:
        for r in failed:
            print(
                f"  {r['trial']} {r['system']} {r['model']}: {r['status']}"
                + (f" ({r['reason']})" if r.get("reason") else "")
            )
        _say(f"raysym: {len(failed)} of {len(outcome.rows)} trials did not finish (listed above); exit status 1.")
        return 1
    return 0


# --------------------------------------------------------------------------------------------------
# raysym distill
# --------------------------------------------------------------------------------------------------


def _add_distill(sub) -> None:
    from raysym.config import DistillConfig

    d = DistillConfig()
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
    p.add_argument(
        "--backend",
        default=d.backend,
        help="auto (pysr where Julia is found, else operon), operon or pysr (default auto)",
    )
    p.add_argument(
        "--setting", default=d.setting, help="fast (seconds per fit) or thorough (about a minute) (default thorough)"
    )
    p.add_argument("--samples", type=int, default=d.samples, help=f"edges and nodes per job (default {d.samples})")
    p.add_argument(
        "--fit-range",
        default=d.fit_range,
        help="fit only on test graphs within the trial's pruning bounds, where "
        "the GN was trained (train), or on every test graph of the fitting half (all); the verdict is decided on "
        f"unseen graphs within the bounds either way, with the all-edges R² beside it (default {d.fit_range})",
    )
    p.add_argument("--workers", type=int, default=None, help="Ray actors fitting in parallel (default: one per CPU)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--address", help="Ray cluster to join; default: a local Ray")
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> int:
    from raysym.config import DistillConfig
    from raysym.distill_jobs import run_trials

    cfg = from_dict(
        DistillConfig,
        {
            "backend": args.backend,
            "setting": args.setting,
            "samples": args.samples,
            "fit_range": args.fit_range,
            "seed": args.seed,
        },
        where="flags",
    )
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
    from raysym.config import HaloConfig

    d = HaloConfig()
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
    p.add_argument("--catalog", help=f"catalog file, or 'synthetic' (default {d.catalog})")
    p.add_argument("--target", help=f"the target column of a catalog file (default {d.target})")
    p.add_argument(
        "--box",
        type=float,
        help="periodic box size of the catalog (default: none; synthetic: about 9 neighbours per point)",
    )
    p.add_argument("--radius", type=float, help=f"link points closer than this (default {d.radius})")
    p.add_argument("--points", type=int, help=f"points of a synthetic catalog (default {d.points})")
    p.add_argument("--epochs", type=int, help=f"passes over the training nodes (default {d.epochs})")
    p.add_argument(
        "--batch-nodes",
        type=int,
        help="training nodes (with their incoming edges) per step; default: all (one full-batch step per epoch)",
    )
    p.add_argument("--lr", type=float, help=f"Adam's learning rate, decayed to 1%% by a cosine (default {d.lr})")
    p.add_argument("--l1", type=float, help=f"L1 coefficient on the messages (default {d.l1})")
    p.add_argument("--msg-dim", type=int, help=f"message size; 1 is a bottleneck (default {d.msg_dim})")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--setting", default="thorough", help="symbolic regression: fast or thorough (default thorough)")
    p.add_argument("--out", required=True, help="the trial folder to write (halos.json, distill/, ...)")
    p.set_defaults(func=_cmd_halos)


def _cmd_halos(args: argparse.Namespace) -> int:
    import json

    from raysym.config import DistillConfig, HaloConfig
    from raysym.halo_distill import run_halos

    cfg = _config_from(args, HaloConfig, "halo config")
    distill_cfg = from_dict(
        DistillConfig, {"setting": getattr(args, "setting", "thorough"), "seed": cfg.seed}, where="flags"
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
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the YAML's, else sqlite:///mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment to look in (default: the YAML's, else every experiment)")
    p.add_argument("--published", help="CSV of published numbers (default analysis/published.csv of this checkout)")
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

        cfg = from_dict(SweepConfig, load_yaml(sweep), where=f"sweep config ({sweep})")
        sweep, uri, experiment = cfg.name, cfg.tracking.uri, cfg.tracking.experiment
    make_report(
        args.tracking_uri or uri,
        sweep,
        args.out,
        experiment=args.experiment or experiment,
        published_csv=args.published,
        say=_say,
    )
    return 0


# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raysym",
        description=textwrap.dedent(
            """\
            raysym: symbolic distillation of Graph Networks, swept on Ray.
            Pipeline: simulate -> shard -> prune -> train -> message analysis -> distil -> report."""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"raysym {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_simulate(sub)
    _add_inspect(sub)
    _add_train(sub)
    _add_sweep(sub)
    _add_distill(sub)
    _add_halos(sub)
    _add_report(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (0 done, 1 a trial or training failed, 2 a user error,
    130 interrupted). The tests call this; the `raysym` program calls :func:`entry`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as exc:
        _say(f"raysym: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say(getattr(args, "interrupted", "raysym: interrupted; nothing partial was kept under the output name."))
        return 130


def entry() -> None:
    """The `raysym` program: :func:`main`, then Ray stopped with Ctrl-C ignored. Ray's own exit hook would
    stop it otherwise, and a Ctrl-C pressed again while it does (users press it twice) printed a traceback."""
    try:
        code = main()
    except KeyboardInterrupt:  # pressed again before main could answer the first
        code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _shutdown_ray()
    sys.exit(code)


def _shutdown_ray() -> None:
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    entry()
