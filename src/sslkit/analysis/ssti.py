"""SSTI reliance audit: metrics, rank x rho_samp sweep, token-entropy data checker, plots.

Spec ``specs/ssti.md`` step 4 (arXiv 2506.11402; blog Table 1). With ``predict(texts) -> (N,)``:

- clean accuracy, balanced accuracy (mean per-class recall), per-class accuracy;
- **spurious test set**: the target-class token injected into every test sample of the *other*
  classes; spurious accuracy is the accuracy on the test set with those samples replaced;
- **flip rate** (manipulation success): fraction of injected other-class samples predicted as the
  target class; the *base rate* is that fraction without injection;
- **accuracy gap** = clean accuracy - spurious accuracy (Fig. 1's "degradation"; the paper does not
  give its exact formula, this is our reading);
- **Table 1 counts**: predictions per class when *every* test sample is injected, next to the counts
  on the clean test set.

The checker (:func:`token_label_entropy`) computes H(y | t) in bits for every token present in at
least ``min_count`` training samples (spec: > 50). Each random date is a fresh string, so tokens
holding digits are counted by their digit shape (``1984-03-12`` -> ``0000-00-00``); that is what
lets it find injected dates.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sslkit import atomic_files
from sslkit.data.errors import DataError
from sslkit.data.ssti_inject import Injector, spurious_transform
from sslkit.figures import pyplot, save_figure
from sslkit.json_values import json_ready

__all__ = ["accuracy", "balanced_accuracy", "per_class_accuracy", "prediction_counts", "inject_other_classes",
           "flip_rate", "RelianceMetrics", "reliance_metrics", "TokenEntropy", "token_label_entropy",
           "flag_spurious_tokens", "TextData", "load_text_data", "split_text_data", "ssti_sweep",
           "plot_sweep", "write_json_atomic"]

Predict = Callable[[Sequence[str]], np.ndarray]


# --------------------------------------------------------------------------- metrics


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else float("nan")


def per_class_accuracy(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> list[float]:
    """Recall of each class 0..C-1 (NaN for a class absent from ``y_true``)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return [float((y_pred[y_true == c] == c).mean()) if (y_true == c).any() else float("nan")
            for c in range(num_classes)]


def balanced_accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's definition)."""
    classes = np.unique(np.asarray(y_true))
    recalls = per_class_accuracy(y_true, y_pred, int(classes.max()) + 1 if classes.size else 0)
    return float(np.mean([recalls[c] for c in classes])) if classes.size else float("nan")


def prediction_counts(y_pred: Sequence[int], num_classes: int) -> list[int]:
    """How many samples were predicted as each class (blog Table 1 format)."""
    return np.bincount(np.asarray(y_pred, dtype=int), minlength=num_classes)[:num_classes].tolist()


def inject_other_classes(texts: Sequence[str], labels: Sequence[int], injector: Injector, target_class: int,
                         seed: int = 0) -> tuple[list[str], list[bool]]:
    """The spurious test set: ``texts`` with every sample *not* of ``target_class`` injected.

    Returns the new texts (original order) and the mask of injected samples."""
    rng = random.Random(f"ssti-test-{seed}")
    out, mask = [], []
    for text, label in zip(texts, labels):
        hit = int(label) != int(target_class)
        out.append(injector(text, rng) if hit else text)
        mask.append(hit)
    return out, mask


def flip_rate(predict: Predict, texts: Sequence[str], labels: Sequence[int], injector: Injector,
              target_class: int, seed: int = 0) -> tuple[float, float]:
    """(flip rate, base rate): fraction of other-class samples predicted ``target_class`` with and
    without the injected token."""
    others = [t for t, y in zip(texts, labels) if int(y) != int(target_class)]
    if not others:
        raise DataError(f"The evaluation set has no samples outside class {target_class}; a flip rate needs some.")
    injected, _ = inject_other_classes(others, [-1] * len(others), injector, target_class, seed)
    return (float((np.asarray(predict(injected)) == target_class).mean()),
            float((np.asarray(predict(others)) == target_class).mean()))


@dataclass
class RelianceMetrics:
    clean_accuracy: float
    clean_balanced_accuracy: float
    per_class_accuracy: list[float]
    spurious_accuracy: float
    spurious_balanced_accuracy: float
    accuracy_gap: float              # clean - spurious
    flip_rate: float                 # other-class samples predicted target after injection
    base_rate: float                 # ... before injection
    counts_clean: list[int]          # predictions per class on the clean test set
    counts_all_injected: list[int]   # ... with every test sample injected (Table 1)
    target_class: int


