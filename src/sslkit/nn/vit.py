"""Vision Transformer backbone for DINOv2-style pre-training.

A thin subclass of timm's ``VisionTransformer`` (huggingface/pytorch-image-models,
``timm/models/vision_transformer.py``), so parameter names stay timm's
(``patch_embed.*``, ``pos_embed``, ``cls_token``, ``reg_token``, ``blocks.{i}.*``, ``norm.*``)
and timm tooling (``forward_intermediates``, ``set_grad_checkpointing``) keeps working.

What changes relative to timm, following facebookresearch/dinov2
(``dinov2/models/vision_transformer.py``, ``prepare_tokens_with_masks`` and
``interpolate_pos_encoding``):

- a learned ``mask_token`` replaces masked patch embeddings *before* the positional
  embedding is added (iBOT masking, spec ``specs/dinov2.md`` step 3);
- ``pos_embed`` has ``1 + N`` rows (class token + native patch grid); register tokens
  carry no positional embedding (DINOv2 with registers, arXiv 2309.16588);
- the patch part of ``pos_embed`` is resampled to the input grid with bicubic
  interpolation, the +0.1 scale-factor offset and no antialiasing, so global and local
  crops of any multiple of the patch size share one set of weights;
- drop-path is uniform over blocks (DINOv2 ``drop_path_uniform: true``), not timm's ramp;
- ``forward_features`` returns a dict of named tensors, the library-wide convention.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.models._manipulate import checkpoint_seq
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn
from torch.nn.init import trunc_normal_

from sslkit.nn.bounds import (MAX_IMAGE_SIZE, MAX_IN_CHANS, MAX_MLP_RATIO, is_finite, is_int, is_real,
                              vit_shape_problem)

__all__ = ["ARCHS", "ViT", "ViTConfig", "build_vit"]


@dataclass
class ViTConfig:
    """Architecture of a :class:`ViT`. Everything needed to rebuild the model from JSON.

    ``img_size`` is the *native* training resolution: it fixes the size of the learned
    position-embedding grid (``img_size // patch_size`` per side). Other input sizes that
    are multiples of ``patch_size`` are handled by interpolation.
    ``layerscale_init=None`` (or 0) disables LayerScale.
    """

    img_size: int = 32
    patch_size: int = 4
    in_chans: int = 3
    embed_dim: int = 192
    depth: int = 4
    num_heads: int = 3
    mlp_ratio: float = 4.0
    num_registers: int = 0
    drop_path_rate: float = 0.0
    layerscale_init: float | None = 1e-5
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        # Every field is checked by type and range before a module exists: the config may come from
        # an untrusted backbone.json, and an absurd width must fail here, not in an allocation.
        shape = vit_shape_problem(self.embed_dim, self.depth, self.num_heads, self.patch_size, self.num_registers)
        if shape is not None:
            raise ValueError(f"ViTConfig.{shape[0]} {shape[1]}.")
        for name, top in (("img_size", MAX_IMAGE_SIZE), ("in_chans", MAX_IN_CHANS)):
            value = getattr(self, name)
            if not is_int(value) or not 1 <= value <= top:
                raise ValueError(f"ViTConfig.{name} must be an integer in [1, {top}], got {value!r}.")
        if self.patch_size > self.img_size:
            raise ValueError(f"ViTConfig.patch_size ({self.patch_size}) must not exceed img_size ({self.img_size}).")
        if self.img_size % self.patch_size:
            raise ValueError(
                f"ViTConfig.img_size ({self.img_size}) must be a multiple of patch_size ({self.patch_size})."
            )
        if not is_real(self.drop_path_rate) or not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"ViTConfig.drop_path_rate must be in [0, 1), got {self.drop_path_rate!r}.")
        if self.layerscale_init is not None and not (is_finite(self.layerscale_init) and self.layerscale_init >= 0):
            raise ValueError(f"ViTConfig.layerscale_init must be None or a finite number >= 0, got {self.layerscale_init!r}.")
        if not is_real(self.mlp_ratio) or not 0 < self.mlp_ratio <= MAX_MLP_RATIO:
            raise ValueError(f"ViTConfig.mlp_ratio must be a number in (0, {MAX_MLP_RATIO:g}], got {self.mlp_ratio!r}.")
        if not isinstance(self.qkv_bias, bool):
            raise ValueError(f"ViTConfig.qkv_bias must be true or false, got {self.qkv_bias!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ViTConfig":
        """Inverse of :meth:`to_dict`; unknown keys or bad values raise ``ValueError`` naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"A ViTConfig must be a mapping of field names to values, got {type(d).__name__}.")
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(
                f"Unknown ViTConfig key(s) {unknown}; allowed keys are {sorted(allowed)}."
            )
        return cls(**d)


