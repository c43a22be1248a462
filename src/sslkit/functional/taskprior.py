"""Task priors: a model's expected score and its variance over a whole distribution of tasks.

Closed forms of arXiv 2507.09871 (Task Priors). A *task* on ``n`` evaluation samples is a random
"same-label" graph ``G ∈ {0,1}^{n×n}`` with ``G_ij ~ Bernoulli(σ(K_ij / T))`` independently over all
``n²`` ordered pairs (diagonal included), where ``K`` is the *prior* kernel. The score of a model
with kernel ``M`` on task ``G`` is the alignment ``S(G) = Σ_ij M_ij G_ij``, so::

    E[S]   = Σ_ij M_ij σ(K_ij/T)
    Var[S] = Σ_ij M_ij² σ(K_ij/T) (1 − σ(K_ij/T))

Convention (spec choice, matching ``compute_expectation_variance(K, M, T)`` of the reference
``taskpriors/core.py``): the sigmoid is applied to the **prior** kernel ``K``; the model kernel
``M`` only weighs the pairs. Every function here takes ``model_kernel`` and ``prior_kernel`` by
name so the two cannot be swapped silently.

Three ways to evaluate the closed forms:

- :func:`expectation_variance` — dense ``n×n`` tensors, float64 (the reference formula).
- :func:`expectation_variance_blockwise` — exact, streamed over ``block×block`` tiles of kernels
  that are evaluated on the fly from features or labels (:class:`BlockKernel`); memory
  ``O(n·d + block²)``, never an ``n×n`` matrix.
- :func:`expectation_variance_sampled` — unbiased estimate from random pairs with a normal
  confidence interval, for millions of samples.

:func:`label_prior_moments_lowrank` is a fourth, exact ``O(n·r²)`` route for the special case of the
label prior with a cosine/linear model kernel; it is used to check the streamed result at sizes the
dense formula cannot hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "KERNELS",
    "BlockKernel",
    "CenteredKernel",
    "DenseKernel",
    "LinearKernel",
    "MeanKernel",
    "PairwiseDistances",
    "RBFKernel",
    "SampledEstimate",
    "block_kernel_from_features",
    "center_normalise_block_kernel",
    "center_normalise_kernel",
    "cosine_kernel",
    "expectation_variance",
    "expectation_variance_blockwise",
    "expectation_variance_sampled",
    "label_block_kernel",
    "label_kernel",
    "label_prior_moments_lowrank",
    "linear_kernel",
    "mean_block_kernel",
    "median_pairwise_distance",
    "model_kernel",
    "model_kernel_factors",
    "rbf_kernel",
]

KERNELS = ("cosine", "linear", "rbf")

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called after each unit of work (a block, a chunk of pairs)."""


def _temperatures(temperature: float | Sequence[float]) -> tuple[list[float], bool]:
    scalar = isinstance(temperature, (int, float))
    temps = [float(temperature)] if scalar else [float(t) for t in temperature]
    if not temps or not all(math.isfinite(t) and t > 0 for t in temps):
        raise ValueError(f"temperature must be > 0 (one value or a list), got {temperature!r}.")
    return temps, scalar


def _check_kind(kind: str) -> None:
    if kind not in KERNELS:
        raise ValueError(f"Unknown kernel {kind!r}; use one of {list(KERNELS)}.")


# --------------------------------------------------------------------------- dense kernels


def cosine_kernel(features: Tensor) -> Tensor:
    """Cosine kernel ``M_ij = ⟨f_i, f_j⟩ / (‖f_i‖ ‖f_j‖)``. features: (n, d) -> (n, n) float64.

    A zero row gets a zero row/column (the reference divides by the norm and would give NaN).
    """
    unit = F.normalize(features.double(), dim=1)
    return unit @ unit.T


def linear_kernel(features: Tensor) -> Tensor:
    """Linear kernel ``M = F Fᵀ``. features: (n, d) -> (n, n) float64."""
    f = features.double()
    return f @ f.T


def rbf_kernel(features: Tensor, median: float | None = None) -> Tensor:
    """RBF kernel of the reference ``core.py``: ``M_ij = exp(−‖f_i − f_j‖ / (2 m²))``.

    The distance is **not** squared and ``m`` is the median over all ``n²`` pairwise distances,
    diagonal zeros included (``torch.median``'s lower median). features: (n, d) -> (n, n) float64.
    """
    dist = torch.cdist(features.double(), features.double())
    dist.fill_diagonal_(0.0)
    m = float(dist.median()) if median is None else float(median)
    if not m > 0:
        raise ValueError("rbf kernel: the median pairwise distance is 0 (more than half the pairs coincide); "
                         "use the cosine or linear kernel, or pass a positive median.")
    return torch.exp(-dist / (2.0 * m * m))


