"""Training and measuring sparse autoencoders: PAM-SGD, the joint-Adam baselines, metrics,
the sample-efficiency curve and partition plots (SplInterp, arXiv 2505.11836).

PAM-SGD (Sec. 5 of the paper) alternates, every epoch t,
  (b) one pass of minibatch Adam over the encoder with the decoder frozen, loss
      MSE (+ L1) + μ_enc‖W_enc − W_enc^t‖²_F + ν_enc‖b_enc − b_enc^t‖², ``encoder_steps`` updates per batch;
  (a) the decoder in closed form on the whole training set (:mod:`sslkit.functional.sae_decoder`).
The spec default order is (b) then (a) (``order="encoder_first"``; the MNIST reference), the LLM
reference runs (a) first. The baseline ("SGD" in the paper) trains encoder and decoder jointly with
Adam; as in the reference code its decoder is tied (W_dec = W_encᵀ), so that comparison changes
both the optimiser and the tying — ``tied=False`` gives the untied joint-Adam baseline.

Example::

    cfg = SAETrainConfig(latents=256, k=15, trainer="pam", epochs=10)
    model, history = train_sae(x_train, cfg, x_test=x_test)
    reconstruction_metrics(model, x_test)   # {"mse", "fvu", "l0", "dead_latents", ...}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from sslkit.figures import pyplot, save_figure
from sslkit.functional.power_diagram import region_ids
from sslkit.functional.sae_decoder import (
    add_normal_equations,
    decoder_normal_equations,
    pull_decoder_bias,
    solve_decoder_joint,
    solve_decoder_mean_residual,
)
from sslkit.nn.sae import KMeansAutoencoder, KMeansLocalPCA, ReLUSAE, SparseAutoencoder, TopKSAE
from sslkit.training_loop import TrainingLoop

__all__ = [
    "SAETrainConfig",
    "build_sae",
    "train_sae",
    "train_pam_sgd",
    "train_adam",
    "decoder_step",
    "encoder_pass",
    "scalar_standardisation",
    "fraction_of_variance_unexplained",
    "reconstruction_metrics",
    "epochs_for_fraction",
    "nested_subsets",
    "sample_efficiency_curve",
    "summarise_curve",
    "toy_clusters_2d",
    "toy_comparison",
    "plot_partition_2d",
    "plot_sample_efficiency",
    "plot_training_curves",
]

_CHUNK = 4096  # rows per no-grad chunk for full-set passes


@dataclass
class SAETrainConfig:
    """Everything that defines one SAE training run. Defaults: the spec's MNIST setting
    (m 256, K 15, Adam 3e-3, batch 128, seed 42), joint decoder solve, encoder-first order."""

    latents: int = 256
    k: int = 15
    activation: str = "topk"          # topk | relu
    select: str = "value"             # topk selection: value (power diagram) | abs (reference experiments)
    l1: float = 1e-3                  # ReLU L1 weight λ₁
    trainer: str = "pam"              # pam | adam
    tied: bool | None = None          # None: adam -> tied (the reference baseline), pam -> untied
    epochs: int = 50
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 42
    enc_init_std: float = 0.1
    dec_init_std: float = 0.01
    # PAM-SGD
    order: str = "encoder_first"      # encoder_first (MNIST ref, spec default) | decoder_first (LLM ref)
    decoder_bias: str = "joint"       # joint (exact block minimiser) | mean_residual (reference code)
    ridge: float = 1e-6               # ε on the decoder weight rows (LLM lstsq reference: (1e-5)**2)
    decoder_stay_close: bool = False  # proximal pull of the decoder towards its previous value
    mu_dec: float = 1e-3              # μ_dec (weight pull), used when decoder_stay_close
    nu_dec: float = 1e-3              # ν_dec (bias pull)
    alpha_w: float = 1e-6             # α_w (weight decay in the solve)
    beta_b: float = 1e-6              # β_b (bias decay)
    mu_enc: float = 0.0               # encoder proximal weights (LLM reference 1e-3; MNIST none)
    nu_enc: float = 0.0
    encoder_steps: int = 1            # s: Adam updates per minibatch in the encoder pass
    grad_clip: float | None = None    # encoder grad-norm clip (LLM reference 1.0)

    def resolved_tied(self) -> bool:
        return (self.trainer == "adam") if self.tied is None else bool(self.tied)

    def validate(self) -> "SAETrainConfig":
        choices = {"activation": ("topk", "relu"), "select": ("value", "abs"), "trainer": ("pam", "adam"),
                   "order": ("encoder_first", "decoder_first"), "decoder_bias": ("joint", "mean_residual")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"SAE setting {key}={getattr(self, key)!r} is not one of {list(allowed)}.")
        for key, minimum in (("latents", 1), ("batch_size", 1), ("encoder_steps", 1), ("epochs", 0)):
            if getattr(self, key) < minimum:
                raise ValueError(f"SAE setting {key}={getattr(self, key)} must be ≥ {minimum}.")
        if not self.lr > 0:
            raise ValueError(f"SAE setting lr={self.lr} must be > 0.")
        for key in ("ridge", "l1"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"SAE setting {key}={getattr(self, key)} must be ≥ 0.")
        if self.activation == "topk" and not 1 <= self.k <= self.latents:
            raise ValueError(f"SAE setting k={self.k} must be between 1 and latents={self.latents}.")
        if self.trainer == "pam" and self.resolved_tied():
            raise ValueError("PAM-SGD solves an untied decoder in closed form; use tied=False with trainer=pam.")
        return self

    @classmethod
    def llm_reference(cls, **overrides) -> "SAETrainConfig":
        """The spec's LLM regularisers: decoder first, lstsq-style ridge (1e-5)², proximal terms, clip 1."""
        base = dict(order="decoder_first", decoder_bias="mean_residual", ridge=1e-10, decoder_stay_close=True,
                    mu_dec=1e-3, nu_dec=1e-3, alpha_w=1e-6, beta_b=1e-6, mu_enc=1e-3, nu_enc=1e-3,
                    grad_clip=1.0, lr=1e-3, batch_size=256)
        base.update(overrides)
        return cls(**base)


