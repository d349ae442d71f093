"""Prediction: a whole case, on its own grid, as a label map with the data set's values.

The image goes through the plan's preprocessing (the same code as training), the
network runs window by window with Gaussian blending (3-D,
:func:`medimg.patches.sliding_window_predict`) or on whole slices (2-D), the
probabilities are resampled back onto the cropped grid (exactly, with
:func:`medimg.spatial.resample_to_shape`), turned into labels (argmax over classes; for
regions each one thresholded at 0.5 and painted in ``regions_class_order``), put back
into the uncropped volume, and finally reoriented to the files' own voxel order, so the
written NIfTI has the input's shape and affine and overlays it in any viewer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...datasets.msd import load_case
from ...errors import ConfigError, InvalidImageError, MedimgError
from ...io import Volume, write_nifti
from ...patches import sliding_window_predict
from ...spatial import reorient, resample_to_shape
from .model import check_model
from .plan import Plan
from .preprocess import preprocess_case

__all__ = ["predict_case", "predict_cases", "predict_files", "probabilities_to_labels",
           "to_source_grid"]


def probabilities_to_labels(probabilities: np.ndarray, plan: Plan, *,
                            threshold: float = 0.5) -> np.ndarray:
    """Label values (the data set's) from the network's outputs.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(..., n_outputs)`` softmax or sigmoid outputs.
    plan : Plan
    threshold : float
        Regions only: probability above which a region is predicted.

    Returns
    -------
    numpy.ndarray
        uint8 label values, ``probabilities.shape[:-1]``.
    """
    probabilities = np.asarray(probabilities)
    if probabilities.shape[-1] != plan.n_outputs:
        raise InvalidImageError(f"probabilities have {probabilities.shape[-1]} channels, the "
                                f"plan has {plan.n_outputs} outputs")
    if plan.activation == "softmax":
        values = np.asarray(plan.class_values, np.uint8)
        return values[np.argmax(probabilities, axis=-1)]
    labels = np.zeros(probabilities.shape[:-1], np.uint8)
    for k, value in enumerate(plan.regions_class_order or range(1, plan.n_outputs + 1)):
        labels[probabilities[..., k] > threshold] = int(value)
    return labels


def _predict_slices(model: Any, image: np.ndarray, plan: Plan, batch_size: int) -> np.ndarray:
    """2-D plans: every slice across ``plan.slice_axis``, whole, padded to the U-Net's
    size multiple, in batches."""
    axis = int(plan.slice_axis)
    stack = np.moveaxis(image, axis, 0)
    factor = 2 ** (plan.depth - 1)
    rows, cols = stack.shape[1:3]
    pad_rows, pad_cols = -rows % factor, -cols % factor
    if pad_rows or pad_cols:
        stack = np.pad(stack, [(0, 0), (0, pad_rows), (0, pad_cols), (0, 0)])
    out = None
    for first in range(0, stack.shape[0], int(batch_size)):
        batch = stack[first:first + int(batch_size)]
        result = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
        if out is None:
            out = np.empty((stack.shape[0], *result.shape[1:]), np.float32)
        out[first:first + len(batch)] = result
    out = out[:, :rows, :cols]
    return np.moveaxis(out, 0, axis)


def predict_case(model: Any, plan: Plan, image: Any, *, overlap: float = 0.5,
                 batch_size: int = 2, progress: bool = False,
                 return_probabilities: bool = False) -> Any:
    """Segment one case read by ``load_case``; the result is on the case's canonical grid.

    Parameters
    ----------
    model : keras.Model or callable
        The trained network (``predict_on_batch`` is used for Keras models).
    plan : Plan
    image : medimg.io.Volume
        ``(x, y, z, c)`` from :func:`medimg.datasets.msd.load_case` (canonical RAS+).
    overlap : float in [0, 1)
        Shared fraction of neighbouring windows (3-D).
    batch_size : int
        Windows (3-D) or slices (2-D) per network call.
    progress : bool
        Progress bar over the windows.
    return_probabilities : bool
        Also return the probabilities on the preprocessed grid.

    Returns
    -------
    medimg.io.Volume
        ``(x, y, z)`` uint8 label values on the canonical grid of ``image``, with its
        affine; ``meta`` holds ``seconds`` and the source grid (for
        :func:`to_source_grid`). With ``return_probabilities``, ``(volume,
        probabilities)``.

    Raises
    ------
    InvalidImageError
        An image with the wrong number of channels (named).
    ConfigError
        A model that does not fit the plan, a bad ``overlap`` or ``batch_size``.
    """
    start = time.perf_counter()
    if hasattr(model, "input_shape"):
        check_model(model, plan)
    if not 0 <= float(overlap) < 1:
        raise ConfigError(f"predict.overlap must be in [0, 1), got {overlap}")
    if int(batch_size) < 1:
        raise ConfigError(f"predict.batch_size must be at least 1, got {batch_size}")
    array, _, properties = preprocess_case(image, None, plan)
    if plan.slice_axis is None:
        probabilities = sliding_window_predict(model, array, plan.patch_shape,
                                               overlap=float(overlap),
                                               batch_size=int(batch_size), blend="gaussian",
                                               progress=progress)
    else:
        probabilities = _predict_slices(model, array, plan, int(batch_size))
    box = np.asarray(properties["crop_box"])
    cropped_shape = tuple(int(b - a) for a, b in box)
    on_crop = resample_to_shape(probabilities, cropped_shape, order=1)
    labels = probabilities_to_labels(on_crop, plan)
    full = np.zeros(tuple(int(s) for s in properties["canonical_shape"]), np.uint8)
    full[tuple(slice(int(a), int(b)) for a, b in box)] = labels
    meta = {"case": image.meta.get("case"), "source_affine": properties["source_affine"],
            "source_shape": tuple(int(s) for s in properties["source_shape"]),
            "seconds": time.perf_counter() - start}
    volume = Volume(full, properties["canonical_affine"], meta)
    return (volume, probabilities) if return_probabilities else volume


def to_source_grid(volume: Any) -> Any:
    """A canonical-grid result back in its source files' voxel order and affine.

    Uses ``meta["source_affine"]`` and ``meta["source_shape"]`` (as
    :func:`predict_case` sets them).
    """
    import nibabel as nib


    source_affine = np.asarray(volume.meta["source_affine"], np.float64)
    back = reorient(volume, "".join(nib.aff2axcodes(source_affine)))
    if tuple(back.shape[:3]) != tuple(volume.meta["source_shape"]):
        raise InvalidImageError(f"cannot map the result back: shape {back.shape[:3]} vs the "
                                f"source's {volume.meta['source_shape']}")
    back.affine = source_affine.copy()
    return back


def predict_files(model: Any, plan: Plan, images: Sequence[str | os.PathLike],
                  out: str | os.PathLike | None = None, *, overlap: float = 0.5,
                  batch_size: int = 2, progress: bool = False) -> Any:
    """Segment one case given as its channel files (or one 4-D file), written as NIfTI.

    Parameters
    ----------
    model : keras.Model
    plan : Plan
    images : sequence of path
        The channel files in the order of ``dataset.json`` (``_0000``, ``_0001`` ...),
        or one file holding every channel on a 4th axis.
    out : path, optional
        Output ``.nii.gz``: the label map on the input's grid and affine.

    Returns
    -------
    medimg.io.Volume
        The label map on the input's own grid (what is written).

    Raises
    ------
    InvalidImageError
        Wrong number of channel files or channels, files on different grids (named).
    """
    images = [str(p) for p in images]
    if len(images) not in (1, plan.n_channels):
        raise InvalidImageError(
            f"{len(images)} image files given; the model takes {plan.n_channels} channel(s) "
            f"({', '.join(n['channel'] for n in plan.normalization)}): give one file per "
            "channel in that order, or one 4-D file", images[0] if images else None)
    name = Path(images[0]).name.split(".nii")[0]
    image, _ = load_case({"case": name, "images": images, "label": None}, plan.description(),
                         load_label=False)
    volume = to_source_grid(predict_case(model, plan, image, overlap=overlap,
                                         batch_size=batch_size, progress=progress))
    if out is not None:
        write_nifti(volume, out, dtype=np.uint8)
    return volume


def predict_cases(model: Any, plan: Plan, cases: pd.DataFrame, out_dir: str | os.PathLike, *,
                  overlap: float = 0.5, batch_size: int = 2, progress: bool = True,
                  overwrite: bool = False) -> pd.DataFrame:
    """Segment every case of a table into ``out_dir/<case>.nii.gz`` (own grid and affine).

    A case whose file exists is skipped unless ``overwrite`` (a rerun resumes); a case
    that fails is recorded with its error and the others go on.

    Returns
    -------
    pandas.DataFrame
        ``case``, ``prediction`` (path), ``status`` (ok, exists, error), ``seconds``,
        ``error``.
    """
    from tqdm.auto import tqdm


    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    description = plan.description()
    rows = []
    for row in tqdm(cases.to_dict("records"), desc="predict", unit="case", disable=not progress):
        target = out_dir / f"{row['case']}.nii.gz"
        record = {"case": row["case"], "prediction": str(target), "status": "ok",
                  "seconds": np.nan, "error": None}
        if target.is_file() and not overwrite:
            record["status"] = "exists"
        else:
            try:
                image, _ = load_case(row, description, load_label=False)
                result = predict_case(model, plan, image, overlap=overlap, batch_size=batch_size)
                write_nifti(to_source_grid(result), target, dtype=np.uint8)
                record["seconds"] = result.meta["seconds"]
            except MedimgError as exc:
                record.update(status="error", error=f"{type(exc).__name__}: {exc}")
        rows.append(record)
    return pd.DataFrame(rows)
