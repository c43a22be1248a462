"""Text datasets: the built-in offline sets (gensim test corpora, pydoc), CSV/TSV/JSONL files and the Hugging Face
``datasets`` adapter all give texts + integer labels + class names; bad files give one clear DataError."""

from __future__ import annotations

import json

import pytest

from sslkit.data.errors import DataError
from sslkit.data.text import TextDataset, from_hf_dataset, load_text_dataset


def test_polarity_is_200_balanced_sentences():
    ds = load_text_dataset("polarity")
    assert len(ds) == 200 and ds.class_names == ["neg", "pos"] and ds.class_counts() == [100, 100]
    assert ds.texts[0] == "simplistic , silly and tedious ."
    assert ds.labels[0] == 0 and ds.labels[-1] == 1
    assert all(t and not t.startswith("__label__") for t in ds.texts)


def test_newsgroups_is_200_two_class_posts_without_headers():
    ds = load_text_dataset("newsgroups")
    assert len(ds) == 200 and ds.class_names == ["alt.atheism", "sci.space"] and ds.class_counts() == [100, 100]
    # The headers name the group (= the label); they must be gone. (One post quotes a forwarded header in its body.)
    assert not any(t.startswith(("Path:", "From:", "Newsgroups:")) for t in ds.texts)
    assert sum("Newsgroups:" in t for t in ds.texts) <= 1
    assert sum("NASA" in t for t, y in zip(ds.texts, ds.labels) if y == 1) > sum(
        "NASA" in t for t, y in zip(ds.texts, ds.labels) if y == 0)


def test_pydoc_is_unlabelled_and_needs_labels_for_classes():
    ds = load_text_dataset("pydoc")
    assert len(ds) > 500 and ds.labels is None
    with pytest.raises(DataError, match="has no labels"):
        ds.require_classes(2)


def test_csv_with_string_labels_and_jsonl_with_integer_labels(tmp_path):
    csv_path = tmp_path / "reviews.csv"
    csv_path.write_text('text,label\n"good, really",pos\nbad,neg\nfine,pos\n', encoding="utf-8")
    ds = load_text_dataset(csv_path)
    assert ds.texts == ["good, really", "bad", "fine"] and ds.labels == [1, 0, 1] and ds.class_names == ["neg", "pos"]
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_text("\n".join(json.dumps({"sentence": t, "y": y}) for t, y in [("a", 2), ("b", 0), ("c", 2)]))
    ds = load_text_dataset(jsonl, text_column="sentence", label_column="y")
    assert ds.labels == [1, 0, 1] and ds.class_names == ["0", "2"]


def test_one_class_file_is_refused_with_the_class_named(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("text,label\na,x\nb,x\n")
    with pytest.raises(DataError, match=r"1 class\(es\) \(\['x'\]\)"):
        load_text_dataset(path).require_classes(2)


@pytest.mark.parametrize("content, suffix, message", [
    ("words,label\na,1\n", ".csv", "no 'text' column"),
    ("text,label\na,1\nb,\n", ".csv", "no 'label' value in row 2"),
    ('{"text": "a", "label": 1}\nnot json\n', ".jsonl", "Line 2 of"),
    ("text\n", ".csv", "has no rows"),
    ("a", ".txt", "must end in .csv"),
])
def test_bad_files_raise_one_clear_data_error(tmp_path, content, suffix, message):
    path = tmp_path / f"data{suffix}"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_text_dataset(path)


def test_missing_file_names_the_builtin_sets(tmp_path):
    with pytest.raises(FileNotFoundError, match="polarity, newsgroups, pydoc"):
        load_text_dataset(str(tmp_path / "nope.csv"))


class FakeClassLabel:
    names = ["negative", "neutral", "positive"]


class FakeHFDataset:
    """The slice of ``datasets.Dataset`` the adapter uses: column_names, features, column indexing."""

    column_names = ["text", "label"]
    features = {"text": None, "label": FakeClassLabel()}

    def __getitem__(self, column):
        return {"text": ["x", "y", "z"], "label": [2, 0, 2]}[column]


def test_hf_dataset_keeps_class_label_ids_and_names():
    ds = from_hf_dataset(FakeHFDataset(), name="fake")
    assert ds.labels == [2, 0, 2] and ds.class_names == ["negative", "neutral", "positive"]
    assert ds.class_counts() == [1, 0, 2]
    assert isinstance(load_text_dataset(FakeHFDataset()), TextDataset)
    with pytest.raises(DataError, match="no 'sentence' column"):
        from_hf_dataset(FakeHFDataset(), text_column="sentence")
