"""Few-shot classification on frozen features: n-shot episodes, mean ± std over episodes.

Each episode draws ``n`` labelled support samples per class from the training split (seeded) and classifies the
whole test split with a nearest-centroid classifier on centred, L2-normalised features ("CL2N" of SimpleShot,
Wang et al., arXiv 1911.04623): subtract the mean of all training features (label-free), normalise every row,
average each class's support rows into a centroid, and assign each test row to the closest centroid in
Euclidean distance. It has no hyperparameter to tune, which is what makes 1-shot numbers comparable.

Example::

    result = fewshot_protocol(train_x, train_y, test_x, test_y)        # shots 1, 5, 10; 100 episodes
    result.mean[5], result.std[5]
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslkit.data.errors import DataError
from sslkit.eval.knn import check_labelled

__all__ = ["FewShotConfig", "FewShotResult", "fewshot_protocol", "nearest_centroid_predict", "sample_episode"]


@dataclass
class FewShotConfig:
    """``shots`` per class, ``episodes`` per shot count, seeded episode sampling."""

    shots: tuple = (1, 5, 10)
    episodes: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        self.shots = tuple(int(s) for s in self.shots)
        if not self.shots or min(self.shots) < 1:
            raise ValueError(f"few-shot shots must be positive, got {list(self.shots)}.")
        if self.episodes < 1:
            raise ValueError(f"few-shot episodes must be >= 1, got {self.episodes}.")


@dataclass
class FewShotResult:
    """Per shot count: mean and standard deviation (over episodes) of the test accuracy, and every episode's."""

    mean: dict
    std: dict
    episodes: dict
    config: FewShotConfig
    num_classes: int
    seconds: float

    def to_dict(self) -> dict:
        return {"mean": {str(k): v for k, v in self.mean.items()}, "std": {str(k): v for k, v in self.std.items()},
                "episodes": {str(k): v for k, v in self.episodes.items()}, "config": dataclasses.asdict(self.config),
                "num_classes": self.num_classes, "seconds": self.seconds}


def sample_episode(labels: torch.Tensor, shots: int, classes: list[int], generator: torch.Generator) -> torch.Tensor:
    """Indices of ``shots`` samples of every class in ``classes`` (without replacement), class-major."""
    picked = []
    for c in classes:
        idx = torch.nonzero(labels == c).flatten()
        picked.append(idx[torch.randperm(idx.numel(), generator=generator)[:shots]])
    return torch.cat(picked)


def nearest_centroid_predict(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                             centre: torch.Tensor) -> torch.Tensor:
    """CL2N nearest-centroid predictions.

    Args:
        support: (s, D); support_labels: (s,); query: (m, D); centre: (D,) subtracted before normalising.

    Returns:
        (m,) labels (from ``support_labels``) of the closest class centroid; ties go to the smaller label.
    """
    s = F.normalize(support - centre, dim=1)
    q = F.normalize(query - centre, dim=1)
    classes = torch.unique(support_labels)  # sorted
    onehot = (support_labels[:, None] == classes[None, :]).to(s.dtype)  # (s, K)
    centroids = (onehot.t() @ s) / onehot.sum(0)[:, None]  # (K, D)
    # ‖q − c‖² = ‖q‖² − 2 q·c + ‖c‖²; ‖q‖² is the same for every class.
    score = 2 * q @ centroids.t() - (centroids * centroids).sum(1)[None, :]
    return classes[score.argmax(dim=1)]


def fewshot_protocol(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                     test_labels: torch.Tensor, config: FewShotConfig | None = None) -> FewShotResult:
    """n-shot accuracy over seeded episodes for every n in ``config.shots``.

    Raises:
        DataError: labels missing, or a class with fewer training samples than the largest shot count.
    """
    config = config or FewShotConfig()
    check_labelled(train_labels, "training", "Few-shot evaluation")
    check_labelled(test_labels, "test", "Few-shot evaluation")
    x_tr, y_tr = train_features.double(), train_labels.long()
    x_te, y_te = test_features.double(), test_labels.long()
    classes, counts = torch.unique(y_tr, return_counts=True)
    smallest = int(counts.min())
    if smallest < max(config.shots):
        worst = int(classes[counts.argmin()])
        raise DataError(f"{max(config.shots)}-shot episodes need {max(config.shots)} training samples of every "
                        f"class, but class {worst} has {smallest}; choose fewer shots (e.g. --fewshot-shots 1,5).")
    start = time.perf_counter()
    centre = x_tr.mean(0)
    gen = torch.Generator().manual_seed(config.seed)
    class_list = classes.tolist()
    mean, std, per_episode = {}, {}, {}
    for shots in config.shots:
        accs = []
        for _ in range(config.episodes):
            idx = sample_episode(y_tr, shots, class_list, gen)
            pred = nearest_centroid_predict(x_tr[idx], y_tr[idx], x_te, centre)
            accs.append(float((pred == y_te).double().mean()))
        t = torch.tensor(accs, dtype=torch.float64)
        mean[shots] = float(t.mean())
        std[shots] = float(t.std(unbiased=True)) if len(accs) > 1 else 0.0
        per_episode[shots] = accs
    return FewShotResult(mean=mean, std=std, episodes=per_episode, config=config, num_classes=len(class_list),
                         seconds=time.perf_counter() - start)
