"""raysym from Python (a notebook, a script): the same functions the commands call, returning pandas
DataFrames instead of printing.

    import raysym
    results = raysym.run_sweep("tune_configs/quickstart.yaml")   # one row per trial
    runs = raysym.load_results("quickstart")                      # every metric of every trial, from MLflow
    report = raysym.make_report("quickstart")                     # reports/quickstart/report.md and .html

``run_sweep`` starts a local Ray when none is running and shuts it down when it ends (a Ray you started
yourself is left running). Running a finished sweep again returns its results instead of refusing (the same
plan only: a config that changes what its trials are under the same name is refused, as the command refuses
it); running an interrupted one continues it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable

from raysym.config import SweepConfig, from_dict, load_yaml
from raysym.errors import UserError


def sweep_config(config: str | Path | dict[str, Any] | SweepConfig) -> SweepConfig:
    """A SweepConfig from a YAML path, a dict of the YAML's content, or a SweepConfig."""
    if isinstance(config, SweepConfig):
        return config
    if isinstance(config, dict):
        if not config:  # as the CLI refuses an empty YAML file: never the whole default sweep by accident
            raise UserError(
                "The sweep config (dict) is empty. Give at least its name and what to sweep; start from one of "
                "tune_configs/*.yaml (e.g. quickstart.yaml), loaded with raysym.sweep_config(path)."
            )
        return from_dict(SweepConfig, config, where="sweep config (dict)")
    return from_dict(SweepConfig, load_yaml(config), where=f"sweep config ({config})")


def run_sweep(
    config: str | Path | dict[str, Any] | SweepConfig,
    *,
    address: str | None = None,
    verbose: int = 0,
    say: Callable[[str], None] = print,
):
    """Run a sweep (see ``raysym sweep``) and return its results as a pandas DataFrame, one row per trial:
    the columns of the console table and sweep_results.csv (trial, system, model, status, epochs, test_mae,
    the R² variants, sparse, law). ``verbose`` is Ray Tune's (0: no live table). The DataFrame's
    ``attrs`` hold the sweep's Tune folder and MLflow parent run id."""
    import pandas as pd

    from raysym.sweep import _has_tune_state
    from raysym.sweep import run_sweep as sweep
    from raysym.sweep_plan import check_same_plan, experiment_path, plan, plan_record
    from raysym.sweep_results import RESULTS_CSV

    cfg = sweep_config(config)
    path = experiment_path(cfg)
    local = "://" not in path
    done = Path(path) / RESULTS_CSV
    if local and done.is_file() and _has_tune_state(path):
        table = pd.read_csv(done)
        if "interrupted" not in set(table["status"]):  # finished before: its results, not a second run
            # unless this config is another sweep under the same name (more epochs, say): refused, as the
            # command refuses it, instead of an old table passing for this config's
            if not check_same_plan(path, plan_record(cfg, plan(cfg)), cfg.name, finished=True):
                say(f"note: sweep '{cfg.name}' kept no plan, so this config cannot be checked against it")
            say(f"sweep '{cfg.name}' has finished before; its results: {done}")
            table.attrs["experiment_path"] = path
            return table
    resume = local and _has_tune_state(path)  # an interrupted sweep continues
    with _ray_for():
        outcome = sweep(cfg, address=address, resume=resume, say=say, verbose=verbose)
    table = pd.DataFrame(outcome.rows)
    table.attrs.update(experiment_path=outcome.experiment_path, parent_run_id=outcome.parent_run_id)
    return table


def load_results(
    sweep: str | Path | dict[str, Any] | SweepConfig,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
):
    """Every trial of a sweep as MLflow holds it, one row each: trial (key), label, status, kind, run_id,
    the swept settings, every final metric under its namespaced name (``test/mae``, ``messages/r2_force``,
    ``distill/recovered``, ...; meanings in raysym.metrics) and the law (the distillation's verdict).
    ``sweep``: a sweep YAML (path, dict or SweepConfig: its name and tracking store), or a sweep's name or
    parent run id in ``tracking_uri`` (default sqlite:///mlflow.db)."""
    import pandas as pd

    from raysym.report_data import load_sweep

    name, uri, experiment = _sweep_and_store(sweep, tracking_uri, experiment)
    data = load_sweep(uri, name, experiment, histories=False)
    rows = []
    for t in data.trials:
        law = t.distill.get("distill/recovered_as", "-") if t.distill else "-"
        rows.append(
            {
                "trial": t.key,
                "label": t.label,
                "status": t.status.lower(),
                "kind": t.kind_name,
                "run_id": t.run_id,
                **t.params,
                **t.metrics,
                "law": law,
            }
        )
    table = pd.DataFrame(rows)
    table.attrs.update(sweep=data.name, parent_run_id=data.run_id, tracking_uri=uri)
    return table


def make_report(
    sweep: str | Path | dict[str, Any] | SweepConfig,
    out: str | Path | None = None,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    say: Callable[[str], None] = print,
):
    """Write the sweep's report (``raysym report``) and return it (paths to report.md and report.html,
    the sections, the sweep as read from MLflow)."""
    from raysym.report import make_report as report

    name, uri, experiment = _sweep_and_store(sweep, tracking_uri, experiment)
    return report(uri, name, out, experiment=experiment, say=say)


def _sweep_and_store(sweep, tracking_uri: str | None, experiment: str | None) -> tuple[str, str, str | None]:
    """(sweep name or run id, tracking URI, experiment) from a sweep YAML or a bare name."""
    if isinstance(sweep, (SweepConfig, dict)) or str(sweep).endswith((".yaml", ".yml")):
        cfg = sweep_config(sweep)
        return cfg.name, tracking_uri or cfg.tracking.uri, experiment or cfg.tracking.experiment
    return str(sweep), tracking_uri or "sqlite:///mlflow.db", experiment


@contextlib.contextmanager
def _ray_for():
    """On leaving, shut down a local Ray that was not running on entering (the sweep starts one), so a
    notebook is not left holding Ray's processes and CPUs; a Ray the caller started is left running."""
    import ray

    was_running = ray.is_initialized()
    try:
        yield
    finally:
        if not was_running and ray.is_initialized():
            ray.shutdown()


__all__ = ["run_sweep", "load_results", "make_report", "sweep_config"]
