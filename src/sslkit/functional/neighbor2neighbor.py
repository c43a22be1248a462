"""Neighbor2Neighbor self-supervised denoising (Huang et al., arXiv 2101.02824), as configured in
"Ditch the Denoiser" (arXiv 2505.12191, ``specs/noisy-dinov2.md`` step 2): the random neighbour
sub-sampler, the regularised loss, its γ ramp and the learning-rate halvings.

Sub-sampler: split the image into 2×2 cells with positions 0 TL, 1 TR, 2 BL, 3 BR. Per cell draw one
ordered pair uniformly from ``NEIGHBOR_PAIRS`` (two 4-neighbours, never the diagonal); ``g1(y)`` takes
the first pixel of every cell and ``g2(y)`` the second, giving two H/2×W/2 images. All channels share
the draw. The same draw must also be applied to ``f̄(y)`` (the network on the full image, no grad).

Loss: ``L = mean((f(g1 y) − g2 y)²) + γ·mean((f(g1 y) − g2 y − (g1 f̄(y) − g2 f̄(y)))²)``.

Example::

    pairs = sample_neighbor_pairs(y.shape, generator=g)            # (B, H/2, W/2, 2)
    g1y, g2y = neighbor_subsample(y, pairs[..., 0]), neighbor_subsample(y, pairs[..., 1])
    with torch.no_grad():
        full = f(y)
    loss, rec, reg = neighbor2neighbor_loss(f(g1y), g2y, neighbor_subsample(full, pairs[..., 0]),
                                            neighbor_subsample(full, pairs[..., 1]), gamma_ramp(epoch, epochs))
"""

from __future__ import annotations

import torch

__all__ = ["NEIGHBOR_PAIRS", "sample_neighbor_pairs", "neighbor_subsample", "neighbor2neighbor_loss",
           "gamma_ramp", "lr_factor"]

# Ordered (first, second) cell positions, 0 TL, 1 TR, 2 BL, 3 BR: the 8 ordered horizontal/vertical
# neighbour pairs (the spec's order, which is the reference's idx_pair).
NEIGHBOR_PAIRS = torch.tensor([[0, 1], [0, 2], [1, 3], [2, 3], [1, 0], [2, 0], [3, 1], [3, 2]], dtype=torch.long)


def sample_neighbor_pairs(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None,
                          device: torch.device | str | None = None) -> torch.Tensor:
    """Draw one ordered neighbour pair per 2×2 cell.

    shape: the image batch shape (B, C, H, W) (C is ignored: channels share the draw), H and W even.
    Returns ``pairs`` (B, H/2, W/2, 2) long: cell positions (0 TL, 1 TR, 2 BL, 3 BR) of g1 and g2.
    """
    if len(shape) != 4:
        raise ValueError(f"sample_neighbor_pairs: expected a (B, C, H, W) shape, got {tuple(shape)}.")
    batch, _, height, width = shape
    if height % 2 or width % 2:
        raise ValueError(f"sample_neighbor_pairs: H and W must be even (2×2 cells), got {height}×{width}; crop first.")
    choice = torch.randint(0, len(NEIGHBOR_PAIRS), (batch, height // 2, width // 2), generator=generator)
    return NEIGHBOR_PAIRS[choice].to(device if device is not None else "cpu")


def neighbor_subsample(images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Take, in every 2×2 cell, the pixel at ``positions`` (0 TL, 1 TR, 2 BL, 3 BR).

    images: (B, C, H, W), H and W even; positions: (B, H/2, W/2) long. Returns (B, C, H/2, W/2).
    Differentiable in ``images``.
    """
    batch, channels, height, width = images.shape
    if height % 2 or width % 2:
        raise ValueError(f"neighbor_subsample: H and W must be even, got {height}×{width}.")
    if positions.shape != (batch, height // 2, width // 2):
        raise ValueError(f"neighbor_subsample: positions must be {(batch, height // 2, width // 2)}, "
                         f"got {tuple(positions.shape)}.")
    # (B, C, H/2, 2, W/2, 2) -> (B, C, H/2, W/2, 4): the cell's pixels in row-major order r*2 + c.
    cells = images.reshape(batch, channels, height // 2, 2, width // 2, 2).permute(0, 1, 2, 4, 3, 5)
    cells = cells.reshape(batch, channels, height // 2, width // 2, 4)
    index = positions.to(images.device).unsqueeze(1).unsqueeze(-1).expand(batch, channels, -1, -1, 1)
    return torch.gather(cells, -1, index).squeeze(-1)


def neighbor2neighbor_loss(denoised_sub1: torch.Tensor, noisy_sub2: torch.Tensor, full_sub1: torch.Tensor,
                           full_sub2: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The regularised Neighbor2Neighbor loss (arXiv 2101.02824, Eq. 7; the reference's loss1 + Lambda·loss2).

    denoised_sub1: f(g1(y)); noisy_sub2: g2(y); full_sub1, full_sub2: g1(f̄(y)), g2(f̄(y)) where f̄(y) was
    computed without gradient (they are detached here too). All (B, C, H/2, W/2).
    Returns (loss, reconstruction, regulariser) with ``loss = reconstruction + gamma·regulariser``,
    each a mean over all elements.
    """
    diff = denoised_sub1 - noisy_sub2
    expected_diff = (full_sub1 - full_sub2).detach()
    reconstruction = torch.mean(diff ** 2)
    regulariser = torch.mean((diff - expected_diff) ** 2)
    return reconstruction + gamma * regulariser, reconstruction, regulariser


def gamma_ramp(epoch: int, epochs: int, max_gamma: float = 2.0) -> float:
    """γ_e = max_gamma·e/E for epochs e = 1..E (the spec's γ_e = 2e/E; the reference's increase_ratio = 2)."""
    if epochs < 1 or not 1 <= epoch <= epochs:
        raise ValueError(f"gamma_ramp: need 1 <= epoch <= epochs, got epoch={epoch}, epochs={epochs}.")
    return max_gamma * epoch / epochs


def lr_factor(epoch: int, epochs: int, halvings_at_percent: tuple[int, ...] = (20, 40, 60, 80)) -> float:
    """Learning-rate multiplier for epoch e = 1..E: halved from epochs ⌊0.2E⌋, ⌊0.4E⌋, ⌊0.6E⌋, ⌊0.8E⌋ on.

    Matches the reference's ``MultiStepLR(milestones=[int(20·E/100) − 1, ...], gamma=0.5)`` stepped once
    after every epoch, including its behaviour for tiny E: a milestone that falls before epoch 1
    (⌊fE⌋ = 0) never fires. For E = 100 the rate is halved from epochs 20, 40, 60 and 80.
    """
    if epochs < 1 or not 1 <= epoch <= epochs:
        raise ValueError(f"lr_factor: need 1 <= epoch <= epochs, got epoch={epoch}, epochs={epochs}.")
    # Integer arithmetic: ⌊p·E/100⌋ exactly, where float products like 0.6·35 could land just below.
    thresholds = [percent * epochs // 100 for percent in halvings_at_percent]
    fired = sum(1 for t in thresholds if t >= 1 and epoch >= t)
    return 0.5 ** fired
