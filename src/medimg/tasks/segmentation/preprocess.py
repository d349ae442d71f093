"""Preprocessing: one case from its files to the arrays the network sees, and the cache.

Per case, in this order (the same code runs for training and for prediction):

1. the channels and the label, read and checked (:func:`medimg.datasets.msd.load_case`),
   in canonical RAS+ voxel order;
2. crop to the box where any channel is non-zero (plan ``crop_to_nonzero``);
3. N4 bias-field correction of every non-CT channel inside that region (plan
   ``bias_correction``; :func:`medimg.bias.n4_correct`);
4. normalisation per channel (plan ``normalization``: CT clipped and z-scored with the
   data set's statistics, other channels z-scored per case, over the non-zero region
   when the plan says so);
5. resampling to the plan's spacing (linear for images, nearest for labels;
   :func:`medimg.spatial.resample_to_shape`, which a prediction can invert exactly);
6. label values mapped to class codes ``0..K-1`` (plan ``class_values``).

The cache holds one HDF5 file per case (:func:`medimg.datasets.cache.write_h5`) in a
folder keyed on the plan's preprocessing settings, with ``manifest.csv`` updated as each
case ends; a rerun redoes only cases whose sources changed or that failed.

HDF5 case file (``CASE_LAYOUT`` 2)
----------------------------------
``image`` ``(x, y, z, c)`` float32, normalised; ``label`` ``(x, y, z)`` uint8 class codes
(absent without a label); ``locations/<code>`` ``(n, 3)`` int32: up to 10,000 voxel
positions of each foreground code, for sampling. Attributes: ``case``, ``layout``,
``settings_key``, ``channels``; ``canonical_affine`` and ``canonical_shape`` (the case's
grid after reorientation, before cropping); ``crop_box`` ``(3, 2)``; ``affine`` (of the
stored arrays); ``spacing``; ``source_affine`` and ``source_shape`` (the files' own grid).

Storage serves patch reads (measured by ``benchmarks/bench_cache_layout.py`` on
BraTS-sized cases, 4x128x128x128 patches, same run, interleaved): 3-D and sagittal (slice
axis 0) cases store ``image`` and ``label`` **contiguous and uncompressed**, so that a patch
is one copy out of a mapping of the file (:mod:`.data`): 127 patches/s on
one thread, against 50 for uncompressed 32^3 chunks read through h5py, 38 for Blosc/LZ4
32^3 chunks (``hdf5plugin``) and 4 for the former lzf 64^3 chunks, for 47 MB per case
against 65, 20 and 17.5 MB (z-scored MRI compresses: its values are an affine map of
integers). 2-D plans slicing across another axis store chunks one slice thick (a slice is
then contiguous in its chunk), uncompressed. The files stay plain HDF5 (h5py, HDFView and
:func:`read_case` read them as before). Per case, sampling tables for the
``max_background`` rule are stored beside the cache (``sampling/``, see
:func:`medimg.tasks.segmentation.data.sampling_index`).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...bias import n4_correct
from ...datasets.cache import build, cache_folder, cached_items, read_h5, write_h5
from ...datasets.msd import DatasetDescription, load_case
from ...errors import InvalidImageError
from ...io import Volume
from ...spatial import resample_to_shape
from .plan import Plan

__all__ = [
    "CASE_LAYOUT",
    "cache_dir_for",
    "cached_cases",
    "normalize",
    "preprocess",
    "preprocess_case",
    "read_case",
]

#: Version of the HDF5 case layout (part of the cache key).
CASE_LAYOUT = 2
_LOCATIONS_PER_CODE = 10_000


def normalize(image: np.ndarray, plan: Plan, nonzero: np.ndarray | None = None) -> np.ndarray:
    """Normalise every channel as the plan says (float32, a new array).

    Parameters
    ----------
    image : numpy.ndarray
        ``(..., c)`` channels last, in the files' units.
    plan : Plan
        Its ``normalization`` entries, one per channel.
    nonzero : numpy.ndarray of bool, optional
        ``image.shape[:-1]``: the non-zero region; used (and everything outside it set
        to 0) for z-scored channels when ``plan.use_nonzero_mask``.

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    out = np.empty(image.shape, np.float32)
    use_mask = plan.use_nonzero_mask and nonzero is not None and nonzero.any()
    for c, entry in enumerate(plan.normalization):
        channel = image[..., c].astype(np.float32, copy=False)
        scheme = entry["scheme"]
        if scheme == "ct":
            clipped = np.clip(channel, entry["low"], entry["high"])
            out[..., c] = (clipped - entry["mean"]) / entry["std"]
        elif scheme == "zscore":
            values = channel[nonzero] if use_mask else channel
            mean = float(values.mean()) if values.size else 0.0
            std = float(values.std()) if values.size else 1.0
            out[..., c] = (channel - mean) / max(std, 1e-8)
            if use_mask:
                out[..., c][~nonzero] = 0.0
        else:
            out[..., c] = channel
    return out


