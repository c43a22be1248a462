"""sslkit: self-supervised learning research, usable."""

__version__ = "0.1.0"
