"""model.grad_checkpointing: the same loss and gradients, fewer activations kept for backward."""

import pytest
import torch

from sslkit.config import ConfigError, load_config
from sslkit.engine.builders import build_backbone

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
TINY = ["model.depth=3", "model.embed_dim=32", "model.num_heads=2", "model.drop_path_rate=0.0"]


def _step(checkpointing: bool):
    cfg = load_config(ROOT / "recipes/dinov2-tiny.yaml", TINY + [f"model.grad_checkpointing={str(checkpointing).lower()}"])
    torch.manual_seed(0)
    vit = build_backbone(cfg, 3).train()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = vit.forward_features(x)
        loss = out["cls"].pow(2).sum() + out["patch"].mean()
    loss.backward()
    return vit, loss.item(), [p.grad.clone() for p in vit.parameters() if p.grad is not None], sum(saved)


def test_checkpointing_keeps_the_loss_and_gradients_and_saves_less():
    vit, loss, grads, saved = _step(True)
    assert vit.grad_checkpointing
    _, loss_plain, grads_plain, saved_plain = _step(False)
    assert loss == pytest.approx(loss_plain, rel=1e-6)
    assert len(grads) == len(grads_plain)
    for a, b in zip(grads, grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert saved < 0.5 * saved_plain  # only each block's input is kept, not its attention/MLP activations


def test_a_backbone_without_checkpointing_is_one_sentence():
    cfg = load_config(ROOT / "recipes/simclr-tiny.yaml", ["model.arch=cnn_small", "model.grad_checkpointing=true"])
    with pytest.raises(ConfigError, match="model.grad_checkpointing.*does not support"):
        build_backbone(cfg, 3)
