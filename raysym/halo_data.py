"""Halo catalogs as graphs (no torch): the data half of the paper's dark-matter experiment.

A catalog is a table of points (dark-matter halos) with positions x, y, z, velocities vx, vy, vz, a mass,
and a node target (the paper: the overdensity delta of each halo). raysym builds one graph over the
catalog with an edge from every point to every other point within a radius (both directions, periodic
when the box size is given):

catalog (Parquet or CSV)  ->  radius graph (scipy cKDTree)  ->  edge inputs
[dx, dy, dz, r, m_receiver, m_sender] and a seeded train/test split of the nodes

and raysym.halos trains a node-level Graph Network on it.

The Quijote catalogs the paper used cannot be fetched here, so :func:`synthetic_catalog` makes catalogs
whose target is a known function of the neighbours:

    target_i = sum over j with |r_ij| < radius of  m_j / (|r_ij| + 1)

so the edge function to recover is m_sender / (r + 1). A real catalog is read by :func:`read_catalog`
from named columns (``target`` names the target column).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raysym.errors import UserError

COLUMNS = ("x", "y", "z", "vx", "vy", "vz", "mass")
EDGE_NAMES = ["dx", "dy", "dz", "r", "m1", "m2"]  # 1 = receiver, 2 = sender, dx = x_sender - x_receiver


@dataclass
class Catalog:
    """N points: pos, vel (N, 3); mass, target (N,); ``box`` the periodic box size, or None."""

    pos: np.ndarray
    vel: np.ndarray
    mass: np.ndarray
    target: np.ndarray
    box: float | None = None

    def __len__(self) -> int:
        return len(self.mass)


def synthetic_catalog(points: int = 2000, box: float = 20.0, radius: float = 2.0, seed: int = 0) -> Catalog:
    """Uniform points in a periodic box, lognormal masses, and the known target (see the module doc)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, box, size=(points, 3))
    vel = rng.normal(size=(points, 3))
    mass = np.exp(rng.normal(0.0, 0.5, size=points))
    senders, receivers = radius_graph(pos, radius, box)
    r = np.linalg.norm(_offsets(pos, senders, receivers, box), axis=1)
    target = np.zeros(points)
    np.add.at(target, receivers, edge_term(r, mass[senders]))
    return Catalog(pos, vel, mass, target, box)


def edge_term(r: np.ndarray, m_sender: np.ndarray) -> np.ndarray:
    """The synthetic catalogs' true edge function: m_sender / (r + 1)."""
    return m_sender / (r + 1.0)


def read_catalog(path: str | Path, target: str = "delta", box: float | None = None) -> Catalog:
    """A catalog from a Parquet or CSV file with columns x, y, z, vx, vy, vz, mass and ``target``."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pcsv.read_csv(path) if path.suffix.lower() == ".csv" else pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"The catalog {path} cannot be read ({exc}). Give a Parquet or CSV file.") from None
    missing = [c for c in (*COLUMNS, target) if c not in table.column_names]
    if missing:
        raise UserError(
            f"The catalog {path} has no column(s) {', '.join(missing)} (it has {', '.join(table.column_names)}). "
            f"Rename them, or name the target column with target=..."
        )
    for name in (*COLUMNS, target):
        kind = table.schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            first = next((i for i, v in enumerate(table[name].to_pylist()) if not isinstance(v, (int, float))), 0)
            raise UserError(
                f"The catalog {path} has non-numeric values in column '{name}' ({kind}; e.g. row {first}: "
                f"{str(table[name][first].as_py())[:30]!r}). Every column must hold numbers; clean the file first."
            )
        if table[name].null_count:
            raise UserError(
                f"The catalog {path} has {table[name].null_count} empty cell(s) in column '{name}'. Fill or drop "
                "those rows first."
            )
    col = lambda name: table[name].to_numpy().astype(np.float64)
    cat = Catalog(
        np.stack([col(c) for c in "xyz"], 1),
        np.stack([col(c) for c in ("vx", "vy", "vz")], 1),
        col("mass"),
        col(target),
        box,
    )
    if not all(np.isfinite(a).all() for a in (cat.pos, cat.vel, cat.mass, cat.target)):
        raise UserError(f"The catalog {path} holds NaN or infinite values. Clean it first.")
    return cat


def radius_graph(pos: np.ndarray, radius: float, box: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(senders, receivers) of every ordered pair of distinct points closer than ``radius`` (periodic
    distances in a box of side ``box`` when given), sorted by receiver then sender. pos: (N, 3)."""
    from scipy.spatial import cKDTree

    if box is not None and radius >= box / 2:
        raise UserError(
            f"The radius {radius} must be below half the box size {box}: a periodic pair would be counted twice."
        )
    tree = cKDTree(np.mod(pos, box) if box else pos, boxsize=box)
    pairs = tree.query_pairs(radius, output_type="ndarray")  # i < j, within radius (<=)
    if len(pairs):
        d = np.linalg.norm(_offsets(pos, pairs[:, 0], pairs[:, 1], box), axis=1)
        pairs = pairs[d < radius]
    senders = np.concatenate([pairs[:, 0], pairs[:, 1]])
    receivers = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.lexsort((senders, receivers))
    return senders[order].astype(np.int64), receivers[order].astype(np.int64)


