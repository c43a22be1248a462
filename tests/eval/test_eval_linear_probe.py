"""Linear-probe sweep: matches scikit-learn on digits, selects on validation, heads train independently,
and the closed-form gradient step is torch's SGD."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, recall_score
from sklearn.preprocessing import StandardScaler

from sslkit.data.errors import DataError
from sslkit.eval.features import raw_pixels
from sslkit.eval.linear import (LinearProbeConfig, _schedule, linear_probe, macro_f1, stratified_split,
                                train_linear_heads)
from sslkit.eval.models import compute_features, open_eval_data


@pytest.mark.slow
def test_digits_probe_matches_sklearn_logistic_regression_within_one_point():
    digits = open_eval_data("digits", 8)  # the original 8x8 digits: 64 pixel features
    x_tr, y_tr = compute_features(raw_pixels, digits, "train", cache_dir=None)
    x_te, y_te = compute_features(raw_pixels, digits, "test", cache_dir=None)
    result = linear_probe(x_tr, y_tr, x_te, y_te)  # the default sweep: 13 lrs x 3 weight decays
    scaler = StandardScaler().fit(x_tr.numpy())
    sk = LogisticRegression(max_iter=5000).fit(scaler.transform(x_tr.numpy()), y_tr.numpy())
    sk_acc = sk.score(scaler.transform(x_te.numpy()), y_te.numpy())
    assert abs(result.test_accuracy - sk_acc) <= 0.01, (result.test_accuracy, sk_acc)
    assert len(result.val_accuracy) == 39 and result.n_train + result.n_val == len(y_tr)
    assert result.steps == 1000


def separable(seed=0, n=600, d=20, classes=4):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, classes, generator=g)
    x = torch.randn(n, d, generator=g)
    y = (x @ w).argmax(1)
    return x[:400], y[:400], x[400:], y[400:]


def nuisance_problem(seed=0, n=1200):
    """Classes at (+-1, +-1) hidden under a large shared noise that a second copy of the noise cancels.

    The first gradient step points along the class means (a centroid classifier: noise-dominated, poor);
    only a head that trains long enough learns to subtract the noise copy and separates the classes.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    centres = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    noise = 5.0 * torch.randn(n, 2, generator=g)
    x = torch.cat([centres[y] + noise + 0.1 * torch.randn(n, 2, generator=g), noise], dim=1)
    return x[:800], y[:800], x[800:], y[800:]


def test_selection_is_argmax_validation_and_reports_that_heads_test_metrics():
    x_tr, y_tr, x_te, y_te = nuisance_problem()
    # Ten short epochs: the tiny learning rates cannot converge, the large ones can.
    config = LinearProbeConfig(lrs=(1e-5, 1e-4, 1e-3, 0.05, 0.5), weight_decays=(0.0,), epochs=10, min_steps=0)
    result = linear_probe(x_tr, y_tr, x_te, y_te, config)
    val = torch.tensor(result.val_accuracy)
    best = int(val.argmax())
    assert result.best["head"] == best and result.best["lr"] == config.lrs[best]
    assert result.test_accuracy == result.test_accuracy_all[best]
    assert result.val_accuracy[0] < result.best["val_accuracy"] - 0.2  # the slowest head did not converge
    assert result.best["lr"] >= 0.05
    # The reported F1 is the selected head's: recompute it from that head alone.
    alone = linear_probe(x_tr, y_tr, x_te, y_te, LinearProbeConfig(lrs=(config.lrs[best],), weight_decays=(0.0,),
                                                                   epochs=10, min_steps=0))
    assert alone.test_accuracy == pytest.approx(result.test_accuracy, abs=1e-12)
    assert alone.macro_f1 == pytest.approx(result.macro_f1, abs=1e-12)


def test_heads_trained_jointly_equal_heads_trained_alone():
    x, y, _, _ = separable(seed=1)
    lrs, wds = torch.tensor([0.01, 0.1, 0.3]), torch.tensor([0.0, 1e-3, 1e-2])
    w_all, b_all = train_linear_heads(x, y, 4, lrs, wds, steps=60, batch_size=32, seed=5)
    for h in range(3):
        w_one, b_one = train_linear_heads(x, y, 4, lrs[h : h + 1], wds[h : h + 1], steps=60, batch_size=32, seed=5)
        assert torch.allclose(w_all[:, h], w_one[:, 0], atol=1e-5)
        assert torch.allclose(b_all[h], b_one[0], atol=1e-5)


def test_one_head_equals_torch_sgd_with_momentum_and_weight_decay():
    x, y, _, _ = separable(seed=2)
    steps, batch, lr, wd = 40, 50, 0.2, 0.01
    w, b = train_linear_heads(x, y, 4, torch.tensor([lr]), torch.tensor([wd]), steps=steps, batch_size=batch,
                              momentum=0.9, warmup_fraction=0.25, seed=3)
    layer = torch.nn.Linear(20, 4)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.SGD([{"params": [layer.weight], "weight_decay": wd}, {"params": [layer.bias], "weight_decay": 0.0}],
                          lr=lr, momentum=0.9)
    # Replay the same batch order: seeded reshuffles, the ragged tail dropped.
    g = torch.Generator().manual_seed(3)
    order, cursor = torch.randperm(len(x), generator=g), 0
    for step in range(steps):
        if cursor + batch > len(x):
            order, cursor = torch.randperm(len(x), generator=g), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        for group in opt.param_groups:
            group["lr"] = lr * _schedule(step, steps, round(0.25 * steps))
        loss = F.cross_entropy(layer(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.allclose(w[:, 0].t(), layer.weight.detach(), atol=1e-5)
    assert torch.allclose(b[0], layer.bias.detach(), atol=1e-5)


def test_macro_f1_and_per_class_accuracy_match_sklearn():
    g = torch.Generator().manual_seed(4)
    target = torch.randint(0, 5, (300,), generator=g)
    pred = torch.where(torch.rand(300, generator=g) < 0.6, target, torch.randint(0, 5, (300,), generator=g))
    f1, per_class = macro_f1(pred, target, 5)
    assert f1 == pytest.approx(f1_score(target, pred, average="macro"))
    assert np.allclose(per_class, recall_score(target, pred, average=None))


def test_validation_split_is_stratified_and_disjoint():
    y = torch.arange(200) % 4
    keep, held = stratified_split(y, 0.1, seed=0)
    assert len(set(keep.tolist()) & set(held.tolist())) == 0 and len(keep) + len(held) == 200
    assert torch.equal(torch.bincount(y[held]), torch.full((4,), 5))
    assert torch.equal(stratified_split(y, 0.1, seed=0)[1], held)


def test_missing_labels_are_one_clear_error():
    x_tr, y_tr, x_te, y_te = separable()
    with pytest.raises(DataError, match="The linear probe needs labels"):
        linear_probe(x_tr, torch.full_like(y_tr, -1), x_te, y_te)
