"""User-defined pair potentials: an expression read by a small grammar of its own, never evaluated.

``system: custom`` with ``potential: "<expression>"`` simulates particles under any pair potential U of

    r        the softened distance r' = r + 0.01, as for the built-in laws (raysym.physics)
    q1, q2   the charges of the receiver (1) and the sender (2)
    m1, m2   their masses

written with numbers, + - * / and ^ (or **), parentheses, and the functions exp, log, sqrt, sin, cos, tanh,
abs, Heaviside (one argument each) and Min, Max (two or more). The text is tokenised and parsed here, by
recursive descent, straight into a sympy expression: no string ever reaches sympy's parser or Python's
(sympify and parse_expr run code), so an expression can name nothing but the variables and functions above.

The force comes from the symbolic derivative dU/dr', compiled to numpy once per process. Newton's third law
needs U to be the same for both particles of a pair: U(r, q1, q2, m1, m2) = U(r, q2, q1, m2, m1); an
expression that is not is refused with the reason.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from raysym.errors import UserError

VARIABLES = ("r", "q1", "q2", "m1", "m2")
FUNCTIONS = {"exp": 1, "log": 1, "sqrt": 1, "sin": 1, "cos": 1, "tanh": 1, "abs": 1, "Heaviside": 1, "Min": 2, "Max": 2}
MAX_LENGTH = 500  # characters: a potential is a formula, not a program
MAX_DEPTH = 50  # nesting of parentheses and calls

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/^(),]))"
)


def _problem(expression: str, why: str, at: int | None = None) -> UserError:
    where = f" at character {at + 1} ({expression[at : at + 12]!r})" if at is not None else ""
    return UserError(
        f"The potential {expression!r} cannot be used: {why}{where}. Write U of r, q1, q2, m1, m2 with numbers, "
        f'+ - * / ^, parentheses and {", ".join(FUNCTIONS)}; e.g. potential: "(r - 1)^2" is the spring law.'
    )


def _tokens(expression: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    text = expression.rstrip()
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if not found or found.end() == pos:
            bad = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise _problem(expression, "a character the grammar does not know", bad)
        kind = found.lastgroup
        out.append((kind, found.group(kind), found.start(kind)))
        pos = found.end()
    return out


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary (('*'|'/') unary)* ;
    unary := ('+'|'-') unary | power ; power := atom (('^'|'**') unary)? ;
    atom := number | variable | function '(' expr (',' expr)* ')' | '(' expr ')'"""

    def __init__(self, expression: str):
        import sympy

        self.sp, self.text = sympy, expression
        self.tokens, self.i, self.depth = _tokens(expression), 0, 0
        self.symbols = {name: sympy.Symbol(name, real=True) for name in VARIABLES}
        self.functions = {
            "exp": sympy.exp,
            "log": sympy.log,
            "sqrt": sympy.sqrt,
            "sin": sympy.sin,
            "cos": sympy.cos,
            "tanh": sympy.tanh,
            "abs": sympy.Abs,
            "Heaviside": sympy.Heaviside,
            "Min": sympy.Min,
            "Max": sympy.Max,
        }

    def parse(self):
        if not self.tokens:
            raise _problem(self.text, "it is empty")
        expr = self.expr()
        if self.i < len(self.tokens):
            raise _problem(
                self.text, f"'{self.tokens[self.i][1]}' does not continue the formula", self.tokens[self.i][2]
            )
        return expr

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        if self.i >= len(self.tokens):
            raise _problem(self.text, "it ends in the middle of the formula")
        self.i += 1
        return self.tokens[self.i - 1]

    def expect(self, value: str) -> None:
        kind, text, at = self.take()
        if text != value:
            raise _problem(self.text, f"'{value}' expected, '{text}' found", at)

    def expr(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _problem(self.text, f"it nests deeper than {MAX_DEPTH} levels")
        out = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            right = self.term()
            out = out + right if op == "+" else out - right
        self.depth -= 1
        return out

    def term(self):
        out = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()[1]
            right = self.unary()
            out = out * right if op == "*" else out / right
        return out

    def unary(self):
        if self.peek() in ("+", "-"):
            op = self.take()[1]
            value = self.unary()
            return -value if op == "-" else value
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() in ("^", "**"):
            self.take()
            return base ** self.unary()
        return base

    def atom(self):
        kind, text, at = self.take()
        if kind == "number":
            if not math.isfinite(float(text)):
                raise _problem(self.text, f"the number {text} is not finite", at)
            return self.sp.Float(text) if any(c in text for c in ".eE") else self.sp.Integer(text)
        if kind == "name":
            if text in self.symbols:
                return self.symbols[text]
            if text in self.functions:
                self.expect("(")
                args = [self.expr()]
                while self.peek() == ",":
                    self.take()
                    args.append(self.expr())
                self.expect(")")
                wanted = FUNCTIONS[text]
                if (wanted == 1 and len(args) != 1) or len(args) < wanted:
                    raise _problem(self.text, f"{text} takes {'one argument' if wanted == 1 else 'two or more'}", at)
                return self.functions[text](*args)
            known = ", ".join(VARIABLES)
            raise _problem(self.text, f"'{text}' is neither a variable ({known}) nor an allowed function", at)
        if text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        raise _problem(self.text, f"'{text}' cannot start a term", at)


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
    return _Parser(expression).parse()


@functools.lru_cache(maxsize=32)
def custom_law(expression: str) -> CustomLaw:
    """Parse, check and compile a potential once per process."""
    import numpy as np
    import sympy

    u = parse(expression)
    s = {name: sympy.Symbol(name, real=True) for name in VARIABLES}
    swapped = u.xreplace({s["q1"]: s["q2"], s["q2"]: s["q1"], s["m1"]: s["m2"], s["m2"]: s["m1"]})
    if not _same(u, swapped, s):
        raise _problem(
            expression,
            "it changes when the two particles swap (q1 <-> q2, m1 <-> m2), so the forces of a pair would not be equal "
            "and opposite (Newton's third law); write it symmetric in the two particles, e.g. q1*q2 or m1 + m2",
        )
    du = sympy.diff(u, s["r"])
    args = [s[name] for name in VARIABLES]
    modules = [{"Heaviside": lambda x: np.heaviside(x, 0.5), "Min": np.minimum, "Max": np.maximum}, "numpy"]

    def compiled(expr):
        fn = sympy.lambdify(args, expr, modules=modules)

        def pair(r, qr, qs, mr, ms):  # a constant term comes back as a scalar: give it the pairs' shape
            shape = np.broadcast_shapes(*(np.shape(x) for x in (r, qr, qs, mr, ms)))
            return np.broadcast_to(np.asarray(fn(r, qr, qs, mr, ms), dtype=np.float64), shape)

        return pair

    charged = bool(u.free_symbols & {s["q1"], s["q2"]})
    return CustomLaw(expression, u, du, compiled(u), compiled(du), charged)


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
    rng = np.random.default_rng(0)
    points = [rng.uniform(0.1, 3.0, 64), *(rng.choice([-1.0, 1.0], 64) * rng.uniform(0.5, 2, 64) for _ in range(4))]
    with np.errstate(all="ignore"):
        va, vb = np.broadcast_to(fa(*points), (64,)), np.broadcast_to(fb(*points), (64,))
    ok = np.isfinite(va) & np.isfinite(vb)
    return bool(ok.any()) and bool(np.allclose(va[ok], vb[ok], rtol=1e-9, atol=1e-12))
