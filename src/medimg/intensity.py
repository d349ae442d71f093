"""Intensity transforms: windowing (incl. the DICOM VOI), CLAHE, standardisation, clipping.

Every public function accepts a NumPy array (CPU path: NumPy/OpenCV) and a
``tf.Tensor`` (TensorFlow path, usable inside ``tf.data`` and ``tf.function`` and on a
GPU); both paths are tested to agree.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ._backend import is_tensor, tensorflow
from .errors import InvalidImageError

__all__ = ["clahe", "dicom_window", "standardize", "window"]


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


def _voi_parameters(ds: Any, index: int) -> dict[str, Any]:
    """The file's VOI at ``index``: a LUT (preferred, as pydicom does) or a window."""
    where = getattr(ds, "filename", None) or "<dataset>"
    sequence = ds.get("VOILUTSequence")
    if sequence:
        if index >= len(sequence):
            raise InvalidImageError(f"VOI LUT Sequence has {len(sequence)} item(s), "
                                    f"index {index} asked for", where)
        item = sequence[index]
        if item.get("LUTDescriptor") is not None and item.get("LUTData") is not None:
            from pydicom.pixels.processing import apply_voi

            n_entries, first, bits = (int(v) for v in item.LUTDescriptor)
            n_entries = n_entries or 65536
            # pydicom unpacks OW/US LUT data with the right endianness: map every entry
            # through its own implementation once
            probe = np.arange(first, first + n_entries, dtype=np.int64)
            lut = np.asarray(apply_voi(probe, ds, index), dtype=np.float64)
            return {"kind": "lut", "lut": lut / (2.0**bits - 1), "first": first}
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        raise InvalidImageError("no VOI: neither a VOI LUT Sequence nor Window Center/Width",
                                where)

    def pick(value: Any, name: str) -> float:
        values = list(value) if not isinstance(value, str | bytes) and hasattr(value, "__len__") \
            else [value]
        if index >= len(values):
            raise InvalidImageError(f"{name} has {len(values)} value(s), index {index} asked for",
                                    where)
        return float(values[index])

    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    c, w = pick(center, "WindowCenter"), pick(width, "WindowWidth")
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise InvalidImageError(f"VOI LUT Function {function!r} is not one of LINEAR, "
                                "LINEAR_EXACT, SIGMOID", where)
    if (function == "LINEAR" and w < 1) or w <= 0:
        raise InvalidImageError(f"Window Width {w} is too small for VOI LUT Function "
                                f"{function} (PS3.3 C.11.2.1.2)", where)
    return {"kind": function, "center": c, "width": w}