def reliance_metrics(predict: Predict, texts: Sequence[str], labels: Sequence[int], injector: Injector,
                     target_class: int, num_classes: int, seed: int = 0) -> RelianceMetrics:
    """All reliance numbers for one fitted model (``predict``) on one test set."""
    labels = [int(y) for y in labels]
    clean = np.asarray(predict(list(texts)))
    spurious_texts, mask = inject_other_classes(texts, labels, injector, target_class, seed)
    spurious = clean.copy()
    hit = np.asarray(mask)
    if hit.any():
        spurious[hit] = np.asarray(predict([t for t, m in zip(spurious_texts, mask) if m]))
    # Table 1: every test sample injected, including the target class's own.
    rng = random.Random(f"ssti-all-{seed}")
    all_injected = np.asarray(predict([injector(t, rng) for t in texts]))
    others = np.asarray(labels) != target_class
    flip = float((spurious[others] == target_class).mean()) if others.any() else float("nan")
    base = float((clean[others] == target_class).mean()) if others.any() else float("nan")
    clean_acc, spur_acc = accuracy(labels, clean), accuracy(labels, spurious)
    return RelianceMetrics(clean_acc, balanced_accuracy(labels, clean), per_class_accuracy(labels, clean, num_classes),
                           spur_acc, balanced_accuracy(labels, spurious), clean_acc - spur_acc, flip, base,
                           prediction_counts(clean, num_classes), prediction_counts(all_injected, num_classes),
                           int(target_class))


# --------------------------------------------------------------------------- checker

_WORD = re.compile(r"\S+")


def _token_key(token: str) -> str:
    token = token.lower()
    return re.sub(r"\d", "0", token) if any(c.isdigit() for c in token) else token


@dataclass
class TokenEntropy:
    token: str
    count: int                # training samples containing the token
    entropy_bits: float       # H(y | token present)
    majority_label: int
    majority_fraction: float  # p(majority label | token)


def token_label_entropy(texts: Sequence[str], labels: Sequence[Any], min_count: int = 50) -> list[TokenEntropy]:
    """H(y | t) in bits for every token (digit-shape normalised) in >= ``min_count`` samples, lowest first.

    A token is counted once per sample. Ties are broken by count, then token, for a stable order."""
    if len(texts) != len(labels):
        raise DataError(f"The checker got {len(texts)} texts but {len(labels)} labels.")
    by_token: dict[str, Counter] = defaultdict(Counter)
    for text, label in zip(texts, labels):
        for token in {_token_key(t) for t in _WORD.findall(str(text))}:
            by_token[token][label] += 1
    rows = []
    for token, counts in by_token.items():
        n = sum(counts.values())
        if n < min_count:
            continue
        p = np.array(list(counts.values()), dtype=float) / n
        entropy = float(-(p * np.log2(p)).sum())
        label, top = counts.most_common(1)[0]
        rows.append(TokenEntropy(token, n, abs(entropy), label, top / n))
    return sorted(rows, key=lambda r: (r.entropy_bits, -r.count, r.token))


def flag_spurious_tokens(rows: Sequence[TokenEntropy], max_entropy_bits: float = 0.1) -> list[TokenEntropy]:
    """Tokens that predict one label almost perfectly: H(y | t) <= ``max_entropy_bits`` (0.1 bit is
    p(majority) >= 0.987 for two classes)."""
    return [r for r in rows if r.entropy_bits <= max_entropy_bits]


# --------------------------------------------------------------------------- data


@dataclass
class TextData:
    texts: list[str]
    labels: list[int]
    name: str
    class_names: list[str] = field(default_factory=list)


def _polarity_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gensim")
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / "test" / "test_data" / "pang_lee_polarity.cor"
        if path.is_file():
            return path
    raise FileNotFoundError("The built-in 'polarity' set comes from gensim's test data: pip install gensim.")


def load_text_data(spec: Any, text_key: str = "text", label_key: str = "label") -> TextData:
    """``"polarity"`` / ``"newsgroups"`` (built-in, via :mod:`sslkit.data.text`), a CSV/TSV/JSONL file
    with a text and a label column, or a Hugging Face ``datasets`` object."""
    try:
        from sslkit.data.text import load_text_dataset
    except ImportError:  # pragma: no cover - sslkit.data.text (issue #7) predates nothing here but may be absent
        load_text_dataset = None
    if load_text_dataset is not None:
        data = load_text_dataset(spec, text_column=text_key, label_column=label_key)
        if data.labels is None:
            raise DataError(f"{data.name} has no {label_key!r} labels; the SSTI audit needs labelled text.")
        return TextData(list(data.texts), list(data.labels), Path(str(data.name)).stem, list(data.class_names))
    if spec == "polarity":
        lines = _polarity_path().read_text(encoding="cp1252", errors="replace").splitlines()
        rows = [line.split(" ", 1) for line in lines if line.strip()]
        return TextData([r[1].strip() for r in rows], [int(r[0] == "__label__pos") for r in rows], "polarity",
                        ["neg", "pos"])
    from sslkit.data.ssti_inject import _read_records

    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"No such data file: {spec} (use 'polarity' or a .csv/.tsv/.jsonl file).")
    records = _read_records(path)
    if not records:
        raise DataError(f"{path} holds no samples.")
    if text_key not in records[0] or label_key not in records[0]:
        raise DataError(f"{path} needs {text_key!r} and {label_key!r} columns; it has {sorted(records[0])}.")
    raw = [r[label_key] for r in records]
    try:
        labels = [int(y) for y in raw]
        names = [str(c) for c in range(max(labels) + 1)]
    except (TypeError, ValueError):
        names = sorted({str(y) for y in raw})
        labels = [names.index(str(y)) for y in raw]
    return TextData([str(r[text_key]) for r in records], labels, path.stem, names)


