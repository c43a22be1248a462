"""The recipe's ``data`` section: where images come from and how they are read.

It lives in the data layer so that every verb opens data through one function,
:func:`sslkit.data.sources.open_configured`; ``sslkit.config`` imports it into ``RunConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union


@dataclass
class DataConfig:
    """Where images come from and how they are read."""

    source: str = "shapes"  # 'shapes', 'digits', an image folder, a .csv/.txt list of paths, or tar shards
    image_size: int = 32  # size the built-in datasets render at
    num_samples: Optional[int] = None  # built-in 'shapes'/'glyphs' train size (None: dataset default)
    # built-in 'shapes'/'glyphs' backgrounds (None: the dataset's default, texture for shapes, noise for glyphs)
    background: Optional[Literal["texture", "noise", "plain"]] = None
    background_noise: float = 0.0  # built-in sets: std of pixel noise added to the background only
    channels: Union[Literal["auto"], int] = "auto"
    stats: Literal["dataset", "imagenet", "compute"] = "dataset"  # normalisation mean/std
    holdout_fraction: float = 0.1  # labelled user data: share held out for the kNN monitor
    skip_bad_files: bool = False
    # DICOM: [low, high] in modality units (e.g. Hounsfield) mapped to [0, 1] for every file; None: each file's
    # stored-bits range (sslkit.data.dicom)
    dicom_window: Optional[tuple[float, float]] = None
    num_workers: int = 0
