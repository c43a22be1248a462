"""Next Token Perception Score (NTPS), arXiv 2505.17169: streaming statistics, the two subspaces, the score.

Per layer, with H ∈ ℝ^{L×d} one sentence's non-pad hidden states and y ∈ {0,1}^C its one-hot label:

- perception statistics  x̄ = (1/L) Σ_t h_t,  Σ_xx = (1/N) Σ x̄x̄ᵀ (uncentred),  Σ_xy = (1/N) Σ x̄yᵀ;
- autoregressive statistics  s_t = Σ_{i≤t} h_i (t = 1…L−1) predicts h_{t+1}:
  C₀ = (1/N) Σ_sent Σ_t s_t s_tᵀ,  C₁ = (1/N) Σ_sent Σ_t s_t h_{t+1}ᵀ;
- U solves Σ_xyΣ_xyᵀ u = λ Σ_xx u (perception encoder), V solves C₁C₁ᵀ v = μ C₀ v (next-state encoder);
- NTPS = ‖P_V U_k‖²_F / ‖U_k‖²_F with P_V the Euclidean projector onto span V_k.

The statistics are sums over sentences, so they are accumulated batch by batch (:class:`NTPSStatistics`) and
hidden states are never stored. Statistics are accumulated in float64 by default (see :class:`NTPSStatistics`
for why) and the eigenproblems are solved in float64.

Example::

    stats = NTPSStatistics(num_layers=31, dim=576, num_classes=2)
    for hidden, mask, labels in batches:          # hidden: (layers, B, T, d), mask: (B, T), labels: (B,)
        stats.update(hidden, mask, labels)
    result = ntps(stats.layer(12))                 # NTPSResult: .score, .score_whitened, .k_u, .k_v, .curve
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["EIGEN_CUTOFF", "DEFAULT_FRACTIONS", "NTPSStatistics", "LayerStatistics", "NTPSResult",
           "generalized_eigh", "perception_subspace", "autoregressive_subspace", "default_k", "projection_score",
           "whitened_score", "ntps", "excess_loss_bounds", "stack_curve"]

EIGEN_CUTOFF = 1e-8
# Reference K_sweep.py: fractions 0.05, 0.10, …, 0.95 of the retained rank.
DEFAULT_FRACTIONS = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass
class LayerStatistics:
    """The four NTPS moment matrices of one layer (already divided by the sentence count).

    sxx: (d, d) Σ_xx; sxy: (d, C) Σ_xy; c0: (d, d) C₀; c1: (d, d) C₁; count: N sentences.
    """

    sxx: torch.Tensor
    sxy: torch.Tensor
    c0: torch.Tensor
    c1: torch.Tensor
    count: int


class NTPSStatistics:
    """Running sums of the NTPS statistics for several layers at once (arXiv 2505.17169, Sec. 3).

    Memory is O(layers · d²) whatever the number of sentences. The sums are float64 by default, a deliberate
    departure from the spec's float32 statistics: with float32 sums the rounding (≈ d·eps·‖B‖) of Σ_xx and C₀ lies
    far above the spec's absolute 1e-8 eigenvalue cutoff, so on a real LM (d = 576, N = 200) hundreds of null
    directions survive as spurious, hugely weighted directions (measured: r_U = 380 > N). ``dtype=torch.float32``
    reproduces the spec literally. Hidden states themselves stay float32 (or bf16 from the model). ``update`` takes one batch of hidden states of all
    tracked layers; ``layer(i)`` returns the normalised :class:`LayerStatistics` of layer index ``i``.
    """

    def __init__(self, num_layers: int, dim: int, num_classes: int, *, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> None:
        self.num_layers, self.dim, self.num_classes = num_layers, dim, num_classes
        self.dtype = dtype
        zeros = lambda *shape: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
        self.sxx = zeros(num_layers, dim, dim)
        self.sxy = zeros(num_layers, dim, num_classes)
        self.c0 = zeros(num_layers, dim, dim)
        self.c1 = zeros(num_layers, dim, dim)
        self.count = 0
        self.layer_chunk = 8

    @torch.no_grad()
    def update(self, hidden: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch.

        Args:
            hidden: (layers, B, T, d) hidden states (any float dtype; cast to the statistics dtype).
            mask: (B, T) 1 for real tokens, 0 for padding (either padding side).
            labels: (B,) integer class ids in ``0..C-1``.
        """
        if hidden.dim() == 3:
            hidden = hidden.unsqueeze(0)
        layers, batch, length, dim = hidden.shape
        if layers != self.num_layers or dim != self.dim:
            raise ValueError(f"hidden has shape {tuple(hidden.shape)}; expected ({self.num_layers}, B, T, {self.dim}).")
        m = mask.to(device=self.sxx.device, dtype=self.dtype)
        lengths = m.sum(1)
        keep = lengths > 0
        onehot = torch.nn.functional.one_hot(labels.long().to(self.sxx.device), self.num_classes).to(self.dtype)
        pair = m[:, 1:]
        # A few layers at a time: the float64 copies of (layers, B, T, d) would otherwise dominate peak memory.
        for lo in range(0, layers, self.layer_chunk):
            hi = min(lo + self.layer_chunk, layers)
            h = hidden[lo:hi].to(device=self.sxx.device, dtype=self.dtype) * m[None, :, :, None]
            means = h.sum(2) / lengths.clamp_min(1)[None, :, None]  # (chunk, B, d)
            means = means * keep[None, :, None].to(self.dtype)
            self.sxx[lo:hi] += means.transpose(1, 2) @ means
            self.sxy[lo:hi] += means.transpose(1, 2) @ onehot
            # Prefix sums of the masked states: a pad position contributes a zero vector (left padding) or is
            # dropped by the next-token mask (right padding), so sentences of length ≤ 1 add nothing (spec).
            prefix = (h.cumsum(2)[:, :, :-1] * pair[None, :, :, None]).reshape(hi - lo, -1, dim)  # s_t, t < T
            target = h[:, :, 1:].reshape(hi - lo, -1, dim)  # h_{t+1}, zero where t+1 is padding
            self.c0[lo:hi] += prefix.transpose(1, 2) @ prefix
            self.c1[lo:hi] += prefix.transpose(1, 2) @ target
        self.count += int(keep.sum())

    def layer(self, index: int) -> LayerStatistics:
        if self.count == 0:
            raise ValueError("NTPS statistics are empty: no sentence with a real token was added.")
        n = float(self.count)
        return LayerStatistics(self.sxx[index] / n, self.sxy[index] / n, self.c0[index] / n, self.c1[index] / n,
                               self.count)


