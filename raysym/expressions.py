"""The one reader of formulas from text: user potentials, and every formula read back from disk or a store.

sympy's own readers (``sympify``, ``parse_expr``) run Python on the text they are given, so a trial folder or
an MLflow tag that holds ``__import__('os').system(...)`` would run it as whoever opens the results. Here the
text is tokenised and parsed by recursive descent straight into a sympy expression; nothing reaches Python's
or sympy's parser, and the text can name nothing but what its :class:`Grammar` allows:

    numbers (12, 0.5, 1.5e-3), + - * / and ^ (or **), parentheses,
    the grammar's variables (or, for a grammar without a fixed list, any plain identifier as a symbol),
    the grammar's functions (each with its number of arguments) and constants (E, pi, ...).

Sizes are bounded so that no text can hang the reader: the length, the nesting, and powers of two numbers,
which are computed as floating point and refused when not finite (``9^9^9`` is refused at once instead of
being expanded as an integer with millions of digits).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

NUMBER_LIMIT = 1e300  # a constant beyond this is not a formula's constant


@dataclass(frozen=True)
class Grammar:
    """What a formula may name. ``variables``: the allowed variable names, or None for any identifier that is
    not a function or constant (formulas shown in a report, whose inputs the report does not know);
    ``functions``: name -> (sympy function name, arguments: a count, or -2 for "two or more")."""

    variables: tuple[str, ...] | None
    functions: dict[str, tuple[str, int]] = field(default_factory=dict)
    constants: tuple[str, ...] = ()
    max_length: int = 500
    max_depth: int = 50


# What distillation writes: sympy's printing of the backends' formulas (str(expr)), PySR's and Operon's own
# spellings of the same operators (square, cube, ^, abs), and the piecewise functions of laws with a cutoff.
FORMULA_FUNCTIONS = {
    "sqrt": ("sqrt", 1),
    "exp": ("exp", 1),
    "log": ("log", 1),
    "sin": ("sin", 1),
    "cos": ("cos", 1),
    "tanh": ("tanh", 1),
    "Abs": ("Abs", 1),
    "abs": ("Abs", 1),
    "square": ("square", 1),
    "cube": ("cube", 1),
    "sign": ("sign", 1),
    "Heaviside": ("Heaviside", 1),
    "Min": ("Min", -2),
    "Max": ("Max", -2),
}


def formula_grammar(names: list[str] | tuple[str, ...] | None) -> Grammar:
    """The grammar of a distilled formula over ``names`` (None or empty: any identifier is a variable)."""
    # oo, zoo, nan and I: how sympy prints a candidate that divides by zero or roots a negative number; such a
    # formula scores a non-finite loss and leaves the front, but it must read back to get that far.
    constants = ("E", "pi", "I", "oo", "zoo", "nan")
    return Grammar(tuple(names) if names else None, FORMULA_FUNCTIONS, constants, max_length=20_000, max_depth=200)


_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/^(),]))"
)


class ExpressionError(ValueError):
    """Text that is not a formula of the grammar; ``at`` is the offending character's index, when known."""

    def __init__(self, why: str, at: int | None = None):
        super().__init__(why)
        self.why, self.at = why, at


def read(text: str, grammar: Grammar):
    """The sympy expression that ``text`` spells in ``grammar``; ExpressionError (a ValueError) saying
    what is wrong, and where, when it is not one."""
    if not isinstance(text, str):
        raise ExpressionError(f"a formula is text, not {type(text).__name__}")
    if len(text) > grammar.max_length:
        raise ExpressionError(f"it is longer than {grammar.max_length} characters")
    return _Parser(text, grammar).parse()


