"""The grouped top-k used by the blockwise kNN equals torch.topk, and kNN through it still equals scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from sslkit.functional.knn import knn_predict, topk_rows


@pytest.mark.parametrize("rows,n,k", [(7, 50_000, 200), (5, 3401, 200), (3, 1000, 10), (4, 100, 10), (6, 16 * 13 + 5, 13),
                                      (2, 64, 64)])
def test_topk_rows_equals_torch_topk(rows, n, k):
    sims = torch.randn(rows, n, generator=torch.Generator().manual_seed(n))
    values, idx = topk_rows(sims, k)
    ref_values, ref_idx = sims.topk(k, dim=1)
    assert torch.equal(values, ref_values)
    assert torch.equal(sims.gather(1, idx), values)
    assert all(set(a.tolist()) == set(b.tolist()) for a, b in zip(idx, ref_idx))


def test_topk_rows_on_a_view_into_a_wider_buffer_with_ties():
    buffer = torch.randn(4, 9000, generator=torch.Generator().manual_seed(1))
    sims = buffer[:3]
    sims[:, 100:400] = 5.0  # 300 exact ties above everything else: any 200 of them are a correct answer
    values, idx = topk_rows(sims, 200)
    assert torch.equal(values, torch.full((3, 200), 5.0))
    assert ((idx >= 100) & (idx < 400)).all() and all(len(set(r.tolist())) == 200 for r in idx)


def test_uniform_knn_through_grouped_selection_equals_sklearn():
    g = torch.Generator().manual_seed(2)
    train = torch.randn(3400, 16, generator=g)  # n >= 16 k: the grouped path is taken for k = 200
    labels = torch.randint(0, 7, (3400,), generator=g)
    test = torch.randn(150, 16, generator=g)
    preds = knn_predict(train, labels, test, 7, ks=(20, 200), weighting="uniform", block_size=64)
    for k in (20, 200):
        sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(train.numpy(), labels.numpy())
        assert np.array_equal(preds[k].numpy(), sk.predict(test.numpy())), k
