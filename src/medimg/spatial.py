"""Spatial transforms: resampling to a spacing, resize, crop/pad, reorientation,
foreground bounding boxes. NumPy arrays and ``tf.Tensor`` inputs; 3-D volumes in
NIfTI order ``(x, y, z[, c])``, 2-D images ``(rows, cols)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._backend import is_tensor, tensorflow
from .errors import InvalidImageError

__all__ = [
    "constant_slices",
    "crop_or_pad",
    "crop_to_foreground",
    "from_sitk",
    "resample",
    "to_sitk",
]
