"""SimCLR's NT-Xent (normalised temperature-scaled cross-entropy) loss.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", arXiv
2002.05709, eq. (1): for a positive pair (i, j) among 2N views,
``l(i, j) = -log exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ)`` with cosine ``sim``; the
loss averages l over all 2N ordered positive pairs. With several workers the negatives are the
views of the *global* batch (google-research/simclr gathers them across TPU cores the same way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit.functional.gather import gather_with_grad, rank

__all__ = ["nt_xent_loss"]


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, gather: bool = True) -> torch.Tensor:
    """NT-Xent over the two views ``z1``, ``z2`` (B, D) of the same B images (row i ↔ row i).

    Each of the 2B local views is an anchor; its positive is the other view of its image and its
    negatives are all other views of the global batch (2·W·B − 2 of them with W workers). Returns
    the mean over this worker's 2B anchors, so averaging over workers (DDP's gradient mean) gives
    the loss of the global batch.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent_loss needs two (B, D) tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    if temperature <= 0:
        raise ValueError(f"nt_xent_loss: temperature must be positive, got {temperature}.")
    b = z1.shape[0]
    dtype = torch.promote_types(z1.dtype, torch.float32)
    local = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)  # (2B, D): [view 1; view 2]
    if gather:
        everyone1 = gather_with_grad(F.normalize(z1.to(dtype), dim=1))
        everyone2 = gather_with_grad(F.normalize(z2.to(dtype), dim=1))
        offset = rank() * b
    else:
        everyone1, everyone2 = F.normalize(z1.to(dtype), dim=1), F.normalize(z2.to(dtype), dim=1)
        offset = 0
    candidates = torch.cat([everyone1, everyone2])  # (2WB, D): [all view 1; all view 2]
    n_global = everyone1.shape[0]
    logits = local @ candidates.T / temperature  # (2B, 2WB)
    rows = torch.arange(2 * b, device=z1.device)
    own = torch.where(rows < b, rows + offset, rows - b + n_global + offset)  # each anchor's own column
    positive = torch.where(rows < b, own + n_global, own - n_global)
    logits = logits.masked_fill(F.one_hot(own, logits.shape[1]).bool(), float("-inf"))
    return F.cross_entropy(logits, positive)
