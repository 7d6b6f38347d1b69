"""The Hamiltonian GN: with the true Hamiltonian plugged in it reproduces the simulator's accelerations;
its dynamics conserve its own H; autograd forces match finite differences; the energy regulariser is
taken per edge and per node; it trains through the same loop as the other models."""

import numpy as np
import pytest
import torch
from torch import nn

from raysym import physics
from raysym.config import TrainConfig
from raysym.hgn import HamiltonianGN
from raysym.train import batch_loss, train


class TruePairEnergy(nn.Module):
    """Half the true pair potential per directed edge (each pair appears as two edges). Input: the
    receiver's and the sender's [q, p, charge, mass]."""

    def __init__(self, system: str, dim: int):
        super().__init__()
        self.system, self.dim = system, dim

    def forward(self, pair):
        d = self.dim
        f = 2 * d + 2
        qi, qj = pair[..., :d], pair[..., f : f + d]
        ci, cj, mi, mj = pair[..., 2 * d], pair[..., f + 2 * d], pair[..., 2 * d + 1], pair[..., f + 2 * d + 1]
        r = torch.sqrt(((qj - qi) ** 2).sum(-1)) + physics.SOFTENING
        u = {"spring": lambda: (r - 1) ** 2, "charge": lambda: ci * cj / r, "r2": lambda: -mi * mj / r,
             "r1": lambda: mi * mj * torch.log(r)}[self.system]()
        return 0.5 * u[..., None]


