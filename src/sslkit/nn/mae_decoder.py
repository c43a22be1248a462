"""The MAE decoder: a small transformer that fills in the hidden patches' pixels.

He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv 2111.06377, Sec. 3 and the
official facebookresearch/mae ``models_mae.py``: encoder tokens are projected to the decoder width,
a shared learned mask token stands in for every hidden patch, fixed 2-D sine-cosine positions are
added, and a linear layer predicts each patch's p·p·C pixel values. The positions are computed for
the grid at hand, so any input size works without resampling a table.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn
from torch.nn.init import trunc_normal_

__all__ = ["MAEDecoder", "sincos_positions_2d"]


def sincos_positions_2d(grid_h: int, grid_w: int, dim: int) -> torch.Tensor:
    """(grid_h·grid_w, dim) fixed positions: half the channels encode the row, half the column,
    each as [sin(pos·ω_k), cos(pos·ω_k)] with ω_k = 10000^(−k/(dim/4)) (the MAE reference's layout)."""
    if dim % 4:
        raise ValueError(f"sine-cosine positions need a width divisible by 4, got {dim}.")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64),
                                indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    # The reference concatenates the column (w) encoding first, then the row (h) one.
    return torch.cat([encode(cols), encode(rows)], dim=1).float()


class MAEDecoder(nn.Module):
    """Encoder tokens of the visible patches -> predicted pixels of every patch.

    ``forward(tokens, masks, grid)``: ``tokens`` (B, P + N_visible, D_enc) with P prefix tokens
    (CLS, registers) first (kept out of the decoder when ``decode_prefix_tokens`` is False), ``masks`` (B, N) bool (True = hidden), ``grid`` (h, w) with N = h·w.
    Returns (B, N, patch_size²·channels) predictions in row-major patch order.
    """

    def __init__(self, encoder_dim: int, patch_size: int, channels: int, dim: int = 128, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, num_prefix_tokens: int = 1,
                 decode_prefix_tokens: bool = True) -> None:
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.predict = nn.Linear(dim, patch_size * patch_size * channels)
        self.num_prefix_tokens = num_prefix_tokens
        self.decode_prefix_tokens = decode_prefix_tokens
        self.dim = dim
        trunc_normal_(self.mask_token, std=0.02)  # the reference: normal(std=.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n = masks.shape
        r = self.num_prefix_tokens
        x = self.embed(tokens)
        prefix, visible = x[:, :r], x[:, r:]
        full = self.mask_token.to(x.dtype).expand(b, n, self.dim).clone()
        full[~masks] = visible.reshape(-1, self.dim)  # back to each visible patch's own position
        full = full + sincos_positions_2d(grid[0], grid[1], self.dim).to(x.device, x.dtype)
        if not self.decode_prefix_tokens:  # the class token (and registers) stay out of the decoder
            prefix = prefix[:, :0]
        x = self.norm(self.blocks(torch.cat([prefix, full], dim=1)))
        return self.predict(x[:, prefix.shape[1]:])
