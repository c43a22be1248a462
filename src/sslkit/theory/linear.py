"""Linear reconstruction vs joint embedding: closed forms, thresholds, phase diagram, probe experiment.

The user-facing API of arXiv 2505.12477 (Van Assel et al., NeurIPS 2025) in sslkit. Every formula — the
closed forms, the thresholds, the two inequalities and their margins — lives in
:mod:`sslkit.functional.linear_theory` and is re-exported here (the same objects). On top of them:

* :func:`phase_diagram` sweeps the magnitude ``γ_n`` of an irrelevant (nuisance) feature against the
  augmentation variance ``c_n`` along it (the *alignment* of the augmentations with the nuisance) and
  records which paradigm recovers the signal feature ``(γ_s, c_s)`` — once from the two inequalities,
  once empirically: build synthetic data in a random rotated basis, solve both closed forms and
  measure which subspace the learned map selects (:func:`subspace_overlap`: the fraction of the
  signal's variance a linear probe on the learned features recovers).
* :func:`plot_phase_diagram` draws it, with both threshold curves and the crossover ``γ_n = γ_s``.
* :func:`worked_example` tabulates the two thresholds at given ``γ_n`` and confirms them with the
  closed forms just below and above each threshold.
* :func:`probe_experiment` is the spec's check 4: labels that depend only on the signal, a linear
  probe on the k learned features as n grows, against a supervised baseline.

"Alignment" here is the augmentation variance ``c_n`` itself; the paper's α parametrisation is not
confirmed in the paper and is not used (see the spec).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np

from sslkit.functional import linear_theory as _closed_forms  # its __all__ is re-exported: one home per formula
from sslkit.functional.linear_theory import (
    AugmentationMoments,
    JointEmbeddingSolution,
    ReconstructionSolution,
    augmentation_moments_additive,
    augmentation_moments_from_views,
    augmentation_moments_monte_carlo,
    auto_ridge,
    inverse_sqrt_psd,
    je_keeps_signal,
    je_margin,
    je_spectrum,
    je_threshold,
    joint_embedding_closed_form,
    joint_embedding_constraint,
    joint_embedding_objective,
    joint_embedding_objective_views,
    kept_coordinates,
    rc_keeps_signal,
    rc_margin,
    rc_spectrum,
    rc_threshold,
    reconstruction_closed_form,
    reconstruction_objective,
    reconstruction_objective_views,
    subspace_overlap,
)

__all__ = [
    *_closed_forms.__all__,
    "PARADIGMS",
    "PhaseDiagram",
    "ProbeExperiment",
    "default_grids",
    "phase_diagram",
    "plot_phase_diagram",
    "probe_experiment",
    "signal_selection",
    "worked_example",
]

PARADIGMS = ("neither", "joint_embedding", "reconstruction", "both")
"""Codes 0..3 of :attr:`PhaseDiagram.paradigm_theory` / ``paradigm_empirical``: who recovers the signal."""

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- synthetic data


def _random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))  # Haar-distributed


def _white_samples(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) samples whose empirical second moment ZᵀZ/n is exactly I (so Γ is exactly the target)."""
    z = rng.standard_normal((n, d))
    chol = np.linalg.cholesky(z.T @ z / n)
    return np.linalg.solve(chol, z.T).T


@dataclass(frozen=True)
class _Synthetic:
    """Whitened or raw base samples and a rotation, shared by every cell of a sweep (common random numbers)."""

    base: np.ndarray  # (n, d)
    rotation: np.ndarray  # (d, d); its first k columns span the signal
    k: int

    def data(self, gamma: np.ndarray) -> np.ndarray:
        return (self.base * np.sqrt(gamma)) @ self.rotation.T

    def noise_factor(self, c: np.ndarray) -> np.ndarray:
        """L (d, d) with ε = g L, g standard normal, so Cov[ε] = O diag(c) Oᵀ."""
        return np.sqrt(c)[:, None] * self.rotation.T


