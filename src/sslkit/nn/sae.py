"""Sparse autoencoders and their piecewise-affine relatives (SplInterp, arXiv 2505.11836).

* :class:`TopKSAE` — z = W_encᵀx + b_enc, keep K latents (largest z, or largest |z|), x̂ = W_decᵀσ(z) + b_dec.
  By-value selection makes it piecewise affine on a K-th-order power diagram
  (:mod:`sslkit.functional.power_diagram`).
* :class:`ReLUSAE` — σ(z) = max(z, 0) with an L1 penalty λ₁·mean_n‖σ(z)‖₁.
* :class:`KMeansAutoencoder` — x̂ = the nearest centroid (piecewise constant; a K = 1 power
  diagram with zero radii).
* :class:`KMeansLocalPCA` — the k-means partition with the best rank-r affine map per cell:
  x̂ = μ_c + U_cU_cᵀ(x − μ_c) (local PCA).

Both SAEs may tie the decoder to the encoder (W_dec = W_encᵀ, free b_dec), which is how the
reference "SGD" baseline is built. Shapes: inputs (N, d), W_enc (d, m), W_dec (m, d).

Example::

    sae = TopKSAE(dim=64, latents=256, k=15)
    out = sae(x)                  # {"recon": (N, 64), "codes": (N, 256), "pre_activation": (N, 256)}
    loss = sae.loss(x)["loss"]
    save_sae(sae, "runs/sae")     # sae.safetensors + sae.json; load_sae("runs/sae") rebuilds it
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslkit.functional.power_diagram import power_sites, relu_active_set, topk_active_set
from sslkit.atomic_files import save_safetensors_with_json
from sslkit.nn.bounds import MAX_EMBED_DIM, is_finite, is_int

__all__ = ["SparseAutoencoder", "TopKSAE", "ReLUSAE", "KMeansAutoencoder", "KMeansLocalPCA",
           "save_sae", "load_sae"]


class SparseAutoencoder(nn.Module):
    """Shared encoder/decoder of the SAEs; subclasses define :meth:`sparsify`.

    Init follows the SplInterp MNIST experiments (spec "Hyperparameters"): W_enc ~ N(0, 0.1²),
    W_dec ~ N(0, 0.01²), biases 0. A tied model has no ``w_dec`` parameter.
    """

    kind = "base"

    def __init__(self, dim: int, latents: int, *, tied: bool = False, enc_init_std: float = 0.1,
                 dec_init_std: float = 0.01, seed: int | None = None) -> None:
        super().__init__()
        if dim < 1 or latents < 1:
            raise ValueError(f"dim and latents must be positive, got dim={dim}, latents={latents}.")
        self.dim, self.latents, self.tied = int(dim), int(latents), bool(tied)
        self.enc_init_std, self.dec_init_std = float(enc_init_std), float(dec_init_std)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.w_enc = nn.Parameter(torch.randn(dim, latents, generator=generator) * enc_init_std)
        self.b_enc = nn.Parameter(torch.zeros(latents))
        if tied:
            self.register_parameter("w_dec", None)
        else:
            self.w_dec = nn.Parameter(torch.randn(latents, dim, generator=generator) * dec_init_std)
        self.b_dec = nn.Parameter(torch.zeros(dim))

    # --------------------------------------------------------------------------- parts
    @property
    def decoder_weight(self) -> torch.Tensor:
        """(m, d): W_dec, or W_encᵀ when tied."""
        return self.w_enc.t() if self.w_dec is None else self.w_dec

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [self.w_enc, self.b_enc]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [p for p in (self.w_dec, self.b_dec) if p is not None]

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """z = W_encᵀx + b_enc: (N, d) -> (N, m)."""
        return x @ self.w_enc + self.b_enc

    def sparsify(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def active_set(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """(N, m) bool mask of the latents σ keeps (the model's region of each point)."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse codes σ(z): (N, d) -> (N, m)."""
        return self.sparsify(self.pre_activation(x))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """x̂ = codes W_dec + b_dec: (N, m) -> (N, d)."""
        return codes @ self.decoder_weight + self.b_dec

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.pre_activation(x)
        codes = self.sparsify(z)
        return {"recon": self.decode(codes), "codes": codes, "pre_activation": z}

    def sparsity_penalty(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.new_zeros(())

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Objective F: mean over samples and dimensions of (x − x̂)², plus the sparsity penalty.

        Returns ``{"loss", "mse", "penalty", "codes", "recon"}``.
        """
        out = self(x)
        mse = (out["recon"] - x).pow(2).mean()
        penalty = self.sparsity_penalty(out["codes"])
        return {"loss": mse + penalty, "mse": mse, "penalty": penalty, "codes": out["codes"], "recon": out["recon"]}

    # ------------------------------------------------------------------- geometry
    def power_diagram(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sites (m, d) and squared radii (m,) of the encoder's power diagram."""
        return power_sites(self.w_enc.detach(), self.b_enc.detach())

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-serialisable (used by :func:`save_sae`)."""
        return {"dim": self.dim, "latents": self.latents, "tied": self.tied,
                "enc_init_std": self.enc_init_std, "dec_init_std": self.dec_init_std}


class TopKSAE(SparseAutoencoder):
    """TopK sparse autoencoder.

    Args:
        dim: d; latents: m; k: K kept latents.
        select: ``"value"`` (default; largest z, exact power-diagram cells) or ``"abs"`` (largest
            |z| with signs kept, as the SplInterp reference experiments).
        tied: decoder W_dec = W_encᵀ.
    """

    kind = "topk"

    def __init__(self, dim: int, latents: int, k: int, *, select: str = "value", tied: bool = False,
                 enc_init_std: float = 0.1, dec_init_std: float = 0.01, seed: int | None = None) -> None:
        if not 1 <= k <= latents:
            raise ValueError(f"k must be between 1 and latents={latents}, got {k}.")
        if select not in ("value", "abs"):
            raise ValueError(f"select must be 'value' or 'abs', got {select!r}.")
        super().__init__(dim, latents, tied=tied, enc_init_std=enc_init_std, dec_init_std=dec_init_std, seed=seed)
        self.k, self.select = int(k), select

    def active_set(self, z: torch.Tensor) -> torch.Tensor:
        return topk_active_set(z, self.k, self.select)

    def sparsify(self, z: torch.Tensor) -> torch.Tensor:
        scores = z if self.select == "value" else z.abs()
        index = scores.topk(self.k, dim=-1).indices
        # Scatter the kept pre-activations (signs kept) into zeros; gradients reach only those K.
        return torch.zeros_like(z).scatter(-1, index, z.gather(-1, index))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k, "select": self.select}


class ReLUSAE(SparseAutoencoder):
    """ReLU sparse autoencoder: σ(z) = max(z, 0), penalty ``l1``·mean_n‖σ(z)‖₁."""

    kind = "relu"

    def __init__(self, dim: int, latents: int, *, l1: float = 1e-3, tied: bool = False,
                 enc_init_std: float = 0.1, dec_init_std: float = 0.01, seed: int | None = None) -> None:
        super().__init__(dim, latents, tied=tied, enc_init_std=enc_init_std, dec_init_std=dec_init_std, seed=seed)
        self.l1 = float(l1)

    def active_set(self, z: torch.Tensor) -> torch.Tensor:
        return relu_active_set(z)

    def sparsify(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z)

    def sparsity_penalty(self, codes: torch.Tensor) -> torch.Tensor:
        return self.l1 * codes.abs().sum(dim=-1).mean()

    def config(self) -> dict[str, Any]:
        return {**super().config(), "l1": self.l1}


# ------------------------------------------------------------------------------- k-means family


def _squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    # The expanded form is fine for assignments (ties are measure-zero) and avoids an (N, c, d) temporary.
    return (x.pow(2).sum(1, keepdim=True) - 2.0 * x @ centroids.t() + centroids.pow(2).sum(1)).clamp_min_(0.0)


def _kmeans_plus_plus(x: torch.Tensor, n_clusters: int, generator: torch.Generator) -> torch.Tensor:
    first = torch.randint(x.shape[0], (1,), generator=generator)
    centroids = [x[first[0]]]
    closest = (x - centroids[0]).pow(2).sum(1)
    for _ in range(1, n_clusters):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than clusters: repeat a point
            pick = torch.randint(x.shape[0], (1,), generator=generator)[0]
        else:
            pick = torch.multinomial(closest / total, 1, generator=generator)[0]
        centroids.append(x[pick])
        closest = torch.minimum(closest, (x - x[pick]).pow(2).sum(1))
    return torch.stack(centroids)


def _lloyd(x: torch.Tensor, centroids: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    n_clusters = centroids.shape[0]
    labels = None
    for _ in range(max_iter):
        distances = _squared_distances(x, centroids)
        new_labels = distances.argmin(1)
        counts = torch.bincount(new_labels, minlength=n_clusters)
        sums = torch.zeros_like(centroids).index_add_(0, new_labels, x)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centroids)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            # Re-seed an empty cluster at the point worst served by its centroid.
            worst = distances.gather(1, new_labels[:, None]).squeeze(1).topk(len(empty)).indices
            centroids[empty] = x[worst]
        if labels is not None and torch.equal(new_labels, labels) and not len(empty):
            break
        labels = new_labels
    labels = _squared_distances(x, centroids).argmin(1)
    inertia = float((x - centroids[labels]).pow(2).sum())
    return centroids, labels, inertia


class KMeansAutoencoder(nn.Module):
    """Piecewise-constant autoencoder: x̂ = the nearest of ``n_clusters`` centroids (Lloyd's algorithm
    with k-means++ seeding, best of ``n_init``).

    The assignment is the K = 1 power diagram with sites = centroids and zero radii, i.e. a TopK(1)
    encoder with W_enc = Cᵀ and b_enc = −½‖c‖² (:meth:`as_topk_encoder`).
    """

    kind = "kmeans"

    def __init__(self, n_clusters: int, dim: int | None = None) -> None:
        super().__init__()
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be positive, got {n_clusters}.")
        self.n_clusters = int(n_clusters)
        self.register_buffer("centroids", torch.zeros(n_clusters, dim or 0))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, *, n_init: int = 4, max_iter: int = 300, seed: int = 0) -> "KMeansAutoencoder":
        """Fit on x (N, d) with N ≥ n_clusters; keeps the restart with the lowest inertia."""
        if x.ndim != 2 or x.shape[0] < self.n_clusters:
            raise ValueError(f"k-means needs (N, d) data with N ≥ {self.n_clusters}, got shape {tuple(x.shape)}.")
        generator = torch.Generator().manual_seed(seed)
        best = None
        for _ in range(n_init):
            start = _kmeans_plus_plus(x, self.n_clusters, generator)
            centroids, _, inertia = _lloyd(x, start, max_iter)
            if best is None or inertia < best[1]:
                best = (centroids, inertia)
        self.centroids = best[0].clone()
        self.inertia_ = best[1]
        return self

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster index of each point: (N, d) -> (N,) long."""
        return _squared_distances(x, self.centroids).argmin(1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cluster = self.assign(x)
        return {"recon": self.centroids[cluster], "cluster": cluster}

    def as_topk_encoder(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_enc (d, c), b_enc (c,)) of the TopK(1) encoder with the same cells: r_i² = ‖c_i‖² + 2b_i = 0."""
        return self.centroids.t().clone(), -0.5 * self.centroids.pow(2).sum(1)


class KMeansLocalPCA(nn.Module):
    """k-means partition with a rank-``rank`` local PCA per cell: x̂ = μ_c + U_cU_cᵀ(x − μ_c).

    μ_c is the k-means centroid (the cell mean at convergence), so ‖x − x̂‖ ≤ ‖x − μ_c‖ for every x:
    the reconstruction error never exceeds that of :class:`KMeansAutoencoder` on the same partition.
    Points are assigned to the nearest centroid; the SplInterp paper does not confirm a Lloyd-style
    reassignment by reconstruction error, so none is done.
    """

    kind = "kmeans_pca"

    def __init__(self, n_clusters: int, rank: int, dim: int | None = None) -> None:
        super().__init__()
        if rank < 0:
            raise ValueError(f"rank must be ≥ 0, got {rank}.")
        self.rank = int(rank)
        self.kmeans = KMeansAutoencoder(n_clusters, dim)
        self.register_buffer("bases", torch.zeros(n_clusters, dim or 0, rank))

    @property
    def n_clusters(self) -> int:
        return self.kmeans.n_clusters

    @torch.no_grad()
    def fit(self, x: torch.Tensor, *, kmeans: KMeansAutoencoder | None = None, n_init: int = 4,
            seed: int = 0) -> "KMeansLocalPCA":
        """Fit k-means (or adopt a fitted ``kmeans``), then the top-``rank`` principal directions of each cell."""
        if kmeans is not None:
            self.kmeans.centroids = kmeans.centroids.clone()
        else:
            self.kmeans.fit(x, n_init=n_init, seed=seed)
        labels = self.kmeans.assign(x)
        centroids = self.kmeans.centroids
        bases = torch.zeros(self.n_clusters, x.shape[1], self.rank, dtype=x.dtype)
        for c in range(self.n_clusters):
            cell = x[labels == c] - centroids[c]
            if cell.shape[0] == 0 or self.rank == 0:
                continue
            _, _, vh = torch.linalg.svd(cell, full_matrices=False)
            r = min(self.rank, vh.shape[0])
            bases[c, :, :r] = vh[:r].t()
        self.bases = bases
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cluster = self.kmeans.assign(x)
        centred = x - self.kmeans.centroids[cluster]
        basis = self.bases[cluster]  # (N, d, r)
        projection = torch.einsum("ndr,nd->nr", basis, centred)
        recon = self.kmeans.centroids[cluster] + torch.einsum("ndr,nr->nd", basis, projection)
        return {"recon": recon, "cluster": cluster}


# ------------------------------------------------------------------------------- save / load

SAE_FORMAT = "sslkit.sae"
SAE_WEIGHTS = "sae.safetensors"
SAE_JSON = "sae.json"
_KINDS = {"topk": TopKSAE, "relu": ReLUSAE}


def save_sae(model: SparseAutoencoder, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``sae.safetensors`` + ``sae.json`` (kind, constructor config, ``extra``) atomically."""

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    meta = {"format": SAE_FORMAT, "format_version": 1, "kind": model.kind, "save_id": save_id,
            "config": model.config(), "extra": extra or {}}
    text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_safetensors_with_json(directory, tensors, SAE_WEIGHTS, SAE_JSON, text,
                               metadata={"format": SAE_FORMAT, "save_id": save_id})
    return directory


# An SAE's input width is a model's activation width (the ViT bound); a million latents is past any CPU run.
MAX_SAE_LATENTS = 1 << 20


def _sae_config_problem(kind: str, config: Any) -> tuple[str, str] | None:
    """The first bad constructor value in an ``sae.json`` config as ``(key, "must ..., got ...")``, or None."""
    if not isinstance(config, dict):
        return "config", f"must be a JSON object, got {type(config).__name__}"
    allowed = {"dim", "latents", "tied", "enc_init_std", "dec_init_std"} | ({"k", "select"} if kind == "topk" else {"l1"})
    unknown = sorted(set(config) - allowed)
    if unknown:
        return f"config.{unknown[0]}", f"is not a {kind} SAE setting (allowed: {sorted(allowed)})"
    for key, top in (("dim", MAX_EMBED_DIM), ("latents", MAX_SAE_LATENTS)):
        value = config.get(key)
        if not is_int(value) or not 1 <= value <= top:
            return f"config.{key}", f"must be an integer in [1, {top}], got {value!r}"
    if kind == "topk" and not (is_int(config.get("k")) and 1 <= config["k"] <= config["latents"]):
        return "config.k", f"must be an integer in [1, latents = {config['latents']}], got {config.get('k')!r}"
    for key in ("enc_init_std", "dec_init_std", "l1"):
        value = config.get(key, 0.0)
        if not (is_finite(value) and value >= 0):
            return f"config.{key}", f"must be a finite number >= 0, got {value!r}"
    if not isinstance(config.get("tied", False), bool):
        return "config.tied", f"must be true or false, got {config['tied']!r}"
    if kind == "topk" and config.get("select", "value") not in ("value", "abs"):
        return "config.select", f"must be 'value' or 'abs', got {config['select']!r}"
    return None


def load_sae(directory: str | os.PathLike) -> SparseAutoencoder:
    """Rebuild an SAE written by :func:`save_sae` (eval mode). ``model.meta`` holds the JSON ``extra``.

    ``sae.json`` is untrusted input: its config is checked value by value, the model is built on the meta
    device and compared with the shapes in the safetensors header, and memory is allocated only for weights
    that fit, so an absurd width fails before anything of that size exists.

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: a bad ``sae.json`` (one sentence naming the file and the key) or weights that do not fit it.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    directory = Path(directory)
    json_path, weights_path = directory / SAE_JSON, directory / SAE_WEIGHTS
    for path in (json_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"SAE file {path} is missing; expected {SAE_JSON} and {SAE_WEIGHTS} "
                                    f"written by sslkit sae train.")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"SAE description {json_path} is not valid JSON ({err}); retrain or re-save the SAE.") from None
    if not isinstance(meta, dict) or meta.get("format") != SAE_FORMAT or meta.get("kind") not in _KINDS:
        raise ValueError(f"{json_path} is not an sslkit SAE description.")
    problem = _sae_config_problem(meta["kind"], meta.get("config"))
    if problem is not None:
        raise ValueError(f"SAE description {json_path} has a bad {problem[0]!r}: it {problem[1]}; fix it or "
                         f"retrain the SAE.")
    with torch.device("meta"):
        model = _KINDS[meta["kind"]](**meta["config"])
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"SAE weights {weights_path} are unreadable ({err}); retrain or re-save the SAE.") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if shapes != expected:
        raise ValueError(f"SAE weights {weights_path} do not match {json_path}: the file holds {shapes}, the "
                         f"config needs {expected}.")
    model = model.to_empty(device="cpu")  # memory only now, for tensors whose sizes the file itself holds
    try:
        model.load_state_dict(load_file(str(weights_path)), strict=True)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"SAE weights {weights_path} are unreadable ({err}); retrain or re-save the SAE.") from None
    model.meta = meta.get("extra", {})
    return model.eval()
