"""The BraTS adapter: what BraTS adds to the generic segmentation pipeline, nothing more.

- **Discovery**: the BraTS 2020 folders (:func:`medimg.datasets.brats.find_subjects`)
  become a case table like :func:`medimg.datasets.msd.find_cases` gives: the four
  sequences in the order FLAIR, T1, T1ce, T2, and the expert labels.
- **Labels and regions**: BraTS labels 1 (necrotic / non-enhancing core), 2 (oedema)
  and 4 (enhancing tumour) are evaluated as the nested regions WT = {1, 2, 4},
  TC = {1, 4} and ET = {4}. The network predicts the regions (one sigmoid each, as the
  BraTS winners do) and a prediction is painted back into labels in the order WT -> 2,
  TC -> 1, ET -> 4, so the regions stay nested: the nnU-Net region convention
  (``regions_class_order``).
- **N4**: set in ``configs/brats.yaml`` (``preprocess.bias_correction``), run by the
  generic preprocessing on every sequence inside the brain.
- **A baseline**: a FLAIR intensity threshold for the whole tumour, fitted on the
  training subjects (:func:`threshold_baseline`), that the network must beat.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from ..datasets import brats as brats_data
from ..datasets.msd import DatasetDescription, load_case
from ..errors import LayoutError
from ..metrics import dice
from .segmentation import Adapter

__all__ = [
    "ADAPTER",
    "CHANNELS",
    "LABELS",
    "REGIONS_CLASS_ORDER",
    "apply_threshold_baseline",
    "baseline_scores",
    "description",
    "find_cases",
    "subject_images",
    "threshold_baseline",
]

#: Channel names, in the order of :data:`medimg.datasets.brats.SEQUENCES`.
CHANNELS: tuple[str, ...] = ("FLAIR", "T1", "T1ce", "T2")
#: The evaluation regions as nnU-Net region labels (name -> BraTS label values).
LABELS: dict[str, tuple[int, ...]] = {"background": (0,), "WT": (1, 2, 4), "TC": (1, 4),
                                      "ET": (4,)}
#: Label painted where each region is predicted, in painting order (keeps them nested).
REGIONS_CLASS_ORDER: tuple[int, ...] = (2, 1, 4)


def description(root: str | os.PathLike = "") -> DatasetDescription:
    """The BraTS data set as a :class:`~medimg.datasets.msd.DatasetDescription`."""
    return DatasetDescription(path=str(root), layout="brats", name="BraTS2020",
                              channel_names=CHANNELS, labels=dict(LABELS), regions=True,
                              regions_class_order=REGIONS_CLASS_ORDER, file_ending=".nii.gz")


def find_cases(root: str | os.PathLike) -> pd.DataFrame:
    """BraTS subjects as a generic case table.

    Parameters
    ----------
    root : path
        The folder holding ``MICCAI_BraTS2020_TrainingData/`` (see
        :func:`medimg.datasets.brats.find_subjects`).

    Returns
    -------
    pandas.DataFrame
        ``case`` (subject), ``images`` ([flair, t1, t1ce, t2] paths), ``label`` (seg, None
        for validation subjects), ``split`` (``training`` or ``test`` for unlabelled),
        ``packed`` (False), ``grade``; ``attrs["dataset"]`` is :func:`description`.

    Raises
    ------
    LayoutError
        Subjects whose files are missing or ambiguous (every one is listed: a stray
        ``_flair_backup`` file must never stand in for a missing sequence).
    """
    subjects = brats_data.find_subjects(root)
    broken = subjects[subjects["problem"].notna()]
    if len(broken):
        listing = "; ".join(f"{r.subject}: {r.problem}" for r in broken.head(5).itertuples())
        raise LayoutError(f"{len(broken)} subject(s) cannot be used: {listing}"
                          + (" ..." if len(broken) > 5 else ""), root)
    rows = []
    for row in subjects.to_dict("records"):
        rows.append({"case": row["subject"],
                     "images": [row[s] for s in brats_data.SEQUENCES],
                     "label": row["seg"], "split": "training" if row["seg"] else "test",
                     "packed": False, "grade": row.get("grade")})
    table = pd.DataFrame(rows)
    table.attrs["dataset"] = description(root)
    return table


def subject_images(folder: str | os.PathLike) -> list[str]:
    """The four sequence files of one BraTS subject folder, in channel order.

    Raises
    ------
    LayoutError
        A sequence is missing or ambiguous in that folder.
    """
    row = brats_data.subject_files(folder)
    if row["problem"]:
        raise LayoutError(row["problem"], folder)
    return [row[s] for s in brats_data.SEQUENCES]


#: The BraTS adapter of :func:`medimg.tasks.segmentation.run`.
ADAPTER = Adapter(name="brats", find_cases=find_cases)


def threshold_baseline(cases: pd.DataFrame, *, quantiles: tuple[float, ...] = tuple(
        np.round(np.arange(0.80, 0.995, 0.005), 3))) -> dict[str, Any]:
    """A FLAIR threshold for the whole tumour, fitted on ``cases`` (training only).

    Oedema and tumour are bright on FLAIR: the rule calls a voxel tumour when its
    FLAIR intensity, z-scored over the brain, exceeds a threshold. The threshold is the
    brain-intensity quantile that maximises the mean WT Dice over the given cases; it
    is then applied unchanged to other cases (:func:`apply_threshold_baseline`).

    Returns
    -------
    dict
        ``z_threshold`` (in brain standard deviations), ``quantile``, ``train_dice``.
    """
    described = description()
    best = (-1.0, None, None)
    per_case = []
    for row in cases.to_dict("records"):
        image, label = load_case(row, described)
        flair = image.array[..., 0]
        brain = (image.array != 0).any(axis=-1)
        values = flair[brain]
        z = (flair - values.mean()) / max(values.std(), 1e-6)
        per_case.append((z, brain, np.isin(label.array, LABELS["WT"])))
    # candidate thresholds in z units from the pooled brain quantiles
    pooled = np.concatenate([z[brain][::50] for z, brain, _ in per_case])
    for q in quantiles:
        t = float(np.quantile(pooled, q))
        scores = [float(dice(truth, (z > t) & brain)) for z, brain, truth in per_case]
        mean = float(np.mean(scores))
        if mean > best[0]:
            best = (mean, t, q)
    return {"z_threshold": best[1], "quantile": best[2], "train_dice": best[0]}


def apply_threshold_baseline(image: Any, z_threshold: float) -> np.ndarray:
    """The baseline's whole-tumour mask of one case (``(x, y, z)`` bool)."""
    array = np.asarray(image.array if hasattr(image, "array") else image)
    flair = array[..., 0]
    brain = (array != 0).any(axis=-1)
    values = flair[brain]
    z = (flair - values.mean()) / max(values.std(), 1e-6)
    return (z > z_threshold) & brain



def baseline_scores(cases: pd.DataFrame, z_threshold: float) -> pd.DataFrame:
    """The threshold baseline's whole-tumour Dice on each case (e.g. the test subjects).

    Returns
    -------
    pandas.DataFrame
        ``case``, ``dice_wt`` (empty truth and empty prediction score 1.0, as for the
        model), ``truth_voxels``, ``predicted_voxels``.
    """
    described = description()
    rows = []
    for row in cases.to_dict("records"):
        image, label = load_case(row, described)
        predicted = apply_threshold_baseline(image, z_threshold)
        truth = np.isin(label.array, LABELS["WT"])
        empty = not predicted.any() and not truth.any()
        rows.append({"case": row["case"],
                     "dice_wt": 1.0 if empty else float(dice(truth, predicted, smooth=0.0)),
                     "truth_voxels": int(truth.sum()), "predicted_voxels": int(predicted.sum())})
    return pd.DataFrame(rows)
