"""The house rules of the code base: modules live on floors, a module imports only from its own floor or
below, no two modules import each other (directly or round a circle), and the config floor is light
(validating a config imports neither torch nor Ray). A new module must be given a floor here.

Imports are read from the source (every `import`, also those inside functions), so a circle hidden in a
function body counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "raysym"

# The pipeline's stages, bottom up. A module may import from its own floor or any floor below.
FLOORS: list[tuple[str, set[str]]] = [
    (
        "foundations",
        {"errors", "names", "physics", "schedules", "strict", "outputs", "track", "_ray", "graph"}
        | {"metrics", "expressions", "potential", "trial_folder", "trial_kind", "track_writer", "disk"},
    ),
    ("configs", {"sweep_sections", "halo_config", "config", "regularizers"}),
    ("simulation, models, symbolic regression", {"simulate", "model", "newtonian", "hgn", "distill", "optim"}),
    (
        "data and analysis",
        {"shard_format", "shard_reader", "shards", "messages", "message_figures", "verdict", "distill_pool"}
        | {"halo_data"},
    ),
    ("training and planning", {"train", "halos", "sweep_plan"}),
    ("distillation of trials, report data", {"distill_jobs", "halo_distill", "report_data", "rollout"}),
    ("reports", {"report_cells", "report_figures", "report_halos", "report_nbody", "report"}),
    # Trial kinds (raysym.trial_kind): found by name, so the floors below ask a kind without importing it
    ("trial kinds", {"kind_nbody", "kind_halos"}),
    ("sweeps", {"_optuna", "sweep_tracking", "sweep_results", "sweep_trainable", "sweep"}),
    ("command line and Python API", {"cli_common", "cli_trials", "cli", "api", "__init__"}),
]
FLOOR = {module: level for level, (_, modules) in enumerate(FLOORS) for module in modules}


def imports() -> dict[str, set[str]]:
    """Each raysym module -> the raysym modules it imports anywhere in its source."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "raysym":
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names if a.name in modules])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("raysym."))
        graph[path.stem] = found - {path.stem}
    return graph


def test_every_module_has_a_floor():
    missing = sorted(set(imports()) - set(FLOOR))
    assert not missing, f"give these modules a floor in tests/unit/test_architecture.py: {missing}"


def test_no_module_imports_from_a_floor_above():
    wrong = [
        f"{m} ({FLOORS[FLOOR[m]][0]}) imports {d} ({FLOORS[FLOOR[d]][0]})"
        for m, deps in imports().items()
        for d in sorted(deps)
        if m in FLOOR and d in FLOOR and FLOOR[d] > FLOOR[m]
    ]
    assert not wrong, wrong


def test_there_are_no_import_circles():
    graph = imports()
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for dep in sorted(graph.get(module, ())):
            if dep in path:
                circles.append(" -> ".join(path[path.index(dep) :] + [dep]))
            elif dep not in done:
                visit(dep, path + [dep])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert not circles, circles


def test_no_module_is_over_600_lines():
    """A module past ~600 lines is split by stage before it grows harder to read top to bottom."""
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def test_every_registered_trial_kind_lives_on_the_kinds_floor():
    from raysym import trial_kind

    for name, module in trial_kind.KINDS.items():
        short = module.removeprefix("raysym.")
        assert FLOORS[FLOOR[short]][0] == "trial kinds", f"{name}: {module} is not on the trial kinds floor"
        assert trial_kind.get(name).name == name


def test_the_checker_finds_a_circle_and_an_upward_import(monkeypatch):
    """The rules above are not vacuous: a planted circle and a planted upward import are found."""
    planted = {"config": {"names", "sweep"}, "sweep": {"config"}, "names": set()}
    monkeypatch.setattr(sys.modules[__name__], "imports", lambda: planted)
    with pytest.raises(AssertionError, match="config -> sweep -> config"):
        test_there_are_no_import_circles()
    with pytest.raises(AssertionError, match=r"config \(configs\) imports sweep \(sweeps\)"):
        test_no_module_imports_from_a_floor_above()


@pytest.mark.parametrize("module", ["raysym.config", "raysym.sweep_plan", "raysym.names"])
def test_planning_imports_neither_torch_nor_ray(module):
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"{module} pulled in {out}"


def test_the_names_match_what_implements_them():
    import torch

    from raysym import distill, names, regularizers, schedules
    from raysym.model import build_model

    assert tuple(schedules.NAMED) == names.SCHEDULES
    assert tuple(distill._OPERON_SYMBOLS) == names.OPERATORS
    assert set(names.BACKENDS) == {"auto", *(b.name for b in (distill.OperonBackend, distill.PySRBackend))}
    for model in names.MODELS:
        assert build_model(model, 2, hidden=8, layers=1, msg_dim=4) is not None
    mu, logvar = torch.zeros(3, 2), torch.zeros(3, 2)
    for prior in names.PRIORS:
        assert torch.isfinite(regularizers.kl(mu, logvar, prior))