# Standard widths/depths/heads (Dosovitskiy et al. 2021; DeiT for "tiny").
# Only the shape is fixed here; img_size/patch_size/etc. come from the defaults or overrides.
ARCHS: dict[str, dict[str, int]] = {
    "vit_tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6),
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12),
    "vit_large": dict(embed_dim=1024, depth=24, num_heads=16),
}


def build_vit(arch: "str | ViTConfig | dict[str, Any]", **overrides: Any) -> "ViT":
    """Build a :class:`ViT` from a preset name, a config, or a config dict.

    Example: ``build_vit("vit_small", img_size=224, patch_size=16, drop_path_rate=0.1)``.
    ``overrides`` are ViTConfig fields applied last.
    """
    if isinstance(arch, str):
        if arch not in ARCHS:
            raise ValueError(f"Unknown ViT arch {arch!r}; choose one of {sorted(ARCHS)}.")
        fields = dict(ARCHS[arch])
    elif isinstance(arch, ViTConfig):
        fields = arch.to_dict()
    elif isinstance(arch, dict):
        fields = dict(arch)
    else:
        raise TypeError(f"build_vit expects an arch name, a ViTConfig or a dict, got {type(arch).__name__}.")
    fields.update(overrides)
    return ViT(ViTConfig.from_dict(fields))


def _uniform_drop_path_block(rate: float):
    """A timm ``block_fn`` that ignores timm's linearly ramped drop-path and uses ``rate``.

    DINOv2 trains with ``drop_path_uniform: true`` (spec step 3: "drop-path (uniform)").
    """

    def make(**kwargs: Any) -> nn.Module:
        kwargs["drop_path"] = rate
        return Block(**kwargs)

    return make


_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")
_EMBED_NAMES = ("patch_embed", "pos_embed", "cls_token", "reg_token", "mask_token")


