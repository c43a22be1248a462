"""Weighted k-nearest-neighbour classification on frozen features.

Reference: arXiv 2304.07193 (kNN evaluation, following Wu et al. 2018 / DINO) and
facebookresearch/dinov2 ``dinov2/eval/knn.py``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["knn_predict", "knn_accuracy", "topk_rows"]

_WEIGHTINGS = ("softmax", "uniform")


def _class_count(num_classes) -> int:
    # Accept numpy / 0-d tensor integers; reject e.g. a label tensor passed by position.
    try:
        return operator.index(num_classes)
    except TypeError:
        raise ValueError(
            f"num_classes must be an integer, got {type(num_classes).__name__}; "
            "pass test_labels by keyword to knn_accuracy."
        ) from None


def _check_inputs(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    ks: Sequence[int],
    weighting: str,
    block_size: int,
) -> None:
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError(
            "knn expects (n, D) train and (m, D) test features, got "
            f"{tuple(train_features.shape)} and {tuple(test_features.shape)}."
        )
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"Train features have dimension {train_features.shape[1]} but test features have "
            f"{test_features.shape[1]}; extract both with the same model."
        )
    if train_features.shape[0] == 0:
        raise ValueError("knn got an empty training set; it needs at least one labelled feature.")
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(
            f"train_labels must have shape ({train_features.shape[0]},), got {tuple(train_labels.shape)}."
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}.")
    if int(train_labels.min()) < 0 or int(train_labels.max()) >= num_classes:
        raise ValueError(
            f"train_labels must lie in [0, {num_classes}), found values in "
            f"[{int(train_labels.min())}, {int(train_labels.max())}]; check num_classes."
        )
    if len(ks) == 0 or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty list of positive neighbour counts, got {list(ks)}.")
    if weighting not in _WEIGHTINGS:
        raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}.")
    if block_size < 1:
        raise ValueError(f"block_size must be a positive number of test rows, got {block_size}.")


def topk_rows(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sims.topk(k, dim=1)`` (values descending, column indices) for a (b, n) matrix, faster for n ≫ k.

    ``torch.topk`` costs ~10× more per element than a max reduction on the CPU. When n ≥ 16k the columns are
    cut into g groups of s ≈ √(n/k) (plus a tail of fewer than s columns): one ``amax`` pass finds each group's
    maximum, the k groups with the largest maxima (and the tail) hold the whole top k — a column outside them
    has k group maxima at least as large — and ``topk`` then runs on only ~2√(nk) candidates.
    The values are exactly those of ``torch.topk``; with exactly tied values the chosen indices may differ.

    Args:
        sims: (b, n); rows may be a view into a wider buffer.
        k: 1 ≤ k ≤ n.

    Returns:
        values (b, k) and indices (b, k) into the n columns, sorted by decreasing value.
    """
    b, n = sims.shape
    group = max(1, int(math.isqrt(max(1, n // max(1, k)))))
    groups = n // group
    if n < 16 * k or groups < k or group < 2:
        return sims.topk(k, dim=1, largest=True, sorted=True)
    # Group j holds columns j, j + g, j + 2g, ...: the max over groups is then an elementwise max of s
    # contiguous rows of length g, which vectorises; contiguous groups of ~16 columns reduce far slower.
    body = sims[:, : groups * group].unflatten(1, (group, groups))  # (b, s, g) view
    best_groups = body.amax(dim=1).topk(k, dim=1, sorted=False).indices  # (b, k)
    cols = (best_groups[:, :, None] + groups * torch.arange(group, device=sims.device)).flatten(1)
    if groups * group < n:
        tail = torch.arange(groups * group, n, device=sims.device).expand(b, -1)
        cols = torch.cat([cols, tail], dim=1)
    values, pos = sims.gather(1, cols).topk(k, dim=1, largest=True, sorted=True)
    return values, cols.gather(1, pos)


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    ks: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    weighting: str = "softmax",
    block_size: int = 1024,
) -> dict[int, torch.Tensor]:
    """Class predictions of a cosine-similarity kNN classifier for several ``k``.

    Features are L2-normalised here. Test rows are processed ``block_size`` at a time,
    so at most a ``(block_size, n)`` similarity matrix exists at once; from it the top
    ``max(ks)`` neighbours (clipped to ``n``) are kept.

    Weighting:
        * ``"softmax"`` (DINOv2): weights ``softmax(s / T)`` over the top ``max(ks)``
          neighbours, ``score_c(k) = sum_{j <= k} w_j 1[y_j = c]``. The softmax
          denominator is shared by all classes, so this ranks classes exactly as
          ``exp(s / T)`` voting.
        * ``"uniform"``: plain majority vote among the ``k`` nearest. Ties go to the
          smallest class index, which is what scikit-learn's ``KNeighborsClassifier``
          does (its ``predict`` takes ``argmax`` over class counts, or ``scipy.stats.mode``,
          both returning the first maximum), so results match it exactly.

    Args:
        train_features: ``(n, D)``.
        train_labels: ``(n,)`` integer labels in ``[0, num_classes)``.
        test_features: ``(m, D)``.
        num_classes: number of classes ``C``.
        ks: neighbour counts; a ``k`` larger than ``n`` is clipped to ``n``.
        temperature: ``T`` of the softmax weighting.
        weighting: ``"softmax"`` or ``"uniform"``.
        block_size: test rows per similarity block.

    Returns:
        ``{k: (m,) int64 predicted labels}`` for every ``k`` in ``ks`` (keys as given).
    """
    num_classes = _class_count(num_classes)
    _check_inputs(train_features, train_labels, test_features, num_classes, ks, weighting, block_size)
    n_train = train_features.shape[0]
    max_k = min(max(ks), n_train)
    train_labels = train_labels.to(device=train_features.device, dtype=torch.long)
    train_hat = F.normalize(train_features, p=2, dim=1)
    test_hat = F.normalize(test_features.to(train_features.dtype), p=2, dim=1)

    chunks: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    # One similarity buffer reused by every block: allocating a fresh (block, n) matrix per block costs
    # page faults comparable to a third of the matmul itself at n = 50k (benchmarks/eval_speed.py).
    buffer = torch.empty(min(block_size, test_hat.shape[0]), n_train, dtype=train_hat.dtype,
                         device=train_hat.device)
    for start in range(0, test_hat.shape[0], block_size):
        block = test_hat[start : start + block_size]
        sims = buffer[: block.shape[0]]
        torch.mm(block, train_hat.t(), out=sims)  # (b, n)
        top_sims, top_idx = topk_rows(sims, max_k)
        neighbour_labels = train_labels[top_idx]  # (b, max_k)
        if weighting == "softmax":
            weights = F.softmax(top_sims / temperature, dim=1)
        else:
            weights = torch.ones_like(top_sims)
        for k in ks:
            k_eff = min(k, n_train)
            scores = torch.zeros(
                neighbour_labels.shape[0], num_classes, dtype=weights.dtype, device=weights.device
            )
            scores.scatter_add_(1, neighbour_labels[:, :k_eff], weights[:, :k_eff])
            # argmax returns the first maximum: ties go to the smallest class index.
            chunks[k].append(scores.argmax(dim=1))
    empty = torch.empty(0, dtype=torch.long, device=train_features.device)
    return {k: torch.cat(parts) if parts else empty for k, parts in chunks.items()}


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    ks: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    weighting: str = "softmax",
    block_size: int = 1024,
    *,
    test_labels: torch.Tensor,
) -> dict[int, float]:
    """Top-1 accuracy in ``[0, 1]`` of :func:`knn_predict` for every ``k`` in ``ks``.

    Args:
        test_labels: ``(m,)`` integer labels (keyword-only, so the other arguments line
            up with :func:`knn_predict`).

    Returns:
        ``{k: accuracy}``.
    """
    if test_labels.shape != (test_features.shape[0],):
        raise ValueError(
            f"test_labels must have shape ({test_features.shape[0]},), got {tuple(test_labels.shape)}."
        )
    if test_features.shape[0] == 0:
        raise ValueError("knn_accuracy got an empty test set; accuracy is undefined.")
    predictions = knn_predict(
        train_features, train_labels, test_features, num_classes, ks, temperature, weighting, block_size
    )
    target = test_labels.to(device=train_features.device, dtype=torch.long)
    return {k: (pred == target).double().mean().item() for k, pred in predictions.items()}
