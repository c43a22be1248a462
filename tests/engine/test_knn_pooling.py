"""`monitor.knn_pooling`: what the kNN monitor scores (the class token, or the mean of the patch tokens)."""

import pytest
import torch

from sslkit.config import ConfigError, load_config
from sslkit.engine.callbacks import MeanPatchTokens, knn_pooled
from sslkit.nn.vit import ViT, ViTConfig


def _vit():
    torch.manual_seed(0)
    return ViT(ViTConfig(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                         num_registers=2, layerscale_init=None)).eval()


def test_mean_pooling_averages_the_patch_tokens_only():
    vit, x = _vit(), torch.randn(3, 1, 16, 16)
    out = vit.forward_features(x)
    # Registers and the class token are excluded: 16 patch tokens, averaged.
    assert torch.allclose(knn_pooled(vit, "mean")(x), out["patch"].mean(1), atol=1e-6)
    assert not torch.allclose(knn_pooled(vit, "mean")(x), out["cls"], atol=1e-3)
    assert knn_pooled(vit, "cls") is vit
    assert isinstance(knn_pooled(vit, "mean"), MeanPatchTokens)
    with pytest.raises(ValueError, match="'cls' or 'mean'"):
        knn_pooled(vit, "max")


@pytest.mark.parametrize("overrides, message", [
    (["monitor.knn_pooling=patch"], "must be 'cls' or 'mean', got 'patch'"),
    (["monitor.knn_pooling=mean", "model.arch=cnn_small"], "needs a ViT's patch tokens; model.arch=cnn_small"),
])
def test_bad_pooling_values_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("recipes/simclr-tiny.yaml", overrides)
