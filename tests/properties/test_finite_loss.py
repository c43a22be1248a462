"""The loops' finite-loss check: a finite loss passes through as a float, NaN and ±inf stop with one sentence."""

import math

import pytest
import torch

from sslkit.config import ConfigError
from sslkit.finite_loss import require_finite


def test_finite_values_pass_through():
    assert require_finite(torch.tensor(1.5, requires_grad=True) * 2, "x", "step 0", "lower lr") == 3.0
    assert require_finite(0.25, "x", "step 0", "lower lr") == 0.25


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_one_sentence(bad):
    with pytest.raises(FloatingPointError, match=r"^The denoiser loss became (nan|inf|-inf) at epoch 3; lower --lr\.$"):
        require_finite(torch.tensor(bad), "denoiser", "epoch 3", "lower --lr")
    with pytest.raises(ConfigError, match="LoRA"):
        require_finite(bad, "LoRA fine-tuning", "step 1", "lower the learning rate", error=ConfigError)


def test_a_loop_stops_on_a_diverging_loss():
    # The synthetic-mixing encoder trained at an absurd learning rate: the run stops with the sentence.
    from sslkit.analysis.synthetic_mixing import EncoderTrainingConfig, MixingConfig, SyntheticMixing, train_encoder

    world = SyntheticMixing(MixingConfig(seed=0))
    with pytest.raises(FloatingPointError, match=r"The train_encoder vicreg loss became .* lower lr"):
        train_encoder(world, EncoderTrainingConfig(method="vicreg", lr=1e30, steps=50, train_size=256))
