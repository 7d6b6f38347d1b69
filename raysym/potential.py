"""User-defined pair potentials: an expression read by a small grammar of its own, never evaluated.

``system: custom`` with ``potential: "<expression>"`` simulates particles under any pair potential U of

    r        the softened distance r' = r + 0.01, as for the built-in laws (raysym.physics)
    q1, q2   the charges of the receiver (1) and the sender (2)
    m1, m2   their masses

written with numbers, + - * / and ^ (or **), parentheses, and the functions exp, log, sqrt, sin, cos, tanh,
abs, Heaviside (one argument each) and Min, Max (two or more). The text is read by raysym.expressions, by
recursive descent, straight into a sympy expression: no string ever reaches sympy's parser or Python's
(sympify and parse_expr run code), so an expression can name nothing but the variables and functions above.

The force comes from the symbolic derivative dU/dr', compiled to numpy once per process. Newton's third law
needs U to be the same for both particles of a pair: U(r, q1, q2, m1, m2) = U(r, q2, q1, m2, m1); an
expression that is not is refused with the reason.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from raysym.errors import UserError
from raysym.expressions import ExpressionError, Grammar, read, where

VARIABLES = ("r", "q1", "q2", "m1", "m2")
FUNCTIONS = {"exp": 1, "log": 1, "sqrt": 1, "sin": 1, "cos": 1, "tanh": 1, "abs": 1, "Heaviside": 1, "Min": 2, "Max": 2}
MAX_LENGTH = 500  # characters: a potential is a formula, not a program
MAX_DEPTH = 50  # nesting of parentheses and calls

# Min and Max take two or more arguments (-2), the others one.
GRAMMAR = Grammar(
    VARIABLES,
    {name: ("Abs" if name == "abs" else name, -2 if count == 2 else count) for name, count in FUNCTIONS.items()},
    max_length=MAX_LENGTH,
    max_depth=MAX_DEPTH,
)


def _problem(expression: str, why: str, at: int | None = None) -> UserError:
    return UserError(
        f"The potential {expression!r} cannot be used: {why}{where(expression, at)}. Write U of r, q1, q2, m1, m2 "
        f'with numbers, + - * / ^, parentheses and {", ".join(FUNCTIONS)}; e.g. potential: "(r - 1)^2" is the '
        "spring law."
    )


@dataclass(frozen=True)
class CustomLaw:
    """A parsed potential: the sympy expression of U and of dU/dr', and numpy functions of both taking
    (r', q_receiver, q_sender, m_receiver, m_sender) like raysym.physics' built-in laws."""

    expression: str
    u: Any
    du: Any
    potential: Any
    dpotential: Any
    charged: bool


def parse(expression: str):
    """The sympy expression of a potential (UserError naming the problem when it is not one)."""
    if not isinstance(expression, str):
        raise UserError(f"potential must be a formula in quotes, got {expression!r}.")
    if len(expression) > MAX_LENGTH:
        raise _problem(expression[:40] + "...", f"it is longer than {MAX_LENGTH} characters")
    try:
        return read(expression, GRAMMAR)
    except ExpressionError as exc:
        raise _problem(expression, exc.why, exc.at) from None


@functools.lru_cache(maxsize=32)
def custom_law(expression: str) -> CustomLaw:
    """Parse, check and compile a potential once per process."""
    import numpy as np
    import sympy

    u = parse(expression)
    if u.has(sympy.zoo, sympy.oo, sympy.nan):  # 1/0, log(0): sympy's infinities, not a number to simulate
        raise _problem(expression, "it is infinite or undefined as written (a division by zero, or log(0))")
    s = {name: sympy.Symbol(name, real=True) for name in VARIABLES}
    swapped = u.xreplace({s["q1"]: s["q2"], s["q2"]: s["q1"], s["m1"]: s["m2"], s["m2"]: s["m1"]})
    if not _same(u, swapped, s):
        raise _problem(
            expression,
            "it changes when the two particles swap (q1 <-> q2, m1 <-> m2), so the forces of a pair would not be equal "
            "and opposite (Newton's third law); write it symmetric in the two particles, e.g. q1*q2 or m1 + m2",
        )
    # A step of U (Heaviside) has an impulse for a derivative (DiracDelta): a force at one distance only,
    # which a time-stepped simulation never meets, so it is dropped; the force is U's slope elsewhere.
    du = sympy.diff(u, s["r"]).replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: sympy.Integer(0))
    args = [s[name] for name in VARIABLES]
    # sympy prints Heaviside(x) with its value at 0 as a second argument
    heaviside = lambda x, at_zero=0.5: np.heaviside(x, at_zero)  # noqa: E731
    modules = [{"Heaviside": heaviside, "Min": np.minimum, "Max": np.maximum}, "numpy"]

    def compiled(expr):
        fn = sympy.lambdify(args, expr, modules=modules)

        def pair(r, qr, qs, mr, ms):  # a constant term comes back as a scalar: give it the pairs' shape
            shape = np.broadcast_shapes(*(np.shape(x) for x in (r, qr, qs, mr, ms)))
            return np.broadcast_to(np.asarray(fn(r, qr, qs, mr, ms), dtype=np.float64), shape)

        return pair

    charged = bool(u.free_symbols & {s["q1"], s["q2"]})
    law = CustomLaw(expression, u, du, compiled(u), compiled(du), charged)
    _check_finite(law)
    return law


# Where a simulation evaluates U and its slope: softened distances from 0.01 (r' = r + 0.01 at contact) to
# far beyond where N(0, 1) initial positions put particles, charges +-1, masses exp(N(0, 1)) to 3 sigma.
CHECK_DISTANCES = (0.01, 30.0)


def _check_finite(law: CustomLaw) -> None:
    """Refuse a potential whose value or force is not a finite number somewhere a simulation can go, naming
    the first such distance, before any data task starts (it would otherwise fail inside a Ray worker)."""
    import numpy as np

    r = np.geomspace(*CHECK_DISTANCES, 400)
    values = [(-1.0, 1.0), (-1.0, 1.0), (np.exp(-3), 1.0, np.exp(3)), (np.exp(-3), 1.0, np.exp(3))]
    grid = np.meshgrid(r, *values, indexing="ij")
    points = [g.ravel() for g in grid]
    for name, fn in (("U(r)", law.potential), ("its force -dU/dr", law.dpotential)):
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(fn(*points), dtype=np.float64)
        except (TypeError, ValueError, NameError, ZeroDivisionError, OverflowError) as exc:
            raise _problem(law.expression, f"{name} cannot be computed ({type(exc).__name__}: {exc})") from None
        bad = ~np.isfinite(out)
        if bad.any():
            i = int(np.argmax(bad))
            at = ", ".join(f"{k} = {points[j][i]:.3g}" for j, k in enumerate(VARIABLES))
            raise _problem(
                law.expression,
                f"{name} is not finite at {at} (softened distances r from {CHECK_DISTANCES[0]} to "
                f"{CHECK_DISTANCES[1]} are checked); choose a potential that is finite wherever particles can be, "
                "e.g. add a constant inside a log or a root, or soften a pole as 1/(r^2 + 0.01)",
            )


def _same(a, b, s) -> bool:
    """a == b for all values: symbolically when sympy can tell, else on random points."""
    import numpy as np
    import sympy

    try:
        if sympy.simplify(a - b) == 0:
            return True
    except Exception:  # noqa: BLE001 -- simplify gives up on some functions; the numbers decide then
        pass
    args = [s[name] for name in VARIABLES]
    fa, fb = (sympy.lambdify(args, e, modules="numpy") for e in (a, b))
    # Over everything a simulation can meet, not a narrow box where a term may vanish (r*Max(m1 - 2.5, 0) is
    # zero for every mass below 2.5): random points (distances 0.01-30, charges of either sign 0.1-3, masses
    # e^-3..e^3 log-uniformly) and the corners of that range, every pairing of small and large.
    rng = np.random.default_rng(0)
    k = 512
    random = [
        np.geomspace(*CHECK_DISTANCES, k)[rng.permutation(k)],
        *(rng.choice([-1.0, 1.0], k) * rng.uniform(0.1, 3.0, k) for _ in range(2)),
        *(np.exp(rng.uniform(-3.0, 3.0, k)) for _ in range(2)),
    ]
    corners = np.meshgrid(
        [0.01, 0.5, 1.0, 3.0, 30.0], [-3.0, -1.0, 1.0, 3.0], [-3.0, -1.0, 1.0, 3.0], *[[np.exp(-3), 1.0, np.exp(3)]] * 2
    )
    points = [np.concatenate([x, c.ravel()]) for x, c in zip(random, corners)]
    n = len(points[0])
    with np.errstate(all="ignore"):
        va, vb = np.broadcast_to(fa(*points), (n,)), np.broadcast_to(fb(*points), (n,))
    ok = np.isfinite(va) & np.isfinite(vb)
    return bool(ok.any()) and bool(np.allclose(va[ok], vb[ok], rtol=1e-9, atol=1e-12))


def named_failures(rows, system: str, potential: str | None):
    """The Ray Data rows, unchanged; but when a custom potential fails inside a data task (raysym.potential
    checks it on a grid first, so this is the rare formula that fails only where a simulation goes), the
    error is one paragraph naming the formula instead of Ray's wrapped traceback."""
    import ray.exceptions

    try:
        yield from rows
    except ray.exceptions.RayError as exc:
        if system != "custom":
            raise
        # Ray Data keeps what the task raised only as text (RayTaskError(UserCodeException)): find its line.
        raised = [
            m
            for m in re.finditer(r"^\s*(\w*(?:Error|Exception)): (.+)$", str(exc), re.M)
            if m.group(1) not in ("UserCodeException", "RayTaskError")
        ]
        if raised and raised[0].group(1) == "UserError":
            raise UserError(raised[0].group(2)) from None
        text = f"{raised[0].group(1)}: {raised[0].group(2)[:300]}" if raised else type(exc).__name__
        raise simulation_failed(potential, text) from None


def simulation_failed(potential: str | None, text: str) -> UserError:
    """The one-paragraph error for a custom potential that failed where a simulation went (``text``: what it
    raised)."""
    return UserError(
        f"Simulating the custom potential {potential!r} failed inside a data task ({text}). Nothing was "
        "written. Check that U and its slope are finite and defined wherever particles can be (no division "
        "by zero, logs and roots of positive numbers), or simplify the formula."
    )
