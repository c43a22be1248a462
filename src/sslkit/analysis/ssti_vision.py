"""SSTI beyond text: a spurious image patch and LoRA on a ViT (the vision analogue of arXiv 2506.11402).

A small high-contrast patch (a ``p x p`` checkerboard) is pasted into exactly
``round(rho_samp * N_c)`` training images of one target class (chosen under a seed, other classes
untouched). LoRA adapters are added to the ViT's attention projections: on a timm/sslkit ViT the
query, key and value projections are one fused ``qkv`` Linear ``(D -> 3D)``, so a single adapter of
shape ``A: (r, D)``, ``B: (3D, r)`` covers all three (the output projection ``attn.proj`` is adapted
too). A linear head reads the backbone's pooled (class-token) feature. Reliance is the flip rate:
the fraction of other-class test images predicted as the target class once the patch is pasted in.

Example::

    from sslkit.analysis.ssti_vision import VisionAuditSettings, vision_ssti_audit
    from sslkit.nn.vit import build_vit
    result = vision_ssti_audit(lambda: build_vit("vit_tiny", img_size=32, depth=2), xtr, ytr, xte, yte,
                               VisionAuditSettings(rank=4, rho_samp=1.0, target_class=1))
    result["flip_rate"], result["clean_accuracy"]
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from sslkit.analysis.ssti import accuracy, balanced_accuracy, per_class_accuracy, prediction_counts
from sslkit.data.errors import DataError
from sslkit.llm.lora import add_lora, cosine_warmup_lambda
from sslkit.training_loop import TrainingLoop

__all__ = ["checkerboard_patch", "paste_patch", "inject_patch", "VisionAuditSettings", "LoraViTClassifier",
           "vision_ssti_audit"]


def checkerboard_patch(size: int, channels: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """A ``(channels, size, size)`` 1-pixel checkerboard: a texture no natural digit/shape has."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    board = ((yy + xx) % 2).float() * (high - low) + low
    return board.expand(channels, size, size).clone()


def paste_patch(images: torch.Tensor, patch: torch.Tensor, location: str = "corner",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Paste ``patch (C, p, p)`` into each of ``images (N, C, H, W)``; returns a new tensor.

    ``corner``: bottom-right; ``random``: a uniform top-left corner per image."""
    if images.ndim != 4 or patch.ndim != 3 or patch.shape[0] != images.shape[1]:
        raise DataError(f"paste_patch needs images (N, C, H, W) and a (C, p, p) patch with the same C; "
                        f"got {tuple(images.shape)} and {tuple(patch.shape)}.")
    out = images.clone()
    n, _, h, w = images.shape
    p = patch.shape[-1]
    if p > min(h, w):
        raise DataError(f"The patch ({p} px) is larger than the images ({h}x{w}).")
    for i in range(n):
        if location == "corner":
            top, left = h - p, w - p
        elif location == "random":
            top = int(torch.randint(0, h - p + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - p + 1, (1,), generator=generator))
        else:
            raise DataError(f"Unknown patch location {location!r}; choose 'corner' or 'random'.")
        out[i, :, top:top + p, left:left + p] = patch
    return out


def inject_patch(images: torch.Tensor, labels: Sequence[int], target_class: int, rho_samp: float,
                 patch: torch.Tensor, seed: int = 0, location: str = "corner") -> tuple[torch.Tensor, list[bool]]:
    """Paste ``patch`` into exactly round(rho_samp * N_c) images of ``target_class`` (seeded choice).

    Returns the new images ``(N, C, H, W)`` and the per-image injected mask."""
    if not 0.0 <= rho_samp <= 1.0:
        raise DataError(f"rho_samp must be in [0, 1], got {rho_samp!r}.")
    members = [i for i, y in enumerate(labels) if int(y) == int(target_class)]
    chosen = sorted(random.Random(seed).sample(members, int(round(rho_samp * len(members)))))
    out = images.clone()
    if chosen:
        generator = torch.Generator().manual_seed(seed)
        out[chosen] = paste_patch(images[chosen], patch, location, generator)
    mask = [False] * len(labels)
    for i in chosen:
        mask[i] = True
    return out, mask


@dataclass
class VisionAuditSettings:
    rank: int = 4
    alpha: float | None = None           # None -> alpha = rank
    dropout: float = 0.05
    target_modules: list[str] | None = None  # None -> ["qkv", "attn.proj"]
    train_head: bool = True              # a frozen random head on a small ViT learns too slowly on CPU
    target_class: int = 1
    rho_samp: float = 1.0
    patch_size: int = 4
    location: str = "corner"
    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_frac: float = 0.05
    seed: int = 0


class LoraViTClassifier(nn.Module):
    """ViT (with LoRA adapters) + linear head on its pooled feature: (B, C, H, W) -> (B, classes)."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        dim = int(getattr(backbone, "embed_dim", 0) or getattr(backbone, "num_features"))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if isinstance(features, dict):  # sslkit's forward_features convention
            features = features["cls"]
        return self.head(features)


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]).numpy()


