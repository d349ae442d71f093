"""The spine adapter: what VerSe adds to the generic segmentation pipeline, nothing more.

- **Discovery**: the VerSe 2019/2020 folders (:func:`medimg.datasets.verse.find_subjects`)
  become a case table like :func:`medimg.datasets.msd.find_cases` gives (one CT channel,
  the vertebra mask), with a ``subject`` column so that a split keeps a subject's scans
  (VerSe 2020's ``_dir-ax`` and ``_dir-sag`` acquisitions) together.
- **Targets**: ``binary`` (spine vs background: every vertebra label is one nnU-Net
  region, one sigmoid output, painted back as 1) or ``vertebrae`` (every VerSe label a
  class of its own, softmax).
- **Slices**: ``configs/verse.yaml`` sets ``plan.dimensionality: 2d`` and
  ``plan.slice_axis: sagittal``; the generic pipeline cuts the canonical (RAS+) volumes
  across x. Scans whose voxel axes are too oblique for a flip/permutation to make those
  slices sagittal are refused from their headers (:func:`find_cases`).
- **Splits**: VerSe's own training/validation/test folders when they hold all three
  (:func:`release_split`), else :func:`medimg.datasets.splits.split_by_group` by subject.
- **A baseline**: a Hounsfield-unit threshold fitted on the training scans
  (:func:`fit_hu_threshold`), scored on the same test scans as the network
  (:func:`hu_threshold_scores`), and the paired difference (:func:`compare_with_baseline`).
- **Levels**: vertebra names in anatomical order (T13 between T12 and L1: by anatomy,
  never by label number; :func:`level_names`) and per-level recall of a prediction
  (:func:`level_recall`).

Example
-------
>>> from medimg.config import load_config                        # doctest: +SKIP
>>> from medimg.tasks import segmentation, spine
>>> cfg = load_config("verse", "demo")
>>> result = segmentation.run(cfg, adapter=spine.adapter_for(cfg))
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..datasets import verse as verse_data
from ..datasets.msd import DatasetDescription, load_case
from ..errors import ConfigError, InvalidImageError, LayoutError
from .segmentation import Adapter, mean_with_ci

__all__ = [
    "ADAPTER",
    "CHANNELS",
    "SPINE_LABELS",
    "TARGETS",
    "adapter",
    "adapter_for",
    "check_scan",
    "compare_with_baseline",
    "description",
    "find_cases",
    "fit_hu_threshold",
    "hu_threshold_scores",
    "level_names",
    "level_recall",
    "release_split",
]

#: The one input channel; its name makes the generic plan normalise it as CT (clip to
#: the foreground's 0.5-99.5 percentiles, z-score with the data set's statistics).
CHANNELS: tuple[str, ...] = ("CT",)
#: What the network predicts: spine vs background, or every vertebra.
TARGETS: tuple[str, ...] = ("binary", "vertebrae")
_SPINE_VALUES: tuple[int, ...] = tuple(range(1, verse_data.MAX_LABEL + 1))
#: Spine vs background, whatever the target: what the headline Dice and the baseline
#: score (``evaluate_folder(..., SPINE_LABELS)``).
SPINE_LABELS: dict[str, tuple[int, ...]] = {"spine": _SPINE_VALUES}
_RELEASE_SPLITS = {"training": "train", "validation": "validation", "test": "test"}


def _check_target(target: str) -> str:
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return target


def level_names(values: Iterable[int]) -> list[str]:
    """Vertebra level names of VerSe label values, in anatomical order (head to tail).

    T13 (label 28) comes between T12 and L1, L6 (25) after L5: the order is the
    anatomy's (:data:`medimg.datasets.verse.VERTEBRA_ORDER`), not the label numbers'.
    Background (0) is left out; unknown values are refused.

    Parameters
    ----------
    values : iterable of int
        Label values (e.g. ``np.unique(mask)``).

    Returns
    -------
    list of str
        E.g. ``["T11", "T12", "T13", "L1"]`` for ``[20, 28, 18, 19]``.

    Raises
    ------
    InvalidImageError
        A value outside VerSe's numbering.

    Examples
    --------
    >>> level_names([20, 28, 19, 0])
    ['T12', 'T13', 'L1']
    """
    rank = {v: i for i, v in enumerate(verse_data.VERTEBRA_ORDER)}
    present = {int(v) for v in values if int(v) != 0}
    unknown = sorted(present - set(rank))
    if unknown:
        raise InvalidImageError(f"label value(s) {unknown} are not VerSe vertebrae "
                                f"(1-{verse_data.MAX_LABEL})")
    return [verse_data.VERTEBRA_NAMES[v] for v in sorted(present, key=rank.__getitem__)]


def description(root: str | os.PathLike = "", target: str = "binary") -> DatasetDescription:
    """VerSe as a :class:`~medimg.datasets.msd.DatasetDescription`.

    Parameters
    ----------
    root : path
        The VerSe folder (named in error messages).
    target : {"binary", "vertebrae"}
        ``binary``: one region ``spine`` covering every vertebra label (sigmoid output;
        a prediction is painted as label 1). ``vertebrae``: every VerSe label is a
        class (softmax), named by level, in anatomical order.

    Returns
    -------
    DatasetDescription
        Channel ``CT``; label values 0-28 (every value a VerSe mask may hold).
    """
    if _check_target(target) == "binary":
        labels: dict[str, tuple[int, ...]] = {"background": (0,), "spine": _SPINE_VALUES}
        return DatasetDescription(path=str(root), layout="verse", name="VerSe",
                                  channel_names=CHANNELS, labels=labels, regions=True,
                                  regions_class_order=(1,), file_ending=".nii.gz",
                                  extra={"target": target})
    labels = {"background": (0,)}
    for value in verse_data.VERTEBRA_ORDER:
        labels[verse_data.VERTEBRA_NAMES[value]] = (value,)
    return DatasetDescription(path=str(root), layout="verse", name="VerSe",
                              channel_names=CHANNELS, labels=labels, regions=False,
                              file_ending=".nii.gz", extra={"target": target})


def _refusals(geometry: pd.DataFrame, max_oblique_deg: float) -> dict[str, str]:
    """Scan id -> why it cannot be sliced (from :func:`verse.scan_table`)."""
    out = {}
    for row in geometry.itertuples(index=False):
        if not row.orientation_known:
            out[row.scan] = "orientation unknown (qform_code and sform_code are both 0)"
        elif not np.isfinite(row.oblique_deg) or row.oblique_deg > max_oblique_deg:
            out[row.scan] = (f"voxel axes {row.oblique_deg:.0f} degrees oblique to the patient "
                             f"axes (limit {max_oblique_deg:g})")
    return out


def check_scan(path: str | os.PathLike, *, max_oblique_deg: float = 30.0) -> None:
    """Refuse, from its header, a CT that cannot be cut into sagittal slices.

    Raises
    ------
    InvalidImageError
        Orientation unknown (qform and sform codes 0), or voxel axes more than
        ``max_oblique_deg`` from the patient axes (the message names the file).
    DecodeError
        The file cannot be read.
    """
    import nibabel as nib

    from ..errors import DecodeError

    path = Path(path)
    if not path.is_file():
        raise DecodeError("no such file", path)
    try:
        image = nib.load(str(path))
        affine = image.affine
        header = image.header
    except Exception as exc:
        raise DecodeError(f"cannot read as NIfTI ({type(exc).__name__})", path) from None
    known = not (int(header.get("qform_code", 1)) == 0 and int(header.get("sform_code", 1)) == 0)
    geometry = pd.DataFrame([{"scan": path.name, "orientation_known": known,
                              "oblique_deg": round(verse_data.obliquity_deg(affine), 1)}])
    refused = _refusals(geometry, max_oblique_deg)
    if refused:
        raise InvalidImageError(f"cannot be cut into sagittal slices: {refused[path.name]}",
                                path)


def find_cases(root: str | os.PathLike, *, target: str = "binary",
               max_oblique_deg: float = 30.0, skip_refused: bool = False) -> pd.DataFrame:
    """VerSe scans as a generic case table.

    Parameters
    ----------
    root : path
        A VerSe folder (see :func:`medimg.datasets.verse.find_subjects`).
    target : {"binary", "vertebrae"}
        What the labels mean (:func:`description`).
    max_oblique_deg : float
        Scans whose voxel axes are more oblique than this (read from the headers, no
        voxels loaded) cannot be cut into sagittal slices by flips and permutations.
    skip_refused : bool
        Drop refused scans with a warning that lists them (``attrs["refused"]``)
        instead of raising.

    Returns
    -------
    pandas.DataFrame
        ``case`` (scan id), ``images`` ([CT path]), ``label`` (mask path, None for
        unlabelled scans), ``split`` (VerSe's own folder: training, validation, test,
        or None), ``packed`` (False), ``subject``, ``release``, ``direction``,
        ``centroids_path``; ``attrs["dataset"]`` is :func:`description`,
        ``attrs["refused"]`` maps skipped scans to the reason.

    Raises
    ------
    LayoutError
        No VerSe scan under ``root`` (see ``find_subjects``).
    InvalidImageError
        Scans that cannot be sliced, every one listed with its reason (unless
        ``skip_refused``).
    """
    if float(max_oblique_deg) < 0:
        raise ConfigError(f"max_oblique_deg must be non-negative, got {max_oblique_deg}")
    subjects = verse_data.find_subjects(root)
    refused = _refusals(verse_data.scan_table(subjects), float(max_oblique_deg))
    if refused:
        listing = "; ".join(f"{scan}: {why}" for scan, why in sorted(refused.items()))
        reason = ("cannot be cut into sagittal slices by flips and permutations (resample "
                  f"them first): {listing}")
        if not skip_refused:
            raise InvalidImageError(f"{len(refused)} scan(s) {reason}", root)
        warnings.warn(f"{root}: skipping {len(refused)} scan(s) that {reason}", stacklevel=2)
        subjects = subjects[~subjects["scan"].isin(list(refused))]
    if subjects.empty:
        raise LayoutError("no usable VerSe scan left", root)
    table = pd.DataFrame({
        "case": subjects["scan"].astype(str),
        "images": [[p] for p in subjects["ct_path"]],
        "label": subjects["mask_path"],
        "split": subjects["split"],
        "packed": False,
        "subject": subjects["subject"],
        "release": subjects["release"],
        "direction": subjects["direction"],
        "centroids_path": subjects["centroids_path"],
    }).reset_index(drop=True)
    table["label"] = table["label"].astype(object).where(table["label"].notna(), None)
    table.attrs["dataset"] = description(root, target)
    table.attrs["refused"] = refused
    return table


def release_split(cases: pd.DataFrame, cfg: Any = None, *, use_release_splits: bool = True,
                  validation_fraction: float = 0.2, test_fraction: float = 0.2,
                  seed: int = 0) -> pd.DataFrame:
    """Train / validation / test of the labelled scans: VerSe's folders, else by subject.

    VerSe ships training, validation (the former public test) and test (the former
    hidden test) folders. When every labelled scan comes from such a folder, all three
    are present and no subject spans two of them, those folders are the split;
    otherwise :func:`medimg.datasets.splits.split_by_group` splits by ``subject``.

    Parameters
    ----------
    cases : pandas.DataFrame
        From :func:`find_cases` (unlabelled rows are dropped).
    cfg : Config, optional
        Supplies ``split.use_release_splits``, ``split.validation_fraction``,
        ``split.test_fraction`` and ``seed`` (the keyword arguments otherwise).

    Returns
    -------
    pandas.DataFrame
        The labelled rows with ``split`` (Categorical train, validation, test, as
        ``split_by_group`` returns) and ``release_split`` (VerSe's folder);
        ``attrs["split_source"]`` says which rule was used.
    """
    from ..datasets.splits import SPLITS, split_by_group

    if cfg is not None:
        section = cfg.split
        use_release_splits = bool(section.get("use_release_splits", use_release_splits))
        validation_fraction = float(section["validation_fraction"])
        test_fraction = float(section["test_fraction"])
        seed = int(cfg.seed)
    labelled = cases[cases["label"].notna()].copy()
    if labelled.empty:
        raise LayoutError("no labelled scan to split")
    labelled["release_split"] = labelled["split"]
    folders = labelled["release_split"]
    usable = (use_release_splits and folders.notna().all()
              and set(folders) == set(_RELEASE_SPLITS)
              and int(labelled.groupby("subject")["release_split"].nunique().max()) == 1)
    if usable:
        labelled["split"] = pd.Categorical(folders.map(_RELEASE_SPLITS), categories=list(SPLITS))
        source = "VerSe release folders"
    else:
        labelled = split_by_group(labelled, group="subject",
                                  validation_fraction=validation_fraction,
                                  test_fraction=test_fraction, seed=seed)
        source = f"by subject (seed {seed})"
    labelled.attrs.update(cases.attrs)
    labelled.attrs["split_source"] = source
    return labelled


def adapter(target: str = "binary", *, max_oblique_deg: float = 30.0,
            skip_refused: bool = False) -> Adapter:
    """The VerSe adapter of :func:`medimg.tasks.segmentation.run` for one target."""
    _check_target(target)
    return Adapter(name="verse",
                   find_cases=partial(find_cases, target=target,
                                      max_oblique_deg=float(max_oblique_deg),
                                      skip_refused=skip_refused),
                   group="subject", split=release_split,
                   extra={"target": target, "max_oblique_deg": float(max_oblique_deg)})


def adapter_for(cfg: Any) -> Adapter:
    """The adapter a ``configs/verse.yaml`` config asks for (``target``,
    ``max_oblique_deg``)."""
    return adapter(str(cfg.get("target", "binary")),
                   max_oblique_deg=float(cfg.get("max_oblique_deg", 30.0)))


#: The VerSe adapter (spine vs background; scans more than 30 degrees oblique refused).
ADAPTER = adapter()


# --------------------------------------------------------------------------- baseline

def _rows(cases: pd.DataFrame) -> list[dict[str, Any]]:
    labelled = cases[cases["label"].notna()]
    if labelled.empty:
        raise LayoutError("no labelled scan given")
    return labelled.to_dict("records")


def _spine_and_ct(row: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(CT in HU, spine mask) of one case on its own grid (orientation does not matter
    to a threshold)."""
    image, label = load_case(row, description(), load_label=True)
    return image.array[..., 0], label.array > 0


def fit_hu_threshold(cases: pd.DataFrame, *, thresholds_hu: Sequence[float] | None = None,
                     ) -> dict[str, Any]:
    """The HU threshold that segments the spine best on the given (training) scans.

    The rule calls a voxel spine when its CT number is at least the threshold. For
    each candidate, the Dice of that rule is computed on every scan (from histograms:
    one pass per scan) and averaged over the scans; the best mean wins. Fit it on the
    training scans only and apply it unchanged to the test scans
    (:func:`hu_threshold_scores`): the test set chooses nothing.

    Parameters
    ----------
    cases : pandas.DataFrame
        Labelled rows of :func:`find_cases` (e.g. the ``train`` part of a split).
    thresholds_hu : sequence of float, optional
        Candidates in HU (default -200 to 1500 in steps of 10).

    Returns
    -------
    dict
        ``threshold_hu``, ``train_dice`` (mean Dice of the best threshold on these
        scans), ``n_scans``, ``curve`` (DataFrame: ``threshold_hu``, ``dice``).
    """
    candidates = np.asarray(thresholds_hu if thresholds_hu is not None
                            else np.arange(-200.0, 1500.1, 10.0), dtype=np.float64)
    if candidates.ndim != 1 or candidates.size == 0 or not np.all(np.diff(candidates) > 0):
        raise ConfigError("thresholds_hu must be increasing numbers")
    edges = np.append(candidates, np.inf)
    curves = []
    for row in _rows(cases):
        ct, spine = _spine_and_ct(row)
        counts, _ = np.histogram(ct, bins=edges)
        spine_counts, _ = np.histogram(ct[spine], bins=edges)
        # voxels at or above each candidate: counts from that bin to the top
        predicted = np.cumsum(counts[::-1])[::-1]
        hits = np.cumsum(spine_counts[::-1])[::-1]
        truth = int(spine.sum())
        denominator = predicted + truth
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(denominator > 0, 2.0 * hits / denominator, 1.0)
        curves.append(dice)
    mean = np.mean(curves, axis=0)
    best = int(np.argmax(mean))
    return {"threshold_hu": float(candidates[best]), "train_dice": float(mean[best]),
            "n_scans": len(curves),
            "curve": pd.DataFrame({"threshold_hu": candidates, "dice": mean})}


def hu_threshold_scores(cases: pd.DataFrame, threshold_hu: float) -> pd.DataFrame:
    """Dice of the HU-threshold rule on each scan (spine vs background, whole volume).

    Parameters
    ----------
    cases : pandas.DataFrame
        Labelled rows of :func:`find_cases` (the test scans).
    threshold_hu : float
        From :func:`fit_hu_threshold` on the training scans.

    Returns
    -------
    pandas.DataFrame
        ``case``, ``dice``, ``truth_voxels``, ``predicted_voxels``.
    """
    from ..metrics import dice

    rows = []
    for row in _rows(cases):
        ct, spine = _spine_and_ct(row)
        predicted = ct >= float(threshold_hu)
        n_t, n_p = int(spine.sum()), int(predicted.sum())
        score = 1.0 if n_t == 0 and n_p == 0 else float(dice(spine, predicted, smooth=0.0))
        rows.append({"case": row["case"], "dice": score, "truth_voxels": n_t,
                     "predicted_voxels": n_p})
    return pd.DataFrame(rows)


def compare_with_baseline(model_scores: pd.DataFrame, baseline_scores: pd.DataFrame, *,
                          n_bootstrap: int = 2000, seed: int = 0,
                          model_name: str = "the U-Net",
                          baseline_name: str = "the HU threshold") -> dict[str, Any]:
    """Model vs baseline on the same scans: each mean with its interval, the paired
    difference with its interval, and a sentence that says what they show.

    Parameters
    ----------
    model_scores, baseline_scores : pandas.DataFrame
        ``case`` and ``dice`` (one row per scan; the model's from
        :func:`medimg.tasks.segmentation.evaluate_folder` for the ``spine`` label).

    Returns
    -------
    dict
        ``model`` and ``baseline`` (:func:`medimg.tasks.segmentation.mean_with_ci`),
        ``difference`` (mean paired difference with its interval), ``n`` (scans scored
        by both), ``sentence``.

    Raises
    ------
    LayoutError
        No scan scored by both.
    """
    paired = model_scores[["case", "dice"]].merge(baseline_scores[["case", "dice"]],
                                                  on="case", suffixes=("_model", "_baseline"))
    if paired.empty:
        raise LayoutError("the model and the baseline share no scored scan")
    model = mean_with_ci(paired["dice_model"], n_bootstrap=n_bootstrap, seed=seed)
    baseline = mean_with_ci(paired["dice_baseline"], n_bootstrap=n_bootstrap, seed=seed)
    difference = mean_with_ci(paired["dice_model"] - paired["dice_baseline"],
                              n_bootstrap=n_bootstrap, seed=seed)
    n = len(paired)
    delta, low, high = difference["mean"], difference["low"], difference["high"]
    interval = (f" (95% CI {low:+.3f} to {high:+.3f})" if np.isfinite(low) else
                " (too few scans for an interval)")
    if np.isfinite(low) and low > 0:
        verdict = f"{model_name} beats {baseline_name}"
    elif np.isfinite(high) and high < 0:
        verdict = f"{model_name} does worse than {baseline_name}"
    elif delta > 0:
        verdict = (f"{model_name} scores higher than {baseline_name}, but the interval "
                   "includes no difference")
    else:
        verdict = (f"{model_name} does not score higher than {baseline_name}")
    sentence = (f"On the same {n} test scan{'s' if n != 1 else ''}, {verdict}: Dice "
                f"{model['mean']:.3f} vs {baseline['mean']:.3f}, a paired difference of "
                f"{delta:+.3f}{interval}.")
    return {"model": model, "baseline": baseline, "difference": difference, "n": n,
            "sentence": sentence}


# --------------------------------------------------------------------------- levels

def level_recall(predictions: str | os.PathLike, cases: pd.DataFrame) -> pd.DataFrame:
    """Share of each vertebra's voxels that a prediction calls spine, per scan and level.

    Works for binary and per-vertebra predictions alike (any non-zero predicted voxel
    counts), so it shows which levels a spine-vs-background model misses.

    Parameters
    ----------
    predictions : path
        Folder of ``<case>.nii.gz`` predictions on each scan's own grid (as
        :func:`medimg.tasks.segmentation.predict_cases` writes them).
    cases : pandas.DataFrame
        Labelled rows of :func:`find_cases` (e.g. the test scans).

    Returns
    -------
    pandas.DataFrame
        Index ``case``; one column per level present in any mask, named by level
        (``C7``, ``T12``, ``T13``, ``L1`` ...) in anatomical order; values in [0, 1],
        NaN where a scan does not hold the level (the per-scan table
        :func:`medimg.viz.dice_bars` takes).

    Raises
    ------
    LayoutError
        A case has no prediction file.
    InvalidImageError
        A prediction on another grid than its mask.
    """
    from ..io import read_nifti

    folder = Path(predictions)
    rows = {}
    for row in _rows(cases):
        path = folder / f"{row['case']}.nii.gz"
        if not path.is_file():
            raise LayoutError(f"no prediction for {row['case']}", path)
        predicted = read_nifti(path, canonical=False)
        truth = read_nifti(row["label"], canonical=False)
        if predicted.shape != truth.shape or not np.allclose(predicted.affine, truth.affine,
                                                             atol=1e-3):
            raise InvalidImageError(f"prediction is not on the grid of {row['label']}", path)
        mask = np.asarray(truth.array).astype(np.int64)
        found = np.asarray(predicted.array) > 0
        counts = np.bincount(mask.ravel(), minlength=verse_data.MAX_LABEL + 1)
        hits = np.bincount(mask[found].ravel(), minlength=verse_data.MAX_LABEL + 1)
        rows[row["case"]] = {int(v): hits[v] / counts[v] for v in np.flatnonzero(counts) if v}
    present = {v for values in rows.values() for v in values}
    order = [v for v in verse_data.VERTEBRA_ORDER if v in present]
    table = pd.DataFrame([[rows[case].get(v, np.nan) for v in order] for case in rows],
                         index=pd.Index(list(rows), name="case"),
                         columns=[verse_data.VERTEBRA_NAMES[v] for v in order])
    return table
