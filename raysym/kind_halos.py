"""The halo trial kind: a node-level Graph Network on a halo catalog's radius graph, the paper's
dark-matter experiment.

A sweep of this kind has a ``halos`` section of HaloConfig keys (a list is a grid dimension); each point
is one trial. The keys in :data:`GRAPH_KEYS` define the graph (the trial's "data"), the rest how to train.
Its parts:

- data: each catalog read (or a synthetic one made) and its radius graph built before Tune starts, so a
  bad file stops the sweep early (raysym.halo_data);
- train: raysym.halos.run_halo_trial;
- distil: raysym.halo_distill.distill_halo_trial (edge and node formulas, the edge-function verdict);
- report: raysym.report_halos.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from raysym.config import HaloConfig, SweepConfig, from_dict
from raysym.trial_kind import TrialKind, TrialNames, TrialSpec

# The HaloConfig keys that define a halo trial's graph (its "data"); the others are training settings.
GRAPH_KEYS = ("catalog", "target", "box", "radius", "points")


def halo_config(spec: dict[str, Any]) -> HaloConfig:
    """The HaloConfig of a halo trial's spec (as a dict)."""
    return from_dict(HaloConfig, {**spec["data"], **spec["train"]}, where="trial")


class HaloKind(TrialKind):
    name = "halos"
    data_noun = "catalogs"
    writes_data_root = False  # catalogs are read where they are; synthetic ones are made in memory
    results_columns = ("trial", "system", "model", "schedule", "status", "epochs", "test_mae", "r2_edge")
    figures = ("loss", "halo", "stds", "stds_epochs")
    live_metrics = ("test/mae", "train/mae", "train/loss")

    def validate_sweep(self, cfg: SweepConfig) -> None:
        cfg.validate_halos()

    def plan(self, cfg: SweepConfig) -> list[TrialSpec]:
        swept, specs = cfg.swept_keys(), []
        for point in cfg.halo_points():
            fields = dataclasses.asdict(point)
            params = {key: fields[key] for key in swept}  # as the YAML wrote them
            if point.catalog != "synthetic":  # trials run in their own folders: a relative path would break
                fields["catalog"] = str(Path(point.catalog).expanduser().resolve())
            data = {k: fields[k] for k in GRAPH_KEYS}
            train = {k: v for k, v in fields.items() if k not in GRAPH_KEYS}
            specs.append(TrialSpec(f"t{len(specs):03d}", data, data["catalog"], None, train, params, self.name))
        return specs

    def label(self, spec: TrialSpec) -> str:
        catalog = spec.data["catalog"]
        name = catalog if catalog == "synthetic" else Path(catalog).stem
        return f"halos-{name} r={spec.data['radius']:g} l1={spec.train['l1']:g}"

    def epochs(self, spec: TrialSpec) -> int:
        return spec.train.get("epochs", HaloConfig.epochs)

    def trial_config(self, spec: dict[str, Any], tune_config: dict[str, Any]) -> HaloConfig:
        return halo_config(spec)

    def settings(self, spec: dict[str, Any], tune_config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(halo_config(spec)).items() if k not in GRAPH_KEYS}

    # check_memory: a halo graph's size is known only once its catalog is read (prepare_data checks it)

    def table_names(self, spec: dict[str, Any], sampled: dict[str, float]) -> dict[str, Any]:
        data, train = spec.get("data", {}), spec.get("train", {})
        return {
            "system": "halos-" + Path(data.get("catalog", "?")).stem,
            "dim": None,  # the sweep table's dim column is the simulated systems'
            "model": "nodegn",
            "schedule": f"l1={train.get('l1', HaloConfig.l1):g}",
        }

    def prepare_data(self, specs: list[TrialSpec], say: Callable[[str], None], address: str | None) -> None:
        from raysym.halo_data import build_graph, check_memory

        done = set()
        for s in specs:
            seed = s.train["seed"] if s.data["catalog"] == "synthetic" else None  # a synthetic catalog is made from it
            graph_key = json.dumps([s.data, s.train["hidden"], seed], sort_keys=True)
            if graph_key in done:  # the same graph (and model width) as an earlier point
                continue
            done.add(graph_key)
            cfg = halo_config(dataclasses.asdict(s))
            graph = build_graph(cfg)
            if address is None:  # on a cluster the trials run on other machines
                check_memory(graph, cfg)
            say(
                f"catalog {s.data_dir}: {len(graph.catalog):,} points, {len(graph.senders):,} edges within radius "
                f"{s.data['radius']:g}"
            )

    def train(self, cfg, out_dir, *, callback, resume, claim):
        from raysym.halos import run_halo_trial

        return run_halo_trial(cfg, out_dir, callback=callback, resume=resume, claim=claim)

    def distil(self, trial_dir, cfg, pool=None):
        from raysym.halo_distill import distill_halo_trial

        return distill_halo_trial(trial_dir, cfg, pool)

    def names(self, trial) -> TrialNames:
        # halos-synthetic, or halos-<catalog file name>; the run's label names the catalog, radius and L1
        # strength, which seeds share
        return TrialNames("halos-" + Path(trial.setting("catalog", "?")).stem, 3, "nodegn", trial.label)

    def report_sections(self, sweep, published):
        from raysym.report_halos import halo_sections

        return halo_sections(sweep)


KIND = HaloKind()