def split_text_data(data: TextData, test_fraction: float = 0.3, seed: int = 0) -> tuple[TextData, TextData]:
    """Stratified train/test split under ``seed`` (order inside each split follows the original)."""
    rng = random.Random(seed)
    test: set[int] = set()
    for c in sorted(set(data.labels)):
        members = [i for i, y in enumerate(data.labels) if y == c]
        test.update(rng.sample(members, int(round(test_fraction * len(members)))))
    pick = lambda keep: TextData([t for i, t in enumerate(data.texts) if keep(i)],  # noqa: E731
                                 [y for i, y in enumerate(data.labels) if keep(i)], data.name, data.class_names)
    return pick(lambda i: i not in test), pick(lambda i: i in test)


# --------------------------------------------------------------------------- sweep


def ssti_sweep(model_spec: Any, train: TextData, test: TextData, ranks: Sequence[int], rho_samps: Sequence[float],
               injector: Injector, target_class: int = 1, seed: int = 0, settings: Any = None,
               on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Fine-tune one LoRA classifier per (rank, rho_samp) on the injected training set and measure
    reliance on the test set. Returns one dict per run (rank, rho_samp, n_injected, metrics...)."""
    from dataclasses import replace

    from sslkit.llm.lora import LoraSettings, finetune_lora_classifier

    base = settings or LoraSettings()
    num_classes = max(max(train.labels), max(test.labels)) + 1
    rows = []
    for rank in ranks:
        for rho in rho_samps:
            injected = spurious_transform(train.texts, train.labels, injector, target_class, rho, seed)
            run_settings = replace(base, rank=int(rank), alpha=None, seed=seed)
            spec = model_spec() if callable(model_spec) else model_spec  # a fresh model per run
            clf = finetune_lora_classifier(spec, injected.texts, injected.labels, run_settings, num_classes)
            metrics = reliance_metrics(clf.predict, test.texts, test.labels, injector, target_class, num_classes, seed)
            row = {"rank": int(rank), "rho_samp": float(rho), "n_injected": len(injected.indices),
                   "final_loss": clf.losses[-1] if clf.losses else float("nan"), **asdict(metrics)}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def plot_sweep(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Two panels: flip rate vs rank (one line per rho_samp) and accuracy gap vs rho_samp (one line per rank)."""
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4))
    rhos = sorted({r["rho_samp"] for r in rows})
    ranks = sorted({r["rank"] for r in rows})
    if len(ranks) > 1:
        for rho in rhos:
            sel = sorted((r for r in rows if r["rho_samp"] == rho), key=lambda r: r["rank"])
            axes[0].plot([r["rank"] for r in sel], [100 * r["flip_rate"] for r in sel], marker="o",
                         label=f"ρ_samp={rho:g}")
        axes[0].set_xscale("log", base=2)
        axes[0].set_xlabel("LoRA rank r (α = r)")
    else:  # one rank: the interesting axis is rho_samp
        sel = sorted(rows, key=lambda r: r["rho_samp"])
        axes[0].plot([r["rho_samp"] for r in sel], [100 * r["flip_rate"] for r in sel], marker="o",
                     label=f"r={ranks[0]}")
        axes[0].set_xlabel("ρ_samp (fraction of target class injected)")
    axes[0].set_ylabel("flip rate % (token → target class)")
    axes[0].legend()
    for rank in ranks:
        sel = sorted((r for r in rows if r["rank"] == rank), key=lambda r: r["rho_samp"])
        axes[1].plot([r["rho_samp"] for r in sel], [100 * r["accuracy_gap"] for r in sel], marker="o", label=f"r={rank}")
    axes[1].set_xlabel("ρ_samp (fraction of target class injected)")
    axes[1].set_ylabel("clean − spurious accuracy (points)")
    axes[1].legend()
    fig.suptitle("SSTI reliance (arXiv 2506.11402)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``obj`` as JSON at ``path``, atomically; numpy values, dataclasses and NaN are made JSON-safe first
    (:func:`sslkit.json_values.json_ready`). The argument order is this module's own (value first)."""
    return atomic_files.write_json_atomic(path, json_ready(obj))
