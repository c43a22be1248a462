"""Representation metrics as pure functions (spec ``representation-metrics.md``).

Label-free quality of one representation: :func:`rankme`, :func:`lidar`, :func:`alpha_req`.
Similarity of two representations of the same samples: :func:`cka` (linear, RBF, biased or unbiased HSIC),
:func:`mutual_knn`, :func:`cknna`. Identifiability against known latents: :func:`linear_r2`, :func:`mcc`.

Conventions: ``Z`` is (n, d), one sample per row. Everything is computed in float64 and returned as a Python
float. Functions that need an (n, n) kernel say so; the kNN-based ones work in row blocks with top-k and
never hold an (n, n) matrix.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "alpha_req",
    "cka",
    "cknna",
    "hsic_biased",
    "hsic_unbiased",
    "lidar",
    "linear_cka",
    "linear_r2",
    "mcc",
    "mutual_knn",
    "nearest_neighbours",
    "rankme",
]


def _as_matrix(z: torch.Tensor, name: str = "Z", min_rows: int = 1) -> torch.Tensor:
    z = torch.as_tensor(z)
    if z.ndim != 2:
        raise ValueError(f"{name} must be a matrix (n, d) with one sample per row, got shape {tuple(z.shape)}.")
    if z.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {z.shape[0]}.")
    z = z.detach().double()
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return z


def _same_rows(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must describe the same samples: {x.shape[0]} rows vs {y.shape[0]} rows.")


def _entropy_rank(p: torch.Tensor) -> float:
    return float(torch.exp(-(p * torch.log(p)).sum()))


# ------------------------------------------------------------------------------------ single representation


def rankme(z: torch.Tensor, eps: float = 1e-7, spectrum: str = "singular") -> float:
    """RankMe, the smooth rank of an embedding matrix (Garrido et al., arXiv 2210.02885).

    ``p_k = σ_k / ‖σ‖₁ + ε`` with σ the singular values of the **uncentred** Z, and RankMe = exp(−Σ p_k log p_k),
    in [1, min(n, d)] (up to ε).

    Args:
        z: (n, d) embeddings.
        eps: ε = 1e-7 (the paper's value).
        spectrum: ``"singular"`` (σ, the paper) or ``"eig"`` (σ², the reptrix convention).
    """
    z = _as_matrix(z)
    if spectrum not in ("singular", "eig"):
        raise ValueError(f"spectrum must be 'singular' or 'eig', got {spectrum!r}.")
    sigma = torch.linalg.svdvals(z)
    if spectrum == "eig":
        sigma = sigma**2
    total = sigma.sum()
    if total <= 0:
        return 1.0  # the zero matrix has no directions; report the minimum rank, not NaN
    return _entropy_rank(sigma / total + eps)


def alpha_req(z: torch.Tensor, rel_threshold: float = 1e-10) -> float:
    """α-ReQ: the decay exponent α of the covariance eigenspectrum λ_i ∝ i^(−α) (Agrawal et al., NeurIPS 2022).

    λ₁ ≥ λ₂ ≥ … are the eigenvalues of the centred covariance of Z (n, d); α is the least-squares slope of
    log λ_i = a − α log i over every i with λ_i > ``rel_threshold``·λ₁ (spec default; the paper's fit range is
    not given).
    """
    z = _as_matrix(z, min_rows=2)
    centred = z - z.mean(0, keepdim=True)
    # Squared singular values of the centred data = (n−1)·eigenvalues: the scale drops out of the slope.
    lam = torch.linalg.svdvals(centred) ** 2 / (z.shape[0] - 1)
    if lam.numel() == 0 or lam[0] <= 0:
        raise ValueError("alpha_req: the representation is constant (zero covariance); α is undefined.")
    keep = lam > rel_threshold * lam[0]
    lam = lam[keep]
    if lam.numel() < 2:
        raise ValueError("alpha_req: fewer than two non-negligible eigenvalues; the power-law fit needs two.")
    log_i = torch.log(torch.arange(1, lam.numel() + 1, dtype=torch.float64))
    log_l = torch.log(lam)
    x = log_i - log_i.mean()
    slope = (x * (log_l - log_l.mean())).sum() / (x * x).sum()
    return float(-slope)


def lidar(views: torch.Tensor, delta: float = 1e-4, eps: float = 1e-8) -> float:
    """LiDAR, the smooth rank of the LDA matrix of surrogate classes (Thilak et al., arXiv 2312.04000).

    Args:
        views: (N, q, d) embeddings of N clean samples ("surrogate classes"), each seen in q augmented views.
        delta: δ added to the within-class covariance.
        eps: ε added to each eigenvalue before normalising.

    Returns:
        exp(entropy) of the eigenvalues of Σ_w^{−1/2} Σ_b Σ_w^{−1/2}, with
        Σ_b = (1/(N−1)) Σ_i (μ_i − μ)(μ_i − μ)ᵀ and Σ_w = (1/(N(q−1))) Σ_ij (e_ij − μ_i)(e_ij − μ_i)ᵀ + δI.
    """
    e = torch.as_tensor(views).detach().double()
    if e.ndim != 3:
        raise ValueError(f"lidar expects (N, q, d) views, got shape {tuple(e.shape)}.")
    n_cls, q, d = e.shape
    if n_cls < 2 or q < 2:
        raise ValueError(f"lidar needs at least 2 samples with at least 2 views each, got N={n_cls}, q={q}.")
    mu_i = e.mean(1)  # (N, d)
    between = mu_i - mu_i.mean(0, keepdim=True)
    sigma_b = between.t() @ between / (n_cls - 1)
    within = (e - mu_i[:, None]).reshape(-1, d)
    sigma_w = within.t() @ within / (n_cls * (q - 1)) + delta * torch.eye(d, dtype=e.dtype)
    w_eig, w_vec = torch.linalg.eigh(sigma_w)
    inv_sqrt = (w_vec * w_eig.clamp_min(1e-300).rsqrt()) @ w_vec.t()
    lda = inv_sqrt @ sigma_b @ inv_sqrt
    lam = torch.linalg.eigvalsh((lda + lda.t()) / 2).clamp_min(0.0)
    p = (lam + eps) / (lam + eps).sum()
    return _entropy_rank(p)


# ------------------------------------------------------------------------------------ kernels and HSIC


def hsic_biased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased HSIC estimator tr(KHLH)/(n−1)² with H = I − 11ᵀ/n (Gretton et al. 2005). K, L: (n, n)."""
    n = k.shape[0]
    kc = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()
    lc = l - l.mean(0, keepdim=True) - l.mean(1, keepdim=True) + l.mean()
    return (kc * lc).sum() / (n - 1) ** 2


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator (Song et al., JMLR 13, 2012), n ≥ 4. K, L: (n, n); diagonals are ignored.

    HSIC_u = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − (2/(n−2))·1ᵀK̃L̃1] / (n(n−3)), K̃, L̃ with zero diagonals.
    """
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"The unbiased HSIC needs at least 4 samples, got {n}.")
    kt = k.clone()
    lt = l.clone()
    kt.fill_diagonal_(0.0)
    lt.fill_diagonal_(0.0)
    trace = (kt * lt.t()).sum()
    sums = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    cross = (kt.sum(0) @ lt.sum(1)) * 2 / (n - 2)
    return (trace + sums - cross) / (n * (n - 3))


def _rbf_kernel(x: torch.Tensor, sigma: Optional[float]) -> torch.Tensor:
    sq = torch.cdist(x, x).pow(2)
    if sigma is None:
        # Spec choice: s = median off-diagonal distance (platonic-rep fixes s = 1; pass sigma=1.0 for that).
        n = x.shape[0]
        off = sq[~torch.eye(n, dtype=torch.bool)]
        sigma = float(off.median().sqrt()) if off.numel() else 1.0
        if sigma == 0.0:
            sigma = 1.0
    return torch.exp(-sq / (2.0 * sigma**2))


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA from features, never forming an (n, n) matrix (Kornblith et al., arXiv 1905.00414).

    ‖ỸᵀX̃‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F) with column-centred X̃ (n, d₁), Ỹ (n, d₂); equal to the kernel form with
    K = XXᵀ and the biased HSIC.
    """
    x, y = _as_matrix(x, "X", 2), _as_matrix(y, "Y", 2)
    _same_rows(x, y)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.t() @ x) ** 2
    norm = torch.linalg.matrix_norm(x.t() @ x) * torch.linalg.matrix_norm(y.t() @ y)
    return float(cross / norm) if norm > 0 else 0.0


