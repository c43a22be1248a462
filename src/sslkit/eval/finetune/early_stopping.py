"""Early stopping on a validation score, keeping the best weights so they can be restored before testing."""

from __future__ import annotations

import copy
from typing import Optional

from torch import nn

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Track the best validation score (higher is better) of a model over epochs.

    :meth:`update` after each epoch returns whether the score improved (then the model's weights are copied);
    :attr:`should_stop` turns true once ``patience`` epochs in a row brought no improvement; :meth:`restore`
    loads the best weights back.
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.best_score: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.epochs_without_improvement = 0
        self._best_state: Optional[dict] = None

    def update(self, epoch: int, score: float, model: nn.Module) -> bool:
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.epochs_without_improvement = 0
            self._best_state = copy.deepcopy(model.state_dict())
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.epochs_without_improvement >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self._best_state is not None:
            model.load_state_dict(self._best_state)
