"""Training data: a ``tf.data`` pipeline of patches read straight from the case cache.

The pipeline is built from TensorFlow datasets only (no ``from_generator``): a dataset
of ``(case index, random seed)`` pairs, drawn with the seed given (new pairs every epoch,
the same sequence for the same seed), shuffled, sharded when it feeds several input
pipelines (``tf.distribute``), then a parallel map that reads one patch of one case from
the cache (only the bytes of that patch), turns class codes into targets (the plan's
``target_table``), augments, batches and prefetches.

Where a patch is taken:

- ``foreground_fraction`` of the patches are placed so that they hold a voxel of a
  randomly chosen foreground class (drawn from the positions stored in the cache), the
  rest anywhere (nnU-Net's oversampling; every class is seen, however small);
- or, with ``max_background`` > 0, every patch holds at most that fraction of
  background (the BraTS chapter's rule; :func:`medimg.patches.allowed_start_indices`).
  The allowed starts are worked out once per case, patch shape and threshold and stored
  beside the cache (``sampling/<case>.<key>.npy``, runs of consecutive starts), so a
  later run, or a first visit, reads them instead of recomputing them.

A volume smaller than the patch is padded (image 0, the mean after normalisation;
label background), as nnU-Net does.

Memory stays bounded whatever the number of cases: a reader keeps per case only its
shape, the number of stored positions per class and the number of allowed starts; the
positions, the allowed starts, the open files and the mapped files live in small
least-recently-used caches. 3-D cases are stored contiguous (:mod:`.preprocess`): the
files of the last few cases read stay mapped (``_MAPPED_CASES``, shared by the reading
threads), a patch is one copy out of the mapping that faults in only the pages it
touches, and a mapping is released when its case leaves the cache (the resident file
pages of the process are bounded by those few cases, whatever their number).
Validation patches are the same every epoch (a fixed seed sequence), re-read rather than
held in memory.

Global and per-replica batch
----------------------------
``batch_size`` (``train.batch_size``) is the **global** batch: the patches of one
optimiser step over all devices. Under a ``tf.distribute`` strategy each of the ``R``
replicas gets ``batch_size / R`` patches (the per-replica batch, which must be a whole
number); :func:`patch_dataset_fn` builds one input pipeline per worker
(``strategy.distribute_datasets_from_function``), each reading a disjoint shard of the
epoch's patches, batched per replica. The learning rate is not rescaled: a step sees the
same global batch on one device or eight.
"""

from __future__ import annotations

import collections
import mmap
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..._fsutil import atomic_path
from ..._parallel import shared_copy
from ...datasets.cache import settings_key
from ...errors import ConfigError, LayoutError, PatchError
from ...patches import allowed_start_indices
from .plan import Plan

__all__ = ["CaseReader", "patch_dataset", "patch_dataset_fn", "sampling_index",
           "sampling_indexes"]

#: Open HDF5 files kept per thread, cases whose files stay mapped (shared by the
#: threads), and cases whose sampling tables are kept in memory.
_OPEN_FILES = 8
_MAPPED_CASES = 2
_CACHED_TABLES = 64


class _LRU:
    """A small least-recently-used mapping (thread-safe); ``on_evict`` closes values."""

    def __init__(self, size: int, on_evict: Callable[[Any], None] | None = None):
        self.size = int(size)
        self.on_evict = on_evict
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                _, old = self._items.popitem(last=False)
                if self.on_evict is not None:
                    self.on_evict(old)
        return value

    def clear(self) -> None:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        if self.on_evict is not None:
            for value in items:
                self.on_evict(value)

    def __len__(self) -> int:
        return len(self._items)


