"""The per-layer sweep on a tiny offline causal LM: streaming statistics over padded batches equal the statistics
computed densely from each sentence's unpadded hidden states; features, probes and Spearman match references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslkit.analysis.ntps import collect_ntps_features, ntps_sweep, parse_layers, probe_accuracy, spearman
from sslkit.data.errors import DataError
from sslkit.data.text import TextDataset


def word_dataset(n: int = 60, seed: int = 0) -> TextDataset:
    g = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(15)]
    texts = [" ".join(g.choice(words, size=int(g.integers(1, 10)))) for _ in range(n)]  # includes 1-token texts
    labels = [int("w3" in t.split()) + int("w7" in t.split()) for t in texts]
    return TextDataset(texts, labels, ["none", "one", "both"], "words")


def test_parse_layers():
    assert parse_layers("all", 5) == [0, 1, 2, 3, 4]
    assert parse_layers("0,2-3,-1", 5) == [0, 2, 3, 4]
    with pytest.raises(ValueError, match="Layer 9 does not exist"):
        parse_layers("9", 5)
    with pytest.raises(ValueError, match="not an integer"):
        parse_layers("a", 5)


@pytest.mark.slow  # ~3 s of work, but the first transformers import of a session costs more on a shared CPU
def test_streaming_statistics_equal_dense_per_sentence_computation(tiny_causal_lm):
    data = word_dataset()
    model, tokenizer = tiny_causal_lm(data.texts)
    stats, features, layers = collect_ntps_features(model, tokenizer, data, "all", batch_size=7)
    assert layers == [0, 1, 2]
    n, d, c = len(data), 24, 3
    dense = {p: [torch.zeros(d, d, dtype=torch.float64), torch.zeros(d, c, dtype=torch.float64),
                 torch.zeros(d, d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)] for p in layers}
    for i, text in enumerate(data.texts):
        enc = tokenizer(text, return_tensors="pt")  # one sentence, no padding at all
        with torch.no_grad():
            states = model(**enc, output_hidden_states=True).hidden_states
        for position in layers:
            h = states[position][0].double()
            mean = h.mean(0)
            torch.testing.assert_close(features[i, position].double(), mean, rtol=1e-4, atol=1e-5)
            prefix = h.cumsum(0)[:-1]
            onehot = torch.nn.functional.one_hot(torch.tensor(data.labels[i]), c).double()
            for total, term in zip(dense[position], (torch.outer(mean, mean), torch.outer(mean, onehot),
                                                     prefix.T @ prefix, prefix.T @ h[1:])):
                total += term
    for position in layers:
        got = stats.layer(position)
        for name, total in zip(("sxx", "sxy", "c0", "c1"), dense[position]):
            torch.testing.assert_close(getattr(got, name), total / n, rtol=1e-4, atol=1e-5)


def test_probe_is_sklearn_on_a_held_out_split_and_spearman_is_scipy():
    from scipy.stats import spearmanr
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    g = np.random.default_rng(0)
    x = g.normal(size=(120, 6))
    y = (x[:, 0] + 0.8 * g.normal(size=120) > 0).astype(int)
    held_out, train = probe_accuracy(x, y, test_fraction=0.3, seed=3)
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.3, random_state=3, stratify=y)
    scaler = StandardScaler().fit(xa)
    ref = LogisticRegression(solver="saga", tol=0.01, max_iter=1000, random_state=3).fit(scaler.transform(xa), ya)
    assert held_out == pytest.approx(ref.score(scaler.transform(xb), yb))
    assert train == pytest.approx(ref.score(scaler.transform(xa), ya))
    a, b = g.normal(size=10), g.normal(size=10)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_sweep_rows_and_dataset_checks(tiny_causal_lm):
    data = word_dataset(90)
    model, tokenizer = tiny_causal_lm(data.texts)
    sweep = ntps_sweep((model, tokenizer), data, layers="1,2", k_v=0.5)
    assert [r.layer for r in sweep.rows] == [1, 2] and sweep.num_classes == 3
    assert all(0 <= r.ntps <= 1 and r.k_v == max(1, int(0.5 * r.rank_v)) for r in sweep.rows)
    one_class = TextDataset(data.texts, [0] * len(data), ["only"], "one")
    with pytest.raises(DataError, match="1 class"):
        ntps_sweep((model, tokenizer), one_class)
    with pytest.raises(ValueError, match="larger than the retained rank"):
        ntps_sweep((model, tokenizer), data, layers="1", k_u=1, k_v=99)


def test_bfloat16_model_gives_float32_features_close_to_float32_model(tiny_causal_lm):
    data = word_dataset(40)
    model, tokenizer = tiny_causal_lm(data.texts)
    _, features32, _ = collect_ntps_features(model, tokenizer, data, "-1")
    _, features16, _ = collect_ntps_features(model.to(torch.bfloat16), tokenizer, data, "-1")
    assert features16.dtype == torch.float32
    assert torch.allclose(features16, features32, atol=0.1, rtol=0.05)
    assert not torch.equal(features16, features32)  # it did run in bf16
