"""The error of a model argument that cannot be evaluated (shared by the encoder loaders and the features files)."""

from __future__ import annotations

from sslkit.config import ConfigError

__all__ = ["ModelSpecError"]


class ModelSpecError(ConfigError):
    """A model argument that cannot be evaluated: not an sslkit run, an unknown timm name, a bad weights file,
    or a model whose output is not (B, D) or (B, N, D). Subclasses ConfigError so the CLI prints it as one line."""
