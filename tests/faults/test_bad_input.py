"""The bad-input suite, round two (issue 16): each case is a real command on real files (Ray, MLflow on
sqlite, Parquet shards) that must end with exit code 2 and one paragraph naming the problem and the fix,
no traceback, and nothing already written lost or changed. RELIABILITY.md's table counts these cases by
class. The first round lives in tests/faults/test_reliability.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import sweep_dict, write_yaml

from raysym.cli import main

DISTILL = {"backend": "operon", "setting": "fast", "samples": 200}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    return code, capsys.readouterr().err


def _refused(argv: list[str], capsys, expected: str) -> str:
    code, err = _run(argv, capsys)
    assert code == 2, err
    assert expected.lower() in err.lower(), err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if "error:" in line]
    assert len(message) == 1, err  # one paragraph
    return err


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes: 'nothing already written lost' is checked against it."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# Class 8 (silent YAML), 6 (checks before starting), 3 (resource requests), 4 (names that are paths):
# sweep files refused by --dry-run and by a real start alike, before Ray, data or MLflow
# --------------------------------------------------------------------------------------------------


def _grid(n: int) -> list[float]:
    return [1e-4 * (i + 1) for i in range(n)]


SWEEP_CASES = [
    ({"name": ".."}, "only dots"),
    ({"name": "."}, "only dots"),
    ({"name": "a" * 101}, "at most 100 characters"),
    ({"name": "../up"}, "letters, digits"),
    ({"name": "a/b"}, "letters, digits"),
    ({"tracking": {"experiment": ""}}, "tracking.experiment"),
    ({"tracking": {"experiment": "   "}}, "tracking.experiment"),
    ({"tracking": {"experiment": "x" * 300}}, "tracking.experiment"),
    ({"tracking": {"uri": ""}}, "tracking.uri is empty"),
    ({"resources": {"cpus_per_trial": 4096}}, "no trial could ever start"),
    ({"resources": {"gpus_per_trial": 0.5}}, "no GPU"),
    ({"resources": {"gpus_per_trial": 3}}, "no GPU"),
    ({"distill": {**DISTILL, "threads": 4096}}, "distillation actor asks for CPU 4096"),
    ({"distill": DISTILL, "resources": {"distill_resources": {"distill": 1}}}, "distill 1"),
    ({"distill": DISTILL, "resources": {"distill_resources": {"GPU": 1}}}, "GPU 1"),
    ({"trials": {"lr": _grid(200)}, "data": {"seed": list(range(60))}}, "24,000 points"),  # x 2 models
    ({"trials": {"lr": _grid(101), "hidden": list(range(1, 101))}}, "20,200 points"),
    ({"data": {"seed": list(range(100)), "prune_k": _grid(101)}}, "20,200 points"),
    ({"trials": {"penalty_units": "notebook"}}, "Unknown penalty_units 'notebook'"),
    ({"trials": {"validation_fraction": 0.7}}, "validation_fraction must lie between 0 and 0.5"),
    ({"trials": {"validation_fraction": 0.0}}, "validation_fraction must lie between 0 and 0.5"),
    ({"trials": {"per_model": {"l2": {"epochs": 2}}}}, "unknown model 'l2'"),
    ({"trials": {"per_model": {"l1": {"epochs": [1, 2]}}}}, "must be one value"),
    ({"trials": {"per_model": {"l1": {"data": "x"}}}}, "unknown key 'data'"),
    (
        {
            "trials": {"model": "l1"},
            "search": {
                "kind": "optuna",
                "metric": "val/r2_bset",
                "space": {"schedule_shape.peak": {"low": 0.1, "high": 1.0}},
            },
        },
        "did you mean 'val/r2_best'",
    ),
    (
        {"search": {"kind": "optuna", "trials": 2, "space": {"schedule_shape.peak": {"low": 0.1, "high": 1.0}}}},
        "explores the schedule shape of one trial setting",
    ),
]


@pytest.mark.parametrize("change, expected", SWEEP_CASES, ids=[str(c)[:60] for c, _ in SWEEP_CASES])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "start"])
def test_sweep_files_refused_before_anything_starts(tmp_path, capsys, change, expected, dry_run):
    cfg = sweep_dict(tmp_path, new_store=True, **change)  # no store made beforehand: none may appear
    if "distill" in change:  # sweep_dict merges dicts into existing sections only
        cfg["distill"] = change["distill"]
    path = write_yaml(tmp_path / "s.yaml", cfg)
    _refused(["sweep", path, *(["--dry-run"] if dry_run else [])], capsys, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # no data, no Tune folder, no MLflow store


def test_a_huge_halo_grid_is_counted_not_built(tmp_path, capsys):
    path = write_yaml(tmp_path / "h.yaml", {"name": "h", "halos": {"radius": _grid(1000), "l1": _grid(1000)}})
    _refused(["sweep", path, "--dry-run"], capsys, "1,000,000 points")


RAW_YAML = [
    ("name: a\ntrials:\n  epochs: 1\ndata:\n  sims: 8\ntrials:\n  epochs: 2\n", "'trials' twice (lines 2 and 6)"),
    ("name: a\ntrials:\n  epochs: 1\n  lr: 0.1\n  epochs: 3\n", "'epochs' twice (lines 3 and 5)"),
    ("name: a\nname: b\n", "'name' twice (lines 1 and 2)"),
    ("name: a\ndata: {sims: 8, sims: 9}\n", "'sims' twice"),
]


@pytest.mark.parametrize("text, expected", RAW_YAML, ids=["section", "nested", "top", "flow"])
def test_duplicate_keys_are_refused_with_their_lines(tmp_path, capsys, text, expected):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    _refused(["sweep", path, "--dry-run"], capsys, expected)


@pytest.mark.parametrize(
    "command",
    [
        ["sweep", "{f}", "--dry-run"],
        ["simulate", "--config", "{f}", "--out", "{tmp}/d"],
        ["train", "--config", "{f}", "--out", "{tmp}/t"],
    ],
    ids=["sweep", "simulate", "train"],
)
@pytest.mark.parametrize(
    "content, expected",
    [(b"name: caf\xe9\n", "not UTF-8 text (byte 0xe9 on line 1)"), (b"sims: 8\nsims: 9\n", "'sims' twice")],
    ids=["latin-1", "duplicate"],
)
def test_config_files_of_every_command_are_read_strictly(tmp_path, capsys, command, content, expected):
    config = tmp_path / "c.yaml"
    config.write_bytes(content)
    argv = [a.replace("{f}", str(config)).replace("{tmp}", str(tmp_path)) for a in command]
    _refused(argv, capsys, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def _not_sqlite(tmp_path: Path) -> dict:
    (tmp_path / "notes.db").write_text("my own notes, not a database\n")
    return {"tracking": {"uri": f"sqlite:///{tmp_path}/notes.db"}}


def _file_in_the_way(tmp_path: Path, key: str) -> dict:
    (tmp_path / "afile").write_text("x")
    return (
        {"storage": str(tmp_path / "afile" / "runs")}
        if key == "storage"
        else {"data": {"root": str(tmp_path / "afile" / "d")}}
    )


PRE_START = [
    (_not_sqlite, "is not an SQLite database"),
    (lambda t: (t / "db").mkdir() or {"tracking": {"uri": f"sqlite:///{t}/db"}}, "names a folder, not a file"),
    (lambda t: {"tracking": {"uri": f"sqlite:///{t}/missing/m.db"}}, "folder that does not exist"),
    (lambda t: _file_in_the_way(t, "storage"), "is a file, not a folder"),
    (lambda t: _file_in_the_way(t, "data"), "is a file, not a folder"),
]


@pytest.mark.parametrize(
    "make, expected",
    PRE_START,
    ids=["not-sqlite", "db-is-folder", "db-folder-missing", "storage-under-file", "data-under-file"],
)
def test_unusable_outputs_are_refused_before_ray_or_data(tmp_path, capsys, make, expected):
    change = make(tmp_path)
    before = _snapshot(tmp_path)
    path = write_yaml(tmp_path / "s.yaml", sweep_dict(tmp_path, new_store=True, **change))
    _refused(["sweep", path], capsys, expected)
    assert _snapshot(tmp_path) == {**before, "s.yaml": path.read_bytes()}  # the user's files untouched, nothing new


# --------------------------------------------------------------------------------------------------
# Class 10: command-line values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-2"])
def test_a_local_ray_needs_at_least_one_cpu(tmp_path, capsys, value):
    _refused(
        ["simulate", "--system", "spring", "--sims", "4", "--num-cpus", value, "--out", tmp_path / "d"],
        capsys,
        "must be 1 or more",
    )
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------------------------------
# Class 4 (overwrites) and class 10 (checkpoints, devices): trial folders
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_spring, tmp_path_factory):
    """A finished one-epoch trial on the tiny dataset, and the flags that made it."""
    _, data = tiny_spring
    folder = tmp_path_factory.mktemp("trained") / "t"
    flags = ["--data", str(data), "--model", "bottleneck", "--epochs", "1", "--hidden", "8", "--batch-size", "32"]
    assert main(["train", *flags, "--out", str(folder)]) == 0
    return folder, flags


def test_train_onto_a_trial_with_other_settings_is_refused(trained, capsys):
    folder, flags = trained
    before = _snapshot(folder)
    err = _refused(["train", *flags, "--lr", "0.01", "--out", folder], capsys, "holds a trial with other settings")
    assert "lr: 0.001 -> 0.01" in err or "lr:" in err
    assert _snapshot(folder) == before


def test_train_onto_the_same_trial_continues_it(trained, capsys):
    folder, flags = trained
    code, err = _run(["train", *flags, "--out", folder], capsys)
    assert code == 0, err


@pytest.mark.parametrize("content", ["metrics.json", "notes.txt", "checkpoint.pt"])
def test_train_onto_a_folder_of_the_users_is_refused(trained, tmp_path, capsys, content):
    _, flags = trained
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / content).write_text('{"my": "results"}')
    _refused(["train", *flags, "--out", tmp_path / "mine"], capsys, "not a raysym trial")
    assert (tmp_path / "mine" / content).read_text() == '{"my": "results"}' and len(
        list((tmp_path / "mine").iterdir())
    ) == 1


def test_train_out_onto_a_file_is_refused(trained, tmp_path, capsys):
    _, flags = trained
    (tmp_path / "f").write_text("keep")
    _refused(["train", *flags, "--out", tmp_path / "f"], capsys, "is a file, not a folder")
    assert (tmp_path / "f").read_text() == "keep"


def test_halos_onto_an_nbody_trial_is_refused(trained, capsys):
    folder, _ = trained
    before = _snapshot(folder)
    _refused(
        ["halos", "--points", "100", "--epochs", "1", "--out", folder], capsys, "holds a trial with other settings"
    )
    assert _snapshot(folder) == before


def _damage(folder: Path, how: str, other: Path | None = None) -> None:
    ckpt = folder / "checkpoint.pt"
    if how == "empty":
        ckpt.write_bytes(b"")
    elif how == "garbage":
        ckpt.write_bytes(os.urandom(2048))
    elif how == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif how == "text":
        ckpt.write_text("not a checkpoint\n")


@pytest.mark.parametrize("how", ["empty", "garbage", "truncated", "text"])
@pytest.mark.parametrize("command", ["train", "distill"])
def test_damaged_checkpoints_are_refused_with_a_way_to_start_afresh(trained, tmp_path, capsys, how, command):
    folder, flags = trained
    copy = tmp_path / "t"
    shutil.copytree(folder, copy)
    _damage(copy, how)
    argv = (
        ["train", *flags, "--out", copy]
        if command == "train"
        else ["distill", copy, "--backend", "operon", "--setting", "fast"]
    )
    err = _refused(argv, capsys, "cannot be used")
    assert "to train afresh" in err


def test_a_checkpoint_of_another_shape_is_refused(trained, tmp_path, capsys):
    folder, flags = trained
    other = tmp_path / "wide"
    wide = [f if f != "8" else "16" for f in flags]  # --hidden 16
    assert main(["train", *wide, "--out", str(other)]) == 0
    shutil.copy(folder / "checkpoint.pt", other / "checkpoint.pt")  # the 8-unit weights into the 16-unit trial
    _refused(["train", *wide, "--out", other], capsys, "cannot be used")


def test_a_trial_with_a_garbled_config_is_refused(trained, tmp_path, capsys):
    folder, _ = trained
    copy = tmp_path / "t"
    shutil.copytree(folder, copy)
    (copy / "config.json").write_text("{not json")
    _refused(["distill", copy, "--backend", "operon"], capsys, "cannot be read")


@pytest.mark.parametrize("device", ["cuda", "cuda:7"])
def test_a_gpu_this_machine_lacks_is_refused(trained, tmp_path, capsys, device):
    import torch

    if torch.cuda.is_available():  # this check is about machines without one; a GPU machine runs cuda:99
        device = "cuda:99"
    _, flags = trained
    _refused(["train", *flags, "--device", device, "--out", tmp_path / "t"], capsys, "lacks")
    assert not (tmp_path / "t").exists()


# --------------------------------------------------------------------------------------------------
# Class 5 (non-finite data, the readers) and class 11 (manifest paths confined; leftovers)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def dataset(tiny_spring, tmp_path) -> Path:
    """A private copy of the tiny dataset, free to damage."""
    _, data = tiny_spring
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    return copy


def _rewrite_shard(folder: Path, column: str, row: int, value: float) -> Path:
    """Put ``value`` into one cell of the first training shard and record the new sha256 in the
    manifest, as a tool that rewrote the file would: the checksum no longer protects it."""
    manifest = json.loads((folder / "dataset.json").read_text())
    shard = manifest["splits"]["train"]["shards"][0]
    path = folder / shard["file"]
    table = pq.read_table(path)
    values = table[column].combine_chunks()
    flat = values.flatten().to_numpy(zero_copy_only=False).copy()
    width = len(flat) // table.num_rows
    flat[row * width] = value
    array = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width)
    table = table.set_column(table.column_names.index(column), table.schema.field(column), array)
    pq.write_table(table, path)
    shard["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "dataset.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize(
    "column, value", [("acc", float("nan")), ("pos", float("inf")), ("vel", -float("inf")), ("mass", float("nan"))]
)
def test_non_finite_rows_are_refused_naming_file_and_row(dataset, tmp_path, capsys, column, value):
    path = _rewrite_shard(dataset, column, row=3, value=value)
    err = _refused(["inspect", dataset], capsys, f"in column '{column}'")
    assert path.name in err and "at row 3" in err
    _refused(["train", "--data", dataset, "--epochs", "1", "--out", tmp_path / "t"], capsys, "non-finite")
    assert not (tmp_path / "t").exists()  # refused before the trial folder was made


def test_the_unverified_reader_refuses_non_finite_rows_too(dataset):
    from raysym import shards
    from raysym.errors import UserError

    path = _rewrite_shard(dataset, "acc", row=0, value=float("nan"))
    for engine in ("arrow", "ray"):
        with pytest.raises(UserError, match="non-finite") as exc:
            shards.read_split(dataset, "train", prune_k=None, engine=engine, verify=False)
        assert path.name in str(exc.value)


def _edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / "dataset.json").read_text())
    edited = edit(manifest)
    (folder / "dataset.json").write_text(
        json.dumps(edited if isinstance(edited, list) else manifest)
    )  # a list: the new manifest


def _shard0(m: dict) -> dict:
    return m["splits"]["train"]["shards"][0]


MANIFESTS = [
    (lambda m: m.pop("params"), "'params' is missing"),
    (lambda m: m["params"].pop("particles"), "params.particles is missing"),
    (lambda m: m["params"].update(particles="four"), "particles"),
    (lambda m: m.pop("splits"), "'splits' is missing"),
    (lambda m: m["splits"].pop("test"), "splits.test"),
    (lambda m: m.pop("train_acc_quartiles"), "train_acc_quartiles"),
    (lambda m: _shard0(m).pop("sha256"), "lacks its file or sha256"),
    (lambda m: _shard0(m).update(file="../../../etc/passwd"), "outside the dataset folder"),
    (lambda m: _shard0(m).update(file="/dev/zero"), "outside the dataset folder"),
    (lambda m: _shard0(m).update(file="train/../../x.parquet"), "outside the dataset folder"),
    (lambda m: _shard0(m).update(file="test/" + _shard0(m)["file"].split("/")[1]), "outside the dataset folder"),
    (lambda m: m["splits"]["train"].update(shards=[], rows=0), "lists no graphs"),
    (lambda m: [1, 2, 3], "not a JSON object"),
]


@pytest.mark.parametrize("edit, expected", MANIFESTS, ids=[e for _, e in MANIFESTS])
def test_altered_manifests_are_refused(dataset, tmp_path, capsys, edit, expected):
    _edit_manifest(dataset, edit)
    before = _snapshot(dataset)
    _refused(["inspect", dataset], capsys, expected)
    _refused(["train", "--data", dataset, "--epochs", "1", "--out", tmp_path / "t"], capsys, expected)
    assert _snapshot(dataset) == before


def test_a_shard_that_is_a_link_is_refused(dataset, capsys):
    manifest = json.loads((dataset / "dataset.json").read_text())
    shard = dataset / manifest["splits"]["train"]["shards"][0]["file"]
    target = dataset.parent / "elsewhere.parquet"
    shutil.move(shard, target)
    shard.symlink_to(target)
    _refused(["inspect", dataset], capsys, "not a regular file")


def test_a_text_cell_in_a_catalog_is_refused(tmp_path, capsys):
    table = pa.table(
        {c: pa.array(np.random.default_rng(0).random(20)) for c in ("x", "y", "z", "vx", "vy", "vz", "mass", "delta")}
    )
    mass = table["mass"].to_pylist()
    mass[5] = "heavy"
    table = table.set_column(table.column_names.index("mass"), "mass", pa.array([str(v) for v in mass]))
    pq.write_table(table, tmp_path / "cat.parquet")
    _refused(
        ["halos", "--catalog", tmp_path / "cat.parquet", "--out", tmp_path / "h"],
        capsys,
        "non-numeric values in column 'mass'",
    )
    assert not (tmp_path / "h").exists()


def test_leftovers_of_a_killed_simulate_are_removed_and_said(local_ray, tmp_path, capsys):
    out = tmp_path / "d"
    dead = tmp_path / f".d.tmp-{2**22 + 7}-0000dead"  # above Linux's largest pid: no such process
    live = tmp_path / f".d.tmp-{os.getpid()}-0000live"  # a writer that still runs: left alone
    for folder in (dead, live):
        (folder / "train").mkdir(parents=True)
    assert (
        main(["simulate", "--system", "spring", "--sims", "4", "--steps", "20", "--stride", "5", "--out", str(out)])
        == 0
    )
    err = capsys.readouterr().err
    assert not dead.exists() and live.exists() and dead.name in err and "killed" in err
    assert (out / "dataset.json").is_file()
