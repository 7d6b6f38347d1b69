"""Halo catalogs: the paper's dark-matter experiment on point catalogs.

A catalog is a table of points (dark-matter halos) with positions x, y, z, velocities vx, vy, vz, a mass,
and a node target (the paper: the overdensity delta of each halo). raysym builds one graph over the
catalog with an edge from every point to every other point within a radius (both directions, periodic
when the box size is given), and trains a node-level Graph Network with L1 messages to predict the
target:

catalog (Parquet or CSV)  ->  radius graph (scipy cKDTree)  ->  node-level GN (edge model on
[dx, dy, dz, r, m_receiver, m_sender], messages summed at the receiver, node model on [m, summed])
->  trial folder (checkpoint, metrics, a sample of messages)  ->  raysym.halo_distill (edge and node
functions as formulas)

The Quijote catalogs the paper used cannot be fetched here, so :func:`synthetic_catalog` makes catalogs
whose target is a known function of the neighbours:

    target_i = sum over j with |r_ij| < radius of  m_j / (|r_ij| + 1)

so the edge function to recover is m_sender / (r + 1). A real catalog is read by :func:`read_catalog`
from named columns (``target`` names the target column). ``raysym halos`` runs one trial; a sweep YAML
with a ``halos`` section runs a grid of them on Ray Tune (raysym.sweep).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raysym.errors import UserError
from raysym.graph import mlp

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


class NodeGN(nn.Module):
    """Node-level GN: messages = edge_model(edge inputs) (E, msg_dim), summed at each receiver; the
    node model maps [mass, summed messages] to the node's target (N,)."""

    def __init__(self, hidden: int = 128, layers: int = 3, msg_dim: int = 100):
        super().__init__()
        self.msg_dim = msg_dim
        self.edge_model = mlp(len(EDGE_NAMES), msg_dim, hidden, layers)
        self.node_model = mlp(1 + msg_dim, 1, hidden, layers)

    def forward(self, edge_x: torch.Tensor, receivers: torch.Tensor, node_mass: torch.Tensor):
        """edge_x (E, 6), receivers (E,) int64, node_mass (N,) -> (prediction (N,), messages (E, msg_dim))."""
        messages = self.edge_model(edge_x)
        summed = torch.zeros(len(node_mass), self.msg_dim, dtype=messages.dtype, device=messages.device)
        summed = summed.index_add(0, receivers, messages)
        return self.node_model(torch.cat([node_mass[:, None], summed], dim=1)).squeeze(1), messages


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


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@dataclass
class HaloResult:
    status: str  # finished or diverged
    model: NodeGN
    history: list[dict]  # one entry per report (every cfg.report_every epochs and the last)
    test_mae: float  # in the target's units
    messages: np.ndarray  # (E, msg_dim) float32, after training
    seconds: float


class GraphTensors:
    """A HaloGraph on the training device, with what mini-batches need: ``first[i]:first[i + 1]`` are the
    edges into node i (edges are sorted by receiver)."""

    def __init__(self, graph: HaloGraph, device):
        self.edge_x = torch.tensor(graph.edge_x, dtype=torch.float32, device=device)
        self.receivers = torch.from_numpy(graph.receivers).to(device)
        self.mass = torch.tensor(graph.catalog.mass, dtype=torch.float32, device=device)
        self.first = np.concatenate([[0], np.cumsum(in_degrees(graph))])
        self.device = device

    def forward(self, model: NodeGN, nodes: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction (len(nodes),), messages of their incoming edges (edges, msg_dim)) for the node
        indices ``nodes``, or for every node and edge when None. A node's prediction reads only its own
        incoming edges, so the batched prediction is the full-batch one."""
        if nodes is None:
            return model(self.edge_x, self.receivers, self.mass)
        counts = self.first[nodes + 1] - self.first[nodes]
        # the edge ids of each node's run, concatenated: start of the run + position within it
        edges = (
            np.repeat(self.first[nodes], counts)
            + np.arange(counts.sum())
            - np.repeat(np.cumsum(counts) - counts, counts)
        )
        local = torch.from_numpy(np.repeat(np.arange(len(nodes)), counts)).to(self.device)
        rows = torch.from_numpy(edges).to(self.device)
        return model(self.edge_x[rows], local, self.mass[torch.from_numpy(nodes).to(self.device)])

    @torch.no_grad()
    def evaluate(self, model: NodeGN, batch_nodes: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction (N,), messages (E, msg_dim)) of every node and edge, ``batch_nodes`` at a time;
        the messages come back on the CPU."""
        if batch_nodes is None:
            pred, messages = self.forward(model)
            return pred, messages.cpu()
        n = len(self.mass)
        pred = torch.empty(n, device=self.device)
        messages = torch.empty(len(self.edge_x), model.msg_dim)  # filled in place: no second copy
        for i in range(0, n, batch_nodes):
            j = min(i + batch_nodes, n)
            pred[i:j], part = self.forward(model, np.arange(i, j))
            messages[self.first[i] : self.first[j]] = part.cpu()  # nodes i..j-1 own edges first[i]..first[j]-1
        return pred, messages


