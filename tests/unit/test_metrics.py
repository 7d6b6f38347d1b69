"""Every metric name the source spells is named, with a meaning, in raysym.metrics; the tracker refuses
one that is not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from raysym import metrics

PACKAGE = Path(__file__).resolve().parents[2] / "raysym"
# A quoted metric name, or the start of an f-string that builds one: "test/mae", f"distill/r2_{which}",
# f"ood/{regime}/onestep_mae_{model}"
SPELLED = re.compile(r"""["']((?:train|val|test|messages|distill|data|time|ood)/(?:[A-Za-z0-9_/]+|\{[^}]+\})+)""")


def spelled_in_source() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        if path.name == "metrics.py":
            continue
        for key in SPELLED.findall(path.read_text()):  # f"messages/std_{k + 1}" -> messages/std_X
            key = re.sub(r"\{[^}]+\}", "X", key)
            if not re.fullmatch(r"\w+/X", key):  # f"distill/{k}" prefixes keys spelled elsewhere
                found.setdefault(key, set()).add(path.name)
    return found


def test_every_metric_the_source_spells_is_named():
    found = spelled_in_source()
    assert len(found) > 60  # the scan finds them: a broken pattern would pass vacuously
    unnamed = {k: sorted(v) for k, v in found.items() if k not in metrics.METRICS and metrics.name_of(k) is None}
    assert not unnamed, f"name these in raysym.metrics.METRICS: {unnamed}"


def test_every_named_metric_has_a_meaning_and_is_used():
    assert all(len(text) > 10 for text in metrics.METRICS.values())
    found = spelled_in_source()
    unused = [
        name for name in metrics.METRICS if name not in found and not any(metrics.name_of(k) == name for k in found)
    ]
    assert not unused, f"named in raysym.metrics but spelled nowhere in raysym: {unused}"


def test_families_match_their_members_only():
    assert metrics.name_of("val/std_3") == "val/std_{k}"
    assert metrics.name_of("distill/r2_accel_all") == "distill/r2_{which}_all"  # the most specific family
    assert metrics.name_of("distill/r2_force") == "distill/r2_{which}"
    assert metrics.name_of("test/maee") is None
    with pytest.raises(KeyError, match="test/maee"):
        metrics.check({"test/maee": 1.0, "epoch": 3})
    metrics.check({"test/mae": 1.0, "epoch": 3, "status": "finished"})  # plain keys are not namespaced
