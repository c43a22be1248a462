"""A bias-free ReLU MLP: the network of the MNIST-1k grokking recipe (Liu, Michaud, Tegmark, "Omnigrok",
arXiv 2210.01117), as used by GrokAlign (arXiv 2506.12284) in ``sslkit grok --setup digits``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BiasFreeMLP"]


class BiasFreeMLP(nn.Module):
    """ReLU MLP without biases, ``(B, D) -> (B, C)``: positively homogeneous, so f(x) = J(x) x.

    Weights start at PyTorch's default Linear init times ``init_scale`` (the "x8" large
    initialisation that makes MNIST-1k grok, arXiv 2210.01117).
    """

    def __init__(self, d_in: int, width: int, depth: int, d_out: int, init_scale: float = 1.0):
        super().__init__()
        dims = [d_in] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], d_out, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(init_scale)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous input the Jacobian is taken with respect to: the pixels themselves."""
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)
