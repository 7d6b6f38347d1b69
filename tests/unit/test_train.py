"""Training one trial on CPU: every variant, determinism, resume from checkpoint, divergence guard,
and the message analysis on planted messages."""

import numpy as np
import pytest
import torch

from raysym import messages, physics, simulate
from raysym.config import L1_MODELS, SimulationConfig, TrainConfig
from raysym.model import MODELS
from raysym.train import CHECKPOINT, train


@pytest.fixture(scope="module")
def graphs():
    cfg = SimulationConfig(system="spring", dim=2, particles=4, sims=12, steps=60, stride=5)
    return simulate.simulate(cfg, "train", np.arange(12)), simulate.simulate(cfg, "test", np.arange(4))


def tiny(**kw):
    base = dict(data="in-memory", epochs=2, batch_size=16, hidden=16, msg_dim=8, seed=1)
    base.update(kw)
    return TrainConfig(**base)


CASES = [(m, "linear") for m in MODELS] + [("l1", "constant"), ("l1", "triangle")]


@pytest.mark.parametrize("model, schedule", CASES)  # schedules only apply to the l1 model
def test_every_variant_and_schedule_trains(graphs, model, schedule):
    result = train(tiny(model=model, l1_schedule=schedule), data=graphs)
    assert result.status == "finished" and len(result.history) == 2
    last = result.history[-1]
    assert np.isfinite(last["val/mae"]) and np.isfinite(last["train/loss"])
    if model in L1_MODELS + ("kl",):
        assert last["train/regularizer"] > 0
    else:
        assert last["train/regularizer"] == 0


def test_schedule_value_reaches_training(graphs):
    seen = []
    train(tiny(model="l1", l1_schedule="linear", epochs=3), data=graphs, callback=seen.append)
    coeffs = [m["train/l1_coeff"] for m in seen]
    assert coeffs == sorted(coeffs) and 0.01 < coeffs[0] < coeffs[-1] <= 0.1


def test_same_seed_same_numbers_on_cpu(graphs):
    a = train(tiny(model="kl"), data=graphs).history
    b = train(tiny(model="kl"), data=graphs).history
    assert a == b
    assert train(tiny(model="kl", seed=2), data=graphs).history != a


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(graphs, tmp_path):
    cfg = tiny(model="l1", epochs=4)
    straight = train(cfg, data=graphs, out_dir=tmp_path / "a")

    class Crash(Exception):
        pass

    def crash_after_second_epoch(metrics):
        if metrics["epoch"] == 1:
            raise Crash()

    with pytest.raises(Crash):
        train(cfg, data=graphs, out_dir=tmp_path / "b", callback=crash_after_second_epoch)
    saved = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert saved["epoch"] == 1
    assert saved["optimizer"]["param_groups"][0]["foreach"] is True  # Adam's multi-tensor kernels (see below)
    resumed = train(cfg, data=graphs, out_dir=tmp_path / "b")
    assert [m["epoch"] for m in resumed.history] == [0, 1, 2, 3]
    assert resumed.history == straight.history
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_divergence_guard_stops_with_a_reason(graphs):
    train_graphs, test_graphs = graphs
    poisoned = simulate.Snapshots(
        **{f: getattr(train_graphs, f).copy() for f in simulate.Snapshots.__dataclass_fields__}
    )
    poisoned.acc[:] = np.nan
    result = train(tiny(), data=(poisoned, test_graphs))
    assert result.status == "diverged"
    assert "non-finite loss" in result.reason and "epoch 0" in result.reason
    assert result.history == []


def test_empty_training_set_is_a_user_error(graphs):
    from raysym.errors import UserError

    train_graphs, test_graphs = graphs
    empty = simulate.Snapshots(**{f: getattr(train_graphs, f)[:0] for f in simulate.Snapshots.__dataclass_fields__})
    with pytest.raises(UserError, match="Nothing to train on: 0 training"):
        train(tiny(), data=(empty, test_graphs))


def test_analysis_finds_planted_force_over_mass():
    """Messages that are a linear map of F / m_receiver plus tiny noise: R² ~ 1 there, sparse."""
    rng = np.random.default_rng(0)
    E = 4000
    dx = rng.standard_normal((E, 2))
    m_r, m_s = np.exp(rng.standard_normal(E)), np.exp(rng.standard_normal(E))
    q = rng.standard_normal(E)
    force = physics.pair_force("spring", dx, q, q, m_r, m_s)
    accel = force / m_r[:, None]
    planted = 1e-4 * rng.standard_normal((E, 100))
    planted[:, 11] = 2 * accel[:, 0] - accel[:, 1] + 0.3
    planted[:, 42] = accel[:, 0] + 3 * accel[:, 1]
    edges = messages.EdgeData(planted, None, dx, np.sqrt((dx**2).sum(1)), q, q, m_r, m_s, force)
    result = messages.analyze(edges, 2)
    assert sorted(result.top) == [11, 42] and result.sparse
    assert result.r2_accel > 0.999 and result.r2_accel_robust > 0.999
    assert result.r2_force < 0.9  # the masses vary, so force itself fits worse
    planted[:, 5] = 0.5 * planted[:, 11]  # a third large component breaks sparsity
    assert not messages.analyze(edges, 2).sparse