def model_kernel(features: Tensor, kind: str = "cosine") -> Tensor:
    """Dense model kernel of ``kind`` ('cosine', 'linear', 'rbf'). features: (n, d) -> (n, n) float64."""
    _check_kind(kind)
    return {"cosine": cosine_kernel, "linear": linear_kernel, "rbf": rbf_kernel}[kind](features)


def label_kernel(labels: Tensor) -> Tensor:
    """Prior kernel from labels ``K_ij = 1[y_i = y_j]``. labels: (n,) int -> (n, n) float64."""
    _check_labels(labels)
    return (labels[:, None] == labels[None, :]).double()


def center_normalise_kernel(kernel: Tensor) -> Tensor:
    """``H K H / ‖H K H‖_F`` with ``H = I − 11ᵀ/n``: the preprocessing of the reference evaluation.

    kernel: (n, n) -> (n, n) float64.
    """
    k = kernel.double()
    k = k - k.mean(0, keepdim=True)
    k = k - k.mean(1, keepdim=True)
    norm = torch.linalg.matrix_norm(k)
    if not norm > 0:
        raise ValueError("Cannot normalise a kernel whose centred version is zero (all samples look the same).")
    return k / norm


def expectation_variance(model_kernel: Tensor, prior_kernel: Tensor,
                         temperature: float | Sequence[float] = 1.0) -> tuple[Tensor, Tensor]:
    """Dense closed forms (arXiv 2507.09871): ``E[S] = Σ M σ(K/T)``, ``Var[S] = Σ M² σ(K/T)(1 − σ(K/T))``.

    Args:
        model_kernel: M (n, n), the model's kernel (weights of the pairs).
        prior_kernel: K (n, n), the prior kernel; ``σ(K/T)`` is the probability of "same label".
        temperature: T > 0, or a list of temperatures.

    Returns:
        ``(expectation, variance)`` float64, 0-dim for one temperature, (len(T),) for a list.
    """
    temps, scalar = _temperatures(temperature)
    m, k = model_kernel.double(), prior_kernel.double()
    if m.shape != k.shape or m.ndim != 2:
        raise ValueError(f"model_kernel {tuple(m.shape)} and prior_kernel {tuple(k.shape)} must be the same (n, n).")
    exps, vars_ = [], []
    for t in temps:
        p = torch.sigmoid(k / t)
        exps.append((m * p).sum())
        vars_.append((m * m * p * torch.sigmoid(-k / t)).sum())  # σ(−x) = 1 − σ(x), without cancellation
    e, v = torch.stack(exps), torch.stack(vars_)
    return (e[0], v[0]) if scalar else (e, v)


# --------------------------------------------------------------------------- block kernels


def _check_labels(labels: Tensor) -> None:
    if labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be a (n,) integer tensor, got {tuple(labels.shape)} {labels.dtype}.")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("The label prior needs a label for every sample, but some labels are < 0 (unlabelled); "
                         "use a model prior instead.")


def _slice_len(s: slice) -> int:
    return s.stop - s.start


