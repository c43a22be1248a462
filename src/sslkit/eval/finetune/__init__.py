"""Full fine-tuning of a backbone for classification or segmentation (``sslkit finetune``), one concept per
file: ``config`` (settings), ``layer_decay`` (parameter groups), ``schedule`` (warm-up + cosine),
``early_stopping``, ``views`` (augmented / resized splits), ``task_data`` (sources, splits, loaders), ``heads``
(classifier, linear and multi-level segmentation heads), ``classify`` / ``segment`` (losses and scores),
``training`` (the epochs), ``run`` (the API) and ``report`` (report.json and the learning curve)."""

from sslkit.eval.finetune.config import FinetuneConfig
from sslkit.eval.finetune.run import FinetuneOutcome, finetune

__all__ = ["FinetuneConfig", "FinetuneOutcome", "finetune"]
