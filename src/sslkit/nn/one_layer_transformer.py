"""The one-layer transformer without LayerNorm of the modular-addition grokking setup (Nanda et al.,
arXiv 2301.05217), as used by GrokAlign (arXiv 2506.12284) in ``sslkit grok --setup modadd``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OneLayerTransformer"]


class OneLayerTransformer(nn.Module):
    """Attention-only-then-MLP transformer with one block and no LayerNorm (arXiv 2301.05217).

    Tokens ``0..p-1`` are numbers and ``p`` is ``=``; the prompt is ``[a, b, =]`` and the model
    predicts ``(a + b) mod p`` from the last position. ``encode`` gives the token embeddings
    ``(B, 3, d_model)``, ``head`` maps them to last-position logits ``(B, p)``; the GrokAlign
    penalty and the centroids use that map (spec: "penalty on embeddings -> last-position logits").
    Init: N(0, 1/d_model) for every matrix, N(0, 1/p) for the unembedding, zero biases, as the
    authors' ``utils.py``.
    """

    def __init__(self, prime: int, d_model: int = 128, n_heads: int = 4, d_head: int = 32, d_mlp: int = 512,
                 n_ctx: int = 3):
        super().__init__()
        s = 1 / math.sqrt(d_model)
        self.n_heads, self.d_head = n_heads, d_head
        self.W_E = nn.Parameter(torch.randn(prime + 1, d_model) * s)
        self.W_pos = nn.Parameter(torch.randn(n_ctx, d_model) * s)
        self.W_Q = nn.Parameter(torch.randn(n_heads, d_model, d_head) * s)
        self.W_K = nn.Parameter(torch.randn(n_heads, d_model, d_head) * s)
        self.W_V = nn.Parameter(torch.randn(n_heads, d_model, d_head) * s)
        self.W_O = nn.Parameter(torch.randn(n_heads * d_head, d_model) * s)
        self.W_in = nn.Parameter(torch.randn(d_model, d_mlp) * s)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.randn(d_mlp, d_model) * s)
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.W_U = nn.Parameter(torch.randn(d_model, prime) / math.sqrt(prime))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens]

    def head(self, emb: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, T, d_model) -> last-position logits (B, p).

        With one block only the last position's residual stream reaches the logits, so only its
        query, attention output and MLP are computed: the same function as the full causal block
        at a third of the cost.
        """
        x = emb + self.W_pos[: emb.shape[1]]
        B = x.shape[0]
        q = torch.einsum("bd,hde->bhe", x[:, -1], self.W_Q).unsqueeze(2)    # (B, H, 1, e)
        k = torch.einsum("btd,hde->bhte", x, self.W_K)                      # (B, H, T, e)
        v = torch.einsum("btd,hde->bhte", x, self.W_V)
        # The last position attends to every position (the causal mask's last row is all ones).
        attn = ((q @ k.transpose(-1, -2)) / math.sqrt(self.d_head)).softmax(dim=-1)
        z = (attn @ v).reshape(B, -1)                                        # (B, H*e), heads in order
        h = x[:, -1] + z @ self.W_O
        h = h + F.relu(h @ self.W_in + self.b_in) @ self.W_out + self.b_out
        return h @ self.W_U

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(tokens))
