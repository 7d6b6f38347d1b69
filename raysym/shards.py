"""Simulation as a Ray Data pipeline, Parquet shards with a manifest, readers, and IQR pruning.

Layout of a dataset folder::

    dataset.json                       manifest: parameters, schema, row counts, sha256 per shard
    train/sims-0000000-0002096.parquet one shard per block of simulations (file names give sim ids)
    test/sims-0000000-0000249.parquet  test simulations: other random streams of the same seed

Rows are snapshots (graphs) with the columns of raysym.shard_format (the schema and the conversions
between tables and arrays).

Writing: ``ray.data.range(sims)`` is cut into blocks of ``sims_per_shard`` (default: ~32 MiB of rows,
so that Ray Data's per-task overhead stays small); each block is
simulated and written as one shard by a Ray Data task, which returns the shard's manifest entry.
Everything goes to a temporary sibling folder that is renamed into place when complete, so an
interrupted run leaves nothing half-written under the output name.

Pruning (the 2024 reproduction's outlier filter): a training graph is kept when every acceleration
component lies in [Q1 - k IQR, Q3 + k IQR], with Q1 and Q3 the quartiles of all acceleration
components of the training set (stored in the manifest). The per-graph ``acc_min`` / ``acc_max``
columns make that a column filter: a Ray Data ``filter`` expression, or a pyarrow predicate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysym import __version__, physics
from raysym.config import SimulationConfig
from raysym.errors import UserError
from raysym.potential import named_failures
from raysym.shard_format import (  # noqa: F401 -- the format's names, read by raysym.shards' callers too
    COLUMNS,
    MANIFEST,
    SCHEMA_VERSION,
    arrow_schema,
    flat_column,
    from_table,
    row_bytes,
    sha256,
    sims_per_shard,
    to_table,
)
from raysym.simulate import SPLITS, Snapshots, bytes_per_sim, simulate

# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


@dataclass
class WriteResult:
    path: Path
    manifest: dict[str, Any]
    reused: bool
    seconds: float


def _write_shard(batch: dict[str, np.ndarray], cfg: SimulationConfig, split: str, folder: str) -> dict[str, list]:
    """Ray Data map_batches function: simulate one block of sims, write it as one shard, describe it."""
    ids = np.sort(batch["id"])
    snaps = simulate(cfg, split, ids)
    # A step too large for the system blows trajectories up to inf/NaN; such a shard is never written,
    # only counted, so the run can stop with the simulations named (see write_dataset).
    finite = np.ones(len(snaps), dtype=bool)
    for field in ("pos", "vel", "acc"):
        finite &= np.isfinite(getattr(snaps, field)).reshape(len(snaps), -1).all(axis=1)
    bad = np.unique(snaps.sim[~finite])
    if len(bad):
        return {
            "file": [f"{split}/"],
            "rows": [0],
            "sha256": [""],
            "first_sim": [int(ids[0])],
            "last_sim": [int(ids[-1])],
            "blown_up": [len(bad)],
            "first_blown_up": [int(bad[0])],
        }
    table = to_table(snaps)
    name = f"{split}/sims-{ids[0]:07d}-{ids[-1]:07d}.parquet"
    path = Path(folder) / name
    # Dictionary encoding only bloats float columns: without it writing is ~5x faster and smaller.
    pq.write_table(table, path, use_dictionary=False)
    return {
        "file": [name],
        "rows": [table.num_rows],
        "sha256": [sha256(path)],
        "first_sim": [int(ids[0])],
        "last_sim": [int(ids[-1])],
        "blown_up": [0],
        "first_blown_up": [-1],
    }


def _check_output(out: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of an existing dataset at ``out`` with these params, or None if ``out`` is free.

    Raises UserError when ``out`` holds something else, so nothing is ever overwritten.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise UserError(f"The output path {out} is a file, not a folder. Choose another --out.")
    manifest_path = out / MANIFEST
    if not manifest_path.exists():
        if any(out.iterdir()):
            raise UserError(
                f"The output folder {out} is not empty and holds no raysym dataset ({MANIFEST} is "
                "missing). raysym will not write into it, to keep its files safe. Choose another --out, "
                "or empty the folder."
            )
        return None
    manifest = read_manifest(out)
    if manifest.get("params") != params or manifest.get("schema_version") != SCHEMA_VERSION:
        old = manifest.get("params", {})
        diffs = [
            f"{k}: {old.get(k)!r} there, {params.get(k)!r} now"
            for k in sorted(set(old) | set(params))
            if old.get(k) != params.get(k)
        ]
        if manifest.get("schema_version") != SCHEMA_VERSION:
            diffs.append(f"schema version: {manifest.get('schema_version')} there, {SCHEMA_VERSION} now")
        raise UserError(
            f"The output folder {out} already holds a dataset made with other parameters "
            f"({'; '.join(diffs)}). raysym does not overwrite data: choose another --out, or delete "
            "the folder to replace it."
        )
    return manifest


def _check_resources(out: Path, cfg: SimulationConfig) -> None:
    """Refuse sizes this machine cannot hold: one simulation's memory, or the dataset's disk space."""
    n, dim = cfg.particles, cfg.dim
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    one_sim = bytes_per_sim(cfg)
    if one_sim > memory / 4:
        raise UserError(
            f"One simulation of {n:,} particles needs about {one_sim / 2**30:.1f} GiB of working memory "
            f"(the dense n x n pair forces), more than a quarter of this machine's {memory / 2**30:.0f} GiB. "
            "Use fewer --particles."
        )
    rows = (cfg.sims + cfg.resolved_test_sims) * cfg.snapshots_per_sim
    need = rows * row_bytes(n, dim)
    from raysym.track import check_writable_folder

    check_writable_folder(out, "The dataset folder", "--out (or data.root)")
    parent = out.resolve()
    while not parent.exists():  # the disk it will be written on: its nearest existing folder's
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if need > 0.9 * free:
        if free == 0:
            raise UserError(
                f"{parent} has no free space at all (a full disk, or no disk: a system folder like /proc), so the "
                f"dataset ({_size(need)}, {rows:,} graphs of {n} particles) cannot be written there. Choose another "
                "--out (or data.root)."
            )
        raise UserError(
            f"The dataset would need about {_size(need)} ({rows:,} graphs of {n} particles) but "
            f"only {_size(free)} is free under {parent}. Reduce --sims, --steps or --particles, "
            "raise --stride, or write to a larger disk."
        )


def _size(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _acc_quartiles(files: list[Path]) -> tuple[float, float]:
    """Q1 and Q3 of every acceleration component in these shards (exact, not sketched)."""
    acc = pq.read_table(files, columns=["acc"])["acc"]
    q1, q3 = np.quantile(flat_column(acc, (-1,)).astype(np.float64), [0.25, 0.75])
    return float(q1), float(q3)


def _remove_leftovers(out: Path, progress: Callable[[str], None]) -> None:
    """Delete the hidden temporary folders of earlier runs on ``out`` that were killed outright (SIGKILL,
    power loss) before they could clean up; a folder whose writer still runs is left alone."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name[len(f".{out.name}.tmp-") :].split("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        progress(f"removed {tmp.name}, left by an earlier run on {out.name} that was killed before it finished")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_dataset(
    cfg: SimulationConfig,
    out: str | Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> WriteResult:
    """Simulate ``cfg`` on Ray Data and write its train and test shards plus the manifest to ``out``.

    If ``out`` already holds the same dataset (same parameters), it is verified and reused.
    """
    start = time.perf_counter()
    out = Path(out)
    params = cfg.data_params()
    existing = _check_output(out, params)
    if existing is not None:
        verify_shards(out, existing)
        return WriteResult(out, existing, reused=True, seconds=time.perf_counter() - start)
    _check_resources(out, cfg)

    import ray.data

    from raysym._ray import ensure_ray  # Ray only where the work is distributed

    ensure_ray(address, num_cpus)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out, progress)
    # The writer's pid in the name: a later run can tell a dead run's leftovers from a live one's.
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        # One Ray Data execution for both splits, so worker start-up is paid once.
        sizes = {"train": cfg.sims, "test": cfg.resolved_test_sims}
        per_shard = sims_per_shard(cfg)
        counts = {split: -(-sims // per_shard) for split, sims in sizes.items()}
        pipelines = []
        for split, sims in sizes.items():
            (tmp / split).mkdir(parents=True)
            pipelines.append(
                ray.data.range(sims, override_num_blocks=counts[split]).map_batches(
                    _write_shard,
                    fn_kwargs={"cfg": cfg, "split": split, "folder": str(tmp)},
                    batch_size=None,  # one block of the range = one shard
                    batch_format="numpy",
                    num_cpus=1,
                )
            )
        written = {split: [] for split in sizes}
        total = sum(counts.values())
        blown_up = []  # per shard that left the finite numbers: (split, first sim that did, how many)
        for row in named_failures(pipelines[0].union(*pipelines[1:]).iter_rows(), cfg.system, cfg.potential):
            shard = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            if shard["blown_up"]:
                blown_up.append((shard["file"].rstrip("/"), shard["first_blown_up"], shard["blown_up"]))
                continue
            del shard["blown_up"], shard["first_blown_up"]
            split = shard["file"].split("/")[0]
            written[split].append(shard)
            done = sum(len(v) for v in written.values())
            elapsed = time.perf_counter() - start
            left = f", about {elapsed / done * (total - done):.0f} s left" if done < total else ""
            progress(f"{done}/{total} shards written ({shard['file']}), {elapsed:.0f} s{left}")
        if blown_up:
            first = ", ".join(f"{split} simulation {sim}" for split, sim, _ in sorted(blown_up)[:3])
            raise UserError(
                f"The simulation blew up: positions, velocities or accelerations became infinite or NaN in "
                f"{sum(n for *_, n in blown_up)} simulation(s) at dt={cfg.resolved_dt:g} ({cfg.system}), e.g. {first}. "
                "Nothing was "
                f"written. Use a smaller step, e.g. --dt {cfg.resolved_dt / 10:g}, or leave --dt out for the "
                f"system's default ({physics.get_law(cfg.law).default_dt:g})."
            )
        splits = {}
        for split, sims in sizes.items():
            listed = sorted(written[split], key=lambda s: s["first_sim"])
            splits[split] = {"sims": sims, "rows": sum(s["rows"] for s in listed), "shards": listed}

        q1, q3 = _acc_quartiles([tmp / s["file"] for s in splits["train"]["shards"]])
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "raysym_version": __version__,
            "params": params,
            "layout": {"sims_per_shard": per_shard},
            "rng": "numpy SeedSequence(seed, spawn_key=(split, sim)); split 0 = train, 1 = test",
            "columns": COLUMNS,
            "train_acc_quartiles": {"q1": float(q1), "q3": float(q3)},
            "splits": splits,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            if out.exists():  # an empty folder (checked above): make room for the rename
                out.rmdir()
            os.rename(tmp, out)
        except OSError:
            # Another writer of the same dataset finished first (two sweeps sharing data, started together):
            # theirs is the same data (same parameters and seed), so it is used and this copy dropped.
            try:
                theirs = _check_output(out, params)
            except UserError:
                theirs = None
            if theirs is not None:
                return WriteResult(out, theirs, reused=True, seconds=time.perf_counter() - start)
            raise UserError(
                f"{out} was filled by something else while this run was writing (another raysym "
                "simulate with the same --out?). Its contents were left alone and this run's data "
                "discarded; check the folder, then run again."
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return WriteResult(out, manifest, reused=False, seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_file():
        raise UserError(
            f"{path} is a file, but a raysym dataset is a folder ({MANIFEST}, train/ and test/, written by "
            "`raysym simulate --out FOLDER`). Pass the dataset's folder."
        )
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise UserError(
            f"{path} is not a raysym dataset: {MANIFEST} is missing. Make one with `raysym simulate --out {path}`."
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(
            f"The manifest {path / MANIFEST} cannot be read ({exc}). Re-create the dataset with `raysym simulate`."
        ) from None
    if not isinstance(manifest, dict):
        raise UserError(
            f"The manifest {path / MANIFEST} is not a JSON object. Re-create the dataset with `raysym simulate`."
        )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise UserError(
            f"The dataset at {path} has schema version {manifest.get('schema_version')}, this raysym reads "
            f"version {SCHEMA_VERSION}. Re-create it with this raysym's `raysym simulate`."
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise UserError(
            f"The manifest {path / MANIFEST} is incomplete or altered: {problem}. Re-create the dataset "
            "with `raysym simulate`."
        )
    return manifest


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is missing or malformed in a manifest that names the right schema version (None: nothing).
    Shard paths must be plain names inside the dataset folder: a manifest is data, and a path to a
    device or another folder must never be opened because a manifest says so."""
    params, splits = manifest.get("params"), manifest.get("splits")
    if not isinstance(params, dict):
        return "'params' is missing"
    for key in ("system", "dim", "particles"):
        if key not in params:
            return f"params.{key} is missing"
    if not (isinstance(params["particles"], int) and params["particles"] >= 2 and params["dim"] in (2, 3)):
        return f"params say {params['particles']!r} particles in {params['dim']!r} dimensions"
    quartiles = manifest.get("train_acc_quartiles")
    if not (isinstance(quartiles, dict) and all(isinstance(quartiles.get(k), (int, float)) for k in ("q1", "q3"))):
        return "train_acc_quartiles (q1, q3) is missing"
    if not isinstance(splits, dict):
        return "'splits' is missing"
    for split in SPLITS:
        info = splits.get(split)
        if not (isinstance(info, dict) and isinstance(info.get("shards"), list) and isinstance(info.get("rows"), int)):
            return f"splits.{split} (rows, shards) is missing"
        for i, shard in enumerate(info["shards"]):
            if not (
                isinstance(shard, dict) and isinstance(shard.get("file"), str) and isinstance(shard.get("sha256"), str)
            ):
                return f"shard {i} of {split} lacks its file or sha256"
            parts = Path(shard["file"]).parts
            if Path(shard["file"]).is_absolute() or ".." in parts or parts[:1] != (split,) or len(parts) != 2:
                return f"shard {i} of {split} points outside the dataset folder ({shard['file']!r})"
    if not splits["train"]["shards"] or splits["train"]["rows"] < 1:
        return "the training split lists no graphs"
    return None


def verify_shards(path: str | Path, manifest: dict[str, Any], splits=SPLITS) -> None:
    """Check every listed shard's sha256; raise UserError naming the first file that differs."""
    path = Path(path)
    for split in splits:
        for shard in manifest["splits"][split]["shards"]:
            file = path / shard["file"]
            if not file.exists():
                raise UserError(
                    f"The shard {file} listed in {MANIFEST} is missing. Re-create the dataset with `raysym simulate`."
                )
            if not file.is_file() or file.is_symlink():
                raise UserError(
                    f"The shard {file} listed in {MANIFEST} is not a regular file. Re-create the dataset with `raysym "
                    "simulate`."
                )
            data = file.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != shard["sha256"]:
                raise UserError(
                    f"The shard {file} is damaged: its sha256 is {digest[:12]}..., the manifest records "
                    f"{shard['sha256'][:12]}... (truncated or altered on disk). Delete the dataset folder "
                    "and run `raysym simulate` again."
                )
            try:
                table = pq.read_table(pa.BufferReader(data))
            except (pa.ArrowInvalid, OSError) as exc:
                raise UserError(
                    f"The shard {file} cannot be read as Parquet ({exc}). Re-create the dataset with `raysym simulate`."
                ) from None
            _refuse_non_finite(table, str(file))


# The float columns: a NaN or inf in any of them would train a network on garbage (and surface, much
# later, as a "diverged" trial).
_FLOAT_COLUMNS = ("t", "pos", "vel", "charge", "mass", "acc", "acc_min", "acc_max")


def _refuse_non_finite(table: pa.Table, where: str) -> None:
    """UserError naming the first row (0-based, within ``where``) and column holding NaN or inf."""
    for name in _FLOAT_COLUMNS:
        if name not in table.column_names:
            continue
        values = flat_column(table[name], (table.num_rows, -1)) if table.num_rows else np.zeros((0, 1))
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            raise UserError(
                f"{where} holds non-finite values (NaN or inf) in column '{name}': {int(bad.sum())} row(s), the first "
                f"at row {row} (sim {table['sim'][row].as_py() if 'sim' in table.column_names else '?'}). raysym does "
                "not train on them. Re-create the dataset with `raysym simulate` (if the simulation itself blew up, "
                "with a smaller --dt)."
            )


@dataclass
class PruneReport:
    """How many graphs the IQR filter removed, and the bounds it used."""

    k: float
    lower: float
    upper: float
    graphs_before: int
    graphs_after: int

    @property
    def removed(self) -> int:
        return self.graphs_before - self.graphs_after

    @property
    def removed_fraction(self) -> float:
        return self.removed / max(1, self.graphs_before)

    def summary(self) -> str:
        return (
            f"pruning k={self.k:g} kept accelerations in [{self.lower:.4g}, {self.upper:.4g}]: removed "
            f"{self.removed:,} of {self.graphs_before:,} graphs ({100 * self.removed_fraction:.2f}%)"
        )


def prune_bounds(manifest: dict[str, Any], k: float) -> tuple[float, float]:
    """[Q1 - k IQR, Q3 + k IQR] from the training set's acceleration quartiles."""
    if not (np.isfinite(k) and k >= 0):
        raise UserError(
            f"The pruning whisker factor k must be a non-negative number, got {k}. Use e.g. 1.5, or none to keep every "
            "graph."
        )
    q = manifest["train_acc_quartiles"]
    iqr = q["q3"] - q["q1"]
    return q["q1"] - k * iqr, q["q3"] + k * iqr


def prune_report(path: str | Path, k: float) -> PruneReport:
    """What pruning the training split with factor k would remove, reading only acc_min / acc_max."""
    path = Path(path)
    manifest = read_manifest(path)
    lo, hi = prune_bounds(manifest, k)
    table = pq.read_table(_shard_files(path, manifest, "train"), columns=["acc_min", "acc_max"])
    kept = np.count_nonzero((table["acc_min"].to_numpy() >= lo) & (table["acc_max"].to_numpy() <= hi))
    return PruneReport(float(k), lo, hi, table.num_rows, int(kept))


def training_graphs(path: str | Path, k: float | None) -> int:
    """How many training graphs a trial with pruning factor k (None: no pruning) trains on."""
    return prune_report(path, k).graphs_after if k is not None else read_manifest(path)["splits"]["train"]["rows"]


@dataclass
class GraphDataset:
    """Training and test graphs of one dataset folder (see :class:`~raysym.simulate.Snapshots`)."""

    train: Snapshots
    test: Snapshots
    manifest: dict[str, Any]
    prune: PruneReport | None  # for the training split; None when not pruned


def _shard_files(path: Path, manifest: dict[str, Any], split: str) -> list[Path]:
    return [path / s["file"] for s in manifest["splits"][split]["shards"]]


def read_split(
    path: str | Path, split: str, prune_k: float | None = None, *, engine: str = "arrow", verify: bool = True
) -> tuple[Snapshots, PruneReport | None]:
    """One split's graphs as arrays, optionally IQR-pruned with the training-set bounds.

    ``engine="arrow"`` reads with plain pyarrow (no Ray); ``engine="ray"`` runs the same filter as
    a Ray Data pipeline (:func:`ray_dataset`). Both give the same arrays.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if split not in SPLITS:
        raise UserError(f"Unknown split '{split}'. Use one of: {', '.join(SPLITS)}.")
    if verify:
        verify_shards(path, manifest, [split])
    p = manifest["params"]
    files = _shard_files(path, manifest, split)
    before = manifest["splits"][split]["rows"]
    schema = arrow_schema(p["particles"], p["dim"])
    try:
        if engine == "ray":
            table = _read_with_ray(path, split, prune_k, manifest, schema)
        elif engine == "arrow":
            filters = None
            if prune_k is not None:
                lo, hi = prune_bounds(manifest, prune_k)
                filters = [("acc_min", ">=", lo), ("acc_max", "<=", hi)]
            table = pq.read_table(files, filters=filters, schema=schema)
        else:
            raise ValueError(f"unknown engine {engine!r}")
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(
            f"The shards of {path}/{split} cannot be read ({exc}). Re-create the dataset with `raysym simulate`."
        ) from None
    if not verify:  # verify_shards checked every file already
        try:
            _refuse_non_finite(table, f"The {split} split of {path}")
        except UserError:
            for file in files:  # name the file too (the error path only: one more read)
                _refuse_non_finite(pq.read_table(file, schema=schema), str(file))
            raise
    graphs = from_table(table, p["particles"], p["dim"])
    report = None
    if prune_k is not None:
        lo, hi = prune_bounds(manifest, prune_k)
        report = PruneReport(float(prune_k), lo, hi, before, len(graphs))
    return graphs, report


def _read_with_ray(path: Path, split: str, prune_k, manifest, schema: pa.Schema) -> pa.Table:
    import ray

    blocks = ray.get(ray_dataset(path, split, prune_k, manifest=manifest).to_arrow_refs())
    blocks = [b.cast(schema) for b in blocks if b.num_rows]
    return pa.concat_tables(blocks) if blocks else schema.empty_table()


def ray_dataset(path: str | Path, split: str, prune_k: float | None = None, *, manifest=None):
    """The split as a Ray Data dataset, with IQR pruning as a ``filter`` expression when k is given."""
    import ray.data
    from ray.data.expressions import col

    from raysym._ray import ensure_ray

    ensure_ray()
    path = Path(path)
    manifest = manifest or read_manifest(path)
    ds = ray.data.read_parquet([str(f) for f in _shard_files(path, manifest, split)])
    if prune_k is not None:
        lo, hi = prune_bounds(manifest, prune_k)
        ds = ds.filter(expr=(col("acc_min") >= lo) & (col("acc_max") <= hi))
    return ds


def load_dataset(
    path: str | Path, prune_k: float | None = 1.5, *, engine: str = "arrow", verify: bool = True
) -> GraphDataset:
    """Training graphs (pruned when ``prune_k`` is not None) and the unpruned test graphs.

    The test graphs are never pruned: they come from unseen simulations and are scored as they are.
    """
    train, report = read_split(path, "train", prune_k, engine=engine, verify=verify)
    test, _ = read_split(path, "test", None, engine=engine, verify=verify)
    return GraphDataset(train=train, test=test, manifest=read_manifest(path), prune=report)
