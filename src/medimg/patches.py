"""Patches of volumes: foreground-aware sampling, grid patches, sliding-window prediction.

Training a 3-D network on whole MRI scans does not fit in memory, so it is trained on
sub-volumes ("patches") that hold enough tumour to learn from, and applied to whole
scans window by window. This module does both, for 3-D volumes ``(x, y, z[, c])`` and
2-D images ``(rows, cols[, c])`` alike (the spatial rank is ``len(patch_shape)``).

Sampling never tries and rejects: the number of foreground voxels under every possible
patch position is computed at once from cumulative sums of the foreground (a summed-area
table, one separable pass per axis), the positions that satisfy the background threshold
are the allowed ones, and ``n`` distinct starts are drawn from them. Each patch is then
copied out once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._parallel import shared_copy
from .errors import InvalidImageError, PatchError

__all__ = [
    "PatchSampler",
    "allowed_start_indices",
    "allowed_starts",
    "channel_statistics",
    "gaussian_weights",
    "grid_patches",
    "grid_starts",
    "patch_starts",
    "sample_patches",
    "sliding_window_predict",
]


def _rng(rng: Any) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_patch_shape(spatial_shape: Sequence[int], patch_shape: Sequence[int],
                       what: str = "volume") -> tuple[int, ...]:
    try:
        patch = tuple(int(p) for p in patch_shape)
    except (TypeError, ValueError):
        raise PatchError(f"patch_shape must be a sequence of integers, got {patch_shape!r}") \
            from None
    if len(patch) != len(spatial_shape):
        raise PatchError(
            f"patch_shape {patch} has {len(patch)} axes but the {what}'s spatial shape "
            f"{tuple(spatial_shape)} has {len(spatial_shape)}")
    if any(p < 1 for p in patch):
        raise PatchError(f"patch_shape {patch} must be positive along every axis")
    return patch


def _window_sums(mask: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """Number of True voxels under every patch position (start ``i`` covers
    ``i .. i + patch - 1``), shape ``spatial - patch + 1``.

    Separable running sums (a summed-area table, one axis at a time) over the bounding
    box of the True voxels only: a tumour fills a few percent of a scan, so the work is
    proportional to the tumour's box and the number of positions, not to the volume.
    Along each axis, the window ``[s, s + p)`` is clipped to the box and its count read
    as the difference of two cumulative sums.
    """
    box = []
    for axis in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append((int(hits[0]), int(hits[-1]) + 1))
    counts = mask[tuple(slice(a, b) for a, b in box)].astype(np.int32)
    for axis, (p, (b0, b1)) in enumerate(zip(patch, box, strict=True)):
        starts = np.arange(mask.shape[axis] - p + 1)
        low = np.clip(starts - b0, 0, b1 - b0)
        high = np.clip(starts + p - b0, 0, b1 - b0)
        pad = [(0, 0)] * counts.ndim
        pad[axis] = (1, 0)
        csum = np.pad(np.cumsum(counts, axis=axis, dtype=np.int64 if counts.size >= 2**31
                                else np.int32), pad)
        counts = np.take(csum, high, axis=axis) - np.take(csum, low, axis=axis)
    return counts


def _allowed_flat(label: np.ndarray, patch_shape: Sequence[int],
                  max_background: float) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """Flat indices (into the grid of starts) of the allowed starts, and that grid's
    shape; ``None`` for "every position" (``max_background`` of 1)."""
    label = np.asarray(label)
    patch = _check_patch_shape(label.shape, patch_shape, "label")
    if any(p > s for p, s in zip(patch, label.shape, strict=True)):
        raise PatchError(
            f"patch_shape {patch} is larger than the volume {label.shape} along at least one "
            "axis; use a smaller patch or pad the volume (medimg.spatial.crop_or_pad)")
    if not 0.0 <= float(max_background) <= 1.0:
        raise PatchError(f"max_background must lie in [0, 1], got {max_background!r}")
    grid = tuple(s - p + 1 for s, p in zip(label.shape, patch, strict=True))
    needed = math.ceil((1.0 - float(max_background)) * math.prod(patch) - 1e-9)
    if needed <= 0:
        return None, grid
    foreground = label != 0
    total = int(np.count_nonzero(foreground))
    if total == 0:
        raise PatchError(
            "label volume is empty (no foreground voxel), so no patch can have at most "
            f"{max_background:.0%} background; skip this subject or set max_background=1")
    if total < needed:
        raise PatchError(
            f"label has {total} foreground voxels but a patch of {patch} needs at least "
            f"{needed} for at most {max_background:.0%} background; use a smaller patch or "
            "a higher max_background")
    counts = _window_sums(foreground, patch)
    flat = np.flatnonzero(counts >= needed)
    if flat.size == 0:
        raise PatchError(
            f"no position of a {patch} patch has at most {max_background:.0%} background "
            f"(the best has {1 - counts.max() / math.prod(patch):.1%}); use a smaller patch "
            "or a higher max_background")
    return flat, grid


def allowed_starts(label: np.ndarray, patch_shape: Sequence[int], *,
                   max_background: float = 0.96) -> np.ndarray:
    """Every patch start whose patch has at most ``max_background`` background.

    Background is label 0; everything else is foreground. This is what a subject's
    label allows, worked out once; :func:`patch_starts` draws from it.

    Parameters
    ----------
    label : numpy.ndarray, integer or bool, spatial shape
        Label map (0 = background).
    patch_shape : sequence of int
        Patch size per spatial axis; not larger than the label.
    max_background : float in [0, 1]
        Largest allowed fraction of background voxels in a patch (1 allows any patch).

    Returns
    -------
    numpy.ndarray, int64, shape (M, ndim)
        Allowed starts (the patch's lowest corner), in C order.

    Raises
    ------
    PatchError
        Patch larger than the label, bad threshold, empty label (with
        ``max_background < 1``), or no position satisfies the threshold.
    """
    flat, grid = _allowed_flat(label, patch_shape, max_background)
    if flat is None:
        flat = np.arange(math.prod(grid))
    return np.stack(np.unravel_index(flat, grid), axis=1)


def allowed_start_indices(label: np.ndarray, patch_shape: Sequence[int], *,
                          max_background: float = 0.96) -> tuple[np.ndarray | None,
                                                                 tuple[int, ...]]:
    """The allowed starts of :func:`allowed_starts` as flat indices into the grid of starts.

    The compact form a cache stores (sorted, so runs of consecutive starts can be
    stored as ``(first, length)`` pairs).

    Returns
    -------
    flat : numpy.ndarray of int64, shape (M,), sorted; or None
        ``None`` when every position is allowed (``max_background`` high enough).
    grid : tuple of int
        Shape of the grid of starts (``spatial - patch + 1``); a flat index ``i`` is the
        start ``numpy.unravel_index(i, grid)``.

    Raises
    ------
    PatchError
        As :func:`allowed_starts`.
    """
    flat, grid = _allowed_flat(label, patch_shape, max_background)
    return (None if flat is None else flat.astype(np.int64, copy=False)), grid


def patch_starts(label: np.ndarray, patch_shape: Sequence[int], n: int, *,
                 max_background: float = 0.96, rng: Any = None) -> np.ndarray:
    """``n`` distinct random starts of patches with at most ``max_background`` background.

    Parameters
    ----------
    label, patch_shape, max_background
        As in :func:`allowed_starts`.
    n : int
        Number of starts.
    rng : numpy.random.Generator or int, optional
        Randomness (a seed or a generator).

    Returns
    -------
    numpy.ndarray, int64, shape (n, ndim)

    Raises
    ------
    PatchError
        As :func:`allowed_starts`, or fewer than ``n`` allowed positions.
    """
    if int(n) < 0:
        raise PatchError(f"n must be a non-negative integer, got {n!r}")
    flat, grid = _allowed_flat(label, patch_shape, max_background)
    return _draw(flat, grid, int(n), rng, max_background)


def _draw(flat: np.ndarray | None, grid: tuple[int, ...], n: int, rng: Any,
          max_background: float) -> np.ndarray:
    available = math.prod(grid) if flat is None else len(flat)
    if n > available:
        raise PatchError(
            f"asked for {n} distinct patches but only {available} positions have at most "
            f"{max_background:.0%} background")
    chosen = _rng(rng).choice(available, size=n, replace=False)
    if flat is not None:
        chosen = flat[chosen]
    return np.stack(np.unravel_index(chosen, grid), axis=1).astype(np.int64)


def _all_finite(array: np.ndarray) -> bool:
    """True when no element is NaN or infinite: one BLAS dot product (NaN and inf
    propagate into the sum) instead of a boolean array the size of the volume."""
    flat = array.reshape(-1) if array.flags.c_contiguous else np.ravel(array)
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float32)
    width = 1024
    rows = flat.size // width
    with np.errstate(over="ignore", invalid="ignore"):
        total = (flat[: rows * width].reshape(rows, width) @ np.ones(width, flat.dtype)).sum() \
            + flat[rows * width:].sum()
    if np.isfinite(total):
        return True
    return bool(np.all(np.isfinite(flat)))  # an overflow of a finite sum is not an error


def _check_image(image: np.ndarray, spatial_shape: tuple[int, ...], what: str, *,
                 check_finite: bool = True) -> np.ndarray:
    image = np.asarray(image)
    if image.shape[: len(spatial_shape)] != spatial_shape or image.ndim > len(spatial_shape) + 1:
        raise InvalidImageError(
            f"image has shape {image.shape}, expected {spatial_shape} or {spatial_shape} + "
            f"(channels,) to match the {what}")
    if check_finite and image.dtype.kind == "f" and not _all_finite(image):
        bad = np.argwhere(~np.isfinite(image))[0]
        raise InvalidImageError(
            f"image holds NaN or infinite voxels (first at index {tuple(int(i) for i in bad)})")
    return image


def channel_statistics(image: np.ndarray, mask: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each channel, over a mask (float32).

    The same statistics as :func:`medimg.intensity.standardize` uses (to float32
    precision), computed in two cache-sized blocked BLAS passes (sums, then centred
    sums of squares, so a large offset costs no precision) without copying the
    masked voxels out. A channel with a standard deviation below 1e-6 gets 1 (it is only
    centred), an empty mask gives mean 0 and std 1.

    Parameters
    ----------
    image : numpy.ndarray, shape (*spatial, c)
        Channels last.
    mask : numpy.ndarray of bool (shape spatial) or "nonzero", optional
        Where to compute the statistics: an array (e.g. the brain), or ``"nonzero"``
        for the voxels whose first channel is not zero (the brain of a skull-stripped
        MRI, found on the way without a separate pass). Default: every voxel.

    Returns
    -------
    mean, std : numpy.ndarray, float32, shape (c,)
        NaN when the image holds NaN or infinite values (inside the mask or not).
    """
    image = np.asarray(image)
    channels = image.shape[-1]
    rows = image.reshape(-1, channels)
    weight = None
    nonzero = isinstance(mask, str)
    if nonzero:
        if mask != "nonzero":
            raise InvalidImageError(f"mask must be an array or 'nonzero', got {mask!r}")
    elif mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape[:-1]:
            raise InvalidImageError(
                f"mask has shape {mask.shape}, expected the image's spatial shape "
                f"{image.shape[:-1]}")
        weight = mask.reshape(-1).view(np.uint8)
    def weights(first: int, chunk: np.ndarray) -> np.ndarray:
        if nonzero:
            return (chunk[:, 0] != 0).astype(np.float32)
        if weight is None:
            return np.ones(len(chunk), np.float32)
        return weight[first:first + len(chunk)].astype(np.float32)

    # Blocks of rows small enough to stay in cache: float32 BLAS inside a block (exact
    # enough for 2^16 terms), float64 across blocks; the second pass re-reads each
    # block once for the centred squares, so a large offset costs no precision.
    block = 1 << 16
    sums = np.zeros(channels, np.float64)
    count = 0.0
    for first in range(0, len(rows), block):
        chunk = rows[first:first + block].astype(np.float32, copy=False)
        w = weights(first, chunk)
        sums += w @ chunk
        count += float(w.sum(dtype=np.float64))
    if count == 0:
        return np.zeros(channels, np.float32), np.ones(channels, np.float32)
    mean = sums / count
    if not np.all(np.isfinite(mean)):  # NaN/inf voxels: the caller reports them
        return mean.astype(np.float32), np.full(channels, np.nan, np.float32)
    mean32 = mean.astype(np.float32)
    # rows of `channels` values are merged 16 at a time so that the subtraction runs
    # over a long inner loop (a broadcast over 4 values is several times slower)
    merge = 16
    tiled_mean = np.tile(mean32, merge)
    squares = np.zeros(channels, np.float64)
    for first in range(0, len(rows), block):
        chunk = rows[first:first + block].astype(np.float32, copy=False)
        w = weights(first, chunk)
        if len(chunk) % merge == 0:
            centred = (chunk.reshape(-1, merge * channels) - tiled_mean).reshape(-1, channels)
        else:
            centred = chunk - mean32
        centred *= centred
        squares += w @ centred
    std = np.sqrt(squares / count - (mean - mean32) ** 2)
    std[~(std >= 1e-6)] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _scale_channels(image: np.ndarray, scale: np.ndarray, offset: np.ndarray, *,
                    in_place: bool, has_channels: bool) -> np.ndarray:
    """``image * scale + offset`` per channel (last axis), float32, in cache-sized blocks.

    Rows of channels are merged 16 at a time so the per-channel factors broadcast over
    a long inner loop; each block is multiplied and shifted while it sits in cache.
    """
    channels = image.shape[-1] if has_channels else 1
    if in_place and image.dtype == np.float32 and image.flags.c_contiguous:
        out = image
    else:
        out = np.empty(image.shape, np.float32)
    source = image.reshape(-1)
    target = out.reshape(-1)
    merge = 16 * channels
    tiled_scale, tiled_offset = np.tile(scale, 16), np.tile(offset, 16)
    block = merge * (1 << 12)
    whole = (source.size // merge) * merge
    for first in range(0, whole, block):
        last = min(first + block, whole)
        dst = target[first:last].reshape(-1, merge)
        np.multiply(source[first:last].reshape(-1, merge), tiled_scale, out=dst)
        dst += tiled_offset
    if whole < source.size:  # fewer than 16 voxels left over
        rest = source[whole:].reshape(-1, channels)
        target[whole:] = (rest * scale + offset).reshape(-1)
    return out


class PatchSampler:
    """Draws foreground-rich patches from one subject, with its work done once.

    What the subject's label allows (every patch position with at most
    ``max_background`` background, :func:`allowed_starts`) and, with
    ``standardize=True``, the per-channel intensity statistics (and the standardised
    subject) are computed when the sampler is made; every :meth:`sample` then only
    draws starts and copies each patch once. Keep a sampler per subject
    across epochs and only the copies remain. :meth:`iter_patches` yields patches one
    by one, :meth:`sample` stacks them.

    Parameters
    ----------
    image : numpy.ndarray, shape (*spatial, c) or spatial
        The subject's image, channels last.
    label : numpy.ndarray, integer, shape spatial
        Label map on the same grid (0 = background).
    patch_shape : sequence of int
        Patch size per spatial axis.
    max_background : float in [0, 1]
        Largest fraction of background voxels a patch may hold.
    standardize : bool
        Return patches z-scored per channel with the subject's statistics (float32).
    mask : numpy.ndarray of bool or "nonzero", optional
        Where the statistics are computed (see :func:`channel_statistics`); default
        ``"nonzero"``, the brain of a skull-stripped MRI (zero outside the brain).
    mean, std : array-like of shape (c,), optional
        Precomputed statistics (skip computing them).
    in_place : bool
        Standardise a float32 ``image`` in place instead of keeping a standardised
        copy (saves a copy of the subject when the caller does not need the original,
        e.g. right after reading it from disk).

    Attributes
    ----------
    image : numpy.ndarray
        The volume patches are cut from (standardised when ``standardize=True``).
    n_allowed : int
        Number of allowed patch positions.
    mean, std : numpy.ndarray or None
        The statistics used (``standardize=True``).

    Raises
    ------
    PatchError, InvalidImageError
        As :func:`sample_patches`.
    """

    def __init__(self, image: np.ndarray, label: np.ndarray, patch_shape: Sequence[int], *,
                 max_background: float = 0.96, standardize: bool = False,
                 mask: np.ndarray | None = None, mean: Any = None, std: Any = None,
                 in_place: bool = False):
        label = np.asarray(label)
        if label.dtype.kind == "f" and not np.all(np.isfinite(label)):
            raise InvalidImageError("label holds NaN or infinite values")
        self.image = _check_image(image, label.shape, "label", check_finite=not standardize)
        self.label = label
        self.patch_shape = _check_patch_shape(label.shape, patch_shape, "label")
        self.max_background = float(max_background)
        self._flat, self._grid = _allowed_flat(label, self.patch_shape, self.max_background)
        self.standardize = bool(standardize)
        self.mean = self.std = None
        if self.standardize:
            channels = self.image if self.image.ndim > label.ndim else self.image[..., None]
            if mean is not None and std is not None:
                _check_image(self.image, label.shape, "label")
                self.mean = np.asarray(mean, np.float32).reshape(-1)
                self.std = np.asarray(std, np.float32).reshape(-1)
            else:
                self.mean, self.std = channel_statistics(
                    channels, "nonzero" if mask is None else mask)
                if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std))):
                    # NaN/inf propagate into the sums: only then look for the voxel
                    _check_image(self.image, label.shape, "label")
            if self.mean.shape != (channels.shape[-1],) or self.std.shape != self.mean.shape:
                raise InvalidImageError(
                    f"mean/std have shapes {self.mean.shape}/{self.std.shape}, expected "
                    f"({channels.shape[-1]},) for an image with {channels.shape[-1]} channels")
            # Standardise the subject once; every patch is then a plain copy (touched
            # once). In place when the caller hands over a float32 array it owns.
            self.image = _scale_channels(self.image, (1.0 / self.std).astype(np.float32),
                                         (-self.mean / self.std).astype(np.float32),
                                         in_place=in_place, has_channels=channels is self.image)

    @property
    def n_allowed(self) -> int:
        return math.prod(self._grid) if self._flat is None else len(self._flat)

    def starts(self, n: int, *, rng: Any = None) -> np.ndarray:
        """``n`` distinct allowed starts, shape (n, ndim)."""
        if int(n) < 0:
            raise PatchError(f"n must be a non-negative integer, got {n!r}")
        return _draw(self._flat, self._grid, int(n), rng, self.max_background)

    def iter_patches(self, n: int, *, rng: Any = None):
        """Yield ``n`` ``(image_patch, label_patch)`` pairs at distinct allowed positions,
        one at a time (what a ``tf.data`` generator consumes; no ``n``-patch buffer).

        ``image_patch`` is float32 when standardising, else the image's dtype.
        """
        starts = self.starts(n, rng=rng)
        patch = self.patch_shape
        extra = self.image.shape[len(patch):]
        for start in starts:
            window = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
            image = np.empty((*patch, *extra), self.image.dtype)
            label = np.empty(patch, self.label.dtype)
            shared_copy((image, self.image[window]), (label, self.label[window]))
            yield image, label

    def sample(self, n: int, *, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` patches at distinct allowed positions, stacked.

        Returns
        -------
        images : numpy.ndarray, shape (n, *patch_shape[, c])
            float32 when standardising, else the image's dtype.
        labels : numpy.ndarray, shape (n, *patch_shape)
            The label's dtype.
        """
        starts = self.starts(n, rng=rng)
        patch = self.patch_shape
        extra = self.image.shape[len(patch):]
        # One preallocated batch, each patch copied straight into its slot: no per-patch
        # copy followed by np.stack (which held every patch twice at the peak).
        images = np.empty((len(starts), *patch, *extra), self.image.dtype)
        labels = np.empty((len(starts), *patch), self.label.dtype)
        for slot, start in enumerate(starts):
            window = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
            shared_copy((images[slot], self.image[window]), (labels[slot], self.label[window]))
        return images, labels


def sample_patches(image: np.ndarray, label: np.ndarray, patch_shape: Sequence[int], n: int, *,
                   max_background: float = 0.96,
                   rng: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Draw ``n`` random patches with at most ``max_background`` background voxels.

    All positions the label allows are found at once (:func:`allowed_starts`, no
    try-and-reject loop); ``n`` distinct starts are drawn from them uniformly, and
    each patch is copied out of the image and the label once. To draw from the same
    subject repeatedly (epochs), or to standardise on the way, keep a
    :class:`PatchSampler`.

    Parameters
    ----------
    image : numpy.ndarray, shape (x, y, z) or (x, y, z, c)
        The image (any dtype). 2-D images ``(rows, cols[, c])`` work the same way.
    label : numpy.ndarray, integer, shape (x, y, z)
        Label map on the same grid; 0 is background.
    patch_shape : sequence of int
        Patch size per spatial axis, e.g. ``(160, 160, 24)``.
    n : int
        Number of patches.
    max_background : float in [0, 1]
        Largest fraction of background (label 0) voxels a patch may hold.
    rng : numpy.random.Generator or int, optional
        Randomness (a seed or a generator).

    Returns
    -------
    list of (image_patch, label_patch)
        Contiguous copies, ``image_patch`` of shape ``patch_shape (+ (c,))``.

    Raises
    ------
    PatchError
        Patch larger than the volume, empty label, no position satisfies the
        threshold, fewer than ``n`` positions.
    InvalidImageError
        Image and label grids differ, or the image holds NaN/infinite voxels.

    Examples
    --------
    >>> image = np.random.default_rng(0).random((64, 64, 40, 4), dtype=np.float32)
    >>> label = np.zeros((64, 64, 40), np.uint8); label[20:40, 20:40, 10:30] = 2
    >>> pairs = sample_patches(image, label, (32, 32, 16), 4, max_background=0.9, rng=0)
    >>> pairs[0][0].shape, pairs[0][1].shape
    ((32, 32, 16, 4), (32, 32, 16))
    """
    sampler = PatchSampler(image, label, patch_shape, max_background=max_background)
    return list(sampler.iter_patches(n, rng=rng))


def _axis_starts(length: int, patch: int, step: int) -> list[int]:
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch + 1, step))
    if starts[-1] != length - patch:  # the last window sits flush with the border
        starts.append(length - patch)
    return starts


def grid_starts(spatial_shape: Sequence[int], patch_shape: Sequence[int], *,
                overlap: float = 0.0) -> np.ndarray:
    """Starts of a regular grid of windows covering every voxel, borders included.

    Windows step by ``round(patch * (1 - overlap))`` (at least 1) along each axis;
    the last window along an axis is moved back to end at the border (so it may
    overlap its neighbour more than asked) instead of running past it.

    Parameters
    ----------
    spatial_shape, patch_shape : sequence of int
        Volume and window sizes; a window larger than the volume gives the single
        start 0 along that axis (pad before use, as :func:`sliding_window_predict` does).
    overlap : float in [0, 1)
        Fraction of a window shared with its neighbour.

    Returns
    -------
    numpy.ndarray, int64, shape (N, ndim)
    """
    spatial_shape = tuple(int(s) for s in spatial_shape)
    patch = _check_patch_shape(spatial_shape, patch_shape)
    if not 0.0 <= float(overlap) < 1.0:
        raise PatchError(f"overlap must lie in [0, 1), got {overlap!r}")
    per_axis = [
        _axis_starts(s, p, max(1, round(p * (1.0 - float(overlap)))))
        for s, p in zip(spatial_shape, patch, strict=True)
    ]
    mesh = np.meshgrid(*per_axis, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1).astype(np.int64)


def grid_patches(image: np.ndarray, patch_shape: Sequence[int], *,
                 overlap: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Cut a volume into a grid of windows covering every voxel (for inference).

    Parameters
    ----------
    image : numpy.ndarray, shape spatial or spatial + (c,)
        The volume; spatial rank is ``len(patch_shape)``.
    patch_shape : sequence of int
        Window size; not larger than the volume.
    overlap : float in [0, 1)
        As in :func:`grid_starts`.

    Returns
    -------
    patches : numpy.ndarray, shape (N, *patch_shape[, c])
    starts : numpy.ndarray, int64, shape (N, ndim)

    Raises
    ------
    PatchError
        The window is larger than the volume along some axis.
    """
    image = np.asarray(image)
    ndim = len(tuple(patch_shape))
    spatial = image.shape[:ndim]
    patch = _check_patch_shape(spatial, patch_shape)
    if any(p > s for p, s in zip(patch, spatial, strict=True)):
        raise PatchError(f"patch_shape {patch} is larger than the volume {spatial}; pad it "
                         "first or use sliding_window_predict (which pads)")
    starts = grid_starts(spatial, patch, overlap=overlap)
    patches = np.stack([
        image[tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))]
        for start in starts
    ])
    return patches, starts


def gaussian_weights(patch_shape: Sequence[int], *, sigma_scale: float = 0.125,
                     minimum: float = 1e-3) -> np.ndarray:
    """Blending weights for sliding windows: a Gaussian centred on the window.

    Predictions near a window's border see less context and are less reliable, so
    overlapping windows are averaged with weights that fall off from the centre
    (sigma = ``sigma_scale`` x size per axis, as in nnU-Net). The weights never reach
    zero (``minimum`` x the peak), so every voxel, the volume's corners included,
    receives a defined prediction.

    Returns
    -------
    numpy.ndarray, float32, shape patch_shape, peak 1
    """
    patch = tuple(int(p) for p in patch_shape)
    weights = np.ones(patch, np.float32)
    for axis, p in enumerate(patch):
        coords = np.arange(p, dtype=np.float64) - (p - 1) / 2.0
        sigma = max(p * sigma_scale, 1e-6)
        profile = np.exp(-0.5 * (coords / sigma) ** 2).astype(np.float32)
        shape = [1] * len(patch)
        shape[axis] = p
        weights = weights * profile.reshape(shape)
    weights /= weights.max()
    return np.maximum(weights, np.float32(minimum))


def _as_batch_predictor(predict_fn: Any) -> Callable[[np.ndarray], np.ndarray]:
    if hasattr(predict_fn, "predict_on_batch"):  # a Keras model: no callbacks, no tf.data
        return lambda batch: np.asarray(predict_fn.predict_on_batch(batch))
    if callable(predict_fn):
        def call(batch: np.ndarray) -> np.ndarray:
            out = predict_fn(batch)
            return np.asarray(out.numpy() if hasattr(out, "numpy") else out)
        return call
    raise TypeError(f"predict_fn must be a Keras model or a callable, got {type(predict_fn)}")


def sliding_window_predict(predict_fn: Any, image: np.ndarray, patch_shape: Sequence[int], *,
                           overlap: float = 0.5, batch_size: int = 4,
                           blend: str = "gaussian", pad_value: float = 0.0,
                           progress: bool = False) -> np.ndarray:
    """Predict a whole volume window by window and blend the overlapping windows.

    The volume is padded (with ``pad_value``) where it is smaller than a window,
    covered by a grid of windows (:func:`grid_starts`, borders included), the
    windows are predicted in batches, and each voxel's output is the weighted mean of
    the windows covering it (Gaussian or constant weights). The padding is removed.

    Parameters
    ----------
    predict_fn : keras.Model or callable
        A model (its ``predict_on_batch`` is used) or any function mapping a batch
        ``(B, *patch_shape, c)`` to ``(B, *patch_shape, k)``.
    image : numpy.ndarray, shape (*spatial, c)
        The (preprocessed) volume, channels last.
    patch_shape : sequence of int
        Window size the model takes (e.g. its training patch shape).
    overlap : float in [0, 1)
        Fraction shared by neighbouring windows (0.5: every voxel seen ~2^ndim times).
    batch_size : int
        Windows per call of ``predict_fn``.
    blend : {"gaussian", "constant"}
        Weights of the overlapping windows.
    pad_value : float
        Value of the padding (0 is the mean of a standardised image).
    progress : bool
        Show a progress bar over the batches.

    Returns
    -------
    numpy.ndarray, float32, shape (*spatial, k)
        Blended outputs (probabilities when the model ends in sigmoid/softmax).

    Raises
    ------
    InvalidImageError
        The image has the wrong rank or NaN voxels.
    PatchError
        Bad ``overlap``, ``blend`` or ``batch_size``, or the predictor's output does not
        have the window's spatial shape.
    """
    patch = tuple(int(p) for p in patch_shape)
    image = np.asarray(image)
    ndim = len(patch)
    if image.ndim != ndim + 1:
        raise InvalidImageError(
            f"image has shape {image.shape}; expected {ndim} spatial axes plus a channel axis "
            f"for a patch_shape of {patch}")
    _check_patch_shape(image.shape[:ndim], patch)
    if blend not in ("gaussian", "constant"):
        raise PatchError(f"blend must be 'gaussian' or 'constant', got {blend!r}")
    if int(batch_size) < 1:
        raise PatchError(f"batch_size must be at least 1, got {batch_size!r}")
    if image.dtype.kind == "f" and not _all_finite(image):
        raise InvalidImageError("image holds NaN or infinite voxels")
    spatial = image.shape[:ndim]
    padded_shape = tuple(max(s, p) for s, p in zip(spatial, patch, strict=True))
    if padded_shape != spatial:
        pad = [(0, ps - s) for ps, s in zip(padded_shape, spatial, strict=True)] + [(0, 0)]
        image = np.pad(image, pad, constant_values=pad_value)
    starts = grid_starts(padded_shape, patch, overlap=overlap)
    weights = (gaussian_weights(patch) if blend == "gaussian"
               else np.ones(patch, np.float32))[..., None]
    predict = _as_batch_predictor(predict_fn)
    accumulator: np.ndarray | None = None
    weight_sum = np.zeros((*padded_shape, 1), np.float32)
    batches = range(0, len(starts), int(batch_size))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="sliding window", unit="batch")
    dtype = image.dtype if image.dtype.kind == "f" else np.float32
    for first in batches:
        chunk = starts[first:first + int(batch_size)]
        windows = [tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
                   for start in chunk]
        batch = np.stack([image[w] for w in windows]).astype(dtype, copy=False)
        out = predict(batch)
        if out.ndim != ndim + 2 or out.shape[1:-1] != patch or out.shape[0] != len(chunk):
            raise PatchError(
                f"predictor returned shape {out.shape} for a batch of shape {batch.shape}; "
                f"expected ({len(chunk)}, {', '.join(map(str, patch))}, n_outputs)")
        if accumulator is None:
            accumulator = np.zeros((*padded_shape, out.shape[-1]), np.float32)
        for window, window_out in zip(windows, out, strict=True):
            accumulator[window] += window_out * weights
            weight_sum[window] += weights
    assert accumulator is not None  # at least one window always exists
    accumulator /= weight_sum
    crop = tuple(slice(0, s) for s in spatial)
    return np.ascontiguousarray(accumulator[crop])