def cka(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear", unbiased: bool = False,
        sigma: Optional[float] = None) -> float:
    """Centred kernel alignment HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) (arXiv 1905.00414).

    Args:
        x: (n, d₁); y: (n, d₂) — the same n samples.
        kernel: ``"linear"`` (K = XXᵀ) or ``"rbf"`` (K_ij = exp(−‖x_i − x_j‖²/(2s²))).
        unbiased: use the unbiased HSIC (Song et al. 2012; can be slightly negative) instead of the biased one.
        sigma: RBF bandwidth s; default the median off-diagonal distance, per representation.

    The biased linear case uses :func:`linear_cka` (no (n, n) matrix); the others build (n, n) kernels.
    """
    if kernel not in ("linear", "rbf"):
        raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}.")
    x, y = _as_matrix(x, "X", 2), _as_matrix(y, "Y", 2)
    _same_rows(x, y)
    if kernel == "linear" and not unbiased:
        return linear_cka(x, y)
    if kernel == "linear":
        k, l = x @ x.t(), y @ y.t()
    else:
        k, l = _rbf_kernel(x, sigma), _rbf_kernel(y, sigma)
    hsic = hsic_unbiased if unbiased else hsic_biased
    kl, kk, ll = hsic(k, l), hsic(k, k), hsic(l, l)
    denom = torch.sqrt(kk * ll)
    return float(kl / denom) if denom > 0 else 0.0


