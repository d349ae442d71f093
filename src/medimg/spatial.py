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
    "reorient",
    "resample",
    "resample_to_shape",
    "resample_to_spacing",
    "resize",
    "to_sitk",
]


# ---------------------------------------------------------------------------------------
# 3-D volumes: SimpleITK conversion, constant slices, foreground crop,
# crop/pad and resampling. Volumes are NIfTI-ordered (x, y, z[, c]) with a RAS+ affine.
# ---------------------------------------------------------------------------------------

#: RAS+ (NIfTI world) <-> LPS (ITK world): flip the first two world axes.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _split_volume(x: Any) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """(array, affine or None, the Volume or None) of an array or a Volume."""
    from .io.volume import Volume

    if isinstance(x, Volume):
        return x.array, x.affine, x
    return x, None, None


def to_sitk(array: Any, affine: Any = None, *, spacing: Sequence[float] | None = None):
    """A NumPy volume (NIfTI order, RAS+ affine) as a SimpleITK image (the one conversion).

    SimpleITK indexes its arrays ``(z, y, x)`` and places images in LPS world
    coordinates; medimg holds ``(x, y, z)`` arrays with RAS+ affines. This function
    and :func:`from_sitk` are the only places where one becomes the other, so a
    round trip keeps both the voxels and their positions in space.

    Parameters
    ----------
    array : numpy.ndarray or medimg.io.Volume
        ``(x, y, z)`` scalar or ``(x, y, z, c)`` vector volume. A ``Volume`` brings its
        affine.
    affine : numpy.ndarray, shape (4, 4), optional
        Voxel index to RAS+ mm. Default: ``diag(spacing)`` with the origin at 0.
    spacing : sequence of 3 float, optional
        Voxel size in mm when no affine is given (default 1 mm).

    Returns
    -------
    SimpleITK.Image
        Same voxels; ``GetSize() == (x, y, z)``; spacing, origin and direction in LPS.

    Examples
    --------
    >>> img = to_sitk(np.zeros((4, 5, 6), np.float32), spacing=(1.0, 2.0, 3.0))
    >>> img.GetSize(), img.GetSpacing()
    ((4, 5, 6), (1.0, 2.0, 3.0))
    """
    import SimpleITK as sitk

    array, volume_affine, _ = _split_volume(array)
    array = np.asarray(array)
    if affine is None:
        affine = volume_affine
    if array.ndim not in (3, 4):
        raise InvalidImageError(f"expected an (x, y, z) or (x, y, z, c) array, got shape "
                                f"{array.shape}")
    if affine is None:
        spacing = (1.0, 1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
        affine = np.diag([*spacing, 1.0])
    affine = np.asarray(affine, dtype=np.float64)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    axes = (2, 1, 0, 3) if array.ndim == 4 else (2, 1, 0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(axes)),
                                   isVector=array.ndim == 4)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    direction = _RAS_TO_LPS @ affine[:3, :3] / zooms
    image.SetSpacing(tuple(float(s) for s in zooms))
    image.SetDirection(tuple(float(d) for d in direction.ravel()))
    image.SetOrigin(tuple(float(o) for o in _RAS_TO_LPS @ affine[:3, 3]))
    return image


def from_sitk(image) -> Any:
    """A SimpleITK image as a :class:`medimg.io.Volume` (NIfTI order, RAS+ affine).

    The inverse of :func:`to_sitk`: ``(z, y, x)`` becomes ``(x, y, z)`` (vector
    images become ``(x, y, z, c)``) and the LPS origin/direction/spacing become a
    RAS+ affine.
    """
    import SimpleITK as sitk

    from .io.volume import Volume

    if image.GetDimension() != 3:
        raise InvalidImageError(f"expected a 3-D SimpleITK image, got {image.GetDimension()}-D")
    array = sitk.GetArrayFromImage(image)
    array = array.transpose((2, 1, 0, 3) if array.ndim == 4 else (2, 1, 0))
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _RAS_TO_LPS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = _RAS_TO_LPS @ np.asarray(image.GetOrigin(), dtype=np.float64)
    return Volume(np.ascontiguousarray(array), affine)


