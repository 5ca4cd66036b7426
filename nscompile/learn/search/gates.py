"""Hard-concrete L0 gates (Louizos, Welling and Kingma, 2018), one scalar per stream and order.

A gate has one parameter `log_alpha`. In training it samples
`z = clamp(sigmoid((logit(u) + log_alpha) / beta) * (zeta - gamma) + gamma, 0, 1)` with
`u ~ U(0, 1)`; in evaluation `z = clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)`.
The expected L0 norm (the probability that `z != 0`) is
`sigmoid(log_alpha - beta * log(-gamma / zeta))`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BETA = 0.66
GAMMA = -0.1
ZETA = 1.1
INIT_KEEP = 0.9
_SHIFT = BETA * math.log(-GAMMA / ZETA)


class HardConcreteGates(nn.Module):
    """`count` independent hard-concrete gates; `log_alpha` starts at logit(`init_keep`)."""

    def __init__(self, count: int, init_keep: float = INIT_KEEP) -> None:
        super().__init__()
        start = math.log(init_keep / (1.0 - init_keep))
        self.log_alpha = nn.Parameter(torch.full((count,), start))

    def sample(self) -> torch.Tensor:
        """A training draw of every gate, in [0, 1]; differentiable in `log_alpha`."""
        u = torch.rand_like(self.log_alpha).clamp(1e-6, 1.0 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / BETA)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def deterministic(self) -> torch.Tensor:
        """The evaluation value of every gate, in [0, 1]."""
        return (torch.sigmoid(self.log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def expected_l0(self) -> torch.Tensor:
        """The probability that each gate is non-zero (differentiable)."""
        return torch.sigmoid(self.log_alpha - _SHIFT)
