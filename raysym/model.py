"""The Graph Network of Cranmer et al. 2020, in its four inductive-bias variants.

A graph is one snapshot of an n-body system: n nodes with features x = [pos, vel, q, m] (2 dim + 2
numbers each), fully connected by directed edges sender -> receiver without self loops.

* Edge model phi_e: MLP(cat[x_receiver, x_sender]) -> message. 3 hidden layers of 300 ReLU units.
* Aggregation: sum of the incoming messages at each receiver.
* Node model phi_v: MLP(cat[x_receiver, summed messages]) -> predicted acceleration (dim numbers).

Variants (``model``):
  standard    100-dim messages, no regulariser
  bottleneck  messages of size dim (2 or 3), no regulariser
  l1          100-dim messages, L1 penalty on them (see raysym.regularizers)
  kl          the edge model outputs 100 means and 100 log-variances; messages are sampled
              mu + sigma * eps in training and are the means at evaluation; KL penalty to a prior

Two edge-model variants from a follow-up study, both with 100-dim messages and the L1 penalty (and its
schedules), the node model unchanged:
  wide        ("plus-minus") five hidden layers of 300, 450, 600, 450, 300 ReLU units instead of three
              of ``hidden``: more capacity, widening then narrowing
  inverse     one hidden layer X = W x + b, then two parallel linear maps of u = 1 / (1 + ReLU(X)) and
              of u², summed: an inductive bias towards inverse powers of distance (1/r, 1/r² laws)

Two forward paths share the same modules and give the same numbers (a test checks outputs and
gradients): ``forward_pyg`` is the torch-geometric MessagePassing model on a batched edge list, and
``forward`` is a dense path on tensors of shape (batch, n, features) that evaluates all n (n-1) edges
of every graph at once. The dense path is the one training uses: the graphs are small, complete and
of fixed size, so there is nothing to gain from sparse scatter operations.
"""

from __future__ import annotations

import torch
from torch import nn

from raysym.graph import GNOutput, complete_edges, kl_messages, message_passing, mlp, node_feature_size
from raysym.names import MODELS  # noqa: F401 -- also importable from here, beside the models it names

WIDE_LAYERS = (300, 450, 600, 450, 300)


class InverseEdgeModel(nn.Module):
    """x (..., n_in) -> A u + B u², u = 1 / (1 + ReLU(W x + b)) of ``hidden`` units; (..., n_out)."""

    def __init__(self, n_in: int, n_out: int, hidden: int):
        super().__init__()
        self.first = nn.Linear(n_in, hidden)
        self.linear = nn.Linear(hidden, n_out)
        self.square = nn.Linear(hidden, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = 1.0 / (1.0 + torch.relu(self.first(x)))
        return self.linear(u) + self.square(u * u)


class GraphNetwork(nn.Module):
    """Edge model + sum aggregation + node model, with a dense and a torch-geometric forward."""

    def __init__(self, model: str, dim: int, hidden: int = 300, layers: int = 3, msg_dim: int = 100):
        super().__init__()
        if model not in MODELS or model in ("hgn", "newtonian"):  # those two: build_model
            raise ValueError(f"unknown model {model!r}; known: {MODELS}")
        self.model, self.dim = model, dim
        self.msg_dim = dim if model == "bottleneck" else msg_dim
        features = node_feature_size(dim)
        edge_out = 2 * self.msg_dim if model == "kl" else self.msg_dim
        if model == "wide":
            self.edge_model = mlp(2 * features, edge_out, WIDE_LAYERS)
        elif model == "inverse":
            self.edge_model = InverseEdgeModel(2 * features, edge_out, hidden)
        else:
            self.edge_model = mlp(2 * features, edge_out, hidden, layers)
        self.node_model = mlp(features + self.msg_dim, dim, hidden, layers)
        self._pyg = None  # built on first use: importing torch-geometric costs seconds per process

    # -- messages ----------------------------------------------------------------------------------
    def edge_messages(self, x_receiver: torch.Tensor, x_sender: torch.Tensor, noise: torch.Tensor | None = None):
        """Messages for edges given receiver and sender features (..., features).

        Returns (messages, mu, logvar); mu and logvar are None except for the KL model. In training
        mode the KL model samples messages (``noise`` can supply the standard-normal draws).
        """
        out = self.edge_model(torch.cat([x_receiver, x_sender], dim=-1))
        if self.model != "kl":
            return out, None, None
        return kl_messages(out, self.training, noise)

    # -- dense path --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> GNOutput:
        """Dense forward. x: (batch, n, features). acc: (batch, n, dim); messages: (batch*n*(n-1), m).

        Edges are ordered receiver-major: for receiver i, senders j = 0..n-1 without i. ``noise``
        (KL only): the standard-normal draws, one row per edge in that order, (batch*n*(n-1), m).
        """
        batch, n, features = x.shape
        recv, send = complete_edges(n, x.device)
        x_recv = x[:, recv]  # (batch, edges per graph, features)
        x_send = x[:, send]
        if noise is not None:
            noise = noise.reshape(batch, len(recv), -1)
        messages, mu, logvar = self.edge_messages(x_recv, x_send, noise)
        # Sum over senders: edges are receiver-major, n - 1 per receiver.
        summed = messages.reshape(batch, n, n - 1, self.msg_dim).sum(dim=2)
        acc = self.node_model(torch.cat([x, summed], dim=-1))
        flat = lambda t: None if t is None else t.reshape(-1, t.shape[-1])
        return GNOutput(acc, flat(messages), flat(mu), flat(logvar))

    # -- torch-geometric path ----------------------------------------------------------------------
    def forward_pyg(self, x: torch.Tensor, edge_index: torch.Tensor, noise: torch.Tensor | None = None) -> GNOutput:
        """MessagePassing forward. x: (nodes, features); edge_index: (2, edges), row 0 senders,
        row 1 receivers (torch-geometric's source_to_target flow). acc: (nodes, dim)."""
        if self._pyg is None:
            object.__setattr__(self, "_pyg", _message_passing_gn(self))  # not a submodule: no extra weights
        return self._pyg(x, edge_index, noise)


def build_model(
    model: str,
    dim: int,
    hidden: int = 300,
    layers: int = 3,
    msg_dim: int = 100,
    newtonian_messages: str = "bottleneck",
    node_term: bool = False,
) -> nn.Module:
    """The network a trial trains: a message-passing :class:`GraphNetwork`, the Hamiltonian GN, or the
    Newtonian GN (``newtonian_messages`` and ``node_term`` apply to it alone)."""
    if model == "newtonian":
        from raysym.newtonian import NewtonianGN

        return NewtonianGN(dim, hidden, layers, newtonian_messages, msg_dim, node_term)
    if model == "hgn":
        from raysym.hgn import HamiltonianGN

        return HamiltonianGN(dim, hidden, layers)
    return GraphNetwork(model, dim, hidden, layers, msg_dim)


def _message_passing_gn(gn: GraphNetwork):
    """The paper's GN as a MessagePassing module (shares its weights)."""
    return message_passing(gn.edge_messages, lambda x, summed: gn.node_model(torch.cat([x, summed], dim=-1)))
