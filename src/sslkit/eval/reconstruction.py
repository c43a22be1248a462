"""MAE's own objective on held-out images, as the evaluation API names it.

The function lives in :mod:`sslkit.engine.heldout_reconstruction`: ``pretrain`` reports it at the end of a
run, and an engine module may not import ``sslkit.eval`` (``docs/architecture.md``). This module keeps
``sslkit.eval.reconstruction`` working with the same name.
"""

from sslkit.engine.heldout_reconstruction import heldout_reconstruction_loss

__all__ = ["heldout_reconstruction_loss"]
