"""Message regularisers, each normalised as the mean over all edges of the batch of a per-edge sum
over message components (so the penalty does not grow with batch size or graph size, and covers every
graph of the batch: the original notebook penalised the first graph only).

* L1:  mean_edges sum_k |m_k|
* KL, Gaussian prior N(0, 1):  mean_edges sum_k 1/2 (mu_k^2 + sigma_k^2 - log sigma_k^2)
  (the paper's form: the exact KL minus the constant 1/2 per component, which has no gradient)
* KL, Laplace prior Laplace(0, 1) (the 2024 reproduction's proposal), exact:
  KL(N(mu, s^2) || Laplace(0, 1)) = E|x| - 1/2 log(2 pi e s^2) + log 2,
  with E|x| = s sqrt(2/pi) exp(-mu^2 / 2 s^2) + mu (1 - 2 Phi(-mu / s)).

Units of the coefficient ("paper units", :data:`PAPER`). The data loss is a mean over nodes and components,
the penalty a mean over edges of a per-edge sum, and the coefficient in front of the penalty carries the
publications' meaning: raysym's ``alpha`` gives the same ratio of penalty to data loss as the original
notebook's coefficient of the same value (L1 1e-2, KL 1) for the same system, particle count and dim. The
notebook (MilesCranmer/symbolic_deep_learning, GN_Demo_Colab) minimises, per batch of B graphs,

    [ sum_{graphs, nodes, dims} |a - a_hat|  +  c * B * sum_{edges of one graph, k} |m_k| / n**2 * n ] / B
  = n * dim * MAE  +  c * (n - 1) * mean_edges sum_k |m_k|          (n (n - 1) edges per graph)

(KL: the same with 1/2 (mu^2 + sigma^2 - log sigma^2) in place of |m|). Divided by n * dim, that is raysym's
loss with ``alpha * paper_scale(n, dim)``, ``paper_scale = (n - 1) / (n dim)``: 3/8 for 4 particles in 2D,
1/4 in 3D. The 2024 reproduction gives its schedules (0.01 -> 0.1) in the notebook's coefficient, so they
take the same units (its code was not available to check line by line). Trials trained before this scale
existed ran with the coefficient applied as it stands (:data:`PER_EDGE`, a factor 1: 8/3 times the paper's
strength in 2D); their config.json has no ``penalty_units`` and reads as per_edge.
"""

from __future__ import annotations

import math

import torch

from raysym.names import PENALTY_UNITS, PRIORS  # noqa: F401 -- PRIORS re-exported: names live in raysym.names

PAPER, PER_EDGE = PENALTY_UNITS  # the notebook's meaning: (n - 1) / (n dim); the earlier per-edge scale: 1


def paper_scale(n: int, dim: int) -> float:
    """(n - 1) / (n dim): raysym's penalty times this, over its mean-based data loss, is the notebook's
    penalty over its summed data loss (module docstring). n particles, dim 2 or 3."""
    return (n - 1) / (n * dim)


def penalty_scale(units: str, n: int, dim: int) -> float:
    """The factor between a coefficient in ``units`` and raysym's per-edge penalty."""
    if units == PAPER:
        return paper_scale(n, dim)
    if units == PER_EDGE:
        return 1.0
    raise ValueError(f"unknown penalty units {units!r}; known: {PENALTY_UNITS}")


def l1(messages: torch.Tensor) -> torch.Tensor:
    """messages: (edges, components) -> scalar."""
    return messages.abs().sum(dim=-1).mean()


def kl_per_component(mu: torch.Tensor, logvar: torch.Tensor, prior: str = "gaussian") -> torch.Tensor:
    """Per edge and component KL term, same shape as mu."""
    if prior == "gaussian":
        return 0.5 * (mu**2 + torch.exp(logvar) - logvar)
    if prior == "laplace":
        s = torch.exp(0.5 * logvar)
        normal = torch.distributions.Normal(0.0, 1.0)
        mean_abs = s * math.sqrt(2 / math.pi) * torch.exp(-(mu**2) / (2 * s**2)) + mu * (1 - 2 * normal.cdf(-mu / s))
        return mean_abs - 0.5 * (math.log(2 * math.pi * math.e) + logvar) + math.log(2.0)
    raise ValueError(f"unknown prior {prior!r}; known: {PRIORS}")


def kl(mu: torch.Tensor, logvar: torch.Tensor, prior: str = "gaussian") -> torch.Tensor:
    """mu, logvar: (edges, components) -> scalar."""
    return kl_per_component(mu, logvar, prior).sum(dim=-1).mean()