def signal_selection(gamma_s: float, c_s: float, gamma_n: float, c_n: float, k: int = 1,
                     n_nuisance: int | None = None, *, moments: Literal["exact", "monte_carlo"] = "exact",
                     n: int | None = None, num_views: int = 256, seed: int = 0,
                     _synthetic: _Synthetic | None = None) -> tuple[float, float]:
    """How much of the signal subspace the JE and the RC closed forms keep, on synthetic data.

    Data: k signal coordinates of variance γ_s (augmentation variance c_s) and ``n_nuisance`` (default k)
    nuisance coordinates of variance γ_n (augmentation variance c_n), rotated by a random orthogonal
    matrix so nothing is axis-aligned. ``moments="exact"``: whitened samples (Γ exact) and the additive
    closed-form moments; ``"monte_carlo"``: n raw Gaussian samples and ``num_views`` sampled noisy views.
    Returns ``(overlap_je, overlap_rc)`` in [0, 1]: the fraction of the signal's variance a linear probe
    on the features of W* (JE) or E* (RC) recovers on fresh data (:func:`subspace_overlap` with the
    population Γ): 1 = the signal is recovered, 0 = the nuisance is kept instead.
    """
    synthetic = _synthetic or _make_synthetic(k, n_nuisance, moments, n, seed)
    m = synthetic.base.shape[1] - synthetic.k
    gamma = np.r_[np.full(synthetic.k, gamma_s, dtype=np.float64), np.full(m, gamma_n, dtype=np.float64)]
    c = np.r_[np.full(synthetic.k, c_s, dtype=np.float64), np.full(m, c_n, dtype=np.float64)]
    x = synthetic.data(gamma)
    factor = synthetic.noise_factor(c)
    if moments == "exact":
        stats = augmentation_moments_additive(x, factor.T @ factor)
    elif moments == "monte_carlo":
        stats = augmentation_moments_monte_carlo(
            x, lambda batch, rng: batch + rng.standard_normal(batch.shape) @ factor, num_views=num_views,
            seed=seed + 1)
    else:
        raise ValueError(f"moments must be 'exact' or 'monte_carlo', got {moments!r}.")
    signal = synthetic.rotation[:, :synthetic.k]
    population = (synthetic.rotation * gamma) @ synthetic.rotation.T  # Γ of fresh data, not of the n samples
    je = joint_embedding_closed_form(stats, synthetic.k)
    rc = reconstruction_closed_form(stats, synthetic.k)
    return (subspace_overlap(je.weights, signal, population), subspace_overlap(rc.encoder, signal, population))


def _make_synthetic(k: int, n_nuisance: int | None, moments: str, n: int | None, seed: int) -> _Synthetic:
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}.")
    m = k if n_nuisance is None else int(n_nuisance)
    if m < 1:
        raise ValueError(f"n_nuisance must be ≥ 1, got {n_nuisance}.")
    d = k + m
    rng = np.random.default_rng(seed)
    rotation = _random_rotation(d, rng)
    if moments == "exact":
        base = _white_samples(max(8 * d, 32) if n is None else int(n), d, rng)
    else:
        base = rng.standard_normal((512 if n is None else int(n), d))
    if base.shape[0] < d:
        raise ValueError(f"n must be ≥ d = {d}, got {base.shape[0]}.")
    return _Synthetic(base=base, rotation=rotation, k=k)


# --------------------------------------------------------------------------- phase diagram