def _aligned_empty(shape: Sequence[int], dtype: Any, *, zero: bool = False) -> np.ndarray:
    """An array whose data start on a 64-byte boundary: TensorFlow then takes it from
    ``tf.numpy_function`` without copying it (an unaligned 64 MB batch costs a copy)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = (np.zeros if zero else np.empty)(size + 64, np.uint8)
    skip = (-raw.ctypes.data) % 64
    return raw[skip:skip + size].view(dtype).reshape(tuple(shape))


def _stamp(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}-{st.st_mtime_ns}"


def _sampling_path(path: str, patch: Sequence[int], max_background: float) -> Path:
    """Where the allowed starts of ``path`` for this patch and threshold are stored; the
    key includes the case file's size and time, so a rebuilt case gets new ones."""
    case = Path(path)
    key = settings_key({"patch": [int(p) for p in patch],
                        "max_background": round(float(max_background), 6),
                        "case": _stamp(path)})
    return case.parent / "sampling" / f"{case.stem}.{key}.npy"


def _runs(flat: np.ndarray) -> np.ndarray:
    """Sorted flat indices as ``(first, length)`` runs of consecutive values, int64."""
    if flat.size == 0:
        return np.zeros((0, 2), np.int64)
    breaks = np.flatnonzero(np.diff(flat) != 1) + 1
    firsts = flat[np.concatenate([[0], breaks])]
    lengths = np.diff(np.concatenate([[0], breaks, [flat.size]]))
    return np.stack([firsts, lengths], axis=1).astype(np.int64)


def sampling_index(path: str | os.PathLike, patch: Sequence[int], max_background: float, *,
                   label: np.ndarray | None = None) -> np.ndarray:
    """The allowed patch starts of a cached case, as runs, computed once and stored.

    Parameters
    ----------
    path : path
        The case's ``.h5`` file.
    patch : sequence of 3 int
        The patch as a 3-D box (2-D plans: 1 across the slice axis).
    max_background : float in (0, 1)
        Largest fraction of background in a patch.
    label : numpy.ndarray, optional
        The case's class codes when already in memory (else read from the file).

    Returns
    -------
    numpy.ndarray of int64, shape (n_runs, 2)
        ``(first flat start, run length)``: runs of consecutive flat indices into the grid
        of starts of the padded volume (``max(shape, patch) - patch + 1``); empty when no
        position qualifies. Stored as ``sampling/<case>.<key>.npy`` beside the case
        (atomically; the key covers the patch, the threshold and the case file).
    """
    import h5py

    path = str(path)
    target = _sampling_path(path, patch, max_background)
    if target.is_file():
        try:
            runs = np.load(target)
            if runs.ndim == 2 and runs.shape[1] == 2:
                return runs.astype(np.int64, copy=False)
        except (OSError, ValueError):
            pass  # a damaged table is recomputed
    if label is None:
        try:
            with h5py.File(path, "r") as h5:
                label = h5["label"][()]
        except (OSError, KeyError) as exc:
            raise LayoutError(f"cannot read the cached label ({exc})", path) from None
    shape = label.shape
    padded = tuple(max(s, p) for s, p in zip(shape, patch, strict=True))
    if padded != shape:
        label = np.pad(label, [(0, a - s) for a, s in zip(padded, shape, strict=True)])
    try:
        flat, grid = allowed_start_indices(label, patch, max_background=max_background)
        if flat is None:
            flat = np.arange(int(np.prod(grid)), dtype=np.int64)
        runs = _runs(flat)
    except PatchError:
        runs = np.zeros((0, 2), np.int64)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, runs)
    return runs


def _index_one(task: dict[str, Any]) -> int:
    """Worker: the allowed starts of one case (stored); returns how many there are."""
    runs = sampling_index(task["path"], task["patch"], task["max_background"])
    return int(runs[:, 1].sum())