class BlockKernel:
    """A symmetric-or-not ``n×n`` kernel evaluated on demand, never materialised.

    Subclasses implement ``block(rows, cols)`` (a ``(len(rows), len(cols))`` tile in ``dtype``) and
    ``pairs(i, j)`` (the entries ``K[i, j]`` for index tensors of equal length).
    """

    n: int
    dtype: torch.dtype = torch.float32
    symmetric: bool = True

    def block(self, rows: slice, cols: slice) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def pairs(self, i: Tensor, j: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def dense(self) -> Tensor:
        """The full (n, n) matrix; only for small n (tests, plots)."""
        return self.block(slice(0, self.n), slice(0, self.n))


class LinearKernel(BlockKernel):
    """``K = U Uᵀ`` from factors ``U`` (n, r): the linear, cosine (U = unit rows) and label (U = one-hot)
    kernels, their averages (concatenated, scaled factors) and their centred versions (centred factors).

    Keeping the factors lets centring, normalisation and averaging happen exactly in factor space.
    """

    def __init__(self, factors: Tensor, dtype: torch.dtype = torch.float32):
        if factors.ndim != 2:
            raise ValueError(f"factors must be (n, r), got {tuple(factors.shape)}.")
        self.factors64 = factors.double()
        self.factors = factors.to(dtype).contiguous()
        self.n, self.dtype = factors.shape[0], dtype

    def block(self, rows: slice, cols: slice) -> Tensor:
        return self.factors[rows] @ self.factors[cols].T

    def pairs(self, i: Tensor, j: Tensor) -> Tensor:
        return (self.factors[i] * self.factors[j]).sum(1)


class PairwiseDistances:
    """Euclidean distances ``‖f_i − f_j‖`` in tiles, from ``‖a‖² + ‖b‖² − 2⟨a, b⟩``.

    Features are centred first (distances are translation invariant) so the fp32 cancellation
    in the expansion is as small as it can be. The diagonal of a diagonal tile is set to exactly 0.
    """

    def __init__(self, features: Tensor, dtype: torch.dtype = torch.float32, chunk: int = 1 << 15):
        n = features.shape[0]
        # Centred in float64 a chunk of rows at a time: no full-size float64 copy of the features.
        mean = sum(features[s:s + chunk].double().sum(0, keepdim=True) for s in range(0, n, chunk)) / n
        self.x = torch.empty(features.shape, dtype=dtype)
        max_norm = 0.0
        for start in range(0, n, chunk):
            rows = features[start:start + chunk].double() - mean
            max_norm = max(max_norm, float(rows.norm(dim=1).max()))
            self.x[start:start + chunk] = rows
        self.sq = (self.x * self.x).sum(1)
        self.n, self.dtype = n, dtype
        # Any computed distance is ≤ 2·max‖x‖ up to rounding; 1 % margin covers the rounding.
        self.upper_bound = 2.0 * max_norm * 1.01 + 1e-30

    def block(self, rows: slice, cols: slice) -> Tensor:
        d2 = torch.addmm(self.sq[rows, None] + self.sq[None, cols], self.x[rows], self.x[cols].T, alpha=-2.0)
        d = d2.clamp_min_(0.0).sqrt_()
        if rows.start == cols.start and _slice_len(rows) == _slice_len(cols):
            d.fill_diagonal_(0.0)
        return d

    def pairs(self, i: Tensor, j: Tensor) -> Tensor:
        d2 = self.sq[i] + self.sq[j] - 2.0 * (self.x[i] * self.x[j]).sum(1)
        d = d2.clamp_min(0.0).sqrt()
        return torch.where(i == j, torch.zeros_like(d), d)


class RBFKernel(BlockKernel):
    """``K_ij = exp(−‖f_i − f_j‖ / (2 m²))`` (unsquared distance, reference ``core.py``), m = ``bandwidth``."""

    def __init__(self, features: Tensor, bandwidth: float, dtype: torch.dtype = torch.float32):
        if not bandwidth > 0:
            raise ValueError(f"rbf bandwidth (median distance) must be > 0, got {bandwidth!r}.")
        self.distances = PairwiseDistances(features, dtype)
        self.bandwidth = float(bandwidth)
        self.n, self.dtype = self.distances.n, dtype
        self._scale = -1.0 / (2.0 * self.bandwidth ** 2)

    def block(self, rows: slice, cols: slice) -> Tensor:
        return self.distances.block(rows, cols).mul_(self._scale).exp_()

    def pairs(self, i: Tensor, j: Tensor) -> Tensor:
        return torch.exp(self.distances.pairs(i, j) * self._scale)


class DenseKernel(BlockKernel):
    """A user-supplied ``n×n`` kernel (a tensor or a NumPy array, e.g. a read-only memory map)."""

    def __init__(self, matrix: Tensor | np.ndarray, dtype: torch.dtype = torch.float32):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"A kernel must be a square (n, n) matrix, got shape {tuple(matrix.shape)}.")
        self.matrix = matrix
        self.n, self.dtype = matrix.shape[0], dtype
        self.symmetric = self._is_symmetric(block=2048)

    def _tile(self, rows: slice, cols: slice) -> Tensor:
        tile = self.matrix[rows, cols]
        if isinstance(tile, np.ndarray):
            tile = torch.from_numpy(np.array(tile))  # a copy: memory-mapped files are read-only
        return tile

    def _is_symmetric(self, block: int) -> bool:
        for i0 in range(0, self.n, block):
            for j0 in range(i0, self.n, block):
                rows, cols = slice(i0, min(i0 + block, self.n)), slice(j0, min(j0 + block, self.n))
                if not torch.equal(self._tile(rows, cols), self._tile(cols, rows).T):
                    return False
        return True

    def block(self, rows: slice, cols: slice) -> Tensor:
        return self._tile(rows, cols).to(self.dtype)

    def pairs(self, i: Tensor, j: Tensor) -> Tensor:
        if isinstance(self.matrix, np.ndarray):
            return torch.from_numpy(np.asarray(self.matrix[i.numpy(), j.numpy()])).to(self.dtype)
        return self.matrix[i, j].to(self.dtype)


