"""Identifiability: held-out linear R² and MCC of each representation against known latent factors
(spec ``representation-metrics.md`` item 7)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch

from sslkit.analysis.align.matrices import feature_matrices
from sslkit.config import ConfigError
from sslkit.data.errors import DataError
from sslkit.functional.metrics import linear_r2, mcc

__all__ = ["Identifiability", "latent_identifiability"]


@dataclass
class Identifiability:
    """Held-out linear R² and MCC of each model's representation against each latent factor.

    Attributes:
        names: models; latents: latent factor names (plus ``"all"`` for the joint factors when there are several).
        r2, mcc: model -> latent -> value.
        dims: latent -> number of columns it was encoded with (e.g. rotation as cos/sin = 2).
        joint: the latent factors concatenated into ``"all"``.
        fit_size, test_size: rows of the R² fit and held-out splits (seeded random split of the n rows).
        ridge: the ridge of the R² fit. mcc_method: ``pearson`` or ``spearman``. MCC uses all n rows.
    """

    names: list
    latents: list
    r2: dict
    mcc: dict
    dims: dict
    joint: list
    fit_size: int
    test_size: int
    ridge: float
    mcc_method: str
    seed: int
    feature_dims: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _latent_matrix(name: str, value: Any, n: int) -> torch.Tensor:
    z = torch.as_tensor(value).detach().double()
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] != n:
        raise DataError(f"Latent {name!r} has shape {tuple(z.shape)}; expected ({n},) or ({n}, m) — one row per "
                        "feature row, in the same order.")
    return z


def latent_identifiability(features: Mapping[str, torch.Tensor], latents: Mapping[str, Any],
                           fit_fraction: float = 0.8, ridge: float = 1e-6, seed: int = 0, mcc_method: str = "pearson",
                           joint: Optional[Sequence[str]] = None) -> Identifiability:
    """Linear R² (held out) and MCC between each representation and each latent factor.

    Args:
        features: name -> (n, d) features; latents: factor name -> (n,) or (n, m), rows in the features' order.
            Encode a circular factor by (cos, sin) and a categorical one one-hot (see :func:`shapes_latents`).
        fit_fraction: share of the n rows (seeded random split) on which ẑ = W h + b is fitted; R² is measured on
            the rest (spec item 7; ridge ``ridge`` = 1e-6 on W).
        mcc_method: ``pearson`` (spec) or ``spearman``; MCC matches learned to true dimensions one-to-one
            (Hungarian) and uses every row — nothing is fitted except the matching.
        joint: factors concatenated into an extra latent ``"all"`` (default: every factor); skipped when only
            one factor is given.

    Returns:
        :class:`Identifiability`.
    """
    if not 0.0 < fit_fraction < 1.0:
        raise ConfigError(f"fit_fraction must be in (0, 1), got {fit_fraction}.")
    names, mats = feature_matrices(features)
    if not names or not latents:
        raise ConfigError("latent_identifiability needs at least one representation and one latent factor.")
    n = mats[0].shape[0]
    groups = {name: _latent_matrix(name, value, n) for name, value in latents.items()}
    joint = list(joint) if joint is not None else list(groups)
    missing = [j for j in joint if j not in groups]
    if missing:
        raise ConfigError(f"joint names unknown latent(s) {missing}; latents are {list(groups)}.")
    if len(joint) > 1:
        groups["all"] = torch.cat([groups[j] for j in joint], dim=1)
    n_fit = int(round(fit_fraction * n))
    if n_fit < 2 or n - n_fit < 2:
        raise DataError(f"Identifiability needs at least 2 fit and 2 held-out rows; {n} rows with fit_fraction "
                        f"{fit_fraction} give {n_fit} and {n - n_fit}.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fit, test = perm[:n_fit], perm[n_fit:]
    r2: dict = {}
    corr: dict = {}
    for name, h in zip(names, mats):
        r2[name], corr[name] = {}, {}
        for latent, z in groups.items():
            try:
                r2[name][latent] = linear_r2(h[fit], z[fit], h[test], z[test], ridge=ridge)
            except ValueError as err:  # a factor constant on the held-out rows: R² is undefined there
                raise DataError(f"Linear R² of {name!r} against latent {latent!r}: {err}") from None
            corr[name][latent] = _safe_mcc(h, z, mcc_method)
    return Identifiability(names=names, latents=list(groups), r2=r2, mcc=corr,
                           dims={k: int(v.shape[1]) for k, v in groups.items()}, joint=joint if len(joint) > 1 else [],
                           fit_size=n_fit, test_size=n - n_fit, ridge=ridge, mcc_method=mcc_method, seed=seed,
                           feature_dims={name: int(h.shape[1]) for name, h in zip(names, mats)})


def _safe_mcc(h: torch.Tensor, z: torch.Tensor, method: str) -> float:
    # Dead (constant) feature dimensions have no correlation; they cannot be matched, so drop them.
    alive = h.std(0) > 0
    if not alive.any():
        return 0.0
    return mcc(h[:, alive], z, method=method)
