"""Untrusted model descriptions (issue 23, item 6): an absurd ``backbone.json`` / ``sae.json`` / ``denoiser.json``
fails with one sentence naming the file and the key, before anything of that size is allocated.

Each loader gets one row per absurd value: a good save is written, one key of its JSON is replaced, and the
loader must raise the loader's error type with the file and the key in the message. The recipe path
(``model.*``) is held to the same bounds by the same function (:func:`sslkit.nn.bounds.vit_shape_problem`).
"""

import json
import math
import time
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sslkit.analysis.denoise import DENOISER_JSON, load_denoiser, save_denoiser
from sslkit.config import ConfigError, load_config
from sslkit.data.errors import DataError
from sslkit.nn.export import load_backbone, save_backbone
from sslkit.nn.sae import SAE_JSON, TopKSAE, load_sae, save_sae
from sslkit.nn.unet import UNet, UNetConfig
from sslkit.nn.vit import ViT, ViTConfig

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
NAN = float("nan")


def _edit(json_path, path, value):
    """Replace ``meta[path[0]][path[1]]...`` in a JSON file (NaN is written as the bare token JSON readers accept)."""
    meta = json.loads(json_path.read_text())
    node = meta
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    json_path.write_text(json.dumps(meta))


def _backbone(tmp_path):
    cfg = ViTConfig(img_size=16, patch_size=4, in_chans=1, embed_dim=16, depth=2, num_heads=2)
    save_backbone(ViT(cfg), tmp_path, mean=[0.5], std=[0.25])
    return tmp_path / "backbone.json"


def _timm_backbone(tmp_path):
    # The config is checked before the weights file is opened, so a placeholder file is enough.
    (tmp_path / "backbone.json").write_text(json.dumps({
        "format": "sslkit.backbone", "format_version": 1, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2],
        "config": {"kind": "timm", "name": "resnet18", "in_chans": 3, "kwargs": {}}}))
    (tmp_path / "backbone.safetensors").write_bytes(b"not read")
    return tmp_path / "backbone.json"


def _sae(tmp_path):
    save_sae(TopKSAE(6, 16, 3), tmp_path)
    return tmp_path / SAE_JSON


def _denoiser(tmp_path):
    save_denoiser(UNet(UNetConfig(channels=1, width=4, depth=2)), tmp_path)
    return tmp_path / DENOISER_JSON


BACKBONE_ROWS = [
    (("config", "embed_dim"), 10**9, "embed_dim"),
    (("config", "embed_dim"), "16", "embed_dim"),
    (("config", "depth"), -1, "depth"),
    (("config", "depth"), 0, "depth"),
    (("config", "depth"), 2.5, "depth"),
    (("config", "depth"), 10**9, "depth"),
    (("config", "num_heads"), 5, "num_heads"),
    (("config", "num_heads"), True, "num_heads"),
    (("config", "patch_size"), 64, "patch_size"),
    (("config", "patch_size"), 0, "patch_size"),
    (("config", "img_size"), 10**9, "img_size"),
    (("config", "in_chans"), 10**6, "in_chans"),
    (("config", "num_registers"), 10**9, "num_registers"),
    (("config", "num_registers"), -1, "num_registers"),
    (("config", "mlp_ratio"), NAN, "mlp_ratio"),
    (("config", "mlp_ratio"), 1e9, "mlp_ratio"),
    (("config", "mlp_ratio"), "4", "mlp_ratio"),
    (("config", "drop_path_rate"), NAN, "drop_path_rate"),
    (("config", "layerscale_init"), 10**400, "layerscale_init"),
    (("config", "qkv_bias"), "yes", "qkv_bias"),
    (("config",), [1, 2], "config"),
    (("mean",), [NAN], "mean"),
    (("mean",), [0.5, 0.5], "mean"),
    (("mean",), "0.5", "mean"),
    (("std",), [math.inf], "std"),
    (("std",), [0.0], "std"),
    (("std",), [], "std"),
    (("std",), [10**400], "std"),
]

TIMM_ROWS = [
    (("config", "in_chans"), 10**9, "in_chans"),
    (("config", "kwargs"), {"embed_dim": 10**9}, "kwargs.embed_dim"),
    (("config", "kwargs"), {"depth": -1}, "kwargs.depth"),
    (("config", "kwargs"), {"layers": [3, 4, 10**6, 3]}, "kwargs.layers"),
    (("config", "kwargs"), {"depths": [200, 200]}, "kwargs.depths"),
    (("config", "kwargs"), {"drop_rate": NAN}, "kwargs.drop_rate"),
    (("config", "kwargs"), {"widths": list(range(10_000))}, "kwargs.widths"),
]

SAE_ROWS = [
    (("config", "dim"), 10**9, "config.dim"),
    (("config", "dim"), -6, "config.dim"),
    (("config", "dim"), "6", "config.dim"),
    (("config", "latents"), 10**9, "config.latents"),
    (("config", "latents"), 0, "config.latents"),
    (("config", "latents"), 16.0, "config.latents"),
    (("config", "k"), 0, "config.k"),
    (("config", "k"), 17, "config.k"),
    (("config", "select"), "largest", "config.select"),
    (("config", "tied"), "no", "config.tied"),
    (("config", "enc_init_std"), NAN, "config.enc_init_std"),
    (("config", "dec_init_std"), -1.0, "config.dec_init_std"),
    (("config", "seed"), 1, "config.seed"),
    (("config",), "topk", "config"),
]