def dicom_window(ds: Any, image: Any, index: int = 0, *, monochrome1_inverted: bool = True,
                 frame: int | None = None) -> Any:
    """Apply the file's own VOI (window or VOI LUT), as the DICOM standard defines it.

    Implements PS3.3 C.11.2: a VOI LUT Sequence item when present (pydicom's
    preference too), else Window Center/Width with the VOI LUT Function
    ``LINEAR`` (the standard's ``c - 0.5`` and ``w - 1`` offsets), ``LINEAR_EXACT``
    or ``SIGMOID``. Multi-valued windows (e.g. a CT's soft-tissue and bone
    presets) are chosen with ``index``. The output is scaled to ``[0, 1]``:
    it equals pydicom's ``apply_voi_lut`` divided by its output range.
    Enhanced multi-frame files use each frame's Frame VOI LUT (functional groups).

    Parameters
    ----------
    ds : pydicom.Dataset
        The file's header (a header-only read is enough).
    image : numpy.ndarray or tf.Tensor
        Pixels after the Modality LUT, as :func:`medimg.io.dicom_pixels` returns
        them (any shape).
    index : int
        Which window / VOI LUT item to apply.
    monochrome1_inverted : bool
        For MONOCHROME1 files, ``image`` was inverted by ``dicom_pixels`` (the
        default there); it is mirrored back before the VOI is applied and the
        result is inverted again, so that 1 is always the densest (white).
    frame : int, optional
        Enhanced multi-frame files: the (0-based) frame ``image`` is, so its own
        window applies. Not needed when ``image`` holds every frame
        (``(frames, rows, cols)``, each frame gets its own window) or when all
        frames share one window.

    Returns
    -------
    numpy.ndarray or tf.Tensor
        float32 in ``[0, 1]``, same shape and kind as ``image``.

    Raises
    ------
    InvalidImageError
        A colour image (VOI windowing is for MONOCHROME1/2, as in pydicom), no
        VOI, ``index`` or ``frame`` out of range, frames with different windows
        and no ``frame``, or a width invalid for the VOI LUT Function.

    Examples
    --------
    >>> from pydicom import dcmread                              # doctest: +SKIP
    >>> ds = dcmread(get_testdata_file("MR_small.dcm"))           # doctest: +SKIP
    >>> shown = dicom_window(ds, medimg.io.dicom_pixels(ds))      # doctest: +SKIP
    """
    from .io.dicom import voi_datasets

    views = voi_datasets(ds, image, frame)  # colour refused; enhanced: the frames' own VOI
    if len(views) > 1:  # every frame of an enhanced file, each with its own window
        frames = [dicom_window(v, image[i], index, monochrome1_inverted=monochrome1_inverted)
                  for i, v in enumerate(views)]
        return tensorflow().stack(frames) if is_tensor(image) else np.stack(frames)
    ds = views[0]
    voi = _voi_parameters(ds, index)
    monochrome1 = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    mirror = None
    if monochrome1 and monochrome1_inverted:
        from .io.dicom import modality_range

        low, high = modality_range(ds)
        mirror = low + high
    if is_tensor(image):
        tf = tensorflow()
        x = tf.cast(image, tf.float32)
        if mirror is not None:
            x = tf.constant(mirror, tf.float32) - x
        if voi["kind"] == "lut":
            lut = tf.constant(voi["lut"], tf.float32)
            positions = tf.cast(tf.floor(x), tf.int64) - voi["first"]
            y = tf.gather(lut, tf.clip_by_value(positions, 0, len(voi["lut"]) - 1))
        elif voi["kind"] == "SIGMOID":
            y = tf.sigmoid(4.0 * (x - voi["center"]) / voi["width"])
        else:
            c, w = voi["center"], voi["width"]
            if voi["kind"] == "LINEAR":
                c, w = c - 0.5, w - 1.0
            y = tf.clip_by_value((x - c) / w + 0.5, 0.0, 1.0) if w > 0 else \
                tf.cast(x > c, tf.float32)
        return 1.0 - y if monochrome1 else y
    x = np.asarray(image, dtype=np.float64)
    if mirror is not None:
        x = mirror - x
    if voi["kind"] == "lut":
        positions = np.floor(x).astype(np.int64) - voi["first"]
        y = voi["lut"][np.clip(positions, 0, len(voi["lut"]) - 1)]
    elif voi["kind"] == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - voi["center"]) / voi["width"]))
    else:
        c, w = voi["center"], voi["width"]
        if voi["kind"] == "LINEAR":
            c, w = c - 0.5, w - 1.0
        # LINEAR with width 1 is a threshold (w - 1 = 0): below/at c -> 0, above -> 1
        y = np.clip((x - c) / w + 0.5, 0.0, 1.0) if w > 0 else (x > c).astype(np.float64)
    y = y.astype(np.float32)
    return np.float32(1.0) - y if monochrome1 else y