def constant_slices(array: Any, axis: int, *, channel_axis: int | None = None) -> Any:
    """Indices of the slices along ``axis`` that carry no information (constant).

    A slice is constant when every voxel in it has the same value (per channel when
    ``channel_axis`` is given): the all-zero slices around a skull-stripped brain,
    for instance. Such slices can be dropped before training without losing
    anything but the position, which a crop box keeps. Vectorized: one max and one
    min over the array.

    Parameters
    ----------
    array : numpy.ndarray or tf.Tensor
        Any shape with at least 2 dimensions, e.g. ``(x, y, z)`` or ``(x, y, z, c)``.
    axis : int
        Axis whose slices are tested.
    channel_axis : int, optional
        Axis of channels (e.g. ``-1`` for ``(x, y, z, c)``): a slice is constant when
        each channel is constant in it (the channels may differ from each other).

    Returns
    -------
    numpy.ndarray of int64 or tf.Tensor of int64
        Sorted indices along ``axis``. NaN never counts as constant.

    Examples
    --------
    >>> v = np.zeros((4, 3, 3)); v[1:3, 1, 1] = 1.0
    >>> constant_slices(v, axis=0)
    array([0, 3])
    """
    ndim = len(array.shape)
    if ndim < 2:
        raise InvalidImageError(f"constant_slices needs at least 2 dimensions, got {ndim}")
    axis = int(axis) % ndim
    if channel_axis is not None:
        channel_axis = int(channel_axis) % ndim
        if channel_axis == axis:
            raise InvalidImageError("axis and channel_axis must differ")
    reduce = tuple(a for a in range(ndim) if a not in (axis, channel_axis))
    if is_tensor(array):
        tf = tensorflow()
        high = tf.reduce_max(array, axis=reduce)
        low = tf.reduce_min(array, axis=reduce)
        same = tf.equal(high, low)
        if channel_axis is not None:
            same = tf.reduce_all(same, axis=1 if channel_axis > axis else 0)
        return tf.where(same)[:, 0]
    array = np.asarray(array)
    same = array.max(axis=reduce) == array.min(axis=reduce)
    if channel_axis is not None:
        same = same.all(axis=1 if channel_axis > axis else 0)
    return np.flatnonzero(same).astype(np.int64)


def crop_to_foreground(
    x: Any, mask: Any = None, *, margin: int | Sequence[int] = 0, background: float = 0
) -> tuple[Any, tuple[tuple[int, int], ...]]:
    """Crop a volume (or image) to the bounding box of its foreground.

    Parameters
    ----------
    x : numpy.ndarray or medimg.io.Volume
        ``(x, y, z)``, ``(x, y, z, c)`` (channels last) or a 2-D image.
    mask : numpy.ndarray of bool, optional
        Foreground over the spatial axes. Default: voxels where any channel differs
        from ``background`` (so the zero background of skull-stripped MRI is cut).
    margin : int or sequence of int
        Voxels kept around the box on each side (clipped at the borders).
    background : float
        Background value used when ``mask`` is not given.

    Returns
    -------
    cropped : numpy.ndarray or Volume
        The crop (a Volume keeps its place in space: its affine is shifted).
    box : tuple of (start, stop)
        Per spatial axis, half-open voxel ranges of the crop in ``x``; put a result
        back with ``full[start0:stop0, start1:stop1, ...] = cropped``.

    Raises
    ------
    InvalidImageError
        No foreground at all (a blank volume cannot be cropped meaningfully).
    """
    array, affine, volume = _split_volume(x)
    array = np.asarray(array)
    spatial = 3 if (volume is not None or array.ndim == 4) else array.ndim
    if mask is None:
        foreground = array != background
        if array.ndim > spatial:
            foreground = foreground.any(axis=tuple(range(spatial, array.ndim)))
    else:
        foreground = np.asarray(mask, dtype=bool)
        if foreground.shape != array.shape[:spatial]:
            raise InvalidImageError(f"mask has shape {foreground.shape}, expected "
                                    f"{array.shape[:spatial]}")
    margins = np.broadcast_to(np.asarray(margin, dtype=int), (spatial,))
    box = []
    for axis in range(spatial):
        other = tuple(a for a in range(spatial) if a != axis)
        hits = np.flatnonzero(foreground.any(axis=other))
        if hits.size == 0:
            raise InvalidImageError("no foreground voxels: nothing to crop to")
        start = max(0, int(hits[0]) - int(margins[axis]))
        stop = min(array.shape[axis], int(hits[-1]) + 1 + int(margins[axis]))
        box.append((start, stop))
    box = tuple(box)
    cropped = array[tuple(slice(a, b) for a, b in box)]
    if volume is None:
        return cropped, box
    shift = np.eye(4)
    shift[:3, 3] = [a for a, _ in box]
    return volume.with_array(np.ascontiguousarray(cropped), affine @ shift), box


