"""Teacher guidance (noisy-dinov2.md step 5): λ = 0 is plain DINOv2, T* never learns, paired crops align,
and with identical noisy/denoised inputs the guided terms equal the plain ones."""

import copy
import random
from pathlib import Path

import pytest
import torch

from sslkit.cli import main
from sslkit.config import ConfigError, load_config
from sslkit.data.augment import MultiCropAugmentation
from sslkit.data.builtin import load_builtin
from sslkit.data.collate import MultiCropCollate
from sslkit.data.paired import PairedDataset
from sslkit.data.stream import AugmentedStream
from sslkit.engine.builders import build_method

CFG = {"model": {"arch": "vit_tiny", "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2,
                 "layerscale_init": None, "drop_path_rate": 0.0},
       "crops": {"global_size": 16, "local_size": 8, "n_local": 2},
       "dinov2": {"head_out_dim": 64, "head_hidden_dim": 32, "head_bottleneck_dim": 16},
       "curriculum": [{"fraction": 0.5}, {"fraction": 0.5, "teacher_guidance": 1.0, "paired_data": "digits"}]}


def batch_from(pairs=True, b=4):
    data = load_builtin("digits", "train", size=16)
    aug = MultiCropAugmentation(16, 8, n_local=2, channels=1, mean=(0.5,), std=(0.25,))
    source = PairedDataset(data, data) if pairs else data
    stream = AugmentedStream(source, aug, seed=3)
    return MultiCropCollate(4, seed=0)([stream[i] for i in range(b)])


def methods():
    cfg = load_config(CFG)
    torch.manual_seed(0)
    guided = build_method(cfg, in_chans=1).train()
    plain_cfg = copy.deepcopy(CFG)
    plain_cfg.pop("curriculum")
    torch.manual_seed(0)
    plain = build_method(load_config(plain_cfg), in_chans=1).train()
    return guided, plain


def test_identical_inputs_give_identical_paired_crops():
    batch = batch_from()
    assert torch.equal(batch["clean_global_crops"], batch["global_crops"])


def test_zero_weight_is_plain_dinov2_bit_for_bit_and_the_guide_never_learns():
    guided, plain = methods()
    assert hasattr(guided, "guide") and not hasattr(plain, "guide")
    batch = batch_from()
    guided.freeze_guide()
    before = {k: v.clone() for k, v in guided.guide.state_dict().items()}
    a, b = guided(batch, teacher_temp=0.04), plain(batch, teacher_temp=0.04)
    a["loss"].backward()
    b["loss"].backward()
    assert torch.equal(a["loss"], b["loss"])
    for (name, pa), (_, pb) in zip(guided.student.named_parameters(), plain.student.named_parameters()):
        assert torch.equal(pa.grad, pb.grad), name
    assert all(not p.requires_grad and p.grad is None for p in guided.guide.parameters())
    assert all(torch.equal(before[k], v) for k, v in guided.guide.state_dict().items())


def test_guided_terms_equal_the_plain_ones_when_the_twin_is_the_same_image():
    # T* = the current teacher, same centres, ŷ = y: the extra DINO + iBOT terms repeat the plain ones,
    # so the loss is (1 + λ)(DINO + iBOT) + 0.1 KoLeo.
    guided, _ = methods()
    guided.freeze_guide()
    guided.guidance_weight = 0.7
    out = guided(batch_from(), teacher_temp=0.04)
    assert out["guide_dino_loss"].item() == pytest.approx(out["dino_loss"].item(), rel=1e-6)
    assert out["guide_ibot_loss"].item() == pytest.approx(out["ibot_loss"].item(), rel=1e-6, abs=1e-7)
    expected = 1.7 * (out["dino_loss"] + out["ibot_loss"]) + 0.1 * out["koleo_loss"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_guidance_without_twins_or_without_a_paired_source_is_refused():
    guided, _ = methods()
    guided.freeze_guide()
    guided.guidance_weight = 1.0
    with pytest.raises(ValueError, match="denoised twins"):
        guided(batch_from(pairs=False), teacher_temp=0.04)
    bad = copy.deepcopy(CFG)
    bad["curriculum"][1].pop("paired_data")
    with pytest.raises(ConfigError, match="paired_data"):
        load_config(bad)


RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")


@pytest.mark.slow
def test_denoised_then_noisy_curriculum_with_guidance_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = ["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(out),
            "data.image_size=16", "crops.global_size=16", "crops.local_size=8", "crops.n_local=2",
            "model.embed_dim=64", "model.depth=2", "model.num_heads=2", "dinov2.head_out_dim=256",
            "dinov2.head_hidden_dim=128", "dinov2.head_bottleneck_dim=64", "optim.batch_size=16",
            "optim.iters_per_epoch=4", "optim.epochs=2", "optim.warmup_epochs=0.5",
            "optim.freeze_last_layer_epochs=0.25", "dinov2.warmup_teacher_temp_epochs=0.5",
            "trainer.progress_bar=false", "trainer.log_every_n_steps=1", "monitor.baselines=false",
            "curriculum=[{fraction: 0.5}, {fraction: 0.5, restart_schedules: true, teacher_guidance: 2.0, "
            "paired_data: digits}]"]
    assert main(args) == 0
    import json

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train/loss" in r]
    assert [("train/guide_dino_loss" in r) for r in train] == [False] * 4 + [True] * 4