def generalized_eigh(a: torch.Tensor, b: torch.Tensor, *, cutoff: float = EIGEN_CUTOFF, rtol: float | None = None,
                     order: str = "descending", b_eigh: tuple[torch.Tensor, torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A x = λ B x for symmetric A and PSD (possibly singular) B on B's range.

    Spec step 3: B = Q S Qᵀ, keep S > ``cutoff`` (rank r), W = Q_r S_r^{-1/2}, eigh(WᵀAW) = YΛYᵀ, X = WY.
    X is B-orthonormal (XᵀBX = I_r).

    ``rtol`` (default: d · machine epsilon of B's dtype, numpy ``matrix_rank``'s tolerance) also drops eigenvalues
    below ``rtol · max eigenvalue``. The spec's absolute 1e-8 alone assumes exact statistics: float32 sums carry
    rounding of order d·eps·‖B‖ (≈ 1e-4 relative for d = 576), which would otherwise pass as hundreds of spurious
    directions with huge B^{-1/2} weights (e.g. Σ_xx from 200 sentences in 576 dimensions has rank ≤ 200).

    Args:
        a, b: (d, d).
        order: ``"descending"`` (largest λ first, the spec default) or ``"ascending"`` (as ``eigh`` returns them,
            which the reference code slices with ``[:, :k]``).

    Returns:
        eigenvalues (r,), eigenvectors X (d, r), both float64.
    """
    if order not in ("descending", "ascending"):
        raise ValueError(f"order must be 'descending' or 'ascending', got {order!r}.")
    if rtol is None:
        rtol = b.shape[0] * torch.finfo(b.dtype).eps
    a = a.double()
    b = b.double()
    a = (a + a.T) / 2
    b = (b + b.T) / 2
    s, q = torch.linalg.eigh(b) if b_eigh is None else b_eigh  # b_eigh: a float64 eigh(B) already at hand
    keep = s > max(cutoff, rtol * float(s.max().clamp_min(0)))
    w = q[:, keep] / s[keep].sqrt()
    small = w.T @ a @ w
    lam, y = torch.linalg.eigh((small + small.T) / 2)
    x = w @ y
    if order == "descending":
        lam, x = lam.flip(0), x.flip(1)
    return lam, x


def perception_subspace(stats: LayerStatistics, order: str = "descending",
                        sxx_eigh: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """U: Σ_xyΣ_xyᵀ u = λ Σ_xx u. Returns (λ (r_U,), U (d, r_U)), Σ_xx-orthonormal."""
    sxy = stats.sxy.double()
    return generalized_eigh(sxy @ sxy.T, stats.sxx, order=order, b_eigh=sxx_eigh)


def autoregressive_subspace(stats: LayerStatistics, order: str = "descending") -> tuple[torch.Tensor, torch.Tensor]:
    """V: C₁C₁ᵀ v = μ C₀ v. Returns (μ (r_V,), V (d, r_V)), C₀-orthonormal."""
    c1 = stats.c1.double()
    return generalized_eigh(c1 @ c1.T, stats.c0, order=order)


def default_k(eigenvalues: torch.Tensor, num_classes: int, relative: float = 0.01) -> int:
    """Spec default k_U = #{i : λ_i > 0.01·λ₁}, capped at C (at least 1). ``eigenvalues`` in any order."""
    lam = eigenvalues.double()
    top = float(lam.max()) if lam.numel() else 0.0
    if top <= 0:
        return 1
    return max(1, min(int((lam > relative * top).sum()), num_classes))


def _orthonormal_basis(x: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    # Orthonormal basis of span(x): P = QQᵀ equals x x⁺ (the Euclidean projector of the spec).
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    if s.numel() == 0:
        return u[:, :0]
    return u[:, s > rtol * s[0]]


def projection_score(u_k: torch.Tensor, v_k: torch.Tensor) -> float:
    """‖P_V U_k‖²_F / ‖U_k‖²_F with P_V the Euclidean projector onto span V_k; in [0, 1]. u_k: (d, k_U), v_k: (d, k_V)."""
    q = _orthonormal_basis(v_k.double())
    u = u_k.double()
    total = float((u * u).sum())
    if total == 0:
        return 0.0
    projected = q.T @ u
    return float((projected * projected).sum()) / total


def _sqrt_psd(b: torch.Tensor, cutoff: float = EIGEN_CUTOFF,
              b_eigh: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    rtol = b.shape[0] * torch.finfo(b.dtype).eps  # same retained range as generalized_eigh
    s, q = torch.linalg.eigh((b.double() + b.double().T) / 2) if b_eigh is None else b_eigh
    keep = s > max(cutoff, rtol * float(s.max().clamp_min(0)))
    return (q[:, keep] * s[keep].sqrt()) @ q[:, keep].T


def whitened_score(sxx: torch.Tensor, u_k: torch.Tensor, v_k: torch.Tensor, *, root: torch.Tensor | None = None) -> float:
    """NTPS_w = (1/k) Σ_{i≤k} ‖P_S u_i‖², S = span(Σ_xx^{1/2} V_k), u_i = Σ_xx^{1/2} U_i (spec step 7).

    Because U is Σ_xx-orthonormal, the u_i are the orthonormal top eigenvectors of the whitened
    M = Σ_xx^{-1/2} Σ_xy Σ_yx Σ_xx^{-1/2}; this is the quantity the excess-loss bounds are stated in.
    """
    root = _sqrt_psd(sxx) if root is None else root
    whitened_u = root @ u_k.double()
    q = _orthonormal_basis(root @ v_k.double())
    norms = (whitened_u * whitened_u).sum(0)
    projected = ((q.T @ whitened_u) ** 2).sum(0)
    valid = norms > 0
    if not bool(valid.any()):
        return 0.0
    return float((projected[valid] / norms[valid]).mean())


@dataclass
class NTPSResult:
    """NTPS of one layer.

    score: raw-coordinate NTPS (reference); score_whitened: NTPS_w (bound quantity); k_u, k_v: the k used;
    rank_u, rank_v: retained ranks r_U, r_V; eigenvalues_u, eigenvalues_v: in the order used;
    curve: {fraction: NTPS with k_U = ⌊f·r_U⌋, k_V = ⌊f·r_V⌋} (reference K_sweep).
    """

    score: float
    score_whitened: float
    k_u: int
    k_v: int
    rank_u: int
    rank_v: int
    order: str
    eigenvalues_u: list = field(default_factory=list)
    eigenvalues_v: list = field(default_factory=list)
    curve: dict = field(default_factory=dict)


def _resolve_k(k: int | float | None, rank: int, what: str) -> int | None:
    if k is None:
        return None
    if isinstance(k, float) and not k.is_integer():
        if not 0.0 < k < 1.0:
            raise ValueError(f"k_{what} as a fraction must lie in (0, 1), got {k}.")
        return max(1, int(k * rank))
    k = int(k)
    if k < 1:
        raise ValueError(f"k_{what} must be >= 1, got {k}.")
    if k > rank:
        raise ValueError(f"k_{what}={k} is larger than the retained rank r_{what}={rank} of this layer; "
                         f"use k <= {rank} or a fraction such as 0.5.")
    return k


def ntps(stats: LayerStatistics, *, k_u: int | float | None = None, k_v: int | float | None = None,
         order: str = "descending", fractions: tuple = DEFAULT_FRACTIONS) -> NTPSResult:
    """NTPS of one layer from its statistics (arXiv 2505.17169; spec steps 3–6).

    Args:
        stats: the layer's :class:`LayerStatistics`.
        k_u: directions of U: ``None`` = spec default #{λ_i > 0.01·λ₁} ≤ C; an int; or a float in (0, 1) = fraction
            of the retained rank r_U.
        k_v: directions of V: ``None`` = k_U (spec); an int; or a fraction of r_V.
        order: ``"descending"`` (top-k, spec default) or ``"ascending"`` (the released reference's slicing).
        fractions: the reference sweep, k = ⌊f·r⌋ for U and V separately (k = 0 is skipped).

    Raises:
        ValueError: k larger than a retained rank, or a bad ``order``.
    """
    sxx = stats.sxx.double()
    sxx_eigh = torch.linalg.eigh((sxx + sxx.T) / 2)  # shared by the U solve and Σ_xx^{1/2} of NTPS_w
    lam_u, u = perception_subspace(stats, order, sxx_eigh)
    lam_v, v = autoregressive_subspace(stats, order)
    root = _sqrt_psd(stats.sxx, b_eigh=sxx_eigh)
    rank_u, rank_v = u.shape[1], v.shape[1]
    if rank_u == 0 or rank_v == 0:
        raise ValueError("NTPS statistics have zero rank (all hidden states are zero?).")
    num_classes = stats.sxy.shape[1]
    ku = _resolve_k(k_u, rank_u, "U")
    if ku is None:
        ku = min(default_k(lam_u, num_classes), rank_u)
    kv = _resolve_k(k_v, rank_v, "V")
    if kv is None:
        if ku > rank_v:
            raise ValueError(f"k_V = k_U = {ku} is larger than the retained rank r_V={rank_v}; pass a smaller k.")
        kv = ku
    # V has full column rank (C₀-orthonormal), so one QR gives orthonormal bases of every prefix span V[:, :k].
    q_v, _ = torch.linalg.qr(v)
    u_norms = (u * u).sum(0)
    curve = {}
    for f in fractions:
        fu, fv = int(f * rank_u), int(f * rank_v)
        if fu >= 1 and fv >= 1:
            projected = q_v[:, :fv].T @ u[:, :fu]
            curve[f] = float((projected * projected).sum() / u_norms[:fu].sum())
    return NTPSResult(score=projection_score(u[:, :ku], v[:, :kv]),
                      score_whitened=whitened_score(stats.sxx, u[:, :ku], v[:, :kv], root=root),
                      k_u=ku, k_v=kv, rank_u=rank_u, rank_v=rank_v, order=order,
                      eigenvalues_u=lam_u.tolist(), eigenvalues_v=lam_v.tolist(), curve=curve)


def excess_loss_bounds(m: torch.Tensor, subspace: torch.Tensor) -> tuple[float, float, float, float]:
    """Derived bounds on the excess perception loss of a k-dimensional readout subspace (spec step 7).

    Args:
        m: (d, d) PSD whitened M = Σ_xx^{-1/2} Σ_xy Σ_yx Σ_xx^{-1/2}.
        subspace: (d, k) any basis of the whitened readout subspace S.

    Returns:
        (lower, delta, upper, ntps_w) with Δ = Σ_{i≤k} λ_i − tr(P_S M),
        lower = Σ_{i≤k}λ_i − kλ₁·NTPS_w − kλ_{k+1}(1 − NTPS_w), upper = Σ_{i≤k}λ_i − kλ_k·NTPS_w.
    """
    m = (m.double() + m.double().T) / 2
    q = _orthonormal_basis(subspace.double())
    k = q.shape[1]
    lam, vecs = torch.linalg.eigh(m)
    lam, vecs = lam.flip(0), vecs.flip(1)
    top = float(lam[:k].sum())
    delta = top - float(torch.trace(q.T @ m @ q))
    ntps_w = float(((q.T @ vecs[:, :k]) ** 2).sum()) / k
    next_lam = float(lam[k]) if k < lam.numel() else 0.0
    lower = top - k * float(lam[0]) * ntps_w - k * next_lam * (1 - ntps_w)
    upper = top - k * float(lam[k - 1]) * ntps_w
    return lower, delta, upper, ntps_w


def stack_curve(results: list[NTPSResult]) -> np.ndarray:
    """(layers, fractions) array of the K-sweep curves, NaN where a fraction gave k = 0."""
    fractions = sorted({f for r in results for f in r.curve})
    return np.array([[r.curve.get(f, np.nan) for f in fractions] for r in results])