def crop_or_pad(x: Any, shape: Sequence[int], *, value: float = 0) -> Any:
    """Centre-crop or pad the leading axes of ``x`` to ``shape``.

    Axes longer than the target are cropped around their centre, shorter ones are
    padded with ``value`` on both sides (the extra voxel of an odd difference goes to
    the end). Trailing axes beyond ``len(shape)`` (channels) are left as they are.

    Parameters
    ----------
    x : numpy.ndarray, tf.Tensor or medimg.io.Volume
        E.g. ``(x, y, z)`` or ``(x, y, z, c)``, or a 2-D image.
    shape : sequence of int
        Target sizes of the first ``len(shape)`` axes.
    value : float
        Padding value.

    Returns
    -------
    numpy.ndarray, tf.Tensor or Volume
        Same kind as ``x``; a Volume's affine is shifted so voxels keep their place.

    Examples
    --------
    >>> crop_or_pad(np.arange(5), (3,))
    array([1, 2, 3])
    >>> crop_or_pad(np.arange(2), (5,))
    array([0, 0, 1, 0, 0])
    """
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise InvalidImageError(f"target shape must be positive, got {shape}")
    array, affine, volume = _split_volume(x)
    if len(shape) > len(array.shape):
        raise InvalidImageError(f"target shape {shape} has more axes than the input "
                                f"{tuple(array.shape)}")
    if is_tensor(array):
        tf = tensorflow()
        size = tf.shape(array)[: len(shape)]
        target = tf.constant(shape, dtype=size.dtype)
        start = tf.maximum(size - target, 0) // 2
        extent = tf.minimum(size, target)
        rest = len(array.shape) - len(shape)
        begin = tf.concat([start, tf.zeros([rest], size.dtype)], 0)
        sizes = tf.concat([extent, -tf.ones([rest], size.dtype)], 0)
        cropped = tf.slice(array, begin, sizes)
        before = tf.maximum(target - size, 0) // 2
        after = tf.maximum(target - size, 0) - before
        pads = tf.stack([tf.concat([before, tf.zeros([rest], size.dtype)], 0),
                         tf.concat([after, tf.zeros([rest], size.dtype)], 0)], axis=1)
        out = tf.pad(cropped, pads, constant_values=tf.cast(value, array.dtype))
        return tf.ensure_shape(out, shape + tuple(array.shape[len(shape):]))
    array = np.asarray(array)
    crop, pad, offset = [], [], []
    for size, target in zip(array.shape, shape, strict=False):
        start = max(size - target, 0) // 2
        before = max(target - size, 0) // 2
        crop.append(slice(start, start + min(size, target)))
        pad.append((before, max(target - size, 0) - before))
        offset.append(start - before)
    pad += [(0, 0)] * (array.ndim - len(shape))
    out = np.pad(array[tuple(crop)], pad, mode="constant", constant_values=value)
    if volume is None:
        return out
    shift = np.eye(4)
    shift[:3, 3] = [*offset, 0, 0, 0][:3]
    return volume.with_array(out, affine @ shift)


#: Interpolation order -> SimpleITK interpolator. 0 and 1 are nearest neighbour and
#: (tri)linear, the same in every library; 2-5 are ITK's B-splines of that order.
_SITK_INTERPOLATORS = {0: "sitkNearestNeighbor", 1: "sitkLinear", 2: "sitkBSpline2",
                       3: "sitkBSpline3", 4: "sitkBSpline4", 5: "sitkBSpline5"}