def test_acpcr_counts_components_within_the_tolerance():
    """A model whose predictions are the truth plus planted errors: 0.01 (inside 0.02), 0.03 (outside)."""
    from raysym.train import ACPCR_TOL, evaluate

    class Planted(torch.nn.Module):
        def __init__(self, y, errors):
            super().__init__()
            self.y, self.errors, self.w = y, errors, torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            from raysym.graph import GNOutput

            graphs = x[:, 0, 0].long()  # each graph carries its own index
            return GNOutput(acc=self.y[graphs] + self.errors[graphs], messages=torch.zeros(1, 1))

    y = torch.randn(10, 4, 2)
    errors = torch.zeros_like(y)
    errors.view(-1)[:20] = 0.01  # within ACPCR_TOL
    errors.view(-1)[20:50] = -0.03  # outside
    x = torch.zeros(10, 4, 6)
    x[:, :, 0] = torch.arange(10.0)[:, None]
    mae, acpcr = evaluate(Planted(y, errors), x, y, "cpu", batch=3)
    assert ACPCR_TOL == 0.02
    assert acpcr == pytest.approx(50 / 80)  # 20 small errors + 30 exact, of 80 components
    assert mae == pytest.approx((20 * 0.01 + 30 * 0.03) / 80)


def test_the_validation_split_holds_out_whole_simulations_the_same_for_every_trial(graphs):
    from raysym.train import split_validation

    train_graphs, _ = graphs  # 12 simulations of 12 graphs
    kept, held = split_validation(train_graphs, 0.25)
    assert len(kept) + len(held) == len(train_graphs)
    assert set(np.unique(held.sim)).isdisjoint(np.unique(kept.sim))  # whole simulations, never split
    assert len(np.unique(held.sim)) == 3
    # the same simulations whichever graphs a trial kept (another pruning factor drops other graphs)
    fewer = train_graphs.take(np.arange(len(train_graphs)) % 3 != 0)
    _, held_fewer = split_validation(fewer, 0.25, np.unique(train_graphs.sim))
    assert set(np.unique(held_fewer.sim)) == set(np.unique(held.sim))
    with pytest.raises(Exception, match="at least 2 training simulations"):
        split_validation(train_graphs.take(train_graphs.sim == 0), 0.1)


def test_decisions_during_training_read_the_validation_split_only():
    """stop_r2 (and every ``until``) reads val/r2_best; a test-split R² in the same metrics changes nothing."""
    from raysym.train import epoch_r2

    assert epoch_r2({"val/r2_best": 0.5, "messages/r2_force": 1.0, "messages/r2_best": 1.0}) == 0.5
    assert epoch_r2({"messages/r2_force": 1.0}) == float("-inf")


def test_train_reports_validation_metrics_every_epoch_and_test_only_when_given(graphs):
    train_graphs, test_graphs = graphs
    without = train(tiny(model="l1"), data=(train_graphs, test_graphs)).history
    assert all("val/mae" in h and "val/sparsity_share" in h and "test/mae" not in h for h in without)
    with_test = train(tiny(model="l1"), data=(train_graphs, test_graphs), test=test_graphs).history
    assert all(h["test/mae"] == pytest.approx(h["val/mae"]) for h in with_test)  # the same graphs both ways
    # the test split is only reported: training itself is the same with or without it
    assert [h["train/loss"] for h in with_test] == [h["train/loss"] for h in without]


def test_adams_multi_tensor_kernels_give_bit_identical_parameters():
    """raysym.train runs Adam with foreach=True (faster on CPU); the for-loop Adam, torch's CPU default,
    must give the very same parameters, so the speed-up changes no result."""

    def trained(foreach: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-8, foreach=foreach)
        gen = torch.Generator().manual_seed(1)
        for _ in range(100):
            x, y = torch.randn(64, 6, generator=gen), torch.randn(64, 2, generator=gen)
            loss = (model(x) - y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(trained(False), trained(True)))


def test_training_flushes_subnormal_floats_and_changes_no_update_noticeably(graphs):
    """raysym.train flushes subnormal floats to zero (a late L1 trial ran 3x slower on them; BENCHMARKS.md,
    "Subnormal floats"). The same training steps on Adam moments made subnormal give the same weights to
    float32 precision, flushed or not."""

    def flushing() -> bool:
        return torch.tensor([1e-40]).mul(1.0).item() == 0.0

    torch.set_flush_denormal(False)
    during = []
    train(tiny(), data=graphs, probe=lambda model: during.append(flushing()) or {})
    assert during == [True, True]  # on in every epoch of training
    assert not flushing()  # and put back after: other code in the process may need subnormals

    def steps(flush: bool) -> list[torch.Tensor]:
        torch.set_flush_denormal(flush)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
        gen = torch.Generator().manual_seed(1)
        for step in range(60):
            x, y = torch.randn(64, 6, generator=gen), torch.randn(64, 2, generator=gen)
            x[:, :3] = 0.0  # inputs that fall silent, as unused messages do under L1
            opt.zero_grad()
            (model(x) - y).abs().mean().backward()
            opt.step()
            if step == 10:  # their weights' moments decayed into the subnormal range
                for state in opt.state.values():
                    state["exp_avg_sq"][state["exp_avg_sq"] < 1e-6] = 1e-40
                    state["exp_avg"][state["exp_avg"].abs() < 1e-6] = 1e-41
        return [p.detach().clone() for p in model.parameters()]

    flushed, kept = steps(True), steps(False)
    for a, b in zip(flushed, kept):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
