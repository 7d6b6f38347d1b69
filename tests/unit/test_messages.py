"""The message metrics' definitions on planted messages: in distribution, every edge, and the trimmed
(robust) fit, named apart; and the law verdict decided in distribution."""

from types import SimpleNamespace

import numpy as np
import pytest

from raysym import message_figures, messages, physics

A, B = np.array([1.5, -0.7]), 0.3


def planted_with_outliers(seed=0, edges=4000, fraction=0.05, scale=1e4):
    """Messages = A F + b (+ tiny noise) on every edge, where F is what the network saw; on a ``fraction``
    of edges (close encounters) the true force is ``scale`` times larger and the messages do not follow."""
    rng = np.random.default_rng(seed)
    seen = rng.standard_normal((edges, 2))
    message = seen @ A + B + 1e-3 * rng.standard_normal(edges)
    outliers = rng.choice(edges, size=int(fraction * edges), replace=False)
    force = seen.copy()
    force[outliers] *= scale
    return message, force, outliers


def test_trimmed_fit_ignores_outliers_that_defeat_the_ordinary_fit_and_the_refit():
    message, force, _ = planted_with_outliers()
    ordinary = messages.r2_linear(message, force)[0]
    refit = messages.r2_refit(message, force)
    trimmed = messages.r2_trimmed(message, force)
    assert ordinary < 0.1  # the 5% of huge forces decide the ordinary fit
    assert refit < 0.5  # its residuals point at the wrong edges, so the refit keeps the outliers
    assert trimmed > 0.9999


def test_trimmed_fit_equals_the_ordinary_fit_on_clean_data_and_is_seeded():
    rng = np.random.default_rng(1)
    force = rng.standard_normal((3000, 3))
    message = force @ np.array([0.2, -1.0, 0.5]) + 0.1 * rng.standard_normal(3000)
    ordinary = messages.r2_linear(message, force)[0]
    trimmed = messages.r2_trimmed(message, force)
    # trimming the worst 10% of Gaussian noise raises R² a little, never lowers it
    assert ordinary < trimmed < ordinary + 0.02
    assert messages.r2_trimmed(message, force) == trimmed


def test_too_few_rows_give_nan_not_a_number_that_looks_measured():
    assert np.isnan(messages.r2_linear(np.ones(2), np.ones((2, 2)))[0])
    assert np.isnan(messages.r2_trimmed(np.ones(3), np.ones((3, 2))))
    assert np.isnan(messages.r2_prediction(np.ones((1, 2)), np.ones((1, 2))))


def _edges(message_columns, force, in_range):
    e = len(force)
    rng = np.random.default_rng(2)
    dx = rng.standard_normal((e, 2))
    ones = np.ones(e)
    return messages.EdgeData(
        np.column_stack(message_columns),
        None,
        dx,
        np.sqrt((dx**2).sum(1)),
        ones,
        ones,
        ones,
        ones,
        force,
        in_range=in_range,
        edges_per_graph=1,
    )


def test_analysis_names_the_three_variants_apart():
    """In range the messages are the force; outside it (5% of edges, close encounters) they saturate.
    The headline in-distribution R² is ~1, every-edge R² is ~0, the trimmed one ~1."""
    m1, force, outliers = planted_with_outliers(seed=3)
    m2, _, _ = planted_with_outliers(seed=3)  # the same edges, a second component
    m2 = -m2
    in_range = np.ones(len(force), dtype=bool)
    in_range[outliers] = False
    result = messages.analyze(_edges([m1, m2], force, in_range), 2)
    metrics = result.metrics()
    assert metrics["messages/r2_force"] > 0.9999
    assert metrics["messages/r2_force_all"] < 0.05
    assert metrics["messages/r2_force_robust"] > 0.9999
    assert metrics["messages/in_range_fraction"] == pytest.approx(0.95)
    assert metrics["messages/r2_best"] == max(metrics["messages/r2_force"], metrics["messages/r2_accel"])
    # without bounds every edge is in range, and the headline becomes the every-edge number
    everything = messages.analyze(_edges([m1, m2], force, None), 2).metrics()
    assert everything["messages/r2_force"] == pytest.approx(metrics["messages/r2_force_all"])
    assert everything["messages/in_range_fraction"] == 1


def test_figures_fit_in_distribution_and_the_report_sample_keeps_which_edges_are(tmp_path):
    """The scatter figures fit on in-distribution edges (what the headline R² measures) and carry the
    out-of-range edges along with that fit; the report's sample stores which edges were in range."""
    m1, force, outliers = planted_with_outliers(seed=5)
    in_range = np.ones(len(force), dtype=bool)
    in_range[outliers] = False
    r2_in, fitted = messages.r2_linear_within(m1, force, in_range)
    assert r2_in > 0.9999 and messages.r2_linear(m1, force)[0] < 0.1
    assert np.allclose(fitted[in_range], m1[in_range], atol=0.01)  # the in-range coefficients, A and b
    assert np.abs(fitted[~in_range] - m1[~in_range]).min() > 1  # and how far they miss out of range
    assert np.isnan(messages.r2_linear_within(m1, force, np.zeros(len(m1), dtype=bool))[0])

    edges = _edges([m1, -m1], force, in_range)
    result = messages.analyze(edges, 2)
    path = message_figures.save_sample(edges, result, tmp_path, size=500)
    with np.load(path) as sample:
        rows = np.sort(np.random.default_rng(0).choice(len(force), size=500, replace=False))
        assert sample["in_range"].dtype == bool and (sample["in_range"] == in_range[rows]).all()
        assert not sample["in_range"].all()


