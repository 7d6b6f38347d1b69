"""Message regularisers, each normalised as the mean over all edges of the batch of a per-edge sum
over message components (so the penalty does not grow with batch size or graph size, and covers every
graph of the batch: the original notebook penalised the first graph only).

* L1:  mean_edges sum_k |m_k|
* KL, Gaussian prior N(0, 1):  mean_edges sum_k 1/2 (mu_k^2 + sigma_k^2 - log sigma_k^2)
  (the paper's form: the exact KL minus the constant 1/2 per component, which has no gradient)
* KL, Laplace prior Laplace(0, 1) (the 2024 reproduction's proposal), exact:
  KL(N(mu, s^2) || Laplace(0, 1)) = E|x| - 1/2 log(2 pi e s^2) + log 2,
  with E|x| = s sqrt(2/pi) exp(-mu^2 / 2 s^2) + mu (1 - 2 Phi(-mu / s)).
"""

from __future__ import annotations

import math

import torch

from raysym.names import PRIORS  # noqa: F401 -- re-exported: the prior names live with every other config name


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
