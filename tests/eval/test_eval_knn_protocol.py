"""The kNN protocol: equal to scikit-learn with uniform votes, DINOv2 weighting, and its input errors."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from sslkit.data.errors import DataError
from sslkit.eval.knn import KNNConfig, knn_protocol


def clusters(n_train=400, n_test=150, d=12, classes=6, spread=2.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g)
    y_tr = torch.randint(0, classes, (n_train,), generator=g)
    y_te = torch.randint(0, classes, (n_test,), generator=g)
    x_tr = centres[y_tr] + spread * torch.randn(n_train, d, generator=g) / d**0.5 * 3
    x_te = centres[y_te] + spread * torch.randn(n_test, d, generator=g) / d**0.5 * 3
    return x_tr, y_tr, x_te, y_te


def test_uniform_votes_equal_sklearn_cosine_knn_for_every_k():
    x_tr, y_tr, x_te, y_te = clusters()
    config = KNNConfig(ks=(10, 20, 100, 200), weighting="uniform", block_size=37)
    result = knn_protocol(x_tr, y_tr, x_te, y_te, config)
    for k in config.ks:
        sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(x_tr.numpy(), y_tr.numpy())
        expected = sk.predict(x_te.numpy())
        assert np.array_equal(result.predictions[k].numpy(), expected), k
        assert result.accuracy[k] == pytest.approx(float((expected == y_te.numpy()).mean()))
    assert 0.3 < result.accuracy[10] < 1.0  # a problem where k matters, not a trivial one


def test_softmax_votes_equal_a_dense_reference_and_record_the_settings():
    x_tr, y_tr, x_te, y_te = clusters(seed=1)
    result = knn_protocol(x_tr, y_tr, x_te, y_te)  # defaults: k 10/20/100/200, T = 0.07
    xn = torch.nn.functional.normalize(x_tr, dim=1)
    qn = torch.nn.functional.normalize(x_te, dim=1)
    sims = qn @ xn.t()
    for k in (10, 20, 100, 200):
        top, idx = sims.topk(k, dim=1)
        scores = torch.zeros(len(x_te), 6).scatter_add_(1, y_tr[idx], torch.exp(top / 0.07))
        assert torch.equal(result.predictions[k], scores.argmax(1)), k
    record = result.to_dict()
    assert record["config"] == {"ks": (10, 20, 100, 200), "temperature": 0.07, "weighting": "softmax",
                                "metric": "cosine", "block_size": 1024}
    assert set(record["accuracy"]) == {"10", "20", "100", "200"}


def test_fewer_samples_than_k_is_one_clear_error():
    x_tr, y_tr, x_te, y_te = clusters(n_train=150)
    with pytest.raises(DataError, match="k=200 needs at least 200 training samples, but the training split has 150"):
        knn_protocol(x_tr, y_tr, x_te, y_te)


def test_missing_labels_are_one_clear_error():
    x_tr, y_tr, x_te, y_te = clusters()
    y_tr[3] = -1
    with pytest.raises(DataError, match="kNN needs labels, but 1 of the 400 training samples have none"):
        knn_protocol(x_tr, y_tr, x_te, y_te)
    with pytest.raises(DataError, match="test samples"):
        knn_protocol(x_tr, torch.zeros_like(y_tr), x_te, torch.full_like(y_te, -1))
