"""Vectorised N-body simulation: many independent systems advanced together with classic RK4.

Consecutive states are ``dt`` apart; each interval is crossed in ``substeps`` RK4 steps (default 1).
Fixed steps are what make thousands of simulations advance in lock step; their price is accuracy in
close encounters and across the discontinuous law's jump, which more substeps buy back (the stored
accelerations are exact at the stored states either way).

Each simulation is identified by (seed, split, sim id) and draws its initial state from its own
random stream, ``numpy.random.SeedSequence(seed, spawn_key=(split, sim))``, so a simulation's data do
not depend on which block, shard, worker or machine computes it. Splits: 0 = train, 1 = test, so the
test trajectories come from different random streams than the training ones.

Initial state (as in the original code): positions and velocities N(0, 1), masses exp(N(0, 1)),
charges sign(N(0, 1)) for charged systems and otherwise an N(0, 1) distractor column that the law
ignores. The stored acceleration of a snapshot is the analytic one at that exact state (the RK4
stage-1 evaluation), not a finite difference.

Work happens in float64; snapshots are returned as float32 (what training consumes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raysym import physics
from raysym.config import SimulationConfig

SPLITS = {"train": 0, "test": 1}

# Temporary arrays of one force evaluation: about a dozen (batch, n, n[, dim]) float64 arrays.
_BYTES_PER_PAIR_COMPONENT = 8 * 12
BLOCK_MEMORY_BUDGET = 256 * 2**20
"""Upper bound (bytes) on the temporaries of one integration block; sets the block size."""


@dataclass
class Snapshots:
    """Stored states of a block of simulations, one row per graph.

    Shapes (G graphs, n particles, dim dimensions): sim, step (G,) int64; t (G,) float64;
    pos, vel, acc (G, n, dim) float32; charge, mass (G, n) float32.
    """

    sim: np.ndarray
    step: np.ndarray
    t: np.ndarray
    pos: np.ndarray
    vel: np.ndarray
    charge: np.ndarray
    mass: np.ndarray
    acc: np.ndarray

    def __len__(self) -> int:
        return len(self.sim)

    def take(self, rows: np.ndarray) -> "Snapshots":
        """The graphs at ``rows`` (indices or a boolean mask of length G)."""
        return Snapshots(**{f: getattr(self, f)[rows] for f in Snapshots.__dataclass_fields__})

    @staticmethod
    def concat(parts: list["Snapshots"]) -> "Snapshots":
        fields = Snapshots.__dataclass_fields__
        return Snapshots(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def initial_state(cfg: SimulationConfig, split: str, sim_ids: np.ndarray):
    """Initial (pos, vel, charge, mass) of each listed simulation, each from its own random stream.

    Returns pos, vel of shape (S, n, dim) and charge, mass of shape (S, n), float64.
    """
    n, dim = cfg.particles, cfg.dim
    charged = physics.get_law(cfg.law).charged
    split_key = SPLITS[split]
    pos = np.empty((len(sim_ids), n, dim))
    vel = np.empty_like(pos)
    charge = np.empty((len(sim_ids), n))
    mass = np.empty_like(charge)
    for row, sim in enumerate(sim_ids):
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(split_key, int(sim))))
        pos[row] = rng.standard_normal((n, dim))
        vel[row] = rng.standard_normal((n, dim))
        mass[row] = np.exp(rng.standard_normal(n))
        q = rng.standard_normal(n)
        charge[row] = np.sign(q) if charged else q
    return pos, vel, charge, mass


def bytes_per_sim(cfg: SimulationConfig) -> int:
    """Peak temporary memory of one simulation's force evaluation (dense n x n pairs)."""
    return cfg.particles**2 * cfg.dim * _BYTES_PER_PAIR_COMPONENT


def block_size(cfg: SimulationConfig) -> int:
    """How many simulations to integrate at once so the temporaries stay within the memory budget."""
    return int(max(1, min(512, BLOCK_MEMORY_BUDGET // bytes_per_sim(cfg))))


def simulate_block(cfg: SimulationConfig, split: str, sim_ids) -> Snapshots:
    """Integrate the listed simulations together and return their stored snapshots.

    Rows are ordered by simulation (in the order given), then by step.
    """
    sim_ids = np.asarray(sim_ids, dtype=np.int64)
    law = cfg.law
    dt = cfg.resolved_dt
    damping = cfg.resolved_damping
    pos, vel, charge, mass = initial_state(cfg, split, sim_ids)

    def acc_fn(p, v):
        return physics.accelerations(law, p, v, charge, mass, damping)

    stored_steps = np.arange(0, cfg.steps, cfg.stride)
    S, K = len(sim_ids), len(stored_steps)
    out_pos = np.empty((S, K) + pos.shape[1:], dtype=np.float32)
    out_vel = np.empty_like(out_pos)
    out_acc = np.empty_like(out_pos)
    h = dt / cfg.substeps  # RK4 step; dt stays the time between consecutive states
    k = 0
    for step in range(cfg.steps):
        a1 = acc_fn(pos, vel)  # the analytic acceleration at the current state
        if step % cfg.stride == 0:
            out_pos[:, k], out_vel[:, k], out_acc[:, k] = pos, vel, a1
            k += 1
        if step == cfg.steps - 1:
            break
        for sub in range(cfg.substeps):
            if sub > 0:
                a1 = acc_fn(pos, vel)
            pos, vel = _rk4_step(acc_fn, pos, vel, a1, h)

    n = cfg.particles
    return Snapshots(
        sim=np.repeat(sim_ids, K),
        step=np.tile(stored_steps, S).astype(np.int64),
        t=np.tile(stored_steps * dt, S),
        pos=out_pos.reshape(S * K, n, cfg.dim),
        vel=out_vel.reshape(S * K, n, cfg.dim),
        charge=np.repeat(charge.astype(np.float32), K, axis=0),
        mass=np.repeat(mass.astype(np.float32), K, axis=0),
        acc=out_acc.reshape(S * K, n, cfg.dim),
    )


def _rk4_step(acc_fn, pos, vel, a1, h):
    """One classic RK4 step of d pos/dt = vel, d vel/dt = acc(pos, vel); a1 = acc(pos, vel)."""
    p2, v2 = pos + 0.5 * h * vel, vel + 0.5 * h * a1
    a2 = acc_fn(p2, v2)
    p3, v3 = pos + 0.5 * h * v2, vel + 0.5 * h * a2
    a3 = acc_fn(p3, v3)
    p4, v4 = pos + h * v3, vel + h * a3
    a4 = acc_fn(p4, v4)
    new_pos = pos + (h / 6.0) * (vel + 2.0 * v2 + 2.0 * v3 + v4)
    new_vel = vel + (h / 6.0) * (a1 + 2.0 * a2 + 2.0 * a3 + a4)
    return new_pos, new_vel


def simulate(cfg: SimulationConfig, split: str, sim_ids) -> Snapshots:
    """Simulate the listed simulations in memory-bounded blocks (see :func:`block_size`)."""
    sim_ids = np.asarray(sim_ids, dtype=np.int64)
    size = block_size(cfg)
    parts = [simulate_block(cfg, split, sim_ids[i : i + size]) for i in range(0, len(sim_ids), size)]
    return Snapshots.concat(parts)
