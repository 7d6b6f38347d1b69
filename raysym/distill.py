"""Symbolic regression behind one interface: PySR where Julia exists, Operon (pyoperon) everywhere else.

A backend only proposes candidate equations (strings over the given variable names). Everything after
that is shared, so the two backends' results compare:

* each candidate is parsed with sympy and scored on the data by raysym itself: loss = mean squared
  error, complexity = number of nodes of the sympy expression tree (operators, variables, constants);
* the Pareto front keeps, for each complexity, the lowest loss, and only candidates that beat every
  simpler one by at least 1% of the loss;
* selection (PySR's "best" rule, widened): among the formulas whose loss is within ``loss_factor`` of
  the best loss (DistillConfig, default 10) or that explain 99% of the target's variance, the one with
  the highest score, score = -d log(loss) / d complexity against the next simpler formula of the front
  (the paper's criterion). Losses are floored at 1e-10 x var(y) first, so float round-off between two
  exact formulas cannot pass for a gain.

Backends:
  operon  pyoperon's SymbolicRegressor, the embedded default (``fast`` for tests, ``thorough`` for runs)
  pysr    PySRRegressor; only when a Julia executable is found (PySR downloads Julia on import
          otherwise, which fails without internet), so it is never probed by importing it
  auto    pysr if Julia is present, else operon
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from raysym.config import DistillConfig
from raysym.errors import UserError
from raysym.names import BACKENDS

LOSS_FLOOR = 1e-10  # relative to var(y)
# A formula that fits no more than 1% better than a shorter one is the same fit with more nodes; on the
# front it would make the next formula's score look like a jump it is not.
MIN_GAIN = 0.01

OPERON_PRESETS = {
    # ~1 s per fit: for tests and smoke runs
    "fast": dict(population_size=200, pool_size=200, generations=15, max_length=20, optimizer_iterations=3),
    # ~1 min per fit on one core; recovered every synthetic law in the benchmark
    "thorough": dict(population_size=1000, pool_size=1000, generations=100, max_length=30, optimizer_iterations=5),
}
PYSR_PRESETS = {
    "fast": dict(niterations=5, populations=8),
    "thorough": dict(niterations=100, populations=30),
}
_OPERON_SYMBOLS = {
    "+": "add",
    "-": "sub",
    "*": "mul",
    "/": "div",
    "sqrt": "sqrt",
    "exp": "exp",
    "log": "log",
    "square": "square",
}


# --------------------------------------------------------------------------------------------------
# Fronts and selection (shared by every backend)
# --------------------------------------------------------------------------------------------------


@dataclass
class Formula:
    equation: str  # sympy's string of the expression, over the variable names
    complexity: int
    loss: float  # mean squared error on the fitting data
    score: float = 0.0

    def sympy(self, names: list[str]):
        return parse(self.equation, names)

    def latex(self, names: list[str]) -> str:
        import sympy

        return sympy.latex(self.sympy(names))


@dataclass
class Front:
    """A Pareto front of formulas (simplest first) over ``names``, with the chosen one."""

    names: list[str]
    formulas: list[Formula]
    chosen: int
    backend: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Formula:
        return self.formulas[self.chosen]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "complexity": f.complexity,
                "loss": f.loss,
                "score": f.score,
                "equation": f.equation,
                "chosen": i == self.chosen,
            }
            for i, f in enumerate(self.formulas)
        ]

    def to_csv(self, path: str | Path) -> None:
        import csv

        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["complexity", "loss", "score", "equation", "chosen"])
            writer.writeheader()
            writer.writerows(self.rows())

    def to_markdown(self) -> str:
        lines = ["| complexity | loss (MSE) | score | equation | LaTeX |", "|---|---|---|---|---|"]
        for i, f in enumerate(self.formulas):
            mark = " **(chosen)**" if i == self.chosen else ""
            lines.append(
                f"| {f.complexity} | {f.loss:.4g} | {f.score:.3g} | `{f.equation}`{mark} | ${f.latex(self.names)}$ |"
            )
        return "\n".join(lines)


def parse(equation: str, names: list[str]):
    """A sympy expression from an equation string over ``names`` (each a real symbol; empty: any identifier),
    read by raysym's own grammar (raysym.expressions), never by sympy's parser, which runs code: equations
    come back from trial folders and MLflow tags that anyone with write access to them could have edited.
    ValueError (raysym.expressions.ExpressionError) for text that is not such a formula."""
    from raysym.expressions import ExpressionError, formula_grammar, read, where

    try:
        return read(equation, formula_grammar(names))
    except ExpressionError as exc:
        raise ExpressionError(
            f"{equation[:80]!r} is not a formula raysym writes: {exc.why}{where(equation, exc.at)}"
        ) from None


FORMULA_KEYS = ("distill/edge_formulas", "distill/node_formulas")


def load_summary(path: str | Path) -> dict[str, Any]:
    """A distillation's summary.json, its formulas checked against raysym's grammar before anything reads
    them: UserError naming the file when it is not JSON or holds a formula raysym would not have written
    (edited by hand, or planted: a trial folder may be shared)."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}). It is a distillation's summary; distil the "
            f"trial again to write it afresh: raysym distill {path.parent.parent}"
        ) from None
    for key in FORMULA_KEYS:
        found = summary.get(key, [])
        if not isinstance(found, list) or not all(isinstance(eq, str) for eq in found):
            raise UserError(
                f"{path}: {key} is not a list of formulas. Distil the trial again: raysym distill {path.parent.parent}"
            )
        for eq in found:
            try:
                parse(eq, [])
            except ValueError as exc:
                raise UserError(
                    f"{path} ({key}): {exc}. The file was changed after raysym wrote it, so none of its formulas "
                    f"are used. Distil the trial again to replace it: raysym distill {path.parent.parent}"
                ) from None
    return summary


