"""MAE's held-out masked-patch loss (eval/reconstruction.py) against a direct computation."""

import random

import torch

from sslkit.data.masking import sample_random_masks
from sslkit.eval.reconstruction import heldout_reconstruction_loss
from sslkit.functional.mae import masked_patch_mse, patchify
from sslkit.methods.mae import MAE
from sslkit.nn.mae_decoder import MAEDecoder
from sslkit.nn.vit import ViT, ViTConfig


def _mae(seed=0):
    torch.manual_seed(seed)
    vit = ViT(ViTConfig(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2,
                        layerscale_init=None))
    return MAE(vit, MAEDecoder(32, 4, 1, dim=32, depth=1, num_heads=2))


class _Images(torch.utils.data.Dataset):
    """Items of the sslkit protocol: {"image": (C, H, W), "label": int}."""

    def __init__(self, n):
        torch.manual_seed(1)
        self.tensors = (torch.randn(n, 1, 16, 16),)

    def __len__(self):
        return len(self.tensors[0])

    def __getitem__(self, i):
        return {"image": self.tensors[0][i], "label": 0}


def _images(n=10):
    return _Images(n)


def test_equals_the_direct_masked_loss_averaged_per_hidden_patch():
    mae, data = _mae(), _images(10)
    got = heldout_reconstruction_loss(mae, data, mask_ratio=0.75, seed=3, batch_size=4)  # batches 4, 4, 2
    rng, total, count = random.Random(3), 0.0, 0
    mae.eval()
    with torch.no_grad():
        for start in (0, 4, 8):
            x = data.tensors[0][start:start + 4]
            masks = sample_random_masks(x.shape[0], 16, 0.75, rng)
            pred, _ = mae.reconstruct(x, masks)
            total += float(masked_patch_mse(pred, patchify(x, 4), masks)) * int(masks.sum())
            count += int(masks.sum())
    assert abs(got - total / count) < 1e-6
    # The same seed hides the same patches: the value does not depend on the batch size, and the
    # model is left in the mode it was in.
    mae.train()
    assert abs(heldout_reconstruction_loss(mae, data, 0.75, seed=3, batch_size=10) - got) < 1e-5
    assert mae.training


def test_a_different_model_or_seed_changes_the_loss():
    data = _images(8)
    base = heldout_reconstruction_loss(_mae(0), data, 0.75, seed=0)
    assert abs(heldout_reconstruction_loss(_mae(1), data, 0.75, seed=0) - base) > 1e-4
    assert abs(heldout_reconstruction_loss(_mae(0), data, 0.75, seed=1) - base) > 1e-4
