"""RSNA Pneumonia Detection Challenge (Kaggle): layout discovery, label tables, patients.

The real stage-2 download (and :func:`medimg.synthetic.make_rsna`) looks like::

    root/
      stage_2_train_images/<patientId>.dcm     (the chapter's copy names it Train/)
      stage_2_test_images/<patientId>.dcm      (Test/)
      stage_2_train_labels.csv                 patientId,x,y,width,height,Target
      stage_2_detailed_class_info.csv          patientId,class

Both CSVs have one row per box (a patient with two boxes has two rows in each; a
patient without opacity has one row with empty box columns). :func:`load_labels`
merges them into one row per box; :func:`patients` reduces that to one row per patient
with its image path. Splits are by patient, never by box or image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LayoutError

__all__ = ["CLASSES", "RsnaLayout", "find_layout", "load_labels", "patients"]

#: The three classes of stage_2_detailed_class_info.csv; only the first has Target 1.
CLASSES = ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal")

_TRAIN_DIRS = ("stage_2_train_images", "stage_1_train_images", "Train", "train")
_TEST_DIRS = ("stage_2_test_images", "stage_1_test_images", "Test", "test")
_LABEL_FILES = ("stage_2_train_labels.csv", "stage_1_train_labels.csv", "train_labels.csv")
_CLASS_FILES = ("stage_2_detailed_class_info.csv", "stage_1_detailed_class_info.csv",
                "detailed_class_info.csv")


@dataclass(frozen=True)
class RsnaLayout:
    """Where the parts of an RSNA data set are on disk.

    Attributes
    ----------
    root : pathlib.Path
    train_images : pathlib.Path
        Folder of the labelled ``<patientId>.dcm`` files.
    test_images : pathlib.Path or None
        Folder of the unlabelled test files, when present.
    labels_csv, class_csv : pathlib.Path
        ``stage_2_train_labels.csv`` and ``stage_2_detailed_class_info.csv``.
    """

    root: Path
    train_images: Path
    test_images: Path | None
    labels_csv: Path
    class_csv: Path


def _first(root: Path, names: tuple[str, ...], *, directory: bool) -> Path | None:
    for name in names:
        candidate = root / name
        if candidate.is_dir() if directory else candidate.is_file():
            return candidate
    return None


def find_layout(root: str | os.PathLike) -> RsnaLayout:
    """Find the RSNA files under ``root`` (Kaggle stage-2/stage-1 names or Train/Test).

    Parameters
    ----------
    root : str or os.PathLike
        The folder the Kaggle archive was unpacked into (or ``MEDIMG_RSNA_ROOT``).

    Returns
    -------
    RsnaLayout

    Raises
    ------
    LayoutError
        ``root`` is missing, or it lacks the training images or a label file; the
        message lists the names looked for.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError("RSNA data root does not exist (set MEDIMG_RSNA_ROOT or "
                          "configs/rsna.yaml data.root)", root)
    train = _first(root, _TRAIN_DIRS, directory=True)
    labels = _first(root, _LABEL_FILES, directory=False)
    classes = _first(root, _CLASS_FILES, directory=False)
    for found, names, what in ((train, _TRAIN_DIRS, "training image folder"),
                               (labels, _LABEL_FILES, "label file"),
                               (classes, _CLASS_FILES, "class file")):
        if found is None:
            raise LayoutError(f"no {what} (expected one of: {', '.join(names)}); "
                              "see data/rsna/README.md", root)
    return RsnaLayout(root=root, train_images=train,
                      test_images=_first(root, _TEST_DIRS, directory=True),
                      labels_csv=labels, class_csv=classes)


def _read_csv(path: Path, required: tuple[str, ...]) -> Any:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"patientId": "string"})
    except Exception as exc:
        raise LayoutError(f"cannot read CSV ({type(exc).__name__}: {exc})", path) from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise LayoutError(f"missing column(s) {missing}; found {list(frame.columns)}", path)
    return frame


def _examples(ids: Any, k: int = 3) -> str:
    ids = list(dict.fromkeys(str(i) for i in ids))
    return ", ".join(ids[:k]) + (f" and {len(ids) - k} more" if len(ids) > k else "")