def rounded(equation: str, names: list[str], digits: int = 4):
    """The equation as a sympy expression with every constant rounded to ``digits`` significant digits."""
    import sympy

    expr = parse(equation, names)
    return expr.xreplace({c: sympy.Float(c, digits) for c in expr.atoms(sympy.Float)})


def readable(equation: str, names: list[str], digits: int = 4) -> str:
    """The equation as plain text with every constant rounded to ``digits`` significant digits, for
    tables and logs (the stored equation keeps full precision)."""
    return str(rounded(equation, names, digits))


def mathml(equation: str, names: list[str], digits: int = 4) -> str:
    """The equation as presentation MathML (``<math>...</math>``), constants to ``digits`` significant
    digits: browsers render it as mathematics, with nothing to download."""
    from sympy.printing.mathml import mathml as to_mathml

    body = to_mathml(rounded(equation, names, digits), printer="presentation")
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML">{body}</math>'


def complexity(expr) -> int:
    """Nodes of the expression tree: operators, variables and constants each count 1."""
    import sympy

    return sum(1 for _ in sympy.preorder_traversal(expr))


@functools.lru_cache(maxsize=256)
def compiled(equation: str, names: tuple[str, ...]):
    """The equation as a numpy function of one array per name, parsed and compiled once per process (a
    rollout evaluates the same formulas four times per step)."""
    import sympy

    expr = parse(equation, list(names))
    return sympy.lambdify([sympy.Symbol(n, real=True) for n in names], expr, modules="numpy")


def evaluate(equation: str, X: np.ndarray, names: list[str]) -> np.ndarray:
    """The equation evaluated on the columns of X (rows, len(names)), as float64 (rows,)."""
    fn = compiled(equation, tuple(names))
    with np.errstate(all="ignore"):
        out = fn(*[X[:, i] for i in range(X.shape[1])])
    return np.broadcast_to(np.asarray(out, dtype=np.float64), (len(X),)).copy()


def build_front(candidates: list[str], X: np.ndarray, y: np.ndarray, names: list[str], loss_factor: float) -> Front:
    """Score candidates on (X, y), keep the Pareto front, choose by the shared rule."""
    scored: list[Formula] = []
    for equation in candidates:
        try:
            expr = parse(equation, names)
        except ValueError:
            continue
        pred = evaluate(str(expr), X, names)
        scored.append(Formula(str(expr), complexity(expr), float(np.mean((pred - y) ** 2))))
    return pareto_front(scored, names, float(np.var(y)), loss_factor)


