"""The N-body trial kind: an edge-level Graph Network on simulated particle systems, the paper's main
experiment (its section 4 and the 2024 reproduction).

A sweep of this kind has a ``data`` section (SimulationConfig keys, plus ``root`` and ``prune_k``) and a
``trials`` section (TrainConfig keys); each point of data x prune_k x trials is one trial. Its parts:

- plan: the grid, each data point in a content-addressed shard folder (raysym.sweep_plan.dataset_dir);
- data: Ray Data simulations written as Arrow shards (raysym.shards), reused when they exist;
- train: raysym.train.run_trial (checkpoint, message analysis, metrics.json);
- distil: raysym.distill_jobs.distill_trial (edge and node formulas, the force-law verdict);
- rollout: raysym.rollout (the GN and its symbolic model out of distribution);
- report: raysym.report_nbody (the paper's tables) and the figures listed in ``figures``.

Planning imports neither torch nor Ray: the methods that need them import inside.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from raysym.config import SimulationConfig, SweepConfig, TrainConfig, from_dict
from raysym.errors import UserError
from raysym.names import L1_MODELS
from raysym.sweep_plan import _penalty, dataset_dir, model_label, train_config, trial_memory
from raysym.trial_kind import TrialKind, TrialNames, TrialSpec


class NBodyKind(TrialKind):
    name = "nbody"
    data_noun = "datasets"
    writes_data_root = True
    results_columns = (
        "trial",
        "system",
        "model",
        "schedule",
        "prune_k",
        "status",
        "epochs",
        "test_mae",  # every test graph
        "test_mae_in",  # the test graphs inside the training range
        "r2_force",  # in distribution: test graphs inside the training range
        "in_range",  # the fraction of test graphs that is
        "r2_force_all",  # every test edge
        "r2_accel",
        "sparse",  # n/a for messages without a sparsity prior
        "share",  # the top dim components' part of the summed message stds
    )
    figures = ("l1", "loss", "force", "stds", "stds_epochs", "prune", "optuna", "ood")
    rolls_out = True
    # on the validation split: error, the better R² of the messages (the pair force's for energy models),
    # sparsity share and ratio
    live_metrics = ("val/mae", "val/r2_best", "val/sparsity_share", "val/sparsity_ratio")
    schedule_metric = "val/mae"  # what ASHA compares, per epoch

    # -- planning ---------------------------------------------------------------------------------------
    def validate_sweep(self, cfg: SweepConfig) -> None:
        cfg.validate_nbody()

    def plan(self, cfg: SweepConfig) -> list[TrialSpec]:
        root = str(Path(cfg.data_root).expanduser().resolve())
        swept, specs = cfg.swept_keys(), []
        for sim in cfg.data_points():
            sim_fields = {f.name: getattr(sim, f.name) for f in dataclasses.fields(sim)}
            for k in cfg.prune_ks:
                for train in cfg.trial_points():
                    values = {**sim_fields, "prune_k": k, **train}
                    params = {key: values[key] for key in swept if key in values}
                    specs.append(
                        TrialSpec(f"t{len(specs):03d}", sim_fields, dataset_dir(root, sim), k, train, params, self.name)
                    )
        return specs

    def label(self, spec: TrialSpec) -> str:
        return f"{spec.data['system']}-{spec.data.get('dim', 2)}d {model_label(spec.train)} k={spec.prune_k}"

    def epochs(self, spec: TrialSpec) -> int:
        return spec.train.get("epochs", TrainConfig.epochs)

    def trial_config(self, spec: dict[str, Any], tune_config: dict[str, Any]) -> TrainConfig:
        return train_config(spec, tune_config)

    def check_memory(self, spec: TrialSpec, memory: int) -> None:
        graphs, activations = trial_memory(spec)
        if graphs + activations > memory:
            raise UserError(
                f"Trial {spec.key} ({spec.label()}) would need about {(graphs + activations) / 2**30:,.1f} GiB of "
                f"memory ({graphs / 2**30:,.1f} GiB of graphs, {activations / 2**30:,.1f} GiB of edge activations per "
                f"batch), more than this machine's {memory / 2**30:,.0f} GiB. Lower data.sims, data.steps or "
                "data.particles, raise data.stride, set trials.max_train_graphs, or lower trials.batch_size."
            )

    def table_names(self, spec: dict[str, Any], sampled: dict[str, float]) -> dict[str, Any]:
        import json

        train, data = spec.get("train", {}), spec.get("data", {})
        schedule = train.get("l1_schedule", TrainConfig.l1_schedule) if _penalty(train) == "l1" else "-"
        if sampled:  # an Optuna trial: the shape it sampled
            schedule = "shape " + json.dumps(sampled)
        return {
            "system": f"{data.get('system')}-{data.get('dim')}d",
            "dim": data.get("dim"),
            "model": model_label(train, with_penalty=False),
            "schedule": schedule,
        }

    # -- data -------------------------------------------------------------------------------------------
    def prepare_data(self, specs: list[TrialSpec], say: Callable[[str], None], address: str | None) -> None:
        from raysym import shard_format, shards

        for data_dir in dict.fromkeys(s.data_dir for s in specs):  # each dataset once, in plan order
            spec = next(s for s in specs if s.data_dir == data_dir)
            sim = from_dict(SimulationConfig, spec.data, where="data")
            name = Path(data_dir).name
            result = shards.write_dataset(sim, data_dir, address=address, progress=lambda m: say(f"data {name}: {m}"))
            how = "reused" if result.reused else f"written in {result.seconds:.1f} s"
            say(f"data {data_dir}: {shard_format.describe(result.manifest).splitlines()[0]} ({how})")

    # -- training, distillation -------------------------------------------------------------------------
    def train(self, cfg, out_dir, *, callback, resume, claim):
        from raysym.train import run_trial

        return run_trial(cfg, out_dir, callback=callback, resume=resume, claim=claim)

    def distil(self, trial_dir, cfg, pool=None):
        from raysym.distill_jobs import distill_trial

        return distill_trial(trial_dir, cfg, pool)

    def rollout(self, trial_dir, cfg):
        from raysym.rollout import run_rollout

        return run_rollout(trial_dir, cfg)

    # -- report -----------------------------------------------------------------------------------------
    def names(self, trial) -> TrialNames:
        system, dim = trial.setting("system", "?"), int(float(trial.setting("dim", 2)))
        model = trial.setting("model", "?")
        if model == "newtonian":  # newtonian, newtonian-l1-<schedule>, newtonian-kl
            form = trial.setting("newtonian_messages", "bottleneck")
            if form != "bottleneck":
                model = f"{model}-{form}" + (f"-{trial.setting('l1_schedule', 'linear')}" if form == "l1" else "")
        elif model in L1_MODELS:  # the papers' l1 and raysym's wide and inverse, with their schedule
            model = f"{model}-{trial.setting('l1_schedule', 'linear')}"
        k = "none" if trial.prune_k is None else f"{trial.prune_k:g}"
        return TrialNames(system, dim, model, f"{system}-{dim}d {model} k={k}")

    def report_sections(self, sweep, published):
        from raysym.report_nbody import nbody_sections

        return nbody_sections(sweep, published)


KIND = NBodyKind()
