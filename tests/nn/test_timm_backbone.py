"""timm backbones by name (model.arch=timm:NAME): config checks, training from the CLI, export readable by plain timm."""

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import sslkit
from sslkit.cli import main
from sslkit.config import ConfigError, load_config
from sslkit.nn.timm_backbone import TimmBackbone

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
TINY = ["data.image_size=16", "crops.global_size=16", "optim.batch_size=16", "optim.iters_per_epoch=3",
        "optim.epochs=1", "optim.warmup_epochs=0.5", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
        "monitor.max_bank_size=300", "optim.layer_decay=1.0"]


def test_wrapper_outputs_pooled_features_and_refuses_masks():
    net = TimmBackbone("resnet18", in_chans=1)
    assert net.embed_dim == 512
    x = torch.randn(2, 1, 32, 32)
    assert net(x).shape == (2, 512) and net.forward_features(x)["cls"].shape == (2, 512)
    assert net(x, masks=torch.zeros(2, 8, 8, dtype=torch.bool)).shape == (2, 512)  # nothing masked: fine
    with pytest.raises(ValueError, match="need an sslkit ViT"):
        net(x, masks=torch.ones(2, 8, 8, dtype=torch.bool))


@pytest.mark.parametrize("overrides, message", [
    (["method=dinov2", "model.arch=timm:resnet18", "optim.layer_decay=1.0"], "set dinov2.mask_probability=0"),
    (["method=dinov2", "model.arch=cnn_small", "optim.layer_decay=1.0", "dinov2.mask_probability=0",
      "monitor.count_flops=true"], "monitor.count_flops counts a ViT's FLOPs"),
    (["method=mae", "model.arch=timm:resnet18", "optim.layer_decay=1.0", "crops.n_local=0", "crops.n_global=1"],
     "has no patch tokens"),
    (["model.arch=timm:resnet1800", "optim.layer_decay=1.0"], "timm has no model 'resnet1800'"),
    (["model.arch=timm:resnet18", "optim.layer_decay=0.9"], "optim.layer_decay"),
    (["model.arch=timm:resnet18", "optim.layer_decay=1.0", "model.timm_kwargs={num_classes: 10}"], "num_classes"),
    (["model.arch=vit_huge"], "model.arch"),
    (["model.timm_kwargs={drop_rate: 0.1}"], "applies to model.arch=timm:NAME or cnn_small only"),
])
def test_bad_arch_settings_fail_with_one_sentence(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RECIPES / "simclr-tiny.yaml", overrides)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "vicreg"])
def test_pretrain_a_timm_cnn_and_load_it_in_plain_timm(tmp_path, method):
    out = tmp_path / method
    extra = {"simclr": ["simclr.projector_hidden_dim=64"], "vicreg": ["vicreg.projector_hidden_dim=64",
                                                                      "vicreg.projector_out_dim=64"]}[method]
    code = main(["pretrain", "--recipe", str(RECIPES / f"{method}-tiny.yaml"), "--data", "digits", "--out", str(out),
                 "model.arch=timm:resnet18", "model.timm_kwargs={drop_path_rate: 0.0}", *TINY, *extra])
    assert code == 0
    meta = json.loads((out / "backbone.json").read_text())
    assert meta["config"] == {"kind": "timm", "name": "resnet18", "in_chans": 1, "kwargs": {"drop_path_rate": 0.0}}
    # backbone.json alone rebuilds it in plain timm, and the weights load strictly.
    plain = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=1, **meta["config"]["kwargs"])
    plain.load_state_dict(load_file(str(out / "backbone.safetensors")), strict=True)
    plain.eval()
    loaded = sslkit.load_backbone(out)
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x), plain(x), atol=1e-6)
        # Trained: the weights moved away from a fresh init of the same seed.
        fresh = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=1).eval()
    assert not torch.allclose(plain.conv1.weight, fresh.conv1.weight)
    report = json.loads((out / "report.json").read_text())
    assert set(report["knn_top1"]) >= {"pretrained", "random_init"}
    # sslkit evaluate reads the run like any other.
    from sslkit.eval.models import load_encoder

    encoder = load_encoder(out)
    assert encoder.kind == "timm" and encoder.in_chans == 1


def test_cnn_small_round_trips_through_export(tmp_path):
    from sslkit.nn.export import save_backbone

    torch.manual_seed(0)
    net = TimmBackbone("cnn_small", in_chans=1).eval()
    assert net.embed_dim == 256 and net.config.to_dict()["kind"] == "sslkit_cnn"
    x = torch.randn(2, 1, 32, 32)
    # Feature map at 1/8 resolution, pooled output = mean over it.
    fmap = net.model.forward_features(x)
    assert fmap.shape == (2, 256, 4, 4) and torch.allclose(net(x), fmap.mean((2, 3)))
    save_backbone(net, tmp_path, mean=[0.5], std=[0.25], extra={"method": "simclr"})
    loaded = sslkit.load_backbone(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert loaded.meta["mean"] == [0.5]


@pytest.mark.slow
def test_dino_without_ibot_pretrains_a_cnn(tmp_path):
    """DINOv2's recipe on sslkit's CNN: DINO + KoLeo with an EMA teacher, iBOT off (no patch tokens)."""
    out = tmp_path / "dino-cnn"
    code = main(["pretrain", "--recipe", str(RECIPES / "dinov2-tiny.yaml"), "--data", "digits", "--out", str(out),
                 "model.arch=cnn_small", "dinov2.mask_probability=0", "optim.layer_decay=1.0",
                 "optim.patch_embed_lr_mult=1.0", "data.image_size=16", "crops.global_size=16", "crops.local_size=8",
                 "crops.n_local=2", "dinov2.head_out_dim=256", "dinov2.head_hidden_dim=64",
                 "dinov2.head_bottleneck_dim=32", "optim.batch_size=16", "optim.iters_per_epoch=4", "optim.epochs=1",
                 "optim.warmup_epochs=0.5", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
                 "trainer.checkpoint_every_n_steps=4", "monitor.max_bank_size=300"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "train/dino_loss" in r]
    assert len(steps) == 4 and all(r["train/ibot_loss"] == 0.0 for r in steps)
    assert all(r["train/dino_loss"] > 0 and r["train/koleo_loss"] == r["train/koleo_loss"] for r in steps)
    meta = json.loads((out / "backbone.json").read_text())
    assert meta["config"]["kind"] == "sslkit_cnn"
    teacher = sslkit.load_backbone(out)
    # The export is the EMA teacher: it differs from the student saved in the checkpoint.
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    student = {k.split("student.backbone.", 1)[1]: v for k, v in state.items() if ".student.backbone." in k}
    exported = teacher.state_dict()
    name = next(k for k in student if k.endswith("weight") and student[k].ndim == 4)
    assert not torch.equal(student[name], exported[name.removeprefix("model.")] if name.removeprefix("model.") in exported
                           else exported[name])
    assert teacher(torch.zeros(2, 1, 16, 16)).shape == (2, 256)
