"""Closed-form optima of linear reconstruction (RC) and linear joint-embedding (JE) SSL.

Van Assel, Ibrahim, Biancalani, Regev, Balestriero, *Joint-Embedding vs Reconstruction: Provable
Benefits of Latent Space Prediction for Self-Supervised Learning* (arXiv 2505.12477, NeurIPS 2025),
Theorems 1 and 2, as restated in ``specs/linear-ssl-theory.md``.

Notation (all float64 numpy). Data ``X`` (n, d) with rows ``x_i``; augmentations ``τ ~ 𝒯``;
``k`` output dimensions.

* ``x̄_i = E_τ[τ(x_i)]``, ``X̄`` (n, d) stacks them.
* ``Σ = (1/n) Σ_i Cov_τ[τ(x_i)]`` (d, d), the augmentation covariance.
* ``G = (1/n) X̄ᵀX̄`` and ``S = (1/n) Σ_i E[τ(x_i) τ(x_i)ᵀ] = G + Σ`` (d, d). The matrix ``A`` of
  Theorem 1, ``(1/n) X̄ᵀX̄ + Σ``, is the same matrix as ``S``.
* ``B = (1/n) XᵀX̄`` (d, d), the clean/augmented cross moment.

Everything the closed forms and the objectives need is in :class:`AugmentationMoments`, computed
from an additive covariance (exact), from given views, or by Monte Carlo from an augmentation
function (256 views per sample by default, the spec's library choice).

Reconstruction (Theorem 1): minimise ``(1/n) Σ_i E_τ ‖x_i − D E τ(x_i)‖²`` over ``E`` (k, d), ``D``
(d, k). With the SVD ``B S^{-1/2} = R Φ Pᵀ``: ``E* = T P_kᵀ S^{-1/2}``, ``D* = R_k Φ_k T⁻¹`` for any
invertible ``T`` (k, k); only ``D*E*`` is identifiable; the optimum is ``(1/n)‖X‖² − Σ_{j≤k} φ_j²``.

Joint embedding (Theorem 2): minimise ``(1/n) Σ_i E ‖W τ₁(x_i) − W τ₂(x_i)‖²`` (τ₁, τ₂ i.i.d.) over
``W`` (k, d) subject to ``W S Wᵀ = I_k``. With the eigendecomposition ``S^{-1/2} G S^{-1/2} = Q Ω Qᵀ``
(ω descending): ``W* = U Q_kᵀ S^{-1/2}`` for any orthogonal ``U``; the optimal loss is
``2 (k − Σ_{j≤k} ω_j)``. The invariance loss equals ``2 tr(W Σ Wᵀ)`` because ``S − G = Σ``.

Additive Gaussian noise ``τ(x) = x + ε``, ``ε ~ N(0, C)``, with ``Γ = XᵀX/n`` and ``C`` diagonal
(per coordinate ``γ_j``, ``c_j``): JE keeps the top-k coordinates of ``ω_j = γ_j/(γ_j + c_j)``, RC the
top-k of ``φ_j² = γ_j²/(γ_j + c_j)``. A signal coordinate ``(γ_s, c_s)`` beats a nuisance
``(γ_n, c_n)`` for JE iff ``c_n > γ_n c_s/γ_s`` (linear in γ_n) and for RC iff
``c_n > γ_n² (γ_s + c_s)/γ_s² − γ_n`` (quadratic in γ_n); the JE threshold is the lower one exactly
when ``γ_n > γ_s``. (These thresholds are derived from the theorems in the spec, not quoted from the
paper; the paper's α parametrisation of alignment is not used.)

Ridge (spec hyperparameter table): the inverse square root of ``S`` adds ``1e-10 · tr(S)/d · I`` only
when ``S`` is numerically singular; the returned solutions say which ridge was used.

Inputs may be numpy arrays or CPU torch tensors; outputs are float64 numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

__all__ = [
    "AugmentationMoments",
    "JointEmbeddingSolution",
    "ReconstructionSolution",
    "augmentation_moments_additive",
    "augmentation_moments_from_views",
    "augmentation_moments_monte_carlo",
    "auto_ridge",
    "inverse_sqrt_psd",
    "je_keeps_signal",
    "je_margin",
    "je_spectrum",
    "je_threshold",
    "joint_embedding_closed_form",
    "joint_embedding_constraint",
    "joint_embedding_objective",
    "joint_embedding_objective_views",
    "kept_coordinates",
    "rc_keeps_signal",
    "rc_margin",
    "rc_spectrum",
    "rc_threshold",
    "reconstruction_closed_form",
    "reconstruction_objective",
    "reconstruction_objective_views",
    "subspace_overlap",
]

RIDGE_SCALE = 1e-10
"""Ridge ``RIDGE_SCALE · tr(S)/d`` added to a singular ``S`` (spec hyperparameter table)."""

DEFAULT_NUM_VIEWS = 256
"""Monte Carlo views per sample for a general augmentation (spec hyperparameter table)."""

Ridge = float | Literal["auto"]


def _float64(a, name: str) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor; torch stays an optional dependency of this module
        a = a.detach().cpu().numpy()
    array = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def _data_matrix(x) -> np.ndarray:
    x = _float64(x, "x")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must be a non-empty (n, d) matrix, got shape {x.shape}.")
    return x


def _symmetric(m: np.ndarray) -> np.ndarray:
    return 0.5 * (m + m.T)


# --------------------------------------------------------------------------- augmentation moments


@dataclass(frozen=True)
class AugmentationMoments:
    """The second moments of data and augmentations that both closed forms depend on.

    cross: (d, d) ``B = XᵀX̄/n``;  mean_gram: (d, d) ``G = X̄ᵀX̄/n``;  aug_cov: (d, d) ``Σ``;
    data_power: ``‖X‖²_F/n`` (the constant of the reconstruction objective);  n: samples.
    """

    cross: np.ndarray
    mean_gram: np.ndarray
    aug_cov: np.ndarray
    data_power: float
    n: int

    @property
    def d(self) -> int:
        return int(self.cross.shape[0])

    @property
    def second_moment(self) -> np.ndarray:
        """(d, d) ``S = G + Σ = (1/n) Σ_i E[τ(x_i) τ(x_i)ᵀ]`` (Theorem 1's ``A``)."""
        return _symmetric(self.mean_gram + self.aug_cov)


def augmentation_moments_additive(x, noise_cov) -> AugmentationMoments:
    """Exact moments of additive noise ``τ(x) = x + ε``, ``E[ε] = 0``, ``Cov[ε] = C``.

    x: (n, d);  noise_cov: (d, d) ``C``, or (d,) its diagonal. Then ``X̄ = X``, ``Σ = C``, ``G = XᵀX/n``.
    Only the first two moments of ε matter, so this is exact for any zero-mean noise, not only Gaussian.
    """
    x = _data_matrix(x)
    n, d = x.shape
    c = _float64(noise_cov, "noise_cov")
    if c.ndim == 1:
        c = np.diag(c)
    if c.shape != (d, d):
        raise ValueError(f"noise_cov must be (d, d) or (d,) with d = {d}, got shape {c.shape}.")
    c = _symmetric(c)
    if np.linalg.eigvalsh(c)[0] < -1e-12 * max(1.0, float(np.abs(c).max())):
        raise ValueError("noise_cov must be positive semi-definite.")
    gram = _symmetric(x.T @ x) / n
    return AugmentationMoments(cross=gram.copy(), mean_gram=gram, aug_cov=c,
                               data_power=float(np.sum(x * x) / n), n=n)


def augmentation_moments_from_views(x, views) -> AugmentationMoments:
    """Moments of the empirical augmentation distribution given by sampled views.

    x: (n, d) clean samples;  views: (V, n, d), ``views[v, i] = τ_v(x_i)``.

    Each observed view of a sample counts as equally likely (plug-in moments, ``Cov`` with 1/V), so the
    closed forms built on these moments are the exact optima of the objectives evaluated on exactly
    these views (:func:`reconstruction_objective_views`, :func:`joint_embedding_objective_views`).
    """
    x = _data_matrix(x)
    views = _float64(views, "views")
    if views.ndim != 3 or views.shape[1:] != x.shape or views.shape[0] == 0:
        raise ValueError(f"views must be (V, n, d) with (n, d) = {x.shape}, got shape {views.shape}.")
    n = x.shape[0]
    mean = views.mean(axis=0)
    centred = (views - mean).reshape(-1, x.shape[1])
    aug_cov = _symmetric(centred.T @ centred) / (n * views.shape[0])
    return AugmentationMoments(cross=x.T @ mean / n, mean_gram=_symmetric(mean.T @ mean) / n, aug_cov=aug_cov,
                               data_power=float(np.sum(x * x) / n), n=n)


def augmentation_moments_monte_carlo(x, augment: Callable[[np.ndarray, np.random.Generator], np.ndarray],
                                     num_views: int = DEFAULT_NUM_VIEWS, seed: int = 0) -> AugmentationMoments:
    """Monte Carlo moments of a general augmentation, streamed view by view (never (V, n, d) in memory).

    x: (n, d);  ``augment(x, rng) -> (n, d)`` draws one view of every sample (e.g. masking, cropping of
    a flattened signal);  num_views: V (default 256).  Equal to :func:`augmentation_moments_from_views`
    on the same draws; the per-sample covariances are accumulated with Welford's update because the
    augmentation variance can be tiny next to the data's, where ``E[ττᵀ] − x̄x̄ᵀ`` would cancel.
    """
    x = _data_matrix(x)
    if num_views < 1:
        raise ValueError(f"num_views must be ≥ 1, got {num_views}.")
    rng = np.random.default_rng(seed)
    n, d = x.shape
    mean = np.zeros_like(x)
    scatter = np.zeros((d, d))
    for v in range(1, num_views + 1):
        view = _float64(augment(x, rng), "augment(x, rng)")
        if view.shape != x.shape:
            raise ValueError(f"augment(x, rng) must return an array of shape {x.shape}, got {view.shape}.")
        delta = view - mean
        mean += delta / v
        scatter += delta.T @ (view - mean)
    return AugmentationMoments(cross=x.T @ mean / n, mean_gram=_symmetric(mean.T @ mean) / n,
                               aug_cov=_symmetric(scatter) / (n * num_views), data_power=float(np.sum(x * x) / n),
                               n=n)


# --------------------------------------------------------------------------- inverse square roots


def auto_ridge(matrix: np.ndarray) -> float:
    """The spec's ridge for a PSD matrix (d, d): ``1e-10 · tr/d`` if it is numerically singular, else 0.

    Singular means its smallest eigenvalue is ≤ d · machine-ε · its largest (the rank tolerance of
    ``numpy.linalg.matrix_rank``).
    """
    eig = np.linalg.eigvalsh(_symmetric(matrix))
    d = matrix.shape[0]
    if eig[-1] <= 0:
        raise ValueError("The second moment S is zero: the data and its augmentations are all zero.")
    if eig[0] < -np.sqrt(np.finfo(np.float64).eps) * eig[-1]:
        raise ValueError(f"The second moment S is not positive semi-definite (smallest eigenvalue {eig[0]:.3g}).")
    if eig[0] > d * np.finfo(np.float64).eps * eig[-1]:
        return 0.0
    return RIDGE_SCALE * float(np.trace(matrix)) / d


def inverse_sqrt_psd(matrix, ridge: Ridge = "auto") -> tuple[np.ndarray, float]:
    """``(M + ridge·I)^{-1/2}`` of a symmetric PSD matrix (d, d), and the ridge used.

    ridge: ``"auto"`` (the spec's choice, :func:`auto_ridge`) or a fixed value ≥ 0.
    """
    m = _symmetric(_float64(matrix, "matrix"))
    eps = auto_ridge(m) if ridge == "auto" else float(ridge)
    if eps < 0:
        raise ValueError(f"ridge must be ≥ 0 or 'auto', got {ridge!r}.")
    eig, vecs = np.linalg.eigh(m)
    shifted = np.clip(eig, 0.0, None) + eps  # round-off negatives of a PSD matrix are zeros
    if shifted[0] <= 0:
        raise ValueError("The matrix is singular; pass ridge='auto' or a ridge > 0.")
    return _symmetric((vecs / np.sqrt(shifted)) @ vecs.T), eps


def _check_k(k: int, d: int) -> int:
    if not 1 <= int(k) <= d:
        raise ValueError(f"k must be between 1 and d = {d}, got {k}.")
    return int(k)


# --------------------------------------------------------------------------- reconstruction


@dataclass(frozen=True)
class ReconstructionSolution:
    """Theorem 1 of arXiv 2505.12477.

    encoder: (k, d) ``E* = T P_kᵀ S^{-1/2}``;  decoder: (d, k) ``D* = R_k Φ_k T⁻¹``;
    singular_values: (d,) ``φ`` descending;  objective: the objective at (E*, D*);  ridge: added to S.
    """

    encoder: np.ndarray
    decoder: np.ndarray
    singular_values: np.ndarray
    objective: float
    ridge: float

    @property
    def product(self) -> np.ndarray:
        """(d, d) ``D*E*``, the only identifiable part (independent of T)."""
        return self.decoder @ self.encoder


def reconstruction_objective(encoder, decoder, moments: AugmentationMoments) -> float:
    """``(1/n) Σ_i E_τ ‖x_i − D E τ(x_i)‖²`` from moments: ``‖X‖²/n − 2 tr(M Bᵀ) + tr(M S Mᵀ)``, M = DE.

    encoder: (k, d);  decoder: (d, k).
    """
    product = _float64(decoder, "decoder") @ _float64(encoder, "encoder")
    return float(moments.data_power - 2.0 * np.sum(product * moments.cross)
                 + np.sum((product @ moments.second_moment) * product))


def reconstruction_objective_views(encoder, decoder, x, views) -> float:
    """The reconstruction objective evaluated literally on views: ``mean_{v,i} ‖x_i − D E views[v,i]‖²``.

    encoder: (k, d);  decoder: (d, k);  x: (n, d);  views: (V, n, d).
    """
    product = _float64(decoder, "decoder") @ _float64(encoder, "encoder")
    residual = _data_matrix(x)[None] - _float64(views, "views") @ product.T
    return float(np.mean(np.sum(residual * residual, axis=-1)))


def reconstruction_closed_form(moments: AugmentationMoments, k: int, transform=None,
                               ridge: Ridge = "auto") -> ReconstructionSolution:
    """Optimal linear encoder/decoder of the reconstruction objective (Theorem 1, arXiv 2505.12477).

    moments: :class:`AugmentationMoments` of (X, 𝒯);  k: code dimension (1 ≤ k ≤ d);
    transform: the invertible ``T`` (k, k) (default identity);  ridge: see :func:`inverse_sqrt_psd`.
    Returns E* (k, d), D* (d, k), φ (d,), the objective at (E*, D*) — which equals
    ``‖X‖²/n − Σ_{j≤k} φ_j²`` when no ridge was needed.
    """
    k = _check_k(k, moments.d)
    inv_sqrt, eps = inverse_sqrt_psd(moments.second_moment, ridge)
    r, phi, pt = np.linalg.svd(moments.cross @ inv_sqrt)
    t = np.eye(k) if transform is None else _float64(transform, "transform")
    if t.shape != (k, k):
        raise ValueError(f"transform must be (k, k) = ({k}, {k}), got {t.shape}.")
    encoder = t @ pt[:k] @ inv_sqrt
    decoder = (r[:, :k] * phi[:k]) @ np.linalg.inv(t)
    return ReconstructionSolution(encoder=encoder, decoder=decoder, singular_values=phi,
                                  objective=reconstruction_objective(encoder, decoder, moments), ridge=eps)


# --------------------------------------------------------------------------- joint embedding


@dataclass(frozen=True)
class JointEmbeddingSolution:
    """Theorem 2 of arXiv 2505.12477.

    weights: (k, d) ``W* = U Q_kᵀ S^{-1/2}``;  eigenvalues: (d,) ``ω`` descending (in [0, 1]);
    loss: the optimal invariance loss ``2 (k − Σ_{j≤k} ω_j)``;  ridge: added to S.
    """

    weights: np.ndarray
    eigenvalues: np.ndarray
    loss: float
    ridge: float


def joint_embedding_objective(weights, moments: AugmentationMoments) -> float:
    """Invariance loss ``(1/n) Σ_i E ‖W τ₁(x_i) − W τ₂(x_i)‖² = 2 tr(W Σ Wᵀ)`` (τ₁, τ₂ i.i.d.).

    weights: (k, d).
    """
    w = _float64(weights, "weights")
    return float(2.0 * np.sum((w @ moments.aug_cov) * w))


def joint_embedding_constraint(weights, moments: AugmentationMoments) -> np.ndarray:
    """(k, k) ``(1/n) Σ_i E[W τ(x_i) (W τ(x_i))ᵀ] = W S Wᵀ``; the constraint asks for ``I_k``."""
    w = _float64(weights, "weights")
    return _symmetric(w @ moments.second_moment @ w.T)


def joint_embedding_objective_views(weights, views) -> float:
    """The invariance loss evaluated literally on views: the mean over samples i and over all ordered
    pairs (v, v') of its views of ``‖W views[v,i] − W views[v',i]‖²`` (τ₁, τ₂ drawn i.i.d. from the V
    views, as in :func:`augmentation_moments_from_views`).  weights: (k, d);  views: (V, n, d)."""
    z = _float64(views, "views") @ _float64(weights, "weights").T  # (V, n, k)
    total = 0.0
    for v in range(z.shape[0]):  # one view against all, so memory stays O(V n k)
        diff = z[v][None] - z
        total += float(np.sum(diff * diff))
    return total / (z.shape[0] ** 2 * z.shape[1])


def joint_embedding_closed_form(moments: AugmentationMoments, k: int, rotation=None,
                                ridge: Ridge = "auto") -> JointEmbeddingSolution:
    """Optimal constrained linear joint embedding (Theorem 2, arXiv 2505.12477).

    moments: :class:`AugmentationMoments`;  k: embedding dimension (1 ≤ k ≤ d);
    rotation: the orthogonal ``U`` (k, k) (default identity);  ridge: see :func:`inverse_sqrt_psd`.
    Returns W* (k, d) with ``W* S W*ᵀ = I_k``, ω (d,) descending and the loss ``2 (k − Σ_{j≤k} ω_j)``.
    """
    k = _check_k(k, moments.d)
    inv_sqrt, eps = inverse_sqrt_psd(moments.second_moment, ridge)
    omega, q = np.linalg.eigh(_symmetric(inv_sqrt @ moments.mean_gram @ inv_sqrt))
    omega, q = omega[::-1], q[:, ::-1]
    u = np.eye(k) if rotation is None else _float64(rotation, "rotation")
    if u.shape != (k, k):
        raise ValueError(f"rotation must be (k, k) = ({k}, {k}), got {u.shape}.")
    if not np.allclose(u @ u.T, np.eye(k), atol=1e-10):
        raise ValueError("rotation must be orthogonal (U Uᵀ = I); another U breaks the constraint W S Wᵀ = I.")
    weights = u @ q[:, :k].T @ inv_sqrt
    return JointEmbeddingSolution(weights=weights, eigenvalues=omega, loss=float(2.0 * (k - omega[:k].sum())),
                                  ridge=eps)


# --------------------------------------------------------------------------- additive-noise thresholds


def je_spectrum(gamma, c) -> np.ndarray:
    """Per-coordinate JE spectrum ``ω_j = γ_j/(γ_j + c_j)`` for diagonal Γ, C (0 where γ_j + c_j = 0)."""
    gamma, c = np.broadcast_arrays(_float64(gamma, "gamma"), _float64(c, "c"))
    total = gamma + c
    return np.divide(gamma, total, out=np.zeros_like(total), where=total > 0)


def rc_spectrum(gamma, c) -> np.ndarray:
    """Per-coordinate RC spectrum ``φ_j² = γ_j²/(γ_j + c_j)`` for diagonal Γ, C (0 where γ_j + c_j = 0)."""
    gamma, c = np.broadcast_arrays(_float64(gamma, "gamma"), _float64(c, "c"))
    total = gamma + c
    return np.divide(gamma * gamma, total, out=np.zeros_like(total), where=total > 0)


def kept_coordinates(gamma, c, k: int, method: Literal["je", "rc"]) -> np.ndarray:
    """Indices (k,) of the coordinates a method keeps: the top-k of its spectrum (ties: lower index).

    gamma, c: (d,) per-coordinate data variance ``γ_j`` and augmentation variance ``c_j``.
    """
    spectra = {"je": je_spectrum, "rc": rc_spectrum}
    if method not in spectra:
        raise ValueError(f"method must be 'je' or 'rc', got {method!r}.")
    spectrum = spectra[method](gamma, c)
    k = _check_k(k, spectrum.shape[-1])
    return np.sort(np.argsort(-spectrum, kind="stable")[:k])


def je_threshold(gamma_n, gamma_s: float, c_s: float) -> np.ndarray:
    """The augmentation variance ``c_n`` a nuisance of variance ``γ_n`` needs for JE to keep the signal
    ``(γ_s, c_s)``: JE keeps it iff ``c_n > γ_n c_s/γ_s`` (linear in γ_n). gamma_n: any shape."""
    return _float64(gamma_n, "gamma_n") * c_s / gamma_s


def rc_threshold(gamma_n, gamma_s: float, c_s: float) -> np.ndarray:
    """RC keeps the signal ``(γ_s, c_s)`` iff ``c_n > γ_n²(γ_s + c_s)/γ_s² − γ_n`` (quadratic in γ_n).
    Negative values mean any ``c_n ≥ 0`` works (this happens when ``γ_n < γ_s²/(γ_s + c_s)``)."""
    gamma_n = _float64(gamma_n, "gamma_n")
    return gamma_n * gamma_n * (gamma_s + c_s) / gamma_s**2 - gamma_n


def _je_sides(gamma_s: float, c_s: float, gamma_n, c_n) -> tuple[np.ndarray, np.ndarray]:
    """Both sides of the JE inequality ``γ_s c_n > γ_n c_s`` (``ω_s > ω_n`` without the division), broadcast."""
    gamma_n, c_n = np.broadcast_arrays(_float64(gamma_n, "gamma_n"), _float64(c_n, "c_n"))
    return gamma_s * c_n, gamma_n * c_s


def _rc_sides(gamma_s: float, c_s: float, gamma_n, c_n) -> tuple[np.ndarray, np.ndarray]:
    """Both sides of the RC inequality ``γ_s² (γ_n + c_n) > γ_n² (γ_s + c_s)`` (``φ_s² > φ_n²``), broadcast."""
    gamma_n, c_n = np.broadcast_arrays(_float64(gamma_n, "gamma_n"), _float64(c_n, "c_n"))
    return gamma_s**2 * (gamma_n + c_n), gamma_n**2 * (gamma_s + c_s)


def _relative_margin(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``(lhs − rhs)/(lhs + rhs)`` in [−1, 1] for non-negative sides (0 where both are 0)."""
    total = lhs + rhs
    return np.divide(lhs - rhs, total, out=np.zeros_like(total), where=total > 0)


def je_keeps_signal(gamma_s: float, c_s: float, gamma_n, c_n) -> np.ndarray:
    """Boolean (broadcast shape): ``ω_s > ω_n`` strictly, in the division-free form ``γ_s c_n > γ_n c_s``."""
    lhs, rhs = _je_sides(gamma_s, c_s, gamma_n, c_n)
    return lhs > rhs


def rc_keeps_signal(gamma_s: float, c_s: float, gamma_n, c_n) -> np.ndarray:
    """Boolean (broadcast shape): ``φ_s² > φ_n²`` strictly, as ``γ_s² (γ_n + c_n) > γ_n² (γ_s + c_s)``."""
    lhs, rhs = _rc_sides(gamma_s, c_s, gamma_n, c_n)
    return lhs > rhs


def je_margin(gamma_s: float, c_s: float, gamma_n, c_n) -> np.ndarray:
    """Signed relative margin in [−1, 1] of the JE inequality ``γ_s c_n > γ_n c_s`` (> 0: JE keeps the
    signal; 0: on the threshold, where ω_s = ω_n and the selected subspace is not unique)."""
    return _relative_margin(*_je_sides(gamma_s, c_s, gamma_n, c_n))


def rc_margin(gamma_s: float, c_s: float, gamma_n, c_n) -> np.ndarray:
    """Signed relative margin in [−1, 1] of the RC inequality ``γ_s² (γ_n + c_n) > γ_n² (γ_s + c_s)``."""
    return _relative_margin(*_rc_sides(gamma_s, c_s, gamma_n, c_n))


# --------------------------------------------------------------------------- which subspace a map selects


def subspace_overlap(linear_map, basis, covariance=None) -> float:
    """How much of a target subspace the features ``z = F x`` give linear access to, in [0, 1].

    linear_map: (k, d) F;  basis: (d, m) spanning the target (signal) subspace, any basis;
    covariance: (d, d) second moment Γ of the inputs x, or None for Γ = I.

    Returns the fraction of the target's variance that a least-squares linear probe on z recovers,
    ``tr(Cᵀ (FΓFᵀ)⁺ C) / tr(UᵀΓU)`` with ``C = FΓU`` and U an orthonormal basis of the target. With Γ = I it
    is ``‖P_F U‖²_F / m``, the mean squared cosine of the principal angles between the row space of F
    and the target. Pass the data's Γ when the target and the rest of the input are correlated or of very
    different scale: then an encoder row can lean towards the signal direction while its output is still
    dominated by a large irrelevant feature, which only the Γ-weighted measure sees.
    """
    f = _float64(linear_map, "linear_map")
    u, _ = np.linalg.qr(_float64(basis, "basis"))
    gamma = np.eye(f.shape[1]) if covariance is None else _symmetric(_float64(covariance, "covariance"))
    target_var = float(np.trace(u.T @ gamma @ u))
    if target_var <= 0:
        return 0.0
    cross = f @ gamma @ u  # (k, m) covariance of features and target coordinates
    feature_cov = _symmetric(f @ gamma @ f.T)
    explained = np.trace(cross.T @ np.linalg.pinv(feature_cov, rcond=1e-12, hermitian=True) @ cross)
    return float(np.clip(explained / target_var, 0.0, 1.0))
