import pytest
from torch import nn

from sslkit.engine.param_groups import dinov2_param_groups
from sslkit.nn.heads import DINOHead
from sslkit.nn.vit import build_vit


@pytest.fixture(scope="module")
def student():
    backbone = build_vit("vit_tiny", depth=3, img_size=16, patch_size=4, embed_dim=32, num_heads=2)
    return nn.ModuleDict({"backbone": backbone, "dino_head": DINOHead(32, 64, hidden_dim=48, bottleneck_dim=16)})


def _lookup(groups):
    return {name: g for g in groups for name in g["names"]}


def test_layer_decay_patch_embed_and_weight_decay_masks(student):
    groups = dinov2_param_groups(student, layer_decay=0.9, patch_embed_lr_mult=0.2)
    by_name = _lookup(groups)
    depth = 3
    # Every trainable parameter is in exactly one group.
    n_params = sum(1 for p in student.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups) == n_params == len(by_name)
    assert by_name["backbone.cls_token"]["lr_multiplier"] == pytest.approx(0.9 ** (depth + 1))
    assert by_name["backbone.patch_embed.proj.weight"]["lr_multiplier"] == pytest.approx(0.2 * 0.9 ** (depth + 1))
    assert by_name["backbone.blocks.0.attn.qkv.weight"]["lr_multiplier"] == pytest.approx(0.9 ** depth)
    assert by_name["backbone.blocks.2.mlp.fc1.weight"]["lr_multiplier"] == pytest.approx(0.9 ** 1)
    assert by_name["backbone.norm.weight"]["lr_multiplier"] == pytest.approx(1.0)
    head_params = [n for n in by_name if n.startswith("dino_head.")]
    assert all(by_name[n]["lr_multiplier"] == 1.0 for n in head_params)
    # No weight decay on biases, norms and LayerScale gammas; decay on matrices.
    assert by_name["backbone.blocks.0.attn.qkv.bias"]["wd_multiplier"] == 0.0
    assert by_name["backbone.blocks.1.norm1.weight"]["wd_multiplier"] == 0.0
    assert by_name["backbone.blocks.1.ls1.gamma"]["wd_multiplier"] == 0.0
    assert by_name["backbone.blocks.1.mlp.fc2.weight"]["wd_multiplier"] == 1.0
    # Only the head's last layer is flagged for the freeze.
    flagged = {n for n, g in by_name.items() if g["is_last_layer"]}
    assert flagged and all("last_layer" in n for n in flagged)
