"""The Hamiltonian Graph Network of Cranmer et al. 2020 (their "FlatHGN"), ``model: hgn``.

Instead of messages that are summed into a force, the network learns a scalar energy:

    H(q, p) = sum over edges  H_pair(x_receiver, x_sender)  +  sum over nodes  H_self(x_node)

with x = [q, p, charge, mass] per node (q the position, p = m v the momentum; 2 dim + 2 numbers), and
H_pair, H_self MLPs with softplus activations (smooth, so H has the second derivatives training needs).
The dynamics are Hamilton's equations, taken by automatic differentiation:

    dq/dt = dH/dp,    dp/dt = -dH/dq,    so the predicted acceleration is  a = dv/dt = -(dH/dq) / m.

The model trains on the same simulations and loss as the message-passing GN (predicted accelerations).
Its regulariser is the L1 penalty, with the L1 schedules, on the energy terms: the mean over edges of
|H_pair| plus the mean over nodes of |H_self|, one value per edge and per node. (The original code's
penalty was taken over the wrong axis of the energy tensor.) The "messages" a trial analyses and
distils are the per-edge pair energies (edges, 1): the paper recovered H_pair ~ q1 q2 / r for charge.
Edges are the same complete directed graph as the GN's, so each unordered pair enters H twice.

Only the positions' gradient of H is trained, so the pair energy is fixed only up to terms that do not
depend on positions (a constant, c q1 q2, functions of the momenta or masses): a trained pair energy is
often q1 q2 (1/r - c), which is the same law. :meth:`HamiltonianGN.pair_forces` gives what is fixed,
the force each pair's two energies exert on the receiver; raysym judges the pair energy by it.
"""

from __future__ import annotations

import torch
from torch import nn

from raysym.graph import GNOutput, complete_edges, node_feature_size, reverse_edges


def softplus_mlp(n_in: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` hidden layers of ``hidden`` softplus units, then one linear output (a scalar energy)."""
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.Softplus()]
        width = hidden
    mods.append(nn.Linear(width, 1))
    return nn.Sequential(*mods)


class HamiltonianGN(nn.Module):
    """H = sum of pair energies over edges + sum of self energies over nodes; accelerations from
    Hamilton's equations. Same call signature and output as :class:`raysym.model.GraphNetwork`'s dense path."""

    def __init__(self, dim: int, hidden: int = 300, layers: int = 3):
        super().__init__()
        self.model, self.dim, self.msg_dim = "hgn", dim, 1
        features = node_feature_size(dim)
        self.pair_energy = softplus_mlp(2 * features, hidden, layers)
        self.self_energy = softplus_mlp(features, hidden, layers)

    def energies(self, q: torch.Tensor, p: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pair energies (batch, edges), self energies (batch, n)) for q, p (batch, n, dim) and
        other = [charge, mass] (batch, n, 2)."""
        x = torch.cat([q, p, other], dim=-1)
        recv, send = complete_edges(x.shape[1], x.device)
        pair = self.pair_energy(torch.cat([x[:, recv], x[:, send]], dim=-1)).squeeze(-1)
        return pair, self.self_energy(x).squeeze(-1)

    def pair_forces(self, x: torch.Tensor) -> torch.Tensor:
        """The force on each edge's receiver from the pair energies of that pair (the edge and its reverse),
        -d(H_pair(r, s) + H_pair(s, r)) / d q_r, shape (batch, edges, dim), for x (batch, n, 2 dim + 2) =
        [pos, vel, charge, mass]. Unlike the energies, it does not depend on the unfixed offsets."""
        dim = self.dim
        state = torch.cat([x[..., :dim], x[..., dim : 2 * dim] * x[..., -1:], x[..., 2 * dim :]], dim=-1)
        recv, send = complete_edges(x.shape[1], x.device)
        with torch.enable_grad():
            pairs = torch.cat([state[:, recv], state[:, send]], dim=-1).detach().requires_grad_(True)
            grad = torch.autograd.grad(self.pair_energy(pairs).sum(), pairs)[0]  # each energy reads its own row
        features = state.shape[-1]
        d_receiver, d_sender = grad[..., :dim], grad[..., features : features + dim]
        reverse = torch.from_numpy(reverse_edges(x.shape[1])).to(x.device)
        return -(d_receiver + d_sender[:, reverse])

    def hamiltonian(self, q: torch.Tensor, p: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """H of each graph, (batch,)."""
        pair, own = self.energies(q, p, other)
        return pair.sum(-1) + own.sum(-1)

    def time_derivatives(self, q: torch.Tensor, p: torch.Tensor, other: torch.Tensor, create_graph: bool = False):
        """(dq/dt, dp/dt, pair energies, self energies) from Hamilton's equations; q, p (batch, n, dim)."""
        with torch.enable_grad():  # also under torch.no_grad(): the dynamics are a gradient
            q = q.detach().requires_grad_(True) if not q.requires_grad else q
            p = p.detach().requires_grad_(True) if not p.requires_grad else p
            pair, own = self.energies(q, p, other)
            H = pair.sum() + own.sum()  # graphs are independent: one backward gives every graph's gradient
            dH_dq, dH_dp = torch.autograd.grad(H, (q, p), create_graph=create_graph)
        return dH_dp, -dH_dq, pair, own

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> GNOutput:
        """x: (batch, n, 2 dim + 2) = [pos, vel, charge, mass]. acc: (batch, n, dim); messages: the pair
        energies, (batch * n * (n - 1), 1); node_energies: (batch * n, 1)."""
        dim = self.dim
        pos, vel, other = x[..., :dim], x[..., dim : 2 * dim], x[..., 2 * dim :]
        mass = x[..., -1:]
        _, dp_dt, pair, own = self.time_derivatives(pos, mass * vel, other, create_graph=self.training)
        acc = dp_dt / mass
        if not self.training:  # nothing downstream differentiates through evaluation
            acc, pair, own = acc.detach(), pair.detach(), own.detach()
        return GNOutput(acc, pair.reshape(-1, 1), node_energies=own.reshape(-1, 1))
