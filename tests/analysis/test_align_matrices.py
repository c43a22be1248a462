"""Alignment matrices and identifiability tables: the arrangement of sslkit.functional.metrics calls."""

import math

import numpy as np
import pytest
import torch

from sslkit.analysis.align import (ALIGNMENT_METRICS, alignment_matrices, heatmap_png, identifiability_png,
                                   latent_identifiability, mutual_knn_baseline, shapes_latents)
from sslkit.config import ConfigError
from sslkit.data.builtin import ShapesDataset
from sslkit.data.errors import DataError
from sslkit.functional.metrics import cka, cknna, linear_r2, mcc, mutual_knn


def _three_views(n=90, seed=0):
    """Three representations of the same n samples: related (shared latent), different widths."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, generator=g, dtype=torch.float64)
    a = z @ torch.randn(4, 6, generator=g, dtype=torch.float64)
    b = torch.tanh(z @ torch.randn(4, 9, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(n, 9, generator=g,
                                                                                                   dtype=torch.float64)
    c = torch.randn(n, 5, generator=g, dtype=torch.float64)  # unrelated
    return {"a": a, "b": b, "c": c}


REFERENCE = {
    "cka_linear": lambda x, y, k: cka(x, y),
    "cka_rbf": lambda x, y, k: cka(x, y, kernel="rbf"),
    "cka_linear_unbiased": lambda x, y, k: cka(x, y, unbiased=True),
    "mutual_knn": lambda x, y, k: mutual_knn(x, y, k=k),
    "cknna": lambda x, y, k: cknna(x, y, k=k),
}


def test_matrices_equal_pairwise_metric_calls_symmetric_with_unit_diagonal():
    feats = _three_views()
    result = alignment_matrices(feats, metrics=tuple(ALIGNMENT_METRICS), k=7, permutation_null=False)
    names = list(feats)
    assert result.names == names and result.n == 90 and result.k == 7 and result.permutation_null is None
    for metric, ref in REFERENCE.items():
        m = result.matrices[metric]
        assert m.shape == (3, 3) and m.dtype == torch.float64
        for i, p in enumerate(names):
            assert m[i, i] == pytest.approx(1.0, abs=1e-9), (metric, p)
            for j, q in enumerate(names):
                assert m[i, j] == pytest.approx(ref(feats[p], feats[q], 7), abs=1e-12), (metric, p, q)
        if metric == "cknna":
            # CKNNA's kNN mask is asymmetric, so swapping the arguments moves it a little (not a mirror copy).
            assert not torch.equal(m, m.t()) and torch.allclose(m, m.t(), atol=5e-3)
        else:
            assert torch.equal(m, m.t())
    # The related pair is more aligned than either with the unrelated one, on every metric.
    for metric in REFERENCE:
        m = result.matrices[metric]
        assert m[0, 1] > m[0, 2] and m[0, 1] > m[1, 2], metric


def test_permutation_null_is_the_metric_against_shuffled_rows():
    feats = _three_views(n=120, seed=3)
    result = alignment_matrices(feats, metrics=("cka_linear", "mutual_knn"), k=5, seed=11)
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(11))
    names = list(feats)
    for i in range(3):
        for j in range(i, 3):
            x, y = feats[names[i]], feats[names[j]]
            assert result.permutation_null["cka_linear"][i, j] == pytest.approx(cka(x, y[perm]), abs=1e-12)
            assert result.permutation_null["mutual_knn"][i, j] == pytest.approx(mutual_knn(x, y[perm], k=5), abs=1e-12)
    # Shuffling destroys the correspondence: the null of the related pair sits near the analytic baseline.
    assert result.random_mutual_knn == pytest.approx(5 / 119)
    assert abs(result.permutation_null["mutual_knn"][0, 1] - 5 / 119) < 6 * result.random_mutual_knn_se
    assert result.matrices["mutual_knn"][0, 1] > 3 * result.permutation_null["mutual_knn"][0, 1]


def test_mutual_knn_baseline_matches_monte_carlo():
    n, k, draws = 150, 10, 120
    mean, se = mutual_knn_baseline(n, k)
    assert mean == pytest.approx(k / (n - 1))
    g = torch.Generator().manual_seed(0)
    values = torch.tensor([mutual_knn(torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g), k=k)
                           for _ in range(draws)], dtype=torch.float64)
    # The mean of independent draws is k/(n−1) within 3 standard errors of the Monte-Carlo mean ...
    assert abs(float(values.mean()) - mean) < 3 * float(values.std()) / math.sqrt(draws)
    # ... and the spread of one draw is the hypergeometric standard error (rows treated as independent).
    assert float(values.std()) == pytest.approx(se, rel=0.3)


def test_identifiability_recovers_linear_and_permuted_latents():
    g = torch.Generator().manual_seed(1)
    n = 400
    z = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1
    mix = torch.tensor([[2.0, 1.0, 0.0], [0.5, -1.0, 1.0], [0.0, 0.3, 3.0]], dtype=torch.float64)
    permuted = torch.stack([-3 * z[:, 2], 0.5 * z[:, 0] + 2, 7 * z[:, 1]], dim=1)  # permute, rescale, flip, shift
    noise = torch.randn(n, 3, generator=g, dtype=torch.float64)
    feats = {"mixed": z @ mix.t() + 1.0, "permuted": permuted, "noise": noise}
    latents = {"first": z[:, 0], "rest": z[:, 1:]}
    result = latent_identifiability(feats, latents, fit_fraction=0.75, seed=4)
    assert result.latents == ["first", "rest", "all"] and result.dims == {"first": 1, "rest": 2, "all": 3}
    assert result.fit_size == 300 and result.test_size == 100
    for name in ("mixed", "permuted"):
        assert result.r2[name]["all"] == pytest.approx(1.0, abs=1e-9)
    assert result.mcc["permuted"]["all"] == pytest.approx(1.0, abs=1e-12)
    assert result.mcc["mixed"]["all"] < 0.95  # identified only up to a linear map, not a permutation
    assert result.r2["noise"]["all"] < 0.1 and result.mcc["noise"]["all"] < 0.3
    # Each entry is one call of the metric functions on the documented seeded split.
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(4))
    fit, test = perm[:300], perm[300:]
    h, zz = feats["mixed"], z[:, 1:]
    assert result.r2["mixed"]["rest"] == pytest.approx(linear_r2(h[fit], zz[fit], h[test], zz[test]), abs=1e-12)
    assert result.mcc["noise"]["first"] == pytest.approx(mcc(noise, z[:, :1]), abs=1e-12)
    assert set(result.to_dict()) >= {"r2", "mcc", "dims", "fit_size", "ridge"}


def test_shapes_latents_follow_item_order_and_encode_rotation_as_cos_sin():
    ds = ShapesDataset("test", num_samples=12, size=16)
    latents, labels = shapes_latents(ds)
    assert labels.tolist() == [ds[i]["shape"] for i in range(12)]
    assert torch.equal(latents["shape"].argmax(1), labels) and torch.equal(latents["shape"].sum(1),
                                                                            torch.ones(12, dtype=torch.float64))
    theta = torch.tensor([ds[i]["rotation"] for i in range(12)], dtype=torch.float64)
    assert torch.allclose(latents["rotation"], torch.stack([theta.cos(), theta.sin()], 1))
    assert torch.allclose(latents["position"][5], ds[5]["position"].double())
    assert torch.allclose(latents["color"][7], ds[7]["color"].double())
    assert latents["scale"].shape == (12, 1) and latents["scale"][3, 0] == pytest.approx(ds[3]["scale"])


def test_bad_inputs_raise_one_clear_error():
    feats = _three_views(n=40)
    with pytest.raises(ConfigError, match="Unknown alignment metric"):
        alignment_matrices(feats, metrics=("cka",))
    with pytest.raises(DataError, match="same samples"):
        alignment_matrices({"a": feats["a"], "b": feats["b"][:30]})
    with pytest.raises(DataError, match="pooled features"):
        alignment_matrices({"a": torch.randn(40, 3, 5), "b": feats["b"]})
    with pytest.raises(DataError, match="at least 12 samples"):
        alignment_matrices({"a": feats["a"][:10], "b": feats["b"][:10]}, k=10)
    with pytest.raises(DataError, match="one row per"):
        latent_identifiability({"a": feats["a"]}, {"z": torch.randn(39)})


def test_heat_maps_are_png_images():
    feats = _three_views(n=40)
    matrices = alignment_matrices(feats, metrics=("cka_linear",), permutation_null=False)
    png = heatmap_png(matrices.matrices["cka_linear"], matrices.names, "linear CKA", note="n = 40 samples")
    ident = latent_identifiability(feats, {"z": feats["a"][:, :2]})
    for blob in (png, identifiability_png(ident)):
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5000
    import matplotlib.image as mpimg
    import io

    image = mpimg.imread(io.BytesIO(png), format="png")
    assert image.ndim == 3 and np.asarray(image).std() > 0.05  # not a blank canvas