def _clahe_params(clip_limit: float, tile_grid: Any) -> tuple[float, int, int]:
    try:
        tiles_y, tiles_x = (int(t) for t in tile_grid)
    except (TypeError, ValueError):
        raise InvalidImageError(
            f"clahe: tile_grid must be two positive integers (rows, cols), got {tile_grid!r}"
        ) from None
    if tiles_y < 1 or tiles_x < 1:
        raise InvalidImageError(
            f"clahe: tile_grid must be two positive integers (rows, cols), got {tile_grid!r}")
    clip = float(clip_limit)
    if not np.isfinite(clip):
        raise InvalidImageError(f"clahe: clip_limit must be a finite number, got {clip_limit!r}")
    return clip, tiles_y, tiles_x


def clahe(image: Any, clip_limit: float = 4.0, tile_grid: tuple[int, int] = (8, 8)) -> Any:
    """Contrast-limited adaptive histogram equalisation (CLAHE), OpenCV's algorithm.

    The image is cut into ``tile_grid`` tiles; each tile's histogram is clipped at
    ``clip_limit`` times the mean bin count (the clipped excess is spread over all
    bins, the integer remainder one count every ``bins // remainder`` bins), its
    cumulative sum becomes a grey-level map, and every pixel takes the bilinear
    blend of the maps of the four nearest tile centres. When the image size is
    not a multiple of the grid along both axes, tiles are measured on the image
    padded at the bottom and right by mirror reflection (OpenCV's
    ``BORDER_REFLECT_101``) by ``tiles - size % tiles`` on each axis, a whole tile
    on an axis that divides (OpenCV's rule, kept on purpose). Images smaller than
    the grid work as in OpenCV (the reflection repeats; tiles of one pixel).

    NumPy input runs :func:`cv2.createCLAHE`. ``tf.Tensor`` input runs a
    TensorFlow implementation of the same steps in the same arithmetic that
    equals OpenCV's output exactly (tested on every size class: both axes
    divisible, one, neither, odd, smaller than the grid; 8 and 16 bits). It takes
    one image or a batch, works inside ``tf.data`` and ``tf.function`` (also with
    unknown shapes or rank, e.g. ``reduce_retracing=True``) and on a GPU, so a
    model trained on GPU-processed pixels sees the same pixels on a CPU. Its two
    heavy passes (all tile histograms in one ``bincount``; the four map reads and
    the blend) are XLA-compiled, once per input shape (about 0.3 s each); on a
    2-core CPU a batch of 512x512 images takes 1-3x OpenCV's time per image.
    16-bit images are processed one at a time (a tile map has 65536 entries).
    Parameters
    ----------
    image : numpy.ndarray or tf.Tensor, uint8 or uint16
        ``(rows, cols)``, or a stack ``(n, rows, cols)``, or ``(rows, cols, 1)`` /
        ``(n, rows, cols, 1)``. Other dtypes raise: convert first (for example
        :func:`window` then ``* 255`` cast to uint8), since CLAHE's maps are
        defined over integer grey levels.
    clip_limit : float
        Contrast limit, in multiples of the mean histogram bin count (OpenCV's
        ``clipLimit``); ``<= 0`` disables clipping (plain adaptive equalisation).
    tile_grid : (int, int)
        Number of tiles along rows and columns (OpenCV's ``tileGridSize``, given
        as ``(rows, cols)`` here, i.e. ``(tilesY, tilesX)``).

    Returns
    -------
    numpy.ndarray or tf.Tensor
        Same shape, dtype and kind as ``image``.

    Raises
    ------
    InvalidImageError
        Wrong dtype, rank, more than one channel, an empty image, or invalid
        parameters. A tensor whose shape is only known when the graph runs is
        checked then, with ``tf.errors.InvalidArgumentError``.

    Examples
    --------
    >>> img = (np.arange(64 * 64) % 97).astype(np.uint8).reshape(64, 64)
    >>> clahe(img, clip_limit=2.0, tile_grid=(4, 4)).dtype
    dtype('uint8')
    """
    clip, tiles_y, tiles_x = _clahe_params(clip_limit, tile_grid)
    if is_tensor(image):
        return _clahe_tf(image, clip, tiles_y, tiles_x)
    return _clahe_numpy(np.asarray(image), clip, tiles_y, tiles_x)