def test_sparsity_is_judged_in_range_and_reported_on_every_edge():
    """A third component that moves only on out-of-range edges spoils sparsity on every edge, not in range."""
    rng = np.random.default_rng(4)
    e = 2000
    force = rng.standard_normal((e, 2))
    in_range = rng.random(e) > 0.1
    columns = [force[:, 0], force[:, 1], np.where(in_range, 1e-6 * rng.standard_normal(e), force[:, 0])]
    result = messages.analyze(_edges(columns, force, in_range), 2)
    assert result.sparse and result.sparsity_ratio > 1e4
    assert result.sparsity_ratio_all < 10


def test_graphs_in_range_applies_pruning_s_test_to_every_component():
    acc = np.array([[[0.0, 1.0], [2.0, -1.0]], [[0.0, 3.5], [0.0, 0.0]], [[-3.1, 0.0], [0.0, 0.0]]])
    graphs = SimpleNamespace(acc=acc, pos=np.zeros((3, 2, 2)))
    assert messages.graphs_in_range(graphs, (-3.0, 3.0)).tolist() == [True, False, False]
    assert messages.graphs_in_range(graphs, None).tolist() == [True, True, True]


def test_verdict_is_decided_in_range_with_the_all_edges_r2_beside_it():
    """A formula that is the spring force where training went, and wrong beyond: recovered in range,
    and the all-edges R² says where it fails."""
    from raysym import distill_jobs, simulate
    from raysym.config import SimulationConfig

    graphs = simulate.simulate(
        SimulationConfig(system="spring", dim=2, sims=20, steps=100, stride=5), "test", np.arange(20)
    )
    bounds = (-3.0, 3.0)
    fx, fy = ("dx*(2 - 1.98/r)", "dy*(2 - 1.98/r)")  # the softened spring force: 2 (r + 0.01 - 1) dx / r
    exact = distill_jobs.verdict([fx, fy], graphs, "spring", bounds)
    assert (
        exact["recovered"]
        and exact["which"] == "force"
        and exact["r2_force"] > 0.9999
        and exact["r2_force_all"] > 0.9999
    )
    # saturated beyond r = 2.5, where few in-range graphs reach (distances there come with large forces)
    capped = [f"Min(r, 2.5)/r*{fx}", f"Min(r, 2.5)/r*{fy}"]
    v = distill_jobs.verdict(capped, graphs, "spring", bounds)
    inside = messages.graphs_in_range(graphs, bounds)
    assert 0 < v["in_range_graphs"] == int(inside.sum()) < len(graphs)
    assert v["r2_force_all"] < v["r2_force"]
    wrong = distill_jobs.verdict(["dx", "dy*r"], graphs, "spring", bounds)
    assert not wrong["recovered"] and wrong["which"] == "none"


def test_pair_force_is_the_simulator_s_for_the_planted_spring():
    """Sanity check of the planted spring formula used above against raysym.physics."""
    rng = np.random.default_rng(5)
    dx = rng.standard_normal((100, 2))
    r = np.sqrt((dx**2).sum(1))
    ones = np.ones(100)
    force = physics.pair_force("spring", dx, ones, ones, ones, ones)
    np.testing.assert_allclose(force, dx * (2 - 1.98 / r)[:, None], rtol=1e-12)


def test_mass_exponent_finds_a_force_scaled_by_a_power_of_the_receiver_mass():
    """Messages = A F m_receiver^-0.35: R² against the force (and force / mass) misses them; the
    diagnostic names the exponent and fits them exactly."""
    rng = np.random.default_rng(6)
    e = 5000
    force = rng.standard_normal((e, 2))
    m = np.exp(rng.standard_normal(e))
    scaled = force * m[:, None] ** -0.35
    columns = [scaled @ np.array([1.0, 0.5]) + 0.2, scaled @ np.array([-0.3, 1.2])]
    edges = messages.EdgeData(
        np.column_stack(columns), None, force, np.ones(e), np.ones(e), np.ones(e), m, np.ones(e), force
    )
    result = messages.analyze(edges, 2)
    assert result.mass_exponent == pytest.approx(0.35) and result.r2_mass_scaled > 0.9999
    assert result.r2_force < 0.97 and result.r2_accel < 0.9


def test_receiver_map_finds_a_force_through_a_map_that_depends_on_the_receivers_charge():
    """What the paper's bottleneck learns on charge (issue 27's diagnosis): messages = (A + B q_r) F m_r^-0.5,
    one linear map of the force for positive receivers and another for negative ones. R² against the force,
    and the mass exponent alone, miss it; the receiver-map diagnostic fits it exactly. A force-like message
    (B = 0) scores 1 there too: the diagnostic contains the plain force."""
    rng = np.random.default_rng(7)
    e = 6000
    force = rng.standard_normal((e, 2))
    m, q = np.exp(rng.standard_normal(e)), np.sign(rng.standard_normal(e))
    a, b = np.array([[1.0, 0.4], [-0.2, 0.8]]), np.array([[0.9, -0.1], [0.3, 0.7]])
    mapped = (force @ a.T + q[:, None] * (force @ b.T)) * m[:, None] ** -0.5
    edges = messages.EdgeData(mapped, None, force, np.ones(e), q, np.ones(e), m, np.ones(e), force)
    result = messages.analyze(edges, 2)
    assert result.r2_receiver_map > 0.9999
    assert result.r2_force < 0.6 and result.r2_mass_scaled < 0.7
    plain = messages.EdgeData(force @ a.T, None, force, np.ones(e), q, np.ones(e), m, np.ones(e), force)
    assert messages.analyze(plain, 2).r2_receiver_map > 0.9999