def sampling_indexes(paths: Sequence[str | os.PathLike], plan: Plan, max_background: float,
                     *, n_jobs: int | None = -1, backend: str | None = None,
                     progress: bool = False) -> list[int]:
    """Store the allowed starts of every case for the plan's patch (in parallel).

    ``medimg prepare`` runs it after preprocessing when ``sampling.max_background`` > 0,
    so that training finds them ready (:func:`sampling_index`).

    Returns
    -------
    list of int
        Allowed starts per case (0: the case cannot give such a patch); a case that
        cannot be read counts 0 (the reader reports it when training starts).
    """
    from ..._parallel import map_items

    patch = list(plan.patch_shape)
    if plan.slice_axis is not None:
        patch.insert(plan.slice_axis, 1)
    tasks = [{"path": str(p), "patch": patch, "max_background": float(max_background)}
             for p in paths]
    results = map_items(_index_one, tasks, n_jobs=n_jobs, backend=backend, progress=progress,
                        desc="sampling tables", unit="case")
    return [int(r.value) if r.ok else 0 for r in results]


def _raw_layout(dataset: Any) -> tuple[int, tuple[int, ...], np.dtype] | None:
    """``(byte offset, shape, dtype)`` of an HDF5 dataset stored contiguous and
    uncompressed (readable by mapping the file), else None."""
    if dataset.chunks is not None or dataset.compression is not None:
        return None
    offset = dataset.id.get_offset()
    if offset is None:
        return None
    return int(offset), tuple(int(s) for s in dataset.shape), dataset.dtype


def _map_arrays(path: str, layouts: Sequence[tuple[int, tuple[int, ...], np.dtype]]
                ) -> tuple[np.ndarray, ...]:
    """Read-only arrays over the contiguous datasets at ``layouts`` of the file ``path``
    (one mapping of the file; it is unmapped when the last array over it is dropped).

    Nothing is read here: a patch copied out of an array faults in only the pages it
    touches (the kernel maps the neighbouring pages of the page cache with each fault).
    """
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    arrays = []
    for offset, shape, dtype in layouts:
        count = int(np.prod(shape, dtype=np.int64))
        arrays.append(np.frombuffer(mapped, dtype, count=count, offset=offset).reshape(shape))
    return tuple(arrays)


