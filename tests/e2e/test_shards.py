"""Shards on a real local Ray: every system writes readable Parquet, the data do not depend on the
shard or worker count, reuse and refusal of existing folders, checksums, and IQR pruning."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from raysym import physics, shards
from raysym.config import SimulationConfig
from raysym.errors import UserError


def _tiny(system="spring", dim=2, **kw):
    base = dict(system=system, dim=dim, particles=4, sims=4, test_sims=2, steps=20, stride=5, seed=1, sims_per_shard=3)
    base.update(kw)
    return SimulationConfig(**base)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("system", list(physics.SYSTEMS))
def test_every_system_writes_shards_with_analytic_accelerations(local_ray, tmp_path, system, dim):
    cfg = _tiny(system, dim)
    result = shards.write_dataset(cfg, tmp_path / "ds")
    manifest = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert manifest["params"] == cfg.data_params() and not result.reused
    assert manifest["splits"]["train"]["rows"] == 4 * 4 and manifest["splits"]["test"]["rows"] == 2 * 4
    assert len(manifest["splits"]["train"]["shards"]) == 2  # 4 sims, 3 per shard

    data = shards.load_dataset(tmp_path / "ds", prune_k=None)
    for graphs in (data.train, data.test):
        assert graphs.pos.shape[1:] == (4, dim) and graphs.charge.shape[1:] == (4,)
        recomputed = physics.accelerations(
            system, graphs.pos, graphs.vel, graphs.charge.astype(float), graphs.mass.astype(float), cfg.resolved_damping
        )
        scale = np.abs(recomputed).max()
        np.testing.assert_allclose(graphs.acc, recomputed, rtol=1e-4, atol=1e-6 * scale)

    # The derived pruning columns hold each graph's extreme acceleration components.
    table = pq.read_table([tmp_path / "ds" / s["file"] for s in manifest["splits"]["train"]["shards"]])
    assert table.column_names == list(shards.COLUMNS)
    acc = shards.from_table(table, 4, dim).acc.reshape(table.num_rows, -1)
    np.testing.assert_array_equal(table["acc_min"].to_numpy(), acc.min(axis=1))
    np.testing.assert_array_equal(table["acc_max"].to_numpy(), acc.max(axis=1))


def test_plain_pyarrow_reads_shards_without_ray(tiny_spring):
    """The README's recipe, run in a fresh interpreter that must never import ray."""
    _, out = tiny_spring
    script = textwrap.dedent(
        f"""
        import sys, glob
        import numpy as np, pyarrow.parquet as pq
        table = pq.read_table(sorted(glob.glob("{out}/train/*.parquet")))
        row = table.slice(0, 1).to_pylist()[0]
        pos = np.array(row["pos"], dtype=np.float32).reshape(4, 2)
        acc = np.array(row["acc"], dtype=np.float32).reshape(4, 2)
        mass = np.array(row["mass"], dtype=np.float32)
        assert pos.shape == (4, 2) and acc.shape == (4, 2) and mass.shape == (4,)
        assert table.schema.field("pos").metadata[b"shape"] == b"[4, 2]"
        whole = table["pos"].combine_chunks().flatten().to_numpy().reshape(-1, 4, 2)
        assert whole.shape == (table.num_rows, 4, 2) and np.array_equal(whole[0], pos)
        assert "ray" not in sys.modules
        print("ok", table.num_rows)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", str(12 * 12)]


def test_same_seed_same_data_whatever_shards_or_workers(tiny_spring, tmp_path):
    """Re-made with other shard sizes, in a separate Ray of 1 CPU: identical arrays."""
    cfg, out = tiny_spring
    other = tmp_path / "again"
    cmd = [
        sys.executable,
        "-m",
        "raysym.cli",
        "simulate",
        "--system",
        "spring",
        "--dim",
        "2",
        "--particles",
        "4",
        "--sims",
        "12",
        "--test-sims",
        "6",
        "--steps",
        "60",
        "--stride",
        "5",
        "--seed",
        "3",
        "--sims-per-shard",
        "7",
        "--num-cpus",
        "1",
        "--out",
        str(other),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = shards.load_dataset(out, prune_k=None), shards.load_dataset(other, prune_k=None)
    assert len(b.manifest["splits"]["train"]["shards"]) == 2 and len(a.manifest["splits"]["train"]["shards"]) == 3
    for split in ("train", "test"):
        for field in ("sim", "step", "t", "pos", "vel", "charge", "mass", "acc"):
            np.testing.assert_array_equal(getattr(getattr(a, split), field), getattr(getattr(b, split), field))


def test_rerun_reuses_and_leaves_files_untouched(tiny_spring):
    cfg, out = tiny_spring
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = shards.write_dataset(cfg, out)
    assert result.reused
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # sims_per_shard is layout only: a different value still reuses
    assert shards.write_dataset(SimulationConfig(**{**cfg.__dict__, "sims_per_shard": 2}), out).reused


def test_other_parameters_are_refused(tiny_spring):
    cfg, out = tiny_spring
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(UserError, match=r"other parameters \(seed: 3 there, 4 now\)"):
        shards.write_dataset(SimulationConfig(**{**cfg.__dict__, "seed": 4}), out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_unrelated_folder_and_file_are_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="not empty and holds no raysym dataset"):
        shards.write_dataset(_tiny(), tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "precious"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        shards.write_dataset(_tiny(), tmp_path / "afile")


def test_empty_folder_is_used(local_ray, tmp_path):
    (tmp_path / "empty").mkdir()
    assert not shards.write_dataset(_tiny(), tmp_path / "empty").reused
    assert (tmp_path / "empty" / "dataset.json").exists()


def test_failure_leaves_nothing_half_written(local_ray, tmp_path, monkeypatch):
    def boom(files):
        raise RuntimeError("injected failure after the shards were written")

    monkeypatch.setattr(shards, "_acc_quartiles", boom)
    with pytest.raises(RuntimeError, match="injected"):
        shards.write_dataset(_tiny(), tmp_path / "ds")
    assert os.listdir(tmp_path) == []  # neither the output nor its temporary sibling


def test_a_custom_potential_failing_in_a_data_task_is_one_paragraph_naming_it(local_ray, tmp_path, monkeypatch):
    """Issue 28, item 3: an error raised inside the Ray Data task that simulates a custom potential reaches
    the user as one UserError naming the formula, not Ray's RayTaskError(UserCodeException) traceback."""

    def fails_in_the_worker(batch, cfg, split, folder):
        raise ValueError("math domain error")  # what a formula evaluated outside its domain raises

    monkeypatch.setattr(shards, "_write_shard", fails_in_the_worker)  # pickled by value: runs in the worker
    cfg = SimulationConfig(system="custom", potential="(r - 1)^2", particles=3, sims=4, test_sims=2, steps=10, stride=5)
    with pytest.raises(UserError, match=r"custom potential '\(r - 1\)\^2' failed inside a data task .*math domain"):
        shards.write_dataset(cfg, tmp_path / "ds")
    assert os.listdir(tmp_path) == []  # nothing half-written
    monkeypatch.setattr(shards, "_write_shard", fails_in_the_worker)
    with pytest.raises(Exception) as other:  # a built-in law's failure is a bug: Ray's error, not a user error
        shards.write_dataset(_tiny(), tmp_path / "ds2")
    assert not isinstance(other.value, UserError)
    # The local engine (no Ray) says the same.
    with pytest.raises(UserError, match=r"custom potential '\(r - 1\)\^2' failed inside a data task .*math domain"):
        shards.write_dataset(cfg, tmp_path / "ds3", engine="local")
    with pytest.raises(ValueError, match="math domain"):
        shards.write_dataset(_tiny(), tmp_path / "ds4", engine="local")
    assert sorted(os.listdir(tmp_path)) == []


def test_a_step_that_blows_up_stops_with_the_simulations_named_and_nothing_written(local_ray, tmp_path):
    cfg = _tiny(dt=100.0)  # spring at dt=100: the integrator leaves the finite numbers
    with pytest.raises(
        UserError,
        match=r"infinite or NaN in \d+ simulation\(s\) at dt=100 \(spring\), e\.g\. test "
        r"simulation 0.*--dt 10,.*default \(0\.01\)",
    ):
        shards.write_dataset(cfg, tmp_path / "ds")
    assert os.listdir(tmp_path) == []  # neither the output nor its temporary sibling
    ok = shards.write_dataset(_tiny(), tmp_path / "ok")  # the system's own step: every value finite
    table = pq.read_table(ok.path / ok.manifest["splits"]["train"]["shards"][0]["file"])
    assert all(np.isfinite(np.asarray(table[c].combine_chunks().flatten())).all() for c in ("pos", "vel", "acc"))


def test_output_filled_meanwhile_is_left_alone(local_ray, tmp_path, monkeypatch):
    """Another process fills --out while this run writes: its files stay, ours are discarded."""
    real = shards._acc_quartiles

    def meanwhile(files):
        (tmp_path / "ds").mkdir()
        (tmp_path / "ds" / "theirs.txt").write_text("theirs")
        return real(files)

    monkeypatch.setattr(shards, "_acc_quartiles", meanwhile)
    with pytest.raises(UserError, match="was filled by something else"):
        shards.write_dataset(_tiny(), tmp_path / "ds")
    assert os.listdir(tmp_path) == ["ds"] and os.listdir(tmp_path / "ds") == ["theirs.txt"]


def test_impossible_sizes_are_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match="Use fewer --particles"):
        shards.write_dataset(_tiny(particles=40_000, dim=3), tmp_path / "big")
    with pytest.raises(UserError, match="is free under"):
        shards.write_dataset(_tiny(sims=10**9, steps=10**6, stride=1), tmp_path / "huge")
    assert os.listdir(tmp_path) == []


