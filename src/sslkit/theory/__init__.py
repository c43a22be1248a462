"""Closed-form theory of self-supervised learning.

``sslkit.theory.linear``: linear reconstruction vs linear joint embedding under data augmentation
(arXiv 2505.12477) — closed forms, additive-noise thresholds, the phase diagram and a probe experiment.
"""

from __future__ import annotations

from sslkit.theory import linear

__all__ = ["linear"]