class CaseReader:
    """Reads patches of cached cases; memory bounded whatever the number of cases.

    Parameters
    ----------
    paths : sequence of path
        The cases' ``.h5`` files (:func:`~medimg.tasks.segmentation.preprocess.cached_cases`).
    plan : Plan
    foreground_fraction : float in [0, 1]
        Share of patches forced to hold foreground.
    max_background : float
        If > 0, every patch has at most this fraction of background (cases where no
        position qualifies are skipped with a warning). The allowed starts come from
        :func:`sampling_index` (stored beside the cache, computed on first use).

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
        self.n_channels: list[int] = []
        #: per case: {class code: number of stored positions}
        self.location_counts: list[dict[int, int]] = []
        #: per case: (image layout, label layout) for raw reads, or None (chunked files)
        self._raw: list[tuple[Any, Any] | None] = []
        self.n_allowed: list[int] = []
        self.usable: list[int] = []
        self._files = threading.local()
        self._all_files: list[_LRU] = []
        self._files_lock = threading.Lock()
        self._tables = _LRU(_CACHED_TABLES)
        self._mapped = _LRU(_MAPPED_CASES)
        for index, path in enumerate(self.paths):
            try:
                with h5py.File(path, "r") as h5:
                    if "label" not in h5:
                        raise LayoutError("cached case has no label: it cannot be trained on",
                                          path)
                    image = h5["image"]
                    shape = tuple(int(s) for s in image.shape[:3])
                    self.n_channels.append(int(image.shape[3]))
                    counts = {int(k): int(h5["locations"][k].shape[0])
                              for k in h5.get("locations", {})}
                    raw_image, raw_label = _raw_layout(image), _raw_layout(h5["label"])
            except (OSError, KeyError) as exc:
                raise LayoutError(f"cannot read the cached case ({exc})", path) from None
            self.shapes.append(shape)
            self.location_counts.append({k: n for k, n in counts.items() if n > 0})
            self._raw.append((raw_image, raw_label) if raw_image and raw_label else None)
            allowed = 0
            if self.max_background > 0:
                allowed = int(sampling_index(path, self.patch, self.max_background)[:, 1].sum())
                if allowed == 0:
                    warnings.warn(f"skipping {Path(path).name}: no {self.patch} patch has at "
                                  f"most {self.max_background:.0%} background", stacklevel=2)
            self.n_allowed.append(allowed)
            if self.max_background > 0 and allowed == 0:
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

    def _allowed_runs(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(runs, cumulative lengths)`` of case ``index`` (read from its stored table)."""
        def load() -> tuple[np.ndarray, np.ndarray]:
            runs = sampling_index(self.paths[index], self.patch, self.max_background)
            return runs, np.cumsum(runs[:, 1])
        return self._tables.get(("allowed", index), load)

    def start(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """A patch start (lowest corner; may be negative where the volume is padded)."""
        shape = np.asarray(self.shapes[index])
        patch = np.asarray(self.patch)
        if self.max_background > 0:
            runs, cumulative = self._allowed_runs(index)
            draw = int(rng.integers(int(cumulative[-1])))
            run = int(np.searchsorted(cumulative, draw, side="right"))
            flat = int(runs[run, 0]) + draw - int(cumulative[run] - runs[run, 1])
            padded = np.maximum(shape, patch)
            grid = tuple(int(a - p + 1) for a, p in zip(padded, patch, strict=True))
            return np.asarray(np.unravel_index(flat, grid))
        low = np.minimum(0, shape - patch)
        high = np.maximum(0, shape - patch)
        counts = self.location_counts[index]
        if counts and rng.random() < self.foreground_fraction:
            codes = sorted(counts)
            code = codes[int(rng.integers(len(codes)))]
            row = int(rng.integers(counts[code]))
            voxel = self._file(index)["locations"][str(code)][row].astype(np.int64)
            # the voxel anywhere inside the patch, the patch inside the (padded) volume
            start = voxel - rng.integers(0, patch)
            return np.clip(start, low, high)
        return np.array([rng.integers(lo, hi + 1) for lo, hi in zip(low, high, strict=True)])

    # ----------------------------------------------------------------- reading
    def _file(self, index: int) -> Any:
        """This thread's open handle of case ``index`` (a few per thread, least recently
        used closed first)."""
        import h5py

        files = getattr(self._files, "lru", None)
        if files is None:
            files = self._files.lru = _LRU(_OPEN_FILES, on_evict=lambda handle: handle.close())
            with self._files_lock:
                self._all_files.append(files)
        return files.get(index, lambda: h5py.File(self.paths[index], "r"))

    def read(self, index: int, start: Sequence[int], *,
             out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The patch at ``start`` of case ``index``: ``(image (*patch3, c), codes (*patch3))``,
        zero-padded where it leaves the volume (written into ``out`` when given)."""
        index = int(index)
        shape = self.shapes[index]
        start = np.asarray(start, dtype=np.int64)
        stop = start + np.asarray(self.patch)
        src = tuple(slice(max(0, int(a)), min(s, int(b)))
                    for a, b, s in zip(start, stop, shape, strict=True))
        dst = tuple(slice(int(s.start - a), int(s.stop - a))
                    for s, a in zip(src, start, strict=True))
        inside = all(d.start == 0 and d.stop == p for d, p in zip(dst, self.patch, strict=True))
        if out is None:
            image = _aligned_empty((*self.patch, self.n_channels[index]), np.float32)
            label = _aligned_empty(self.patch, np.uint8)
        else:
            image, label = out
        if not inside:
            image[...] = 0
            label[...] = 0
        raw = self._raw[index]
        try:
            if raw is not None:
                mapped_image, mapped_label = self._mapped.get(
                    index, lambda: _map_arrays(self.paths[index], raw))
                shared_copy((image[dst], mapped_image[src]), (label[dst], mapped_label[src]))
            else:
                h5 = self._file(index)
                image[dst] = h5["image"][src]
                label[dst] = h5["label"][src]
        except (OSError, ValueError) as exc:
            raise LayoutError(f"cannot read a patch of the cached case ({exc})",
                              self.paths[index]) from None
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

    def sample_batch(self, indices: Sequence[int],
                     seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Patches of several cases read straight into one batch (what the pipeline
        calls): ``images (B, *patch, c)`` float32 and ``codes (B, *patch)`` uint8, 64-byte
        aligned (TensorFlow takes them without a copy). Patch ``i`` is
        ``sample(indices[i], seeds[i])``."""
        indices = [int(i) for i in np.asarray(indices).ravel()]
        seeds = [int(s) for s in np.asarray(seeds).ravel()]
        channels = {self.n_channels[i] for i in indices}
        if len(channels) > 1:
            raise LayoutError(f"cached cases have different numbers of channels {channels}")
        n_channels = channels.pop() if channels else 1
        images = _aligned_empty((len(indices), *self.patch, n_channels), np.float32)
        labels = _aligned_empty((len(indices), *self.patch), np.uint8)
        for slot, (index, seed) in enumerate(zip(indices, seeds, strict=True)):
            rng = np.random.default_rng(seed & 0xFFFFFFFFFFFFFFFF)
            self.read(index, self.start(index, rng), out=(images[slot], labels[slot]))
        spatial = tuple(self.plan.patch_shape)
        return (images.reshape(len(indices), *spatial, n_channels),
                labels.reshape(len(indices), *spatial))

    def close(self) -> None:
        """Close every open file, drop the mappings and forget the cached tables."""
        with self._files_lock:
            for files in self._all_files:
                files.clear()
        self._mapped.clear()
        self._tables.clear()


#: Largest in-plane rotation of the augmentation, in degrees, and how often it is applied
#: (BraTS entries and nnU-Net rotate by up to about 15-30 degrees, in a share of patches).
MAX_ROTATION_DEG = 15.0
ROTATION_PROBABILITY = 0.5


def rotate_in_plane(tf: Any, volume: Any, angle: Any, *, interpolation: str) -> Any:
    """Rotate ``(x, y[, z], c)`` about the centre of its first two axes by ``angle`` (radians).

    The plane of the first two spatial axes (axial for canonical RAS+ volumes, the image
    plane for 2-D patches); every further axis and channel is rotated alike. Outside
    the patch the nearest edge value is used. ``interpolation`` is ``BILINEAR`` for
    images and ``NEAREST`` for targets (their values stay exactly 0 or 1).
    """
    shape = tf.shape(volume)
    height, width = shape[0], shape[1]
    flat = tf.reshape(volume, tf.stack([1, height, width, -1]))
    cos, sin = tf.cos(angle), tf.sin(angle)
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    # output (x = column, y = row) -> input, as ImageProjectiveTransformV3 expects
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                          sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])[None]
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=flat, transforms=tf.cast(transform, tf.float32),
        output_shape=tf.stack([height, width]), fill_value=0.0,
        interpolation=interpolation, fill_mode="NEAREST")
    return tf.reshape(rotated, shape)


