"""The rollout's integrator and out-of-distribution states (raysym.rollout, work in progress for issue 19)."""

from __future__ import annotations

import numpy as np

from raysym import physics
from raysym.config import SimulationConfig
from raysym.rollout import integrate, ood_states
from raysym.simulate import simulate_block


def test_the_rollout_integrator_reproduces_the_simulator():
    cfg = SimulationConfig(system="spring", particles=4, steps=30, stride=1, seed=5)
    stored = simulate_block(cfg, "test", range(3))
    pos, vel, charge, mass = ood_states(cfg.data_params(), 4, 3, scale=1.0, seed=5)
    truth = lambda p, v: physics.accelerations(cfg.law, p, v, charge, mass)  # noqa: E731
    path = integrate(truth, pos, vel, cfg.resolved_dt, cfg.steps - 1)  # (steps, S, n, dim)
    expected = stored.pos.reshape(3, cfg.steps, 4, 2).transpose(1, 0, 2, 3)
    assert np.allclose(path, expected, atol=1e-6)  # the stored positions are float32


def test_out_of_distribution_states_scale_and_grow():
    params = SimulationConfig(system="charge", seed=0).data_params()
    pos, vel, charge, mass = ood_states(params, 8, 5, scale=2.0, seed=9)
    base, *_ = ood_states(params, 8, 5, scale=1.0, seed=9)
    assert pos.shape == (5, 8, 2) and np.allclose(pos, 2 * base)
    assert set(np.unique(charge)) <= {-1.0, 1.0}  # the law's own draws: charges are signs for charge