def load_labels(root: str | os.PathLike | RsnaLayout) -> Any:
    """The RSNA labels, one row per box, merged with each patient's class.

    Parameters
    ----------
    root : str, os.PathLike or RsnaLayout
        Data root (see :func:`find_layout`).

    Returns
    -------
    pandas.DataFrame
        Columns ``patientId`` (string), ``class`` (category, :data:`CLASSES`
        order), ``Target`` (int8: 1 = Lung Opacity), ``x``, ``y``, ``width``,
        ``height`` (float64 pixels; missing for patients without a box). A
        patient with k boxes has k rows, a negative patient one row.
        ``attrs["layout"]`` holds the :class:`RsnaLayout`, which
        :func:`patients` uses to find the images.

    Raises
    ------
    LayoutError
        Missing files or columns; a patient with two classes or no class; a
        Target that disagrees with the class (Target 1 must be "Lung Opacity");
        a Target-1 row without a box or a Target-0 row with one. The message
        names the file.
    """
    import pandas as pd

    layout = root if isinstance(root, RsnaLayout) else find_layout(root)
    boxes = _read_csv(layout.labels_csv, ("patientId", "x", "y", "width", "height", "Target"))
    classes = _read_csv(layout.class_csv, ("patientId", "class"))

    unknown = sorted(set(classes["class"].dropna()) - set(CLASSES))
    if unknown or classes["class"].isna().any():
        raise LayoutError(f"unknown class value(s) {unknown or ['<empty>']}; expected one of "
                          f"{list(CLASSES)}", layout.class_csv)
    per_patient = classes.drop_duplicates(["patientId", "class"])
    conflicting = per_patient["patientId"][per_patient["patientId"].duplicated()]
    if len(conflicting):
        raise LayoutError(f"{conflicting.nunique()} patient(s) have more than one class "
                          f"(e.g. {_examples(conflicting)})", layout.class_csv)
    without_class = sorted(set(boxes["patientId"]) - set(per_patient["patientId"]))
    if without_class:
        raise LayoutError(f"{len(without_class)} labelled patient(s) have no row in "
                          f"{layout.class_csv.name} (e.g. {_examples(without_class)})",
                          layout.labels_csv)

    target = pd.to_numeric(boxes["Target"], errors="coerce")
    if target.isna().any() or not target.isin([0, 1]).all():
        raise LayoutError("column Target must hold only 0 and 1", layout.labels_csv)
    labels = boxes.assign(Target=target.astype("int8")).merge(
        per_patient, on="patientId", how="left", validate="many_to_one")
    coords = ["x", "y", "width", "height"]
    labels[coords] = labels[coords].apply(pd.to_numeric, errors="coerce").astype("float64")

    disagree = labels["patientId"][(labels["Target"] == 1) != (labels["class"] == CLASSES[0])]
    if len(disagree):
        raise LayoutError(
            f"Target and class disagree for {disagree.nunique()} patient(s) (Target 1 must be "
            f"'{CLASSES[0]}' in {layout.class_csv.name}; e.g. {_examples(disagree)})",
            layout.labels_csv)
    has_box = labels[coords].notna().all(axis=1)
    partial = labels[coords].notna().any(axis=1) & ~has_box
    bad = labels["patientId"][((labels["Target"] == 1) & ~has_box)
                              | ((labels["Target"] == 0) & has_box) | partial]
    if len(bad):
        raise LayoutError(f"{bad.nunique()} patient(s) have Target 1 without a complete box "
                          f"or Target 0 with one (e.g. {_examples(bad)})", layout.labels_csv)
    bad_size = labels["patientId"][has_box & ((labels["width"] <= 0) | (labels["height"] <= 0))]
    if len(bad_size):
        raise LayoutError(f"{bad_size.nunique()} box(es) have a non-positive width or height "
                          f"(e.g. {_examples(bad_size)})", layout.labels_csv)

    labels["class"] = pd.Categorical(labels["class"], categories=list(CLASSES))
    labels = labels[["patientId", "class", "Target", *coords]].reset_index(drop=True)
    labels.attrs["layout"] = layout
    return labels


def patients(labels: Any, images_dir: str | os.PathLike | None = None) -> Any:
    """One row per patient: class, Target, number of boxes and the image path.

    Parameters
    ----------
    labels : pandas.DataFrame
        From :func:`load_labels`.
    images_dir : str or os.PathLike, optional
        Folder of ``<patientId>.dcm``; default the training folder of the
        layout :func:`load_labels` recorded in ``labels.attrs``.

    Returns
    -------
    pandas.DataFrame
        Columns ``patientId``, ``class`` (category), ``Target`` (int8),
        ``n_boxes`` (int), ``path`` (string), in first-appearance order.

    Raises
    ------
    LayoutError
        A labelled patient has no image file (the message names the first
        missing file and the count), or no image folder is known.
    """
    import pandas as pd

    if images_dir is None:
        layout = labels.attrs.get("layout")
        if layout is None:
            raise LayoutError("no image folder known: pass images_dir= or use load_labels()")
        images_dir = layout.train_images
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise LayoutError("image folder does not exist", images_dir)

    grouped = labels.groupby("patientId", sort=False, observed=True)
    table = pd.DataFrame({
        "class": grouped["class"].first(),
        "Target": grouped["Target"].max().astype("int8"),
        "n_boxes": grouped["x"].count().astype("int64"),
    }).reset_index()
    table["class"] = pd.Categorical(table["class"], categories=list(CLASSES))
    # one directory listing instead of one stat per patient (26,684 files in the real set)
    on_disk = {entry.name for entry in os.scandir(images_dir) if entry.is_file()}
    names = table["patientId"].astype(str) + ".dcm"
    missing = names[~names.isin(on_disk)]
    if len(missing):
        raise LayoutError(f"{len(missing)} labelled patient(s) have no image "
                          f"(first missing: {images_dir / missing.iloc[0]})", images_dir)
    table["path"] = pd.array([str(images_dir / name) for name in names], dtype="string")
    table.attrs["layout"] = labels.attrs.get("layout")
    return table