@dataclass
class PhaseDiagram:
    """Which paradigm recovers the signal over a (γ_n, c_n) grid; arrays are (len(gamma_n), len(c_n)).

    overlap_je / overlap_rc: the fraction of the signal's variance recoverable from the features of the
    closed-form W* / E* on synthetic data (1: signal kept, 0: nuisance kept; > 0.5 counts as kept).
    The theory side is computed from the two inequalities on demand (``theory_je``, ``theory_rc``).
    """

    gamma_s: float
    c_s: float
    k: int
    n_nuisance: int
    gamma_n: np.ndarray
    c_n: np.ndarray
    overlap_je: np.ndarray
    overlap_rc: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        return np.meshgrid(self.gamma_n, self.c_n, indexing="ij")

    @property
    def theory_je(self) -> np.ndarray:
        return je_keeps_signal(self.gamma_s, self.c_s, *self._grid())

    @property
    def theory_rc(self) -> np.ndarray:
        return rc_keeps_signal(self.gamma_s, self.c_s, *self._grid())

    @property
    def margin_je(self) -> np.ndarray:
        return je_margin(self.gamma_s, self.c_s, *self._grid())

    @property
    def margin_rc(self) -> np.ndarray:
        return rc_margin(self.gamma_s, self.c_s, *self._grid())

    @property
    def empirical_je(self) -> np.ndarray:
        return self.overlap_je > 0.5

    @property
    def empirical_rc(self) -> np.ndarray:
        return self.overlap_rc > 0.5

    @staticmethod
    def _paradigm(je: np.ndarray, rc: np.ndarray) -> np.ndarray:
        return je.astype(np.int64) + 2 * rc.astype(np.int64)  # indexes PARADIGMS

    @property
    def paradigm_theory(self) -> np.ndarray:
        return self._paradigm(self.theory_je, self.theory_rc)

    @property
    def paradigm_empirical(self) -> np.ndarray:
        return self._paradigm(self.empirical_je, self.empirical_rc)

    def agreement(self, margin: float = 1e-9) -> dict[str, dict[str, int]]:
        """Cells where the closed forms and the inequality agree, per method, counting only the cells
        whose relative margin exceeds ``margin`` (on a threshold the selected subspace is not unique;
        with Monte Carlo moments the empirical boundary also moves by O(1/√n))."""
        out = {}
        for name, theory, empirical, rel in (("joint_embedding", self.theory_je, self.empirical_je, self.margin_je),
                                             ("reconstruction", self.theory_rc, self.empirical_rc, self.margin_rc)):
            decided = np.abs(rel) > margin
            out[name] = {"cells": int(decided.sum()), "agree": int((decided & (theory == empirical)).sum()),
                         "on_threshold": int((~decided).sum())}
        return out

    def lower_threshold_by_row(self, empirical: bool = True) -> list[str]:
        """Per γ_n: which paradigm needs less alignment on this grid — 'joint_embedding' if some c_n
        lets only JE recover the signal and none lets only RC, 'reconstruction' vice versa, 'equal' if
        the grid never separates them, 'mixed' if both happen."""
        paradigm = self.paradigm_empirical if empirical else self.paradigm_theory
        rows = []
        for row in paradigm:
            je_only, rc_only = bool((row == 1).any()), bool((row == 2).any())
            rows.append({(True, False): "joint_embedding", (False, True): "reconstruction",
                         (False, False): "equal", (True, True): "mixed"}[(je_only, rc_only)])
        return rows

    def crossover_bracket(self, empirical: bool = True) -> tuple[float | None, float | None]:
        """(largest γ_n where RC has the lower threshold, smallest γ_n where JE has): the crossover lies
        between them. The spec puts it at γ_n = γ_s."""
        rows = self.lower_threshold_by_row(empirical)
        rc_rows = [g for g, r in zip(self.gamma_n, rows) if r == "reconstruction"]
        je_rows = [g for g, r in zip(self.gamma_n, rows) if r == "joint_embedding"]
        return (float(max(rc_rows)) if rc_rows else None, float(min(je_rows)) if je_rows else None)

    def to_dict(self) -> dict[str, Any]:
        bracket = self.crossover_bracket(empirical=True)
        return {
            "paper": "arXiv 2505.12477",
            "signal": {"gamma_s": self.gamma_s, "c_s": self.c_s, "k": self.k},
            "n_nuisance": self.n_nuisance,
            "settings": self.settings,
            "gamma_n": self.gamma_n.tolist(),
            "c_n": self.c_n.tolist(),
            "axes": "arrays are indexed [gamma_n index][c_n index]",
            "paradigms": list(PARADIGMS),
            "theory": {
                "je_keeps_signal": self.theory_je.tolist(),
                "rc_keeps_signal": self.theory_rc.tolist(),
                "paradigm": self.paradigm_theory.tolist(),
                "je_threshold_c_n": je_threshold(self.gamma_n, self.gamma_s, self.c_s).tolist(),
                "rc_threshold_c_n": rc_threshold(self.gamma_n, self.gamma_s, self.c_s).tolist(),
                "lower_threshold_by_gamma_n": self.lower_threshold_by_row(empirical=False),
                "crossover": {"gamma_n": self.gamma_s, "c_n": self.c_s},
            },
            "empirical": {
                "signal_overlap": "fraction of the signal's variance a linear probe on the features recovers",
                "je_signal_overlap": self.overlap_je.tolist(),
                "rc_signal_overlap": self.overlap_rc.tolist(),
                "je_keeps_signal": self.empirical_je.tolist(),
                "rc_keeps_signal": self.empirical_rc.tolist(),
                "paradigm": self.paradigm_empirical.tolist(),
                "lower_threshold_by_gamma_n": self.lower_threshold_by_row(empirical=True),
                "crossover_bracket_gamma_n": list(bracket),
            },
            "agreement": self.agreement(self.settings.get("agreement_margin", 1e-9)),
            "seconds": self.seconds,
        }


