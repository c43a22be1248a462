"""Public ViT weights in the three on-disk layouts load into sslkit's ViT with the source model's features
(issue 21, item 1). Every source model is randomly initialised offline and saved in its layout."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from sslkit.nn.pretrained_weights import WeightsError, load_pretrained_vit
from sslkit.nn.vit import ViT, ViTConfig

DIM, DEPTH, HEADS, PATCH = 64, 2, 2, 14


def _sslkit(img_size=56, registers=0, in_chans=3, patch=PATCH) -> ViT:
    torch.manual_seed(123)  # different from every source: a load that missed a tensor shows
    return ViT(ViTConfig(img_size=img_size, patch_size=patch, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
                         in_chans=in_chans, num_registers=registers, layerscale_init=1e-5,
                         drop_path_rate=0.0)).eval()


def _timm_source(registers=0, img_size=56):
    torch.manual_seed(0)
    name = "vit_small_patch14_reg4_dinov2" if registers else "vit_small_patch14_dinov2"
    model = timm.create_model(name, pretrained=False, img_size=img_size, embed_dim=DIM, depth=DEPTH,
                              num_heads=HEADS, num_classes=0).eval()
    with torch.no_grad():  # LayerScale and the tokens away from their init, so every tensor matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _images(n=3, size=56, channels=3):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("registers", [0, 4])
def test_timm_checkpoint_gives_the_same_features(tmp_path, registers):
    source = _timm_source(registers)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = _sslkit(registers=registers)
    info = load_pretrained_vit(model, tmp_path / "w.safetensors")
    assert info["layout"] == "timm" and info["resampled"] == []
    x = _images()
    with torch.no_grad():
        want = source.forward_features(x)
        got = model.forward_features(x)
    torch.testing.assert_close(got["cls"], want[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got["patch"], want[:, 1 + registers:], atol=1e-5, rtol=0)


def test_transformers_dinov2_directory_gives_the_same_features(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    source = Dinov2Model(Dinov2Config(hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
                                      intermediate_size=4 * DIM, image_size=56, patch_size=PATCH,
                                      layerscale_value=0.5)).eval()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.05 * torch.randn_like(p))
    source.save_pretrained(tmp_path / "hf")
    model = _sslkit()
    assert load_pretrained_vit(model, tmp_path / "hf")["layout"] == "hf"
    x = _images()
    with torch.no_grad():
        want = source(pixel_values=x).last_hidden_state
        got = model.forward_features(x)
    torch.testing.assert_close(got["cls"], want[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got["patch"], want[:, 1:], atol=1e-5, rtol=0)


def _official_state(source) -> dict:
    """The timm model's weights under facebookresearch/dinov2's hub names (chunked blocks, register_tokens,
    a (1, D) mask token, a class-token row in the position table)."""
    state = {}
    for key, value in source.state_dict().items():
        if key.startswith("blocks."):
            i = int(key.split(".")[1])
            key = key.replace(f"blocks.{i}.", f"blocks.0.{i}.", 1)
        state[key] = value
    state["mask_token"] = torch.randn(1, DIM)
    return state


def test_official_hub_checkpoint_resampled_to_another_size_equals_running_it_at_that_size(tmp_path):
    # The source's positions are learned on a 6 × 6 grid (84 px, as the hub's 37 × 37 at 518 px); loaded
    # into a 56 px model (4 × 4) they are resampled once with DINOv2's interpolation, so the loaded model at
    # 56 px equals the source run at 56 px (which interpolates at every forward).
    source = _timm_source(img_size=84)
    torch.save(_official_state(source), tmp_path / "dinov2_vits14_pretrain.pth")
    reference = _sslkit(img_size=84)
    assert load_pretrained_vit(reference, tmp_path / "dinov2_vits14_pretrain.pth")["layout"] == "official"
    model = _sslkit(img_size=56)
    info = load_pretrained_vit(model, tmp_path / "dinov2_vits14_pretrain.pth")
    assert info["resampled"] == ["pos_embed"]
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x)["cls"], reference.forward_features(x)["cls"],
                                   atol=1e-5, rtol=0)
        # and at the source's own size, the reference equals timm's forward (the names really map)
        big = _images(size=84)
        torch.testing.assert_close(reference.forward_features(big)["cls"], source.forward_features(big)[:, 0],
                                   atol=1e-5, rtol=0)
    torch.testing.assert_close(model.mask_token[0], torch.load(tmp_path / "dinov2_vits14_pretrain.pth")["mask_token"])


def test_one_channel_sums_the_rgb_filters_and_patch_size_is_resampled(tmp_path):
    source = _timm_source()
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    grey = _sslkit(in_chans=1)
    load_pretrained_vit(grey, tmp_path / "w.safetensors")
    x = _images(channels=1)
    with torch.no_grad():
        torch.testing.assert_close(grey.forward_features(x)["cls"], source.forward_features(x.repeat(1, 3, 1, 1))[:, 0],
                                   atol=1e-5, rtol=0)
    sixteen = _sslkit(img_size=64, patch=16)
    info = load_pretrained_vit(sixteen, tmp_path / "w.safetensors")
    assert info["resampled"] == ["patch_embed.proj.weight"]
    assert sixteen.patch_embed.proj.weight.shape[-2:] == (16, 16)


def test_a_checkpoint_that_does_not_fit_is_one_error_naming_the_keys(tmp_path):
    source = _timm_source()
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file({**state, "head.weight": torch.zeros(10, DIM)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(WeightsError, match=r"unexpected \['head.weight'\]"):
        load_pretrained_vit(_sslkit(), tmp_path / "extra.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("blocks.1.")}, str(tmp_path / "short.safetensors"))
    with pytest.raises(WeightsError, match=r"missing \['blocks.1"):
        load_pretrained_vit(_sslkit(), tmp_path / "short.safetensors")
    model = _sslkit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match="wrong shape"):
        load_pretrained_vit(model, _wider(tmp_path))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded
    with pytest.raises(WeightsError, match="do not exist"):
        load_pretrained_vit(_sslkit(), tmp_path / "nope.pth")


def _wider(tmp_path):
    torch.manual_seed(0)
    wide = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, embed_dim=2 * DIM,
                             depth=DEPTH, num_heads=HEADS, num_classes=0)
    path = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(path))
    return path


def test_evaluate_reads_public_weights_with_their_shape_from_the_file(tmp_path):
    # `sslkit evaluate vit:PATH`: no recipe, the ViT is shaped from the checkpoint (here with 4 registers),
    # its RGB filters summed for the 1-channel digits; its default input is 224 px (kNN here at 56 to save time).
    import json

    from sslkit.cli import main
    from sslkit.eval.encoders import load_encoder

    torch.manual_seed(0)  # head width 64, as every public DINOv2/timm ViT (the file does not store the heads)
    source = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=56, embed_dim=128,
                               depth=DEPTH, num_heads=2, num_classes=0).eval()
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    encoder = load_encoder(f"vit:{tmp_path / 'w.safetensors'}", in_chans=3)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(encoder.module.forward_features(x)["cls"], source.forward_features(x)[:, 0],
                                   atol=1e-5, rtol=0)
    assert encoder.image_size == 224 and encoder.module.config.num_registers == 4
    out = tmp_path / "eval"
    assert main(["evaluate", f"vit:{tmp_path / 'w.safetensors'}", "--data", "digits", "--protocols", "knn",
                 "--knn-k", "10", "--no-cache", "--image-size", "56", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "timm layout" in report["models"][0]["model"]["description"]
    assert 0.1 < report["models"][0]["results"]["knn"]["accuracy"]["10"] <= 1.0
