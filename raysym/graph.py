"""Graph helpers shared by every Graph Network (raysym.model, raysym.newtonian, raysym.hgn) and by the
analysis: node features, the complete directed edge lists (receivers, senders) of an n-body graph, MLPs,
the KL edge model's sampling, the torch-geometric message-passing wrapper, and the output of a forward
pass. Kept apart so that the models import it instead of each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def node_feature_size(dim: int) -> int:
    """[pos (dim), vel (dim), q, m]."""
    return 2 * dim + 2


def node_features(graphs) -> tuple[torch.Tensor, torch.Tensor]:
    """Snapshots -> (x, y): x (G, n, 2 dim + 2) = [pos, vel, q, m], y accelerations (G, n, dim), float32."""
    import numpy as np

    x = np.concatenate([graphs.pos, graphs.vel, graphs.charge[..., None], graphs.mass[..., None]], axis=-1)
    # np.array copies: arrays read zero-copy from Arrow are read-only, which torch warns about.
    return torch.from_numpy(np.array(x, dtype=np.float32)), torch.from_numpy(np.array(graphs.acc, dtype=np.float32))


def mlp(n_in: int, n_out: int, hidden: int | tuple[int, ...], layers: int = 0) -> nn.Sequential:
    """Hidden ReLU layers (``layers`` of ``hidden`` units, or the widths in a tuple ``hidden``), then a
    linear output layer."""
    widths = hidden if isinstance(hidden, tuple) else (hidden,) * layers
    mods: list[nn.Module] = []
    width = n_in
    for w in widths:
        mods += [nn.Linear(width, w), nn.ReLU()]
        width = w
    mods.append(nn.Linear(width, n_out))
    return nn.Sequential(*mods)


def kl_messages(out: torch.Tensor, training: bool, noise: torch.Tensor | None = None):
    """A KL edge model's output (..., 2 m) = [means, log-variances] -> (messages, mu, logvar): messages
    sampled mu + sigma * noise in training (``noise``: the standard-normal draws, drawn here if None), the
    means at evaluation."""
    half = out.shape[-1] // 2
    mu, logvar = out[..., :half], out[..., half:]
    if not training:
        return mu, mu, logvar
    if noise is None:
        noise = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * noise, mu, logvar


@dataclass
class GNOutput:
    """What one forward pass produces.

    acc: predicted accelerations, (batch, n, dim) on the dense path or (nodes, dim) on the pyg path.
    messages: the messages that were summed, one row per edge, (edges, message size).
    mu, logvar: for the KL model, the edge model's means and log-variances (edges, 100); else None.
    For the Hamiltonian GN (raysym.hgn) the messages are the per-edge pair energies, (edges, 1).
    """

    acc: torch.Tensor
    messages: torch.Tensor
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    node_energies: torch.Tensor | None = None  # the Hamiltonian GN's self energies, (nodes, 1)


def message_passing(edge_fn, node_fn):
    """A torch-geometric MessagePassing module (sum aggregation, source_to_target flow) around a model's
    own functions, so it shares their weights: ``edge_fn(x_receiver, x_sender, noise) -> (messages, mu,
    logvar)`` per edge and ``node_fn(x, summed messages) -> acc`` per node. Its forward returns a GNOutput."""
    from torch_geometric.nn import MessagePassing

    class MessagePassingGN(MessagePassing):
        def __init__(self):
            super().__init__(aggr="add", flow="source_to_target")
            self._last = None

        def forward(self, x, edge_index, noise=None) -> GNOutput:
            summed = self.propagate(edge_index, x=x, noise=noise)
            messages, mu, logvar = self._last
            return GNOutput(node_fn(x, summed), messages, mu, logvar)

        def message(self, x_i, x_j, noise):  # x_i: receivers, x_j: senders
            self._last = edge_fn(x_i, x_j, noise)
            return self._last[0]

    return MessagePassingGN()


_EDGE_CACHE: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def complete_edges(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(receivers, senders) of the complete directed graph on n nodes without self loops,
    receiver-major: [(0,1), (0,2), ..., (1,0), (1,2), ...]."""
    key = (n, str(device))
    if key not in _EDGE_CACHE:
        recv = torch.arange(n).repeat_interleave(n - 1)
        send = torch.tensor([j for i in range(n) for j in range(n) if j != i], dtype=torch.long)
        _EDGE_CACHE[key] = (recv.to(device), send.to(device))
    return _EDGE_CACHE[key]


def reverse_edges(n: int) -> np.ndarray:
    """For each edge of :func:`complete_edges` (receiver r, sender s), the index of the edge (s, r)."""
    recv, send = (t.numpy() for t in complete_edges(n, "cpu"))
    index = {(int(a), int(b)): e for e, (a, b) in enumerate(zip(recv, send))}
    return np.array([index[(int(b), int(a))] for a, b in zip(recv, send)])


def batched_edge_index(batch: int, n: int, device=None) -> torch.Tensor:
    """torch-geometric edge_index (row 0 senders, row 1 receivers) for ``batch`` complete graphs of n
    nodes stacked as in a pyg Batch, in the same edge order as the dense path."""
    recv, send = complete_edges(n, device or "cpu")
    offsets = (torch.arange(batch, device=recv.device) * n).repeat_interleave(len(recv))
    return torch.stack([send.repeat(batch) + offsets, recv.repeat(batch) + offsets])
