"""Issue 28, item 10: the round-three probe's new cases, each run as a user would type it (RELIABILITY.md's
round-three table lists them with their exit status and message). Every case here ends with exit 2, one
paragraph naming the problem and the fix, no traceback, and nothing written under the output it names.

Before this round's fixes four ended in a traceback or a hang (an ftp:// tracking URI, a cluster address
nothing answers at: Ray retried for minutes, an Optuna store whose database driver is missing, a report
folder that cannot be created), a sweep asking for PySR without Julia was refused only after its first
trial had trained, and three named the wrong problem (a dataset path that is a file, /proc as output).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import sweep_dict, write_yaml

from raysym.cli import main

# {data}: a real tiny dataset; {file}: a plain file; {empty}: an empty folder; {db}: an MLflow store holding
# one sweep named 'probe' (no trials); {tmp}: this test's folder
CASES = [
    # tracking and cluster addresses
    (["report", "x", "--tracking-uri", "ftp://127.0.0.1/x"], "names a kind of store MLflow cannot keep runs in"),
    (["sweep", "{yaml}", "--address", "127.0.0.1:1"], "Nothing answers at the Ray cluster address"),
    (["sweep", "{yaml_optuna_pg}"], "The Optuna study store search.storage"),
    (["sweep", "{yaml_pysr}", "--dry-run"], "The pysr backend needs Julia"),
    (["report", "probe", "--tracking-uri", "{db}", "--out", "/proc/raysym-report"], "cannot be created"),
    (["report", "probe", "--tracking-uri", "{db}", "--out", "{file}"], "is a file, not a folder"),
    (["report", "probe", "--tracking-uri", "{db}", "--experiment", "nope"], "There is no MLflow experiment 'nope'"),
    (["report", "", "--tracking-uri", "{db}"], "No sweep named ''"),
    (["report", "probe", "--tracking-uri", "{db}", "--published", "no/such.md"], "does not exist"),
    # datasets and outputs
    (["inspect", "{file}"], "is a file, but a raysym dataset is a folder"),
    (["inspect", "{empty}"], "is not a raysym dataset"),
    (["train", "--data", "{file}", "--out", "{tmp}/t"], "is a file, but a raysym dataset is a folder"),
    (["simulate", "--system", "spring", "--sims", "2", "--steps", "20", "--out", "/proc/raysym-data"], "no free space"),
    (["train", "--data", "{data}", "--epochs", "1", "--out", "{data}"], "not a raysym trial"),
    # custom potentials
    (["simulate", "--system", "custom", "--potential", "r^", "--out", "{tmp}/o"], "ends in the middle of the formula"),
    (["simulate", "--system", "custom", "--potential", "x*r", "--out", "{tmp}/o"], "is neither a variable"),
    (["simulate", "--system", "custom", "--potential", "", "--out", "{tmp}/o"], "it is empty"),
    (["simulate", "--system", "custom", "--potential", "1e400*r", "--out", "{tmp}/o"], "is not finite"),
    (["simulate", "--system", "spring", "--potential", "r^2", "--out", "{tmp}/o"], "applies only to system custom"),
    # simulation sizes and settings
    (["simulate", "--system", "spring", "--dt", "0", "--out", "{tmp}/o"], "dt must be a positive finite number"),
    (["simulate", "--system", "spring", "--stride", "0", "--out", "{tmp}/o"], "stride must be a positive integer"),
    (["simulate", "--system", "spring", "--seed", "-1", "--out", "{tmp}/o"], "seed must be a non-negative integer"),
    (["simulate", "--system", "spring", "--test-sims", "0", "--out", "{tmp}/o"], "test_sims must be a positive"),
    (["simulate", "--system", "spring", "--damping", "-1", "--out", "{tmp}/o"], "applies only to the 'damped' system"),
    (["simulate", "--system", "spring", "--substeps", "0", "--out", "{tmp}/o"], "substeps must be a positive integer"),
    (["simulate", "--system", "spring", "--sims-per-shard", "0", "--out", "{tmp}/o"], "sims_per_shard must be"),
    (["simulate", "--system", "spring", "--dim", "1", "--out", "{tmp}/o"], "dim must be 2 or 3"),
    (["simulate", "--system", "spring", "--particles", "100000", "--out", "{tmp}/o"], "Use fewer --particles"),
    (["simulate", "--config", "{yaml_sims_text}", "--out", "{tmp}/o"], "wrong type"),
    # training settings
    (["train", "--data", "{data}", "--epochs", "0", "--out", "{tmp}/t"], "epochs must be a positive integer"),
    (["train", "--data", "{data}", "--lr", "inf", "--out", "{tmp}/t"], "lr must be a positive finite number"),
    (["train", "--data", "{data}", "--hidden", "0", "--out", "{tmp}/t"], "hidden must be a positive integer"),
    (["train", "--data", "{data}", "--msg-dim", "0", "--out", "{tmp}/t"], "msg_dim must be a positive integer"),
    (["train", "--data", "{data}", "--warmup-fraction", "2", "--out", "{tmp}/t"], "warmup_fraction must lie"),
    (["train", "--data", "{data}", "--max-train-graphs", "0", "--out", "{tmp}/t"], "max_train_graphs must be"),
    (["train", "--data", "{data}", "--device", "tpu", "--out", "{tmp}/t"], "Unknown device 'tpu'"),
    (["train", "--config", "no/such.yaml", "--data", "{data}", "--out", "{tmp}/t"], "Cannot read the config file"),
    # distillation and rollout
    (["distill", "{empty}", "--samples", "0"], "samples must be at least 10"),
    (["distill", "{empty}", "--setting", "ultra"], "must be 'fast' or 'thorough'"),
    (["distill", "{data}"], "is not a finished training trial"),
    (["rollout", "{empty}", "--sims", "0"], "rollout.sims must be 1 to 10000"),
    (["rollout", "{empty}", "--steps", "-1"], "rollout.steps must be 1 to 100000"),
    (["rollout", "{empty}", "--scale", "nan"], "rollout scale must be a positive factor"),
    (["rollout", "{empty}", "--particles", "1"], "rollout particles must be 2 to 1000"),
    # sweep files
    (["sweep", "{yaml_name_int}", "--dry-run"], "expected str, got 123"),
    (["sweep", "{yaml_epochs_bool}", "--dry-run"], "expected int, got True"),
    (["sweep", "{yaml_data_null}", "--dry-run"], "expected a mapping, got None"),
    (["sweep", "{yaml_halos_and_data}", "--dry-run"], "not both"),
    (["sweep", "{yaml_reserve}", "--dry-run"], "disk_reserve_mb must be 0 or more"),
    (["sweep", "{empty}", "--dry-run"], "Is a directory"),
    (["halos", "--points", "0", "--out", "{tmp}/h"], "points must be at least 2"),
    (["halos", "--radius", "-1", "--out", "{tmp}/h"], "radius must be a positive distance"),
]


@pytest.fixture(scope="module")
def inputs(tiny_spring, tmp_path_factory):
    """The files the cases point at, made once."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("round3")
    (root / "afile").write_text("x")
    (root / "empty").mkdir()
    db = f"sqlite:///{root}/m.db"
    client = MlflowClient(db)
    client.create_run(client.create_experiment("raysym"), run_name="probe", tags={"raysym.sweep": "probe"})
    base = sweep_dict(root, name="probe3", trials={"model": "l1"})
    yamls = {
        "yaml": base,
        "yaml_optuna_pg": {
            **base,
            "search": {
                "kind": "optuna",
                "trials": 2,
                "storage": "postgresql://u@127.0.0.1:1/x",
                "space": {"schedule_shape.peak": {"low": 0.01, "high": 1.0}},
            },
        },
        "yaml_pysr": {**base, "distill": {"backend": "pysr"}},
        "yaml_name_int": {**base, "name": 123},
        "yaml_epochs_bool": {**base, "trials": {**base["trials"], "epochs": True}},
        "yaml_data_null": {**base, "data": None},
        "yaml_halos_and_data": {"name": "h", "kind": "halos", "data": {"system": "spring"}},
        "yaml_reserve": {**base, "resources": {"disk_reserve_mb": -1}},
        "yaml_sims_text": {"system": "spring", "sims": "many"},
    }
    paths = {k: str(write_yaml(root / f"{k}.yaml", v)) for k, v in yamls.items()}
    return {
        "data": str(tiny_spring[1]),
        "file": str(root / "afile"),
        "empty": str(root / "empty"),
        "db": db,
        **paths,
    }


@pytest.mark.parametrize("argv, expected", CASES, ids=[" ".join(a)[:70] for a, _ in CASES])
def test_round_three_case_exits_2_with_one_paragraph(inputs, tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)
    if "{yaml_pysr}" in argv:  # a machine without Julia, whatever this one has
        monkeypatch.setenv("PATH", str(tmp_path))
        for var in ("JULIA_EXE", "PYTHON_JULIAPKG_EXE", "PYTHON_JULIAPKG_PROJECT"):
            monkeypatch.delenv(var, raising=False)
    argv = [a.format(tmp=tmp_path, **inputs) for a in argv]
    before = sorted(Path(tmp_path).rglob("*"))
    if "--address" in argv:  # a process of its own: this one's Ray (the tests') is up already
        done = subprocess.run([sys.executable, "-m", "raysym.cli", *argv], capture_output=True, text=True, timeout=300)
        code, err = done.returncode, done.stderr
    else:
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
    assert code == 2, err
    assert expected.lower() in err.lower(), err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("raysym: error:")]
    assert len(message) == 1, err  # one paragraph
    assert sorted(Path(tmp_path).rglob("*")) == before  # nothing written where the case pointed
