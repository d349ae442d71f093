"""Training data: a ``tf.data`` pipeline of patches read straight from the case cache.

The pipeline is built from TensorFlow datasets only (no ``from_generator``): a dataset
of ``(case index, random seed)`` pairs, drawn with the seed given (new pairs every epoch,
the same sequence for the same seed), shuffled, then a parallel map that reads one
patch of one case from its HDF5 file (only the bytes of that patch: the files are
chunked), turns class codes into targets (the plan's ``target_table``), augments,
batches and prefetches. It can be sharded (``tf.distribute``) like any dataset.

Where a patch is taken:

- ``foreground_fraction`` of the patches are placed so that they hold a voxel of a
  randomly chosen foreground class (drawn from the positions stored in the cache), the
  rest anywhere (nnU-Net's oversampling; every class is seen, however small);
- or, with ``max_background`` > 0, every patch holds at most that fraction of
  background (the BraTS chapter's rule; :func:`medimg.patches.allowed_starts`).

A volume smaller than the patch is padded (image 0, the mean after normalisation;
label background), as nnU-Net does.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError, LayoutError, PatchError
from ...patches import allowed_starts
from .plan import Plan

__all__ = ["CaseReader", "patch_dataset"]


class CaseReader:
    """Reads patches of cached cases (one open HDF5 handle per case and process).

    Parameters
    ----------
    paths : sequence of path
        The cases' ``.h5`` files (:func:`~medimg.tasks.segmentation.preprocess.cached_cases`).
    plan : Plan
    foreground_fraction : float in [0, 1]
        Share of patches forced to hold foreground.
    max_background : float
        If > 0, every patch has at most this fraction of background (cases where no
        position qualifies are skipped with a warning).

    Attributes
    ----------
    shapes : list of tuple
        Spatial shape of each case.
    usable : list of int
        Indices of the cases patches are drawn from.
    """
    def __init__(self, paths: Sequence[str | Path], plan: Plan, *,
                 foreground_fraction: float = 0.33, max_background: float = 0.0):
        import h5py

        if not 0 <= float(foreground_fraction) <= 1:
            raise ConfigError(f"sampling.foreground_fraction must be in [0, 1], got "
                              f"{foreground_fraction}")
        if not 0 <= float(max_background) < 1:
            raise ConfigError(f"sampling.max_background must be in [0, 1), got {max_background}")
        self.paths = [str(p) for p in paths]
        if not self.paths:
            raise LayoutError("no cached case to draw patches from")
        self.plan = plan
        self.foreground_fraction = float(foreground_fraction)
        self.max_background = float(max_background)
        self.patch = self._patch3()
        self.shapes: list[tuple[int, ...]] = []
        self.locations: list[dict[int, np.ndarray]] = []
        self.allowed: list[np.ndarray | None] = []
        self.usable: list[int] = []
        self._handles: dict[tuple[int, int], Any] = {}
        self._lock = threading.Lock()
        for index, path in enumerate(self.paths):
            try:
                with h5py.File(path, "r") as h5:
                    if "label" not in h5:
                        raise LayoutError("cached case has no label: it cannot be trained on",
                                          path)
                    shape = tuple(int(s) for s in h5["image"].shape[:3])
                    locations = {int(k): h5["locations"][k][()] for k in h5.get("locations", {})}
                    label = h5["label"][()] if self.max_background > 0 else None
            except OSError as exc:
                raise LayoutError(f"cannot read the cached case ({exc})", path) from None
            self.shapes.append(shape)
            self.locations.append(locations)
            self.allowed.append(self._allowed(label, shape, path) if label is not None else None)
            if self.max_background > 0 and self.allowed[-1] is None:
                continue
            self.usable.append(index)
        if not self.usable:
            raise PatchError(f"no case among {len(self.paths)} has a {self.plan.patch_shape} "
                             f"patch with at most {self.max_background:.0%} background")

    # ----------------------------------------------------------------- geometry
    def _patch3(self) -> tuple[int, int, int]:
        """The patch as a 3-D box (a 2-D patch is one voxel thick across the slices)."""
        patch = list(self.plan.patch_shape)
        if self.plan.slice_axis is not None:
            patch.insert(self.plan.slice_axis, 1)
        return tuple(int(p) for p in patch)  # type: ignore[return-value]

    def _allowed(self, label: np.ndarray, shape: tuple[int, ...], path: str) -> np.ndarray | None:

        padded = tuple(max(s, p) for s, p in zip(shape, self.patch, strict=True))
        if padded != shape:
            label = np.pad(label, [(0, a - s) for a, s in zip(padded, shape, strict=True)])
        try:
            starts = allowed_starts(label, self.patch, max_background=self.max_background)
        except PatchError as exc:
            warnings.warn(f"skipping {Path(path).name}: {exc.detail}", stacklevel=3)
            return None
        grid = tuple(a - p + 1 for a, p in zip(padded, self.patch, strict=True))
        return np.ravel_multi_index(starts.T, grid).astype(np.int64)

    def start(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """A patch start (lowest corner; may be negative where the volume is padded)."""
        shape = np.asarray(self.shapes[index])
        patch = np.asarray(self.patch)
        allowed = self.allowed[index]
        if allowed is not None:
            padded = np.maximum(shape, patch)
            grid = tuple(int(a - p + 1) for a, p in zip(padded, patch, strict=True))
            return np.asarray(np.unravel_index(int(allowed[rng.integers(allowed.size)]), grid))
        low = np.minimum(0, shape - patch)
        high = np.maximum(0, shape - patch)
        locations = self.locations[index]
        if locations and rng.random() < self.foreground_fraction:
            code = list(locations)[rng.integers(len(locations))]
            voxel = locations[code][rng.integers(len(locations[code]))].astype(np.int64)
            # the voxel anywhere inside the patch, the patch inside the (padded) volume
            start = voxel - rng.integers(0, patch)
            return np.clip(start, low, high)
        return np.array([rng.integers(lo, hi + 1) for lo, hi in zip(low, high, strict=True)])

    # ----------------------------------------------------------------- reading
    def _handle(self, index: int) -> Any:
        import h5py

        key = (index, threading.get_ident())
        handle = self._handles.get(key)
        if handle is None:
            with self._lock:
                handle = self._handles.get(key)
                if handle is None:
                    handle = h5py.File(self.paths[index], "r")
                    self._handles[key] = handle
        return handle

    def read(self, index: int, start: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The patch at ``start`` of case ``index``: ``(image (*patch3, c), codes (*patch3))``,
        zero-padded where it leaves the volume."""
        h5 = self._handle(int(index))
        shape = self.shapes[int(index)]
        start = np.asarray(start, dtype=np.int64)
        stop = start + np.asarray(self.patch)
        src = tuple(slice(max(0, int(a)), min(s, int(b)))
                    for a, b, s in zip(start, stop, shape, strict=True))
        dst = tuple(slice(int(s.start - a), int(s.stop - a))
                    for s, a in zip(src, start, strict=True))
        n_channels = h5["image"].shape[3]
        image = np.zeros((*self.patch, n_channels), np.float32)
        label = np.zeros(self.patch, np.uint8)
        image[dst] = h5["image"][src]
        label[dst] = h5["label"][src]
        return image, label

    def sample(self, index: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A random patch of case ``index`` (deterministic for ``seed``), spatial axes of
        the plan (2-D plans drop the slice axis)."""
        rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
        image, label = self.read(index, self.start(int(index), rng))
        if self.plan.slice_axis is not None:
            image = np.take(image, 0, axis=self.plan.slice_axis)
            label = np.take(label, 0, axis=self.plan.slice_axis)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)

    def close(self) -> None:
        """Close every open file."""
        with self._lock:
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()


def _augment(tf: Any, image: Any, target: Any, seed: Any, spatial_dims: int) -> tuple[Any, Any]:
    """Random flips of every spatial axis and an intensity scale/shift per channel
    (stateless ops seeded per patch: the same seed, the same augmentation)."""
    seeds = tf.random.experimental.stateless_split(seed, num=spatial_dims + 2)
    for axis in range(spatial_dims):
        flip = tf.random.stateless_uniform([], seeds[axis]) < 0.5
        image = tf.where(flip, tf.reverse(image, [axis]), image)
        target = tf.where(flip, tf.reverse(target, [axis]), target)
    channels = tf.shape(image)[-1]
    scale = tf.random.stateless_uniform([channels], seeds[-2], 0.9, 1.1)
    shift = tf.random.stateless_uniform([channels], seeds[-1], -0.1, 0.1)
    return image * scale + shift, target


def patch_dataset(
    cases: pd.DataFrame | Sequence[str | Path],
    plan: Plan,
    *,
    patches_per_case: int = 8,
    batch_size: int | None = None,
    foreground_fraction: float = 0.33,
    max_background: float = 0.0,
    shuffle: bool = True,
    augment: bool = False,
    seed: int = 0,
    prefetch: bool = True,
) -> Any:
    """A ``tf.data`` pipeline of ``(image, target)`` training batches from the cache.

    Parameters
    ----------
    cases : pandas.DataFrame or sequence of path
        Cached cases (a table with ``path``, e.g. one split of
        :func:`~medimg.tasks.segmentation.preprocess.cached_cases`) or their files.
    plan : Plan
    patches_per_case : int
        Patches drawn per case per epoch.
    batch_size : int, optional
        Global batch (default: the plan's).
    foreground_fraction, max_background : float
        Where patches are taken (see the module docstring and :class:`CaseReader`).
    shuffle : bool
        Training: cases and patches in a new random order every epoch, the last
        incomplete batch dropped. Validation (False): the same patches in the same
        order every epoch (read once, then cached in memory).
    augment : bool
        Random flips and intensity changes (training only).
    seed : int
        Seeds the patch positions, their order and the augmentation.
    prefetch : bool
        Prefetch batches.

    Returns
    -------
    tf.data.Dataset
        Batches ``(image (B, *patch, c) float32, target (B, *patch, n_outputs) float32)``
        with a known number of batches per epoch; ``.reader`` is the :class:`CaseReader`.
    """
    import tensorflow as tf

    paths = list(cases["path"]) if isinstance(cases, pd.DataFrame) else [str(p) for p in cases]
    reader = CaseReader(paths, plan, foreground_fraction=foreground_fraction,
                        max_background=max_background)
    per_case = int(patches_per_case)
    if per_case < 1:
        raise ConfigError(f"sampling.patches_per_case must be at least 1, got {patches_per_case}")
    batch = int(batch_size or plan.batch_size)
    usable = np.asarray(reader.usable, np.int64)
    n = len(usable) * per_case
    table = tf.constant(np.asarray(plan.target_table, np.float32))
    n_channels = plan.n_channels
    patch = tuple(int(p) for p in plan.patch_shape)
    spatial_dims = len(patch)

    def read(index: Any, element_seed: Any) -> Any:
        image, label = reader.sample(int(index), int(element_seed))
        return image, label

    def load(index: Any, element_seed: Any) -> Any:
        image, label = tf.numpy_function(read, [index, element_seed], [tf.float32, tf.uint8],
                                         stateful=False)
        image = tf.ensure_shape(image, (*patch, n_channels))
        label = tf.ensure_shape(label, patch)
        target = tf.gather(table, tf.cast(label, tf.int32))
        return image, target, element_seed

    indices = tf.data.Dataset.from_tensor_slices(np.repeat(usable, per_case))
    seeds = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=bool(shuffle))
    ds = tf.data.Dataset.zip((indices, seeds))
    if shuffle:
        ds = ds.shuffle(n, seed=int(seed), reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment and shuffle:
        def augment_fn(image: Any, target: Any, element_seed: Any) -> Any:
            pair = tf.stack([element_seed, tf.constant(int(seed), tf.int64)])
            image, target = _augment(tf, image, target, pair, spatial_dims)
            return image, target

        ds = ds.map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda image, target, _: (image, target))
    if shuffle:
        ds = ds.batch(batch, drop_remainder=True)
        n_batches = n // batch
    else:
        ds = ds.batch(batch).cache()
        n_batches = -(-n // batch)
    if n_batches < 1:
        raise PatchError(f"{n} patches per epoch make no batch of {batch}; draw more patches "
                         "per case or use a smaller batch")
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.reader = reader
    return ds
