"""The shard format: the Arrow schema of a snapshot row, and conversions between tables and arrays.

Rows are snapshots (graphs) with the columns of :data:`COLUMNS`. The files need only pyarrow:
fixed-size lists hold the per-particle arrays, so ``np.array(row["pos"]).reshape(n, dim)`` is a
particle-by-dimension array (the shape is also in the field metadata). raysym.shards writes and reads
datasets of such files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from raysym.config import SimulationConfig
from raysym.simulate import Snapshots

# Version 2: per-particle vectors are flat fixed-size lists of n * dim floats. Version 1 nested them
# (n lists of dim), which pyarrow 25.0.1's filter kernel corrupts past ~50,000 rows (see
# tests/e2e/test_shards.py::test_filtering_large_tables_keeps_the_right_rows).
SCHEMA_VERSION = 2
MANIFEST = "dataset.json"

COLUMNS = {
    "sim": "int64: simulation id within its split (0 .. sims-1)",
    "step": "int64: integrator step of this state (t = step * dt)",
    "t": "float64: time of this state",
    "pos": "n*dim float32, row-major n x dim: positions",
    "vel": "n*dim float32, row-major n x dim: velocities",
    "charge": "n float32: charges (sign +-1 for charged systems, else an N(0,1) distractor)",
    "mass": "n float32: masses",
    "acc": "n*dim float32, row-major n x dim: analytic accelerations at this state (the training target)",
    "acc_min": "float32: smallest acceleration component of the graph (for pruning)",
    "acc_max": "float32: largest acceleration component of the graph (for pruning)",
}


def arrow_schema(n: int, dim: int) -> pa.Schema:
    """The shard schema. Vectors per particle are flat fixed-size lists (row-major n x dim); the
    field metadata ``shape`` records [n, dim]."""
    shape = {b"shape": json.dumps([n, dim]).encode()}
    vec = pa.list_(pa.float32(), n * dim)
    per_node = pa.list_(pa.float32(), n)
    types = {
        "sim": pa.int64(),
        "step": pa.int64(),
        "t": pa.float64(),
        "pos": vec,
        "vel": vec,
        "charge": per_node,
        "mass": per_node,
        "acc": vec,
        "acc_min": pa.float32(),
        "acc_max": pa.float32(),
    }
    return pa.schema(
        [
            pa.field(name, types[name], nullable=False, metadata=shape if types[name] == vec else None)
            for name in COLUMNS
        ]
    )


SHARD_BYTES = 32 * 2**20
"""Default shard size (uncompressed rows): large enough that per-task overhead is small."""


def row_bytes(n: int, dim: int) -> int:
    """Uncompressed bytes of one graph's row."""
    return 8 * 3 + 4 * (3 * n * dim + 2 * n + 2)


def sims_per_shard(cfg: SimulationConfig) -> int:
    """Simulations per shard: the config's choice, or as many as fit in SHARD_BYTES."""
    if cfg.sims_per_shard is not None:
        return cfg.sims_per_shard
    return max(1, SHARD_BYTES // (cfg.snapshots_per_sim * row_bytes(cfg.particles, cfg.dim)))


def _fixed_list(values: np.ndarray, list_type: pa.DataType) -> pa.Array:
    """A (G, ...) float32 array as a fixed-size list array of G rows (no copy)."""
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, type=list_type)


def to_table(s: Snapshots) -> pa.Table:
    """Snapshots -> Arrow table with the dataset schema."""
    _, n, dim = s.pos.shape
    schema = arrow_schema(n, dim)
    acc_flat = s.acc.reshape(len(s), -1)
    cols = {
        "sim": pa.array(s.sim, pa.int64()),
        "step": pa.array(s.step, pa.int64()),
        "t": pa.array(s.t, pa.float64()),
        **{
            name: _fixed_list(getattr(s, name), schema.field(name).type)
            for name in ("pos", "vel", "charge", "mass", "acc")
        },
        "acc_min": pa.array(acc_flat.min(axis=1), pa.float32()),
        "acc_max": pa.array(acc_flat.max(axis=1), pa.float32()),
    }
    return pa.table(cols, schema=schema)


def flat_column(column: pa.ChunkedArray | pa.Array, shape: tuple[int, ...]) -> np.ndarray:
    """A fixed-size list column as a numpy array of ``shape`` (zero-copy where possible)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    while pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).reshape(shape)


def from_table(table: pa.Table, n: int, dim: int) -> Snapshots:
    """Arrow table -> Snapshots, rows sorted by (sim, step)."""
    G = table.num_rows
    s = Snapshots(
        sim=table["sim"].to_numpy(),
        step=table["step"].to_numpy(),
        t=table["t"].to_numpy(),
        pos=flat_column(table["pos"], (G, n, dim)),
        vel=flat_column(table["vel"], (G, n, dim)),
        charge=flat_column(table["charge"], (G, n)),
        mass=flat_column(table["mass"], (G, n)),
        acc=flat_column(table["acc"], (G, n, dim)),
    )
    order = np.lexsort((s.step, s.sim))
    if np.any(order != np.arange(G)):
        s = s.take(order)
    return s


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


def describe(manifest: dict[str, Any]) -> str:
    """A few human lines about a manifest (for the CLI)."""
    p = manifest["params"]
    tr, te = manifest["splits"]["train"], manifest["splits"]["test"]
    return (
        f"{p['system']} {p['dim']}D, {p['particles']} particles, dt={p['dt']:g}, seed={p['seed']}: "
        f"train {tr['sims']:,} sims / {tr['rows']:,} graphs in {_count(len(tr['shards']), 'shard')}, "
        f"test {te['sims']:,} sims / {te['rows']:,} graphs in {_count(len(te['shards']), 'shard')}"
    )
