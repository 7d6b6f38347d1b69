"""Halo catalogs through the sweep machinery: config checks, a halo sweep on a real local Ray with MLflow
on sqlite (a synthetic catalog and a Parquet catalog file), its distillation runs, its report, and a
crashed halo trial retried from its checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from raysym.cli import main
from raysym.config import HaloConfig, SweepConfig, from_dict
from raysym.errors import UserError
from raysym.halo_data import COLUMNS, build_graph, synthetic_catalog
from raysym.halos import run_halo_trial, train_halos
from raysym.sweep import run_sweep
from raysym.sweep_plan import plan

TINY_HALOS = {
    "catalog": "synthetic",
    "points": 200,
    "box": 9.0,
    "radius": 2.0,
    "epochs": 20,
    "hidden": 32,
    "report_every": 10,
}


def halo_sweep(tmp_path: Path, name: str = "halos", **halos) -> dict:
    return {
        "name": name,
        "storage": str(tmp_path / "runs"),
        "halos": {**TINY_HALOS, **halos},
        # one trial at a time: each next trial takes the reused actor (as in tests/helpers.py's sweep_dict)
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 1, "distill_workers": 2},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }


def write_catalog(path: Path, points: int = 200, box: float = 9.0) -> Path:
    cat = synthetic_catalog(points, box=box, radius=2.0, seed=5)
    pq.write_table(pa.table({**dict(zip(COLUMNS, [*cat.pos.T, *cat.vel.T, cat.mass])), "delta": cat.target}), path)
    return path


# --------------------------------------------------------------------------------------------------
# Config and plan
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"halos": {"radius": 2.0, "l1": [0.1], "epoch": 3}}, "Did you mean 'epochs'"),
        ({"halos": {"l1": []}}, "grid is empty"),
        ({"halos": {"radius": -1}}, "radius must be a positive distance"),
        ({"halos": {"report_every": 0}}, "report_every must be a positive"),
        ({"data": {"system": "spring"}}, "not both"),
        (
            {"search": {"kind": "optuna", "space": {"schedule_shape.peak": {"low": 0.1, "high": 1}}}},
            "A halo sweep is a grid",
        ),
    ],
)
def test_bad_halo_sweeps_fail_with_a_hint(tmp_path, change, expected, capsys):
    cfg = halo_sweep(tmp_path)
    for key, value in change.items():
        cfg[key] = {**cfg[key], **value} if key == "halos" else value
    with pytest.raises(UserError, match=expected):
        from_dict(SweepConfig, cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert expected.split("'")[0] in err and "Traceback" not in err


def test_halo_plan_resolves_catalog_paths_and_swept_params(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = from_dict(SweepConfig, halo_sweep(tmp_path, catalog=["synthetic", "cats/my.parquet"], l1=[0.01, 0.1]))
    specs = plan(cfg)
    assert [s.kind for s in specs] == ["halos"] * 4
    assert [s.params for s in specs] == [
        {"catalog": c, "l1": l1} for c in ("synthetic", "cats/my.parquet") for l1 in (0.01, 0.1)
    ]
    assert specs[2].data["catalog"] == str(tmp_path / "cats" / "my.parquet")  # trials run in their own folders
    assert specs[0].label() == "halos-synthetic r=2 l1=0.01" and specs[3].label() == "halos-my r=2 l1=0.1"
    assert specs[0].epochs() == 20  # ASHA's time axis: the epochs, for halo trials as for N-body ones


def test_a_bad_catalog_stops_the_sweep_before_any_trial(local_ray, tmp_path, capsys):
    (tmp_path / "broken.parquet").write_text("not parquet")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(halo_sweep(tmp_path, catalog=str(tmp_path / "broken.parquet"))))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "halos").exists() or not any((tmp_path / "runs" / "halos").glob("t000*"))


def test_a_graph_too_large_for_memory_is_refused():
    from raysym.halo_data import check_memory

    cfg = HaloConfig(points=200, box=9.0)
    graph = build_graph(cfg)
    check_memory(graph, cfg)  # fits easily
    with pytest.raises(UserError, match="full batch would need .* Set batch_nodes"):
        check_memory(graph, cfg, memory=3 * 10**6)  # about 8.6 MB needed
    # in batches of 10 nodes the step's activations are a tenth (1.4 MB with the stored messages)
    check_memory(graph, HaloConfig(points=200, box=9.0, batch_nodes=10), memory=3 * 10**6)
    with pytest.raises(UserError, match="in batches of 10 nodes"):
        check_memory(graph, HaloConfig(points=200, box=9.0, batch_nodes=10), memory=10**6)


def test_batched_forward_is_the_full_batch_forward():
    """A node's prediction reads only its incoming edges, so predicting any set of nodes with just their
    edges gives the full-batch numbers, and the batched evaluation returns every edge's message in
    full-batch order."""
    import torch

    from raysym.halos import GraphTensors, NodeGN

    torch.manual_seed(0)
    graph = build_graph(HaloConfig(points=300, box=9.0))
    tensors, model = GraphTensors(graph, "cpu"), NodeGN(hidden=16).eval()
    with torch.no_grad():
        pred, messages = tensors.forward(model)
        nodes = np.array([0, 7, 8, 150, 299])
        some, some_messages = tensors.forward(model, nodes)
    torch.testing.assert_close(some, pred[nodes], rtol=1e-5, atol=1e-6)
    edges = np.flatnonzero(np.isin(graph.receivers, nodes))
    torch.testing.assert_close(some_messages, messages[edges])
    batched_pred, batched_messages = tensors.evaluate(model, batch_nodes=64)
    torch.testing.assert_close(batched_pred, pred, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched_messages, messages)


def test_mini_batch_training_learns_the_target():
    import torch

    torch.set_num_threads(1)
    cfg = HaloConfig(points=400, epochs=40, hidden=32, batch_nodes=64, device="cpu")
    graph = build_graph(cfg)
    result = train_halos(graph, cfg)
    first, last = result.history[0]["test/mae"], result.history[-1]["test/mae"]
    assert last < 0.3 * first and last < 0.25 * np.std(graph.catalog.target), (first, last)


def test_a_bottleneck_halo_trial_trains_and_is_distilled(tmp_path):
    """msg_dim 1: one number per edge, which is its own leading direction; the trial folder is rebuilt
    with that message size for distillation."""
    import json

    from raysym.config import DistillConfig
    from raysym.trial_kind import distil

    cfg = HaloConfig(points=300, box=9.0, epochs=30, hidden=32, msg_dim=1, l1=0.0, device="cpu")
    metrics = run_halo_trial(cfg, tmp_path / "trial")
    assert metrics["status"] == "finished" and metrics["messages/leading_variance"] == pytest.approx(1.0)
    assert len(metrics["messages/stds_top15"]) == 1
    summary = distil(tmp_path / "trial", DistillConfig(backend="operon", setting="fast", samples=300))
    assert summary["distill/edge_formulas"] and summary["distill/node_formulas"] and not summary["distill/errors"]
    assert json.loads((tmp_path / "trial" / "config.json").read_text())["halos"]["msg_dim"] == 1


# --------------------------------------------------------------------------------------------------
# Training: checkpoints and resume
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_nodes", [None, 50])
def test_halo_training_resumed_from_a_checkpoint_ends_with_the_same_numbers(tmp_path, batch_nodes):
    import torch

    torch.set_num_threads(1)
    cfg = HaloConfig(points=200, box=9.0, epochs=30, hidden=32, report_every=10, device="cpu", batch_nodes=batch_nodes)
    graph = build_graph(cfg)
    whole = train_halos(graph, cfg, out_dir=tmp_path / "a")

    class Stop(Exception):
        pass

    def stop_at_20(metrics):
        if metrics["epoch"] + 1 == 20:
            raise Stop

    with pytest.raises(Stop):
        train_halos(graph, cfg, out_dir=tmp_path / "b", callback=stop_at_20)
    seen = []
    resumed = train_halos(graph, cfg, out_dir=tmp_path / "b", callback=lambda m: seen.append(m["epoch"] + 1))
    assert seen == [30]  # epochs 1-20 were not trained again
    assert resumed.test_mae == whole.test_mae
    np.testing.assert_array_equal(resumed.messages, whole.messages)
    assert [h["test/mae"] for h in resumed.history] == [h["test/mae"] for h in whole.history]


def test_halo_trial_folder_holds_what_distillation_and_reports_read(tmp_path):
    cfg = HaloConfig(points=200, box=9.0, epochs=300, hidden=32, device="cpu")  # about 7 s
    metrics = run_halo_trial(cfg, tmp_path)
    assert metrics["status"] == "finished" and metrics["epochs_done"] == 300
    for name in (
        "config.json",
        "checkpoint.pt",
        "metrics.json",
        "halo_messages.npz",
        "message_stds_by_epoch.json",
        "message_stds_by_epoch.png",
    ):
        assert (tmp_path / name).is_file(), name
    # trained: the messages vary along one direction, and that direction is the synthetic catalog's edge term
    # (after 20 epochs: R² 0.0003; after 300: 0.946)
    assert metrics["messages/leading_variance"] > 0.8 and metrics["messages/r2_vs_true_edge"] > 0.9, metrics
    with np.load(tmp_path / "halo_messages.npz") as sample:
        assert sample["edge_x"].shape == (len(sample["projection"]), 6) and len(sample["true_edge"]) == len(
            sample["projection"]
        )


# --------------------------------------------------------------------------------------------------
# A halo sweep end to end: Ray Tune, MLflow, distillation actors, report
# --------------------------------------------------------------------------------------------------


def test_halo_sweep_runs_into_mlflow_distillation_and_the_report(local_ray, tmp_path):
    """Four trials (a synthetic catalog and a Parquet file, two L1 strengths) with two distillation
    actors on a 2-CPU Ray: before the pool was released between distillations, its idle actors held both
    CPUs and the last two trials waited for ever."""
    from mlflow.tracking import MlflowClient

    from raysym.report import make_report

    catalog = write_catalog(tmp_path / "mycat.parquet")
    cfg = from_dict(
        SweepConfig,
        {
            **halo_sweep(tmp_path, catalog=["synthetic", str(catalog)], l1=[0.01, 0.1]),
            "distill": {"backend": "operon", "setting": "fast", "samples": 500},
            # as many trials at once as the CPUs allow (not one at a time as the other tests): the case is
            # trials competing with the distillation actors for the CPUs
            "resources": {"cpus_per_trial": 1, "distill_workers": 2},
        },
    )
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert [r["status"] for r in outcome.rows] == ["finished"] * 4
    laws = {r["system"]: r["law"] for r in outcome.rows}
    assert laws["halos-mycat"] == "unknown (real catalog)" and laws["halos-synthetic"] in ("edge term", "none")
    assert "r2_edge" in outcome.table

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    trials = [r for r in runs if "raysym.trial_id" in r.data.tags and "raysym.distill_of" not in r.data.tags]
    distills = [r for r in runs if "raysym.distill_of" in r.data.tags]
    assert len(trials) == 4 and len(distills) == 4
    for run in trials:
        assert run.info.status == "FINISHED" and set(run.data.params) == {"catalog", "l1"}
        assert run.data.tags["cfg.epochs"] == "20" and run.data.tags["cfg.data.radius"] == "2.0"
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "test/mae")) == [10, 20]
        for key in (
            "test/mae",
            "test/mae_over_std",
            "messages/leading_variance",
            "data/edges",
            "distill/test_mae",
            "distill/gn_test_mae",
        ):
            assert key in run.data.metrics, key
        synthetic = run.data.params["catalog"] == "synthetic"
        assert ("messages/r2_vs_true_edge" in run.data.metrics) == synthetic
        assert ("distill/recovered" in run.data.metrics) == synthetic
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"halo_messages.npz", "checkpoint.pt", "config.json", "message_stds_by_epoch.json"} <= artifacts
    for run in distills:
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
            "summary.json",
            "edge0_front.csv",
            "node0_front.csv",
        }
        assert run.data.tags["distill/node_formulas"].startswith("[")

    report = make_report(f"sqlite:///{tmp_path}/mlflow.db", "halos", tmp_path / "report", say=lambda m: None)
    text = report.markdown.read_text()
    assert "Node-level GN on the catalogs" in text and "Distilled edge and node functions" in text
    for row in ("| halos-synthetic | l1=0.01 |", "| halos-mycat | l1=0.1 |"):
        assert row in text
    assert "unknown (real catalog)" in text and "n/a (real catalog)" in text and "not recorded" not in text
    assert (tmp_path / "report" / "figures" / "halo_messages.png").is_file()
    assert "halo_messages.png" in text and "data:image/png;base64" in report.html.read_text()


def test_asha_counts_epochs_for_halo_trials_too(local_ray, tmp_path):
    """Halo trials report every report_every epochs; ASHA's grace period is in epochs all the same: with
    grace_period 10 the rung is the report of epoch 10, where lr 1e-9 lags lr 3e-3 and is stopped."""
    cfg = from_dict(
        SweepConfig,
        {
            **halo_sweep(tmp_path, lr=[3e-3, 1e-9]),
            "scheduler": {"kind": "asha", "grace_period": 10, "reduction_factor": 2},
            "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 1},
        },
    )
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert [(r["status"], r["epochs"]) for r in outcome.rows] == [("finished", 20), ("stopped early", 10)]


def test_crashed_halo_trial_is_retried_and_distilled_afterwards_from_mlflow(local_ray, tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    marker = tmp_path / "crashed-once"
    monkeypatch.setenv("RAYSYM_INJECT_CRASH", f"10:{marker}")
    cfg = from_dict(SweepConfig, {**halo_sweep(tmp_path), "resources": {"cpus_per_trial": 1, "retries": 1}})
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    (row,) = outcome.rows
    assert marker.exists() and row["status"] == "finished" and row["epochs"] == 20
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tests").experiment_id
    (run,) = [r for r in client.search_runs([experiment]) if "raysym.trial_id" in r.data.tags]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "test/mae")]
    assert sorted(steps) == [10, 20]  # epochs 1-10 were not trained again after the crash

    # the sweep had no distill section: `raysym distill --run` distils the halo trial from MLflow
    monkeypatch.chdir(tmp_path)
    args = [
        "distill",
        "--run",
        outcome.parent_run_id,
        "--tracking-uri",
        uri,
        "--backend",
        "operon",
        "--setting",
        "fast",
        "--samples",
        "300",
    ]
    assert main(args) in (0, 1)
    assert "node_formulas" in capsys.readouterr().out
    (distilled,) = [r for r in client.search_runs([experiment]) if "raysym.distill_of" in r.data.tags]
    assert distilled.data.tags["mlflow.parentRunId"] == run.info.run_id
    trial = client.get_run(run.info.run_id)  # the numbers sit on the trial's run, once
    for key in ("distill/test_mae", "distill/gn_test_mae", "distill/r2_vs_true_edge", "distill/recovered"):
        assert key in trial.data.metrics and key not in distilled.data.metrics, key