def resample(volume: Any, spacing: float | Sequence[float], order: int = 1) -> Any:
    """Resample a :class:`medimg.io.Volume` to a new voxel spacing, keeping its place.

    The new grid starts at the same first voxel centre and covers the same extent
    (``round(size * old_spacing / new_spacing)`` voxels per axis), so the affine
    gains the new voxel size and keeps its origin and directions: the result
    overlays the input in any viewer, whatever the affine (flipped, permuted,
    oblique or sheared axes): output voxel ``i`` samples input voxel coordinate
    ``i * new_spacing / old_spacing`` per axis.

    SimpleITK's resampler does the work (multi-threaded; the array is handed over
    without a transpose and the grid is set in voxel units, so no direction matrix
    or rounding of world coordinates enters). Samples beyond the
    last input voxel centre take the nearest voxel's value (the edge), as SciPy's
    ``mode="nearest"`` does.

    Interpolation by ``order``, honestly:

    - 0: nearest neighbour (labels); ``sitkNearestNeighbor``. The same voxels as
      SciPy's order 0; a sample exactly half-way between two voxels takes the
      upper one in both.
    - 1: trilinear; ``sitkLinear``. Equals SciPy's order 1 to float32 rounding.
    - 2-5: ITK's B-spline of that order (``sitkBSpline2``..``sitkBSpline5``), the
      same interpolating spline as SciPy's ``order``, with SciPy's border rule
      (the volume is extended by 12 edge voxels before the mirror-boundary spline
      coefficients are computed, as SciPy does for ``mode="nearest"``); equal to
      SciPy to float32 rounding.

    Parameters
    ----------
    volume : medimg.io.Volume
        ``(x, y, z)`` or ``(x, y, z, c)`` (channels resampled independently).
    spacing : float or sequence of 3 float
        Target voxel size in mm.
    order : int
        Interpolation order, 0 to 5 (above).

    Returns
    -------
    medimg.io.Volume
        Order 0 keeps the dtype; higher orders return float32.

    Raises
    ------
    InvalidImageError
        Not a Volume, a spacing that is not positive and finite, an order outside
        0-5, or a dtype SimpleITK cannot hold (complex, object).
    """
    import SimpleITK as sitk

    from .io.volume import Volume

    if not isinstance(volume, Volume):
        raise InvalidImageError("resample expects a medimg.io.Volume (it needs the affine); "
                                "wrap an array as Volume(array, affine)")
    target = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    if not np.all(np.isfinite(target)) or np.any(target <= 0):
        raise InvalidImageError(f"spacing must be positive mm, got {spacing!r}")
    if order not in range(6):
        raise InvalidImageError(f"order must be 0 to 5, got {order!r}")
    old = np.asarray(volume.spacing)
    ratio = target / old
    in_shape = np.asarray(volume.shape[:3])
    out_shape = tuple(int(s) for s in np.maximum(1, np.round(in_shape / ratio)))
    array = np.asarray(volume.array)
    if array.dtype.kind not in "biuf":
        raise InvalidImageError(f"resample: dtype {array.dtype} cannot be resampled")
    if order == 0:
        # bool and float16 have no SimpleITK pixel type: resample a stand-in, cast back
        work = array.view(np.uint8) if array.dtype == bool else (
            array.astype(np.float32) if array.dtype == np.float16 else array)
    else:
        work = array.astype(np.float32, copy=False)
    channels = array.ndim == 4
    interpolator = getattr(sitk, _SITK_INTERPOLATORS[order])

    # Borders as SciPy's mode="nearest": samples past the last voxel centre take the
    # edge value. Linear: one replicated voxel at the high end of an axis that is
    # sampled past its last centre keeps every sample inside ITK's buffer (ITK would
    # switch to nearest neighbour on all axes there). B-splines: 12 replicated voxels
    # on every side, then ITK's mirror-boundary coefficients, which is exactly how
    # SciPy builds its mode="nearest" spline (scipy.ndimage._prepad_for_spline_filter).
    last = (np.asarray(out_shape) - 1) * ratio
    if order == 0:
        low, high = np.zeros(3, int), np.zeros(3, int)
    elif order == 1:
        low, high = np.zeros(3, int), (last > in_shape - 1).astype(int)
    else:
        low = high = np.full(3, 12)

    def run(data: np.ndarray, is_vector: bool) -> np.ndarray:
        if low.any() or high.any():
            pad = list(zip(low, high, strict=True)) + [(0, 0)] * (data.ndim - 3)
            data = np.pad(data, pad, mode="edge")
        # A C-ordered (x, y, z) array read by SimpleITK is an image whose first axis is
        # our z: hand it over as is and reverse the per-axis sizes and spacings instead.
        # In voxel units (input spacing 1, identity directions, the input's origin at
        # minus its padding) the output voxel i samples input coordinate i * ratio,
        # exactly the grid above.
        image = sitk.GetImageFromArray(np.ascontiguousarray(data), isVector=is_vector)
        image.SetOrigin([-float(p) for p in low[::-1]])
        resampler = sitk.ResampleImageFilter()
        resampler.SetSize([int(s) for s in out_shape[::-1]])
        resampler.SetOutputSpacing([float(r) for r in ratio[::-1]])
        if order == 0:
            # A sample exactly half-way between two voxels (ratio 1.5: every other one)
            # takes the upper voxel in SciPy; ITK rounds half up too but computes the
            # position with rounding errors of ~1e-14 voxel along a row, so ties fell
            # either way. A shift of 1e-9 voxel settles them upwards.
            resampler.SetOutputOrigin([1e-9] * 3)
        resampler.SetInterpolator(interpolator)
        resampler.SetUseNearestNeighborExtrapolator(True)
        resampler.SetOutputPixelType(image.GetPixelID())
        return sitk.GetArrayFromImage(resampler.Execute(image))

    if channels and order <= 1:  # one pass over a vector image
        out = run(work, True)
    elif channels:  # ITK's B-splines take scalar images: one channel at a time
        out = np.stack([run(work[..., c], False) for c in range(array.shape[3])], axis=-1)
    else:
        out = run(work, False)
    if out.dtype != array.dtype and order == 0:
        out = out.view(bool) if array.dtype == bool else out.astype(array.dtype)
    affine = volume.affine @ np.diag([*ratio, 1.0])
    return volume.with_array(out, affine)


