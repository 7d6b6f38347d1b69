"""The Newtonian GN: with the true pair force plugged in as its edge function it reproduces the
simulator's accelerations for every system; it is translation invariant and permutation equivariant;
its message forms train; and a tiny run goes end to end through run_trial and distillation."""

import numpy as np
import pytest
import torch
from torch import nn

from raysym import physics
from raysym.config import TrainConfig
from raysym.newtonian import NewtonianGN, edge_inputs
from raysym.train import train


class TruePairForce(nn.Module):
    """The edge function of the true law: edge inputs [dx, r, m1, m2, q1, q2] -> force on the receiver,
    computed by raysym.physics (the simulator's own source)."""

    def __init__(self, system: str, dim: int):
        super().__init__()
        self.system, self.dim = system, dim

    def forward(self, inputs):
        d = self.dim
        col = inputs.detach().numpy()
        dx, m1, m2, q1, q2 = col[..., :d], col[..., d + 1], col[..., d + 2], col[..., d + 3], col[..., d + 4]
        return torch.from_numpy(physics.pair_force(self.system, dx, q1, q2, m1, m2))


class Damping(nn.Module):
    """g(v, q, m) = -c v, the damped system's non-pairwise term."""

    def forward(self, inputs):
        return -physics.DEFAULT_DAMPING * inputs[..., :-2]


def _state(dim, batch=6, n=5, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(batch, n, dim)) * 1.5
    vel = rng.normal(size=(batch, n, dim))
    charge = rng.choice([-1.0, 1.0], size=(batch, n))
    mass = np.exp(rng.normal(size=(batch, n)))
    x = torch.from_numpy(np.concatenate([pos, vel, charge[..., None], mass[..., None]], axis=-1))
    return x, (pos, vel, charge, mass)


@pytest.mark.parametrize("system", sorted(physics.SYSTEMS))
@pytest.mark.parametrize("dim", [2, 3])
def test_true_pair_force_reproduces_the_simulators_accelerations(system, dim):
    damped = physics.get_law(system).damped
    gn = NewtonianGN(dim, hidden=8, layers=1, node_term=damped).double().eval()
    gn.edge_model = TruePairForce(system, dim)
    if damped:
        gn.node_term = Damping()
    x, (pos, vel, charge, mass) = _state(dim)
    out = gn(x)
    expected = physics.accelerations(system, pos, vel, charge, mass, damping=physics.DEFAULT_DAMPING)
    np.testing.assert_allclose(out.acc.numpy(), expected, rtol=1e-10, atol=1e-12)
    # its messages are the pair forces themselves, receiver-major like the other models
    assert out.messages.shape == (6 * 5 * 4, dim)


def test_edge_inputs_are_relative_and_in_the_distillation_order():
    from raysym.distill_jobs import edge_names
    from raysym.graph import complete_edges

    x, (pos, _, charge, mass) = _state(2, batch=1, n=3)
    recv, send = complete_edges(3, "cpu")
    inputs = edge_inputs(x[:, recv], x[:, send], 2)[0].numpy()
    assert edge_names(2) == ["dx", "dy", "r", "m1", "m2", "q1", "q2"]
    e = 0  # receiver 0, sender 1
    assert (recv[e].item(), send[e].item()) == (0, 1)
    np.testing.assert_allclose(
        inputs[e],
        [
            *(pos[0, 1] - pos[0, 0]),
            np.linalg.norm(pos[0, 1] - pos[0, 0]),
            mass[0, 0],
            mass[0, 1],
            charge[0, 0],
            charge[0, 1],
        ],
    )


@pytest.mark.parametrize("messages", ["bottleneck", "l1", "kl"])
def test_translation_invariance_and_permutation_equivariance(messages):
    torch.manual_seed(0)
    gn = NewtonianGN(2, hidden=16, layers=2, messages=messages, msg_dim=8).double().eval()
    x, _ = _state(2)
    acc = gn(x).acc
    shifted = x.clone()
    shifted[..., :2] += torch.tensor([3.0, -7.0], dtype=torch.float64)
    torch.testing.assert_close(gn(shifted).acc, acc)
    perm = torch.tensor([2, 0, 4, 1, 3])
    torch.testing.assert_close(gn(x[:, perm]).acc, acc[:, perm])


@pytest.mark.parametrize("messages", ["bottleneck", "l1", "kl"])
@pytest.mark.parametrize("dim", [2, 3])
def test_dense_path_equals_message_passing(messages, dim):
    from raysym.graph import batched_edge_index

    torch.manual_seed(0)
    gn = NewtonianGN(dim, hidden=32, layers=3, messages=messages, msg_dim=16, node_term=True).double()
    x, _ = _state(dim)
    batch, n = x.shape[:2]
    noise = torch.randn(batch * n * (n - 1), gn.msg_dim, dtype=torch.float64)  # the same KL draws on both paths
    dense = gn(x, noise)
    grads_dense = torch.autograd.grad(dense.acc.square().sum() + dense.messages.abs().sum(), list(gn.parameters()))
    pyg = gn.forward_pyg(x.reshape(batch * n, -1), batched_edge_index(batch, n), noise)
    grads_pyg = torch.autograd.grad(pyg.acc.square().sum() + pyg.messages.abs().sum(), list(gn.parameters()))
    torch.testing.assert_close(dense.acc.reshape(-1, dim), pyg.acc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dense.messages, pyg.messages, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_dense, grads_pyg):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def graphs():
    from raysym import simulate
    from raysym.config import SimulationConfig

    cfg = SimulationConfig(system="spring", dim=2, particles=4, sims=12, steps=60, stride=5)
    return simulate.simulate(cfg, "train", np.arange(12)), simulate.simulate(cfg, "test", np.arange(4))


@pytest.mark.parametrize("messages, reg", [("bottleneck", 0), ("l1", 1), ("kl", 1)])
def test_every_message_form_trains_with_its_penalty(graphs, messages, reg):
    cfg = TrainConfig(
        data="in-memory",
        model="newtonian",
        newtonian_messages=messages,
        epochs=2,
        batch_size=16,
        hidden=16,
        msg_dim=8,
        seed=1,
    )
    assert cfg.regularizer == {"bottleneck": "none"}.get(messages, messages)
    result = train(cfg, data=graphs)
    assert result.status == "finished"
    assert (result.history[-1]["train/regularizer"] > 0) == bool(reg)
    assert result.model.msg_dim == (2 if messages == "bottleneck" else 8)


def test_unknown_message_form_is_a_user_error_with_a_hint():
    from raysym.config import from_dict
    from raysym.errors import UserError

    with pytest.raises(UserError, match="Did you mean 'bottleneck'"):
        from_dict(TrainConfig, {"data": "d", "model": "newtonian", "newtonian_messages": "botleneck"})