def where(text: str, at: int | None) -> str:
    """' at character N ('...')' for an error at index ``at`` of ``text``, else ''."""
    return "" if at is None else f" at character {at + 1} ({text[at : at + 12]!r})"


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if not found or found.end() == pos:
            raise ExpressionError(
                "a character the grammar does not know", pos + len(text[pos:]) - len(text[pos:].lstrip())
            )
        kind = found.lastgroup
        out.append((kind, found.group(kind), found.start(kind)))
        pos = found.end()
    return out


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary (('*'|'/') unary)* ;
    unary := ('+'|'-') unary | power ; power := atom (('^'|'**') unary)? ;
    atom := number | constant | variable | function '(' expr (',' expr)* ')' | '(' expr ')'"""

    def __init__(self, text: str, grammar: Grammar):
        import sympy

        self.sp, self.text, self.g = sympy, text, grammar
        self.tokens, self.i, self.depth = _tokens(text), 0, 0
        self.symbols: dict[str, object] = {}
        extra = {"square": lambda x: x**2, "cube": lambda x: x**3}
        self.functions: dict[str, Callable] = {
            name: extra.get(sp_name) or getattr(sympy, sp_name) for name, (sp_name, _) in grammar.functions.items()
        }
        self.constants = {
            "E": sympy.E,
            "pi": sympy.pi,
            "I": sympy.I,
            "oo": sympy.oo,
            "zoo": sympy.zoo,
            "nan": sympy.nan,
        }

    def parse(self):
        if not self.tokens:
            raise ExpressionError("it is empty")
        expr = self.expr()
        if self.i < len(self.tokens):
            raise ExpressionError(f"'{self.tokens[self.i][1]}' does not continue the formula", self.tokens[self.i][2])
        return expr

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        if self.i >= len(self.tokens):
            raise ExpressionError("it ends in the middle of the formula")
        self.i += 1
        return self.tokens[self.i - 1]

    def expect(self, value: str) -> None:
        kind, text, at = self.take()
        if text != value:
            raise ExpressionError(f"'{value}' expected, '{text}' found", at)

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > self.g.max_depth:
            raise ExpressionError(f"it nests deeper than {self.g.max_depth} levels")

    def expr(self):
        self.deeper()
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
        self.deeper()  # -(-(-... and a^b^c^... recurse here: bounded like parentheses
        if self.peek() in ("+", "-"):
            op = self.take()[1]
            value = self.unary()
            out = -value if op == "-" else value
        else:
            out = self.power()
        self.depth -= 1
        return out

    def power(self):
        at = self.tokens[self.i][2] if self.i < len(self.tokens) else None
        base = self.atom()
        if self.peek() not in ("^", "**"):
            return base
        self.take()
        exponent = self.unary()
        if base.is_number and exponent.is_number:
            # Two numbers: sympy would expand an integer power exactly (9^9^9 has 370 million digits).
            try:
                value = complex(base.evalf(30)) ** complex(exponent.evalf(30))
            except (OverflowError, ZeroDivisionError, TypeError, ValueError):
                value = complex("nan")
            if not (math.isfinite(value.real) and math.isfinite(value.imag)) or abs(value) > NUMBER_LIMIT:
                raise ExpressionError("a power of two numbers that is not finite", at)
            if base.is_Rational and exponent.is_Integer:  # exact, and small now that its size is known
                return base**exponent
            return self.sp.Float(value.real) if value.imag == 0 else self.sp.Float(value.real) + self.sp.I * value.imag
        return base**exponent

    def atom(self):
        kind, text, at = self.take()
        if kind == "number":
            value = float(text)
            if not math.isfinite(value) or value > NUMBER_LIMIT:
                raise ExpressionError(f"the number {text} is not finite", at)
            return self.sp.Float(text) if any(c in text for c in ".eE") else self.sp.Integer(text)
        if kind == "name":
            if text in self.g.functions:
                return self.call(text, at)
            if text in self.g.constants:
                return self.constants[text]
            if self.g.variables is None or text in self.g.variables:
                if text not in self.symbols:
                    self.symbols[text] = self.sp.Symbol(text, real=True)
                return self.symbols[text]
            known = ", ".join(self.g.variables)
            raise ExpressionError(f"'{text}' is neither a variable ({known}) nor an allowed function", at)
        if text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        raise ExpressionError(f"'{text}' cannot start a term", at)

    def call(self, name: str, at: int):
        self.expect("(")
        args = [self.expr()]
        while self.peek() == ",":
            self.take()
            args.append(self.expr())
        self.expect(")")
        wanted = self.g.functions[name][1]
        if (wanted > 0 and len(args) != wanted) or (wanted < 0 and len(args) < -wanted):
            count = {1: "one argument", 2: "two arguments"}.get(wanted, "two or more arguments")
            raise ExpressionError(f"{name} takes {count}", at)
        return self.functions[name](*args)