def _crop_box(image: np.ndarray, plan: Plan) -> tuple[tuple[int, int], ...]:
    if not plan.crop_to_nonzero:
        return tuple((0, s) for s in image.shape[:3])
    nonzero = (image != 0).any(axis=-1)
    box = []
    for axis in range(3):
        hits = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
        if hits.size == 0:
            raise InvalidImageError("every voxel of every channel is 0: no image to segment")
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _target_shape(shape: tuple[int, ...], spacing: np.ndarray, plan: Plan) -> tuple[int, ...]:
    target = np.asarray(plan.target_spacing, dtype=np.float64)
    new = np.maximum(1, np.round(np.asarray(shape, np.float64) * spacing / target)).astype(int)
    if plan.slice_axis is not None:
        new[plan.slice_axis] = shape[plan.slice_axis]
    # within 1% of the target spacing: keep the grid (no interpolation at all)
    same = np.abs(spacing - target) <= 0.01 * target
    new = np.where(same, np.asarray(shape), new)
    return tuple(int(s) for s in new)


def preprocess_case(image: Any, label: Any, plan: Plan) -> tuple[np.ndarray, np.ndarray | None,
                                                                  dict[str, Any]]:
    """Steps 2-6 of the module docstring for one case read by ``load_case``.

    Parameters
    ----------
    image : medimg.io.Volume
        ``(x, y, z, c)`` float32, canonical RAS+ (``meta`` with ``source_affine``,
        ``source_shape``).
    label : medimg.io.Volume or None
        ``(x, y, z)`` label values on the same grid.
    plan : Plan

    Returns
    -------
    image : numpy.ndarray
        ``(x', y', z', c)`` float32, normalised, on the plan's grid.
    label : numpy.ndarray or None
        ``(x', y', z')`` uint8 class codes.
    properties : dict
        ``canonical_affine``, ``canonical_shape``, ``crop_box``, ``affine`` (of the
        returned arrays), ``spacing``, ``source_affine``, ``source_shape``.

    Raises
    ------
    InvalidImageError
        Wrong number of channels, an all-zero image, label values the plan does not
        know.
    """
    array = np.asarray(image.array, dtype=np.float32)
    where = image.meta.get("path")
    if array.ndim != 4 or array.shape[-1] != plan.n_channels:
        raise InvalidImageError(f"image has shape {array.shape}; the plan expects (x, y, z, "
                                f"{plan.n_channels}) (channels "
                                f"{', '.join(n['channel'] for n in plan.normalization)})", where)
    box = _crop_box(array, plan)
    window = tuple(slice(a, b) for a, b in box)
    cropped = np.ascontiguousarray(array[window])
    shift = np.eye(4)
    shift[:3, 3] = [a for a, _ in box]
    cropped_affine = image.affine @ shift
    nonzero = (cropped != 0).any(axis=-1)
    if plan.bias_correction:
        for c, entry in enumerate(plan.normalization):
            if entry["scheme"] == "ct":
                continue
            mask = nonzero & (cropped[..., c] > 0)
            if mask.sum() < 100:
                continue  # nothing to fit a field to
            corrected = n4_correct(Volume(cropped[..., c], cropped_affine), mask,
                                   shrink=plan.n4_shrink, iterations=plan.n4_iterations)
            cropped[..., c] = np.where(mask, corrected.array, cropped[..., c])
    normalised = normalize(cropped, plan, nonzero)
    spacing = np.sqrt((cropped_affine[:3, :3] ** 2).sum(axis=0))
    shape = _target_shape(cropped.shape[:3], spacing, plan)
    resampled = resample_to_shape(Volume(normalised, cropped_affine), shape, order=1)
    codes = None
    if label is not None:
        values = np.asarray(label.array)[window]
        lut = np.full(256, 255, np.uint8)
        for code, value in enumerate(plan.class_values):
            lut[value] = code
        codes = lut[values.astype(np.uint8)]
        if (codes == 255).any():
            bad = sorted({int(v) for v in np.unique(values[codes == 255])})
            raise InvalidImageError(f"label holds value(s) {bad} that the plan does not know "
                                    f"(labels {plan.class_values})", label.meta.get("path"))
        codes = resample_to_shape(codes, shape, order=0)
    properties = {
        "canonical_affine": np.asarray(image.affine, np.float64),
        "canonical_shape": np.asarray(array.shape[:3], np.int64),
        "crop_box": np.asarray(box, np.int64),
        "affine": np.asarray(resampled.affine, np.float64),
        "spacing": np.asarray(resampled.spacing, np.float64),
        "source_affine": np.asarray(image.meta.get("source_affine", image.affine), np.float64),
        "source_shape": np.asarray(image.meta.get("source_shape", array.shape[:3]), np.int64),
    }
    return np.ascontiguousarray(resampled.array, dtype=np.float32), codes, properties


