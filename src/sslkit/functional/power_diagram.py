"""Power-diagram geometry of TopK sparse autoencoders (SplInterp, arXiv 2505.11836, Sec. 3).

An encoder pre-activation ``z_i = w_iᵀx + b_i`` ranks latents exactly like the power distance

    ‖x − w_i‖² − r_i²,   r_i² = ‖w_i‖² + 2 b_i,

because ``‖x − w_i‖² − r_i² = ‖x‖² − 2 (w_iᵀx + b_i)`` and ``‖x‖²`` is the same for every latent.
So the active set of a by-value TopK SAE is the set of the K sites with the smallest power
distance: the input space is cut into the cells of a K-th-order power diagram, and on each cell
the SAE is one affine map (:func:`cell_affine_map`). K = 1 gives an ordinary power diagram; a
k-means codebook is the special case r_i = 0 (sites = centroids).

Conventions: ``w_enc`` is (d, m) (column i is the site w_i), ``b_enc`` (m,), ``w_dec`` (m, d),
``b_dec`` (d,), inputs ``x`` (N, d). Masks are bool (N, m), True = latent active.
"""

from __future__ import annotations

import torch

__all__ = [
    "power_sites",
    "power_distances",
    "topk_active_set",
    "power_active_set",
    "relu_active_set",
    "region_ids",
    "cell_affine_map",
    "piecewise_affine_reconstruction",
]


def power_sites(w_enc: torch.Tensor, b_enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sites and squared radii of the power diagram of an encoder.

    Args:
        w_enc: (d, m) encoder weights; column i is the site w_i.
        b_enc: (m,) encoder bias.

    Returns:
        ``sites`` (m, d) and ``radii_sq`` (m,) with r_i² = ‖w_i‖² + 2 b_i (may be negative: the
        "radius" is a weight, not a length).
    """
    sites = w_enc.t()
    return sites, sites.pow(2).sum(dim=1) + 2.0 * b_enc


def power_distances(x: torch.Tensor, sites: torch.Tensor, radii_sq: torch.Tensor,
                    chunk_size: int = 1024) -> torch.Tensor:
    """Power distances ‖x_n − w_i‖² − r_i², computed from the differences themselves.

    The squared Euclidean part is formed as a sum of squared differences (not the expanded
    ``‖x‖² − 2xᵀw + ‖w‖²``), so comparing these distances with encoder pre-activations tests the
    power-diagram identity rather than restating it.

    Args:
        x: (N, d) points.
        sites: (m, d).
        radii_sq: (m,).
        chunk_size: rows of ``x`` per block, to bound the (chunk, m, d) temporary.

    Returns:
        (N, m) power distances.
    """
    out = torch.empty(x.shape[0], sites.shape[0], dtype=torch.promote_types(x.dtype, sites.dtype),
                      device=x.device)
    for start in range(0, x.shape[0], chunk_size):
        block = x[start:start + chunk_size]
        out[start:start + chunk_size] = (block[:, None, :] - sites[None, :, :]).pow(2).sum(dim=-1) - radii_sq
    return out


def _mask_from_indices(indices: torch.Tensor, m: int) -> torch.Tensor:
    mask = torch.zeros(indices.shape[0], m, dtype=torch.bool, device=indices.device)
    return mask.scatter_(1, indices, True)


def topk_active_set(z: torch.Tensor, k: int, select: str = "value") -> torch.Tensor:
    """Active set of a TopK sparsifier.

    Args:
        z: (N, m) pre-activations.
        k: number of kept latents, 1 ≤ k ≤ m.
        select: ``"value"`` keeps the k largest z (exact power-diagram geometry); ``"abs"`` keeps
            the k largest |z| (the SplInterp reference experiments; not a power diagram).

    Returns:
        (N, m) bool mask with exactly k True entries per row.
    """
    if select == "value":
        scores = z
    elif select == "abs":
        scores = z.abs()
    else:
        raise ValueError(f"select must be 'value' or 'abs', got {select!r}.")
    if not 1 <= k <= z.shape[-1]:
        raise ValueError(f"k must be between 1 and the number of latents {z.shape[-1]}, got {k}.")
    return _mask_from_indices(scores.topk(k, dim=-1).indices, z.shape[-1])


def power_active_set(x: torch.Tensor, sites: torch.Tensor, radii_sq: torch.Tensor, k: int) -> torch.Tensor:
    """The K sites with the smallest power distance to each point: the cell of x in the K-th-order
    power diagram. Returns an (N, m) bool mask."""
    distances = power_distances(x, sites, radii_sq)
    return _mask_from_indices(distances.topk(k, dim=-1, largest=False).indices, sites.shape[0])


def relu_active_set(z: torch.Tensor) -> torch.Tensor:
    """Sign pattern of a ReLU SAE (its regions are those of a hyperplane arrangement): (N, m) bool."""
    return z > 0


def region_ids(active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Number the distinct active sets (cells) that occur.

    Args:
        active: (N, m) bool mask.

    Returns:
        ``ids`` (N,) long in [0, R) and ``patterns`` (R, m) bool, with ``patterns[ids[n]] ==
        active[n]``. Ids follow the lexicographic order of the patterns, so they do not depend on
        the order of the points.
    """
    patterns, ids = torch.unique(active, dim=0, return_inverse=True)
    return ids, patterns


def cell_affine_map(w_enc: torch.Tensor, b_enc: torch.Tensor, w_dec: torch.Tensor, b_dec: torch.Tensor,
                    active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine piece of an SAE on one cell: x̂ = x A + c for every x whose active set is S.

    From x̂ = W_decᵀ D_S (W_encᵀx + b_enc) + b_dec (arXiv 2505.11836, Sec. 3), in row-vector form
    A = W_enc D_S W_dec and c = b_enc D_S W_dec + b_dec.

    Args:
        active: (m,) bool mask S.

    Returns:
        ``A`` (d, d) and ``c`` (d,).
    """
    select = active.to(w_enc.dtype)
    a = (w_enc * select) @ w_dec
    c = (b_enc * select) @ w_dec + b_dec
    return a, c


def piecewise_affine_reconstruction(x: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor,
                                    w_dec: torch.Tensor, b_dec: torch.Tensor,
                                    active: torch.Tensor) -> torch.Tensor:
    """Reconstruct each point with the affine map of its own cell (one map per distinct cell).

    For a TopK-by-value SAE with ``active`` its own active sets this equals the forward pass;
    it exists to check that claim and to read the model as a spline.

    Args:
        x: (N, d); active: (N, m) bool.

    Returns:
        (N, d) reconstructions.
    """
    ids, patterns = region_ids(active)
    out = torch.empty_like(x)
    for r in range(patterns.shape[0]):
        rows = ids == r
        a, c = cell_affine_map(w_enc, b_enc, w_dec, b_dec, patterns[r])
        out[rows] = x[rows] @ a + c
    return out
