"""Formulas read back from disk or a tracking store are data, never code (issue 28, item 1): one grammar
reads them (raysym.expressions), and nothing in raysym hands text to sympy's or Python's parser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raysym.distill import load_summary, parse
from raysym.errors import UserError
from raysym.expressions import ExpressionError, formula_grammar, read
from raysym.potential import parse as parse_potential
from raysym.report_cells import formula_cell, formulas

RAYSYM = Path(__file__).resolve().parents[2] / "raysym"


def planted(marker: Path) -> list[str]:
    """Formulas that ran code under sympy's parser (the probe's, and variants)."""
    return [
        f"__import__('os').system('touch {marker}') or dx",
        f"dx*__import__('pathlib').Path('{marker}').touch()",
        "dx + (lambda: 1)()",
        "Symbol('<img src=x onerror=document.body.id=666>')*dx",
        "dx.__class__.__mro__",
        "exec('1')*dx",
    ]


def test_no_raysym_module_hands_text_to_a_parser_that_runs_code():
    """sympify, parse_expr, eval and exec (and sympy.S on text) appear nowhere in raysym's own code."""
    pattern = re.compile(r"\b(sympify|parse_expr|exec)\s*\(|(?<![\w.])eval\s*\(|\bS\(\s*['\"f]")
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(RAYSYM.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line.split("#", 1)[0])
    ]
    assert found == []


def test_planted_formulas_are_refused_and_run_nothing(tmp_path):
    marker = tmp_path / "ran"
    for text in planted(marker):
        with pytest.raises(ValueError, match="is not a formula raysym writes"):
            parse(text, ["dx", "dy", "r"])
        with pytest.raises(ValueError):
            parse(text, [])  # a report's reading: any identifier is a variable, but nothing is called
    assert not marker.exists()


def test_a_tampered_summary_is_refused_naming_the_file(tmp_path):
    marker = tmp_path / "ran"
    summary = tmp_path / "trial" / "distill" / "summary.json"
    summary.parent.mkdir(parents=True)
    good = {"distill/edge_formulas": ["0.98*dx*m1*m2/r**2 + 9.5e-5", "dy/r**3"], "distill/node_formulas": []}
    summary.write_text(json.dumps(good))
    assert load_summary(summary) == good
    for text in planted(marker):
        summary.write_text(json.dumps({**good, "distill/node_formulas": [text]}))
        with pytest.raises(UserError) as caught:
            load_summary(summary)
        message = str(caught.value)
        assert str(summary) in message and "distill/node_formulas" in message and "raysym distill" in message
    summary.write_text('{"distill/edge_formulas": ["dx"')  # cut short
    with pytest.raises(UserError, match="cannot be read"):
        load_summary(summary)
    summary.write_text(json.dumps({"distill/edge_formulas": "dx"}))
    with pytest.raises(UserError, match="not a list of formulas"):
        load_summary(summary)
    assert not marker.exists()


def test_a_tampered_formula_tag_is_shown_escaped_and_marked_in_reports(tmp_path):
    marker = tmp_path / "ran"
    tag = json.dumps(planted(marker)[3:4] + ["0.5*dx/r**2"]).replace('"', "'")
    cell = formulas(str(planted(marker)[3:4] + ["0.5*dx/r**2"]))
    assert "<img" not in cell.html and "&lt;img" in cell.html
    assert "not a formula raysym writes" in cell and "0.5*dx/r**2" in cell
    one = formula_cell(planted(marker)[0])
    assert "not a formula raysym writes" in one and "<" not in one.html.replace("&lt;", "")
    assert not marker.exists() and tag


@pytest.mark.parametrize(
    "text, why",
    [
        ("9^9^9", "power of two numbers that is not finite"),
        ("2^2^2^2^2", "power of two numbers that is not finite"),
        ("r" + "^r" * 240, "nests deeper"),  # under 500 characters: the depth is what refuses it
        ("-" * 400 + "r", "nests deeper"),
        ("(" * 240 + "r" + ")" * 240, "nests deeper"),
        ("1e999*r", "not finite"),
    ],
)
def test_formulas_that_would_hang_or_overflow_the_reader_are_refused(text, why):
    with pytest.raises(ExpressionError, match=why):
        read(text, formula_grammar(["r"]))
    with pytest.raises(UserError, match=why):
        parse_potential(text)


def test_what_distillation_writes_reads_back_to_the_same_expression():
    """Every spelling the backends and sympy's printer produce: powers, roots, functions, constants, the
    infinities of a candidate that divides by zero: reading the printed expression prints the same."""
    names = ["dx", "dy", "r", "m1", "m2"]
    for text in [
        "0.988207463614168*dy*m1*m2/r**2 + 9.5440155e-5",
        "-0.0034447785 + 1.000685095787*(-0.08*dx - 1.4*dy)/(4.16*m1 + 2.87)",
        "sqrt(dx**2 + dy**2)*exp(-r)/log(m1)",
        "square(dx) + cube(dy) - Abs(m2) + abs(m1)",
        "dx ^ 2 * r^(-3)",
        "dx/0",
        "sqrt(-2)*dx + E*pi",
        "2^3^2*dx",
    ]:
        expr = parse(text, names)
        assert str(parse(str(expr), names)) == str(expr), text
    assert parse("2^3^2", []) == 512 and parse("4^0.5", []) == 2.0
