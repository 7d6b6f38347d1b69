"""The GN: dense path == torch-geometric MessagePassing path (outputs and gradients), shapes, and
the regularisers' normalisation."""

import math

import pytest
import torch

from raysym import regularizers
from raysym.graph import batched_edge_index
from raysym.model import MODELS, GraphNetwork


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize(
    "model", [m for m in MODELS if m not in ("hgn", "newtonian")]
)  # hgn: no messages; newtonian: test_newtonian
def test_dense_path_equals_message_passing(model, dim):
    torch.manual_seed(0)
    gn = GraphNetwork(model, dim, hidden=32, layers=3, msg_dim=16).double()
    batch, n = 6, 5
    x = torch.randn(batch, n, 2 * dim + 2, dtype=torch.float64)
    edges = batch * n * (n - 1)
    noise = torch.randn(edges, gn.msg_dim, dtype=torch.float64)  # the same KL draws on both paths

    dense = gn(x, noise)
    grads_dense = torch.autograd.grad(dense.acc.square().sum() + dense.messages.abs().sum(), list(gn.parameters()))
    pyg = gn.forward_pyg(x.reshape(batch * n, -1), batched_edge_index(batch, n), noise)
    grads_pyg = torch.autograd.grad(pyg.acc.square().sum() + pyg.messages.abs().sum(), list(gn.parameters()))

    assert dense.acc.shape == (batch, n, dim) and dense.messages.shape == (edges, gn.msg_dim)
    torch.testing.assert_close(dense.acc.reshape(-1, dim), pyg.acc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dense.messages, pyg.messages, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_dense, grads_pyg):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_message_sizes():
    assert GraphNetwork("bottleneck", 3).msg_dim == 3
    assert GraphNetwork("l1", 2).msg_dim == 100
    kl = GraphNetwork("kl", 2)
    assert kl.edge_model[-1].out_features == 200  # means and log-variances
    assert [m.out_features for m in GraphNetwork("standard", 2).edge_model if isinstance(m, torch.nn.Linear)] == [
        300,
        300,
        300,
        100,
    ]


def test_edge_model_variants_have_the_studied_architectures():
    wide = GraphNetwork("wide", 2)
    assert [m.out_features for m in wide.edge_model if isinstance(m, torch.nn.Linear)] == [300, 450, 600, 450, 300, 100]
    inverse = GraphNetwork("inverse", 2, hidden=32)
    assert inverse.msg_dim == 100
    x = torch.randn(7, 12)  # (edges, receiver and sender features)
    first = inverse.edge_model.first(x)
    u = 1 / (1 + torch.relu(first))
    expected = inverse.edge_model.linear(u) + inverse.edge_model.square(u**2)
    torch.testing.assert_close(inverse.edge_model(x), expected)
    assert (u > 0).all() and (u <= 1).all()  # bounded: inverse powers of a non-negative feature


def test_kl_samples_in_training_and_uses_means_at_evaluation():
    gn = GraphNetwork("kl", 2, hidden=16, msg_dim=8)
    x = torch.randn(3, 4, 6)
    gn.eval()
    out = gn(x)
    torch.testing.assert_close(out.messages, out.mu)
    gn.train()
    assert not torch.allclose(gn(x).messages, out.mu)


def test_l1_normalisation_is_per_edge_mean_of_sums():
    messages = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, -1.0]])
    assert regularizers.l1(messages).item() == pytest.approx((3.0 + 2.0) / 2)
    # independent of how many graphs are in the batch: repeating the edges changes nothing
    assert regularizers.l1(messages.repeat(7, 1)).item() == pytest.approx(2.5)


def test_gaussian_kl_matches_the_paper_form():
    mu = torch.tensor([[0.0, 1.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    expected = 0.5 * (0 + 1 - 0) + 0.5 * (1 + 4 - math.log(4.0))
    assert regularizers.kl(mu, logvar).item() == pytest.approx(expected)


def test_laplace_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([0.7]), torch.tensor([math.log(0.3)])
    analytic = regularizers.kl_per_component(mu, logvar, "laplace").item()
    s = math.exp(0.5 * logvar.item())
    x = mu + s * torch.randn(2_000_000, dtype=torch.float64)
    log_q = torch.distributions.Normal(mu.double(), s).log_prob(x)
    log_p = torch.distributions.Laplace(0.0, 1.0).log_prob(x)
    assert analytic == pytest.approx((log_q - log_p).mean().item(), abs=2e-3)
    assert regularizers.kl_per_component(torch.zeros(1), torch.zeros(1), "laplace").item() > 0