class Kinetic(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        p, m = x[..., self.dim : 2 * self.dim], x[..., -1]
        return ((p**2).sum(-1) / (2 * m))[..., None]


def _state(dim, batch=5, n=4, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(batch, n, dim)) * 1.5
    vel = rng.normal(size=(batch, n, dim))
    charge = rng.choice([-1.0, 1.0], size=(batch, n))
    mass = np.exp(rng.normal(size=(batch, n)))
    return pos, vel, charge, mass


@pytest.mark.parametrize("system", ["spring", "charge", "r1", "r2"])
@pytest.mark.parametrize("dim", [2, 3])
def test_true_hamiltonian_reproduces_the_simulators_accelerations(system, dim):
    hgn = HamiltonianGN(dim, hidden=8, layers=1).double().eval()
    hgn.pair_energy, hgn.self_energy = TruePairEnergy(system, dim), Kinetic(dim)
    pos, vel, charge, mass = _state(dim)
    x = torch.from_numpy(np.concatenate([pos, vel, charge[..., None], mass[..., None]], axis=-1))
    acc = hgn(x).acc.numpy()
    np.testing.assert_allclose(acc, physics.accelerations(system, pos, vel, charge, mass), rtol=1e-10, atol=1e-10)
    # and H is the simulator's total energy (each pair once, plus kinetic)
    q, p, other = x[..., :dim], x[..., dim : 2 * dim] * x[..., -1:], x[..., 2 * dim :]
    H = hgn.hamiltonian(q, p, other).detach().numpy()
    np.testing.assert_allclose(H, physics.total_energy(system, pos, vel, charge, mass), rtol=1e-10)


def test_autograd_forces_match_finite_differences():
    torch.manual_seed(0)
    dim = 2
    hgn = HamiltonianGN(dim, hidden=16, layers=2).double().eval()
    pos, vel, charge, mass = _state(dim, batch=2, n=3)
    q = torch.from_numpy(pos)
    p = torch.from_numpy(vel * mass[..., None])
    other = torch.from_numpy(np.stack([charge, mass], -1))
    dq_dt, dp_dt, _, _ = hgn.time_derivatives(q, p, other)
    eps = 1e-6
    for b, i, d in [(0, 0, 0), (1, 2, 1), (0, 1, 1)]:
        for tensor, derivative, sign in ((q, dp_dt, -1.0), (p, dq_dt, 1.0)):
            up, down = tensor.clone(), tensor.clone()
            up[b, i, d] += eps
            down[b, i, d] -= eps
            args_up = (up, p, other) if tensor is q else (q, up, other)
            args_down = (down, p, other) if tensor is q else (q, down, other)
            numeric = (hgn.hamiltonian(*args_up)[b] - hgn.hamiltonian(*args_down)[b]).item() / (2 * eps)
            assert derivative[b, i, d].item() == pytest.approx(sign * numeric, rel=1e-6, abs=1e-8)


def test_learned_dynamics_conserve_their_own_energy():
    """Hamilton's equations of a random (untrained) HGN, integrated with RK4: H stays constant."""
    torch.manual_seed(1)
    dim = 2
    hgn = HamiltonianGN(dim, hidden=16, layers=2).double().eval()
    pos, vel, charge, mass = _state(dim, batch=3, n=4, seed=2)
    q = torch.from_numpy(pos)
    p = torch.from_numpy(vel * mass[..., None])
    other = torch.from_numpy(np.stack([charge, mass], -1))

    def f(q, p):
        dq, dp, _, _ = hgn.time_derivatives(q, p, other)
        return dq.detach(), dp.detach()

    H0 = hgn.hamiltonian(q, p, other).detach()
    dt = 1e-3
    for _ in range(500):
        k1 = f(q, p)
        k2 = f(q + dt / 2 * k1[0], p + dt / 2 * k1[1])
        k3 = f(q + dt / 2 * k2[0], p + dt / 2 * k2[1])
        k4 = f(q + dt * k3[0], p + dt * k3[1])
        q = q + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        p = p + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    H = hgn.hamiltonian(q, p, other).detach()
    moved = (q - torch.from_numpy(pos)).abs().max().item()
    assert moved > 1e-3  # the system did evolve
    torch.testing.assert_close(H, H0, rtol=1e-8, atol=1e-8)


def test_energy_regulariser_is_per_edge_and_per_node():
    torch.manual_seed(0)
    dim, n, batch = 2, 4, 3
    hgn = HamiltonianGN(dim, hidden=8, layers=1)
    x = torch.randn(batch, n, 2 * dim + 2)
    x[..., -1] = x[..., -1].abs() + 0.5  # masses
    y = torch.zeros(batch, n, dim)
    cfg = TrainConfig(data="-", model="hgn", loss="mae")
    loss, base, reg = batch_loss(hgn, cfg, x, y, alpha=0.5)
    q, p, other = x[..., :dim], x[..., dim : 2 * dim] * x[..., -1:], x[..., 2 * dim :]
    pair, own = hgn.energies(q, p, other)
    assert pair.shape == (batch, n * (n - 1)) and own.shape == (batch, n)
    expected = pair.abs().mean() + own.abs().mean()  # one value per edge, one per node
    torch.testing.assert_close(reg, expected)
    torch.testing.assert_close(loss, base + 0.5 * expected)


def test_hgn_trains_and_its_loss_falls():
    from raysym.simulate import Snapshots

    pos, vel, charge, mass = _state(2, batch=256, n=4, seed=3)
    pos = pos / 1.5
    acc = physics.accelerations("spring", pos, vel, charge, mass)
    graphs = Snapshots(pos=pos.astype(np.float32), vel=vel.astype(np.float32), acc=acc.astype(np.float32),
                       charge=charge.astype(np.float32), mass=mass.astype(np.float32),
                       sim=np.arange(256), step=np.zeros(256, np.int64), t=np.zeros(256))
    cfg = TrainConfig(data="in-memory", model="hgn", epochs=15, batch_size=32, hidden=32, layers=2, lr=1e-2, seed=0)
    result = train(cfg, data=(graphs, graphs))
    assert result.status == "finished"
    maes = [h["test/mae"] for h in result.history]
    assert maes[-1] < 0.5 * maes[0]  # 4.6 -> 1.8 when measured
    assert result.history[-1]["train/regularizer"] > 0


def test_hgn_trial_is_analysed_and_distilled_against_the_true_potential(tiny_spring, tmp_path):
    """run_trial + distill_trial for model hgn: the pair energy is compared with U(r'), and distilled
    by one edge job whose verdict is about the potential; no node jobs: the composed model
    differentiates the formula's H."""
    import json

    from raysym.config import DistillConfig
    from raysym.distill_jobs import distill_trial
    from raysym.train import run_trial

    _, data = tiny_spring
    cfg = TrainConfig(data=str(data), model="hgn", epochs=2, batch_size=32, hidden=16, layers=2, prune_k=None)
    metrics = run_trial(cfg, tmp_path / "trial")
    assert -1.0 <= metrics["messages/r2_potential"] <= 1.0
    assert metrics["messages/top_components"] == [0]
    summary = distill_trial(tmp_path / "trial", DistillConfig(backend="operon", setting="fast", samples=300))
    assert summary["distill/node_formulas"] == [] and len(summary["distill/edge_formulas"]) == 1
    assert summary["distill/recovered_as"] in ("potential", "none") and summary["distill/test_mae"] > 0
    assert 0.0 <= summary["distill/r2_potential"] <= 1.0 or summary["distill/r2_potential"] < 0
    on_disk = json.loads((tmp_path / "trial" / "distill" / "summary.json").read_text())
    assert on_disk["distill/recovered_as"] == summary["distill/recovered_as"]


@pytest.mark.parametrize("system, half_potential", [
    ("spring", "0.5*(r + 0.01 - 1)**2"), ("charge", "0.5*q1*q2/(r + 0.01)"),
    ("r1", "0.5*m1*m2*log(r + 0.01)"), ("r2", "-0.5*m1*m2/(r + 0.01)"),
])
@pytest.mark.parametrize("dim", [2, 3])
def test_composed_hgn_model_with_the_true_potential_gives_the_simulators_accelerations(system, half_potential, dim):
    """The HGN's symbolic model (a pair-energy formula summed over directed edges, differentiated by
    sympy) with the true potential, halved because each pair is two edges, is the simulator's law."""
    from types import SimpleNamespace

    from raysym.distill_jobs import energy_accelerations

    pos, vel, charge, mass = _state(dim, batch=6)
    graphs = SimpleNamespace(pos=pos, charge=charge, mass=mass)
    want = physics.accelerations(system, pos, vel, charge, mass)
    np.testing.assert_allclose(energy_accelerations(half_potential, graphs, system), want, rtol=1e-9, atol=1e-12)