def message_stds(messages: torch.Tensor, chunk: int = 100_000) -> np.ndarray:
    """Per-component standard deviation of messages (E, msg_dim), from float64 sums over chunks of edges
    (torch's std would allocate a second (E, msg_dim) tensor)."""
    total, squares = np.zeros(messages.shape[1]), np.zeros(messages.shape[1])
    for i in range(0, len(messages), chunk):
        part = messages[i : i + chunk].double()
        total += part.sum(0).cpu().numpy()
        squares += (part**2).sum(0).cpu().numpy()
    mean = total / len(messages)
    return np.sqrt(np.clip(squares / len(messages) - mean**2, 0, None))


def train_halos(
    graph: HaloGraph, cfg, *, out_dir: str | Path | None = None, callback=None, resume: bool = True
) -> HaloResult:
    """Train a NodeGN on one catalog graph with Adam on the training nodes' targets (MAE on the target
    divided by its std, so one learning rate suits any catalog) plus ``cfg.l1`` times the mean over edges
    of the summed |messages|, and a cosine decay to lr / 100 over the epochs (full-batch Adam at a
    constant rate keeps oscillating around the minimum). An epoch is one full-batch step, or with
    ``cfg.batch_nodes`` one step per batch of that many training nodes (with their incoming edges), in
    an order drawn from (seed, epoch). Every ``cfg.report_every`` epochs (and at the last) the state is
    saved to ``out_dir/checkpoint.pt`` and ``callback(metrics)`` is called; a run restarted with
    ``resume`` continues from the checkpoint and ends with the same numbers. cfg: a HaloConfig."""
    import time

    from raysym.train import CHECKPOINT, _save_checkpoint, pick_device, std_metrics

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    tensors = GraphTensors(graph, device)
    test = torch.from_numpy(graph.test).to(device)
    train_nodes = np.flatnonzero(~graph.test)
    scale = float(np.std(graph.catalog.target)) or 1.0
    y = torch.tensor(graph.catalog.target / scale, dtype=torch.float32, device=device)
    model = NodeGN(hidden=cfg.hidden, msg_dim=cfg.msg_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr / 100)
    history: list[dict] = []
    evaluated = None  # (prediction, messages) of the model as it is now, once computed
    first = 0
    ckpt = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if ckpt is not None and resume and ckpt.exists():
        from raysym.train import read_checkpoint

        def restore(state):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            return state["history"], state["epoch"] + 1

        history, first = read_checkpoint(ckpt, device, restore)
    for epoch in range(first, cfg.epochs):
        model.train()
        if cfg.batch_nodes is None:
            batches = [None]
        else:
            order = np.random.default_rng([cfg.seed, epoch]).permutation(train_nodes)
            batches = [np.sort(order[i : i + cfg.batch_nodes]) for i in range(0, len(order), cfg.batch_nodes)]
        losses, l1s = [], []
        for nodes in batches:
            pred, messages = tensors.forward(model, nodes)
            base = (
                (pred[~test] - y[~test]).abs().mean()
                if nodes is None
                else (pred - y[torch.from_numpy(nodes).to(device)]).abs().mean()
            )
            l1 = messages.abs().sum(1).mean()
            loss = base + cfg.l1 * l1
            if not torch.isfinite(loss):
                return HaloResult(
                    "diverged",
                    model,
                    history,
                    float("nan"),
                    messages.detach().cpu().numpy(),
                    time.perf_counter() - start,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            l1s.append(l1.item())
        scheduler.step()
        if (epoch + 1) % cfg.report_every and epoch != cfg.epochs - 1:
            continue
        model.eval()
        evaluated = None  # the last one's messages can go before this one's are made
        evaluated = pred, messages = tensors.evaluate(model, cfg.batch_nodes)  # the model after this epoch
        stds = message_stds(messages)
        metrics = {
            "epoch": epoch,
            "train/loss": float(np.mean(losses)),
            "train/regularizer": float(np.mean(l1s)),
            "train/lr": scheduler.get_last_lr()[0],
            "train/mae": (pred[~test] - y[~test]).abs().mean().item() * scale,
            "test/mae": (pred[test] - y[test]).abs().mean().item() * scale,
            **std_metrics(stds, 1),
        }
        history.append({**metrics, "message_stds": [float(v) for v in stds]})
        if ckpt is not None:
            _save_checkpoint(
                ckpt,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history,
                    "epoch": epoch,
                },
            )
        if callback is not None:
            callback(metrics)
    model.eval()
    pred, messages = (
        evaluated if evaluated is not None else tensors.evaluate(model, cfg.batch_nodes)
    )  # the last epoch reported
    return HaloResult(
        "finished",
        model,
        history,
        float((pred[test] - y[test]).abs().mean()) * scale,
        messages.numpy(),
        time.perf_counter() - start,
    )