def _offsets(pos: np.ndarray, senders: np.ndarray, receivers: np.ndarray, box: float | None) -> np.ndarray:
    """x_sender - x_receiver per edge (E, 3), the nearest periodic image when ``box`` is given."""
    d = pos[senders] - pos[receivers]
    if box:
        d = d - box * np.round(d / box)
    return d


def edge_inputs(cat: Catalog, senders: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """(E, 6) columns in EDGE_NAMES order: dx, dy, dz, r, m_receiver, m_sender."""
    d = _offsets(cat.pos, senders, receivers, cat.box)
    r = np.linalg.norm(d, axis=1)
    return np.column_stack([d, r, cat.mass[receivers], cat.mass[senders]])


# --------------------------------------------------------------------------------------------------
# One catalog as one graph
# --------------------------------------------------------------------------------------------------


@dataclass
class HaloGraph:
    """A catalog's radius graph: E edges, N nodes, and the seeded split of the nodes into train and test."""

    catalog: Catalog
    senders: np.ndarray  # (E,) int64
    receivers: np.ndarray  # (E,) int64, sorted
    edge_x: np.ndarray  # (E, 6) in EDGE_NAMES order
    test: np.ndarray  # (N,) bool: held-out nodes
    synthetic: bool  # the true edge function is known (edge_term)

    def true_edge(self) -> np.ndarray | None:
        """(E,) m_sender / (r + 1) for synthetic catalogs, None for real ones."""
        return edge_term(self.edge_x[:, 3], self.edge_x[:, 5]) if self.synthetic else None


def load_catalog(cfg) -> Catalog:
    """The catalog a HaloConfig names: its file, or a synthetic one made from its seed."""
    if cfg.catalog == "synthetic":
        return synthetic_catalog(cfg.points, cfg.synthetic_box(), cfg.radius, cfg.seed)
    return read_catalog(cfg.catalog, cfg.target, cfg.box)


def build_graph(cfg, cat: Catalog | None = None) -> HaloGraph:
    """The radius graph of a HaloConfig's catalog, with the train/test split drawn from its seed."""
    cat = load_catalog(cfg) if cat is None else cat
    senders, receivers = radius_graph(cat.pos, cfg.radius, cat.box)
    if len(senders) == 0:
        raise UserError(f"No two points of the catalog lie within radius {cfg.radius}. Raise the radius.")
    test = np.random.default_rng(cfg.seed).random(len(cat)) < cfg.test_fraction
    return HaloGraph(cat, senders, receivers, edge_inputs(cat, senders, receivers), test, cfg.catalog == "synthetic")


def in_degrees(graph: HaloGraph) -> np.ndarray:
    """Incoming edges per node, (N,)."""
    return np.bincount(graph.receivers, minlength=len(graph.catalog))


def check_memory(graph: HaloGraph, cfg, memory: int | None = None) -> None:
    """Refuse a graph whose training cannot fit in this machine's memory: the activations (three hidden
    layers and the message) and their gradients of every edge in one step, in float32 (all edges in
    full batch; at most those of the ``batch_nodes`` best-connected nodes in mini-batches), plus the
    edge inputs and the messages of every edge kept for the analysis."""
    import os

    memory = memory or os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    layer_widths = 3 * cfg.hidden + cfg.msg_dim
    edges, nodes = len(graph.senders), len(graph.catalog)
    if cfg.batch_nodes is not None and cfg.batch_nodes < nodes:
        edges, nodes = int(np.sort(in_degrees(graph))[-cfg.batch_nodes :].sum()), cfg.batch_nodes
    need = 2 * 4 * (edges + nodes) * layer_widths + 4 * len(graph.senders) * (cfg.msg_dim + len(EDGE_NAMES))
    if need > memory:
        how = "full batch" if cfg.batch_nodes is None else f"in batches of {cfg.batch_nodes:,} nodes"
        raise UserError(
            f"Training on this catalog's graph ({len(graph.catalog):,} points, {len(graph.senders):,} edges within "
            "radius "
            f"{cfg.radius:g}) {how} would need about {need / 2**30:,.1f} GiB, more than this machine's "
            f"{memory / 2**30:,.0f} GiB. "
            "Set batch_nodes (or a smaller one), lower radius or hidden, or cut the catalog into sub-volumes."
        )
