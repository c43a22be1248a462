"""The two grokking tasks: their data, their model and their loss (digits and modular addition)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.analysis.grok.config import GrokConfig
from sslkit.config import ConfigError
from sslkit.nn.bias_free_mlp import BiasFreeMLP
from sslkit.nn.one_layer_transformer import OneLayerTransformer

__all__ = ["DIGITS_SPLIT_SEED", "GrokTask", "build_task", "digits_task", "modadd_task"]


@dataclass
class GrokTask:
    """Data and model factory of one setup. ``loss(outputs (B, C), targets (B,)) -> scalar``."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    build_model: Callable[[], nn.Module]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    description: str = ""


def _mse_one_hot(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(outputs, F.one_hot(targets, outputs.shape[1]).to(outputs.dtype))


DIGITS_SPLIT_SEED = 0  # the train/test split is fixed; the run seed changes the initialisation only


def digits_task(cfg: GrokConfig) -> GrokTask:
    """scikit-learn digits, bilinear 8x8 -> ``image_size``², 1024 train / 773 test (fixed seed).

    Pixels are standardised per pixel with the training set's mean and std (std floored at 1e-2
    for pixels that are almost never inked). Per-pixel standardisation is what lets the x8 net
    memorise before it generalises: with one global mean/std (MNIST's usual normalisation) the
    upsampled digits share so much of their pixels that the memorising solution already generalises
    and no delay is seen (measured; docs/grokalign.md).
    """
    from sklearn.datasets import load_digits

    dtype = getattr(torch, cfg.dtype)
    digits = load_digits()  # ships with scikit-learn: no network
    if not 0 < cfg.n_train < len(digits.target):
        raise ConfigError(f"n_train must be between 1 and {len(digits.target) - 1}, got {cfg.n_train}.")
    images = torch.tensor(digits.images / 16.0, dtype=torch.float64).unsqueeze(1)
    images = F.interpolate(images, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                           align_corners=False).flatten(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    train, test = order[: cfg.n_train], order[cfg.n_train:]
    mean, std = images[train].mean(0), images[train].std(0).clamp_min(1e-2)
    images = ((images - mean) / std).to(dtype)
    d_in = images.shape[1]

    def build() -> nn.Module:
        return BiasFreeMLP(d_in, cfg.width, cfg.depth, 10, cfg.init_scale).to(dtype)

    return GrokTask("digits", images[train], labels[train], images[test], labels[test], 10, build, _mse_one_hot,
                    description=f"sklearn digits {cfg.image_size}x{cfg.image_size}, {len(train)} train / "
                                f"{len(test)} test, bias-free ReLU MLP {d_in}-{'-'.join([str(cfg.width)] * cfg.depth)}"
                                f"-10 x{cfg.init_scale:g} init, MSE on one-hot")


def modadd_task(cfg: GrokConfig, split_seed: int = 0) -> GrokTask:
    """All ``p^2`` pairs ``[a, b, =]`` -> ``(a + b) mod p``; a fixed random ``train_fraction`` trains."""
    p = cfg.prime
    if p < 3:
        raise ConfigError(f"prime must be at least 3, got {p}.")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=1)
    labels = (tokens[:, 0] + tokens[:, 1]) % p
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(split_seed))
    n_train = int(round(cfg.train_fraction * p * p))
    if not 0 < n_train < p * p:
        raise ConfigError(f"train_fraction must leave both splits non-empty, got {cfg.train_fraction}.")
    train, test = order[:n_train], order[n_train:]
    dtype = getattr(torch, cfg.dtype)

    def build() -> nn.Module:
        return OneLayerTransformer(p, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp).to(dtype)

    return GrokTask("modadd", tokens[train], labels[train], tokens[test], labels[test], p, build,
                    lambda out, y: F.cross_entropy(out, y),
                    description=f"a + b mod {p}, {n_train} train / {p * p - n_train} test pairs, one-layer "
                                f"transformer d_model {cfg.d_model}, {cfg.n_heads}x{cfg.d_head} heads, "
                                f"d_mlp {cfg.d_mlp}, no LayerNorm, cross-entropy")


def build_task(cfg: GrokConfig) -> GrokTask:
    return digits_task(cfg) if cfg.setup == "digits" else modadd_task(cfg)