class MeanKernel(BlockKernel):
    """The average ``(1/m) Σ_k K_k`` of block kernels that are not all linear (e.g. RBF ones)."""

    def __init__(self, kernels: Sequence[BlockKernel]):
        if not kernels or len({k.n for k in kernels}) != 1:
            raise ValueError("MeanKernel needs at least one kernel, all of the same size n.")
        self.kernels = list(kernels)
        self.n, self.dtype = kernels[0].n, kernels[0].dtype
        self.symmetric = all(k.symmetric for k in kernels)

    def block(self, rows: slice, cols: slice) -> Tensor:
        out = self.kernels[0].block(rows, cols).to(self.dtype)
        for k in self.kernels[1:]:
            out = out + k.block(rows, cols).to(self.dtype)
        return out.div_(len(self.kernels))

    def pairs(self, i: Tensor, j: Tensor) -> Tensor:
        return torch.stack([k.pairs(i, j).to(self.dtype) for k in self.kernels]).mean(0)


class CenteredKernel(BlockKernel):
    """``(K − r 1ᵀ − 1 cᵀ + g) / s``, i.e. ``H K H / ‖H K H‖_F``, with row means ``r``, column means ``c``,
    grand mean ``g`` and ``s = ‖H K H‖_F``; built by :func:`center_normalise_block_kernel`."""

    def __init__(self, base: BlockKernel, row_means: Tensor, col_means: Tensor, grand_mean: float, scale: float):
        self.base, self.n, self.dtype = base, base.n, base.dtype
        self.symmetric = base.symmetric
        self.row_means, self.col_means = row_means.double(), col_means.double()
        self.grand_mean, self.scale = float(grand_mean), float(scale)

    # Centring subtracts numbers of the kernel's own size to leave much smaller ones (a nearly
    # constant RBF kernel centres to ~1 % of its values), so it is done in float64.
    def block(self, rows: slice, cols: slice) -> Tensor:
        out = self.base.block(rows, cols).double()
        out = out - self.row_means[rows, None] - self.col_means[None, cols]
        return out.add_(self.grand_mean).div_(self.scale).to(self.dtype)

    def pairs(self, i: Tensor, j: Tensor) -> Tensor:
        out = self.base.pairs(i, j).double() - self.row_means[i] - self.col_means[j]
        return ((out + self.grand_mean) / self.scale).to(self.dtype)


def _blocks(n: int, block_size: int, symmetric: bool):
    """Yield ``(rows, cols, weight)`` covering all n² entries; with symmetry, only j ≥ i tiles, weighted 2
    off the diagonal."""
    starts = range(0, n, block_size)
    for bi, i0 in enumerate(starts):
        rows = slice(i0, min(i0 + block_size, n))
        for j0 in (starts[bi:] if symmetric else starts):
            cols = slice(j0, min(j0 + block_size, n))
            yield rows, cols, (1.0 if (not symmetric or i0 == j0) else 2.0)


