"""Force laws: analytic forces against the potentials, hand-computed cases, symmetry."""

import numpy as np
import pytest

from raysym import physics

SYSTEMS = list(physics.SYSTEMS)


def _random_systems(rng, batch, n, dim, charged):
    pos = rng.standard_normal((batch, n, dim)) * 1.5
    vel = rng.standard_normal((batch, n, dim))
    mass = np.exp(rng.standard_normal((batch, n)))
    charge = np.sign(rng.standard_normal((batch, n))) if charged else rng.standard_normal((batch, n))
    return pos, vel, charge, mass


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("system", SYSTEMS)
def test_force_is_minus_gradient_of_potential(system, dim):
    """m a (without damping) equals -dU/dx of the total potential, by central differences."""
    rng = np.random.default_rng(0)
    law = physics.SYSTEMS[system]
    pos, vel, charge, mass = _random_systems(rng, 3, 4, dim, law.charged)
    if system == "discontinuous":  # keep pairs away from the jump at r' = 2
        pos *= 2.0
    acc = physics.accelerations(system, pos, np.zeros_like(vel), charge, mass, damping=0.0)
    zero_vel = np.zeros_like(vel)
    eps = 1e-6
    grad = np.zeros_like(pos)
    for i in range(4):
        for d in range(dim):
            plus, minus = pos.copy(), pos.copy()
            plus[:, i, d] += eps
            minus[:, i, d] -= eps
            grad[:, i, d] = (
                physics.total_energy(system, plus, zero_vel, charge, mass)
                - physics.total_energy(system, minus, zero_vel, charge, mass)
            ) / (2 * eps)
    np.testing.assert_allclose(mass[:, :, None] * acc, -grad, rtol=1e-5, atol=1e-6)


def test_spring_pair_by_hand():
    """Two unit masses 2 apart: r' = 2.01, |F| = 2 (r' - 1) = 2.02, pulling them together."""
    pos = np.array([[[0.0, 0.0], [2.0, 0.0]]])
    ones = np.ones((1, 2))
    acc = physics.accelerations("spring", pos, np.zeros_like(pos), ones, ones)
    np.testing.assert_allclose(acc[0], [[2.02, 0.0], [-2.02, 0.0]])


def test_charge_and_gravity_signs_by_hand():
    dx = np.array([1.0, 0.0, 0.0])  # sender one unit along +x from the receiver
    r = 1.0 + physics.SOFTENING
    like = physics.pair_force("charge", dx, 1.0, 1.0, 1.0, 1.0)
    np.testing.assert_allclose(like, [-1.0 / r**2, 0.0, 0.0])  # like charges repel: pushed to -x
    grav = physics.pair_force("r2", dx, 0.0, 0.0, 2.0, 3.0)
    np.testing.assert_allclose(grav, [6.0 / r**2, 0.0, 0.0])  # gravity attracts: pulled to +x
    log = physics.pair_force("r1", dx, 0.0, 0.0, 2.0, 3.0)
    np.testing.assert_allclose(log, [6.0 / r, 0.0, 0.0])


def test_discontinuous_is_zero_inside_two():
    dx = np.array([[1.5, 0.0], [2.5, 0.0]])
    f = physics.pair_force("discontinuous", dx, 0.0, 0.0, 1.0, 1.0)
    np.testing.assert_allclose(f[0], 0.0)
    np.testing.assert_allclose(f[1], [2 * (2.51 - 1), 0.0])


@pytest.mark.parametrize("system", SYSTEMS)
def test_pair_forces_sum_to_accelerations_and_obey_newton_three(system):
    rng = np.random.default_rng(1)
    law = physics.SYSTEMS[system]
    pos, vel, charge, mass = _random_systems(rng, 2, 5, 3, law.charged)
    acc = physics.accelerations(system, pos, vel, charge, mass, damping=0.0)
    forces = np.zeros_like(pos)
    for i in range(5):
        for j in range(5):
            if i != j:
                forces[:, i] += physics.pair_force(
                    system, pos[:, j] - pos[:, i], charge[:, i], charge[:, j], mass[:, i], mass[:, j]
                )
    np.testing.assert_allclose(acc, forces / mass[:, :, None], rtol=1e-10, atol=1e-12)
    # Newton's third law: internal forces cancel, so total momentum is conserved.
    np.testing.assert_allclose(forces.sum(axis=1), 0.0, atol=1e-9 * np.abs(forces).max())


def test_damping_is_uniform_minus_c_v():
    rng = np.random.default_rng(2)
    pos, vel, charge, mass = _random_systems(rng, 2, 4, 2, False)
    undamped = physics.accelerations("damped", pos, vel, charge, mass, damping=0.0)
    damped = physics.accelerations("damped", pos, vel, charge, mass, damping=0.3)
    np.testing.assert_allclose(damped - undamped, -0.3 * vel, atol=1e-12)
    spring = physics.accelerations("spring", pos, vel, charge, mass, damping=0.3)
    np.testing.assert_allclose(spring, undamped)  # damping only applies to the damped system


def test_unknown_system_is_an_error():
    with pytest.raises(ValueError, match="unknown system"):
        physics.get_law("springs")
