"""Trials end to end on data written by Ray Data: training writes its folder, distillation reads it
(N-body bottleneck, Newtonian and Hamiltonian GNs), and the distillation actor pool."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from helpers import spring_edges

from raysym import distill_pool
from raysym.cli import main
from raysym.config import DistillConfig, TrainConfig
from raysym.train import CHECKPOINT, load_trial, run_trial

FAST = DistillConfig(backend="operon", setting="fast", seed=0)


def test_hgn_trial_is_analysed_and_distilled_against_the_true_potential(spring_data, tmp_path):
    """run_trial + distill_trial for model hgn: the pair energy is compared with U(r'), and distilled
    by one edge job whose verdict is about the potential; no node jobs: the composed model
    differentiates the formula's H. Four epochs on every graph (15 s) teach it the pair force to R² about 0.88
    (pruned at k = 1.5, about 0.5)."""
    import json

    from raysym.config import DistillConfig
    from raysym.distill_jobs import distill_trial
    from raysym.train import run_trial

    cfg = TrainConfig(
        data=str(spring_data), model="hgn", epochs=4, batch_size=32, hidden=32, layers=2, lr=3e-3, prune_k=None
    )
    metrics = run_trial(cfg, tmp_path / "trial")
    # the forces its pair energies imply are the spring's (an untrained HGN scores near 0), and the
    # trimmed fit, blind to the worst 10% of edges, scores at least as high as the plain one
    assert 0.8 < metrics["messages/r2_pair_force"] < 1.0, metrics
    assert metrics["messages/r2_pair_force_robust"] >= metrics["messages/r2_pair_force"]
    assert metrics["val/r2_best"] == metrics["val/r2_pair_force"] > 0.8
    assert metrics["messages/top_components"] == [0] and metrics["messages/sparse"] is None
    summary = distill_trial(tmp_path / "trial", DistillConfig(backend="operon", setting="thorough", samples=200))
    assert summary["distill/node_formulas"] == [] and len(summary["distill/edge_formulas"]) == 1
    assert summary["distill/test_mae"] > 0 and np.isfinite(summary["distill/test_mae"])
    # the formula fits the network's pair energy: its implied pair force is the spring's about as well
    assert summary["distill/r2_pair_force"] > 0.5, summary
    assert summary["distill/recovered"] == int(summary["distill/r2_pair_force"] >= 0.99)
    assert summary["distill/recovered_as"] == ("potential" if summary["distill/recovered"] else "none")
    on_disk = json.loads((tmp_path / "trial" / "distill" / "summary.json").read_text())
    assert on_disk["distill/recovered_as"] == summary["distill/recovered_as"]
    # the formula is chosen on the pair-force front; the energy's own front is kept beside it
    chosen = [
        line
        for line in (tmp_path / "trial" / "distill" / "edge0_front.md").read_text().splitlines()
        if "(chosen)" in line
    ]
    assert len(chosen) == 1 and f"`{summary['distill/edge_formulas'][0]}`" in chosen[0]
    assert (tmp_path / "trial" / "distill" / "edge0_energy_front.csv").is_file()


def test_tiny_newtonian_run_end_to_end_with_distillation(spring_data, tmp_path, capsys):
    """run_trial on Ray-written shards, then distillation (Operon, thorough, on few samples): the three R²
    variants exist, the messages are the spring force, the law is recovered, and the composed symbolic model
    is the edge formulas over m (no node jobs: the node model is fixed)."""
    from raysym.config import DistillConfig
    from raysym.distill_jobs import distill_trial

    cfg = TrainConfig(data=str(spring_data), model="newtonian", epochs=12, batch_size=32, hidden=32, lr=3e-3, seed=0)
    seen = []
    metrics = run_trial(cfg, tmp_path / "trial", callback=seen.append)
    for key in ("messages/r2_force", "messages/r2_force_all", "messages/r2_force_robust", "messages/in_range_fraction"):
        assert np.isfinite(metrics[key]), key
    assert metrics["messages/r2_force"] > 0.98, metrics
    # every epoch is judged on the validation split (held-out training simulations), the end on the test split
    assert all(m["val/r2_force"] <= 1 for m in seen) and seen[-1]["val/r2_force"] > 0.98
    assert metrics["val/r2_force"] == seen[-1]["val/r2_force"] and metrics["data/val_graphs"] > 0
    assert "val/sparsity_share" not in seen[-1]  # dim components: no sparsity to follow
    assert metrics["messages/sparse"] is None  # the bottleneck form has no sparsity prior: n/a
    saved = json.loads((tmp_path / "trial" / "config.json").read_text())
    assert saved["node_term"] is False  # resolved from the data: spring has no damping
    _, model = load_trial(tmp_path / "trial")
    assert model.model == "newtonian" and model.node_term is None

    summary = distill_trial(tmp_path / "trial", DistillConfig(backend="operon", setting="thorough", samples=200))
    assert summary["distill/errors"] == []
    assert len(summary["distill/edge_formulas"]) == 2 and summary["distill/node_formulas"] == []
    for key in (
        "distill/r2_force",
        "distill/r2_force_all",
        "distill/r2_accel",
        "distill/test_mae",
        "distill/test_mae_in_range",
        "distill/gn_test_mae",
    ):
        assert np.isfinite(summary[key]), key
    assert summary["distill/recovered_as"] == "force" and summary["distill/r2_force_min"] > 0.99, summary
    assert summary["distill/condition_force"] < 10  # the two formulas span both directions of the force

    # out of distribution: twice the particles, from the same states, the simulator, the GN and the formulas;
    # the training distribution's own draws first, as the baseline
    trial = str(tmp_path / "trial")
    assert main(["rollout", trial, "--particles", "8", "--sims", "3", "--steps", "10", "--name", "p8"]) == 0
    ood = json.loads((tmp_path / "trial" / "ood" / "rollout.json").read_text())
    assert list(ood["regimes"]) == ["in_dist", "p8"]
    assert [ood["regimes"][r]["particles"] for r in ood["regimes"]] == [4, 8]
    assert (tmp_path / "trial" / "ood" / "position_error.png").stat().st_size > 0
    for name, regime in ood["regimes"].items():
        for model in ("gn", "symbolic"):
            assert regime["metrics"][f"ood/{name}/onestep_mae_{model}"] > 0
            errors = [regime["metrics"][f"ood/{name}/position_error_{model}_t{h}"] for h in (1, 10)]
            assert 0 < errors[0] < errors[1] < 1  # errors grow from the shared start, and stay bounded here
            assert regime["position_error"][model][0] == 0 and len(regime["position_error"][model]) == 11
    # the symbolic model is the spring law here: closer to the simulator than the GN out of distribution
    p8 = ood["regimes"]["p8"]["metrics"]
    assert p8["ood/p8/onestep_mae_symbolic"] < p8["ood/p8/onestep_mae_gn"], p8
    capsys.readouterr()
    # sizes beyond memory or reason are refused before anything runs (issue 28, item 6)
    for argv, why in (
        (["--particles", "300", "--sims", "10000", "--steps", "1"], "GiB for one step"),
        (["--particles", "1000", "--sims", "10000", "--steps", "100000"], "GiB for one step"),
        (["--particles", "8", "--sims", "2000", "--steps", "100000"], "edge evaluations"),
    ):
        assert main(["rollout", trial, *argv]) == 2
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err, err
    # the rollout is written only into a real folder of the trial, never through a link (issue 28, item 6)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(tmp_path / "trial" / "ood")
    (tmp_path / "trial" / "ood").symlink_to(elsewhere)
    assert main(["rollout", trial, "--sims", "2", "--steps", "3"]) == 2
    assert "is a link" in capsys.readouterr().err and not any(elsewhere.iterdir())
    (tmp_path / "trial" / "ood").unlink()
    # a summary whose formula was edited to run code is refused, naming the file; nothing runs (issue 28, 1)
    summary_file = tmp_path / "trial" / "distill" / "summary.json"
    kept = summary_file.read_text()
    marker = tmp_path / "ran"
    tampered = json.loads(kept)
    tampered["distill/edge_formulas"][0] = f"__import__('os').system('touch {marker}') or dx"
    summary_file.write_text(json.dumps(tampered))
    assert main(["rollout", trial, "--sims", "2", "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert str(summary_file) in err and "not a formula raysym writes" in err and not marker.exists()
    # a trial that was never distilled is refused with the command that fixes it
    summary_file.unlink()
    assert main(["rollout", trial]) == 2
    assert "raysym distill" in capsys.readouterr().err


def test_jobs_go_to_actors_that_have_started_not_to_one_waiting_for_a_cpu(local_ray):
    """A sweep's trial holds one of the 2 CPUs for an hour; the pool's second actor cannot start meanwhile.
    Every job must run on the actor that did start: before the fix, one was handed to the waiting actor and
    the distillation (and the sweep's queue behind it) waited for the trial to end."""
    import threading

    import ray

    @ray.remote(num_cpus=1)
    class Trial:  # stands for a training trial holding its CPU
        def hold(self, seconds):
            import time

            time.sleep(seconds)
            return True

    trial = Trial.remote()
    held = trial.hold.remote(600)
    dx, dy, r = spring_edges(200)
    X = np.column_stack([dx, dy, r])
    base = dict(names=["dx", "dy", "r"], cfg=dataclasses_asdict(FAST), workdir="/tmp/unused")
    job_list = [dict(kind="edge", index=i, component=i, X=X, y=(i + 1) * dx + r, **base) for i in range(4)]
    pool = distill_pool.DistillPool(2, say=lambda m: None)
    finished = threading.Event()
    try:
        results = pool.map(job_list, "t001")  # before the fix: waited until the trial let go of its CPU
        finished.set()
        assert [r["index"] for r in results] == [0, 1, 2, 3] and all("front" in r for r in results)
        assert ray.wait([held], timeout=0)[0] == []  # the trial still holds its CPU: nothing waited for it
    finally:
        ray.kill(trial)
        pool.shutdown()


def test_pool_runs_jobs_in_parallel_and_survives_a_failing_job(local_ray):
    dx, dy, r = spring_edges(400)
    X = np.column_stack([dx, dy, r])
    base = dict(names=["dx", "dy", "r"], cfg=dataclasses_asdict(FAST), workdir="/tmp/unused")
    job_list = [
        dict(kind="edge", index=0, component=0, X=X, y=2 * dx + 1, **base),
        dict(kind="edge", index=1, component=1, X=X, y=np.zeros(400), **base),  # no variance: fails
        dict(kind="node", index=0, component=0, X=X, y=dy * r, **base),
    ]
    said: list[str] = []
    pool = distill_pool.DistillPool(2, say=said.append)
    pool.progress_s = 0.05  # a line while jobs run, at least this often (10 s by default)
    try:
        results = pool.map(job_list, "t007")
        # progress: the jobs announced, each one as it ends (how long, its best loss or why it failed),
        # and lines while they run
        assert said[0] == "distill t007: 3 job(s) (2 edge, 1 node) on 2 actor(s)"
        ended = [line for line in said if " done in " in line or " failed after " in line]
        assert len(ended) == 3 and ended[-1].endswith("[3/3]")
        assert any("edge 1 (component 0) done in" in line and "best loss" in line for line in ended)
        assert any("edge 2 (component 1) failed after" in line and "no variance" in line for line in ended)
        assert any("jobs done" in line and "running" in line for line in said)
        assert [r["index"] for r in results] == [0, 1, 0]
        assert "no variance" in results[1]["error"]
        assert results[0]["front"][results[0]["chosen"]]["loss"] < 1e-10
        again = pool.map(job_list[:1])  # the pool still works after a failed job
        assert "front" in again[0]
    finally:
        pool.shutdown()


def test_distill_a_trained_trial_end_to_end(tiny_spring, tmp_path, capsys):
    from raysym.train import run_trial

    _, data = tiny_spring
    trial = tmp_path / "trial"
    run_trial(
        TrainConfig(data=str(data), model="bottleneck", epochs=1, hidden=16, batch_size=32, analysis_graphs=40), trial
    )
    assert (
        main(["distill", str(trial), "--backend", "operon", "--setting", "fast", "--samples", "300", "--workers", "2"])
        == 0
    )
    summary = json.loads((trial / "distill" / "summary.json").read_text())
    assert summary["distill/backend"] == "operon" and summary["distill/errors"] == []
    assert len(summary["distill/edge_formulas"]) == 2 and len(summary["distill/node_formulas"]) == 2
    for key in (
        "distill/test_mae",
        "distill/gn_test_mae",
        "distill/recovered",
        "distill/r2_force",
        "distill/complexity",
    ):
        assert key in summary
    # the verdict's rule, read back from what it recorded: every formula at R² >= 0.99 and a well-conditioned map
    passes = [
        summary[f"distill/r2_{t}_min"] >= 0.99 and summary[f"distill/condition_{t}"] <= 10 for t in ("force", "accel")
    ]
    assert summary["distill/recovered"] == int(any(passes))
    assert summary["distill/recovered_as"] == ("force" if passes[0] else "force/mass" if passes[1] else "none")
    files = sorted(p.name for p in (trial / "distill").iterdir())
    assert files == [
        "edge0_front.csv",
        "edge0_front.md",
        "edge1_front.csv",
        "edge1_front.md",
        "node0_front.csv",
        "node0_front.md",
        "node1_front.csv",
        "node1_front.md",
        "summary.json",
    ]
    assert "edge_formulas" in capsys.readouterr().out


def test_run_trial_writes_metrics_checkpoint_and_figures(tiny_spring, tmp_path):
    _, data = tiny_spring
    cfg = TrainConfig(data=str(data), model="bottleneck", epochs=2, batch_size=32, hidden=16, prune_k=None)
    metrics = run_trial(cfg, tmp_path / "trial")
    on_disk = json.loads((tmp_path / "trial" / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in ("test/mae", "messages/r2_force", "messages/r2_accel", "messages/sparse", "messages/top_std"):
        assert key in on_disk
    assert on_disk["messages/sparse"] is None and len(on_disk["messages/top_std"]) == 2  # no prior: n/a
    # without pruning every test graph is in distribution: the two test MAEs agree
    assert on_disk["test/mae_in_range"] == pytest.approx(on_disk["test/mae"], rel=1e-5)
    for name in (CHECKPOINT, "messages_vs_force.png", "message_stds.png"):
        assert (tmp_path / "trial" / name).stat().st_size > 0


def test_without_figures_a_trial_writes_their_data_and_a_rerun_with_them_draws_them(tiny_spring, tmp_path):
    """``figures: false`` leaves out the PNGs only: the data behind them is written, and the folder holds the
    same trial (config.json), so a rerun with figures draws them from the checkpoint without training again."""
    _, data = tiny_spring
    cfg = TrainConfig(data=str(data), model="l1", epochs=2, batch_size=32, hidden=16, prune_k=None, figures=False)
    epochs = []
    metrics = run_trial(cfg, tmp_path / "trial", callback=epochs.append)
    names = {p.name for p in (tmp_path / "trial").iterdir()}
    assert not {n for n in names if n.endswith(".png")} and len(epochs) == 2
    assert {CHECKPOINT, "metrics.json", "config.json", "messages.npz", "message_stds_by_epoch.json"} <= names
    assert "figures" not in json.loads((tmp_path / "trial" / "config.json").read_text())
    again = run_trial(dataclasses.replace(cfg, figures=True), tmp_path / "trial", callback=epochs.append)
    assert len(epochs) == 2 and again["messages/r2_force"] == metrics["messages/r2_force"]  # not trained again
    for name in ("messages_vs_force.png", "message_stds.png", "message_stds_by_epoch.png"):
        assert (tmp_path / "trial" / name).stat().st_size > 1000


def test_message_stds_are_followed_every_epoch(tiny_spring, tmp_path):
    _, data = tiny_spring
    cfg = TrainConfig(data=str(data), model="l1", epochs=3, batch_size=32, hidden=16, prune_k=None)
    seen = []
    run_trial(cfg, tmp_path / "trial", callback=seen.append)
    assert [sorted(k for k in m if k.startswith("val/std_")) for m in seen] == [
        [f"val/std_{k}" for k in range(1, 6)]
    ] * 3
    assert all(m["val/std_1"] >= m["val/std_5"] > 0 and 0 <= m["test/acpcr"] <= 1 for m in seen)
    assert all(m["test/acpcr"] + m["test/acpcr_complement"] == pytest.approx(1) for m in seen)
    by_epoch = json.loads((tmp_path / "trial" / "message_stds_by_epoch.json").read_text())
    assert by_epoch["epoch"] == [1, 2, 3] and [len(s) for s in by_epoch["stds"]] == [100] * 3
    assert max(by_epoch["stds"][-1]) == pytest.approx(seen[-1]["val/std_1"])
    # sparsity share and ratio every epoch, from the same stds: the top two's part of the sum, and their ratio
    for m, stds in zip(seen, by_epoch["stds"]):
        ranked = sorted(stds, reverse=True)
        assert m["val/sparsity_share"] == pytest.approx(sum(ranked[:2]) / sum(ranked), rel=1e-5)
        assert m["val/sparsity_ratio"] == pytest.approx(ranked[1] / ranked[2], rel=1e-5)
        assert m["val/sparsity_objective"] == pytest.approx(
            m["val/sparsity_share"] - 10 * max(0, 0.99 - m["val/r2_best"]), rel=1e-6
        )
        assert m["train/penalty_weight"] == pytest.approx(m["train/l1_coeff"] * 3 / 8)  # paper units, 4 particles, 2D
    assert (tmp_path / "trial" / "message_stds_by_epoch.png").stat().st_size > 1000


def test_stop_r2_ends_training_after_the_first_epoch_that_reaches_it(tiny_spring, tmp_path):
    """stop_r2 reads the per-epoch in-distribution R² that run_trial measures; a bar any fit clears stops
    training after epoch 1 of 3, and the reason says so."""
    _, data = tiny_spring
    cfg = TrainConfig(data=str(data), model="bottleneck", epochs=3, batch_size=32, hidden=16, stop_r2=1e-9)
    seen = []
    metrics = run_trial(cfg, tmp_path / "trial", callback=seen.append)
    assert len(seen) == 1 and metrics["epochs_done"] == 1
    assert metrics["status"] == "finished" and metrics["reason"].startswith("stopped early")
    assert seen[0]["val/r2_best"] == max(seen[0]["val/r2_force"], seen[0]["val/r2_accel"]) >= 1e-9
    again = run_trial(cfg, tmp_path / "trial", callback=seen.append)  # resuming a stopped trial trains no further
    assert len(seen) == 1 and again["epochs_done"] == 1 and again["messages/r2_force"] == metrics["messages/r2_force"]
    full = run_trial(
        TrainConfig(data=str(data), model="bottleneck", epochs=3, batch_size=32, hidden=16), tmp_path / "full"
    )
    assert full["epochs_done"] == 3 and full["reason"] == ""


@pytest.fixture(scope="module")
def spring_data(local_ray, tmp_path_factory):
    from raysym import shards
    from raysym.config import SimulationConfig

    cfg = SimulationConfig(system="spring", dim=2, particles=4, sims=300, test_sims=60, steps=100, stride=2, seed=4)
    out = tmp_path_factory.mktemp("data") / "spring-2d"
    shards.write_dataset(cfg, out)
    return out


def dataclasses_asdict(cfg):
    import dataclasses

    return dataclasses.asdict(cfg)


def test_a_custom_potential_runs_from_shards_to_the_verdict(local_ray, tmp_path):
    """A user's formula (the Morse potential) through Ray Data, training and distillation: the manifest
    records it, and the message analysis and the verdict take their truth from it."""
    from raysym import physics, shards
    from raysym.config import SimulationConfig
    from raysym.distill_jobs import distill_trial

    morse = "exp(-2*(r - 1)) - 2*exp(-(r - 1))"
    sim = SimulationConfig(
        system="custom", potential=morse, particles=4, sims=300, test_sims=30, steps=60, stride=3, seed=2
    )
    result = shards.write_dataset(sim, tmp_path / "morse")
    assert result.manifest["params"]["potential"] == morse
    # the stored accelerations are the formula's: the simulator's law, recomputed from the shards
    test = shards.load_dataset(tmp_path / "morse", prune_k=None).test
    law = physics.law_key("custom", morse)
    again = physics.accelerations(law, test.pos[:20], test.vel[:20], test.charge[:20], test.mass[:20])
    assert np.allclose(again, test.acc[:20], rtol=1e-5, atol=1e-6)

    cfg = TrainConfig(data=str(tmp_path / "morse"), model="newtonian", epochs=30, hidden=32, lr=3e-3, batch_size=32)
    metrics = run_trial(cfg, tmp_path / "trial")  # about 12 s
    assert metrics["data/system"] == law  # judged against the formula: the Morse force, learned (R² about 0.90)
    assert metrics["messages/r2_force"] > 0.8 and metrics["messages/r2_force_robust"] > 0.95, metrics
    distilled = DistillConfig(backend="operon", setting="fast", samples=300, operators=["+", "-", "*", "/", "exp"])
    summary = distill_trial(tmp_path / "trial", distilled)
    assert not summary["distill/errors"] and np.isfinite(summary["distill/r2_force"])
    # the verdict takes its truth from the formula: the Morse force itself passes it on the same unseen graphs,
    # the spring force does not (the fast setting's formulas from a GN at R² 0.90 are not the law: "none")
    from raysym.distill_jobs import verdict

    fprime = "(-2*exp(-2*(r + 0.01 - 1)) + 2*exp(-(r + 0.01 - 1)))"  # U'(r'), softened as the simulator does
    true_law = verdict([f"{fprime}*dx/r", f"{fprime}*dy/r"], test, law)
    assert true_law["recovered"] and true_law["which"] == "force" and true_law["r2_force_min"] > 0.9999
    spring = verdict(["(r - 0.99)*dx/r", "(r - 0.99)*dy/r"], test, law)
    assert not spring["recovered"] and spring["r2_force_min"] < 0.9
