"""Intensity transforms: windowing (incl. the DICOM VOI), CLAHE, standardisation, clipping.

Every public function accepts a NumPy array (CPU path: NumPy/OpenCV) and a
``tf.Tensor`` (TensorFlow path, usable inside ``tf.data`` and ``tf.function`` and on a
GPU); both paths are tested to agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import is_tensor, tensorflow
from .errors import InvalidImageError

__all__ = ["window"]


def window(image: Any, center: float, width: float, *, rescale: bool = True) -> Any:
    """Linear intensity window: keep ``[center - width/2, center + width/2]``.

    Values below the window become its lower edge (black), values above become
    its upper edge (white). This is the plain radiological window used to look
    at CT in Hounsfield units (e.g. soft tissue ``center=40, width=400``, lung
    ``-600, 1500``, bone ``400, 1800``). For the file's own VOI as the DICOM
    standard defines it (with its ``-0.5``/``-1`` offsets), use
    :func:`dicom_window`.

    Parameters
    ----------
    image : numpy.ndarray or tf.Tensor
        Any shape; intensities in the image's units (HU for CT).
    center, width : float
        Window centre and width in the same units; ``width > 0``.
    rescale : bool
        Map the window to ``[0, 1]`` (float32). When False the clipped values
        are returned in the original units.

    Returns
    -------
    numpy.ndarray or tf.Tensor
        Same shape, float32, same kind as the input.

    Examples
    --------
    >>> window(np.array([-1000.0, 40.0, 1000.0]), center=40, width=400)
    array([0. , 0.5, 1. ], dtype=float32)
    """
    if not np.isfinite(width) or width <= 0:
        raise InvalidImageError(f"window width must be a positive number, got {width!r}")
    low = float(center) - float(width) / 2.0
    high = float(center) + float(width) / 2.0
    if is_tensor(image):
        tf = tensorflow()
        x = tf.clip_by_value(tf.cast(image, tf.float32), low, high)
        return (x - low) / (high - low) if rescale else x
    x = np.clip(np.asarray(image, dtype=np.float32), low, high)
    if rescale:
        x -= low
        x *= np.float32(1.0 / (high - low))
    return x
