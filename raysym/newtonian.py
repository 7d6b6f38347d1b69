"""The Newtonian Graph Network (``model: newtonian``): the fast path from a trained network to a force law.

The paper's Graph Network (raysym.model) reads the absolute features of both ends of an edge and passes
the summed messages through a node MLP, so nothing makes its messages forces: they become a linear
transformation of the force only under a bottleneck or an L1 penalty, after long training. This variant
builds Newton's second law into the architecture instead, after the "physics-consistent" Graph Networks
of Han, Kammer and Fink (PNAS Nexus 2022, "Learning physics-consistent particle interactions"):

* Edge model phi_e: MLP(dx, r, m1, m2, q1, q2) -> message, on the relative inputs of an edge only
  (dx = x_sender - x_receiver (dim numbers), r = |dx|, 1 = the receiver, 2 = the sender; the order of
  raysym.distill_jobs.edge_names). It cannot see absolute positions or velocities, so its message is
  translation invariant and the same function for every pair of particles.
* Aggregation: sum over senders.
* Node model, fixed: a_i = readout(sum_j message_ij) / m_i, plus an optional small MLP term
  g(v_i, q_i, m_i) for effects that are not pairwise (the damped system's -c v). ``readout`` is the
  identity when messages have dim components, and a linear map without bias otherwise.

Message forms (``messages``):
  bottleneck  dim components (the default): the message is the pair force on the receiver, in the
              simulator's units, with nothing to fit afterwards
  l1          ``msg_dim`` components with the L1 penalty (and the L1 schedules); the readout mixes them
  kl          ``msg_dim`` means and log-variances with the KL penalty, as the paper's KL model

Like the paper's model it has two forward paths that give the same numbers (a test checks outputs and
gradients): ``forward``, dense over all n (n - 1) edges of a batch of graphs, which training uses, and
``forward_pyg``, a torch-geometric MessagePassing module on a batched edge list.

Because a = F / m is built in, the network cannot fit the accelerations with anything but pair forces
(plus g), and its messages are read as forces directly: the message analysis and the distillation judge
them exactly as they judge the paper's models (R² of a linear fit on the true force), but here that
fit is the identity. Edges are the complete directed graph of raysym.graph.complete_edges.
"""

from __future__ import annotations

import torch
from torch import nn

from raysym.graph import GNOutput, complete_edges, kl_messages, message_passing, mlp
from raysym.names import NEWTONIAN_MESSAGES as MESSAGE_FORMS

NODE_TERM_HIDDEN = 32  # the non-pairwise term is small: a damping is linear in v


def edge_inputs(x_receiver: torch.Tensor, x_sender: torch.Tensor, dim: int) -> torch.Tensor:
    """[dx, r, m1, m2, q1, q2] per edge, (..., dim + 5), from the receiver's and the sender's node features
    (..., 2 dim + 2) = [pos, vel, q, m]; 1 = receiver, 2 = sender, dx = x_sender - x_receiver."""
    q, m = 2 * dim, 2 * dim + 1
    dx = x_sender[..., :dim] - x_receiver[..., :dim]
    r = torch.sqrt((dx * dx).sum(-1, keepdim=True))
    return torch.cat(
        [
            dx,
            r,
            x_receiver[..., m : m + 1],
            x_sender[..., m : m + 1],
            x_receiver[..., q : q + 1],
            x_sender[..., q : q + 1],
        ],
        dim=-1,
    )


class NewtonianGN(nn.Module):
    """Edge model on relative inputs, sum, a = readout(sum) / m (+ g(v, q, m)). Same call signature and
    output as :class:`raysym.model.GraphNetwork`'s dense path."""

    def __init__(
        self,
        dim: int,
        hidden: int = 300,
        layers: int = 3,
        messages: str = "bottleneck",
        msg_dim: int = 100,
        node_term: bool = False,
    ):
        super().__init__()
        if messages not in MESSAGE_FORMS:
            raise ValueError(f"unknown message form {messages!r}; known: {MESSAGE_FORMS}")
        self.model, self.dim, self.messages_form = "newtonian", dim, messages
        self.msg_dim = dim if messages == "bottleneck" else msg_dim
        self.edge_model = mlp(dim + 5, 2 * self.msg_dim if messages == "kl" else self.msg_dim, hidden, layers)
        self.readout = None if messages == "bottleneck" else nn.Linear(self.msg_dim, dim, bias=False)
        # g(v, q, m): velocity-dependent forces per unit mass (damping); None when off
        self.node_term = mlp(dim + 2, dim, NODE_TERM_HIDDEN, 2) if node_term else None

    def edge_messages(self, inputs: torch.Tensor, noise: torch.Tensor | None = None):
        """(messages, mu, logvar) for edge inputs (..., dim + 5); mu and logvar only for the KL form
        (sampled in training, the means at evaluation)."""
        out = self.edge_model(inputs)
        return kl_messages(out, self.training, noise) if self.messages_form == "kl" else (out, None, None)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> GNOutput:
        """x: (batch, n, 2 dim + 2) = [pos, vel, q, m]. acc: (batch, n, dim); messages: one row per edge,
        receiver-major, (batch * n * (n - 1), message size)."""
        batch, n, _ = x.shape
        dim = self.dim
        recv, send = complete_edges(n, x.device)
        if noise is not None:
            noise = noise.reshape(batch, len(recv), -1)
        messages, mu, logvar = self.edge_messages(edge_inputs(x[:, recv], x[:, send], dim), noise)
        summed = messages.reshape(batch, n, n - 1, self.msg_dim).sum(dim=2)
        acc = self.node_update(x, summed)
        flat = lambda t: None if t is None else t.reshape(-1, t.shape[-1])
        return GNOutput(acc, flat(messages), flat(mu), flat(logvar))

    def node_update(self, x: torch.Tensor, summed: torch.Tensor) -> torch.Tensor:
        """a = readout(summed messages) / m (+ g(v, q, m)), for node features x (..., 2 dim + 2)."""
        dim = self.dim
        force = summed if self.readout is None else self.readout(summed)
        acc = force / x[..., 2 * dim + 1 : 2 * dim + 2]
        if self.node_term is not None:
            acc = acc + self.node_term(x[..., dim:])
        return acc

    def forward_pyg(self, x: torch.Tensor, edge_index: torch.Tensor, noise: torch.Tensor | None = None) -> GNOutput:
        """MessagePassing forward. x: (nodes, 2 dim + 2); edge_index: (2, edges), row 0 senders, row 1
        receivers. acc: (nodes, dim)."""
        if getattr(self, "_pyg", None) is None:
            object.__setattr__(self, "_pyg", _message_passing(self))  # not a submodule: no extra weights
        return self._pyg(x, edge_index, noise)


def _message_passing(gn: NewtonianGN):
    """The Newtonian GN as a MessagePassing module (shares its weights)."""
    return message_passing(
        lambda x_i, x_j, noise: gn.edge_messages(edge_inputs(x_i, x_j, gn.dim), noise), gn.node_update
    )
