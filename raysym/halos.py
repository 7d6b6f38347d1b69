"""The node-level Graph Network of the paper's dark-matter experiment, its training, and the halo
trial folder.

On a catalog's radius graph (raysym.halo_data) a node-level GN with L1 messages predicts each node's
target: an edge model on [dx, dy, dz, r, m_receiver, m_sender], messages summed at the receiver, a node
model on [m, summed]. A trial folder keeps the checkpoint, the metrics and a sample of messages, which
raysym.halo_distill turns into edge and node formulas. ``raysym halos`` runs one trial; a sweep YAML with
a ``halos`` section runs a grid of them on Ray Tune (raysym.kind_halos).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raysym.errors import UserError
from raysym.graph import mlp
from raysym.halo_data import EDGE_NAMES, HaloGraph, build_graph, check_memory, in_degrees
from raysym.optim import Adam
from raysym.trial_folder import TrialFolder, atomic_path


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
    optimizer = Adam(model.parameters(), lr=cfg.lr)  # torch's Adam without torch._dynamo's import (raysym.optim)
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


def leading_direction(messages: np.ndarray, chunk_rows: int = 100_000) -> tuple[np.ndarray, float]:
    """(unit vector (msg_dim,) of the messages' first principal axis, the fraction of the messages'
    variance along it). The axis is signed so that the projection grows with its largest entry. On halo
    graphs the L1 messages do not concentrate in one component, but they vary along one direction (the
    second singular value is a fifth of the first on the synthetic catalogs), and that direction carries
    the edge function."""
    # The (msg_dim, msg_dim) covariance, accumulated in float64 ``chunk_rows`` edges at a time: a graph's
    # messages can be millions of rows, too many to copy or decompose whole.
    mean = messages.mean(0, dtype=np.float64)
    cov = np.zeros((messages.shape[1], messages.shape[1]))
    for i in range(0, len(messages), chunk_rows):
        chunk = messages[i : i + chunk_rows].astype(np.float64) - mean
        cov += chunk.T @ chunk
    variances, vectors = np.linalg.eigh(cov)  # ascending
    lead = vectors[:, -1]
    axis = lead if lead[np.argmax(np.abs(lead))] > 0 else -lead
    total = float(np.clip(variances, 0, None).sum())
    return axis, (float(variances[-1]) / total if total > 0 else 0.0)


# --------------------------------------------------------------------------------------------------
# A halo trial folder (what `raysym halos` and a halo sweep's trials write)
# --------------------------------------------------------------------------------------------------

KIND = "halos"  # config.json's "kind" (raysym.trial_kind)
SAMPLE = "halo_messages.npz"


def run_halo_trial(cfg, out_dir: str | Path, *, callback=None, resume: bool = True, claim: bool = True) -> dict:
    """Build the graph, train, analyse the messages, and write the trial folder: config.json,
    checkpoint.pt, metrics.json, message_stds_by_epoch.json/.png and halo_messages.npz (a sample of edges:
    inputs, the messages' leading projection, and the true edge term for synthetic catalogs). Returns
    the metrics. cfg: a HaloConfig."""
    import dataclasses

    from raysym import message_figures
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
        with atomic_path(out_dir / SAMPLE) as tmp:
            np.savez_compressed(tmp, **sample)
    if result.history:
        epochs = np.array([h["epoch"] + 1 for h in result.history])
        stds_by_epoch = np.array([h["message_stds"] for h in result.history])
        _write_json(out_dir / "message_stds_by_epoch.json", {"epoch": epochs.tolist(), "stds": stds_by_epoch.tolist()})
        message_figures.plot_stds_over_epochs(epochs, stds_by_epoch, 1, out_dir)
    _write_json(out_dir / "metrics.json", metrics)
    return metrics


def load_halo_trial(trial_dir: str | Path):
    """(HaloConfig, trained NodeGN in eval mode on the CPU) of a halo trial folder."""

    from raysym.config import HaloConfig, from_dict
    from raysym.train import CHECKPOINT, read_checkpoint

    trial_dir = Path(trial_dir)
    cfg = from_dict(HaloConfig, TrialFolder(trial_dir).config()["halos"], where=str(trial_dir / "config.json"))
    if not (trial_dir / CHECKPOINT).exists():
        raise UserError(f"{trial_dir} has no {CHECKPOINT}: the halo trial did not train. Run it again.")
    model = NodeGN(hidden=cfg.hidden, msg_dim=cfg.msg_dim)
    read_checkpoint(trial_dir / CHECKPOINT, "cpu", lambda state: model.load_state_dict(state["model"]))
    model.eval()
    return cfg, model