def pareto_front(scored: list[Formula], names: list[str], variance: float, loss_factor: float) -> Front:
    """The Pareto front of formulas with their losses (the best at each complexity, then only those that
    beat every simpler one), their scores (losses floored at LOSS_FLOOR x ``variance``, the target's) and
    the chosen one. Formulas with a non-finite loss are dropped; raises ValueError when none is left."""
    floor = LOSS_FLOOR * max(variance, 1e-300)
    best: dict[int, Formula] = {}
    for f in scored:
        if math.isfinite(f.loss) and (f.complexity not in best or f.loss < best[f.complexity].loss):
            best[f.complexity] = Formula(f.equation, f.complexity, f.loss)
    front: list[Formula] = []
    for c in sorted(best):  # a longer formula enters only if it fits better than every shorter one by 1%
        if not front or best[c].loss < (1 - MIN_GAIN) * front[-1].loss:
            front.append(best[c])
    if not front:
        raise ValueError("the backend proposed no equation that evaluates to finite values")
    for prev, cur in zip(front, front[1:]):
        gain = math.log(max(prev.loss, floor)) - math.log(max(cur.loss, floor))
        cur.score = gain / (cur.complexity - prev.complexity)
    return Front(names, front, select(front, loss_factor, variance))


GOOD_FIT_R2 = 0.99  # a formula that explains this share of the target's variance is always eligible


def select(front: list[Formula], loss_factor: float, variance: float | None = None) -> int:
    """Index of the highest-scoring formula among the eligible ones (the simplest of them on ties; the
    simplest formula of the front has score 0). Eligible: loss <= loss_factor x the best loss, or, when the
    target's ``variance`` is given, loss <= (1 - GOOD_FIT_R2) x variance (the formula explains 99% of it)."""
    best = min(f.loss for f in front)
    good = (1 - GOOD_FIT_R2) * variance if variance is not None else 0.0
    eligible = [i for i, f in enumerate(front) if f.loss <= loss_factor * best or f.loss <= good]
    return max(eligible, key=lambda i: (front[i].score, -front[i].complexity))


# --------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------


class Backend(Protocol):
    name: str

    def settings(self) -> dict[str, Any]: ...
    def candidates(self, X: np.ndarray, y: np.ndarray, names: list[str], workdir: Path | None) -> list[str]: ...


class OperonBackend:
    """pyoperon's SymbolicRegressor: multi-objective (R², length) GP with Levenberg-Marquardt constants."""

    name = "operon"

    def __init__(self, cfg: DistillConfig):
        self.cfg = cfg

    def settings(self) -> dict[str, Any]:
        symbols = ",".join(_OPERON_SYMBOLS[op] for op in self.cfg.operators) + ",constant,variable"
        return dict(
            allowed_symbols=symbols,
            objectives=["r2", "length"],
            optimizer="lm",
            tournament_size=3,
            model_selection_criterion="minimum_description_length",
            max_depth=10,
            n_threads=self.cfg.threads,
            random_state=self.cfg.seed,
            **{**OPERON_PRESETS[self.cfg.setting], **({"max_length": self.cfg.max_size} if self.cfg.max_size else {})},
            **({"max_time": int(self.cfg.timeout_s)} if self.cfg.timeout_s else {}),
        )

    def candidates(self, X, y, names, workdir=None) -> list[str]:
        from pyoperon.sklearn import SymbolicRegressor

        reg = SymbolicRegressor(**self.settings())
        # pyoperon needs writable float64 Fortran-ordered arrays (a pandas 3 frame gives read-only ones).
        reg.fit(np.asfortranarray(X, dtype=np.float64), np.array(y, dtype=np.float64))
        # precision 12: the default rounds constants too hard to evaluate the formula faithfully
        return [reg.get_model_string(entry["tree"], 12, names) for entry in reg.pareto_front_]


def julia_executable() -> str | None:
    """A Julia executable for PySR, or None. Looks at juliacall's / juliapkg's variables, then PATH."""
    for var in ("PYTHON_JULIACALL_BINDIR", "JULIA_BINDIR"):
        folder = os.environ.get(var)
        if folder and Path(folder, "julia").exists():
            return str(Path(folder, "julia"))
    for var in ("PYTHON_JULIAPKG_EXE", "JULIA_EXE"):
        exe = os.environ.get(var)
        if exe and Path(exe).exists():
            return exe
    return shutil.which("julia")