def leading_direction(messages: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit vector (msg_dim,) of the messages' first principal axis, the fraction of the messages'
    variance along it). The axis is signed so that the projection grows with its largest entry. On halo
    graphs the L1 messages do not concentrate in one component, but they vary along one direction (the
    second singular value is a fifth of the first on the synthetic catalogs), and that direction carries
    the edge function."""
    # The (msg_dim, msg_dim) covariance, accumulated in float64 a chunk of edges at a time: a graph's
    # messages can be millions of rows, too many to copy or decompose whole.
    mean = messages.mean(0, dtype=np.float64)
    cov = np.zeros((messages.shape[1], messages.shape[1]))
    for i in range(0, len(messages), 100_000):
        chunk = messages[i : i + 100_000].astype(np.float64) - mean
        cov += chunk.T @ chunk
    variances, vectors = np.linalg.eigh(cov)  # ascending
    lead = vectors[:, -1]
    axis = lead if lead[np.argmax(np.abs(lead))] > 0 else -lead
    total = float(np.clip(variances, 0, None).sum())
    return axis, (float(variances[-1]) / total if total > 0 else 0.0)


# --------------------------------------------------------------------------------------------------
# A halo trial folder (what `raysym halos` and a halo sweep's trials write)
# --------------------------------------------------------------------------------------------------

KIND = "halos"  # config.json's "kind": how raysym distill tells a halo trial from an N-body one
SAMPLE = "halo_messages.npz"


def is_halo_trial(trial_dir: str | Path) -> bool:
    import json

    path = Path(trial_dir) / "config.json"
    if not path.exists():
        return False
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({exc}). Train the trial again into a new folder.") from None
    return isinstance(config, dict) and config.get("kind") == KIND


def run_halo_trial(cfg, out_dir: str | Path, *, callback=None, resume: bool = True, claim: bool = True) -> dict:
    """Build the graph, train, analyse the messages, and write the trial folder: config.json,
    checkpoint.pt, metrics.json, message_stds_by_epoch.json/.png and halo_messages.npz (a sample of edges:
    inputs, the messages' leading projection, and the true edge term for synthetic catalogs). Returns
    the metrics. cfg: a HaloConfig."""
    import dataclasses

    from raysym import messages as msgs
    from raysym.outputs import claim_trial_folder
    from raysym.train import _write_json

    out_dir = Path(out_dir)
    if claim:  # refuse a folder holding anything but this same trial (the sweep's own work folders: off)
        claim_trial_folder(out_dir, {"kind": KIND, "halos": dataclasses.asdict(cfg)})
    graph = build_graph(cfg)  # a bad catalog stops the run before the folder is made
    check_memory(graph, cfg)  # here, on the machine that trains
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "config.json", {"kind": KIND, "halos": dataclasses.asdict(cfg)})
    result = train_halos(graph, cfg, out_dir=out_dir, callback=callback, resume=resume)
    n, e = len(graph.catalog), len(graph.senders)
    metrics: dict = {
        "status": result.status,
        "reason": "" if result.status == "finished" else "non-finite loss",
        "data/points": n,
        "data/edges": e,
        "data/neighbours_per_point": e / n,
        "data/test_nodes": int(graph.test.sum()),
        "data/target_std": float(np.std(graph.catalog.target)),
        "time/train_seconds": result.seconds,
        **{
            k: v
            for k, v in (result.history[-1] if result.history else {}).items()
            if k not in ("epoch", "message_stds")
        },
        "epochs_done": (result.history[-1]["epoch"] + 1) if result.history else 0,
    }
    if result.status == "finished":
        axis, fraction = leading_direction(result.messages)
        projection = result.messages @ axis
        stds = np.sort(result.messages.std(0))[::-1]
        metrics.update(
            {
                "test/mae": result.test_mae,
                "test/mae_over_std": result.test_mae / (metrics["data/target_std"] or 1.0),
                "messages/leading_variance": fraction,
                "messages/top_std": [float(stds[0])],
                "messages/stds_top15": [float(v) for v in stds[:15]],
            }
        )
        true = graph.true_edge()
        if true is not None:
            metrics["messages/r2_vs_true_edge"] = msgs.r2_linear(projection, true[:, None])[0]
        rows = np.sort(np.random.default_rng(cfg.seed).choice(e, size=min(2000, e), replace=False))
        sample = {"edge_x": graph.edge_x[rows], "projection": projection[rows]} | (
            {"true_edge": true[rows]} if true is not None else {}
        )
        tmp = out_dir / f".{SAMPLE}.tmp.npz"
        np.savez_compressed(tmp, **sample)
        tmp.replace(out_dir / SAMPLE)
    if result.history:
        epochs = np.array([h["epoch"] + 1 for h in result.history])
        stds_by_epoch = np.array([h["message_stds"] for h in result.history])
        _write_json(out_dir / "message_stds_by_epoch.json", {"epoch": epochs.tolist(), "stds": stds_by_epoch.tolist()})
        msgs.plot_stds_over_epochs(epochs, stds_by_epoch, 1, out_dir)
    _write_json(out_dir / "metrics.json", metrics)
    return metrics


def load_halo_trial(trial_dir: str | Path):
    """(HaloConfig, trained NodeGN in eval mode on the CPU) of a halo trial folder."""
    import json

    from raysym.config import HaloConfig, from_dict
    from raysym.train import CHECKPOINT, read_checkpoint

    trial_dir = Path(trial_dir)
    cfg = from_dict(
        HaloConfig, json.loads((trial_dir / "config.json").read_text())["halos"], where=str(trial_dir / "config.json")
    )
    if not (trial_dir / CHECKPOINT).exists():
        raise UserError(f"{trial_dir} has no {CHECKPOINT}: the halo trial did not train. Run it again.")
    model = NodeGN(hidden=cfg.hidden, msg_dim=cfg.msg_dim)
    read_checkpoint(trial_dir / CHECKPOINT, "cpu", lambda state: model.load_state_dict(state["model"]))
    model.eval()
    return cfg, model