def _locations(codes: np.ndarray, n_codes: int, seed: int) -> dict[str, np.ndarray]:
    """Up to ``_LOCATIONS_PER_CODE`` random voxel positions of each foreground code."""
    rng = np.random.default_rng(seed)
    out = {}
    flat = codes.ravel()
    for code in range(1, n_codes):
        where = np.flatnonzero(flat == code)
        if where.size == 0:
            continue
        if where.size > _LOCATIONS_PER_CODE:
            where = np.sort(rng.choice(where, _LOCATIONS_PER_CODE, replace=False))
        out[f"locations/{code}"] = np.stack(np.unravel_index(where, codes.shape),
                                            axis=1).astype(np.int32)
    return out


def _chunks(shape: tuple[int, ...], plan: Plan) -> tuple[int, ...] | None:
    """Chunk shape of the stored arrays (spatial axes), or None for contiguous storage.

    Contiguous (read by mapping the file, see the module docstring) unless the plan
    slices across axis 1 or 2: then chunks one slice thick, about the patch across."""
    if plan.slice_axis in (None, 0):
        return None
    patch = list(plan.patch_shape)
    patch.insert(plan.slice_axis, 1)
    return tuple(max(1, min(int(s), int(p))) for s, p in zip(shape, patch, strict=True))


