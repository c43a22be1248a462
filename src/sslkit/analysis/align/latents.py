"""The known latent factors of the built-in ``shapes`` set, in dataset order: what identifiability is measured against."""

from __future__ import annotations

from typing import Any

import torch

from sslkit.data.errors import DataError

__all__ = ["SHAPES_JOINT_LATENTS", "shapes_latents"]

# Continuous factors of 'shapes' that form the joint latent "all" (the class is categorical).
SHAPES_JOINT_LATENTS = ("color", "scale", "position", "rotation")


def shapes_latents(dataset: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Latent factors of a :class:`sslkit.data.builtin.ShapesDataset`, one row per item in dataset order.

    Returns ``(latents, labels)`` with latents ``shape`` (n, C) one-hot, ``color`` (n, 3), ``scale`` (n, 1),
    ``position`` (n, 2) and ``rotation`` (n, 2) as (cos θ, sin θ) because θ is circular; ``labels`` (n,) is the
    class, used to check that features came in the same order.
    """
    n = len(dataset)
    if n == 0:
        raise DataError("The shapes split is empty; there are no latents to compare against.")
    items = [dataset[i] for i in range(n)]
    labels = torch.tensor([int(it["shape"]) for it in items])
    num_classes = int(getattr(dataset, "num_classes", int(labels.max()) + 1))
    theta = torch.tensor([float(it["rotation"]) for it in items], dtype=torch.float64)
    latents = {
        "shape": torch.nn.functional.one_hot(labels, num_classes).double(),
        "color": torch.stack([torch.as_tensor(it["color"]) for it in items]).double(),
        "scale": torch.tensor([float(it["scale"]) for it in items], dtype=torch.float64)[:, None],
        "position": torch.stack([torch.as_tensor(it["position"]) for it in items]).double(),
        "rotation": torch.stack([theta.cos(), theta.sin()], dim=1),
    }
    return latents, labels