def build_sae(dim: int, cfg: SAETrainConfig) -> SparseAutoencoder:
    """The untrained SAE a config describes (seeded by ``cfg.seed``)."""
    common = dict(tied=cfg.resolved_tied(), enc_init_std=cfg.enc_init_std, dec_init_std=cfg.dec_init_std,
                  seed=cfg.seed)
    if cfg.activation == "topk":
        return TopKSAE(dim, cfg.latents, cfg.k, select=cfg.select, **common)
    return ReLUSAE(dim, cfg.latents, l1=cfg.l1, **common)


# ------------------------------------------------------------------------------- metrics


def scalar_standardisation(x: torch.Tensor) -> tuple[float, float]:
    """One mean and one std over all entries of x (as the reference normalises MNIST with (0.1307, 0.3081))."""
    mean = float(x.mean())
    std = float(x.std())
    return mean, (std if std > 0 else 1.0)


def fraction_of_variance_unexplained(x: torch.Tensor, recon: torch.Tensor) -> float:
    """FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄ the mean of x over samples); 0 is perfect, 1 is the mean predictor."""
    total = (x - x.mean(dim=0)).pow(2).sum()
    return float((x - recon).pow(2).sum() / total.clamp_min(torch.finfo(x.dtype).tiny))


@torch.no_grad()
def reconstruction_metrics(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """MSE (mean over samples and dims), FVU, and for SAEs L0 (mean active latents), dead latents
    (never active on x) and their fraction. Works for the k-means models too (no code metrics)."""
    was_training = model.training
    model.eval()
    sq_error, recons = 0.0, []
    fired = None
    l0_total = 0.0
    try:
        for start in range(0, x.shape[0], _CHUNK):
            block = x[start:start + _CHUNK]
            out = model(block)
            sq_error += float((out["recon"] - block).pow(2).sum())
            recons.append(out["recon"])
            if "codes" in out:
                active = out["codes"] != 0
                l0_total += float(active.sum())
                fired = active.any(0) if fired is None else fired | active.any(0)
    finally:
        model.train(was_training)
    recon = torch.cat(recons)
    metrics = {"mse": sq_error / x.numel(), "fvu": fraction_of_variance_unexplained(x, recon)}
    if fired is not None:
        dead = int((~fired).sum())
        metrics.update(l0=l0_total / x.shape[0], dead_latents=dead, dead_fraction=dead / fired.numel())
    return metrics


@torch.no_grad()
def _mse(model: torch.nn.Module, x: torch.Tensor) -> float:
    total = 0.0
    for start in range(0, x.shape[0], _CHUNK):
        block = x[start:start + _CHUNK]
        total += float((model(block)["recon"] - block).pow(2).sum())
    return total / x.numel()


# ------------------------------------------------------------------------------- PAM-SGD


@torch.no_grad()
def decoder_step(model: SparseAutoencoder, x: torch.Tensor, cfg: SAETrainConfig) -> None:
    """Block (a): set (W_dec, b_dec) to the closed-form ridge solution for the current codes on all of x.

    The previous decoder is W^t for the proximal terms when ``cfg.decoder_stay_close``.
    """
    if model.w_dec is None:
        raise ValueError("decoder_step needs an untied SAE (it solves W_dec in closed form).")
    eq = None
    for start in range(0, x.shape[0], _CHUNK):
        block = x[start:start + _CHUNK]
        eq = add_normal_equations(eq, decoder_normal_equations(model.encode(block), block))
    prox = dict(previous=model.w_dec, pull=cfg.mu_dec, weight_decay=cfg.alpha_w) if cfg.decoder_stay_close else {}
    solve = solve_decoder_joint if cfg.decoder_bias == "joint" else solve_decoder_mean_residual
    w, b = solve(eq, cfg.ridge, **prox)
    if cfg.decoder_stay_close:
        b = pull_decoder_bias(b, model.b_dec, pull=cfg.nu_dec, decay=cfg.beta_b)
    model.w_dec.copy_(w.to(model.w_dec.dtype))
    model.b_dec.copy_(b.to(model.b_dec.dtype))


def encoder_pass(model: SparseAutoencoder, x: torch.Tensor, optimizer: torch.optim.Optimizer,
                 cfg: SAETrainConfig, generator: torch.Generator) -> float:
    """Block (b): one shuffled pass of minibatch Adam on the encoder, decoder frozen.

    Returns the mean minibatch loss (before each batch's updates).
    """
    anchor_w, anchor_b = model.w_enc.detach().clone(), model.b_enc.detach().clone()
    encoder = model.encoder_parameters()
    for p in model.decoder_parameters():
        p.requires_grad_(False)
    losses = []
    try:
        for index in torch.randperm(x.shape[0], generator=generator).split(cfg.batch_size):
            batch = x[index]
            for step in range(cfg.encoder_steps):
                loss = model.loss(batch)["loss"]
                if cfg.mu_enc:
                    loss = loss + cfg.mu_enc * (model.w_enc - anchor_w).pow(2).sum()
                if cfg.nu_enc:
                    loss = loss + cfg.nu_enc * (model.b_enc - anchor_b).pow(2).sum()
                if step == 0:
                    losses.append(float(loss.detach()))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(encoder, cfg.grad_clip)
                optimizer.step()
    finally:
        for p in model.decoder_parameters():
            p.requires_grad_(True)
    return sum(losses) / max(len(losses), 1)


def _train_epochs(trainer: str, model: SparseAutoencoder, x_train: torch.Tensor, x_test: torch.Tensor | None,
                  cfg: SAETrainConfig, one_epoch: Callable[[torch.Generator], float],
                  on_epoch: Callable[[dict], None] | None) -> list[dict]:
    """Run ``one_epoch(generator) -> mean batch loss`` ``cfg.epochs`` times; one record per epoch.

    The data order is seeded with ``cfg.seed`` (the weights are seeded by ``build_sae``)."""
    history = []
    model.train()
    with TrainingLoop(f"SAE ({trainer})", steps=cfg.epochs, generator_seed=cfg.seed,
                      hint="lower the learning rate or standardise the activations") as loop:
        for epoch in range(1, cfg.epochs + 1):
            batch_loss = one_epoch(loop.generator)
            record = {"epoch": epoch, "batch_loss": batch_loss, "train_mse": _mse(model, x_train),
                      "seconds": loop.seconds}
            if x_test is not None:
                record["test_mse"] = _mse(model, x_test)
            loop.check(record["train_mse"], f"epoch {epoch}")
            loop.advance(record["train_mse"])
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
    return history


def train_pam_sgd(model: SparseAutoencoder, x_train: torch.Tensor, cfg: SAETrainConfig, *,
                  x_test: torch.Tensor | None = None, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """PAM-SGD in place on ``model`` (untied). Returns one record per epoch:
    ``{"epoch", "batch_loss", "train_mse", "test_mse"?, "seconds"}`` (seconds: cumulative wall time)."""
    optimizer = torch.optim.Adam(model.encoder_parameters(), lr=cfg.lr)

    def one_epoch(generator: torch.Generator) -> float:
        if cfg.order == "decoder_first":
            decoder_step(model, x_train, cfg)
        batch_loss = encoder_pass(model, x_train, optimizer, cfg, generator)
        if cfg.order == "encoder_first":
            decoder_step(model, x_train, cfg)
        return batch_loss

    return _train_epochs("pam", model, x_train, x_test, cfg, one_epoch, on_epoch)


def train_adam(model: SparseAutoencoder, x_train: torch.Tensor, cfg: SAETrainConfig, *,
               x_test: torch.Tensor | None = None, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Joint minibatch Adam on all parameters (the paper's "SGD" baseline; tied or untied as built)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def one_epoch(generator: torch.Generator) -> float:
        losses = []
        for index in torch.randperm(x_train.shape[0], generator=generator).split(cfg.batch_size):
            loss = model.loss(x_train[index])["loss"]
            losses.append(float(loss.detach()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
        return sum(losses) / len(losses)

    return _train_epochs("adam", model, x_train, x_test, cfg, one_epoch, on_epoch)


def train_sae(x_train: torch.Tensor, cfg: SAETrainConfig, *, x_test: torch.Tensor | None = None,
              on_epoch: Callable[[dict], None] | None = None) -> tuple[SparseAutoencoder, list[dict]]:
    """Build the SAE ``cfg`` describes for x_train (N, d) and train it with ``cfg.trainer``."""
    cfg.validate()
    if x_train.ndim != 2 or x_train.shape[0] == 0:
        raise ValueError(f"SAE training data must be a non-empty (N, d) matrix, got shape {tuple(x_train.shape)}.")
    model = build_sae(x_train.shape[1], cfg).to(x_train.dtype)
    trainer = train_pam_sgd if cfg.trainer == "pam" else train_adam
    return model, trainer(model, x_train, cfg, x_test=x_test, on_epoch=on_epoch)


# ------------------------------------------------------------------------------- sample efficiency


def epochs_for_fraction(fraction: float) -> int:
    """The reference ablation's budget: min(20, max(10, ⌊20 f⌋)) epochs for a training fraction f."""
    return min(20, max(10, math.floor(20 * fraction)))


def nested_subsets(n: int, fractions: Sequence[float], seed: int) -> dict[float, torch.Tensor]:
    """Row indices for each fraction, nested (the 5 % subset contains the 1 % subset), at least one row."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return {f: perm[:max(1, round(f * n))] for f in fractions}


def sample_efficiency_curve(x_train: torch.Tensor, x_test: torch.Tensor, fractions: Sequence[float],
                            configs: dict[str, SAETrainConfig], *, seeds: Iterable[int] = (0,),
                            epochs: int | Callable[[float], int] | None = epochs_for_fraction,
                            on_run: Callable[[dict], None] | None = None) -> list[dict]:
    """Test MSE against training fraction for each named trainer config.

    Every trainer sees the same nested subsets per seed; the seed also seeds the model init.
    ``epochs``: an int, a function of the fraction, or None to keep each config's epochs.

    Returns rows ``{"trainer", "fraction", "n_train", "seed", "epochs", "test_mse", "train_mse",
    "test_fvu", "l0", "dead_latents", "seconds"}``.
    """
    rows = []
    for seed in seeds:
        subsets = nested_subsets(x_train.shape[0], fractions, seed)
        for fraction in fractions:
            part = x_train[subsets[fraction]]
            for name, cfg in configs.items():
                n_epochs = cfg.epochs if epochs is None else (epochs(fraction) if callable(epochs) else int(epochs))
                run_cfg = dataclasses.replace(cfg, epochs=n_epochs, seed=cfg.seed + seed)
                model, history = train_sae(part, run_cfg)
                test = reconstruction_metrics(model, x_test)
                row = {"trainer": name, "fraction": fraction, "n_train": int(part.shape[0]), "seed": seed,
                       "epochs": n_epochs, "test_mse": test["mse"], "train_mse": history[-1]["train_mse"] if history else float("nan"),
                       "test_fvu": test["fvu"], "l0": test.get("l0"), "dead_latents": test.get("dead_latents"),
                       "seconds": history[-1]["seconds"] if history else 0.0}
                rows.append(row)
                if on_run is not None:
                    on_run(row)
    return rows


def summarise_curve(rows: list[dict]) -> list[dict]:
    """Mean and std of test MSE over seeds per (trainer, fraction): rows
    ``{"trainer", "fraction", "n_train", "test_mse", "test_mse_std", "l0", "seeds"}``."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["trainer"], row["fraction"]), []).append(row)
    out = []
    for (trainer, fraction), group in groups.items():
        values = torch.tensor([g["test_mse"] for g in group], dtype=torch.float64)
        l0 = [g["l0"] for g in group if g.get("l0") is not None]
        out.append({"trainer": trainer, "fraction": fraction, "n_train": group[0]["n_train"],
                    "test_mse": float(values.mean()), "test_mse_std": float(values.std()) if len(group) > 1 else 0.0,
                    "l0": sum(l0) / len(l0) if l0 else None, "seeds": len(group)})
    return out


# ------------------------------------------------------------------------------- toy data


def toy_clusters_2d(n: int = 100, seed: int = 0) -> torch.Tensor:
    """The spec's 2-D toy: ``n`` points in 3 elongated Gaussian clusters (so a line per cell helps). (n, 2)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, 3.0]])
    angles = torch.tensor([0.3, -0.8, 1.6])
    sizes = [n // 3 + (1 if i < n % 3 else 0) for i in range(3)]
    points = []
    for centre, angle, size in zip(centres, angles, sizes):
        local = torch.randn(size, 2, generator=generator) * torch.tensor([0.9, 0.12])
        rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points.append(local @ rotation.t() + centre)
    return torch.cat(points)


def toy_comparison(x: torch.Tensor, *, n_clusters: int = 3, rank: int = 1,
                   sae_settings: Sequence[tuple[int, int]] = ((40, 1), (80, 1), (40, 3), (80, 3)),
                   steps: int = 7500, lr: float = 8e-3, seed: int = 0) -> dict[str, tuple[torch.nn.Module, float]]:
    """k-means, k-means + local PCA and full-batch Adam TopK SAEs (m, K) on 2-D toy data.

    Spec "toy (2-D)": KMeans(3) then 1-D PCA per cluster; TopK SAEs with m ∈ {40, 80}, K ∈ {1, 3},
    Adam 8e-3, 7500 steps. Returns ``{name: (model, train MSE)}``.
    """
    kmeans = KMeansAutoencoder(n_clusters).fit(x, seed=seed)
    local_pca = KMeansLocalPCA(n_clusters, rank).fit(x, kmeans=kmeans)
    results: dict[str, tuple[torch.nn.Module, float]] = {
        "k-means": (kmeans, _mse(kmeans, x)),
        f"k-means + local PCA (r={rank})": (local_pca, _mse(local_pca, x)),
    }
    for latents, k in sae_settings:
        sae = TopKSAE(x.shape[1], latents, k, seed=seed, enc_init_std=1.0, dec_init_std=0.1)
        optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
        with TrainingLoop(f"TopK SAE m={latents} K={k}", steps=steps, hint="lower lr") as loop:
            for _ in range(steps):
                loss = sae.loss(x)["loss"]
                loop.check(loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loop.advance()
        results[f"TopK SAE m={latents} K={k}"] = (sae, _mse(sae, x))
    return results


# ------------------------------------------------------------------------------- plots


def _region_map(model: torch.nn.Module, grid: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if isinstance(model, SparseAutoencoder):
            return region_ids(model.active_set(model.pre_activation(grid)))[0]
        if isinstance(model, KMeansLocalPCA):
            return model.kmeans.assign(grid)
        if isinstance(model, KMeansAutoencoder):
            return model.assign(grid)
    raise TypeError(f"cannot draw the partition of a {type(model).__name__}.")


def plot_partition_2d(models: dict[str, torch.nn.Module], x: torch.Tensor, path: str | Path, *,
                      resolution: int = 300, titles: dict[str, str] | None = None) -> Path:
    """One panel per model: its regions (cells of the power diagram / sign pattern / k-means) over
    the bounding box of the 2-D data x (N, 2), the data, and each point's reconstruction. PNG."""
    if x.shape[1] != 2:
        raise ValueError(f"plot_partition_2d draws 2-D data, got dimension {x.shape[1]}.")
    lo, hi = x.min(0).values, x.max(0).values
    pad = 0.15 * (hi - lo)
    xs = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), resolution)
    ys = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), resolution)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1).to(x.dtype)
    fig, axes = pyplot().subplots(1, len(models), figsize=(4 * len(models), 4), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items()):
        ids = _region_map(model, grid)
        n_regions = int(ids.max()) + 1
        # A fixed shuffle of the ids so neighbouring cells get unrelated colours.
        shuffled = torch.randperm(n_regions, generator=torch.Generator().manual_seed(0))[ids]
        ax.imshow(shuffled.reshape(resolution, resolution).numpy() % 20, origin="lower", cmap="tab20",
                  extent=(float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])), alpha=0.55,
                  interpolation="nearest", aspect="auto")
        with torch.no_grad():
            recon = model(x)["recon"]
        ax.scatter(x[:, 0], x[:, 1], s=8, c="k", label="data")
        ax.scatter(recon[:, 0], recon[:, 1], s=8, c="crimson", marker="x", label="reconstruction")
        ax.set_title((titles or {}).get(name, f"{name}\n{n_regions} regions in view"), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="lower left", fontsize=7)
    return save_figure(fig, path, dpi=120, bbox_inches="tight")