def _preprocess_one(task: Mapping[str, Any]) -> dict[str, Any]:
    """Worker: one case from its files to its HDF5 file (runs in a subprocess)."""
    plan = Plan.from_dict(task["plan"])
    description = DatasetDescription.from_dict(plan.dataset)
    row = task["row"]
    image, label = load_case(row, description)
    array, codes, properties = preprocess_case(image, label, plan)
    arrays: dict[str, np.ndarray] = {"image": array}
    chunk = _chunks(array.shape[:3], plan)
    chunks = {} if chunk is None else {"image": (*chunk, array.shape[3])}
    if codes is not None:
        arrays["label"] = codes
        if chunk is not None:
            chunks["label"] = chunk
        arrays.update(_locations(codes, len(plan.class_values),
                                 zlib.crc32(str(row["case"]).encode())))
    attrs = {"case": str(row["case"]), "layout": CASE_LAYOUT,
             "settings_key": task["settings_key"],
             "channels": [n["channel"] for n in plan.normalization], **properties}
    write_h5(task["target"], arrays, attrs, chunks=chunks, compression=None)
    present = sorted(int(c) for c in np.unique(codes)) if codes is not None else []
    return {"shape": "x".join(str(s) for s in array.shape[:3]), "codes": " ".join(map(str,
                                                                                      present))}


def cache_dir_for(cache_root: str | os.PathLike, plan: Plan) -> Path:
    """The cache folder of ``plan``'s settings under ``cache_root`` (created)."""
    settings = {"case_layout": CASE_LAYOUT, **plan.preprocessing_settings()}
    return cache_folder(cache_root, plan.dataset.get("name") or "dataset", settings)


def preprocess(cases: pd.DataFrame, plan: Plan, cache_root: str | os.PathLike, *,
               n_jobs: int | None = -1, progress: bool = True, overwrite: bool = False,
               backend: str | None = None) -> pd.DataFrame:
    """Preprocess cases into the plan's cache folder (parallel, resumable, keyed).

    Parameters
    ----------
    cases : pandas.DataFrame
        Rows of ``find_cases`` (``case``, ``images``, ``label``), e.g. the training
        and validation cases.
    plan : Plan
    cache_root : path
        Folder of caches; this plan's go to :func:`cache_dir_for`.
    n_jobs : int, optional
        Worker processes (-1: every core).
    progress : bool
        Show a progress bar.
    overwrite : bool
        Redo every case.
    backend : str, optional
        Parallel backend (``dask`` for a cluster; see :mod:`medimg._parallel`).

    Returns
    -------
    pandas.DataFrame
        The manifest: ``item`` (the case), ``status`` (ok, cached, error), ``path``,
        ``source``, ``seconds``, ``error``, ``shape``, ``codes`` (class codes present);
        ``attrs["cache_dir"]``. Per-case failures are rows, never exceptions.
    """
    folder = cache_dir_for(cache_root, plan)
    key = folder.name.rsplit("-", 1)[-1]
    items = []
    for row in cases.to_dict("records"):
        images = list(row["images"])
        sources = images + ([row["label"]] if row.get("label") else [])
        items.append({"item": str(row["case"]), "target": str(folder / f"{row['case']}.h5"),
                      "sources": sources, "settings_key": key, "plan": plan.to_dict(),
                      "row": {"case": str(row["case"]), "images": images,
                              "label": row.get("label")}})
    manifest = build(items, _preprocess_one, folder, n_jobs=n_jobs, progress=progress,
                     desc="preprocess", unit="case", overwrite=overwrite,
                     extra_columns=("shape", "codes"), backend=backend)
    manifest.attrs["cache_dir"] = str(folder)
    return manifest


def cached_cases(manifest_or_folder: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """The cases of a cache that can be used: ``case`` and ``path``, sorted.

    Takes the manifest :func:`preprocess` returned or the cache folder; never lists a
    failed case or a temporary file.
    """
    if isinstance(manifest_or_folder, pd.DataFrame):
        folder = manifest_or_folder.attrs.get("cache_dir")
        if folder is None:
            raise InvalidImageError("cached_cases: the manifest has no attrs['cache_dir']")
    else:
        folder = manifest_or_folder
    table = cached_items(folder)
    return table.rename(columns={"item": "case"})[["case", "path", *[
        c for c in ("shape", "codes") if c in table.columns]]]


def read_case(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """One cached case: ``(image (x, y, z, c), label codes or None, attributes)``."""
    arrays, attrs = read_h5(path, names=None)
    return arrays["image"], arrays.get("label"), attrs
