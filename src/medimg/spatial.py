"""Spatial transforms: resampling to a spacing, resize, crop/pad, reorientation,
foreground bounding boxes. NumPy arrays and ``tf.Tensor`` inputs; 3-D volumes in
NIfTI order ``(x, y, z[, c])``, 2-D images ``(rows, cols)``."""

from __future__ import annotations
