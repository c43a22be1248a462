"""Gathering rows from every worker, with gradients flowing back to each worker's own rows.

Contrastive negatives and VICReg's batch statistics are defined over the *global* batch; computing
them per device silently changes the loss (a bug several libraries shipped). ``gather_with_grad``
concatenates every worker's rows in rank order and, unlike ``torch.distributed.all_gather``, keeps
the autograd graph: the backward pass sums the incoming gradients over workers and hands each
worker the slice of its own rows (``torch.distributed.nn.functional.all_gather``).
"""

from __future__ import annotations

import torch

__all__ = ["gather_with_grad", "world_size", "rank"]


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if _distributed() else 1


def rank() -> int:
    return torch.distributed.get_rank() if _distributed() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) on each of W workers -> (W*B, ...) in rank order; identity without distribution."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)
