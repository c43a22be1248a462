"""Grokking races: weight decay alone vs weight decay + GrokAlign (arXiv 2506.12284).

Two tiny full-batch-friendly setups, trained with a plain PyTorch loop (much faster than Lightning
at this size):

- ``digits``: the MNIST-1k recipe of Liu, Michaud, Tegmark ("Omnigrok", arXiv 2210.01117) as used
  by GrokAlign, on scikit-learn's 8x8 digits (offline) upsampled bilinearly to 28x28: 1024 train
  images drawn with a fixed seed, the other 773 as the test set, standardised per pixel; a
  bias-free ReLU MLP 784-196-196-10 (``depth=3`` gives the spec's 784-196-196-196-10) whose
  initial weights are multiplied by 8; AdamW with weight decay; MSE on one-hot targets;
  mini-batches of 256 in a fixed order (no shuffle, as the reference).
- ``modadd``: ``a + b mod p`` from the prompt ``[a, b, =]`` with a one-layer transformer without
  LayerNorm (Nanda et al., arXiv 2301.05217), full batch, cross-entropy on the last position;
  the GrokAlign penalty is taken on the map token embeddings -> last-position logits.

Three regimes: ``none`` (no weight decay, no penalty), ``wd`` (weight decay) and ``grokalign``
(the same weight decay + lambda * Jacobian-norm penalty). Each run records train/test accuracy,
centroid alignment, the Jacobian norm and the weight norm every ``eval_every`` steps and the
first step at which the test accuracy reaches ``threshold``.

Example::

    report = run_grok(GrokConfig(setup="digits", max_steps=2000), seeds=[0, 1, 2],
                      regimes=["wd", "grokalign"])
    write_grok_outputs(report, "runs/grok")   # grok.json + grok.png

One concept per file: :mod:`~sslkit.analysis.grok.config` (settings and per-setup defaults),
:mod:`~sslkit.analysis.grok.tasks` (data, model and loss of each setup; the models are
:class:`sslkit.nn.bias_free_mlp.BiasFreeMLP` and :class:`sslkit.nn.one_layer_transformer.OneLayerTransformer`),
:mod:`~sslkit.analysis.grok.training` (the loop), :mod:`~sslkit.analysis.grok.report` (the race) and
:mod:`~sslkit.analysis.grok.outputs` (``grok.json``, ``grok.png``). This package gathers their public names.
"""

from __future__ import annotations

from sslkit.analysis.grok.config import REGIMES, SETUP_DEFAULTS, SETUPS, GrokConfig
from sslkit.analysis.grok.outputs import plot_grok_curves, write_grok_outputs
from sslkit.analysis.grok.report import GrokReport, race_summary, run_grok
from sslkit.analysis.grok.tasks import DIGITS_SPLIT_SEED, GrokTask, build_task, digits_task, modadd_task
from sslkit.analysis.grok.training import GrokRun, steps_to_threshold, train_grok
from sslkit.nn.bias_free_mlp import BiasFreeMLP
from sslkit.nn.one_layer_transformer import OneLayerTransformer

__all__ = [
    "DIGITS_SPLIT_SEED", "REGIMES", "SETUPS", "SETUP_DEFAULTS", "BiasFreeMLP", "GrokConfig", "GrokReport", "GrokRun",
    "GrokTask", "OneLayerTransformer", "build_task", "digits_task", "modadd_task", "plot_grok_curves",
    "race_summary", "run_grok", "steps_to_threshold", "train_grok", "write_grok_outputs",
]
