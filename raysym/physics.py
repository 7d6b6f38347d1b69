"""Pair potentials and analytic pairwise forces: the one place raysym's force laws live.

Conventions (shared with the simulator, the message analysis and distillation):

* Units are dimensionless; the gravitational constant and Coulomb constant are 1.
* Every law is a pair potential U(r') of the softened distance r' = r + 0.01 (``SOFTENING``), where
  r = |x_sender - x_receiver|; it may depend on both charges q and both masses m.
* On an edge sender -> receiver, ``dx = x_sender - x_receiver`` (shape (..., dim)). The force on the
  receiver is F = -grad_{x_receiver} U = U'(r') * dx / r, since dr/dx_receiver = -dx / r. A positive
  U' (a potential that grows with distance) therefore pulls the receiver towards the sender.
* The acceleration of node i is a_i = sum_{j != i} F_{j->i} / m_i, plus, for the damped system, the
  uniform velocity damping -c v_i (the same coefficient c for every particle, independent of mass).

The discontinuous law's potential jumps by 1 at r' = 2 but its force, -dU/dr', has no impulse
there: the dynamics conserve the energy of the continuous potential (U - 1 for r' >= 2), not of U.

Only +, -, *, / and sqrt appear on the force path: they are correctly rounded in IEEE arithmetic,
so a state gives bit-identical accelerations whatever the batch it is computed in (numpy's vectorised
exp/log need not be). The potentials (used for energies only) may use log.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

SOFTENING = 0.01
"""Added to every distance before it enters a potential: r' = r + 0.01."""

DEFAULT_DAMPING = 0.1
"""Damping coefficient c of the damped system: a_damp = -c v (per unit time)."""

# A pair function takes (r', q_receiver, q_sender, m_receiver, m_sender), arrays that broadcast together.
PairFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PairLaw:
    """One system: its pair potential U(r'), the analytic derivative dU/dr', and defaults."""

    name: str
    formula: str  # U(r') written out, for documentation and reports
    potential: PairFn
    dpotential: PairFn  # dU/dr' (analytic, not differentiated numerically)
    default_dt: float
    charged: bool  # charges are signs (+-1) and enter the law; otherwise a distractor N(0,1) column
    damped: bool = False


def _spring_u(r, qr, qs, mr, ms):
    return (r - 1.0) ** 2


def _spring_du(r, qr, qs, mr, ms):
    return 2.0 * (r - 1.0)


def _charge_u(r, qr, qs, mr, ms):
    return qr * qs / r


def _charge_du(r, qr, qs, mr, ms):
    return -qr * qs / (r * r)


def _r1_u(r, qr, qs, mr, ms):
    return mr * ms * np.log(r)


def _r1_du(r, qr, qs, mr, ms):
    return mr * ms / r


def _r2_u(r, qr, qs, mr, ms):
    return -mr * ms / r


def _r2_du(r, qr, qs, mr, ms):
    return mr * ms / (r * r)


def _disc_u(r, qr, qs, mr, ms):
    return np.where(r < 2.0, 0.0, (r - 1.0) ** 2)


def _disc_du(r, qr, qs, mr, ms):
    return np.where(r < 2.0, 0.0, 2.0 * (r - 1.0))


def _super_u(r, qr, qs, mr, ms):
    return (qr * qs - mr * ms) / r


def _super_du(r, qr, qs, mr, ms):
    return -(qr * qs - mr * ms) / (r * r)


SYSTEMS: dict[str, PairLaw] = {
    law.name: law
    for law in (
        PairLaw("spring", "(r'-1)^2", _spring_u, _spring_du, 1e-2, charged=False),
        PairLaw("charge", "q1 q2 / r'", _charge_u, _charge_du, 1e-3, charged=True),
        PairLaw("r1", "m1 m2 log r'", _r1_u, _r1_du, 5e-3, charged=False),
        PairLaw("r2", "-m1 m2 / r'", _r2_u, _r2_du, 1e-3, charged=False),
        PairLaw("damped", "(r'-1)^2, plus damping -c v", _spring_u, _spring_du, 2e-2, charged=False, damped=True),
        PairLaw("discontinuous", "0 if r' < 2 else (r'-1)^2", _disc_u, _disc_du, 1e-2, charged=False),
        PairLaw("superposition", "q1 q2 / r' - m1 m2 / r'", _super_u, _super_du, 1e-3, charged=True),
    )
}
"""Every system raysym can simulate, by name."""


