"""Evaluation: Dice and HD95 per case and label (or region), and a summary with intervals.

Conventions, stated because they change the numbers:

- A label (or region) absent from both the truth and the prediction scores Dice 1.0
  (the BraTS convention); the summary reports beside that mean the number of cases
  that have the label and the mean over those cases only, so a perfect score on empty
  cases cannot hide a poor one on the rest.
- HD95 (mm, :func:`medimg.metrics.hausdorff95`) is NaN where either mask is empty (it
  is not defined there; the summary's median skips those cases).
- Intervals are 95% percentile-bootstrap intervals over cases (the independent units).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ... import metrics as _metrics
from ...errors import InvalidImageError, LayoutError
from ...io import read_nifti
from ...metrics import dice, hausdorff95

__all__ = ["evaluate_folder", "mean_with_ci", "score_case", "summarize"]

# the interval every chapter reports lives in medimg.metrics; re-exported for the pipeline
mean_with_ci = _metrics.mean_with_ci


def _masks(labels: np.ndarray, values: Sequence[int]) -> np.ndarray:
    return np.isin(labels, np.asarray(values))


def score_case(prediction: np.ndarray, truth: np.ndarray, labels: Mapping[str, Sequence[int]],
               *, spacing: Sequence[float] | None = None, hausdorff: bool = True
               ) -> list[dict[str, Any]]:
    """Dice and HD95 of every label or region of one case.

    Parameters
    ----------
    prediction, truth : numpy.ndarray
        Label maps (the data set's values), same shape.
    labels : mapping of str to sequence of int
        Name to the values it covers (the description's ``foreground``: a region lists
        several values).
    spacing : sequence of float, optional
        Voxel size in mm (HD95 in mm).
    hausdorff : bool
        Compute HD95 (slower).

    Returns
    -------
    list of dict
        One per label: ``label``, ``dice``, ``hd95_mm``, ``truth_voxels``,
        ``predicted_voxels``.

    Raises
    ------
    InvalidImageError
        Shapes differ.
    """
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    if prediction.shape != truth.shape:
        raise InvalidImageError(f"prediction has shape {prediction.shape}, truth "
                                f"{truth.shape}")
    rows = []
    for name, values in labels.items():
        p = _masks(prediction, values)
        t = _masks(truth, values)
        n_p, n_t = int(p.sum()), int(t.sum())
        score = 1.0 if n_p == 0 and n_t == 0 else float(dice(t, p, smooth=0.0))
        distance = float("nan")
        if hausdorff and n_p and n_t:
            distance = hausdorff95(p, t, spacing)
        rows.append({"label": name, "dice": score, "hd95_mm": distance,
                     "truth_voxels": n_t, "predicted_voxels": n_p})
    return rows


def evaluate_folder(predictions: str | os.PathLike, truth: str | os.PathLike | pd.DataFrame,
                    labels: Mapping[str, Sequence[int]], *, hausdorff: bool = True,
                    progress: bool = True) -> pd.DataFrame:
    """Score a folder of predicted label maps against the truth, case by case.

    Parameters
    ----------
    predictions : path
        Folder of ``<case>.nii.gz`` predictions (each on its case's own grid).
    truth : path or pandas.DataFrame
        Folder of ``<case>.nii.gz`` label files (``labelsTr``), or a case table with
        ``case`` and ``label`` columns.
    labels : mapping
        Name to values (a description's ``foreground``).
    hausdorff : bool
        Compute HD95.
    progress : bool
        Progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per case and label: ``case``, ``label``, ``dice``, ``hd95_mm``,
        ``truth_voxels``, ``predicted_voxels``.

    Raises
    ------
    LayoutError
        No prediction matches a truth file (names are compared without ``.nii.gz``);
        a prediction with no truth is listed in the message.
    InvalidImageError
        A prediction on another grid than its truth (named).
    """
    from tqdm.auto import tqdm


    predictions = Path(predictions)
    if isinstance(truth, pd.DataFrame):
        truth_files = {str(r["case"]): str(r["label"]) for r in truth.to_dict("records")
                       if r.get("label")}
    else:
        folder = Path(truth)
        if not folder.is_dir():
            raise LayoutError("truth folder not found", folder)
        truth_files = {p.name.split(".nii")[0]: str(p) for p in sorted(folder.glob("*.nii*"))
                       if not p.name.startswith(".")}
    predicted = {p.name.split(".nii")[0]: p for p in sorted(predictions.glob("*.nii*"))
                 if not p.name.startswith(".")}
    common = sorted(set(predicted) & set(truth_files))
    if not common:
        raise LayoutError(f"no prediction matches a truth file ({len(predicted)} predictions, "
                          f"{len(truth_files)} truths)", predictions)
    rows = []
    for case in tqdm(common, desc="evaluate", unit="case", disable=not progress):
        pred = read_nifti(predicted[case], canonical=False)
        true = read_nifti(truth_files[case], canonical=False)
        if pred.shape != true.shape or not np.allclose(pred.affine, true.affine, atol=1e-3):
            raise InvalidImageError(f"prediction is not on the grid of its truth "
                                    f"{truth_files[case]} (shape {pred.shape} vs {true.shape})",
                                    predicted[case])
        for row in score_case(np.asarray(pred.array), np.asarray(true.array), labels,
                              spacing=true.spacing, hausdorff=hausdorff):
            rows.append({"case": case, **row})
    table = pd.DataFrame(rows)
    missing = sorted(set(truth_files) - set(predicted))
    table.attrs["missing_predictions"] = missing
    return table


def summarize(scores: pd.DataFrame, *, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per label: mean Dice with its 95% interval, over all cases and over cases with it.

    Parameters
    ----------
    scores : pandas.DataFrame
        From :func:`score_case` rows or :func:`evaluate_folder` (``case``, ``label``,
        ``dice``, ``hd95_mm``, ``truth_voxels``).

    Returns
    -------
    pandas.DataFrame
        Index ``label``; columns ``n_cases``, ``dice`` (mean, empty-vs-empty counted
        as 1.0), ``dice_low``, ``dice_high``, ``n_with_label`` (cases whose truth has
        the label), ``dice_present`` (mean over those) with ``dice_present_low`` /
        ``_high``, ``hd95_median_mm``.
    """
    rows = []
    for label, part in scores.groupby("label", sort=False):
        everyone = mean_with_ci(part["dice"], n_bootstrap=n_bootstrap, seed=seed)
        present = part[part["truth_voxels"] > 0]
        with_label = mean_with_ci(present["dice"], n_bootstrap=n_bootstrap, seed=seed)
        hd = part["hd95_mm"].replace([np.inf, -np.inf], np.nan).dropna()
        rows.append({"label": label, "n_cases": len(part), "dice": everyone["mean"],
                     "dice_low": everyone["low"], "dice_high": everyone["high"],
                     "n_with_label": len(present), "dice_present": with_label["mean"],
                     "dice_present_low": with_label["low"],
                     "dice_present_high": with_label["high"],
                     "hd95_median_mm": float(hd.median()) if len(hd) else float("nan")})
    return pd.DataFrame(rows).set_index("label")