DENOISER_ROWS = [
    (("config", "width"), 10**9, "width"),
    (("config", "width"), -1, "width"),
    (("config", "width"), 0, "width"),
    (("config", "width"), "4", "width"),
    (("config", "width"), 4.5, "width"),
    (("config", "width"), True, "width"),
    (("config", "depth"), 0, "depth"),
    (("config", "depth"), -3, "depth"),
    (("config", "depth"), 10**9, "depth"),
    (("config", "channels"), 2, "channels"),
    (("config", "channels"), True, "channels"),
    (("config", "bogus"), 1, "bogus"),
]

LOADERS = {
    "backbone": (_backbone, load_backbone, ValueError, BACKBONE_ROWS),
    "timm_backbone": (_timm_backbone, load_backbone, ValueError, TIMM_ROWS),
    "sae": (_sae, load_sae, ValueError, SAE_ROWS),
    "denoiser": (_denoiser, load_denoiser, DataError, DENOISER_ROWS),
}
ROWS = [pytest.param(name, path, value, key, id=f"{name}-{'.'.join(path)}={str(value)[:20]}")
        for name, (_, _, _, rows) in LOADERS.items() for path, value, key in rows]


@pytest.mark.parametrize("loader, path, value, key", ROWS)
def test_an_absurd_value_is_one_sentence_naming_the_file_and_the_key(tmp_path, loader, path, value, key):
    make, load, error, _ = LOADERS[loader]
    json_path = make(tmp_path)
    _edit(json_path, path, value)
    with pytest.raises(error) as caught:
        load(tmp_path)
    message = str(caught.value)
    assert str(json_path) in message and key in message, message
    assert message.count("\n") == 0 and message.endswith("."), message


class _LargestTensor(TorchDispatchMode):
    """Records the most elements of any real (non-meta) tensor an operation creates while the mode is on.

    tracemalloc cannot see torch's allocator; every factory (``empty``, ``randn``, ``zeros``) and every copy
    passes through the dispatcher, so this is where an allocation of a configured size would show.
    """

    def __init__(self):
        super().__init__()
        self.most = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self.most = max(self.most, t.numel())
        return out


@pytest.mark.parametrize("loader, path, value", [
    ("backbone", ("config", "embed_dim"), 10**9),
    ("timm_backbone", ("config", "kwargs"), {"embed_dim": 10**9}),
    ("sae", ("config", "dim"), 10**9),
    ("denoiser", ("config", "width"), 10**9),
])
def test_a_width_of_a_billion_fails_fast_without_allocating(tmp_path, loader, path, value):
    make, load, error, _ = LOADERS[loader]
    _edit(make(tmp_path), path, value)
    started = time.perf_counter()
    with _LargestTensor() as watch, pytest.raises(error):
        load(tmp_path)
    assert time.perf_counter() - started < 1.0 and watch.most < 1000, watch.most


@pytest.mark.parametrize("loader, edits", [
    # In bounds, but tens of GB if materialised: the small weights file does not fit, so nothing is allocated.
    ("backbone", {"embed_dim": 16384, "num_heads": 16, "depth": 4}),
    ("sae", {"dim": 16384, "latents": 1 << 20}),
    ("denoiser", {"width": 16384, "depth": 8}),
])
def test_a_large_config_with_small_weights_is_refused_before_allocating(tmp_path, loader, edits):
    make, load, error, _ = LOADERS[loader]
    json_path = make(tmp_path)
    for key, value in edits.items():
        _edit(json_path, ("config", key), value)
    with _LargestTensor() as watch, pytest.raises(error, match="do not match"):
        load(tmp_path)
    assert watch.most < 1000, watch.most  # timm makes a few small bookkeeping tensors


def test_the_watch_sees_a_real_allocation():
    with _LargestTensor() as watch:
        torch.empty(3, 5)
    assert watch.most == 15


@pytest.mark.parametrize("key, value", [("embed_dim", 10**9), ("embed_dim", 0), ("depth", -1), ("depth", 257),
                                        ("num_heads", 7), ("patch_size", 2048), ("num_registers", 10**9)])
def test_recipes_and_backbone_json_refuse_the_same_values(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"'model.{key}'"):
        load_config(RECIPES / "dinov2-tiny.yaml", [f"model.{key}={value}"])
    json_path = _backbone(tmp_path)
    _edit(json_path, ("config", key), value)
    with pytest.raises(ValueError, match=key):
        load_backbone(tmp_path)


@pytest.mark.parametrize("override", ["crops.global_size=16384", "crops.local_size=9000"])
def test_recipe_crop_sizes_share_the_backbone_json_image_bound(override):
    # The first global crop size becomes ViTConfig.img_size, bounded by MAX_IMAGE_SIZE in a backbone.json too.
    with pytest.raises(ConfigError, match=f"'{override.split('=')[0]}' = .* must be at most 8192"):
        load_config(RECIPES / "dinov2-tiny.yaml", [override])


def test_recipe_timm_kwargs_share_the_backbone_json_bounds():
    with pytest.raises(ConfigError, match=r"'model\.timm_kwargs\.layers'"):
        load_config(RECIPES / "simclr-tiny.yaml", ["model.arch=timm:resnet18", "optim.layer_decay=1.0",
                                                    "model.timm_kwargs={layers: [3, 4, 1000000, 3]}"])