def resample_patch_positions(pos_embed: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """A (1, 1 + h0*w0, D) position table (class row first) for an ``new_grid`` = (h, w) patch grid.

    The patch rows are resampled bicubically with ``scale_factor = (h + 0.1) / h0`` and no antialiasing,
    exactly the DINOv2 recipe (the offset avoids floor() rounding the output one cell short, see
    facebookresearch/dino issue #8); the class-token row is kept as is. Used at every forward for another
    input size and once when public weights are loaded at another size (``sslkit.nn.pretrained_weights``).
    """
    (h0, w0), (h, w) = grid, new_grid
    dim = pos_embed.shape[-1]
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    # bicubic in float32: half-precision interpolation is unsupported/unstable on some backends
    table = patch_pos.float().reshape(1, h0, w0, dim).permute(0, 3, 1, 2)
    table = F.interpolate(table, scale_factor=((h + 0.1) / h0, (w + 0.1) / w0), mode="bicubic",
                          align_corners=False, antialias=False)
    if table.shape[-2:] != (h, w):  # pragma: no cover - the offset makes this unreachable
        raise RuntimeError(f"position interpolation produced {tuple(table.shape[-2:])}, expected {(h, w)}")
    patch_pos = table.permute(0, 2, 3, 1).reshape(1, h * w, dim).to(pos_embed.dtype)
    return torch.cat((cls_pos, patch_pos), dim=1)


class ViT(VisionTransformer):
    """timm ViT with DINOv2 token preparation (mask token, registers, interpolated positions).

    Token order inside the transformer: ``[cls, reg_1..reg_R, patch_1..patch_N]``.

    Attributes:
        config: the :class:`ViTConfig` the model was built from.
        embed_dim: D.
        patch_size: p (int).
        num_prefix_tokens: 1 + R.
        mask_token: (1, 1, D) learned parameter, zero-initialised as in DINOv2.
    """

    def __init__(self, config: ViTConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = ViTConfig(**kwargs)
        elif kwargs:
            raise TypeError("Pass either a ViTConfig or keyword fields, not both.")
        super().__init__(
            img_size=config.img_size,
            patch_size=config.patch_size,
            in_chans=config.in_chans,
            num_classes=0,  # no classifier: SSL heads live outside the backbone
            global_pool="token",
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            qkv_bias=config.qkv_bias,
            init_values=config.layerscale_init or None,
            class_token=True,
            reg_tokens=config.num_registers,
            # patch_embed accepts any multiple of the patch size and returns NHWC, so the grid
            # shape survives until the positional embedding is resampled.
            dynamic_img_size=True,
            block_fn=_uniform_drop_path_block(config.drop_path_rate),
        )
        self.config = config
        self.patch_size = config.patch_size
        self.native_grid = (config.img_size // config.patch_size,) * 2

        # timm gives register tokens their own position rows; DINOv2 does not (registers are
        # position-free by design), so the table is [cls] + native patch grid only.
        num_patches = self.native_grid[0] * self.native_grid[1]
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + num_patches, config.embed_dim))
        trunc_normal_(self.pos_embed, std=0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))

    # ----------------------------------------------------------------- positions
    def interpolate_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Position table for an ``h x w`` patch grid: (1, 1 + h*w, D).

        Returns ``pos_embed`` itself at the native grid. Otherwise the patch rows are resampled
        bicubically with ``scale_factor = (h + 0.1) / h0`` and no antialiasing, exactly the
        DINOv2 recipe (the offset avoids floor() rounding the output one cell short, see
        facebookresearch/dino issue #8); the class-token row is kept as is.
        """
        if (h, w) == self.native_grid:
            return self.pos_embed
        return resample_patch_positions(self.pos_embed, self.native_grid, (h, w))

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, h, w, D) -> sequence (B, 1 + R + h*w, D) with positions added.

        Overrides timm's version (also used by timm's ``forward_intermediates``).
        """
        B, h, w, D = x.shape
        pos = self.interpolate_pos_embed(h, w)
        cls = self.cls_token + pos[:, :1]
        patches = x.reshape(B, h * w, D) + pos[:, 1:]
        parts = [cls.expand(B, -1, -1)]
        if self.reg_token is not None:
            parts.append(self.reg_token.expand(B, -1, -1))
        parts.append(patches)
        return self.pos_drop(torch.cat(parts, dim=1))

    def set_input_size(self, img_size=None, patch_size=None) -> None:  # noqa: D401
        """Not supported: any multiple of the patch size already works via interpolation."""
        raise NotImplementedError(
            "sslkit ViT resamples positions on the fly; pass any multiple of the patch size instead of resizing."
        )

    # ------------------------------------------------------------------- forward
    def prepare_tokens(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) -> tokens (B, 1 + R + N, D), masked patches set to ``mask_token``.

        Args:
            x: (B, C, H, W) with H, W multiples of ``patch_size``.
            masks: (B, N) bool with N = (H/p)(W/p) in row-major patch order; True = masked.
        """
        B, C, H, W = x.shape
        p = self.patch_size
        if C != self.config.in_chans:
            raise ValueError(
                f"ViT expects {self.config.in_chans} input channels, got {C} (input shape {tuple(x.shape)})."
            )
        if H % p or W % p:
            raise ValueError(f"Input size {H}x{W} is not a multiple of the patch size {p}; crop or resize it.")
        tokens = self.patch_embed(x)  # (B, h, w, D) because dynamic_img_size=True
        if masks is not None:
            h, w = tokens.shape[1:3]
            if masks.shape != (B, h * w):
                raise ValueError(f"masks must have shape (B, N) = {(B, h * w)}, got {tuple(masks.shape)}.")
            # Replace before the position is added, so a masked patch still knows where it is.
            tokens = torch.where(
                masks.reshape(B, h, w, 1).to(torch.bool), self.mask_token.to(tokens.dtype), tokens
            )
        tokens = self._pos_embed(tokens)
        tokens = self.patch_drop(tokens)
        return self.norm_pre(tokens)

    def forward_features(  # type: ignore[override]
        self, x: torch.Tensor, masks: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Run the backbone.

        Args:
            x: (B, C, H, W) images; H, W any multiple of ``patch_size``.
            masks: optional (B, N) bool, True where the patch embedding is replaced by ``mask_token``.

        Returns:
            dict with ``cls`` (B, D), ``patch`` (B, N, D), ``registers`` (B, R, D) — all after the
            final norm — and ``grid`` = (h, w) with N = h * w.
        """
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        tokens = self.prepare_tokens(x, masks)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            tokens = checkpoint_seq(self.blocks, tokens)
        else:
            tokens = self.blocks(tokens)
        tokens = self.norm(tokens)
        r = self.num_prefix_tokens
        return {
            "cls": tokens[:, 0],
            "registers": tokens[:, 1:r],
            "patch": tokens[:, r:],
            "grid": grid,
        }

    def forward_visible(self, x: torch.Tensor, masks: torch.Tensor) -> dict[str, Any]:
        """Run the backbone on the visible patches only (the MAE encoder, arXiv 2111.06377 Sec. 3).

        Args:
            x: (B, C, H, W) images.
            masks: (B, N) bool, True = hidden; every row must hide the same number of patches.

        Returns:
            dict with ``cls`` (B, D), ``registers`` (B, R, D), ``patch`` (B, N_visible, D) in the
            order of the visible positions, ``tokens`` (B, 1 + R + N_visible, D) — all after the
            final norm — and ``grid``.
        """
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        tokens = self.prepare_tokens(x)
        b, _, d = tokens.shape
        r = self.num_prefix_tokens
        if masks.shape != (b, tokens.shape[1] - r):
            raise ValueError(f"masks must have shape (B, N) = {(b, tokens.shape[1] - r)}, got {tuple(masks.shape)}.")
        n_visible = int((~masks[0]).sum())
        if not bool(((~masks).sum(1) == n_visible).all()):
            raise ValueError("forward_visible needs the same number of visible patches in every row of masks.")
        visible = tokens[:, r:][~masks].reshape(b, n_visible, d)
        tokens = self.blocks(torch.cat([tokens[:, :r], visible], dim=1))
        tokens = self.norm(tokens)
        return {"cls": tokens[:, 0], "registers": tokens[:, 1:r], "patch": tokens[:, r:], "tokens": tokens,
                "grid": grid}

    def forward_head(self, x: dict[str, Any] | torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, D) class-token features; applies ``head`` (identity unless a classifier was added)."""
        if isinstance(x, dict):
            x = x["cls"]
        else:  # a raw (B, T, D) token sequence, e.g. from timm's forward_intermediates
            x = x[:, 0]
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """Images (B, C, H, W) -> final-norm class-token features (B, D)."""
        return self.forward_head(self.forward_features(x, masks))

    # ------------------------------------------------------------ param groups
    def layer_id(self, param_name: str) -> int:
        """Depth index for layer-wise lr decay (spec step 6).

        0 for the embedding stage (patch_embed, pos_embed, cls/reg/mask tokens), ``i + 1`` for
        ``blocks.i.*``, ``depth + 1`` for everything after the blocks (final norm, head).
        """
        if param_name.startswith(_EMBED_NAMES):
            return 0
        m = _BLOCK_RE.match(param_name)
        if m:
            return int(m.group(1)) + 1
        return self.config.depth + 1

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "reg_token", "mask_token"}

    def extra_repr(self) -> str:
        return f"config={self.config}"