def _augment(tf: Any, image: Any, target: Any, seed: Any, spatial_dims: int) -> tuple[Any, Any]:
    """Random flips of every spatial axis, a small in-plane rotation (half of the patches,
    up to :data:`MAX_ROTATION_DEG`) and an intensity scale/shift per channel (stateless
    ops seeded per patch: the same seed, the same augmentation)."""
    seeds = tf.random.experimental.stateless_split(seed, num=spatial_dims + 4)
    for axis in range(spatial_dims):
        flip = tf.random.stateless_uniform([], seeds[axis]) < 0.5
        image = tf.where(flip, tf.reverse(image, [axis]), image)
        target = tf.where(flip, tf.reverse(target, [axis]), target)
    limit = MAX_ROTATION_DEG * 3.141592653589793 / 180.0
    angle = tf.random.stateless_uniform([], seeds[spatial_dims], -limit, limit)
    rotate = tf.random.stateless_uniform([], seeds[spatial_dims + 1]) < ROTATION_PROBABILITY
    angle = tf.where(rotate, angle, 0.0)
    image = rotate_in_plane(tf, image, angle, interpolation="BILINEAR")
    target = rotate_in_plane(tf, target, angle, interpolation="NEAREST")
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
    input_context: Any = None,
    reader: CaseReader | None = None,
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
        **Global** batch (default: the plan's). With ``input_context`` each replica gets
        ``batch_size / replicas`` (see the module docstring).
    foreground_fraction, max_background : float
        Where patches are taken (see the module docstring and :class:`CaseReader`).
    shuffle : bool
        Training: cases and patches in a new random order every epoch, the last
        incomplete batch dropped. Validation (False): the same patches in the same
        order every epoch (re-read each epoch: nothing is held in memory).
    augment : bool
        Random flips and intensity changes (training only).
    seed : int
        Seeds the patch positions, their order and the augmentation: the same seed gives
        the same batches, epoch after epoch.
    prefetch : bool
        Prefetch batches.
    input_context : tf.distribute.InputContext, optional
        Given by ``strategy.distribute_datasets_from_function`` (see
        :func:`patch_dataset_fn`): this pipeline reads shard
        ``input_pipeline_id`` of ``num_input_pipelines`` and batches per replica.
    reader : CaseReader, optional
        Reuse a reader (several pipelines over the same cases).

    Returns
    -------
    tf.data.Dataset
        Batches ``(image (B, *patch, c) float32, target (B, *patch, n_outputs) uint8)``
        with a known number of batches per epoch (per input pipeline); ``.reader`` is the
        :class:`CaseReader`. Targets are 0/1 (the plan's ``target_table``) in uint8: a
        quarter of the bytes to move to the device; the losses and metrics cast them.

    Raises
    ------
    ConfigError
        Bad sampling settings, or a global batch that the replicas cannot share.
    PatchError
        Fewer patches per epoch than one batch.
    """
    import tensorflow as tf

    paths = list(cases["path"]) if isinstance(cases, pd.DataFrame) else [str(p) for p in cases]
    if reader is None:
        reader = CaseReader(paths, plan, foreground_fraction=foreground_fraction,
                            max_background=max_background)
    per_case = int(patches_per_case)
    if per_case < 1:
        raise ConfigError(f"sampling.patches_per_case must be at least 1, got {patches_per_case}")
    batch = int(batch_size or plan.batch_size)
    pipelines, pipeline_id = 1, 0
    if input_context is not None:
        replicas = int(input_context.num_replicas_in_sync)
        if batch % replicas:
            raise ConfigError(f"train.batch_size {batch} (the global batch) cannot be split "
                              f"over {replicas} replicas: use a multiple of {replicas}")
        batch = int(input_context.get_per_replica_batch_size(batch))
        pipelines = int(input_context.num_input_pipelines)
        pipeline_id = int(input_context.input_pipeline_id)
    usable = np.asarray(reader.usable, np.int64)
    n = (len(usable) * per_case) // pipelines
    table = np.asarray(plan.target_table, np.float32)
    if not np.isin(table, (0.0, 1.0)).all():
        raise ConfigError("the plan's target_table must hold 0 and 1 only")
    table = table.astype(np.uint8)
    n_channels, n_outputs = plan.n_channels, plan.n_outputs
    patch = tuple(int(p) for p in plan.patch_shape)
    spatial_dims = len(patch)

    lookup = tf.constant(table)
    identity = table.shape[0] == table.shape[1] and np.array_equal(table, np.eye(len(table)))

    def read(indices: Any, element_seeds: Any) -> Any:
        return reader.sample_batch(indices, element_seeds)

    def load(indices: Any, element_seeds: Any) -> Any:
        images, codes = tf.numpy_function(read, [indices, element_seeds],
                                          [tf.float32, tf.uint8], stateful=False)
        images = tf.ensure_shape(images, (None, *patch, n_channels))
        codes = tf.ensure_shape(codes, (None, *patch))
        # class codes to targets in TensorFlow (its threads, not Python's); one_hot is
        # about twice as fast as a gather of rows where the table is the identity
        if identity:
            targets = tf.one_hot(codes, n_outputs, dtype=tf.uint8)
        else:
            targets = tf.gather(lookup, tf.cast(codes, tf.int32))
        return images, tf.ensure_shape(targets, (None, *patch, n_outputs)), element_seeds

    indices = tf.data.Dataset.from_tensor_slices(np.repeat(usable, per_case))
    seeds = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=bool(shuffle))
    ds = tf.data.Dataset.zip((indices, seeds))
    if shuffle:
        ds = ds.shuffle(len(usable) * per_case, seed=int(seed), reshuffle_each_iteration=True)
    if pipelines > 1:
        # every pipeline draws the same shuffled sequence (same seed) and keeps its share
        ds = ds.shard(pipelines, pipeline_id).take(n)
    # every pipeline gives the same number of full batches (replicas step together)
    drop = bool(shuffle or pipelines > 1)
    n_batches = n // batch if drop else -(-n // batch)
    if n_batches < 1:
        raise PatchError(f"{n} patches per epoch make no batch of {batch}; draw more patches "
                         "per case or use a smaller batch")
    # batches of (case, seed) pairs, each read straight into one batch array; a fixed
    # number in flight keeps memory bounded (see the module docstring)
    ds = ds.batch(batch, drop_remainder=drop)
    ds = ds.map(load, num_parallel_calls=_parallel_batches(), deterministic=True)
    if augment and shuffle:
        def augment_fn(images: Any, targets: Any, element_seeds: Any) -> Any:
            def one(element: Any) -> Any:
                image, target, element_seed = element
                pair = tf.stack([element_seed, tf.constant(int(seed), tf.int64)])
                return _augment(tf, image, target, pair, spatial_dims)

            return tf.map_fn(one, (images, targets, element_seeds),
                             fn_output_signature=(images.dtype, targets.dtype))

        ds = ds.map(augment_fn, num_parallel_calls=_parallel_batches(), deterministic=True)
    else:
        ds = ds.map(lambda images, targets, _: (images, targets))
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    if prefetch:
        ds = ds.prefetch(2)
    ds.reader = reader
    return ds


def _parallel_batches() -> int:
    """Batches read at once: one per core, at least 2, at most 8."""
    return max(2, min(8, os.cpu_count() or 1))


def patch_dataset_fn(cases: pd.DataFrame | Sequence[str | Path], plan: Plan,
                     **kwargs: Any) -> Callable[[Any], Any]:
    """``dataset_fn(input_context)`` for ``strategy.distribute_datasets_from_function``.

    Every input pipeline (one per worker) reads a disjoint shard of the epoch's
    patches, batched per replica (``batch_size`` is the global batch; see the module
    docstring). The cases are read once (one :class:`CaseReader` shared by the
    pipelines of this process). :func:`medimg.training.train` accepts the function
    itself as ``train_data`` when given a strategy.

    Parameters
    ----------
    cases, plan, **kwargs
        As :func:`patch_dataset`.

    Returns
    -------
    callable
        ``input_context -> tf.data.Dataset``; ``.reader`` is the shared reader.
    """
    paths = list(cases["path"]) if isinstance(cases, pd.DataFrame) else [str(p) for p in cases]
    reader = kwargs.pop("reader", None) or CaseReader(
        paths, plan, foreground_fraction=float(kwargs.get("foreground_fraction", 0.33)),
        max_background=float(kwargs.get("max_background", 0.0)))

    def dataset_fn(input_context: Any) -> Any:
        return patch_dataset(paths, plan, input_context=input_context, reader=reader, **kwargs)

    dataset_fn.reader = reader  # type: ignore[attr-defined]
    return dataset_fn
