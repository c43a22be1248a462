"""MAE, SimCLR and VICReg as methods: output dicts, gradients, and that each can fit a fixed batch."""

import random

import pytest
import torch

from sslkit.config import load_config
from sslkit.data.masking import sample_random_masks
from sslkit.engine.builders import build_method

SMALL = {"model": {"arch": "vit_tiny", "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2,
                   "layerscale_init": None, "drop_path_rate": 0.0},
         "crops": {"global_size": 16, "local_size": 8, "n_local": 0}}


def method(name, **sections):
    tree = {"method": name, **SMALL, **sections}
    tree["crops"] = {**SMALL["crops"], "n_global": 1 if name == "mae" else 2, **sections.get("crops", {})}
    torch.manual_seed(0)
    return build_method(load_config(tree), in_chans=3).train()


def batch_for(name, b=8):
    g = torch.Generator().manual_seed(1)
    n_views = 1 if name == "mae" else 2
    batch = {"global_crops": torch.randn(n_views * b, 3, 16, 16, generator=g)}
    batch["masks"] = sample_random_masks(n_views * b, 16, 0.75, random.Random(0)) if name == "mae" \
        else torch.zeros(n_views * b, 16, dtype=torch.bool)
    return batch


@pytest.mark.parametrize("name,keys", [
    ("mae", {"reconstruction_loss"}),
    ("simclr", {"contrastive_loss"}),
    ("vicreg", {"invariance_loss", "variance_loss", "covariance_loss"}),
])
def test_output_dict_and_gradients(name, keys):
    m = method(name, simclr={"projector_hidden_dim": 64, "projector_out_dim": 16},
               vicreg={"projector_hidden_dim": 64, "projector_out_dim": 64})
    out = m(batch_for(name))
    assert {"loss", "embedding"} | keys <= set(out)
    assert out["embedding"].shape == (8, 32) and not out["embedding"].requires_grad
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    backbone = m.student["backbone"]
    assert backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert m.eval_backbone is backbone and not m.has_teacher and m.schedule_inputs == ()


@pytest.mark.parametrize("name", ["mae", "simclr", "vicreg"])
def test_fits_a_fixed_batch(name):
    """A method whose loss cannot fall on one repeated batch does not learn at all."""
    m = method(name, simclr={"projector_hidden_dim": 64, "projector_out_dim": 16},
               vicreg={"projector_hidden_dim": 64, "projector_out_dim": 64})
    batch = batch_for(name, b=16)
    opt = torch.optim.AdamW(m.student.parameters(), lr=2e-3)
    first = None
    for _ in range(25):
        loss = m(batch)["loss"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert m(batch)["loss"].item() < 0.8 * first


def test_mae_loss_of_a_zero_prediction_is_the_normalised_target_energy():
    # A normalised patch of P values has sum of squares (P - 1) (unbiased variance), so predicting
    # zeros gives an MSE of (P - 1) / P exactly (up to the 1e-6 in the variance).
    m = method("mae")
    torch.nn.init.zeros_(m.student["decoder"].predict.weight)
    torch.nn.init.zeros_(m.student["decoder"].predict.bias)
    out = m(batch_for("mae"))
    p = 4 * 4 * 3
    assert out["reconstruction_loss"].item() == pytest.approx((p - 1) / p, rel=1e-4)
