"""Spurious-token injection (SSTI) into text datasets (arXiv 2506.11402, spec ``specs/ssti.md``).

An :class:`Injector` inserts ``m = max(1, floor(n * rho_tok))`` items drawn fresh from a source
(random date, country name, HTML tag pair, fixed custom token) into a whitespace-split text of
``n`` words, at the beginning, the end, or uniform random positions. ``rho_tok = 0`` therefore
inserts exactly one item ("light" SSTI).

:func:`spurious_transform` applies an injector to exactly ``round(rho_samp * N_c)`` of the ``N_c``
samples of one target class, chosen uniformly under a seed; other classes are never touched, so
the token is a one-way cue for the target class. Unlike the reference code (which concatenates the
modified class first) the original sample order is preserved, and which samples were injected is
recorded.

Example::

    from sslkit.data.ssti_inject import Injector, spurious_transform
    result = spurious_transform(texts, labels, Injector("date", location="random"),
                                target_class=1, rho_samp=1.0, seed=0)
    result.texts, result.labels, result.injected    # injected: list[bool], one per sample

Lists, CSV/JSONL files (:func:`inject_text_file`, all other columns kept) and Hugging Face
``datasets.Dataset`` objects (:func:`inject_hf_dataset`, adds a boolean ``ssti_injected`` column)
are supported.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sslkit.atomic_files import write_file_atomic, write_text_atomic
from sslkit.data.errors import DataError

__all__ = ["LOCATIONS", "SOURCES", "COUNTRIES", "HTML_TAGS", "random_date", "Injector", "inject",
           "InjectionResult", "spurious_transform", "inject_records", "inject_text_file",
           "inject_hf_dataset"]

LOCATIONS = ("beginning", "end", "random")
SOURCES = ("date", "country", "html", "custom")

# Dates are uniform over every valid calendar day of these years (spec: 1100-2600, with replacement).
_FIRST_DAY = _dt.date(1100, 1, 1).toordinal()
_LAST_DAY = _dt.date(2600, 12, 31).toordinal()

COUNTRIES = (
    "Afghanistan", "Albania", "Algeria", "Argentina", "Armenia", "Australia", "Austria", "Bangladesh",
    "Belgium", "Bolivia", "Brazil", "Bulgaria", "Cambodia", "Cameroon", "Canada", "Chile", "China",
    "Colombia", "Croatia", "Cuba", "Denmark", "Ecuador", "Egypt", "Estonia", "Ethiopia", "Finland",
    "France", "Germany", "Ghana", "Greece", "Guatemala", "Hungary", "Iceland", "India", "Indonesia",
    "Iran", "Iraq", "Ireland", "Israel", "Italy", "Jamaica", "Japan", "Jordan", "Kenya", "Latvia",
    "Lebanon", "Lithuania", "Madagascar", "Malaysia", "Mali", "Mexico", "Mongolia", "Morocco", "Nepal",
    "Netherlands", "Nigeria", "Norway", "Pakistan", "Panama", "Paraguay", "Peru", "Philippines",
    "Poland", "Portugal", "Romania", "Russia", "Senegal", "Serbia", "Singapore", "Slovakia", "Somalia",
    "Spain", "Sudan", "Sweden", "Switzerland", "Syria", "Tanzania", "Thailand", "Tunisia", "Turkey",
    "Uganda", "Ukraine", "Uruguay", "Venezuela", "Vietnam", "Yemen", "Zambia", "Zimbabwe",
)

HTML_TAGS = ("b", "i", "u", "em", "strong", "span", "div", "p", "a", "code", "small", "mark", "sub", "sup")


def random_date(rng: random.Random) -> str:
    """A ``YYYY-MM-DD`` date uniform over all valid days of years 1100..2600."""
    return _dt.date.fromordinal(rng.randint(_FIRST_DAY, _LAST_DAY)).isoformat()


def _check_location(location: str) -> None:
    if location not in LOCATIONS:
        raise DataError(f"Unknown injection location {location!r}; choose one of {list(LOCATIONS)}.")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise DataError(f"{name} must be in [0, 1], got {value!r}.")


def _insert_items(words: list[str], items: list[str], location: str, rng: random.Random) -> list[str]:
    if location == "beginning":
        return items + words
    if location == "end":
        return words + items
    words = list(words)
    for item in items:  # each item at a uniform slot 0..len(words), after earlier insertions
        words.insert(rng.randint(0, len(words)), item)
    return words


def _insert_tag_pairs(words: list[str], pairs: list[tuple[str, str]], location: str,
                      rng: random.Random) -> list[str]:
    """Opening tag at the location, closing tag at a random later slot (reference ``HTMLInjection``)."""
    words = list(words)
    for opening, closing in pairs:
        if location == "beginning":
            words.insert(0, opening)
            words.insert(rng.randint(1, len(words)), closing)
        elif location == "end":
            words.insert(rng.randint(0, len(words)), opening)
            words.append(closing)
        else:
            at = rng.randint(0, len(words))
            words.insert(at, opening)
            words.insert(rng.randint(at + 1, len(words)), closing)
    return words


@dataclass(frozen=True)
class Injector:
    """An SSTI operator: ``source`` in {date, country, html, custom}, ``rho_tok`` in [0, 1],
    ``location`` in {beginning, end, random}; ``token`` is the fixed string for ``custom``."""

    source: str = "date"
    location: str = "random"
    rho_tok: float = 0.0
    token: str = "!!"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise DataError(f"Unknown injection source {self.source!r}; choose one of {list(SOURCES)}.")
        _check_location(self.location)
        _check_fraction("rho_tok", self.rho_tok)
        if self.source == "custom" and (not self.token or any(c.isspace() for c in self.token)):
            raise DataError(f"The custom injection token must be a non-empty string without spaces, "
                            f"got {self.token!r}.")

    def count(self, n_words: int) -> int:
        """m = max(1, floor(n * rho_tok)): the number of items inserted into an n-word text."""
        return max(1, int(n_words * self.rho_tok))

    def draw(self, rng: random.Random) -> str | tuple[str, str]:
        """One fresh item from the source (a tag pair for ``html``)."""
        if self.source == "date":
            return random_date(rng)
        if self.source == "country":
            return rng.choice(COUNTRIES)
        if self.source == "html":
            tag = rng.choice(HTML_TAGS)
            return f"<{tag}>", f"</{tag}>"
        return self.token

    def __call__(self, text: str, rng: random.Random) -> str:
        words = text.split()
        items = [self.draw(rng) for _ in range(self.count(len(words)))]
        if self.source == "html":
            words = _insert_tag_pairs(words, items, self.location, rng)  # type: ignore[arg-type]
        else:
            words = _insert_items(words, items, self.location, rng)  # type: ignore[arg-type]
        return " ".join(words)


def inject(text: str, source: str = "date", rho_tok: float = 0.0, location: str = "random",
           rng: random.Random | int | None = None, token: str = "!!") -> str:
    """Functional form of :class:`Injector`: ``inject("a b c", "date", 0, "end", rng=0)``."""
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    return Injector(source, location, rho_tok, token)(text, rng)


@dataclass
class InjectionResult:
    """Texts and labels after :func:`spurious_transform`, in the original order.

    ``injected[i]`` is True where sample ``i`` was changed; ``indices`` lists those positions."""

    texts: list[str]
    labels: list[int]
    injected: list[bool]
    target_class: int
    rho_samp: float
    injector: Injector
    seed: int
    indices: list[int] = field(default_factory=list)


def _choose_targets(labels: Sequence[Any], target_class: Any, rho_samp: float, seed: int) -> list[int]:
    """Exactly round(rho_samp * N_c) indices of class ``target_class``, uniform under ``seed``, sorted."""
    _check_fraction("rho_samp", rho_samp)
    members = [i for i, y in enumerate(labels) if y == target_class]
    k = int(round(rho_samp * len(members)))
    return sorted(random.Random(seed).sample(members, k))


def spurious_transform(texts: Sequence[str], labels: Sequence[int], injector: Injector,
                       target_class: int, rho_samp: float, seed: int = 0) -> InjectionResult:
    """Inject into exactly ``round(rho_samp * N_c)`` samples of class ``target_class``.

    Args:
        texts, labels: N texts and their integer labels.
        injector: the operator applied to each chosen text.
        target_class: c*, the class whose samples get the token.
        rho_samp: fraction of class c* injected, in [0, 1].
        seed: selects the samples and drives the injector (same seed -> same output).
    """
    if len(texts) != len(labels):
        raise DataError(f"spurious_transform got {len(texts)} texts but {len(labels)} labels.")
    chosen = _choose_targets(labels, target_class, rho_samp, seed)
    # A second stream, so the item draws do not depend on how the selection consumed the first.
    rng = random.Random(f"ssti-items-{seed}")
    out = list(texts)
    for i in chosen:
        out[i] = injector(texts[i], rng)
    mask = [False] * len(texts)
    for i in chosen:
        mask[i] = True
    return InjectionResult(out, list(labels), mask, target_class, float(rho_samp), injector, seed, chosen)


def inject_records(records: Sequence[dict], injector: Injector, target_class: Any, rho_samp: float,
                   seed: int = 0, text_key: str = "text", label_key: str = "label",
                   flag_key: str = "ssti_injected") -> list[dict]:
    """:func:`spurious_transform` over dict records; other keys are kept, ``flag_key`` is added."""
    for i, record in enumerate(records):
        if text_key not in record or label_key not in record:
            raise DataError(f"Record {i} has no {text_key!r} or {label_key!r} field; "
                            f"its keys are {sorted(record)}.")
    labels = [record[label_key] for record in records]
    chosen = set(_choose_targets(labels, target_class, rho_samp, seed))
    rng = random.Random(f"ssti-items-{seed}")
    out = []
    for i, record in enumerate(records):
        new = dict(record)
        if i in chosen:
            new[text_key] = injector(str(record[text_key]), rng)
        new[flag_key] = i in chosen
        out.append(new)
    return out


def _read_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"No such data file: {path}.")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}, line {n}: not valid JSON ({err.msg}).") from None
        return rows
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
    raise DataError(f"{path}: unsupported text data format {suffix!r}; use .csv, .tsv or .jsonl.")


def _write_records(records: list[dict], path: Path) -> None:
    if path.suffix.lower() == ".jsonl":
        write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        return
    keys = list(dict.fromkeys(k for r in records for k in r))

    def fill(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(records)

    write_file_atomic(path, fill)


def inject_text_file(src: str | os.PathLike, dst: str | os.PathLike, injector: Injector, target_class: Any,
                     rho_samp: float, seed: int = 0, text_key: str = "text", label_key: str = "label") -> list[dict]:
    """Read a CSV/TSV/JSONL file, inject, write ``dst`` (same format by suffix) atomically.

    CSV labels are strings; ``target_class`` is compared as a string for CSV/TSV input."""
    src, dst = Path(src), Path(dst)
    records = _read_records(src)
    if src.suffix.lower() in (".csv", ".tsv"):
        target_class = str(target_class)
    out = inject_records(records, injector, target_class, rho_samp, seed, text_key, label_key)
    _write_records(out, dst)
    return out


def inject_hf_dataset(dataset: Any, injector: Injector, target_class: Any, rho_samp: float, seed: int = 0,
                      text_column: str = "text", label_column: str = "label",
                      flag_column: str = "ssti_injected") -> Any:
    """Inject into a Hugging Face ``datasets.Dataset``; returns a new dataset with ``flag_column``.

    Any object with ``column_names``, ``__getitem__(column) -> list`` and
    ``map(fn, with_indices=True)`` works (that is all that is used)."""
    columns = list(getattr(dataset, "column_names", []))
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise DataError(f"The dataset has no column {missing[0]!r}; its columns are {columns}.")
    chosen = set(_choose_targets(list(dataset[label_column]), target_class, rho_samp, seed))
    texts = list(dataset[text_column])
    rng = random.Random(f"ssti-items-{seed}")
    # Computed eagerly in index order so the result does not depend on map()'s batching or caching.
    new_texts = {i: injector(str(texts[i]), rng) for i in sorted(chosen)}

    def apply(example: dict, index: int) -> dict:
        return {text_column: new_texts.get(index, example[text_column]), flag_column: index in chosen}

    return dataset.map(apply, with_indices=True)

