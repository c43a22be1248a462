"""A small VGG-style CNN for small images, the fastest backbone to pretrain on a CPU.

timm's CNNs are built for 224-px inputs: a stride-4 stem leaves an 8×8 map of a 32-px image and a
random-init ResNet's pooled features all point one way (kNN at chance on ``glyphs``). This network keeps
full resolution in its first layer and halves it after each of the first three stages:
``[conv3×3 – BatchNorm – ReLU (– max-pool 2)] × len(widths)`` then a global average pool. At 32 px with
widths (32, 64, 128, 256) it costs ~15 M multiply-adds per image, about a tenth of the 4-block ViT's.

It follows timm's model API (``forward_features`` → feature map, ``forward_head(x, pre_logits=True)``
→ pooled features, ``num_features``), so sslkit's evaluation treats it like a timm CNN.

Example::

    net = ConvNet(in_chans=1)
    fmap = net.forward_features(torch.randn(2, 1, 32, 32))   # (2, 256, 4, 4)
    pooled = net(torch.randn(2, 1, 32, 32))                  # (2, 256)
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["ConvNet", "SSLKIT_CNNS"]


class ConvNet(nn.Module):
    def __init__(self, in_chans: int = 3, widths: Sequence[int] = (32, 64, 128, 256), num_classes: int = 0) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or any(w < 1 for w in widths) or not 1 <= int(in_chans) <= 64:
            raise ValueError(f"ConvNet needs positive widths and 1-64 input channels, got {widths} and {in_chans}.")
        layers: list[nn.Module] = []
        channels = int(in_chans)
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i < min(3, len(widths) - 1):
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.stages = nn.Sequential(*layers)
        self.num_features = channels
        # PyTorch's default conv init (not He fan-out): with BatchNorm after every conv the scale of the
        # weights sets how far AdamW's fixed-size steps move them, and the smaller default scale learned
        # faster in our SimCLR runs on 'glyphs'.
        self.head = nn.Linear(channels, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> feature map (B, num_features, H/8, W/8)."""
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Built-in CNN presets by model.arch name: constructor keyword arguments.
SSLKIT_CNNS: dict[str, dict] = {"cnn_small": {"widths": (32, 64, 128, 256)}}
