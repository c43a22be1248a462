"""SAE modules and the k-means family: sparsifiers, tying, spline form, sklearn agreement, save/load."""

import pytest
import torch
from sklearn.cluster import KMeans

from sslkit.functional.power_diagram import piecewise_affine_reconstruction, power_active_set, topk_active_set
from sslkit.nn.sae import KMeansAutoencoder, KMeansLocalPCA, ReLUSAE, TopKSAE, load_sae, save_sae


def _blobs(n=300, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(5, d, generator=g, dtype=torch.float64)
    return centres[torch.arange(n) % 5] + torch.randn(n, d, generator=g, dtype=torch.float64)


def test_topk_keeps_exactly_k_preactivations():
    sae = TopKSAE(8, 32, 5, seed=0)
    x = torch.randn(50, 8)
    out = sae(x)
    assert out["codes"].ne(0).sum(1).eq(5).all()
    kept = out["codes"] != 0
    assert torch.equal(out["codes"][kept], out["pre_activation"][kept])
    assert torch.equal(kept, topk_active_set(out["pre_activation"], 5))


def test_topk_by_absolute_value_keeps_signs():
    sae = TopKSAE(8, 32, 5, select="abs", seed=1)
    with torch.no_grad():
        sae.b_enc.fill_(-1.0)
    out = sae(torch.randn(50, 8))
    assert (out["codes"] < 0).any()
    assert torch.equal(out["codes"] != 0, topk_active_set(out["pre_activation"], 5, "abs"))


def test_tied_decoder_is_the_encoder_transpose_and_gets_gradients_through_both_roles():
    sae = TopKSAE(6, 12, 3, tied=True, seed=2)
    assert sae.w_dec is None and "w_dec" not in dict(sae.named_parameters())
    assert torch.equal(sae.decoder_weight, sae.w_enc.t())
    x = torch.randn(20, 6)
    sae.loss(x)["loss"].backward()
    # Compare with an untied copy: the tied gradient is the sum of encoder and decoder gradients.
    untied = TopKSAE(6, 12, 3, seed=2)
    with torch.no_grad():
        untied.w_dec.copy_(sae.w_enc.t())
    untied.loss(x)["loss"].backward()
    assert torch.allclose(sae.w_enc.grad, untied.w_enc.grad + untied.w_dec.grad.t(), atol=1e-6)


def test_relu_sae_penalty_is_l1_of_codes():
    sae = ReLUSAE(5, 10, l1=0.1, seed=3)
    x = torch.randn(30, 5)
    out = sae.loss(x)
    codes = torch.relu(x @ sae.w_enc + sae.b_enc)
    assert torch.allclose(out["codes"], codes)
    assert torch.allclose(out["penalty"], 0.1 * codes.sum(1).mean())
    assert torch.allclose(out["loss"], ((codes @ sae.w_dec + sae.b_dec - x) ** 2).mean() + out["penalty"])


@pytest.mark.parametrize("make", [lambda: TopKSAE(6, 24, 4, seed=4), lambda: TopKSAE(6, 24, 4, select="abs", seed=4),
                                  lambda: ReLUSAE(6, 24, seed=4), lambda: TopKSAE(6, 24, 4, tied=True, seed=4)])
def test_per_cell_affine_formula_reproduces_the_forward_pass(make):
    sae = make().double()
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(300, 6, dtype=torch.float64)
    with torch.no_grad():
        z = sae.pre_activation(x)
        spline = piecewise_affine_reconstruction(x, sae.w_enc, sae.b_enc, sae.decoder_weight, sae.b_dec,
                                                 sae.active_set(z))
        assert torch.allclose(spline, sae(x)["recon"], atol=1e-12)


def test_kmeans_matches_sklearn_and_is_a_topk1_power_diagram():
    x = _blobs()
    ours = KMeansAutoencoder(5).fit(x, seed=0)
    reference = KMeans(5, n_init=4, random_state=0).fit(x.numpy())
    assert ours.inertia_ <= reference.inertia_ * 1.001
    # the recon is the nearest centroid, its error the inertia
    assert torch.isclose((ours(x)["recon"] - x).pow(2).sum(), torch.tensor(ours.inertia_, dtype=torch.float64))
    # TopK(1) with W_enc = Cᵀ, b = −½‖c‖² has the same cells (zero power radii)
    w, b = ours.as_topk_encoder()
    probe = 3 * torch.randn(1000, 4, dtype=torch.float64)
    nearest = ours.assign(probe)
    assert torch.equal(topk_active_set(probe @ w + b, 1).int().argmax(1), nearest)
    assert torch.equal(power_active_set(probe, ours.centroids, torch.zeros(5, dtype=torch.float64), 1).int().argmax(1),
                       nearest)


def test_local_pca_never_reconstructs_worse_than_kmeans_and_is_exact_at_full_rank():
    x = _blobs(seed=1)
    kmeans = KMeansAutoencoder(5).fit(x, seed=1)
    local = KMeansLocalPCA(5, rank=1).fit(x, kmeans=kmeans)
    fresh = _blobs(n=500, seed=2) + 0.5 * torch.randn(500, 4, dtype=torch.float64)
    for points in (x, fresh):
        err_kmeans = (kmeans(points)["recon"] - points).pow(2).sum(1)
        err_local = (local(points)["recon"] - points).pow(2).sum(1)
        assert (err_local <= err_kmeans + 1e-12).all()
        assert err_local.sum() < 0.9 * err_kmeans.sum()
    # orthonormal bases, and rank = d reconstructs exactly
    basis = local.bases[0]
    assert torch.allclose(basis.t() @ basis, torch.eye(1, dtype=torch.float64), atol=1e-10)
    full = KMeansLocalPCA(5, rank=4).fit(x, kmeans=kmeans)
    assert torch.allclose(full(fresh)["recon"], fresh, atol=1e-9)
    # each basis is the top principal direction of its cell
    labels = kmeans.assign(x)
    cell = x[labels == 0] - kmeans.centroids[0]
    top = torch.linalg.eigh(cell.t() @ cell).eigenvectors[:, -1]
    assert torch.isclose(torch.abs(top @ basis[:, 0]), torch.tensor(1.0, dtype=torch.float64), atol=1e-8)


@pytest.mark.parametrize("make", [lambda: TopKSAE(6, 16, 3, select="abs", seed=5), lambda: TopKSAE(6, 16, 3, tied=True),
                                  lambda: ReLUSAE(6, 16, l1=0.3)])
def test_save_and_load_round_trip(tmp_path, make):
    sae = make()
    save_sae(sae, tmp_path / "run", extra={"note": "x"})
    loaded = load_sae(tmp_path / "run")
    assert type(loaded) is type(sae) and loaded.config() == sae.config() and loaded.meta == {"note": "x"}
    x = torch.randn(10, 6)
    assert torch.equal(loaded(x)["recon"], sae(x)["recon"])
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "run").iterdir())
    with pytest.raises(FileNotFoundError, match="sae.json"):
        load_sae(tmp_path)


def test_constructor_errors_name_the_value():
    with pytest.raises(ValueError, match="k must be"):
        TopKSAE(4, 8, 9)
    with pytest.raises(ValueError, match="select"):
        TopKSAE(4, 8, 2, select="max")