# ---------------------------------------------------------------------------------------
# 2-D images: resize and resampling to a pixel spacing, NumPy (OpenCV) and
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
    import tensorflow as tf  # imported already (a tensor came in); no autograph detour
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
        import tensorflow as tf
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


# ---------------------------------------------------------------------------------------
# Grids: resample onto an exact shape (and back), reorient by flips and permutations.
# ---------------------------------------------------------------------------------------


def resample_to_shape(volume: Any, shape: Sequence[int], *, order: int = 1) -> Any:
    """Resample a volume onto exactly ``shape`` voxels covering the same extent.

    The grid keeps the volume's outer edges (voxel ``i`` of the new grid spans
    ``[i, i + 1) * old_size / new_size`` in old voxel units, SciPy's ``grid_mode``), so
    resampling to a shape and back to the original shape returns the original grid
    exactly, as a prediction made on a resampled volume must. Channels (a trailing
    axis) are resampled independently.

    Parameters
    ----------
    volume : numpy.ndarray or medimg.io.Volume
        ``(x, y, z)`` / ``(x, y, z, c)``, or 2-D ``(rows, cols[, c])`` with a 2-value
        ``shape``. A Volume's affine follows the new grid.
    shape : sequence of int
        New sizes of the leading spatial axes.
    order : int
        Spline order (0 nearest, for labels; 1 linear; 3 cubic).

    Returns
    -------
    numpy.ndarray or medimg.io.Volume
        Order 0 keeps the dtype; higher orders return float32.

    Examples
    --------
    >>> a = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    >>> float(resample_to_shape(resample_to_shape(a, (4, 4, 4), order=0), (2, 2, 2), order=0)[1, 1, 1])
    7.0
    """
    from scipy import ndimage

    array, affine, volume_obj = _split_volume(volume)
    array = np.asarray(array)
    shape = tuple(int(s) for s in shape)
    n = len(shape)
    if n not in (2, 3) or array.ndim not in (n, n + 1) or any(s < 1 for s in shape):
        raise InvalidImageError(f"resample_to_shape: cannot take an array of shape "
                                f"{array.shape} to {shape}")
    if order not in range(6):
        raise InvalidImageError(f"order must be 0 to 5, got {order!r}")
    old = array.shape[:n]
    out_dtype = array.dtype if order == 0 else np.float32
    if tuple(old) == shape:
        out = array.astype(out_dtype, copy=False)
    else:
        zoom = [s / o for s, o in zip(shape, old, strict=True)]
        work = array if order == 0 else array.astype(np.float32, copy=False)

        def one(channel: np.ndarray) -> np.ndarray:
            out_ = ndimage.zoom(channel, zoom, order=order, mode="nearest", grid_mode=True,
                                output=out_dtype)
            return out_[tuple(slice(0, s) for s in shape)]

        if array.ndim == n + 1:
            out = np.stack([one(work[..., c]) for c in range(array.shape[-1])], axis=-1)
        else:
            out = one(work)
    if volume_obj is None:
        return out
    ratio = np.asarray(old, dtype=np.float64) / np.asarray(shape, dtype=np.float64)
    to_old = np.diag([*ratio, 1.0])
    to_old[:3, 3] = 0.5 * ratio - 0.5
    return volume_obj.with_array(out, affine @ to_old)


