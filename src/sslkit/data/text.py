"""Labelled text datasets: built-in offline sets, CSV/JSONL files and Hugging Face ``datasets`` objects.

Every loader returns a :class:`TextDataset`: a list of texts, integer labels in ``0..C-1`` (or ``None`` for an
unlabelled corpus) and the class names, so analyses (NTPS, SSTI, probes) never see file formats.

Built-in sets (no network; they ship inside packages):

- ``polarity``: 200 movie-review sentences (100 negative, 100 positive) from the Pang & Lee sentence-polarity
  corpus, as shipped in gensim's test data (``gensim/test/test_data/pang_lee_polarity.cor``).
- ``newsgroups``: 200 posts from two 20-Newsgroups groups (``alt.atheism`` vs ``sci.space``, 100 each), as shipped
  in gensim's test data (``mini_newsgroup``). The mail headers are removed (they name the group, which would make
  the task trivial), as scikit-learn's ``remove=("headers",)`` does.
- ``pydoc``: unlabelled English paragraphs of the Python documentation topics (standard library ``pydoc_data``).

gensim is pinned (``gensim==4.4.0``) because these files are test data, not a public API.

Example::

    from sslkit.data.text import load_text_dataset
    ds = load_text_dataset("polarity")          # or "newsgroups", "reviews.csv", "reviews.jsonl", a datasets.Dataset
    ds.texts[0], ds.labels[0], ds.class_names   # 'simplistic , silly and tedious .', 0, ['neg', 'pos']
    ds.require_classes(2)                       # DataError if the labels hold fewer than two classes
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sslkit.data.errors import DataError

__all__ = ["BUILTIN_TEXT_SETS", "GENSIM_PIN", "TextDataset", "load_text_dataset", "polarity", "newsgroups",
           "pydoc_texts", "read_text_table", "from_hf_dataset", "from_records"]

GENSIM_PIN = "gensim==4.4.0"
BUILTIN_TEXT_SETS = ("polarity", "newsgroups", "pydoc")


@dataclass
class TextDataset:
    """Texts with integer labels.

    Attributes:
        texts: N strings.
        labels: N ints in ``0..len(class_names)-1``, or ``None`` for unlabelled text.
        class_names: the name of each label id (sorted label values when the source had strings).
        name: where it came from (a built-in name or a file path), for messages and reports.
    """

    texts: list[str]
    labels: list[int] | None
    class_names: list[str] = field(default_factory=list)
    name: str = "text"

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise DataError(f"Text dataset {self.name!r} has {len(self.texts)} texts but {len(self.labels)} labels.")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> list[int]:
        counts = [0] * self.num_classes
        for label in self.labels or []:
            counts[label] += 1
        return counts

    def require_classes(self, minimum: int = 2) -> "TextDataset":
        """Raise DataError unless at least ``minimum`` classes occur; returns self."""
        if self.labels is None:
            raise DataError(f"Text dataset {self.name!r} has no labels; this needs a labelled set "
                            f"(e.g. 'polarity', 'newsgroups' or a CSV/JSONL with a label column).")
        present = sum(1 for c in self.class_counts() if c > 0)
        if present < minimum:
            raise DataError(f"Text dataset {self.name!r} has {present} class(es) ({self.class_names}); "
                            f"this needs at least {minimum} classes with examples.")
        return self

    def subset(self, indices: Sequence[int]) -> "TextDataset":
        labels = None if self.labels is None else [self.labels[i] for i in indices]
        return TextDataset([self.texts[i] for i in indices], labels, list(self.class_names), self.name)


# ------------------------------------------------------------------------------------ built-in sets

def _gensim_test_data(filename: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gensim")
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "test" / "test_data" / filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"The built-in text sets need gensim's bundled test data ({filename}): "
                            f"pip install {GENSIM_PIN}.")


def polarity() -> TextDataset:
    """200 movie-review sentences, labels ``neg``=0 / ``pos``=1 (gensim ``pang_lee_polarity.cor``)."""
    path = _gensim_test_data("pang_lee_polarity.cor")
    texts, names = [], []
    # The Pang & Lee sentences are Windows-1252 text (0x97 is an em dash), not UTF-8.
    for line in path.read_text(encoding="cp1252", errors="replace").splitlines():
        tag, _, text = line.strip().partition(" ")
        if tag.startswith("__label__") and text.strip():
            names.append(tag[len("__label__"):])
            texts.append(text.strip())
    return from_records(texts, names, name="polarity")


class _Bunch(dict):
    def __setstate__(self, state: dict) -> None:
        self.update(state)


# The only unpickler in sslkit, allow-listed by name in tests/properties/test_no_unpickling.py: it reads a file
# of the installed gensim package (never a user's), and find_class below resolves seven constructors only.
class _NewsgroupUnpickler(pickle.Unpickler):
    """Reads the one pickle shipped in gensim's test data with an allow-list of constructors.

    The file is a protocol-0 pickle of a scikit-learn ``Bunch`` from 2013 (class paths that no longer exist).
    Only the constructors it needs are resolved; anything else is refused, so nothing arbitrary runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        import copyreg

        import numpy as np

        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:  # numpy < 2
            from numpy.core.multiarray import _reconstruct
        allowed = {("copy_reg", "_reconstructor"): copyreg._reconstructor,
                   ("sklearn.datasets.base", "Bunch"): _Bunch, ("__builtin__", "dict"): dict,
                   ("__builtin__", "object"): object, ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                   ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in gensim's mini_newsgroup")
        return allowed[(module, name)]


def _strip_mail_headers(post: str) -> str:
    # The header block ends at the first blank line; it names the newsgroup, i.e. the label.
    _, sep, body = post.partition("\n\n")
    return " ".join((body if sep else post).split())


def newsgroups() -> TextDataset:
    """200 posts, ``alt.atheism``=0 / ``sci.space``=1, mail headers removed (gensim ``mini_newsgroup``)."""
    path = _gensim_test_data("mini_newsgroup")
    bunch = _NewsgroupUnpickler(io.BytesIO(zlib.decompress(path.read_bytes())), encoding="latin1").load()
    names = [str(n) for n in bunch["target_names"]]
    texts = [_strip_mail_headers(str(p)) for p in bunch["data"]]
    labels = [int(t) for t in bunch["target"]]
    return TextDataset(texts, labels, names, "newsgroups")


def pydoc_texts(min_chars: int = 40) -> TextDataset:
    """Unlabelled paragraphs of the standard library's ``pydoc_data.topics`` (about 2,000)."""
    from pydoc_data.topics import topics

    raw = "\n\n".join(topics[key] for key in sorted(topics))
    paragraphs = [" ".join(p.split()) for p in raw.replace("\r\n", "\n").split("\n\n")]
    return TextDataset([p for p in paragraphs if len(p) >= min_chars], None, [], "pydoc")


# ------------------------------------------------------------------------------------ generic sources

def from_records(texts: Sequence[str], labels: Sequence[Any] | None, *, name: str = "text",
                 class_names: Sequence[str] | None = None) -> TextDataset:
    """Texts plus raw labels (strings or ints) → :class:`TextDataset`.

    String labels become ids in sorted order of the names. Integer labels are kept as ids when
    ``class_names`` is given (they must lie in range); otherwise the sorted distinct values are mapped to
    ``0..C-1`` and named by their value.
    """
    texts = [str(t) for t in texts]
    if labels is None:
        return TextDataset(texts, None, list(class_names or []), name)
    labels = list(labels)
    if class_names is not None:
        names = [str(n) for n in class_names]
        ids = []
        for value in labels:
            if isinstance(value, str):
                if value not in names:
                    raise DataError(f"Label {value!r} in {name!r} is not one of the class names {names}.")
                ids.append(names.index(value))
            elif not 0 <= int(value) < len(names):
                raise DataError(f"Label {value!r} in {name!r} is outside 0..{len(names) - 1}.")
            else:
                ids.append(int(value))
        return TextDataset(texts, ids, names, name)
    if all(isinstance(v, (int,)) and not isinstance(v, bool) for v in labels):
        distinct = sorted(set(labels))
        index = {v: i for i, v in enumerate(distinct)}
        return TextDataset(texts, [index[v] for v in labels], [str(v) for v in distinct], name)
    as_text = [str(v).strip() for v in labels]
    distinct = sorted(set(as_text))
    index = {v: i for i, v in enumerate(distinct)}
    return TextDataset(texts, [index[v] for v in as_text], distinct, name)


def _label_value(raw: Any) -> Any:
    # CSV cells are strings: "1" and "1.0" should be the integer class 1, "pos" stays a name.
    if isinstance(raw, str):
        stripped = raw.strip()
        try:
            return int(stripped)
        except ValueError:
            try:
                value = float(stripped)
                return int(value) if value.is_integer() else stripped
            except ValueError:
                return stripped
    return raw


def read_text_table(path: str | Path, *, text_column: str = "text", label_column: str | None = "label") -> TextDataset:
    """A ``.csv``/``.tsv`` (header row) or ``.jsonl`` file (one object per line) of texts and labels.

    ``label_column=None`` (or a file without that column) gives an unlabelled set.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Text data file {path} does not exist.")
    suffix = path.suffix.lower()
    rows: list[dict] = []
    try:
        if suffix in (".csv", ".tsv"):
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
        elif suffix in (".jsonl", ".json", ".ndjson"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        raise DataError(f"Line {number} of {path} is not a JSON object; a .jsonl file needs one "
                                        f"object per line.") from None
                    if not isinstance(record, dict):
                        raise DataError(f"Line {number} of {path} is not a JSON object.")
                    rows.append(record)
        else:
            raise DataError(f"Text data file {path} must end in .csv, .tsv or .jsonl.")
    except UnicodeDecodeError:
        raise DataError(f"Text data file {path} is not UTF-8 text.") from None
    if not rows:
        raise DataError(f"Text data file {path} has no rows.")
    if text_column not in rows[0]:
        raise DataError(f"Text data file {path} has no {text_column!r} column (columns: {sorted(rows[0])}).")
    texts = [str(r.get(text_column) or "") for r in rows]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise DataError(f"Text data file {path} has an empty {text_column!r} in row {empty[0] + 1}.")
    if label_column is None or label_column not in rows[0]:
        return TextDataset(texts, None, [], str(path))
    raw = [r.get(label_column) for r in rows]
    missing = [i for i, v in enumerate(raw) if v is None or (isinstance(v, str) and not v.strip())]
    if missing:
        raise DataError(f"Text data file {path} has no {label_column!r} value in row {missing[0] + 1}.")
    return from_records(texts, [_label_value(v) for v in raw], name=str(path))


def from_hf_dataset(dataset: Any, *, text_column: str = "text", label_column: str | None = "label",
                    name: str | None = None) -> TextDataset:
    """A Hugging Face ``datasets.Dataset`` (or anything with ``column_names`` and column indexing).

    A ``ClassLabel`` feature keeps its ids and names; other label columns are mapped as in :func:`from_records`.
    """
    columns = list(getattr(dataset, "column_names", []) or [])
    label = name or getattr(getattr(dataset, "info", None), "dataset_name", None) or "hf-dataset"
    if text_column not in columns:
        raise DataError(f"Dataset {label!r} has no {text_column!r} column (columns: {columns}).")
    texts = list(dataset[text_column])
    if label_column is None or label_column not in columns:
        return TextDataset([str(t) for t in texts], None, [], label)
    feature = getattr(dataset, "features", {}).get(label_column) if hasattr(dataset, "features") else None
    names = getattr(feature, "names", None)
    return from_records(texts, list(dataset[label_column]), name=label, class_names=names)


def load_text_dataset(source: Any, *, text_column: str = "text", label_column: str | None = "label") -> TextDataset:
    """``"polarity"``, ``"newsgroups"``, ``"pydoc"``, a ``.csv``/``.tsv``/``.jsonl`` path or a ``datasets`` object."""
    if isinstance(source, TextDataset):
        return source
    if not isinstance(source, (str, Path)):
        return from_hf_dataset(source, text_column=text_column, label_column=label_column)
    if str(source) == "polarity":
        return polarity()
    if str(source) == "newsgroups":
        return newsgroups()
    if str(source) == "pydoc":
        return pydoc_texts()
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"Text data {str(source)!r} is neither a built-in set ({', '.join(BUILTIN_TEXT_SETS)}) "
                                f"nor an existing .csv/.jsonl file.")
    return read_text_table(path, text_column=text_column, label_column=label_column)
