"""The synthetic invertible-mixing world, and the issue's test: the same SSL method trained with two seeds aligns
far above the random baseline (and a second method agrees with it too)."""

import pytest
import torch

from sslkit.analysis.align import alignment_matrices, latent_identifiability, mutual_knn_baseline
from sslkit.analysis.synthetic_mixing import (EncoderTrainingConfig, InvertibleMixing, MixingConfig, SyntheticMixing,
                                              train_encoder)
from sslkit.config import ConfigError
from sslkit.functional.metrics import linear_r2, mutual_knn


def test_mixing_is_invertible_and_well_conditioned():
    g = torch.Generator().manual_seed(5)
    mixing = InvertibleMixing(6, n_layers=4, negative_slope=0.2, condition_number=4.0, generator=g)
    for w in mixing.weights:
        assert torch.linalg.cond(w) <= 4.0 + 1e-9
    z = torch.randn(500, 6, dtype=torch.float64, generator=g)
    x = mixing(z)
    assert torch.allclose(mixing.inverse(x), z, atol=1e-10)
    # Nonlinear: no affine map reproduces x from z (the leaky ReLUs bend it).
    assert linear_r2(z[:400], x[:400], z[400:], x[400:]) < 0.99
    with pytest.raises(ConfigError, match="negative_slope"):
        InvertibleMixing(3, negative_slope=1.0)


def test_world_latents_live_on_the_sphere_and_positives_are_close():
    world = SyntheticMixing(MixingConfig(latent_dim=5, positive_noise=0.2, seed=3))
    z, x = world.sample(2000, seed=1)
    assert z.shape == x.shape == (2000, 5) and x.dtype == torch.float32
    assert torch.allclose(z.norm(dim=1), torch.ones(2000, dtype=torch.float64))
    z_pos = world.perturb(z, torch.Generator().manual_seed(2))
    assert torch.allclose(z_pos.norm(dim=1), torch.ones(2000, dtype=torch.float64))
    # Projected normal with σ = 0.2 in m = 5 dimensions: E‖z̃ − z‖ ≈ σ·√(m − 1) to first order.
    step = (z_pos - z).norm(dim=1).mean()
    assert 0.3 < float(step) < 0.45
    # Same seed, same world; the observation is g(z).
    again = SyntheticMixing(MixingConfig(latent_dim=5, positive_noise=0.2, seed=3))
    assert torch.equal(again.sample(2000, seed=1)[1], x)
    assert not torch.equal(SyntheticMixing(MixingConfig(latent_dim=5, seed=4)).observe(z), x)
    assert torch.allclose(world.mixing.inverse(x.double()), z, atol=1e-5)


@pytest.fixture(scope="module")
def simclr_pair():
    """The world (m = 5), 1000 held-out latents (never seen in training) and SimCLR encoders of seeds 1 and 2."""
    world = SyntheticMixing(MixingConfig(latent_dim=5, seed=0))
    z, x = world.sample(1000, seed=123)
    trained = [train_encoder(world, EncoderTrainingConfig(method="simclr", steps=300, seed=s)) for s in (1, 2)]
    return world, z, x, trained


@pytest.mark.slow
def test_two_seeds_of_one_method_align_far_above_the_random_baseline(simclr_pair):
    world, z, x, trained = simclr_pair
    for t in trained:
        assert t.losses[-1] < 0.7 * t.losses[0]
    untrained = [train_encoder(world, EncoderTrainingConfig(method="simclr", steps=0, seed=s)) for s in (1, 2)]
    feats = {"seed1": trained[0].embed(x), "seed2": trained[1].embed(x),
             "untrained1": untrained[0].embed(x), "untrained2": untrained[1].embed(x)}
    result = alignment_matrices(feats, metrics=("cka_linear", "mutual_knn"), k=10, seed=0)
    baseline, se = mutual_knn_baseline(1000, 10)
    mknn, lin = result.matrices["mutual_knn"], result.matrices["cka_linear"]
    # The test: the same method, two seeds, far above the random baseline k/(n−1) ≈ 0.010 ...
    assert mknn[0, 1] >= 5 * baseline and mknn[0, 1] > 0.5
    assert lin[0, 1] > 0.9
    # ... and above two untrained encoders of the same inputs, which share only the smoothness of g and the MLPs.
    assert mknn[0, 1] > mknn[2, 3] + 0.2
    # Shuffling one side's rows, or independent random features, lands on the baseline.
    assert abs(result.permutation_null["mutual_knn"][0, 1] - baseline) < 5 * se
    g = torch.Generator().manual_seed(7)
    independent = mutual_knn(torch.randn(1000, 5, generator=g), torch.randn(1000, 5, generator=g), k=10)
    assert abs(independent - baseline) < 3 * se
    # Identifiability: z is linearly decodable from the trained representations (up to the sphere's rotation).
    ident = latent_identifiability(feats, {"z": z})
    assert ident.r2["seed1"]["z"] > 0.85 and ident.r2["seed2"]["z"] > 0.85
    assert ident.r2["untrained1"]["z"] < ident.r2["seed1"]["z"] - 0.2


@pytest.mark.slow
def test_a_second_method_agrees_with_the_first(simclr_pair):
    world, z, x, (simclr, _) = simclr_pair
    vicreg = train_encoder(world, EncoderTrainingConfig(method="vicreg", steps=300, seed=1))
    assert vicreg.encoder[-1].out_features == 32 and not vicreg.normalize
    feats = {"simclr": simclr.embed(x), "vicreg": vicreg.embed(x)}
    result = alignment_matrices(feats, metrics=("mutual_knn",), k=10, permutation_null=False)
    assert result.matrices["mutual_knn"][0, 1] >= 5 * result.random_mutual_knn
    assert latent_identifiability(feats, {"z": z}).r2["vicreg"]["z"] > 0.7