def reorient(volume: Any, axcodes: Sequence[str] | str = "RAS", *,
             max_oblique_deg: float | None = None, name: str | None = None) -> Any:
    """The same voxels in another axis order: flips and permutations only, no interpolation.

    The one reorientation of medimg: ``Volume.to_canonical`` is its ``"RAS"`` case, and
    results computed on a reoriented grid go back to a file's own grid with it (pass
    the file's axis codes).

    Parameters
    ----------
    volume : medimg.io.Volume
        Any orientation; ``(x, y, z)`` or ``(x, y, z, c)``.
    axcodes : str or three str
        Target codes, e.g. ``"RAS"``, ``"LPS"``, ``("R", "I", "A")``.
    max_oblique_deg : float, optional
        Refuse volumes whose voxel axes are more than this many degrees from the world
        axes they are mapped to (a flip/permutation would then not make a "sagittal"
        slice sagittal; resample instead).
    name : str, optional
        Used in error messages (default the volume's path).

    Returns
    -------
    medimg.io.Volume
        Reordered array with the matching affine (``meta`` kept).

    Raises
    ------
    InvalidImageError
        Invalid codes; too oblique; orientation not determinable from the affine.
    """
    import nibabel as nib

    from .io.volume import Volume

    if not isinstance(volume, Volume):
        raise InvalidImageError("reorient expects a medimg.io.Volume (it needs the affine)")
    codes = tuple(str(c).upper() for c in axcodes)
    pairs = [{"L", "R"}, {"A", "P"}, {"S", "I"}]
    used = [next((i for i, p in enumerate(pairs) if c in p), None) for c in codes]
    if len(codes) != 3 or None in used or sorted(used) != [0, 1, 2]:
        raise InvalidImageError(f"orientation {''.join(codes)!r} is not valid: expected one "
                                "code each of L/R, A/P and S/I (e.g. 'RAS', 'PIR')")
    who = name or volume.meta.get("path") or "volume"
    if max_oblique_deg is not None:
        rotation = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
        cosines = np.clip(np.abs(rotation).max(axis=0), 0.0, 1.0)
        oblique = float(np.degrees(np.arccos(cosines.min())))
        if not np.isfinite(oblique) or oblique > max_oblique_deg:
            raise InvalidImageError(
                f"{who}: voxel axes are {oblique:.0f} degrees oblique to the patient axes "
                f"(limit {max_oblique_deg:g}); it cannot be brought to {''.join(codes)} by "
                "flips and permutations (resample it first)")
    source = nib.orientations.io_orientation(volume.affine)
    if np.isnan(source).any():
        raise InvalidImageError(f"{who}: orientation cannot be determined from the affine")
    transform = nib.orientations.ornt_transform(source, nib.orientations.axcodes2ornt(codes))
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return volume
    shape = volume.array.shape[:3]
    array = nib.orientations.apply_orientation(volume.array, transform)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(transform, shape)
    return Volume(np.ascontiguousarray(array), affine, dict(volume.meta))
