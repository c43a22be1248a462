"""MAE's own objective on held-out images (``report.json`` key ``heldout_reconstruction_loss``).

The function lives with the method (:mod:`sslkit.methods.mae`); this module keeps its public name.
"""

from __future__ import annotations

from sslkit.methods.mae import heldout_reconstruction_loss

__all__ = ["heldout_reconstruction_loss"]
