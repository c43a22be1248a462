"""Few-shot episodes: nearest-centroid equals scikit-learn's, seeded episodes, mean ± std, errors."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestCentroid

from sslkit.data.errors import DataError
from sslkit.eval.fewshot import FewShotConfig, fewshot_protocol, nearest_centroid_predict, sample_episode


def problem(seed=0, n=300, d=10, classes=5):
    g = torch.Generator().manual_seed(seed)
    centres = 1.5 * torch.randn(classes, d, generator=g)
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, d, generator=g) + 4.0  # an offset that the centring removes
    y_te = torch.arange(100) % classes
    x_te = centres[y_te] + torch.randn(100, d, generator=g) + 4.0
    return x.double(), y, x_te.double(), y_te


def test_nearest_centroid_equals_sklearn_on_centred_normalised_features():
    x, y, x_te, _ = problem()
    centre = x.mean(0)
    idx = sample_episode(y, 5, list(range(5)), torch.Generator().manual_seed(3))
    assert idx.numel() == 25 and torch.equal(torch.bincount(y[idx]), torch.full((5,), 5))
    ours = nearest_centroid_predict(x[idx], y[idx], x_te, centre)
    norm = lambda a: (a - centre) / (a - centre).norm(dim=1, keepdim=True)  # noqa: E731
    sk = NearestCentroid().fit(norm(x[idx]).numpy(), y[idx].numpy())
    assert np.array_equal(ours.numpy(), sk.predict(norm(x_te).numpy()))


def test_episodes_are_seeded_and_summarised_by_mean_and_std():
    x, y, x_te, y_te = problem(seed=1)
    config = FewShotConfig(shots=(1, 5, 10), episodes=30, seed=7)
    a = fewshot_protocol(x, y, x_te, y_te, config)
    b = fewshot_protocol(x, y, x_te, y_te, config)
    assert a.episodes == b.episodes
    for shots in config.shots:
        accs = torch.tensor(a.episodes[shots], dtype=torch.float64)
        assert len(accs) == 30
        assert a.mean[shots] == pytest.approx(float(accs.mean()))
        assert a.std[shots] == pytest.approx(float(accs.std()))
    # More shots, better centroids: the mean rises and the spread over episodes shrinks.
    assert a.mean[1] < a.mean[5] < a.mean[10]
    assert a.std[10] < a.std[1]
    other = fewshot_protocol(x, y, x_te, y_te, FewShotConfig(shots=(1,), episodes=30, seed=8))
    assert other.episodes[1] != a.episodes[1]


def test_too_few_samples_per_class_and_missing_labels():
    x, y, x_te, y_te = problem()
    y = y.clone()
    y[y == 2] = torch.where(torch.arange(int((y == 2).sum())) < 3, 2, 0)  # class 2 keeps 3 samples
    with pytest.raises(DataError, match="10-shot episodes need 10 training samples of every class, but class 2 has 3"):
        fewshot_protocol(x, y, x_te, y_te)
    with pytest.raises(DataError, match="needs labels"):
        fewshot_protocol(x, torch.full_like(y, -1), x_te, y_te)
