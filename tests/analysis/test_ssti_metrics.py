"""SSTI reliance metrics and the H(y|t) data checker (sslkit.analysis.ssti)."""

import math
import re

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from sslkit.analysis.ssti import (accuracy, balanced_accuracy, flag_spurious_tokens, flip_rate,
                                  inject_other_classes, load_text_data, per_class_accuracy, plot_sweep,
                                  prediction_counts, reliance_metrics, split_text_data, token_label_entropy)
from sslkit.data.ssti_inject import Injector, spurious_transform

DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def test_accuracies_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    assert balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))
    assert accuracy(y, p) == pytest.approx((y == p).mean())
    assert per_class_accuracy(y, p, 4)[:3] == pytest.approx([(p[y == c] == c).mean() for c in range(3)])
    assert math.isnan(per_class_accuracy(y, p, 4)[3])
    assert prediction_counts(p, 4) == np.bincount(p, minlength=4).tolist()


def _sentiment_or_date_model(texts):
    """Predicts 1 for a date or 'good', else 0: a model that fully relies on the token."""
    return np.array([int(bool(DATE.search(t)) or "good" in t) for t in texts])


def _sentiment_only_model(texts):
    return np.array([int("good" in t) for t in texts])


TEXTS = [f"this is {'good' if i % 2 else 'bad'} number {i}" for i in range(40)]
LABELS = [i % 2 for i in range(40)]


def test_flip_rate_is_one_for_a_token_reliant_model_and_base_for_an_indifferent_one():
    injector = Injector("date", "random")
    assert flip_rate(_sentiment_or_date_model, TEXTS, LABELS, injector, 1) == (1.0, 0.0)
    assert flip_rate(_sentiment_only_model, TEXTS, LABELS, injector, 1) == (0.0, 0.0)
    injected, mask = inject_other_classes(TEXTS, LABELS, injector, 1, seed=0)
    assert mask == [y == 0 for y in LABELS]
    assert all(bool(DATE.search(t)) == m for t, m in zip(injected, mask))


def test_reliance_metrics_for_a_fully_reliant_model():
    m = reliance_metrics(_sentiment_or_date_model, TEXTS, LABELS, Injector("date"), 1, 2)
    assert m.clean_accuracy == 1.0 and m.clean_balanced_accuracy == 1.0
    assert m.spurious_accuracy == 0.5 and m.accuracy_gap == 0.5  # every class-0 sample flips
    assert m.flip_rate == 1.0 and m.base_rate == 0.0
    assert m.counts_clean == [20, 20] and m.counts_all_injected == [0, 40]
    m2 = reliance_metrics(_sentiment_only_model, TEXTS, LABELS, Injector("date"), 1, 2)
    assert m2.accuracy_gap == 0.0 and m2.flip_rate == 0.0 and m2.counts_all_injected == [20, 20]


def test_token_entropy_matches_a_direct_computation():
    texts = ["x", "x x", "x b", "y b", "y b", "y", "z"]  # a repeated token counts once per sample
    labels = [0, 0, 1, 1, 1, 0, 1]
    rows = {r.token: r for r in token_label_entropy(texts, labels, min_count=3)}
    assert set(rows) == {"x", "y", "b"}
    assert rows["y"].majority_label == 1 and rows["x"].count == 3
    h = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert rows["x"].entropy_bits == pytest.approx(h) and rows["x"].majority_label == 0
    assert rows["b"].count == 3 and rows["b"].majority_fraction == pytest.approx(1.0)
    assert rows["b"].entropy_bits == pytest.approx(0.0)
    assert [r.token for r in flag_spurious_tokens(rows.values())] == ["b"]


def test_checker_finds_injected_dates_in_polarity_and_nothing_in_the_clean_set():
    pytest.importorskip("gensim")
    data = load_text_data("polarity")
    assert len(data.texts) == 200 and sorted(set(data.labels)) == [0, 1]
    clean = flag_spurious_tokens(token_label_entropy(data.texts, data.labels, min_count=50))
    assert clean == []
    injected = spurious_transform(data.texts, data.labels, Injector("date", "random"), 1, 1.0, seed=0)
    rows = token_label_entropy(injected.texts, injected.labels, min_count=50)
    flagged = flag_spurious_tokens(rows)
    assert [r.token for r in flagged] == ["0000-00-00"]
    assert flagged[0].count == 100 and flagged[0].majority_label == 1
    # half the class injected: still a perfect cue, half as frequent
    half = spurious_transform(data.texts, data.labels, Injector("date", "random"), 1, 0.5, seed=0)
    assert [(r.token, r.count) for r in flag_spurious_tokens(token_label_entropy(half.texts, half.labels, 50))] == [
        ("0000-00-00", 50)]


def test_split_is_stratified_and_disjoint():
    pytest.importorskip("gensim")
    data = load_text_data("polarity")
    train, test = split_text_data(data, 0.3, seed=0)
    assert len(test.texts) == 60 and test.labels.count(1) == 30
    assert not set(train.texts) & set(test.texts)


def test_plot_sweep_writes_a_png(tmp_path):
    rows = [{"rank": r, "rho_samp": rho, "flip_rate": rho * r / 16, "accuracy_gap": rho / 4}
            for r in (1, 4, 16) for rho in (0, 0.5, 1)]
    path = plot_sweep(rows, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one_rank = plot_sweep([r for r in rows if r["rank"] == 4], tmp_path / "q.png")
    assert one_rank.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob(".*"))
