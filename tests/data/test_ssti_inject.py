"""SSTI injection operators and the dataset transform (spec specs/ssti.md, steps 1-2)."""

import csv
import datetime as dt
import json
import random
import re

import pytest

from sslkit.data.errors import DataError
from sslkit.data.ssti_inject import (COUNTRIES, Injector, inject, inject_hf_dataset, inject_records,
                                     inject_text_file, random_date, spurious_transform)

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _words(n):
    return " ".join(f"w{i}" for i in range(n))


@pytest.mark.parametrize("n,rho", [(1, 0.0), (7, 0.0), (10, 0.1), (25, 0.1), (9, 0.1), (40, 0.25), (3, 1.0)])
def test_number_of_inserted_items_is_max_one_floor_n_rho(n, rho):
    out = inject(_words(n), "custom", rho, "random", rng=0, token="!!").split()
    assert out.count("!!") == max(1, int(n * rho))
    assert len(out) == n + max(1, int(n * rho))


def test_beginning_and_end_placement():
    text = _words(30)
    begin = inject(text, "date", 0.1, "beginning", rng=1).split()
    end = inject(text, "date", 0.1, "end", rng=1).split()
    assert all(DATE.match(w) for w in begin[:3]) and begin[3:] == text.split()
    assert all(DATE.match(w) for w in end[-3:]) and end[:-3] == text.split()


def test_random_location_keeps_word_order_and_spreads_positions():
    text = _words(20)
    firsts = set()
    rng = random.Random(0)
    for _ in range(200):
        out = Injector("date", "random", 0.0)(text, rng).split()
        pos = [i for i, w in enumerate(out) if DATE.match(w)]
        assert len(pos) == 1
        assert [w for w in out if not DATE.match(w)] == text.split()
        firsts.add(pos[0])
    assert len(firsts) >= 15  # 21 possible slots 0..n, uniform: nearly all are hit in 200 draws


def test_dates_are_valid_days_in_1100_2600_and_fresh():
    rng = random.Random(3)
    dates = [random_date(rng) for _ in range(4000)]
    parsed = [dt.date.fromisoformat(d) for d in dates]
    assert min(p.year for p in parsed) >= 1100 and max(p.year for p in parsed) <= 2600
    mean_year = sum(p.year for p in parsed) / len(parsed)
    assert abs(mean_year - 1850) < 15  # uniform over 1501 years: sd of the mean ~ 6.8
    # ~548k days drawn with replacement: about n^2 / (2 * 548k) = 15 repeats are expected, not hundreds
    assert len(set(dates)) > 3950


def test_country_and_html_sources():
    out = inject(_words(10), "country", 0.0, "end", rng=2).split()
    assert out[-1] in COUNTRIES
    rng = random.Random(5)
    for location in ("beginning", "end", "random"):
        for _ in range(50):
            words = Injector("html", location, 0.2)(_words(10), rng).split()
            opens = [i for i, w in enumerate(words) if re.fullmatch(r"<[a-z]+>", w)]
            closes = [i for i, w in enumerate(words) if re.fullmatch(r"</[a-z]+>", w)]
            assert len(opens) == len(closes) == 2
            if location == "beginning":
                assert opens[-1] == 0 or words[0].startswith("<")
            if location == "end":
                assert words[-1].startswith("</")
            assert min(closes) > min(opens)


def test_bad_arguments_raise_data_errors():
    with pytest.raises(DataError, match="location"):
        Injector("date", "middle")
    with pytest.raises(DataError, match="source"):
        Injector("emoji")
    with pytest.raises(DataError, match="rho_tok"):
        Injector("date", "end", 1.5)
    with pytest.raises(DataError, match="rho_samp"):
        spurious_transform(["a"], [0], Injector(), 0, 2.0)