def plot_sample_efficiency(summary: list[dict], path: str | Path, title: str = "SAE sample efficiency") -> Path:
    """Test MSE against training fraction (log x), one line per trainer, ±1 std over seeds. PNG."""
    fig, ax = pyplot().subplots(figsize=(5.5, 4))
    for trainer in dict.fromkeys(row["trainer"] for row in summary):
        rows = sorted((r for r in summary if r["trainer"] == trainer), key=lambda r: r["fraction"])
        f = [100 * r["fraction"] for r in rows]
        ax.errorbar(f, [r["test_mse"] for r in rows], yerr=[r.get("test_mse_std", 0.0) for r in rows],
                    marker="o", capsize=3, label=trainer)
    ax.set_xscale("log")
    return _save_mse_plot(fig, ax, path, "training data used (%)", "test MSE (standardised units)", title)


def plot_training_curves(histories: dict[str, list[dict]], path: str | Path, title: str = "SAE training") -> Path:
    """Train (dashed) and test (solid) MSE per epoch for each named run. PNG."""
    fig, ax = pyplot().subplots(figsize=(5.5, 4))
    for index, (name, history) in enumerate(histories.items()):
        colour = f"C{index}"
        epochs = [r["epoch"] for r in history]
        ax.plot(epochs, [r["train_mse"] for r in history], "--", color=colour, label=f"{name} train")
        if history and "test_mse" in history[0]:
            ax.plot(epochs, [r["test_mse"] for r in history], "-", color=colour, label=f"{name} test")
    return _save_mse_plot(fig, ax, path, "epoch", "MSE (standardised units)", title)


def _save_mse_plot(fig, ax, path: str | Path, xlabel: str, ylabel: str, title: str) -> Path:
    """The common finish of the MSE line plots: log-scale MSE, labels, grid, legend; written as PNG."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120, bbox_inches="tight")
