import pytest
import torch
import torch.nn.functional as F
from sklearn.neighbors import KNeighborsClassifier

from sslkit.functional.knn import knn_accuracy, knn_predict


def random_problem(n=300, m=120, d=16, num_classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    train = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    test = torch.randn(m, d, generator=g, dtype=torch.float64)
    return train, labels, test


def dense_softmax_knn(train, labels, test, num_classes, k, temperature):
    """exp(s / T) voting over the k most similar rows of the full (m, n) matrix."""
    sims = F.normalize(test, dim=1) @ F.normalize(train, dim=1).t()
    order = sims.argsort(dim=1, descending=True)[:, :k]
    votes = torch.exp(sims.gather(1, order) / temperature)
    scores = torch.zeros(len(test), num_classes, dtype=sims.dtype)
    scores.scatter_add_(1, labels[order], votes)
    return scores.argmax(1)


def test_uniform_weighting_equals_sklearn_exactly():
    train, labels, test = random_problem()
    ks = (1, 2, 4, 10, 20, 50)
    preds = knn_predict(train, labels, test, 5, ks=ks, weighting="uniform", block_size=32)
    n_tied_votes = 0
    for k in ks:
        sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
        sk.fit(train.numpy(), labels.numpy())
        expected = torch.from_numpy(sk.predict(test.numpy()))
        assert torch.equal(preds[k], expected), f"k={k}"
        # Count vote ties so the test demonstrably exercises the tie-break rule.
        neighbours = sk.kneighbors(test.numpy(), return_distance=False)
        counts = F.one_hot(labels[torch.from_numpy(neighbours)], 5).sum(1)
        n_tied_votes += int(((counts == counts.max(1, keepdim=True).values).sum(1) > 1).sum())
    assert n_tied_votes > 20


def test_softmax_weighting_equals_dense_computation():
    train, labels, test = random_problem(seed=1)
    ks = (1, 5, 10, 20, 100)
    preds = knn_predict(train, labels, test, 5, ks=ks, temperature=0.07, block_size=17)
    for k in ks:
        expected = dense_softmax_knn(train, labels, test, 5, k, 0.07)
        assert torch.equal(preds[k], expected), f"k={k}"


@pytest.mark.parametrize("weighting", ["softmax", "uniform"])
def test_block_size_does_not_change_predictions(weighting):
    train, labels, test = random_problem(seed=2)
    ks = (3, 10, 40)
    reference = knn_predict(train, labels, test, 5, ks=ks, weighting=weighting, block_size=10_000)
    for block_size in (1, 7, 64):
        other = knn_predict(train, labels, test, 5, ks=ks, weighting=weighting, block_size=block_size)
        for k in ks:
            assert torch.equal(other[k], reference[k])


def test_k_larger_than_train_set_is_clipped():
    train, labels, test = random_problem(n=6, m=10, seed=3)
    preds = knn_predict(train, labels, test, 5, ks=(6, 200), weighting="uniform")
    assert set(preds) == {6, 200}
    assert torch.equal(preds[200], preds[6])
    sk = KNeighborsClassifier(n_neighbors=6, metric="cosine", algorithm="brute").fit(train, labels)
    assert torch.equal(preds[200], torch.from_numpy(sk.predict(test.numpy())))


def test_accuracy_on_separable_clusters_and_consistency():
    g = torch.Generator().manual_seed(4)
    centres = torch.eye(3, 8) * 10
    train_labels = torch.arange(60) % 3
    test_labels = torch.arange(30) % 3
    train = centres[train_labels] + torch.randn(60, 8, generator=g)
    test = centres[test_labels] + torch.randn(30, 8, generator=g)
    acc = knn_accuracy(train, train_labels, test, 3, ks=(1, 10, 20), test_labels=test_labels)
    assert acc == {1: 1.0, 10: 1.0, 20: 1.0}

    train, labels, test = random_problem(seed=5)
    test_labels = torch.randint(0, 5, (len(test),), generator=g)
    acc = knn_accuracy(train, labels, test, 5, ks=(10,), test_labels=test_labels)
    preds = knn_predict(train, labels, test, 5, ks=(10,))
    assert acc[10] == pytest.approx((preds[10] == test_labels).double().mean().item())
    assert 0.0 <= acc[10] <= 1.0


def test_input_validation():
    train, labels, test = random_problem(n=10, m=4)
    with pytest.raises(ValueError, match="weighting"):
        knn_predict(train, labels, test, 5, weighting="distance")
    with pytest.raises(ValueError, match="num_classes"):
        knn_predict(train, labels, test, 3)
    with pytest.raises(ValueError, match="dimension"):
        knn_predict(train, labels, test[:, :3], 5)
    with pytest.raises(ValueError, match="integer"):
        knn_predict(train, labels, test, torch.zeros(4, dtype=torch.long))
    from_tensor = knn_predict(train, labels, test, torch.tensor(5))  # 0-d integer tensors are fine
    assert torch.equal(from_tensor[10], knn_predict(train, labels, test, 5)[10])
