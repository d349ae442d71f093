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
    "resample_to_spacing",
    "resize",
    "to_sitk",
]


# ---------------------------------------------------------------------------------------
# 2-D images (issue 5): resize and resampling to a pixel spacing, NumPy (OpenCV) and
# TensorFlow (tf.image). Images are (rows, cols), (rows, cols, c) or, for tensors, also
# batches (n, rows, cols, c).
# ---------------------------------------------------------------------------------------

_CV2_DTYPES = ("uint8", "uint16", "int16", "float32", "float64")
_INTERPOLATIONS = ("auto", "area", "linear", "cubic", "nearest")


def _check_shape_2d(shape: Sequence[int]) -> tuple[int, int]:
    try:
        rows, cols = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise InvalidImageError(f"resize: shape must be (rows, cols), got {shape!r}") from None
    if rows < 1 or cols < 1:
        raise InvalidImageError(f"resize: shape must be positive, got {shape!r}")
    return rows, cols


def _pick_interpolation(interpolation: str, shrinking: bool) -> str:
    if interpolation not in _INTERPOLATIONS:
        raise InvalidImageError(f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, "
                                f"got {interpolation!r}")
    if interpolation == "auto":
        # Area averaging when shrinking: every source pixel contributes, no aliasing of
        # fine structure (ribs, lines); linear when enlarging (cubic overshoots at edges).
        return "area" if shrinking else "linear"
    return interpolation


def resize(image: Any, shape: Sequence[int], *, interpolation: str = "auto") -> Any:
    """Resize a 2-D image (or a batch of them, for tensors) to ``shape`` pixels.

    Parameters
    ----------
    image : numpy.ndarray or tf.Tensor
        ``(rows, cols)`` or ``(rows, cols, channels)``; tensors may also be batches
        ``(n, rows, cols, channels)``.
    shape : (int, int)
        Target ``(rows, cols)``.
    interpolation : {"auto", "area", "linear", "cubic", "nearest"}
        ``"auto"`` averages areas when both axes shrink (OpenCV ``INTER_AREA``,
        ``tf.image`` ``"area"``) and interpolates linearly otherwise.

    Returns
    -------
    numpy.ndarray or tf.Tensor
        ``shape`` in place of ``(rows, cols)``, same dtype as the input (integer
        images are rounded and saturated), same kind.

    Raises
    ------
    InvalidImageError
        Wrong rank, empty image, non-positive target, unknown interpolation.

    Examples
    --------
    >>> resize(np.ones((1024, 1024), np.uint8), (128, 128)).shape
    (128, 128)
    """
    rows, cols = _check_shape_2d(shape)
    if is_tensor(image):
        return _resize_tf(image, (rows, cols), interpolation)
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise InvalidImageError(f"resize: expected (rows, cols) or (rows, cols, channels), "
                                f"got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidImageError(f"resize: empty image of shape {image.shape}")
    import cv2

    method = _pick_interpolation(interpolation,
                                 rows <= image.shape[0] and cols <= image.shape[1])
    flag = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
            "nearest": cv2.INTER_NEAREST}[method]
    if (rows, cols) == image.shape[:2]:
        return image.copy()
    dtype = image.dtype
    work = image if dtype.name in _CV2_DTYPES else image.astype(np.float32)
    out = cv2.resize(np.ascontiguousarray(work), (cols, rows), interpolation=flag)
    if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[..., None]
    if out.dtype != dtype:
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        out = out.astype(dtype)
    return out


def _resize_tf(image: Any, shape: tuple[int, int] | Any, interpolation: str) -> Any:
    tf = tensorflow()
    image = tf.convert_to_tensor(image)
    rank = image.shape.rank
    if rank not in (2, 3, 4):
        raise InvalidImageError(f"resize: expected a (rows, cols[, channels]) image or an "
                                f"(n, rows, cols, channels) batch, got rank {rank}")
    x = image[..., None] if rank == 2 else image
    size = tf.shape(x)[-3:-1]
    target = tf.cast(tf.stack(shape), tf.int32)
    if interpolation == "auto":
        shrink = tf.reduce_all(target <= size)
        out = tf.cond(shrink, lambda: tf.image.resize(x, target, method="area"),
                      lambda: tf.image.resize(x, target, method="bilinear"))
    else:
        method = _pick_interpolation(interpolation, True)
        out = tf.image.resize(x, target, method={"area": "area", "linear": "bilinear",
                                                 "cubic": "bicubic", "nearest": "nearest"}[method])
    if image.dtype.is_integer:
        out = tf.clip_by_value(tf.round(tf.cast(out, tf.float32)), image.dtype.min,
                               image.dtype.max)
    out = tf.cast(out, image.dtype)
    return out[..., 0] if rank == 2 else out


def resample_to_spacing(image: Any, spacing: Sequence[float],
                        new_spacing: Sequence[float] = (1.0, 1.0), *,
                        interpolation: str = "auto") -> Any:
    """Resample a 2-D image from its pixel spacing to ``new_spacing`` (mm).

    The output has ``round(rows * spacing[0] / new_spacing[0])`` rows and likewise
    columns (at least one), so it covers the same field of view; the spacing
    actually reached differs from ``new_spacing`` by that rounding only. One
    :func:`resize` does the work (area averaging when shrinking).

    Parameters
    ----------
    image : numpy.ndarray or tf.Tensor
        ``(rows, cols)`` or ``(rows, cols, channels)`` (tensors: also batches).
    spacing : (float, float)
        Current pixel spacing ``(row_mm, col_mm)``: DICOM Pixel Spacing order
        (distance between rows, then between columns). Python numbers or tensors.
    new_spacing : (float, float)
        Target spacing in mm; a single number means isotropic.
    interpolation : str
        As for :func:`resize`.

    Returns
    -------
    numpy.ndarray or tf.Tensor
        Same dtype and kind.

    Raises
    ------
    InvalidImageError
        Non-positive or non-finite spacings (NumPy path; tensors are checked with
        ``tf.debugging`` asserts).

    Examples
    --------
    >>> img = np.zeros((1024, 1024), np.uint8)
    >>> resample_to_spacing(img, (0.143, 0.143), 1.0).shape
    (146, 146)
    """
    if is_tensor(image) or is_tensor(spacing) or is_tensor(new_spacing):
        tf = tensorflow()
        image = tf.convert_to_tensor(image)
        old = tf.broadcast_to(tf.cast(spacing, tf.float32), [2])
        new = tf.broadcast_to(tf.cast(new_spacing, tf.float32), [2])
        tf.debugging.assert_positive(old, message="resample_to_spacing: spacing must be > 0")
        tf.debugging.assert_positive(new, message="resample_to_spacing: new_spacing must be > 0")
        size = tf.cast(tf.shape(image)[-3:-1] if image.shape.rank in (3, 4)
                       else tf.shape(image), tf.float32)
        target = tf.maximum(tf.cast(tf.round(size * old / new), tf.int32), 1)
        return _resize_tf(image, target, interpolation)
    old = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (2,))
    new = np.broadcast_to(np.asarray(new_spacing, dtype=np.float64), (2,))
    for name, value in (("spacing", old), ("new_spacing", new)):
        if not np.all(np.isfinite(value)) or np.any(value <= 0):
            raise InvalidImageError(f"resample_to_spacing: {name} must be positive mm, "
                                    f"got {value.tolist()}")
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise InvalidImageError(f"resample_to_spacing: expected (rows, cols[, channels]), "
                                f"got shape {image.shape}")
    target = np.maximum(np.rint(np.asarray(image.shape[:2]) * old / new), 1).astype(int)
    return resize(image, tuple(target), interpolation=interpolation)