CUSTOM = "custom"
"""The system whose potential the user writes (raysym.potential); its law is named by :func:`law_key`."""
CUSTOM_DT = 1e-2
"""Default dt of a custom potential (set data.dt for a stiff one; a blow-up is caught and named)."""


def law_key(system: str, potential: str | None = None) -> str:
    """What names a law in the functions below: the system's name, or ``custom:<expression>``."""
    return f"{CUSTOM}:{potential}" if system == CUSTOM else system


@functools.lru_cache(maxsize=32)
def _custom(expression: str) -> PairLaw:
    from raysym.potential import custom_law

    law = custom_law(expression)
    return PairLaw(CUSTOM, expression, law.potential, law.dpotential, CUSTOM_DT, charged=law.charged)


def get_law(system: str) -> PairLaw:
    """A built-in law by name, or a user's potential by its :func:`law_key`."""
    if system.startswith(CUSTOM + ":"):
        return _custom(system[len(CUSTOM) + 1 :])
    try:
        return SYSTEMS[system]
    except KeyError:
        raise ValueError(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}") from None


def pair_force(system: str, dx, q_receiver, q_sender, m_receiver, m_sender):
    """Force on the receiver from the sender.

    Args:
        dx: x_sender - x_receiver, shape (..., dim).
        q_receiver, q_sender, m_receiver, m_sender: shape (...) (broadcastable).

    Returns:
        Force on the receiver, shape (..., dim).
    """
    law = get_law(system)
    dx = np.asarray(dx, dtype=np.float64)
    r = np.sqrt(np.sum(dx * dx, axis=-1))
    du = law.dpotential(r + SOFTENING, q_receiver, q_sender, m_receiver, m_sender)
    return (du / r)[..., None] * dx


def accelerations(system: str, pos, vel, charge, mass, damping: float = 0.0) -> np.ndarray:
    """Analytic accelerations of every particle of a batch of fully connected systems.

    Args:
        pos, vel: shape (batch, n, dim).
        charge, mass: shape (batch, n).
        damping: coefficient c of the uniform damping -c v (used when the system is damped).

    Returns:
        Accelerations, shape (batch, n, dim), float64.
    """
    law = get_law(system)
    pos = np.asarray(pos, dtype=np.float64)
    batch, n, dim = pos.shape
    # Component by component, on (batch, n, n) arrays: numpy reductions over axes of length 2-4 are
    # slow, and the explicit sums below also fix the order of every addition (batch-independent).
    # dx[d][b, i, j] = x_j - x_i along axis d: sender j, receiver i.
    dx = [pos[:, None, :, d] - pos[:, :, None, d] for d in range(dim)]
    r2 = dx[0] * dx[0]
    for d in range(1, dim):
        r2 = r2 + dx[d] * dx[d]
    off = ~np.eye(n, dtype=bool)
    r = np.sqrt(np.where(off, r2, 1.0))  # self pairs get a harmless distance; zeroed below
    q_recv, q_send = charge[:, :, None], charge[:, None, :]
    m_recv, m_send = mass[:, :, None], mass[:, None, :]
    du = law.dpotential(r + SOFTENING, q_recv, q_send, m_recv, m_send)
    scale = np.where(off, du / r, 0.0)  # (batch, n, n): |F| / r per edge
    mass64 = np.asarray(mass, dtype=np.float64)
    acc = np.empty_like(pos)
    for d in range(dim):
        weighted = scale * dx[d]
        force = weighted[:, :, 0]
        for j in range(1, n):  # sum over senders, in order
            force = force + weighted[:, :, j]
        acc[:, :, d] = force / mass64
    if law.damped and damping:
        acc = acc - damping * np.asarray(vel, dtype=np.float64)
    return acc


def total_energy(system: str, pos, vel, charge, mass) -> np.ndarray:
    """Kinetic plus potential energy (each unordered pair counted once), shape (batch,).

    Conserved by the dynamics of every system except the damped one.
    """
    law = get_law(system)
    pos = np.asarray(pos, dtype=np.float64)
    vel = np.asarray(vel, dtype=np.float64)
    n = pos.shape[1]
    i, j = np.triu_indices(n, k=1)
    dx = pos[:, j] - pos[:, i]
    r = np.sqrt(np.sum(dx * dx, axis=-1))
    u = law.potential(r + SOFTENING, charge[:, i], charge[:, j], mass[:, i], mass[:, j])
    kinetic = 0.5 * np.sum(mass[:, :, None] * vel * vel, axis=(1, 2))
    return kinetic + np.sum(u, axis=1)