def vision_ssti_audit(backbone: nn.Module | Callable[[], nn.Module], train_images: torch.Tensor,
                      train_labels: Sequence[int], test_images: torch.Tensor, test_labels: Sequence[int],
                      settings: VisionAuditSettings | None = None, num_classes: int | None = None) -> dict[str, Any]:
    """Inject the patch into the target class's training images, LoRA-fine-tune, measure reliance.

    Args:
        backbone: a ViT (modified in place) or a zero-argument factory; ``backbone(x)`` returns
            ``(B, D)`` pooled features (sslkit ``ViT`` / ``sslkit.load_backbone`` do).
        train_images, test_images: ``(N, C, H, W)`` float tensors; labels: ints in 0..K-1.

    Returns:
        dict with clean_accuracy, clean_balanced_accuracy, per_class_accuracy, flip_rate, base_rate,
        spurious_accuracy, accuracy_gap, counts_clean, counts_all_patched, n_injected, targets,
        losses and the settings.
    """
    s = settings or VisionAuditSettings()
    ytr = torch.as_tensor(list(train_labels), dtype=torch.long)
    yte = np.asarray(list(test_labels), dtype=int)
    k = int(num_classes or max(int(ytr.max()), int(yte.max())) + 1)
    patch = checkerboard_patch(s.patch_size, train_images.shape[1],
                               float(train_images.min()), float(train_images.max()))
    xtr, mask = inject_patch(train_images, ytr.tolist(), s.target_class, s.rho_samp, patch, s.seed, s.location)

    with TrainingLoop("vision LoRA", steps=s.steps, seed=s.seed, hint=f"lower lr ({s.lr})") as loop:
        net = backbone() if callable(backbone) and not isinstance(backbone, nn.Module) else backbone
        targets = add_lora(net, s.rank, s.alpha, s.dropout, s.target_modules or ["qkv", "attn.proj"])
        model = LoraViTClassifier(net, k)
        model.head.requires_grad_(s.train_head)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=s.lr, weight_decay=s.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_warmup_lambda(s.steps, s.warmup_frac))
        losses: list[float] = []
        model.train()
        for step in range(s.steps):
            idx = torch.randint(0, len(xtr), (s.batch_size,), generator=loop.generator)
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            losses.append(loop.check(loss, f"step {step}"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            loop.advance()

    clean = _predict(model, test_images)
    others = yte != s.target_class
    patched_others = paste_patch(test_images[torch.from_numpy(others)], patch, s.location,
                                 torch.Generator().manual_seed(s.seed + 1))
    spurious = clean.copy()
    spurious[others] = _predict(model, patched_others)
    all_patched = _predict(model, paste_patch(test_images, patch, s.location, torch.Generator().manual_seed(s.seed + 2)))
    clean_acc, spur_acc = accuracy(yte, clean), accuracy(yte, spurious)
    return {
        "clean_accuracy": clean_acc, "clean_balanced_accuracy": balanced_accuracy(yte, clean),
        "per_class_accuracy": per_class_accuracy(yte, clean, k),
        "spurious_accuracy": spur_acc, "accuracy_gap": clean_acc - spur_acc,
        "flip_rate": float((spurious[others] == s.target_class).mean()),
        "base_rate": float((clean[others] == s.target_class).mean()),
        "counts_clean": prediction_counts(clean, k), "counts_all_patched": prediction_counts(all_patched, k),
        "n_injected": int(sum(mask)), "targets": targets, "losses": losses, "settings": asdict(s),
        "model": model,
    }
