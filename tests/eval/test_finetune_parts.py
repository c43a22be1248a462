"""The parts of `sslkit finetune` one by one: layer-decay groups, the warm-up + cosine schedule, timm's Mixup /
CutMix wiring, early stopping with the best weights restored, value checks, and the image + mask folder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sslkit.config import ConfigError
from sslkit.data.errors import DataError
from sslkit.data.mask_folder import MaskFolderDataset
from sslkit.eval.finetune.classify import classification_loss, mixup_of
from sslkit.eval.finetune.config import FinetuneConfig
from sslkit.eval.finetune.layer_decay import layer_decay_groups
from sslkit.eval.finetune.schedule import warmup_cosine
from sslkit.eval.finetune.training import fit
from sslkit.nn.vit import build_vit

EMBEDDINGS = ("patch_embed.", "pos_embed", "cls_token", "reg_token", "mask_token")


def _lr_and_decay_of(groups):
    out = {}
    for group in groups:
        for name in group["names"]:
            assert name not in out, f"{name} is in two groups"
            out[name] = (group["lr"], group["weight_decay"])
    return out


def test_layer_decay_groups_equal_a_direct_computation():
    depth, lr, decay = 3, 1e-3, 0.65
    vit = build_vit("vit_tiny", img_size=16, patch_size=4, embed_dim=24, depth=depth, num_heads=2, num_registers=2)
    head = nn.Linear(24, 5)
    groups = layer_decay_groups(vit, head, lr, 0.05, decay)
    assert all(g["lr"] == pytest.approx(lr * g["lr_scale"]) for g in groups)  # training schedules lr · lr_scale
    got = _lr_and_decay_of(groups)
    expected = {}
    for name, param in [(f"backbone.{n}", p) for n, p in vit.named_parameters()] + \
                       [(f"head.{n}", p) for n, p in head.named_parameters()]:
        short = name.split(".", 1)[1]
        if name.startswith("head."):
            rate = lr  # the task head: full rate
        elif short.startswith(EMBEDDINGS):
            rate = lr * decay ** (depth + 1)  # embeddings: lowest
        elif short.startswith("blocks."):
            i = int(short.split(".")[1]) + 1  # block i, 1-based
            rate = lr * decay ** (depth + 1 - i)
        else:
            assert short.startswith("norm."), short
            rate = lr  # the final norm sits after the blocks
        no_decay = param.ndim <= 1 or short.endswith(".bias") or "norm" in short or "gamma" in short
        expected[name] = (rate, 0.0 if no_decay else 0.05)
    assert set(got) == set(expected)
    for name in expected:
        assert got[name][0] == pytest.approx(expected[name][0], rel=1e-12), name
        assert got[name][1] == expected[name][1], name


def test_layer_decay_on_a_timm_cnn_rises_from_the_stem_to_the_head():
    import timm

    cnn = timm.create_model("resnet18", pretrained=False, num_classes=0)
    rates = _lr_and_decay_of(layer_decay_groups(cnn, nn.Linear(512, 3), 1.0, 0.0, 0.5))
    assert rates["head.weight"][0] == 1.0
    stem, first, last = rates["backbone.conv1.weight"][0], rates["backbone.layer1.0.conv1.weight"][0], \
        rates["backbone.layer4.1.conv2.weight"][0]
    assert stem < first < last < 1.0
    assert stem == min(r for r, _ in rates.values())


def test_warmup_cosine_closed_form():
    total, warmup = 110, 10
    assert [warmup_cosine(s, total, warmup) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert warmup_cosine(10, total, warmup) == pytest.approx(1.0)
    assert warmup_cosine(60, total, warmup) == pytest.approx(0.5)  # half-way through the cosine
    assert warmup_cosine(110, total, warmup) == pytest.approx(0.0, abs=1e-12)
    for step in (17, 42, 99):
        assert warmup_cosine(step, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi * (step - 10) / 100)))
    after = [warmup_cosine(s, total, warmup) for s in range(warmup, total)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert warmup_cosine(0, 5, 0) == 1.0  # no warm-up: start at the peak


def test_mixup_and_cutmix_give_soft_targets_that_sum_to_one():
    config = FinetuneConfig(mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    mixup = mixup_of(config, 10)
    images = torch.rand(8, 1, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    seen_cutmix = seen_mixup = False
    np.random.seed(0)
    for _ in range(12):
        mixed, targets = mixup(images.clone(), labels)
        assert targets.shape == (8, 10)
        assert torch.allclose(targets.sum(1), torch.ones(8))
        assert targets.max() < 1.0  # soft: smoothed (and mixed) one-hot targets
        # The partner of image i is image 7 - i (timm's batch mode pairs a batch with its flip); lam is
        # read back from the target weight of i's own label.
        lam = float((targets[0, 0] - 0.01) / 0.9)
        partner = images.flip(0)
        if torch.allclose(mixed, lam * images + (1 - lam) * partner, atol=1e-6):
            seen_mixup = True
        else:  # cutmix: every pixel is the image's own or its partner's, in the proportion lam
            own = torch.isclose(mixed, images)
            assert bool((own | torch.isclose(mixed, partner)).all())
            assert float(own[0].double().mean()) == pytest.approx(lam, abs=1e-6)
            seen_cutmix = True
    assert seen_mixup and seen_cutmix
    assert mixup_of(FinetuneConfig(mixup=0.0, cutmix=0.0), 10) is None


def test_the_training_loss_feeds_the_model_mixed_images():
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 4, requires_grad=True)

    images, labels = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
    originals = images.clone()  # timm's Mixup mixes the batch in place
    np.random.seed(1)
    loss = classification_loss(FinetuneConfig(mixup=1.0, cutmix=0.0, label_smoothing=0.0), 4)(Recorder(), images, labels)
    assert not torch.allclose(seen[0], originals)
    assert float(loss.detach()) == pytest.approx(math.log(4))  # uniform logits against any soft target
    plain = classification_loss(FinetuneConfig(mixup=0.0, cutmix=0.0, label_smoothing=0.0), 4)(Recorder(), originals,
                                                                                             labels)
    assert torch.equal(seen[1], originals) and float(plain.detach()) == pytest.approx(math.log(4))


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone, self.head = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.backbone(x))


def test_early_stopping_restores_the_best_epochs_weights():
    torch.manual_seed(0)
    model = _Toy()
    data = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(3)]
    scores = iter([0.2, 0.6, 0.5, 0.4, 0.3, 0.9, 0.9])
    weights_at = {}

    def val_score(net, loader):
        weights_at[len(weights_at) + 1] = {k: v.clone() for k, v in net.state_dict().items()}
        return next(scores)

    saved = []
    config = FinetuneConfig(epochs=7, patience=3, warmup_epochs=0, lr=0.1, layer_decay=1.0, mixup=0, cutmix=0)
    result = fit(model, data, data, config, lambda net, x, y: nn.functional.cross_entropy(net(x), y), val_score,
                 on_improvement=lambda net, epoch, score: saved.append(epoch))
    assert result.best_epoch == 2 and result.best_val_score == 0.6
    assert len(result.history) == 5 and result.stopped_early  # epochs 3, 4, 5 brought nothing: stop after 5
    assert saved == [1, 2]
    assert not torch.equal(weights_at[2]["head.weight"], weights_at[5]["head.weight"])  # training moved on ...
    for key, value in model.state_dict().items():  # ... and the best epoch came back
        assert torch.equal(value, weights_at[2][key]), key


@pytest.mark.parametrize("change,message", [
    ({"lr": 0.0}, "finetune lr must be > 0, got 0.0."),
    ({"layer_decay": 1.5}, "finetune layer_decay must be in (0, 1]"),
    ({"layer_decay": 0.0}, "finetune layer_decay must be in (0, 1]"),
    ({"mixup": -0.1}, "finetune mixup must be >= 0"),
    ({"cutmix": float("nan")}, "finetune cutmix must be a finite number"),
    ({"label_smoothing": 1.0}, "finetune label_smoothing must be in [0, 1)"),
    ({"epochs": 0}, "finetune epochs must be an integer >= 1"),
    ({"patience": 0}, "finetune patience must be an integer >= 1"),
    ({"val_fraction": 1.0}, "finetune val_fraction must be in (0, 1)"),
    ({"warmup_epochs": 10}, "finetune warmup_epochs must be in [0, epochs=10)"),
    ({"batch_size": 7}, "batch_size must be even when mixup or cutmix is on"),
    ({"task": "detect"}, "finetune task must be one of ['classify', 'segment']"),
])
def test_bad_values_are_one_sentence(change, message):
    with pytest.raises(ConfigError) as err:
        FinetuneConfig(**change)
    assert message in str(err.value) and str(err.value).count(". ") == 0 and str(err.value).endswith(".")


def _mask_folder(root, names=("a", "b"), mask_names=None, mask_mode="L", mask_size=(6, 6)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(root / "images" / f"{name}.png")
    for name in mask_names if mask_names is not None else names:
        Image.new(mask_mode, mask_size).save(root / "masks" / f"{name}.png")
    return root


def test_a_mask_folder_reads_pairs_and_names_a_missing_or_mismatched_mask(tmp_path):
    good = MaskFolderDataset(_mask_folder(tmp_path / "good"))
    item = good[1]
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (6, 6) and item["path"].endswith("b.png")
    with pytest.raises(DataError, match=r"Image .*b\.png has no mask .*masks/b\.png"):
        MaskFolderDataset(_mask_folder(tmp_path / "missing", mask_names=("a",)))
    with pytest.raises(DataError, match=r"Mask .*c\.png has no image of the same name"):
        MaskFolderDataset(_mask_folder(tmp_path / "orphan", mask_names=("a", "b", "c")))
    with pytest.raises(DataError, match=r"Mask .*a\.png is a RGB image; save masks as single-channel integer PNGs"):
        MaskFolderDataset(_mask_folder(tmp_path / "colour", mask_mode="RGB"))
    wrong = MaskFolderDataset(_mask_folder(tmp_path / "size", mask_size=(5, 6)))
    with pytest.raises(DataError, match=r"Mask .*a\.png is 5x6 pixels but its image .*a\.png is 6x6"):
        wrong[0]