def _copy_dataset(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_altered_or_truncated_shard_is_named(tiny_spring, tmp_path):
    _, out = tiny_spring
    damaged = _copy_dataset(out, tmp_path / "damaged")
    victim = sorted((damaged / "train").glob("*.parquet"))[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"{victim.name} is damaged: its sha256 is"):
        shards.load_dataset(damaged)
    victim.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(UserError, match=f"{victim.name} is damaged"):
        shards.read_split(damaged, "train")
    victim.unlink()
    with pytest.raises(UserError, match=f"{victim.name} listed in dataset.json is missing"):
        shards.read_split(damaged, "train")


def test_missing_or_broken_manifest(tmp_path):
    with pytest.raises(UserError, match="dataset.json is missing"):
        shards.read_manifest(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot be read"):
        shards.read_manifest(tmp_path)


@pytest.mark.parametrize("k", [0.0, 1.5, 3.0])
def test_pruning_matches_brute_force_in_both_engines(tiny_spring, k):
    _, out = tiny_spring
    everything, _ = shards.read_split(out, "train")
    acc = everything.acc.reshape(len(everything), -1).astype(np.float64)
    q1, q3 = np.quantile(acc, [0.25, 0.75])
    keep = np.all((acc >= q1 - k * (q3 - q1)) & (acc <= q3 + k * (q3 - q1)), axis=1)

    arrow, report = shards.read_split(out, "train", prune_k=k, engine="arrow")
    ray_graphs, ray_report = shards.read_split(out, "train", prune_k=k, engine="ray")
    assert report.graphs_before == len(everything) and report.removed == int((~keep).sum())
    assert ray_report.removed == report.removed == shards.prune_report(out, k).removed
    np.testing.assert_array_equal(arrow.acc, everything.acc[keep])
    np.testing.assert_array_equal(ray_graphs.acc, arrow.acc)
    np.testing.assert_array_equal(ray_graphs.sim, arrow.sim)
    if k == 0.0:
        assert report.removed > 0


def test_filtering_large_tables_keeps_the_right_rows(local_ray, tmp_path):
    """Regression: pyarrow 25.0.1 filters nested fixed-size lists wrongly past ~50,000 rows, which
    corrupted pruned training data under schema version 1. Both readers, 150,000 rows, against numpy."""
    rng = np.random.default_rng(0)
    G, n, dim = 150_000, 4, 3
    graphs = shards.Snapshots(
        sim=np.arange(G),
        step=np.zeros(G, np.int64),
        t=np.zeros(G),
        pos=rng.standard_normal((G, n, dim)).astype(np.float32),
        vel=rng.standard_normal((G, n, dim)).astype(np.float32),
        charge=rng.standard_normal((G, n)).astype(np.float32),
        mass=rng.standard_normal((G, n)).astype(np.float32),
        acc=(rng.standard_normal((G, n, dim)) * np.exp(rng.standard_normal((G, 1, 1)))).astype(np.float32),
    )
    folder = tmp_path / "big"
    (folder / "train").mkdir(parents=True)
    pq.write_table(shards.to_table(graphs), folder / "train" / "part.parquet")
    flat = graphs.acc.reshape(G, -1).astype(np.float64)
    q1, q3 = np.quantile(flat, [0.25, 0.75])
    manifest = {
        "schema_version": shards.SCHEMA_VERSION,
        "params": {"system": "spring", "particles": n, "dim": dim},
        "train_acc_quartiles": {"q1": q1, "q3": q3},
        "splits": {
            "train": {
                "rows": G,
                "shards": [{"file": "train/part.parquet", "sha256": shards.sha256(folder / "train" / "part.parquet")}],
            },
            "test": {"rows": 0, "shards": []},
        },
    }
    (folder / "dataset.json").write_text(json.dumps(manifest))
    lo, hi = shards.prune_bounds(manifest, 1.0)
    keep = (flat.min(axis=1) >= np.float32(lo)) & (flat.max(axis=1) <= np.float32(hi))
    assert 0.2 < keep.mean() < 0.9
    for engine in ("arrow", "ray"):
        got, _ = shards.read_split(folder, "train", prune_k=1.0, engine=engine)
        for field in ("sim", "pos", "vel", "charge", "mass", "acc"):
            np.testing.assert_array_equal(
                getattr(got, field), getattr(graphs, field)[keep], err_msg=f"{engine}: {field}"
            )


def test_test_split_is_never_pruned_and_differs_from_train(tiny_spring):
    _, out = tiny_spring
    data = shards.load_dataset(out, prune_k=0.5)
    assert len(data.test) == 6 * 12 and data.prune.removed > 0
    first_train = data.train.pos[data.train.step == 0]
    first_test = data.test.pos[data.test.step == 0]
    assert not np.any(np.isclose(first_train[:, None], first_test[None]).all(axis=(2, 3)))


def test_the_local_engine_writes_the_same_data_without_ray(tiny_spring, tmp_path):
    """`raysym simulate --engine local` (a GPU machine without Ray) in a fresh interpreter where importing
    Ray fails: the same arrays as Ray Data's shards, a manifest that verifies, and one error for a bad engine."""
    cfg, out = tiny_spring
    other = tmp_path / "local"
    script = textwrap.dedent(
        f"""
        import sys
        class NoRay:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "ray":
                    raise ImportError("no Ray on this machine")
        sys.meta_path.insert(0, NoRay())
        from raysym.cli import main
        sys.exit(main(["simulate", "--system", "spring", "--dim", "2", "--particles", "4", "--sims", "12",
                       "--test-sims", "6", "--steps", "60", "--stride", "5", "--seed", "3", "--sims-per-shard", "4",
                       "--engine", "local", "--out", "{other}"]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3/5 shards written" in done.stdout + done.stderr  # progress, as on Ray
    a, b = shards.load_dataset(out, prune_k=None), shards.load_dataset(other, prune_k=None)
    assert b.manifest["params"] == a.manifest["params"] == cfg.data_params()
    assert b.manifest["train_acc_quartiles"] == a.manifest["train_acc_quartiles"]  # so pruning keeps the same graphs
    assert [s["first_sim"] for s in b.manifest["splits"]["train"]["shards"]] == [0, 4, 8]
    shards.verify_shards(other, b.manifest)  # checksums
    for split in ("train", "test"):
        for field in ("sim", "step", "t", "pos", "vel", "charge", "mass", "acc"):
            np.testing.assert_array_equal(getattr(getattr(a, split), field), getattr(getattr(b, split), field))
    with pytest.raises(UserError, match="Unknown simulation engine 'dask'"):
        shards.write_dataset(cfg, tmp_path / "never", engine="dask")
    assert not (tmp_path / "never").exists()