def _toy(n_per_class=(13, 21, 8)):
    texts, labels = [], []
    for c, n in enumerate(n_per_class):
        for i in range(n):
            texts.append(f"class {c} sample {i} some words here")
            labels.append(c)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    return [texts[i] for i in order], [labels[i] for i in order]


@pytest.mark.parametrize("rho", [0.0, 0.25, 0.5, 0.7, 1.0])
def test_transform_changes_exactly_round_rho_n_of_target_class_only(rho):
    texts, labels = _toy()
    res = spurious_transform(texts, labels, Injector("date", "random"), target_class=1, rho_samp=rho, seed=7)
    changed = [i for i, (a, b) in enumerate(zip(texts, res.texts)) if a != b]
    assert len(changed) == round(rho * 21)
    assert all(labels[i] == 1 for i in changed)
    assert res.injected == [i in changed for i in range(len(texts))]
    assert res.indices == changed and res.labels == labels
    for i in changed:  # original words in order, plus exactly one date
        assert [w for w in res.texts[i].split() if not DATE.match(w)] == texts[i].split()


def test_transform_is_deterministic_under_seed():
    texts, labels = _toy()
    a = spurious_transform(texts, labels, Injector("date"), 1, 0.5, seed=11)
    b = spurious_transform(texts, labels, Injector("date"), 1, 0.5, seed=11)
    c = spurious_transform(texts, labels, Injector("date"), 1, 0.5, seed=12)
    assert a.texts == b.texts and a.indices == b.indices
    assert a.texts != c.texts


def test_records_csv_and_jsonl_files(tmp_path):
    texts, labels = _toy()
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": y, "id": i}) + "\n"
                             for i, (t, y) in enumerate(zip(texts, labels))))
    out = inject_text_file(jsonl, tmp_path / "o.jsonl", Injector("custom", "end", token="!!"), 2, 0.5, seed=0)
    back = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert back == out and [r["id"] for r in back] == list(range(len(texts)))
    assert sum(r["ssti_injected"] for r in back) == round(0.5 * 8)
    assert all(r["text"].endswith(" !!") == r["ssti_injected"] for r in back)

    path = tmp_path / "d.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels))
    inject_text_file(path, tmp_path / "o.csv", Injector("custom", "beginning", token="@@"), 0, 1.0, seed=0)
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert sum(r["text"].startswith("@@ ") for r in rows) == 13
    assert all(r["text"].startswith("@@ ") == (r["label"] == "0") for r in rows)
    with pytest.raises(DataError, match="'sentence'"):
        inject_records([{"sentence": "x", "label": 0}], Injector(), 0, 1.0)


class _FakeHFDataset:
    """The part of datasets.Dataset that inject_hf_dataset uses."""

    def __init__(self, rows):
        self.rows = rows
        self.column_names = list(rows[0])

    def __getitem__(self, column):
        return [r[column] for r in self.rows]

    def map(self, fn, with_indices=False):
        return _FakeHFDataset([{**r, **fn(r, i)} for i, r in enumerate(self.rows)])


def test_hf_dataset_gets_flag_column_and_matches_list_transform():
    texts, labels = _toy()
    ds = _FakeHFDataset([{"text": t, "label": y} for t, y in zip(texts, labels)])
    out = inject_hf_dataset(ds, Injector("date"), 1, 0.5, seed=4)
    ref = spurious_transform(texts, labels, Injector("date"), 1, 0.5, seed=4)
    assert out["text"] == ref.texts and out["ssti_injected"] == ref.injected
    with pytest.raises(DataError, match="no column 'sentence'"):
        inject_hf_dataset(ds, Injector(), 1, 0.5, text_column="sentence")


def test_real_hf_datasets_if_installed():
    datasets = pytest.importorskip("datasets")
    texts, labels = _toy()
    ds = datasets.Dataset.from_dict({"text": texts, "label": labels})
    out = inject_hf_dataset(ds, Injector("date"), 1, 1.0, seed=0)
    assert sum(out["ssti_injected"]) == 21