def _clahe_layout(shape: tuple, dtype_name: str) -> str:
    """``"image"`` (rows, cols), ``"image1"`` (rows, cols, 1), ``"stack"`` (n, rows, cols)
    or ``"stack1"`` (n, rows, cols, 1); raises for anything else. Unknown sizes
    (``None``) pass; a 3-D shape whose last size is unknown is ``"image1?"`` (decided
    when the size is known, at run time)."""
    if dtype_name not in ("uint8", "uint16"):
        raise InvalidImageError(
            f"clahe: expected a uint8 or uint16 image, got dtype {dtype_name} "
            "(scale to 0-255 and cast to uint8 first)")
    rank = len(shape)
    if rank == 2:
        layout, rows, cols = "image", shape[0], shape[1]
    elif rank == 3 and shape[-1] is None:
        layout, rows, cols = "image1?", shape[0], shape[1]
    elif rank == 3 and shape[-1] == 1:
        layout, rows, cols = "image1", shape[0], shape[1]
    elif rank == 3:
        layout, rows, cols = "stack", shape[1], shape[2]
    elif rank == 4 and shape[-1] in (1, None):
        layout, rows, cols = "stack1", shape[1], shape[2]
    else:
        raise InvalidImageError(
            f"clahe: expected shape (rows, cols), (n, rows, cols), (rows, cols, 1) or "
            f"(n, rows, cols, 1) (one channel), got {tuple(shape)}")
    if rows == 0 or cols == 0:
        raise InvalidImageError(f"clahe: the image is empty (shape {tuple(shape)})")
    return layout


def _clahe_numpy(image: np.ndarray, clip: float, tiles_y: int, tiles_x: int) -> np.ndarray:
    import cv2

    layout = _clahe_layout(image.shape, image.dtype.name)
    op = cv2.createCLAHE(clipLimit=max(clip, 0.0), tileGridSize=(tiles_x, tiles_y))
    if layout == "image":
        return op.apply(np.ascontiguousarray(image))
    if layout == "image1":
        return op.apply(np.ascontiguousarray(image[..., 0]))[..., None]
    stack = image[..., 0] if layout == "stack1" else image
    out = np.empty_like(stack)
    for i in range(stack.shape[0]):
        out[i] = op.apply(np.ascontiguousarray(stack[i]))
    return out[..., None] if layout == "stack1" else out


# ---------------------------------------------------------------------------------------
# TensorFlow CLAHE. OpenCV's algorithm (modules/imgproc/src/clahe.cpp) step for step, in
# the same arithmetic, so that the output equals cv2.createCLAHE's:
#   1. tiles are measured on the image padded at the bottom and right by mirror reflection
#      (BORDER_REFLECT_101) with ``tiles - n % tiles`` rows/columns on BOTH axes unless
#      both sides divide (so a side that divides gains a whole tile);
#   2. histogram of every tile; clip at ``limit = max(int(clip * area / bins), 1)`` (double
#      arithmetic), the excess spread as ``excess // bins`` on every bin plus one count on
#      bins 0, step, 2 step, ... (step = max(bins // remainder, 1)) until it is used up;
#   3. map = round_half_even(cumsum * float32((bins - 1) / area)), saturated;
#   4. each pixel: float32 bilinear blend of the maps of the four nearest tile centres,
#      ``(a (1-xa) + b xa) (1-ya) + (c (1-xa) + d xa) ya``, rounded half to even.
# The two heavy passes (tile histograms, blend) are XLA-compiled: XLA fuses the index
# arithmetic, the four map reads and the blend into one loop over the pixels (as separate
# TensorFlow ops each full-size intermediate costs a memory pass, and TensorFlow's gather
# kernel is several times slower than a fused read). XLA compiles once per input shape.
# ---------------------------------------------------------------------------------------


