"""User-defined pair potentials (raysym.potential): parsed by raysym's own grammar, never evaluated;
refused when they name anything else or break Newton's third law; simulated exactly like a built-in law
they equal."""

from __future__ import annotations

import numpy as np
import pytest

from raysym import physics
from raysym.cli import main
from raysym.config import SimulationConfig
from raysym.errors import UserError
from raysym.potential import custom_law, parse
from raysym.simulate import simulate_block


@pytest.mark.parametrize(
    "expression, why",
    [
        ("__import__('os').system('touch x')", "a character the grammar does not know"),
        ("r.__class__", "a character the grammar does not know"),
        ("lambda: r", "a character the grammar does not know"),
        ("eval(r)", "'eval' is neither a variable"),
        ("x * r", "'x' is neither a variable"),
        ("pi * r", "'pi' is neither a variable"),
        ("exp(r, 2)", "exp takes one argument"),
        ("Max(r)", "Max takes two or more"),
        ("(r - 1", "it ends in the middle"),
        ("r r", "'r' does not continue the formula"),
        ("", "it is empty"),
        ("1e999 * r", "is not finite"),
        ("q1 * m2", "it changes when the two particles swap"),
        ("m1 / r", "it changes when the two particles swap"),
        # asymmetric only where masses are large: the check samples every mass a simulation draws (issue 28, 9)
        ("r*Max(m1 - 2.5, 0)", "it changes when the two particles swap"),
        ("Heaviside(m1 - 10)*r", "it changes when the two particles swap"),
        ("(" * 60 + "r" + ")" * 60, "nests deeper than"),
        ("r + " * 200 + "r", "longer than 500 characters"),
        # degenerate formulas (issue 28, item 3): refused at once, never a traceback or a hang
        ("1/0", "infinite or undefined as written"),
        ("log(0)*r", "infinite or undefined as written"),
        ("9^9^9", "a power of two numbers that is not finite"),
        ("2^2^2^2^2", "a power of two numbers that is not finite"),
        ("r" + "^r" * 60, "nests deeper than"),
        ("sqrt(r - 2)", "U\\(r\\) is not finite at r = 0.01"),
        ("log(r - 0.5)", "U\\(r\\) is not finite at r = 0.01"),
        ("1/(r - 0.01)", "is not finite at r = 0.01"),
    ],
)
def test_formulas_that_are_not_symmetric_potentials_are_refused_with_the_reason(expression, why):
    with pytest.raises(UserError, match=why):
        custom_law(expression)


def test_the_grammar_builds_the_expression_it_reads():
    import sympy

    r, q1, q2 = sympy.symbols("r q1 q2", real=True)
    assert parse("2^3^2") == 512  # right-associative, like mathematics
    assert parse("-r^2") == -(r**2)
    assert parse("q1*q2/r - 3**2") == q1 * q2 / r - 9
    assert (
        sympy.simplify(parse("exp(-2*(r - 1)) - 2*exp(-(r - 1))") - (sympy.exp(-2 * (r - 1)) - 2 * sympy.exp(1 - r)))
        == 0
    )


def test_forces_are_the_derivative_of_the_potential():
    law = custom_law("exp(-2*(r - 1)) - 2*exp(-(r - 1)) + q1*q2/r")  # Morse plus Coulomb
    r = np.linspace(0.3, 4.0, 50)
    q = np.ones_like(r)
    h = 1e-6
    numeric = (law.potential(r + h, q, -q, q, q) - law.potential(r - h, q, -q, q, q)) / (2 * h)
    assert np.allclose(law.dpotential(r, q, -q, q, q), numeric, rtol=1e-6, atol=1e-8)
    assert law.charged and not custom_law("(r - 1)^2").charged


@pytest.mark.parametrize("system, expression", [("spring", "(r - 1)^2"), ("charge", "q1*q2/r"), ("r2", "-m1*m2/r")])
def test_a_custom_potential_equal_to_a_built_in_law_simulates_identically(system, expression):
    built_in = SimulationConfig(system=system, particles=4, steps=40, stride=4, seed=3)
    custom = SimulationConfig(
        system="custom", potential=expression, particles=4, steps=40, stride=4, seed=3, dt=built_in.resolved_dt
    )
    custom.validate()
    a, b = simulate_block(built_in, "train", range(6)), simulate_block(custom, "train", range(6))
    for field in ("pos", "vel", "acc", "charge", "mass"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_the_manifest_parameters_record_the_formula():
    cfg = SimulationConfig(system="custom", potential="(r - 1)^2")
    assert cfg.data_params()["potential"] == "(r - 1)^2" and cfg.law == "custom:(r - 1)^2"
    assert cfg.data_params() != SimulationConfig(system="custom", potential="(r - 2)^2").data_params()
    assert physics.get_law(cfg.law).default_dt == physics.CUSTOM_DT


@pytest.mark.parametrize(
    "flags, why",
    [
        (["--system", "custom", "--potential", "__import__('os')"], "cannot be used"),
        (["--system", "custom", "--potential", "q1 * m2"], "Newton's third law"),
        (["--system", "custom"], "needs a potential"),
        (["--system", "spring", "--potential", "(r - 1)^2"], "applies only to system custom"),
    ],
)
def test_the_command_refuses_a_bad_potential_before_anything_runs(tmp_path, capsys, flags, why):
    out = tmp_path / "data"
    assert main(["simulate", *flags, "--sims", "2", "--steps", "10", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert why in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    "expression",
    [
        "exp(-r)",
        "log(r + 1)",
        "sqrt(r + 1)",
        "sin(r)",
        "cos(r)*q1*q2",
        "tanh(r - 1)",
        "abs(r - 1)",
        "Heaviside(r - 2)*(r - 1)^2",
        "Min(r, 2)",
        "Max(r, 1, m1 + m2)",
    ],
)
def test_every_function_the_grammar_allows_compiles_and_simulates(expression):
    """The grammar's functions are the simulator's (issue 28, item 9): each compiles to a finite force,
    and a short simulation with it runs (Heaviside's step exerts no force: its impulse is dropped)."""
    from raysym.potential import FUNCTIONS

    law = custom_law(expression)
    r = np.linspace(0.05, 5.0, 40)
    ones = np.ones_like(r)
    assert np.all(np.isfinite(law.dpotential(r, ones, -ones, ones, 2 * ones)))
    cfg = SimulationConfig(system="custom", potential=expression, particles=3, steps=10, stride=5, dt=0.001)
    cfg.validate()
    block = simulate_block(cfg, "train", range(2))
    assert np.all(np.isfinite(block.acc)) and np.any(block.acc != 0)
    used = {name for name in FUNCTIONS if name + "(" in expression}
    assert len(used) == 1
