"""Reading raysym's Parquet shards: the manifest, checksums, splits as arrays (plain pyarrow or a Ray Data
pipeline, the same arrays either way), and IQR pruning.

Pruning (the 2024 reproduction's outlier filter): a training graph is kept when every acceleration
component lies in [Q1 - k IQR, Q3 + k IQR], with Q1 and Q3 the quartiles of all acceleration
components of the training set (stored in the manifest). The per-graph ``acc_min`` / ``acc_max``
columns make that a column filter: a Ray Data ``filter`` expression, or a pyarrow predicate.
Writing is raysym.shards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysym.errors import UserError
from raysym.shard_format import MANIFEST, SCHEMA_VERSION, arrow_schema, flat_column, from_table
from raysym.simulate import SPLITS, Snapshots


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
                # one thread: a pyarrow thread still holding this Python buffer at interpreter exit aborted the
                # process (SIGABRT, seen for `raysym inspect` and once for a reused `raysym simulate`)
                table = pq.read_table(pa.BufferReader(data), use_threads=False)
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