def _clahe_geometry(tf: Any, rows: Any, cols: Any, tiles_y: int, tiles_x: int) -> tuple:
    """Padding and tile size, OpenCV's rule: no padding when both sides divide, else
    ``tiles - n % tiles`` on both axes (a whole tile on a side that divides)."""
    divides = tf.logical_and(tf.equal(rows % tiles_y, 0), tf.equal(cols % tiles_x, 0))
    pad_y = tf.where(divides, 0, tiles_y - rows % tiles_y)
    pad_x = tf.where(divides, 0, tiles_x - cols % tiles_x)
    return pad_y, pad_x, (rows + pad_y) // tiles_y, (cols + pad_x) // tiles_x


def _reflect_101(tf: Any, index: Any, length: Any) -> Any:
    """Source index of ``index`` (>= 0) under BORDER_REFLECT_101 (``dcb|abcd|cba``),
    repeated as often as needed (a pad longer than the image, as for tiny images), and
    0 for a single row (OpenCV's ``borderInterpolate``)."""
    period = tf.maximum(2 * (length - 1), 1)
    folded = index % period
    return tf.where(folded < length, folded, period - folded)


@functools.cache
def _clahe_tf_kernels() -> tuple:
    """The two XLA-compiled passes (built once, on first use: TensorFlow is imported
    lazily). ``reduce_retracing``: one trace serves every shape (XLA still compiles per
    concrete shape, once)."""
    tf = tensorflow()

    @tf.function(jit_compile=True, reduce_retracing=True)
    def tile_maps(batch, clip, tiles_y, tiles_x, n_bins):
        """Grey-level maps of every tile of every image, flat ``(n * tiles * bins,)``."""
        dims = tf.shape(batch)
        n, rows, cols = dims[0], dims[1], dims[2]
        pad_y, pad_x, tile_h, tile_w = _clahe_geometry(tf, rows, cols, tiles_y, tiles_x)
        area = tile_h * tile_w
        padded_rows = tf.range(rows + pad_y)
        padded_cols = tf.range(cols + pad_x)
        values = tf.cast(batch, tf.int32)
        padded = tf.gather(tf.gather(values, _reflect_101(tf, padded_rows, rows), axis=1),
                           _reflect_101(tf, padded_cols, cols), axis=2)
        # every tile's histogram in one bincount: each pixel's grey level is offset by
        # its (image, tile row, tile column) index times the number of bins
        tile = ((tf.range(n)[:, None, None] * tiles_y + (padded_rows // tile_h)[None, :, None])
                * tiles_x + (padded_cols // tile_w)[None, None, :])
        n_maps = n * tiles_y * tiles_x
        hist = tf.raw_ops.DenseBincount(input=tf.reshape(padded + tile * n_bins, [-1]),
                                        size=n_maps * n_bins, weights=tf.zeros([0], tf.int32))
        hist = tf.reshape(hist, [n_maps, n_bins])
        # ``clip`` is a float64 tensor (one compilation serves every clip limit); a
        # limit above the tile's area clips nothing, which is also how ``clip <= 0``
        # (no clipping) is expressed, and the bound keeps the float-to-int cast exact
        limit = clip * tf.cast(area, tf.float64) / n_bins
        limit = tf.maximum(tf.cast(tf.minimum(limit, tf.cast(area + 1, tf.float64)), tf.int32),
                           1)
        limit = tf.where(clip > 0, limit, area + 1)
        excess = tf.reduce_sum(tf.maximum(hist - limit, 0), axis=1, keepdims=True)
        spread = excess // n_bins
        remainder = excess - spread * n_bins
        step = tf.maximum(n_bins // tf.maximum(remainder, 1), 1)
        bins = tf.range(n_bins)[None, :]
        # bin b gets one more count when b = k * step with k < remainder; k = b / step is
        # found in float32 (exact for b, step < 2**16: the rounding error of a multiple
        # is far below 0.5) and checked in integers, without an integer division per bin
        k = tf.cast(tf.round(tf.cast(bins, tf.float32) / tf.cast(step, tf.float32)), tf.int32)
        extra = tf.logical_and(tf.equal(k * step, bins), k < remainder)
        hist = tf.minimum(hist, limit) + spread + tf.cast(extra, tf.int32)
        scale = tf.cast(n_bins - 1, tf.float32) / tf.cast(area, tf.float32)
        maps = tf.round(tf.cast(tf.cumsum(hist, axis=1), tf.float32) * scale)
        maps = tf.clip_by_value(maps, 0.0, float(n_bins - 1))
        # integer maps: the blend reads a quarter (8-bit) of the bytes of float32 maps
        return tf.reshape(tf.cast(maps, batch.dtype), [-1])

    @tf.function(jit_compile=True, reduce_retracing=True)
    def blend(batch, maps, upper, lower, y_weight, left, right, x_weight, zero):
        """Bilinear blend of the four nearest tile maps at every pixel (OpenCV's order
        of float32 operations), rounded half to even and saturated."""

        def product(a, b):
            # a * b rounded to float32 on its own. XLA's CPU and GPU back ends fuse
            # ``a * b + c`` into one fused multiply-add (one rounding instead of two),
            # which moves a few pixels per image by one grey level against OpenCV's
            # separate multiply and add. OR-ing the product's bits with a run-time zero
            # is an identity the compiler cannot see through, so no fusion happens.
            bits = tf.bitwise.bitwise_or(tf.bitcast(a * b, tf.int32), zero)
            return tf.bitcast(bits, tf.float32)

        values = tf.cast(batch, tf.int32)
        top_row, bottom_row = values + upper, values + lower
        def read(index):
            return tf.cast(tf.gather(maps, index), tf.float32)

        x_other = 1.0 - x_weight
        top = product(read(top_row + left), x_other) + product(read(top_row + right), x_weight)
        bottom = (product(read(bottom_row + left), x_other)
                  + product(read(bottom_row + right), x_weight))
        out = product(top, 1.0 - y_weight) + product(bottom, y_weight)
        limit = 255.0 if batch.dtype == tf.uint8 else 65535.0
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, limit), batch.dtype)

    return tile_maps, blend


def _clahe_tf_batch(batch: Any, clip: float, tiles_y: int, tiles_x: int) -> Any:
    """CLAHE of a ``(n, rows, cols)`` uint8/uint16 tensor (any static shape)."""
    tf = tensorflow()
    tile_maps, blend = _clahe_tf_kernels()
    n_bins = 256 if batch.dtype == tf.uint8 else 65536
    maps = tile_maps(batch, tf.constant(clip, tf.float64), tiles_y, tiles_x, n_bins)
    dims = tf.shape(batch)
    n, rows, cols = dims[0], dims[1], dims[2]
    _, _, tile_h, tile_w = _clahe_geometry(tf, rows, cols, tiles_y, tiles_x)

    def axis(length, tile_size, n_tiles):
        # OpenCV: t = i * float32(1 / tile) - 0.5; the two tiles floor(t) and floor(t) + 1
        # clamped to the grid, the weight t - floor(t) (tiles beyond the grid repeat the
        # edge tile, so the weight does not matter there)
        position = tf.cast(tf.range(length), tf.float32) * (
            1.0 / tf.cast(tile_size, tf.float32)) - 0.5
        first = tf.floor(position)
        weight = position - first
        first = tf.cast(first, tf.int32)
        return tf.maximum(first, 0), tf.minimum(first + 1, n_tiles - 1), weight

    ty1, ty2, y_weight = axis(rows, tile_h, tiles_y)
    tx1, tx2, x_weight = axis(cols, tile_w, tiles_x)
    # the flat index of (image, tile row, tile column, grey level) in the maps, from a
    # per-row and a per-column part: small arrays, so the blend adds them per pixel
    image_offset = tf.range(n)[:, None, None] * (tiles_y * tiles_x * n_bins)
    upper = image_offset + (ty1 * (tiles_x * n_bins))[None, :, None]
    lower = image_offset + (ty2 * (tiles_x * n_bins))[None, :, None]
    return blend(batch, maps, upper, lower, y_weight[None, :, None],
                 (tx1 * n_bins)[None, None, :], (tx2 * n_bins)[None, None, :],
                 x_weight[None, None, :], tf.zeros([], tf.int32))


def _clahe_tf(image: Any, clip: float, tiles_y: int, tiles_x: int) -> Any:
    tf = tensorflow()
    image = tf.convert_to_tensor(image)
    if image.shape.rank is not None:
        _clahe_layout(tuple(image.shape.as_list()), image.dtype.name)
    elif image.dtype not in (tf.uint8, tf.uint16):
        _clahe_layout((1, 1), image.dtype.name)  # raises the dtype error
    return _clahe_tf_graph()(image, clip, tiles_y, tiles_x)


@functools.cache
def _clahe_tf_graph() -> Any:
    """One graph for the whole TensorFlow CLAHE (eager callers would otherwise pay
    TensorFlow's per-op dispatch for the small index arrays), valid for any rank and
    size: the layout is read from the run-time shape."""
    tf = tensorflow()

    @tf.function(reduce_retracing=True)
    def run(image, clip, tiles_y, tiles_x):
        shape = tf.shape(image)
        rank = tf.size(shape)
        checks = [tf.debugging.Assert(
            tf.logical_and(rank >= 2, rank <= 4),
            ["clahe: expected shape (rows, cols), (n, rows, cols), (rows, cols, 1) or "
             "(n, rows, cols, 1), got", shape], summarize=8)]
        # as (n, rows, cols): rank 2 -> (1, r, c); (r, c, 1) -> (1, r, c);
        # (n, r, c) -> (n, r, c); (n, r, c, 1) -> (n, r, c)
        four = tf.concat([tf.ones([tf.maximum(4 - rank, 0)], tf.int32), shape], 0)[-4:]
        channel = tf.logical_or(tf.equal(rank, 4),
                                tf.logical_and(tf.equal(rank, 3), tf.equal(four[3], 1)))
        checks.append(tf.debugging.Assert(
            tf.logical_or(tf.not_equal(rank, 4), tf.equal(four[3], 1)),
            ["clahe: a 4-D input must have one channel, got shape", shape], summarize=8))
        stack_shape = tf.where(channel, four[:3], four[1:])
        checks.append(tf.debugging.Assert(
            tf.reduce_all(stack_shape[1:] > 0), ["clahe: the image is empty, shape", shape],
            summarize=8))
        with tf.control_dependencies(checks):
            batch = tf.reshape(image, stack_shape)
        if image.dtype == tf.uint8:
            out = _clahe_tf_batch(batch, clip, tiles_y, tiles_x)
        else:
            # 16-bit maps hold 65536 grey levels per tile (16 MiB of counts per image on
            # an 8x8 grid): one image at a time bounds the memory whatever the batch
            out = tf.map_fn(lambda one: _clahe_tf_batch(one[None], clip, tiles_y, tiles_x)[0],
                            batch, parallel_iterations=1)
        out = tf.reshape(out, shape)
        out.set_shape(image.shape)
        return out

    return run


def standardize(
    x: Any,
    mask: Any = None,
    *,
    channel_axis: int | str | None = "auto",
    fill_outside: float | None = None,
    eps: float = 1e-6,
) -> Any:
    """Z-score standardisation per channel: ``(x - mean) / std``, optionally over a mask.

    MRI intensities have no units (the same tissue differs between scanners and
    even between sessions), so each sequence is rescaled to mean 0 and standard
    deviation 1 over the brain before it goes into a network.

    Parameters
    ----------
    x : numpy.ndarray or tf.Tensor
        E.g. ``(x, y, z)``, ``(x, y, z, c)`` or a batch ``(n, x, y, z, c)``.
    mask : numpy.ndarray or tf.Tensor of bool, optional
        Where the statistics are computed (e.g. the brain, ``image[..., 0] > 0``);
        shape of ``x`` without its channel axis. Default: every voxel.
    channel_axis : int, None or "auto"
        Axis of channels, each standardised on its own. ``"auto"`` means the last
        axis for 4-D and 5-D inputs (channels-last volumes and batches) and no
        channels otherwise (pass ``-1`` for a 2-D image with channels).
    fill_outside : float, optional
        Value given to voxels outside ``mask`` (e.g. 0 for the background);
        default: they are standardised like the rest.
    eps : float
        A channel whose standard deviation is below ``eps`` is only centred (divided
        by 1), so constant input gives zeros, never NaN or inf.

    Returns
    -------
    numpy.ndarray or tf.Tensor
        float32, same shape and kind as ``x``. With an empty mask the statistics
        fall back to mean 0 and std 1 (values unchanged).

    Examples
    --------
    >>> standardize(np.array([1.0, 2.0, 3.0]))
    array([-1.2247449,  0.       ,  1.2247449], dtype=float32)
    """
    ndim = len(x.shape)
    if channel_axis == "auto":
        channel_axis = -1 if ndim in (4, 5) else None
    if channel_axis is not None:
        channel_axis = int(channel_axis) % ndim
    reduce = tuple(a for a in range(ndim) if a != channel_axis)
    if is_tensor(x) or is_tensor(mask):
        tf = tensorflow()
        x = tf.cast(x, tf.float32)
        if mask is None:
            weight = tf.ones_like(x)
        else:
            weight = tf.cast(tf.cast(mask, tf.bool), tf.float32)
            if channel_axis is not None:
                weight = tf.expand_dims(weight, channel_axis)
            weight = tf.broadcast_to(weight, tf.shape(x))
        count = tf.reduce_sum(weight, axis=reduce, keepdims=True)
        safe = tf.maximum(count, 1.0)
        mean = tf.reduce_sum(x * weight, axis=reduce, keepdims=True) / safe
        var = tf.reduce_sum(tf.square(x - mean) * weight, axis=reduce, keepdims=True) / safe
        std = tf.sqrt(var)
        std = tf.where(std < eps, tf.ones_like(std), std)
        out = (x - mean) / std
        if mask is not None and fill_outside is not None:
            out = tf.where(weight > 0, out, tf.fill(tf.shape(out), float(fill_outside)))
        return out
    x = np.asarray(x, dtype=np.float32)
    if mask is None:
        selected = None
    else:
        selected = np.asarray(mask, dtype=bool)
        expected = tuple(s for a, s in enumerate(x.shape) if a != channel_axis)
        if selected.shape != expected:
            raise InvalidImageError(f"mask has shape {selected.shape}, expected {expected}")
        if channel_axis is not None:
            selected = np.expand_dims(selected, channel_axis)
    # float64 accumulation: float32 sums over ~10^7 voxels lose digits.
    if selected is None:
        mean = x.mean(axis=reduce, keepdims=True, dtype=np.float64)
        std = x.std(axis=reduce, keepdims=True, dtype=np.float64)
    else:
        weight = np.broadcast_to(selected, x.shape)
        count = np.maximum(weight.sum(axis=reduce, keepdims=True), 1)
        mean = np.where(weight, x, 0).sum(axis=reduce, keepdims=True, dtype=np.float64) / count
        sq = np.where(weight, (x - mean) ** 2, 0)
        std = np.sqrt(sq.sum(axis=reduce, keepdims=True, dtype=np.float64) / count)
    std = np.where(std < eps, 1.0, std)
    out = ((x - mean) / std).astype(np.float32)
    if selected is not None and fill_outside is not None:
        out = np.where(np.broadcast_to(selected, x.shape), out, np.float32(fill_outside))
    return out