# ------------------------------------------------------------------------------------ neighbourhoods


def nearest_neighbours(z: torch.Tensor, k: int, block_size: int = 1024, normalize: bool = True) -> torch.Tensor:
    """Indices (n, k) of each row's k most similar other rows by inner product (cosine if ``normalize``).

    Computed ``block_size`` rows at a time with top-k; the row itself is excluded. Ties are broken by
    ``torch.topk``.
    """
    z = _as_matrix(z)
    n = z.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and n − 1 = {n - 1}, got {k}.")
    if normalize:
        z = F.normalize(z, dim=1)
    out = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, block_size):
        sims = z[start : start + block_size] @ z.t()  # (b, n)
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + start] = -math.inf
        out[start : start + block_size] = sims.topk(k, dim=1).indices
    return out


def _overlap_counts(a: torch.Tensor, b: torch.Tensor, block_size: int = 4096) -> torch.Tensor:
    """|row_i(a) ∩ row_i(b)| for index matrices (n, k) without repeated entries."""
    counts = torch.empty(a.shape[0], dtype=torch.long)
    for start in range(0, a.shape[0], block_size):
        ab = a[start : start + block_size, :, None] == b[start : start + block_size, None, :]
        counts[start : start + block_size] = ab.sum(dim=(1, 2))
    return counts


def mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int = 10, block_size: int = 1024) -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al., arXiv 2405.07987; platonic-rep ``metrics.py``).

    Rows are L2-normalised; N_A(i) are the k rows most similar to a_i (self excluded). Returns
    m = (1/n) Σ_i |N_A(i) ∩ N_B(i)| / k ∈ [0, 1]; independent representations give ≈ k/(n−1).

    Args:
        a: (n, d₁); b: (n, d₂) — the same n samples.
    """
    a, b = _as_matrix(a, "A", 2), _as_matrix(b, "B", 2)
    _same_rows(a, b)
    na, nb = nearest_neighbours(a, k, block_size), nearest_neighbours(b, k, block_size)
    return float(_overlap_counts(na, nb).double().mean() / k)


def cknna(a: torch.Tensor, b: torch.Tensor, k: int = 10, normalize: bool = True, unbiased: bool = True) -> float:
    """Centred kernel nearest-neighbour alignment (arXiv 2405.07987; platonic-rep ``metrics.py`` ``cknna``).

    K = AAᵀ, L = BBᵀ (rows L2-normalised when ``normalize``); α_ij = 1 if j is among the k nearest neighbours
    of i under both K and L (self excluded). sim(K, L) = HSIC_u(α∘K, α∘L) and
    CKNNA = sim(K, L)/√(sim(K, K)·sim(L, L)). With k = n − 1 it equals unbiased linear CKA. Builds (n, n) kernels.
    """
    a, b = _as_matrix(a, "A", 4), _as_matrix(b, "B", 4)
    _same_rows(a, b)
    n = a.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and n − 1 = {n - 1}, got {k}.")
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    kern_a, kern_b = a @ a.t(), b @ b.t()
    hsic = hsic_unbiased if unbiased else hsic_biased

    def neighbour_mask(kern: torch.Tensor) -> torch.Tensor:
        masked = kern.clone()
        masked.fill_diagonal_(-math.inf)
        idx = masked.topk(k, dim=1).indices
        return torch.zeros_like(kern).scatter_(1, idx, 1.0)

    mask_a, mask_b = neighbour_mask(kern_a), neighbour_mask(kern_b)

    def sim(mask_k: torch.Tensor, mask_l: torch.Tensor, kk: torch.Tensor, ll: torch.Tensor) -> torch.Tensor:
        both = mask_k * mask_l
        return hsic(both * kk, both * ll)

    s_ab = sim(mask_a, mask_b, kern_a, kern_b)
    s_aa = sim(mask_a, mask_a, kern_a, kern_a)
    s_bb = sim(mask_b, mask_b, kern_b, kern_b)
    denom = torch.sqrt(s_aa * s_bb)
    return float(s_ab / denom) if denom > 0 else 0.0


# ------------------------------------------------------------------------------------ identifiability


def linear_r2(h_fit: torch.Tensor, z_fit: torch.Tensor, h_test: torch.Tensor, z_test: torch.Tensor,
              ridge: float = 1e-6) -> float:
    """How linearly the latents z can be read out of a representation h: held-out R².

    Fits ẑ = W h + b by least squares with a ridge ``ridge`` on W (fit split), then returns the mean over latent
    dimensions of 1 − Σ(z − ẑ)²/Σ(z − z̄)² on the test split.

    Args:
        h_fit: (n, d) representation; z_fit: (n, m) true latents; h_test, z_test: the held-out pair.
    """
    h_fit, z_fit = _as_matrix(h_fit, "h_fit", 2), _as_matrix(z_fit, "z_fit", 2)
    h_test, z_test = _as_matrix(h_test, "h_test"), _as_matrix(z_test, "z_test")
    _same_rows(h_fit, z_fit)
    _same_rows(h_test, z_test)
    # Centre instead of appending a ones column, so the intercept is not shrunk by the ridge.
    h_mean, z_mean = h_fit.mean(0, keepdim=True), z_fit.mean(0, keepdim=True)
    hc, zc = h_fit - h_mean, z_fit - z_mean
    gram = hc.t() @ hc + ridge * torch.eye(hc.shape[1], dtype=hc.dtype)
    w = torch.linalg.solve(gram, hc.t() @ zc)  # (d, m)
    pred = (h_test - h_mean) @ w + z_mean
    sse = ((z_test - pred) ** 2).sum(0)
    sst = ((z_test - z_test.mean(0, keepdim=True)) ** 2).sum(0)
    if (sst <= 0).any():
        raise ValueError("linear_r2: a latent dimension is constant on the test split; R² is undefined there.")
    return float((1 - sse / sst).mean())


def _rank_columns(x: torch.Tensor) -> torch.Tensor:
    from scipy.stats import rankdata

    return torch.from_numpy(rankdata(x.numpy(), axis=0)).double()


# What each correlation of ``mcc`` correlates: Pearson the values, Spearman their ranks.
_CORRELATION_INPUTS = {"pearson": lambda x: x, "spearman": lambda x: _rank_columns(x)}


def mcc(z_hat: torch.Tensor, z: torch.Tensor, method: str = "pearson") -> float:
    """Mean correlation coefficient between learned and true latent dimensions.

    |ρ| between every learned dimension (columns of z_hat (n, d)) and every true one (z (n, m)); dimensions are
    matched one-to-one to maximise Σ|ρ| (Hungarian algorithm, scipy ``linear_sum_assignment``) and the mean
    matched |ρ| over min(d, m) pairs is returned. ``method="spearman"`` correlates ranks.
    """
    from scipy.optimize import linear_sum_assignment

    if method not in _CORRELATION_INPUTS:
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}.")
    z_hat, z = _as_matrix(z_hat, "z_hat", 2), _as_matrix(z, "z", 2)
    _same_rows(z_hat, z)
    z_hat, z = _CORRELATION_INPUTS[method](z_hat), _CORRELATION_INPUTS[method](z)
    a = z_hat - z_hat.mean(0, keepdim=True)
    b = z - z.mean(0, keepdim=True)
    a_norm, b_norm = a.norm(dim=0), b.norm(dim=0)
    if (a_norm == 0).any() or (b_norm == 0).any():
        raise ValueError("mcc: a dimension is constant; its correlation is undefined.")
    corr = ((a / a_norm).t() @ (b / b_norm)).abs().numpy()  # (d, m)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    return float(np.mean(corr[rows, cols]))
