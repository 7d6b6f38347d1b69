"""A trial kind written the way a new one is added to raysym: this module, plus one registry line
(``raysym.trial_kind.KINDS["line"] = "toy_kind"``; the test sets it with monkeypatch).

The kind: points on a noisy line y = slope * x + intercept; a one-neuron torch model fitted by gradient
descent; its "distillation" reads the fitted weights as the formula and says whether the slope was
recovered. Nothing in raysym knows about it: the sweep plans, trains, tracks and reports it by asking
this object. docs/architecture.md walks through it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

from raysym.errors import UserError
from raysym.report_cells import Section, Table, num, trials_table
from raysym.strict import did_you_mean
from raysym.trial_kind import TrialKind, TrialNames, TrialSpec


@dataclasses.dataclass(frozen=True)
class LineConfig:
    slope: float = 2.0
    intercept: float = 0.5
    noise: float = 0.05
    points: int = 64
    epochs: int = 4
    lr: float = 0.1
    seed: int = 0


DATA_KEYS = ("slope", "intercept", "noise", "points")
FIELDS = [f.name for f in dataclasses.fields(LineConfig)]


class LineKind(TrialKind):
    name = "line"
    data_noun = "lines"
    writes_data_root = False
    results_columns = ("trial", "system", "model", "status", "epochs", "test_mae")
    figures = ("loss",)
    metrics = {"distill/slope_error": "|fitted slope - true slope|"}

    def validate_sweep(self, cfg) -> None:
        for section, keys in (("data", DATA_KEYS), ("trials", [k for k in FIELDS if k not in DATA_KEYS])):
            for key in getattr(cfg, section):
                if key not in keys:
                    raise UserError(f"{section} has an unknown key '{key}' for a line sweep.{did_you_mean(key, keys)}")

    def plan(self, cfg) -> list[TrialSpec]:
        grid = {**cfg.data, **cfg.trials}
        axes = [v if isinstance(v, list) else [v] for v in grid.values()]
        specs = []
        for combo in itertools.product(*axes):
            point = dict(zip(grid, combo))
            data = {k: v for k, v in point.items() if k in DATA_KEYS}
            train = {k: v for k, v in point.items() if k not in DATA_KEYS}
            params = {k: point[k] for k in cfg.swept_keys()}
            specs.append(TrialSpec(f"t{len(specs):03d}", data, "in memory", None, train, params, self.name))
        return specs

    def label(self, spec: TrialSpec) -> str:
        return f"line slope={spec.data.get('slope', LineConfig.slope):g} lr={spec.train.get('lr', LineConfig.lr):g}"

    def epochs(self, spec: TrialSpec) -> int:
        return spec.train.get("epochs", LineConfig.epochs)

    def trial_config(self, spec, tune_config) -> LineConfig:
        return LineConfig(**spec["data"], **spec["train"])

    def table_names(self, spec, sampled) -> dict:
        return {"system": "line", "dim": 1, "model": "neuron", "schedule": "-"}

    def prepare_data(self, specs, say, address) -> None:
        say(f"{len(specs)} line(s): drawn in memory by each trial")

    def train(self, cfg: LineConfig, out_dir, *, callback, resume, claim) -> dict:
        import numpy as np
        import torch

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps({"kind": self.name, **dataclasses.asdict(cfg)}))
        rng = np.random.default_rng(cfg.seed)
        x = rng.uniform(-1, 1, size=(2 * cfg.points, 1)).astype(np.float32)
        y = cfg.slope * x + cfg.intercept + cfg.noise * rng.normal(size=x.shape).astype(np.float32)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        torch.manual_seed(cfg.seed)
        neuron = torch.nn.Linear(1, 1)
        optimizer = torch.optim.SGD(neuron.parameters(), lr=cfg.lr)
        for epoch in range(cfg.epochs):
            for _ in range(25):
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(neuron(x[: cfg.points]), y[: cfg.points])
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                test_mae = float((neuron(x[cfg.points :]) - y[cfg.points :]).abs().mean())
            torch.save({"model": neuron.state_dict()}, out_dir / "checkpoint.pt")
            callback({"epoch": epoch, "train/loss": float(loss), "test/mae": test_mae})
        metrics = {"status": "finished", "test/mae": test_mae, "epochs_done": cfg.epochs}
        (out_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    def distil(self, trial_dir, cfg, pool=None) -> dict:
        import torch

        state = torch.load(Path(trial_dir) / "checkpoint.pt", weights_only=True)["model"]
        slope, intercept = float(state["weight"]), float(state["bias"])
        truth = json.loads((Path(trial_dir) / "config.json").read_text())["slope"]
        summary = {
            "distill/edge_formulas": [f"{slope:.4g}*x + {intercept:.4g}"],
            "distill/slope_error": abs(slope - truth),
            "distill/recovered": int(abs(slope - truth) < 0.05),
            "distill/recovered_as": "line" if abs(slope - truth) < 0.05 else "none",
        }
        (Path(trial_dir) / "distill").mkdir(exist_ok=True)
        (Path(trial_dir) / "distill" / "summary.json").write_text(json.dumps(summary))
        return summary

    def names(self, trial) -> TrialNames:
        return TrialNames("line", 1, "neuron", trial.label)

    def report_sections(self, sweep, published) -> list[Section]:
        rows = [
            [t.key, t.label, num(t.metrics.get("test/mae")), num(t.metrics.get("distill/slope_error"))]
            for t in sweep.trials
        ]
        fits = Table("Fitted lines", ["trial", "line", "test MAE", "|slope - true slope|"], rows)
        return [Section("Lines", tables=[fits]), Section("Trials", tables=[trials_table(sweep)])]


KIND = LineKind()
