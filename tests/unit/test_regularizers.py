"""The message penalties carry the publications' coefficients: for the same batch and messages, raysym's ratio
of penalty to data loss equals the original notebook's (MilesCranmer/symbolic_deep_learning, GN_Demo_Colab:
``new_loss`` and its training loop), re-implemented here from its formula, not from raysym's code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raysym import regularizers, simulate
from raysym.config import SimulationConfig, TrainConfig
from raysym.graph import complete_edges, node_feature_size
from raysym.model import GraphNetwork
from raysym.train import batch_loss, load_trial, penalty_scale, train, trial_record


@pytest.fixture(scope="module")
def tiny_graphs():
    cfg = SimulationConfig(system="spring", dim=2, particles=4, sims=4, steps=20, stride=5)
    return simulate.simulate(cfg, "train", np.arange(4)), simulate.simulate(cfg, "test", np.arange(2))


def notebook_loss(model, x, y, test: str, coeff: float) -> tuple[float, float]:
    """The notebook's (data loss, penalty) of one batch, both divided by the batch size as its training loop does:
    base = sum |a - a_hat| over the batch's nodes and dims; penalty = coeff * batch * S / n**2 * n, S summed over
    the edges of ONE graph (``g.x[self.edge_index]`` with the single-graph edge index: the batch's first graph)
    and over the message components, of |m| (L1) or of (exp(logvar) + mu^2 - logvar) / 2 (KL)."""
    batch, n, _ = x.shape
    out = model(x)
    base = (y - out.acc).abs().sum().detach()
    recv, send = complete_edges(n, "cpu")
    first = x[0]
    raw = model.edge_model(torch.cat([first[recv], first[send]], dim=-1))  # the notebook's msg_fnc on graph 0
    if test == "_l1_":
        summed = raw.abs().sum().detach()
    else:
        mu, logvar = raw[:, : model.msg_dim], raw[:, model.msg_dim :]
        summed = (torch.exp(logvar) + mu**2 - logvar).sum().detach() / 2.0
    penalty = coeff * batch * summed / n**2 * n
    return float(base / batch), float(penalty / batch)


def raysym_loss(model, cfg: TrainConfig, x, y, alpha: float) -> tuple[float, float]:
    """raysym's (data loss, coefficient x penalty) of the same batch."""
    loss, base, _ = batch_loss(model, cfg, x, y, alpha)
    return float(base.detach()), float((loss - base).detach())


def batch_of(graph_count: int, n: int, dim: int, same: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (1 if same else graph_count, n, node_feature_size(dim))
    x = torch.from_numpy(rng.normal(size=shape).astype(np.float32))
    x[..., -1] = torch.exp(x[..., -1])  # masses
    y = torch.from_numpy(rng.normal(size=(shape[0], n, dim)).astype(np.float32))
    if same:
        x, y = x.expand(graph_count, -1, -1).contiguous(), y.expand(graph_count, -1, -1).contiguous()
    return x, y


@pytest.mark.parametrize("n,dim", [(4, 2), (4, 3), (8, 2)])
@pytest.mark.parametrize("model_name,test,coeff", [("l1", "_l1_", 1e-2), ("kl", "_kl_", 1.0)])
def test_penalty_to_data_ratio_is_the_notebooks(n, dim, model_name, test, coeff):
    torch.manual_seed(0)
    model = GraphNetwork(model_name, dim, hidden=32, layers=3).eval()  # eval: KL messages are the means
    cfg = TrainConfig(data="in-memory", model=model_name, kl_alpha=coeff)
    # A batch of copies of one graph: the notebook's penalty on the first graph is then every graph's.
    x, y = batch_of(64, n, dim, same=True)
    base_nb, pen_nb = notebook_loss(model, x, y, test, coeff)
    base_rs, pen_rs = raysym_loss(model, cfg, x, y, coeff)
    assert pen_rs / base_rs == pytest.approx(pen_nb / base_nb, rel=1e-5)
    # Distinct graphs: the notebook's penalty depends on which graph comes first (its batches are shuffled);
    # over every choice of first graph it averages to raysym's, which covers every graph of the batch.
    x, y = batch_of(16, n, dim, same=False)
    firsts = [notebook_loss(model, torch.roll(x, -g, 0), torch.roll(y, -g, 0), test, coeff) for g in range(16)]
    base_rs, pen_rs = raysym_loss(model, cfg, x, y, coeff)
    assert pen_rs / base_rs == pytest.approx(np.mean([p for _, p in firsts]) / firsts[0][0], rel=1e-5)


def test_the_paper_scale_is_the_notebooks_factor():
    # 2D, 4 particles: the notebook's 1e-2 is 0.00375 on raysym's per-edge mean; 3D: 0.0025
    assert regularizers.paper_scale(4, 2) == pytest.approx(0.375)
    assert regularizers.paper_scale(4, 3) == pytest.approx(0.25)
    assert regularizers.penalty_scale("per_edge", 4, 2) == 1.0
    with pytest.raises(ValueError):
        regularizers.penalty_scale("furlongs", 4, 2)


def test_per_edge_units_apply_the_coefficient_as_it_stands():
    torch.manual_seed(0)
    model = GraphNetwork("l1", 2, hidden=16, layers=2).eval()
    x, y = batch_of(8, 4, 2, same=False)
    paper = raysym_loss(model, TrainConfig(data="in-memory", model="l1"), x, y, 0.01)[1]
    per_edge = raysym_loss(model, TrainConfig(data="in-memory", model="l1", penalty_units="per_edge"), x, y, 0.01)[1]
    assert per_edge == pytest.approx(paper / 0.375, rel=1e-5)
    assert float(regularizers.l1(model(x).messages)) * 0.01 == pytest.approx(per_edge, rel=1e-5)


def test_the_hamiltonian_gn_keeps_its_own_scale():
    assert penalty_scale(TrainConfig(data="in-memory", model="hgn"), 4, 2) == 1.0
    assert penalty_scale(TrainConfig(data="in-memory", model="l1"), 4, 2) == pytest.approx(0.375)


def test_trials_from_before_the_paper_units_read_as_per_edge(tiny_graphs, tmp_path):
    cfg = TrainConfig(data="in-memory", model="l1", epochs=1, batch_size=16, hidden=8, layers=1, msg_dim=4)
    train(cfg, data=tiny_graphs, out_dir=tmp_path)
    record = trial_record(cfg)
    assert record["penalty_units"] == "paper"  # recorded for every new trial
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in record.items() if k != "penalty_units"}))
    assert load_trial(tmp_path)[0].penalty_units == "per_edge"
    (tmp_path / "config.json").write_text(json.dumps(record))
    assert load_trial(tmp_path)[0].penalty_units == "paper"
