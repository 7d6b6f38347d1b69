"""The ``raysym`` command: parse flags, build the stage's config, call the same function the tests call.

User errors (:class:`~raysym.errors.UserError`) are printed as one paragraph with exit code 2 and no
traceback; argparse's own usage errors also exit with 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap

from raysym import __version__, disk, physics
from raysym.cli_common import _positive_int, _say, config_flag, config_from, load_config
from raysym.cli_trials import _add_distill, _add_halos, _add_report, _add_rollout
from raysym.config import SimulationConfig
from raysym.errors import UserError


def _systems_table() -> str:
    rows = [f"  {law.name:<14} U = {law.formula:<28} dt = {law.default_dt:g}" for law in physics.SYSTEMS.values()]
    rows.append(f"  {physics.CUSTOM:<14} U = {'--potential (a formula)':<28} dt = {physics.CUSTOM_DT:g}")
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
    p.add_argument("--config", metavar="YAML", help="read settings from a YAML file (flags override it)")
    S = SimulationConfig
    config_flag(p, S, "system", f"force law, one of: {', '.join(physics.SYSTEMS)}, or custom (with --potential)")
    config_flag(
        p,
        S,
        "potential",
        "system custom: the pair potential U of r, q1, q2, m1, m2 (1 = receiver, 2 = sender) as a formula, "
        'e.g. "exp(-2*(r - 1)) - 2*exp(-(r - 1))"; + - * / ^, exp log sqrt sin cos tanh abs Heaviside Min Max',
        default="none",
    )
    config_flag(p, S, "dim", "2 or 3")
    config_flag(p, S, "particles", "particles per system, at least 2")
    config_flag(p, S, "sims", "training simulations")
    config_flag(p, S, "test_sims", "test simulations, from other random streams", default="sims // 4")
    config_flag(p, S, "steps", "states per simulation, dt apart")
    config_flag(p, S, "stride", "store every stride-th state as a graph")
    config_flag(p, S, "dt", "time between states", default="the system's, see below")
    config_flag(p, S, "substeps", "RK4 steps per dt; more is more accurate and slower")
    config_flag(p, S, "damping", "damped system only: damping c in a = ... - c v", default=physics.DEFAULT_DAMPING)
    config_flag(p, S, "seed", "random seed")
    config_flag(
        p, S, "sims_per_shard", "simulations per Parquet file; layout only, the data do not change", default="~32 MiB"
    )
    p.add_argument("--out", required=True, help="dataset folder to create (or reuse, if it holds the same dataset)")
    p.add_argument("--address", help="Ray cluster address ('auto' on a cluster); default: a local Ray")
    p.add_argument(
        "--num-cpus", dest="num_cpus", type=_positive_int, help="CPUs for a local Ray, 1 or more (default: all)"
    )
    p.add_argument(
        "--engine",
        choices=("ray", "local"),  # raysym.shards.ENGINES (not imported here: pyarrow slows every command)
        help="ray (default): simulate on Ray Data; local: one shard after another in this process, without Ray "
        "(a machine where Ray is not installed). The data are the same either way",
    )
    p.add_argument(
        "--prune-k",
        dest="prune_k",
        type=float,
        help="also report how many training graphs IQR pruning with this k removes",
    )
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from raysym import shard_format, shards

    given = vars(args)
    cfg = config_from(args, SimulationConfig, "simulation config")

    rows = (cfg.sims + cfg.resolved_test_sims) * cfg.snapshots_per_sim
    _say(
        f"raysym simulate: {cfg.system} {cfg.dim}D, {cfg.particles} particles, {cfg.sims:,} train + "
        f"{cfg.resolved_test_sims:,} test sims x {cfg.steps} steps (stride {cfg.stride}) = {rows:,} graphs -> "
        f"{args.out}"
    )
    result = shards.write_dataset(
        cfg,
        args.out,
        address=given.get("address"),
        num_cpus=given.get("num_cpus"),
        progress=_say,
        engine=given.get("engine", "ray"),
    )
    if result.reused:
        print(f"Reusing the existing dataset at {result.path} (same parameters; checksums verified).")
    else:
        print(
            f"Wrote {rows:,} graphs to {result.path} in {result.seconds:.1f} s ({rows / result.seconds:,.0f} graphs/s)."
        )
    print(shard_format.describe(result.manifest))
    if "prune_k" in given:
        print(shards.prune_report(result.path, given["prune_k"]).summary())
    return 0


# --------------------------------------------------------------------------------------------------
# raysym inspect
# --------------------------------------------------------------------------------------------------


def _add_inspect(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise dataset folders, verify their checksums, preview pruning",
        description="For each dataset folder: print its parameters and sizes, verify every shard's sha256, and "
        "report how many training graphs IQR pruning removes for each given whisker factor k. Every folder is "
        "inspected; the exit status is 2 when any could not be read.",
        epilog="examples:\n  raysym inspect data/spring-2d\n  raysym inspect data/*  --prune-k 1.5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="dataset folder(s) made by raysym simulate or a sweep")
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
    from raysym import shard_format, shards

    unreadable = []
    for i, path in enumerate(args.paths):
        if len(args.paths) > 1:
            print(("\n" if i else "") + f"== {path}")
        try:
            manifest = shards.read_manifest(path)
            print(shard_format.describe(manifest))
            shards.verify_shards(path, manifest)
            print("checksums: all shards verified")
            q = manifest["train_acc_quartiles"]
            print(f"training accelerations: Q1 = {q['q1']:.4g}, Q3 = {q['q3']:.4g}")
            for k in args.prune_k:
                print(shards.prune_report(path, k).summary())
        except UserError as exc:
            if len(args.paths) == 1:
                raise
            _say(f"raysym: error: {exc}")  # the others are still inspected
            unreadable.append(path)
    if unreadable:
        failed = f"{len(unreadable)} of {len(args.paths)} folder(s)"
        _say(f"raysym inspect: {failed} could not be read: {', '.join(unreadable)}")
        return 2
    return 0


# --------------------------------------------------------------------------------------------------
# raysym train
# --------------------------------------------------------------------------------------------------


def _add_train(sub) -> None:
    from raysym.config import TrainConfig

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
    T = TrainConfig
    config_flag(p, T, "data", "dataset folder (made by raysym simulate)", default="none: give it here or in --config")
    config_flag(
        p,
        T,
        "model",
        "the paper's standard, bottleneck, l1 or kl; wide or inverse (L1 edge-model variants); hgn (the "
        "Hamiltonian GN); or newtonian (a = sum of messages / m built in: its messages are the pair force, the fast "
        "path to a law)",
    )
    config_flag(
        p,
        T,
        "newtonian_messages",
        "newtonian model: bottleneck (dim components, the force), l1 or kl (--msg-dim components with that penalty)",
    )
    config_flag(
        p,
        T,
        "node_term",
        "newtonian model: add a small MLP g(v, q, m) for forces that are not pairwise, such as damping",
        default="on for damped data only",
    )
    config_flag(p, T, "l1_schedule", "constant, linear, triangle; 'shape' via --config")
    config_flag(p, T, "kl_prior", "gaussian or laplace")
    config_flag(
        p,
        T,
        "penalty_units",
        "what the L1 schedule's values and the KL coefficient mean: paper (the notebook's coefficient: 0.01 here is "
        "its 0.01) or per_edge (applied to raysym's per-edge penalty as it stands, as trials before did)",
    )
    config_flag(p, T, "epochs", "passes over the training graphs")
    config_flag(p, T, "batch_size", "graphs per step")
    config_flag(p, T, "lr", "OneCycleLR's max learning rate")
    config_flag(p, T, "loss", "mae, mse or huber")
    config_flag(p, T, "hidden", "units per hidden layer")
    config_flag(p, T, "msg_dim", "message size of standard/l1/kl")
    config_flag(p, T, "prune_k", "IQR whisker factor for training graphs")
    p.add_argument("--no-prune", dest="prune_k", action="store_const", const=None, help="train on every graph")
    config_flag(p, T, "max_train_graphs", "random subset of training graphs", default="all")
    config_flag(p, T, "max_test_graphs", "random subset of test graphs", default="all")
    config_flag(p, T, "warmup_fraction", "share of the steps OneCycle spends raising the learning rate")
    config_flag(
        p,
        T,
        "stop_r2",
        "stop after the first epoch whose R² of the messages (against force or force/mass) on the validation graphs "
        "reaches this, e.g. 0.999",
        default="train every epoch",
    )
    config_flag(
        p,
        T,
        "validation_fraction",
        "share of the training simulations held out as the validation split (whole simulations): per-epoch R², "
        "sparsity and --stop-r2 read it; the test split is only reported",
    )
    config_flag(p, T, "seed", "random seed")
    config_flag(p, T, "device", "auto, cpu or cuda", default="auto: the GPU when there is one")
    config_flag(
        p,
        T,
        "figures",
        "draw the trial folder's PNGs; --no-figures skips them (their data, messages.npz and "
        "message_stds_by_epoch.json, is written either way)",
    )
    p.add_argument("--out", required=True, help="trial folder for metrics.json, checkpoint.pt and figures")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="ignore an existing checkpoint in --out")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    import json

    from raysym.config import TrainConfig
    from raysym.train import run_trial

    given = vars(args)
    cfg = config_from(args, TrainConfig, "training config")
    _say(f"raysym train: {cfg.model} model on {cfg.data}, {cfg.epochs} epochs, batch {cfg.batch_size} -> {args.out}")

    def progress(m: dict) -> None:
        r2 = next(
            (
                f", validation R² {name} {m[key]:.4f}"
                for key, name in (("val/r2_force", "vs force"), ("val/r2_pair_force", "of the pair force"))
                if key in m
            ),
            "",
        )
        if "val/r2_accel" in m:
            r2 += f" (vs force/mass {m['val/r2_accel']:.4f})"
        if "val/sparsity_share" in m:
            r2 += f", sparsity share {m['val/sparsity_share']:.3f} ratio {m['val/sparsity_ratio']:.3g}"
        _say(
            f"epoch {m['epoch'] + 1}/{cfg.epochs}: train loss {m['train/loss']:.4g}, validation MAE "
            f"{m['val/mae']:.4g}, test MAE {m['test/mae']:.4g}{r2}"
        )

    metrics = run_trial(cfg, args.out, callback=progress, resume=given.get("resume", True))
    keys = [
        "status",
        "reason",
        "test/mae",
        "test/mae_in_range",
        "val/r2_best",
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
        "messages/sparsity_share",
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
        "  raysym sweep tune_configs/cpu_table.yaml --only system=spring --only dim=2\n"
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
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SETTING=VALUES",
        help="run only the trials whose swept setting takes one of these values, e.g. --only system=spring,charge "
        "--only dim=2 (repeat to narrow further). A slice runs as a sweep of its own, named after the filters "
        "(cpu_table.dim-2.system-charge-spring: its Tune folder and MLflow parent run; resume and report it with the "
        "same --only), and its trials keep their keys from the full grid, so a big grid can run in slices",
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
    from raysym.sweep_plan import parse_only, slice_name

    cfg = load_config(args.config, SweepConfig, "sweep config")
    only = parse_only(args.only)
    outcome = run_sweep(cfg, address=args.address, resume=args.resume, dry_run=args.dry_run, say=print, only=only)
    if args.dry_run:
        return 0
    if outcome.interrupted:
        print(f"Continue it with: raysym sweep {args.config} --resume")
        return 130
    # A trial the ASHA scheduler stopped early ended as the sweep asked; any other status is a failure.
    failed = [r for r in outcome.rows if r["status"] not in ("finished", "stopped early")]
    done = sum(r["status"] == "finished" for r in outcome.rows)
    print(f"\n{done} of {len(outcome.rows)} trials finished. Tune results: {outcome.experiment_path}")
    parent = slice_name(cfg.name, only)  # a slice's parent run is named after its filters
    print(f"Compare them in MLflow: mlflow ui --backend-store-uri {cfg.tracking.uri}  (parent run '{parent}')")
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
    _add_rollout(sub)
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
    except Exception as exc:
        if not disk.is_full(exc):
            raise  # a bug: its traceback is the report
        command = args.func.__name__.removeprefix("_cmd_")
        then = "continue it with --resume" if command == "sweep" else "run the command again"
        _say(f"raysym: error: {disk.explain(exc, f'raysym {command}', then)}")
        return 2


def entry() -> None:
    """The `raysym` program: :func:`main`, then Ray stopped with Ctrl-C ignored. Ray's own exit hook would
    stop it otherwise, and a Ctrl-C pressed again while it does (users press it twice) printed a traceback."""
    pipe_closed = False
    try:
        code = main()
    except KeyboardInterrupt:  # pressed again before main could answer the first
        code = 130
    except BrokenPipeError:  # the reader went away (`raysym inspect DATA | head`): not an error of raysym's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # a later print would raise again
        code, pipe_closed = 141, True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _shutdown_ray()
    if pipe_closed:
        # Ended without the interpreter's teardown: the command stopped in the middle of its output, where
        # pyarrow's dataset scanner may still be releasing buffers on its own threads, and one that needed
        # the GIL during teardown aborted the process (SIGABRT, "terminate called without an active
        # exception": 3 in 60 runs of `raysym inspect DATA | head -1` on 2 loaded cores). Nothing is left to
        # write: the output is gone, and every file raysym writes is renamed into place when complete.
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _shutdown_ray() -> None:
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    entry()