def _num_blocks(n: int, block_size: int, symmetric: bool) -> int:
    b = -(-n // block_size)
    return b * (b + 1) // 2 if symmetric else b * b


def model_kernel_factors(features: Tensor, kind: str = "cosine") -> Tensor:
    """Factors ``U`` with ``M = U Uᵀ`` for the linear-type kernels. features (n, d) -> (n, d) float64."""
    if kind == "cosine":
        return F.normalize(features.double(), dim=1)
    if kind == "linear":
        return features.double()
    raise ValueError(f"Kernel {kind!r} has no finite feature factors; only 'cosine' and 'linear' do.")


def median_pairwise_distance(features: Tensor, method: str = "exact", *, block_size: int = 1024,
                             num_pairs: int = 1_000_000, seed: int = 0, bins: int = 65536,
                             max_candidates: int = 1 << 22, dtype: torch.dtype = torch.float32,
                             progress: Progress | None = None) -> float:
    """Median of all ``n²`` pairwise distances (diagonal zeros included), the RBF bandwidth of ``core.py``.

    ``method="exact"``: exact selection without an ``n×n`` matrix by streaming histogram refinement:
    each pass over the distance tiles histograms the values still in play into ``bins`` bins, keeps
    the bin holding the target rank, and once at most ``max_candidates`` values remain (two passes
    in practice, since 65 536 bins split 10¹⁰ distances into bins of ~10⁵-10⁶) collects them and
    selects exactly. The result equals ``torch.median`` of the full matrix of the *same* computed
    distances (lower median, rank ``(n²−1)//2``). Cost: 2-3 passes of ``O(n²·d)``.

    ``method="sampled"`` (stated approximation): the lower median of ``num_pairs`` ordered pairs drawn
    uniformly with replacement (diagonal included). Its quantile level is ``0.5 ± 0.5/√num_pairs``
    (1 s.d., order-statistic asymptotics); with 10⁶ pairs the returned distance lies between the
    exact 0.4985 and 0.5015 quantiles with probability ≈ 0.997. Cost: ``O(num_pairs·d)``.

    features: (n, d). Returns a Python float.
    """
    if method not in ("exact", "sampled"):
        raise ValueError(f"median method must be 'exact' or 'sampled', got {method!r}.")
    dist = PairwiseDistances(features, dtype)
    if method != "exact":
        return _sampled_median(dist, num_pairs, seed)
    return _exact_median(dist, block_size, bins, max_candidates, progress)


def _sampled_median(dist: PairwiseDistances, num_pairs: int, seed: int) -> float:
    """Lower median of ``num_pairs`` ordered pairs drawn uniformly with replacement (``method="sampled"``)."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for start in range(0, num_pairs, 1 << 16):
        m = min(1 << 16, num_pairs - start)
        i = torch.randint(0, dist.n, (m,), generator=g)
        j = torch.randint(0, dist.n, (m,), generator=g)
        values.append(dist.pairs(i, j))
    values = torch.cat(values)
    return float(values.kthvalue((values.numel() - 1) // 2 + 1).values)


def _bin_index(values: Tensor, lo: float, inv_width: float, bins: int) -> Tensor:
    # One expression, evaluated identically in every pass, so bin membership is consistent across passes.
    return ((values - lo) * inv_width).floor_().clamp_(0, bins - 1).long()


def _exact_median(dist: PairwiseDistances, block_size: int, bins: int, max_candidates: int,
                  progress: Progress | None) -> float:
    n = dist.n
    total = n * n
    target = (total - 1) // 2  # torch.median's lower median
    levels: list[tuple[float, float, int]] = []  # (lo, inv_width, chosen bin) of every refinement so far
    window_lo, window_hi = 0.0, dist.upper_bound
    candidates = total
    rank = target  # rank of the median among the values still in play
    tiles = _num_blocks(n, block_size, True)
    while True:
        finest = (window_hi - window_lo) <= 4 * np.spacing(np.float32(max(window_hi, 1e-30)))
        if candidates <= max_candidates or finest:
            return _select_in_window(dist, levels, bins, block_size, rank, candidates, finest, tiles, progress)
        inv_width = bins / (window_hi - window_lo)
        counts = torch.zeros(bins, dtype=torch.float64)
        for done, (rows, cols, w) in enumerate(_blocks(n, block_size, True), 1):
            if progress:
                progress(done, tiles)
            d = dist.block(rows, cols)
            mask = _in_window(d, levels, bins)
            picked = d[mask] if mask is not None else d.reshape(-1)
            if picked.numel():
                counts += torch.bincount(_bin_index(picked, window_lo, inv_width, bins), minlength=bins).double() * w
        cum = counts.cumsum(0)
        # float64 rank: a float32 one would be off by up to 2⁸ at n² = 10¹⁰ and could pick the wrong bin.
        chosen = int(torch.searchsorted(cum, torch.tensor(float(rank), dtype=torch.float64), right=True))
        below = float(cum[chosen - 1]) if chosen > 0 else 0.0
        rank -= below
        candidates = int(counts[chosen])
        levels.append((window_lo, inv_width, chosen))
        window_lo, window_hi = window_lo + chosen / inv_width, window_lo + (chosen + 1) / inv_width


def _in_window(d: Tensor, levels: list[tuple[float, float, int]], bins: int) -> Tensor | None:
    mask = None
    for lo, inv_width, chosen in levels:
        m = _bin_index(d, lo, inv_width, bins) == chosen
        mask = m if mask is None else mask & m
    return mask


def _select_in_window(dist: PairwiseDistances, levels: list[tuple[float, float, int]], bins: int, block_size: int,
                      rank: float, candidates: int, finest: bool, tiles: int, progress: Progress | None) -> float:
    """Collection pass: gather the values still in play (with multiplicity) and pick the one of ``rank``."""
    n = dist.n
    if not finest:
        # Preallocated once: per-tile small tensors kept alive between large temporaries would fragment
        # the heap and grow the resident memory far beyond the few MB the candidates need.
        values = torch.empty(candidates, dtype=dist.dtype)
        weights = torch.empty(candidates, dtype=torch.float64)
        filled = 0
        for done, (rows, cols, w) in enumerate(_blocks(n, block_size, True), 1):
            d = dist.block(rows, cols)
            mask = _in_window(d, levels, bins)
            picked = d[mask] if mask is not None else d.reshape(-1)
            values[filled:filled + picked.numel()] = picked
            weights[filled:filled + picked.numel()] = w
            filled += picked.numel()
            if progress:
                progress(done, tiles)
        values, weights = values[:filled].double(), weights[:filled]
    else:
        # The window is down to a few representable floats: many tied values, tallied by value.
        tally: dict[float, float] = {}
        for done, (rows, cols, w) in enumerate(_blocks(n, block_size, True), 1):
            d = dist.block(rows, cols)
            mask = _in_window(d, levels, bins)
            u, c = torch.unique(d[mask] if mask is not None else d, return_counts=True)
            for value, count in zip(u.tolist(), c.tolist()):
                tally[value] = tally.get(value, 0.0) + count * w
            if progress:
                progress(done, tiles)
        values = torch.tensor(list(tally), dtype=torch.float64)
        weights = torch.tensor(list(tally.values()), dtype=torch.float64)
    order = values.argsort()
    cum = weights[order].cumsum(0)
    idx = int(torch.searchsorted(cum, torch.tensor(float(rank), dtype=torch.float64), right=True))
    return float(values[order][idx])


def block_kernel_from_features(features: Tensor, kind: str = "cosine", *, bandwidth: float | None = None,
                               median: str = "exact", dtype: torch.dtype = torch.float32,
                               block_size: int = 1024, progress: Progress | None = None) -> BlockKernel:
    """A model's kernel of ``kind`` as a :class:`BlockKernel`. features: (n, d).

    For 'rbf', ``bandwidth`` defaults to :func:`median_pairwise_distance` with ``median`` ('exact' or
    'sampled').
    """
    _check_kind(kind)
    if kind == "rbf":
        if bandwidth is None:
            bandwidth = median_pairwise_distance(features, median, block_size=block_size, dtype=dtype,
                                                 progress=progress)
        if not bandwidth > 0:
            raise ValueError("rbf kernel: the median pairwise distance is 0 (more than half the pairs coincide); "
                             "use the cosine or linear kernel.")
        return RBFKernel(features, bandwidth, dtype)
    return LinearKernel(model_kernel_factors(features, kind), dtype)


def label_block_kernel(labels: Tensor, dtype: torch.dtype = torch.float32) -> LinearKernel:
    """The label prior ``1[y_i = y_j]`` as a :class:`LinearKernel` on one-hot factors. labels: (n,) int."""
    _check_labels(labels)
    return LinearKernel(F.one_hot(labels.long()).double(), dtype)


def mean_block_kernel(kernels: Sequence[BlockKernel]) -> BlockKernel:
    """``(1/m) Σ_k K_k``. Linear kernels merge exactly into one: ``[U_1 … U_m]/√m``."""
    if kernels and all(isinstance(k, LinearKernel) for k in kernels):
        if len({k.n for k in kernels}) != 1:
            raise ValueError("Kernels to average must all have the same number of samples.")
        factors = torch.cat([k.factors64 for k in kernels], dim=1) / math.sqrt(len(kernels))
        return LinearKernel(factors, kernels[0].dtype)
    return MeanKernel(kernels)


def center_normalise_block_kernel(kernel: BlockKernel, block_size: int = 1024,
                                  progress: Progress | None = None) -> BlockKernel:
    """Blockwise ``H K H / ‖H K H‖_F`` (the reference evaluation's preprocessing).

    Linear kernels are centred exactly in factor space (``H U``), at ``O(n·r²)``. Others need one
    streamed pass for the row/column means and ``Σ K²``, using
    ``‖HKH‖_F² = Σ K² − n Σ_i r_i² − n Σ_j c_j² + n² g²`` (r, c row/column means, g grand mean).
    """
    if isinstance(kernel, LinearKernel):
        u = kernel.factors64 - kernel.factors64.mean(0, keepdim=True)
        norm = torch.linalg.matrix_norm(u.T @ u)  # ‖U Uᵀ‖_F = ‖Uᵀ U‖_F
        if not norm > 0:
            raise ValueError("Cannot normalise a kernel whose centred version is zero (all samples look the same).")
        return LinearKernel(u / norm.sqrt(), kernel.dtype)
    n = kernel.n
    row_sums = torch.zeros(n, dtype=torch.float64)
    col_sums = torch.zeros(n, dtype=torch.float64)
    sq_sum = 0.0
    total = _num_blocks(n, block_size, kernel.symmetric)
    for done, (rows, cols, w) in enumerate(_blocks(n, block_size, kernel.symmetric), 1):
        b = kernel.block(rows, cols).double()
        row_sums[rows] += b.sum(1)
        col_sums[cols] += b.sum(0)
        if w == 2.0:  # the mirrored tile (cols, rows) = bᵀ
            row_sums[cols] += b.sum(0)
            col_sums[rows] += b.sum(1)
        sq_sum += w * float((b * b).sum())
        if progress:
            progress(done, total)
    r, c = row_sums / n, col_sums / n
    g = float(r.mean())
    frob2 = sq_sum - n * float((r * r).sum()) - n * float((c * c).sum()) + n * n * g * g
    if not frob2 > 0:
        raise ValueError("Cannot normalise a kernel whose centred version is zero (all samples look the same).")
    return CenteredKernel(kernel, r, c, g, math.sqrt(frob2))


def expectation_variance_blockwise(model_kernel: BlockKernel, prior_kernel: BlockKernel,
                                   temperature: float | Sequence[float] = 1.0, *, block_size: int = 1024,
                                   progress: Progress | None = None) -> tuple[Tensor, Tensor]:
    """Exact ``E[S]`` and ``Var[S]`` (see module docstring) streamed over ``block×block`` tiles.

    Memory is ``O(n·d + block²)``: tiles of M and K are computed on the fly from features/labels.
    When both kernels are symmetric only tiles with j ≥ i are visited (off-diagonal ones count
    twice). Tiles are summed in the kernels' dtype with torch's pairwise (cascade) summation and
    the per-tile sums are accumulated in float64, which keeps the result within ~1e-7 relative of
    the dense float64 formula for float32 kernels.

    Returns ``(expectation, variance)`` float64, 0-dim for one temperature, (len(T),) for a list.
    """
    temps, scalar = _temperatures(temperature)
    n = model_kernel.n
    if prior_kernel.n != n:
        raise ValueError(f"model kernel has n={n} samples but prior kernel has n={prior_kernel.n}.")
    symmetric = model_kernel.symmetric and prior_kernel.symmetric
    exp_sum = [0.0] * len(temps)
    var_sum = [0.0] * len(temps)
    total = _num_blocks(n, block_size, symmetric)
    buffers: dict[tuple, list[Tensor]] = {}
    for done, (rows, cols, w) in enumerate(_blocks(n, block_size, symmetric), 1):
        m = model_kernel.block(rows, cols)
        k = prior_kernel.block(rows, cols).to(m.dtype)
        # Scratch tiles reused across blocks: fresh n×n-tile allocations (page faults) would
        # otherwise cost as much as the arithmetic.
        if m.shape not in buffers:
            buffers[m.shape] = [torch.empty(m.shape, dtype=m.dtype) for _ in range(3)]
        logits, p, scratch = buffers[m.shape]
        m_sq = torch.mul(m, m, out=scratch) if len(temps) == 1 else m * m
        for t_index, t in enumerate(temps):
            torch.div(k, t, out=logits)
            torch.sigmoid(logits, out=p)
            # p (1 − p) as σ(x)·σ(−x): p − p² is 0 in float32 once p rounds to 1.
            var_terms = logits.neg_().sigmoid_().mul_(p)
            exp_sum[t_index] += w * float(p.mul_(m).sum())
            var_sum[t_index] += w * float(var_terms.mul_(m_sq).sum())
        if progress:
            progress(done, total)
    e = torch.tensor(exp_sum, dtype=torch.float64)
    v = torch.tensor(var_sum, dtype=torch.float64)
    return (e[0], v[0]) if scalar else (e, v)


@dataclass(frozen=True)
class SampledEstimate:
    """An unbiased estimate with its standard error and a two-sided normal confidence interval."""

    estimate: float
    stderr: float
    low: float
    high: float
    confidence: float
    num_pairs: int

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


def expectation_variance_sampled(model_kernel: BlockKernel, prior_kernel: BlockKernel, temperature: float = 1.0,
                                 *, num_pairs: int = 1_000_000, confidence: float = 0.95, seed: int = 0,
                                 chunk: int = 1 << 16, progress: Progress | None = None
                                 ) -> tuple[SampledEstimate, SampledEstimate]:
    """Unbiased estimates of ``E[S]`` and ``Var[S]`` from random pairs, with confidence intervals.

    The ``n`` diagonal terms are summed exactly (``O(n·d)``); the ``n(n−1)`` off-diagonal ordered
    pairs are sampled uniformly with replacement (``i`` uniform, ``j`` uniform among the others), so
    ``Σ_offdiag ≈ n(n−1) · mean`` is unbiased with standard error ``n(n−1)·s/√num_pairs``. The
    interval is ``estimate ± z·stderr`` (CLT; ``z`` the normal quantile of ``confidence``). Cost
    ``O((n + num_pairs)·d)``, memory ``O(n·d + chunk·d)``.

    Returns ``(expectation, variance)`` as :class:`SampledEstimate`.
    """
    temps, _ = _temperatures(temperature)
    if len(temps) != 1:
        raise ValueError("expectation_variance_sampled takes one temperature; call it once per temperature.")
    t = temps[0]
    n = model_kernel.n
    if prior_kernel.n != n or n < 2:
        raise ValueError(f"Kernels must share n ≥ 2 samples (model n={n}, prior n={prior_kernel.n}).")
    if num_pairs < 2:
        raise ValueError(f"num_pairs must be ≥ 2, got {num_pairs}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")

    def terms(i: Tensor, j: Tensor) -> tuple[Tensor, Tensor]:
        m = model_kernel.pairs(i, j).double()
        logits = prior_kernel.pairs(i, j).double() / t
        p = torch.sigmoid(logits)
        return m * p, m * m * p * torch.sigmoid(-logits)

    diag_e = diag_v = 0.0
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(start + chunk, n))
        a, b = terms(idx, idx)
        diag_e += float(a.sum())
        diag_v += float(b.sum())

    g = torch.Generator().manual_seed(seed)
    # Running count/mean/M2 per statistic, merged chunk by chunk (Chan et al.) to stay exact in fp64.
    stats = [[0, 0.0, 0.0], [0, 0.0, 0.0]]
    chunks = -(-num_pairs // chunk)
    for c in range(chunks):
        m = min(chunk, num_pairs - c * chunk)
        i = torch.randint(0, n, (m,), generator=g)
        j = (i + torch.randint(1, n, (m,), generator=g)) % n
        for s, x in zip(stats, terms(i, j)):
            count_b, mean_b = x.numel(), float(x.mean())
            m2_b = float(((x - mean_b) ** 2).sum())
            count_a, mean_a, m2_a = s
            count = count_a + count_b
            delta = mean_b - mean_a
            s[0], s[1] = count, mean_a + delta * count_b / count
            s[2] = m2_a + m2_b + delta * delta * count_a * count_b / count
        if progress:
            progress(c + 1, chunks)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    pairs_off = n * (n - 1)
    out = []
    for diag, (count, mean, m2) in zip((diag_e, diag_v), stats):
        estimate = diag + pairs_off * mean
        stderr = pairs_off * math.sqrt(m2 / (count - 1) / count)
        out.append(SampledEstimate(estimate, stderr, estimate - z * stderr, estimate + z * stderr,
                                   confidence, count))
    return out[0], out[1]


def label_prior_moments_lowrank(model_factors: Tensor, labels: Tensor,
                                temperature: float | Sequence[float] = 1.0) -> tuple[Tensor, Tensor]:
    """Exact ``E[S]``, ``Var[S]`` for the label prior and a model kernel ``M = U Uᵀ`` in ``O(n·r²)``.

    With ``K = 1[y_i = y_j]`` the probability takes two values, ``p₁ = σ(1/T)`` (same label) and
    ``p₀ = σ(0) = ½``, so ``E = p₀ ΣM + (p₁ − p₀) Σ_c ΣM_cc`` and similarly for the variance, with
    ``ΣM = ‖Σ_i u_i‖²``, ``ΣM_cc = ‖Σ_{i∈c} u_i‖²``, ``ΣM² = ‖UᵀU‖_F²``, ``ΣM²_cc = ‖U_cᵀU_c‖_F²``.
    An independent check of the streamed computation at sizes the dense formula cannot hold.

    model_factors: (n, r) (see :func:`model_kernel_factors`); labels: (n,) int ≥ 0.
    """
    temps, scalar = _temperatures(temperature)
    _check_labels(labels)
    u = model_factors.double()
    total = float(u.sum(0).square().sum())
    total_sq = float(torch.linalg.matrix_norm(u.T @ u) ** 2)
    same = same_sq = 0.0
    for c in labels.unique():
        uc = u[labels == c]
        same += float(uc.sum(0).square().sum())
        same_sq += float(torch.linalg.matrix_norm(uc.T @ uc) ** 2)
    exps, vars_ = [], []
    for t in temps:
        p1, p0 = 1.0 / (1.0 + math.exp(-1.0 / t)), 0.5
        v1, v0 = p1 * (1 - p1), p0 * (1 - p0)
        exps.append(p0 * total + (p1 - p0) * same)
        vars_.append(v0 * total_sq + (v1 - v0) * same_sq)
    e = torch.tensor(exps, dtype=torch.float64)
    v = torch.tensor(vars_, dtype=torch.float64)
    return (e[0], v[0]) if scalar else (e, v)