def default_grids(gamma_s: float, c_s: float, size: int = 41,
                  gamma_n_range: tuple[float, float] | None = None,
                  c_n_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Log-spaced grids centred on the crossover: γ_n over γ_s·[10⁻¹, 10¹] (γ_s is the middle point for
    an odd size) and c_n from a tenth of the smallest JE threshold to ten times the largest RC one.

    The default c_n range is shifted up by half a γ_n step (in log) so that no cell sits exactly on the
    JE line c_n = γ_n c_s/γ_s, where the selected subspace would not be unique (a tie).
    """
    if gamma_n_range is None:
        gamma_n_range = (gamma_s / 10.0, gamma_s * 10.0)
    lo_g, hi_g = gamma_n_range
    if c_n_range is None and 0 < lo_g < hi_g and size >= 2:
        je_lo = float(je_threshold(lo_g, gamma_s, c_s))
        lo_c = 0.1 * je_lo if je_lo > 0 else 1e-4 * gamma_s
        hi_c = 10.0 * max(float(rc_threshold(hi_g, gamma_s, c_s)), float(je_threshold(hi_g, gamma_s, c_s)), gamma_s)
        half_step = (hi_g / lo_g) ** (0.5 / (size - 1))
        c_n_range = (lo_c * half_step, hi_c * half_step)
    elif c_n_range is None:
        c_n_range = (1.0, 0.0)  # rejected below with the γ_n range
    if not (0 < lo_g < hi_g and 0 < c_n_range[0] < c_n_range[1]) or size < 2:
        raise ValueError(f"grid ranges must be 0 < low < high and size ≥ 2, got γ_n {gamma_n_range}, "
                         f"c_n {c_n_range}, size {size}.")
    return (np.geomspace(lo_g, hi_g, size), np.geomspace(c_n_range[0], c_n_range[1], size))


def phase_diagram(gamma_s: float, c_s: float, gamma_n_grid: Sequence[float], c_n_grid: Sequence[float],
                  k: int = 1, *, n_nuisance: int | None = None,
                  moments: Literal["exact", "monte_carlo"] = "exact", n: int | None = None,
                  num_views: int = 256, seed: int = 0, progress: Progress | None = None) -> PhaseDiagram:
    """Sweep irrelevant-feature magnitude × augmentation alignment: who recovers the signal?

    gamma_s, c_s: the signal coordinate's variance and augmentation variance (γ_s > 0, c_s ≥ 0);
    gamma_n_grid (G,), c_n_grid (C,): the nuisance's variance and augmentation variance (> 0, ≥ 0);
    k: signal dimensions = output dimensions of both maps; n_nuisance: nuisance dimensions (default k);
    moments: ``"exact"`` (additive closed form on whitened samples: the boundary is exactly the
    inequalities') or ``"monte_carlo"`` (n samples, ``num_views`` sampled views: the finite-sample
    boundary); seed: data, rotation and noise draws, shared by every cell (common random numbers);
    progress: ``progress(done_rows, total_rows)``.

    Every cell solves both closed forms (arXiv 2505.12477, Theorems 1-2) on the synthetic data and records
    the overlap of the learned map with the signal subspace; :class:`PhaseDiagram` compares it with the
    inequalities ``c_n > γ_n c_s/γ_s`` (JE) and ``c_n > γ_n²(γ_s + c_s)/γ_s² − γ_n`` (RC).
    """
    gamma_n_grid = np.asarray(gamma_n_grid, dtype=np.float64).ravel()
    c_n_grid = np.asarray(c_n_grid, dtype=np.float64).ravel()
    if not gamma_s > 0 or not c_s >= 0:
        raise ValueError(f"gamma_s must be > 0 and c_s ≥ 0, got {gamma_s} and {c_s}.")
    if gamma_n_grid.size == 0 or c_n_grid.size == 0 or (gamma_n_grid <= 0).any() or (c_n_grid < 0).any():
        raise ValueError("gamma_n_grid must hold values > 0 and c_n_grid values ≥ 0 (both non-empty).")
    started = time.perf_counter()
    synthetic = _make_synthetic(k, n_nuisance, moments, n, seed)
    overlap_je = np.empty((gamma_n_grid.size, c_n_grid.size))
    overlap_rc = np.empty_like(overlap_je)
    for i, gamma_n in enumerate(gamma_n_grid):
        for j, c_n in enumerate(c_n_grid):
            overlap_je[i, j], overlap_rc[i, j] = signal_selection(
                gamma_s, c_s, float(gamma_n), float(c_n), moments=moments, num_views=num_views, seed=seed,
                _synthetic=synthetic)
        if progress is not None:
            progress(i + 1, gamma_n_grid.size)
    settings = {"moments": moments, "n": int(synthetic.base.shape[0]), "d": int(synthetic.base.shape[1]),
                "seed": seed, "agreement_margin": 1e-9 if moments == "exact" else 0.1}
    if moments == "monte_carlo":
        settings["num_views"] = num_views
    return PhaseDiagram(gamma_s=float(gamma_s), c_s=float(c_s), k=k, n_nuisance=synthetic.base.shape[1] - k,
                        gamma_n=gamma_n_grid, c_n=c_n_grid, overlap_je=overlap_je, overlap_rc=overlap_rc,
                        settings=settings, seconds=time.perf_counter() - started)


def plot_phase_diagram(diagram: PhaseDiagram):
    """A matplotlib Figure: the closed forms' outcome per cell (colours), both thresholds (lines), the
    crossover γ_n = γ_s, and crosses where the closed forms disagree with the inequalities.
    Save it with ``fig.savefig("phase_diagram.png")``."""
    # A bare Figure, not pyplot: no global backend switch in the caller's session (a notebook keeps its
    # backend), and Figure.savefig renders PNG with Agg on its own.
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colours = ["#d9d9d9", "#4c72b0", "#dd8452", "#55a868"]
    labels = ["neither recovers the signal", "only joint embedding", "only reconstruction", "both"]

    def edges(values: np.ndarray) -> np.ndarray:
        if values.size == 1:
            return np.array([values[0] / 2, values[0] * 2]) if values[0] > 0 else np.array([0.0, 1.0])
        logs = np.log(np.clip(values, 1e-300, None))
        mids = (logs[1:] + logs[:-1]) / 2
        return np.exp(np.r_[2 * logs[0] - mids[0], mids, 2 * logs[-1] - mids[-1]])

    fig = Figure(figsize=(7.5, 5.6), dpi=120)
    ax = fig.subplots()
    ax.pcolormesh(edges(diagram.gamma_n), edges(diagram.c_n), diagram.paradigm_empirical.T,
                  cmap=ListedColormap(colours), norm=BoundaryNorm(np.arange(-0.5, 4.5), 4), shading="flat")
    ax.set_xscale("log")
    ax.set_yscale("log")
    dense = np.geomspace(edges(diagram.gamma_n)[0], edges(diagram.gamma_n)[-1], 400)
    je_line = je_threshold(dense, diagram.gamma_s, diagram.c_s)
    rc_line = rc_threshold(dense, diagram.gamma_s, diagram.c_s)
    ax.plot(dense[je_line > 0], je_line[je_line > 0], color="#1f3b73", lw=2,
            label=r"JE threshold $c_n = \gamma_n c_s/\gamma_s$")
    ax.plot(dense[rc_line > 0], rc_line[rc_line > 0], color="#8c3b0c", lw=2, ls="--",
            label=r"RC threshold $c_n = \gamma_n^2(\gamma_s+c_s)/\gamma_s^2 - \gamma_n$")
    ax.axvline(diagram.gamma_s, color="black", lw=1, ls=":", label=r"crossover $\gamma_n = \gamma_s$")
    if diagram.c_s > 0:
        ax.plot([diagram.gamma_s], [diagram.c_s], "ko", ms=5)
    wrong = np.zeros(diagram.overlap_je.shape, dtype=bool)
    margin = diagram.settings.get("agreement_margin", 1e-9)
    for theory, empirical, rel in ((diagram.theory_je, diagram.empirical_je, diagram.margin_je),
                                   (diagram.theory_rc, diagram.empirical_rc, diagram.margin_rc)):
        wrong |= (theory != empirical) & (np.abs(rel) > margin)
    if wrong.any():
        gi, ci = np.nonzero(wrong)
        ax.plot(diagram.gamma_n[gi], diagram.c_n[ci], "kx", ms=4, label="closed forms ≠ inequality")
    ax.set_xlim(edges(diagram.gamma_n)[0], edges(diagram.gamma_n)[-1])
    ax.set_ylim(edges(diagram.c_n)[0], edges(diagram.c_n)[-1])
    ax.set_xlabel(r"irrelevant-feature magnitude $\gamma_n$")
    ax.set_ylabel(r"augmentation variance along it $c_n$ (alignment)")
    ax.set_title(rf"Who recovers the signal? $\gamma_s={diagram.gamma_s:g}$, $c_s={diagram.c_s:g}$, "
                 rf"$k={diagram.k}$ ({diagram.settings.get('moments', 'exact')} moments)", fontsize=10)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(color=c, label=lab) for c, lab in zip(colours, labels)]
    ax.legend(handles=handles, fontsize=7, loc="upper left", framealpha=0.9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- worked example


def worked_example(gamma_s: float = 1.0, c_s: float = 0.1, gamma_n: Sequence[float] = (0.3, 10.0),
                   k: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """The spec's worked example: per γ_n, the c_n each paradigm needs to keep the signal, which one
    needs less, and whether the closed forms confirm both thresholds (signal dropped 0.1 % below a
    threshold, kept 0.1 % above; a threshold ≤ 0 is checked at c_n = 0)."""
    synthetic = _make_synthetic(k, None, "exact", None, seed)
    rows = []
    for g in gamma_n:
        je_thr = float(je_threshold(g, gamma_s, c_s))
        rc_thr = float(rc_threshold(g, gamma_s, c_s))
        confirmed = True
        for index, thr in ((0, je_thr), (1, rc_thr)):
            if thr > 0:
                below = signal_selection(gamma_s, c_s, g, thr * (1 - 1e-3), _synthetic=synthetic)[index]
                above = signal_selection(gamma_s, c_s, g, thr * (1 + 1e-3), _synthetic=synthetic)[index]
                confirmed &= below < 0.5 < above
            else:
                confirmed &= signal_selection(gamma_s, c_s, g, 0.0, _synthetic=synthetic)[index] > 0.5
        lower = ("joint_embedding" if je_thr < max(rc_thr, 0.0) else
                 "reconstruction" if max(rc_thr, 0.0) < je_thr else "equal")
        rows.append({"gamma_n": float(g), "je_threshold": je_thr, "rc_threshold": rc_thr,
                     "rc_needs": max(rc_thr, 0.0), "lower_threshold": lower,
                     "closed_forms_confirm": bool(confirmed)})
    return rows


# --------------------------------------------------------------------------- finite-n probe experiment


@dataclass
class ProbeExperiment:
    """Held-out accuracy of linear probes; ``accuracy[method]`` is (len(c_n), len(n_values)), averaged
    over ``trials``; methods: 'supervised', 'joint_embedding', 'reconstruction'. Bayes accuracy is 1."""

    gamma_s: float
    c_s: float
    gamma_n: float
    c_n: np.ndarray
    n_values: np.ndarray
    k: int
    n_nuisance: int
    trials: int
    accuracy: dict[str, np.ndarray]
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": {"gamma_s": self.gamma_s, "c_s": self.c_s, "k": self.k},
            "gamma_n": self.gamma_n, "n_nuisance": self.n_nuisance, "trials": self.trials,
            "c_n": self.c_n.tolist(), "n": self.n_values.tolist(),
            "je_threshold_c_n": float(je_threshold(self.gamma_n, self.gamma_s, self.c_s)),
            "rc_threshold_c_n": float(rc_threshold(self.gamma_n, self.gamma_s, self.c_s)),
            "axes": "accuracy[method] is indexed [c_n index][n index]",
            "accuracy": {name: acc.tolist() for name, acc in self.accuracy.items()},
            "bayes_accuracy": 1.0,
            "seconds": self.seconds,
        }


def _least_squares_sign_probe(train: np.ndarray, y: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    weights, *_ = np.linalg.lstsq(train, y, rcond=None)
    return float(np.mean(np.sign(test @ weights) == y_test))


def probe_experiment(gamma_s: float = 1.0, c_s: float = 0.1, gamma_n: float = 10.0,
                     c_n: Sequence[float] = (0.1, 10.0, 1000.0), n_values: Sequence[int] = (16, 64, 256, 1024, 4096),
                     k: int = 1, n_nuisance: int = 8, n_test: int = 4000, trials: int = 3,
                     seed: int = 0) -> ProbeExperiment:
    """The spec's check 4: does SSL + a linear probe reach the optimum as n grows?

    Data: k signal coordinates (variance γ_s), ``n_nuisance`` nuisance coordinates (variance γ_n);
    labels ``y = sign(βᵀ x_signal)`` for a random unit β, so a linear classifier can be perfect (Bayes
    accuracy 1). Augmentations: additive, variance c_s on the signal and c_n on the nuisance (exact
    moments of the n training samples).

    * SSL (JE, RC): the closed-form k-dim map from the n unlabelled training samples, then a
      least-squares sign probe on the k features of the same n samples, now labelled.
    * Supervised baseline: a least-squares sign classifier on the raw inputs trained with the same
      augmentations, in expectation: ``w = (XᵀX/n + C)⁻¹ Xᵀy/n``.

    Accuracy on ``n_test`` fresh samples, averaged over ``trials``. Theory: the supervised baseline tends
    to 1 at any c_n; each SSL method only above its threshold (:func:`je_threshold`, :func:`rc_threshold`).
    """
    started = time.perf_counter()
    c_n = np.asarray(c_n, dtype=np.float64).ravel()
    n_values = np.asarray(n_values, dtype=np.int64).ravel()
    d = k + n_nuisance
    if k < 1 or n_nuisance < 1 or (n_values < 1).any() or n_test < 1 or trials < 1:
        raise ValueError("k, n_nuisance, n_values, n_test and trials must all be ≥ 1.")
    scale = np.sqrt(np.r_[np.full(k, gamma_s), np.full(n_nuisance, gamma_n)])
    accuracy = {name: np.zeros((c_n.size, n_values.size)) for name in ("supervised", "joint_embedding",
                                                                         "reconstruction")}
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        beta = rng.standard_normal(k)
        beta /= np.linalg.norm(beta)
        x_test = rng.standard_normal((n_test, d)) * scale
        y_test = np.sign(x_test[:, :k] @ beta)
        x_all = rng.standard_normal((int(n_values.max()), d)) * scale  # nested training sets across n
        for a, c in enumerate(c_n):
            noise_var = np.r_[np.full(k, c_s), np.full(n_nuisance, c)]
            for b, n in enumerate(n_values):
                x = x_all[:n]
                y = np.sign(x[:, :k] @ beta)
                stats = augmentation_moments_additive(x, noise_var)
                w_sup = np.linalg.solve(stats.second_moment, x.T @ y / n)
                accuracy["supervised"][a, b] += np.mean(np.sign(x_test @ w_sup) == y_test)
                for name, linear_map in (("joint_embedding", joint_embedding_closed_form(stats, k).weights),
                                         ("reconstruction", reconstruction_closed_form(stats, k).encoder)):
                    accuracy[name][a, b] += _least_squares_sign_probe(x @ linear_map.T, y, x_test @ linear_map.T,
                                                                      y_test)
    for name in accuracy:
        accuracy[name] /= trials
    return ProbeExperiment(gamma_s=float(gamma_s), c_s=float(c_s), gamma_n=float(gamma_n), c_n=c_n,
                           n_values=n_values, k=k, n_nuisance=n_nuisance, trials=trials, accuracy=accuracy,
                           seconds=time.perf_counter() - started)