class PySRBackend:
    """PySRRegressor with raysym's options; its hall_of_fame.csv is kept in the job's folder."""

    name = "pysr"

    def __init__(self, cfg: DistillConfig):
        self.cfg = cfg

    def settings(self) -> dict[str, Any]:
        binary = [op for op in self.cfg.operators if op in ("+", "-", "*", "/")]
        unary = [op for op in self.cfg.operators if op not in binary]
        opts = dict(
            binary_operators=binary,
            unary_operators=unary,
            maxsize=self.cfg.max_size or 30,
            elementwise_loss="L2DistLoss()",
            parsimony=self.cfg.parsimony,
            model_selection="best",
            random_state=self.cfg.seed,
            deterministic=True,
            parallelism="serial",
            progress=False,
            temp_equation_file=False,
            verbosity=0,
            **PYSR_PRESETS[self.cfg.setting],
        )
        if self.cfg.timeout_s:
            opts["timeout_in_seconds"] = self.cfg.timeout_s
        return opts

    def candidates(self, X, y, names, workdir=None) -> list[str]:
        if julia_executable() is None:
            raise UserError(_NO_JULIA)
        os.environ.setdefault("PYTHON_JULIACALL_THREADS", str(self.cfg.threads))
        from pysr import PySRRegressor  # lazy: importing pysr starts Julia

        workdir = Path(workdir or ".")
        workdir.mkdir(parents=True, exist_ok=True)
        reg = PySRRegressor(**self.settings(), output_directory=str(workdir), run_id="pysr")
        reg.fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), variable_names=names)
        return read_hall_of_fame(workdir / "pysr" / "hall_of_fame.csv")


def read_hall_of_fame(path: str | Path) -> list[str]:
    """Equations from a PySR hall_of_fame.csv (columns Complexity, Loss, Equation), in sympy syntax."""
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "Equation" not in rows[0]:
        raise ValueError(f"{path} is not a PySR hall of fame (no Equation column)")
    # PySR writes powers as ^ (Julia); sympy wants **.
    return [row["Equation"].replace("^", "**") for row in rows]


_NO_JULIA = (
    "The pysr backend needs Julia, and no Julia executable was found (PATH, JULIA_EXE, "
    "PYTHON_JULIAPKG_EXE). Install Julia (https://julialang.org/install) and PySR's Julia packages "
    "(`python -c 'import pysr'` once), or use backend: operon (the embedded default, no Julia needed)."
)


def get_backend(cfg: DistillConfig) -> Backend:
    """The backend ``cfg.backend`` names; ``auto`` picks pysr where Julia is found, else operon."""
    if cfg.backend == "operon":
        return OperonBackend(cfg)
    if cfg.backend == "pysr":
        if julia_executable() is None:
            raise UserError(_NO_JULIA)
        return PySRBackend(cfg)
    if cfg.backend == "auto":
        return PySRBackend(cfg) if julia_executable() else OperonBackend(cfg)
    raise UserError(f"Unknown distillation backend '{cfg.backend}'. Use one of: {', '.join(BACKENDS)}.")


def fit(X: np.ndarray, y: np.ndarray, names: list[str], cfg: DistillConfig, workdir: Path | None = None) -> Front:
    """Distil y ~ f(X): the backend's candidates, raysym's front and choice. X: (rows, len(names))."""
    if X.ndim != 2 or X.shape[1] != len(names) or len(X) != len(y):
        raise ValueError(f"X {X.shape} and y {y.shape} do not match {len(names)} names")
    if not np.all(np.isfinite(X)) or not np.all(np.isfinite(y)):
        raise UserError("The distillation data contain NaN or infinite values; check the trained model and the data.")
    if np.std(y) == 0:
        raise UserError("The target has no variance (a constant message component?): there is no law to distil.")
    backend = get_backend(cfg)
    candidates = backend.candidates(X, y, names, workdir)
    front = build_front(candidates, X, y, names, cfg.window())
    front.backend, front.settings = backend.name, {k: v for k, v in backend.settings().items() if k != "random_state"}
    return front
