"""The denoising UNet of Neighbor2Neighbor (Huang et al., arXiv 2101.02824), as used by "Ditch the Denoiser"
(arXiv 2505.12191) with 48 features.

Shape (depth ``d``, width ``w``; the reference is ``d = 5``, ``w = 48``):

- encoder: two 3×3 convs (``in → w → w``) then ``d`` times (max-pool 2, except after the last
  level a 3×3 conv ``w → w``), i.e. the reference's enc_conv0..6;
- decoder, ``d − 1`` stages: 2×2 transposed conv (×2), concatenate the encoder skip (``w`` channels),
  two 3×3 convs to ``2w``;
- output: a last 2×2 transposed conv, concatenate the *input image*, 3×3 convs to ``2w`` and ``2w``
  (the reference fixes 96 = 2·48 here; we scale it with ``w``), then 1×1 convs ``2w → 2w → 2w → out``.
- LeakyReLU(0.2) after every conv but the last; the output is linear (not clipped: clip when storing).
- Init as the reference: Kaiming-normal (fan-in) weights scaled by 0.1, zero biases.

Any input size works: H and W are reflect-padded up to a multiple of ``2**depth`` and the output is
cropped back, so odd sizes are handled (the reference requires multiples of 32).

Example::

    net = UNet(UNetConfig(channels=3, width=48, depth=5))
    net(torch.rand(2, 3, 37, 50)).shape   # (2, 3, 37, 50)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.nn.bounds import MAX_EMBED_DIM, is_int

__all__ = ["UNet", "UNetConfig"]


@dataclass(frozen=True)
class UNetConfig:
    """``channels``: image channels in and out (1 or 3); ``width``: features (48 in the paper); ``depth``: poolings."""

    channels: int = 3
    width: int = 48
    depth: int = 5

    def __post_init__(self):
        # Checked by type and range before any layer exists: the config may come from an untrusted denoiser.json.
        if not is_int(self.channels) or self.channels not in (1, 3):
            raise ValueError(f"UNetConfig: channels must be 1 or 3, got {self.channels!r}.")
        if not is_int(self.width) or not 1 <= self.width <= MAX_EMBED_DIM:
            raise ValueError(f"UNetConfig: width must be an integer in [1, {MAX_EMBED_DIM}], got {self.width!r}.")
        if not is_int(self.depth) or not 1 <= self.depth <= 8:
            raise ValueError(f"UNetConfig: depth must be an integer in 1..8, got {self.depth!r}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "UNetConfig":
        if not isinstance(data, dict):
            raise ValueError(f"UNetConfig: config must be a mapping, got {type(data).__name__}.")
        unknown = set(data) - {"channels", "width", "depth"}
        if unknown:
            raise ValueError(f"UNetConfig: unknown keys {sorted(unknown)}.")
        return cls(**data)


def _conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2)


class UNet(nn.Module):
    """Neighbor2Neighbor's UNet. x: (B, C, H, W) -> (B, C, H, W), any H, W >= 1."""

    def __init__(self, config: UNetConfig | None = None, **kwargs):
        super().__init__()
        config = config if config is not None else UNetConfig(**kwargs)
        self.config = config
        c, w, d = config.channels, config.width, config.depth
        self.act = nn.LeakyReLU(0.2)
        self.stem = nn.ModuleList([_conv(c, w, 3), _conv(w, w, 3)])  # enc_conv0, enc_conv1 (then pool 1)
        self.encoder = nn.ModuleList([_conv(w, w, 3) for _ in range(d - 1)])  # each followed by a pool
        self.bottleneck = _conv(w, w, 3)
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        channels = w
        for _ in range(d - 1):
            self.ups.append(nn.ConvTranspose2d(channels, channels, 2, stride=2))
            self.decoder.append(nn.ModuleList([_conv(channels + w, 2 * w, 3), _conv(2 * w, 2 * w, 3)]))
            channels = 2 * w
        self.last_up = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        head = 2 * w
        self.head = nn.ModuleList([_conv(channels + c, head, 3), _conv(head, head, 3),
                                   _conv(head, head, 1), _conv(head, head, 1)])
        self.out = _conv(head, c, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        # Small (0.1x Kaiming) initial weights as the reference: the untrained net outputs ~0 and
        # training starts stable without normalisation layers.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
                module.weight.data.mul_(0.1)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.channels:
            raise ValueError(f"UNet expects (B, {self.config.channels}, H, W), got {tuple(x.shape)}.")
        height, width = x.shape[-2:]
        multiple = 2 ** self.config.depth
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            # Reflection keeps image statistics at the border; it needs the pad smaller than the side.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        image = x
        h = self.act(self.stem[0](x))
        h = F.max_pool2d(self.act(self.stem[1](h)), 2)
        skips = [h]
        for conv in self.encoder:
            h = F.max_pool2d(self.act(conv(h)), 2)
            skips.append(h)
        skips.pop()  # the deepest pooled map feeds the bottleneck, not a skip connection
        h = self.act(self.bottleneck(h))
        for up, (conv_a, conv_b) in zip(self.ups, self.decoder):
            h = torch.cat([up(h), skips.pop()], dim=1)
            h = self.act(conv_b(self.act(conv_a(h))))
        h = torch.cat([self.last_up(h), image], dim=1)
        for conv in self.head:
            h = self.act(conv(h))
        h = self.out(h)
        return h[..., :height, :width]
