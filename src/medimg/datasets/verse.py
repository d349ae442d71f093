"""VerSe 2019/2020 spine CT: the layouts, the label table, discovery and loading.

The VerSe challenge data (Sekuboyina et al., 2021) come in a BIDS-like layout, one
folder per release and split::

    dataset-verse19training/rawdata/sub-verse004/sub-verse004_ct.nii.gz
    dataset-verse19training/derivatives/sub-verse004/sub-verse004_seg-vert_msk.nii.gz
    dataset-verse19training/derivatives/sub-verse004/sub-verse004_seg-subreg_ctd.json
    dataset-01training/rawdata/sub-gl003/sub-gl003_dir-ax_ct.nii.gz        (VerSe 2020)
    dataset-01training/derivatives/sub-gl003/sub-gl003_dir-ax_seg-vert_msk.nii.gz

CT voxels are Hounsfield units; masks label each vertebra with its VerSe number
(1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 sacrum, 27 coccyx, 28 T13). Scans
arrive in any orientation (axial or sagittal acquisitions, RAS, LPS, PIR, ...):
:func:`load_scan` brings a scan to one orientation with
:func:`medimg.spatial.reorient` (flips and permutations, refusing scans too oblique
for that), and :func:`scan_table` reads every scan's geometry from its header.

This module holds the data layer only. The spine chapter's pipeline (VerSe as a
case table for the generic segmentation pipeline, the release splits, the
HU-threshold baseline) is :mod:`medimg.tasks.spine`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidImageError, LayoutError

__all__ = [
    "MAX_LABEL",
    "PLANE_ORIENTATIONS",
    "VERTEBRA_NAMES",
    "VERTEBRA_ORDER",
    "find_subjects",
    "load_scan",
    "obliquity_deg",
    "read_centroids",
    "scan_table",
]

#: VerSe label -> vertebra name (as in the VerSe data utilities).
VERTEBRA_NAMES: dict[int, str] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{i + 7: f"T{i}" for i in range(1, 13)},
    **{i + 19: f"L{i}" for i in range(1, 7)},
    26: "S", 27: "Cocc", 28: "T13",
}
#: VerSe labels in anatomical order, head to tail: the transitional T13 (label 28) sits
#: between T12 and L1, L6 (25) after L5, then sacrum and coccyx. Sort levels by this,
#: never by label number.
VERTEBRA_ORDER: tuple[int, ...] = (*range(1, 20), 28, *range(20, 26), 26, 27)
#: Largest label a VerSe vertebra mask may hold.
MAX_LABEL = 28

#: Orientation each plane's slices are cut in by :func:`load_scan`: axis 0 is the slice
#: axis, axis 1 the rows (top to bottom), axis 2 the columns (left to right on screen).
PLANE_ORIENTATIONS: dict[str, tuple[str, str, str]] = {
    "sagittal": ("R", "I", "A"),  # rows superior->inferior, columns posterior->anterior
    "coronal": ("A", "I", "L"),   # rows superior->inferior, patient's right on the left
    "axial": ("S", "P", "L"),     # rows anterior->posterior, patient's right on the left
}
_CT_SUFFIXES = ("_ct.nii.gz", "_ct.nii")


# ---------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------


def _entities(stem: str) -> dict[str, str]:
    """BIDS key-value parts of a file stem (``sub-gl003_dir-ax`` -> {sub: gl003, dir: ax})."""
    out = {}
    for part in stem.split("_"):
        key, sep, value = part.partition("-")
        if sep:
            out[key] = value
    return out


def _release_and_split(parts: Sequence[str]) -> tuple[str | None, str | None]:
    for part in parts:
        name = part.lower()
        if not name.startswith("dataset-"):
            continue
        split = next((s for s in ("training", "validation", "test") if s in name), None)
        if "verse19" in name or "verse2019" in name:
            release = "2019"
        elif re.match(r"dataset-0\d", name) or "verse20" in name:
            release = "2020"
        else:
            release = None
        return release, split
    return None, None


def _first_existing(folder: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def find_subjects(root: str | os.PathLike) -> pd.DataFrame:
    """List the CT scans of a VerSe 2019/2020 folder with their masks and centroids.

    Every ``*_ct.nii.gz`` (or ``.nii``) under a ``rawdata`` folder is a scan; its mask
    (``<stem>_seg-vert_msk.nii.gz``) and centroids (``<stem>_seg-subreg_ctd.json``)
    are looked up at the same relative place under the sibling ``derivatives`` folder
    (or next to the CT when there is no ``rawdata`` level). Release (2019/2020) and
    split (training/validation/test) come from the ``dataset-*`` folder names of
    either release; VerSe 2020's ``_dir-ax``/``_dir-sag`` parts are kept in the scan
    id. A CT without a mask is listed with ``mask_path`` None.

    Parameters
    ----------
    root : path
        A folder holding one or more release folders (or one of them, or a
        ``rawdata``/``derivatives`` pair).

    Returns
    -------
    pandas.DataFrame
        One row per scan, sorted by ``scan``: ``scan`` (file stem without ``_ct``, e.g.
        ``sub-gl003_dir-ax``), ``subject`` (``sub-gl003``), ``release``, ``split``,
        ``direction`` (``ax``/``sag``/None), ``ct_path``, ``mask_path``,
        ``centroids_path`` (paths as str or None), ``has_mask``.

    Raises
    ------
    LayoutError
        ``root`` missing, no CT found, a CT name without a ``sub-`` part, or two
        files with the same scan id.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError("VerSe root is not a directory", root)
    rows, seen = [], {}
    for ct in sorted(root.rglob("*_ct.nii*")):
        if not ct.name.endswith(_CT_SUFFIXES) or ct.name.startswith("."):
            continue
        rel = ct.relative_to(root).parts
        if "derivatives" in rel:
            continue
        stem = ct.name[: -len(next(s for s in _CT_SUFFIXES if ct.name.endswith(s)))]
        entities = _entities(stem)
        if "sub" not in entities:
            raise LayoutError("CT file name has no 'sub-<id>' part (expected e.g. "
                              "sub-verse004_ct.nii.gz)", ct)
        if stem in seen:
            raise LayoutError(f"scan {stem!r} found twice: {seen[stem]} and {ct}", root)
        seen[stem] = ct
        if "rawdata" in rel[:-1]:
            i = len(rel) - 2 - list(reversed(rel[:-1])).index("rawdata")
            derivatives = root.joinpath(*rel[:i], "derivatives", *rel[i + 1:-1])
        else:
            derivatives = ct.parent
        mask = _first_existing(derivatives, (f"{stem}_seg-vert_msk.nii.gz",
                                             f"{stem}_seg-vert_msk.nii"))
        centroids = _first_existing(derivatives, (f"{stem}_seg-subreg_ctd.json",
                                                  f"{stem}_seg-vert_ctd.json"))
        if centroids is None and derivatives.is_dir():
            centroids = next(iter(sorted(derivatives.glob(f"{stem}_*ctd.json"))), None)
        release, split = _release_and_split(rel)
        rows.append({
            "scan": stem, "subject": f"sub-{entities['sub']}", "release": release,
            "split": split, "direction": entities.get("dir"), "ct_path": str(ct),
            "mask_path": None if mask is None else str(mask),
            "centroids_path": None if centroids is None else str(centroids),
            "has_mask": mask is not None,
        })
    if not rows:
        raise LayoutError("no CT scans found (expected rawdata/sub-*/sub-*_ct.nii.gz as in "
                          "VerSe 2019/2020; see data/verse/README.md)", root)
    df = pd.DataFrame(rows).sort_values("scan", ignore_index=True)
    # missing entries are None (not NaN) so that `if row.mask_path:` reads naturally
    text = ["release", "split", "direction", "mask_path", "centroids_path"]
    df[text] = df[text].astype(object).where(df[text].notna(), None)
    return df


def read_centroids(path: str | os.PathLike) -> pd.DataFrame:
    """Read a VerSe centroid JSON into a table.

    Parameters
    ----------
    path : path
        ``*_ctd.json``: a list whose first entry is ``{"direction": [a, b, c]}`` and
        whose other entries are ``{"label": l, "X": x, "Y": y, "Z": z}``.

    Returns
    -------
    pandas.DataFrame
        Columns ``label``, ``name``, ``X``, ``Y``, ``Z``; ``df.attrs["direction"]``
        holds the axis codes the coordinates refer to. Entries with NaN are dropped.

    Raises
    ------
    LayoutError
        Not valid JSON or not in the VerSe format.
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LayoutError(f"cannot read centroid JSON ({exc})", path) from None
    if not isinstance(entries, list):
        raise LayoutError("centroid JSON must be a list of entries", path)
    direction, rows = None, []
    for entry in entries:
        if not isinstance(entry, dict):
            raise LayoutError(f"centroid entry {entry!r} is not an object", path)
        if "direction" in entry:
            direction = tuple(entry["direction"])
            continue
        try:
            row = {"label": int(entry["label"]), "X": float(entry["X"]),
                   "Y": float(entry["Y"]), "Z": float(entry["Z"])}
        except (KeyError, TypeError, ValueError):
            raise LayoutError(f"centroid entry {entry!r} lacks label/X/Y/Z", path) from None
        if any(np.isnan(row[k]) for k in "XYZ"):
            continue
        row["name"] = VERTEBRA_NAMES.get(row["label"], str(row["label"]))
        rows.append(row)
    df = pd.DataFrame(rows, columns=["label", "name", "X", "Y", "Z"])
    df.attrs["direction"] = direction
    return df


# ---------------------------------------------------------------------------------------
# Geometry and loading
# ---------------------------------------------------------------------------------------


def obliquity_deg(affine: np.ndarray) -> float:
    """Largest angle, in degrees, between a voxel axis and its nearest patient axis.

    0 for a scan whose axes run along the patient's (any flip or permutation); a
    flip/permutation cannot make a slice of a scan oblique by more than a few degrees
    truly sagittal, axial or coronal.

    Parameters
    ----------
    affine : numpy.ndarray, shape (4, 4)
        Voxel to world (mm).

    Returns
    -------
    float
        Degrees in [0, 54.7]; NaN for a degenerate affine.
    """
    affine = np.asarray(affine, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rotation = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.clip(np.abs(rotation).max(axis=0), 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines.min())))


def _scan_name(scan: Any) -> tuple[str, str, str | None]:
    """(scan id, CT path, mask path) of a find_subjects row, a mapping or a CT path."""
    if isinstance(scan, str | os.PathLike):
        path = Path(scan)
        name = path.name.split("_ct.nii")[0]
        return name, str(path), None
    get = scan.get if hasattr(scan, "get") else (lambda k, d=None: getattr(scan, k, d))
    mask = get("mask_path", None)
    if mask is not None and not isinstance(mask, str) and pd.isna(mask):
        mask = None
    return str(get("scan")), str(get("ct_path")), mask


def _orientation_known(path: str) -> bool | None:
    """False when a NIfTI header sets neither a qform nor an sform (orientation unknown);
    None when the header cannot be read (the reader reports that with the right error)."""
    import nibabel as nib

    try:
        header = nib.load(path).header
    except Exception:
        return None
    return not (int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0)


def load_scan(scan: Any, *, orientation: Sequence[str] | str = PLANE_ORIENTATIONS["sagittal"],
              max_oblique_deg: float = 30.0, load_mask: bool = True) -> tuple[Any, Any]:
    """Read a scan's CT (HU) and vertebra mask, checked, in one orientation.

    Parameters
    ----------
    scan : row of :func:`find_subjects`, mapping, or path of a CT
        What to read.
    orientation : str or three str
        Target axis codes, e.g. ``PLANE_ORIENTATIONS["sagittal"]`` (default: ``RIA``,
        so that ``array[i]`` is a sagittal slice, rows superior to inferior, columns
        posterior to anterior) or ``"RAS"``.
    max_oblique_deg : float
        Largest angle between a voxel axis and the patient axis it is mapped to
        (:func:`obliquity_deg`); beyond it the scan is refused, as flips and
        permutations would not make its slices sagittal (resample it first).
    load_mask : bool
        Read the mask too (when the scan has one).

    Returns
    -------
    ct : medimg.io.Volume
        ``(x, y, z)`` float32 Hounsfield units, reoriented with
        :func:`medimg.spatial.reorient`; ``meta`` holds ``scan`` (the id),
        ``source_affine`` and ``source_shape`` (the file's own grid, to write results
        back).
    mask : medimg.io.Volume or None
        uint8 VerSe labels on the same grid, or None.

    Raises
    ------
    InvalidImageError
        Each message names the scan: the CT is not 3-D; the mask's shape or affine
        differs from the CT's; mask labels outside VerSe's numbering (0-28); no
        orientation in the header, too oblique, or an invalid ``orientation``.
    DecodeError
        Unreadable files.
    """
    from ..io import read_nifti
    from ..spatial import reorient

    name, ct_path, mask_path = _scan_name(scan)
    codes = "".join(orientation)
    if _orientation_known(ct_path) is False:
        raise InvalidImageError(
            f"scan {name}: qform_code and sform_code are both 0 (orientation unknown), so "
            f"it cannot be brought to {codes} orientation; set the qform/sform", ct_path)
    ct = read_nifti(ct_path, canonical=False)
    if ct.array.ndim != 3:
        raise InvalidImageError(f"scan {name}: CT has shape {ct.shape}, expected 3-D", ct_path)
    ct = ct.with_array(ct.array.astype(np.float32, copy=False))
    source = {"scan": name, "source_affine": ct.affine.copy(),
              "source_shape": tuple(int(s) for s in ct.shape)}
    ct.meta.update(source)
    mask = None
    if load_mask and mask_path is not None:
        mask = read_nifti(mask_path, canonical=False)
        if mask.shape != ct.shape:
            raise InvalidImageError(
                f"scan {name}: mask shape {mask.shape} differs from CT shape {ct.shape}",
                mask_path)
        if not (np.allclose(mask.affine[:3, :3], ct.affine[:3, :3], atol=1e-3)
                and np.allclose(mask.affine[:3, 3], ct.affine[:3, 3], atol=0.05)):
            raise InvalidImageError(
                f"scan {name}: mask affine differs from the CT affine (mask "
                f"{np.round(mask.affine[:3], 3).tolist()} vs CT "
                f"{np.round(ct.affine[:3], 3).tolist()}); they must share one grid",
                mask_path)
        mask = mask.with_array(_check_labels(mask.array, name, mask_path), ct.affine)
        mask.meta.update(source)
    ct = reorient(ct, codes, max_oblique_deg=max_oblique_deg, name=f"scan {name}")
    if mask is not None:
        mask = reorient(mask, codes, max_oblique_deg=max_oblique_deg, name=f"scan {name}")
    return ct, mask


def _check_labels(array: np.ndarray, name: str, path: str) -> np.ndarray:
    """The mask as uint8 after checking it only holds VerSe labels 0..28."""
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InvalidImageError(f"scan {name}: mask holds non-integer values; expected "
                                    f"VerSe labels 0-{MAX_LABEL}", path)
    if array.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(array.ravel(), minlength=256))
    else:
        present = np.unique(array)
    bad = [int(v) for v in present if v < 0 or v > MAX_LABEL]
    if bad:
        raise InvalidImageError(
            f"scan {name}: mask labels {bad[:10]} are outside VerSe's numbering "
            f"(0 background, 1-7 C, 8-19 T, 20-25 L, 26-27 sacrum/coccyx, 28 T13)", path)
    return array.astype(np.uint8, copy=False)


def scan_table(subjects: pd.DataFrame) -> pd.DataFrame:
    """Geometry of every scan from its header (no voxels read): the orientation check.

    Parameters
    ----------
    subjects : pandas.DataFrame
        From :func:`find_subjects`.

    Returns
    -------
    pandas.DataFrame
        ``scan``, ``split``, ``shape``, ``spacing_mm``, ``axcodes`` (as stored),
        ``oblique_deg`` (:func:`obliquity_deg`), ``orientation_known`` (False when
        the header sets neither qform nor sform), ``vertebrae`` (first-last level in
        anatomical order, from the centroid file) and ``n_vertebrae``.
    """
    import nibabel as nib

    rank = {label: i for i, label in enumerate(VERTEBRA_ORDER)}
    rows = []
    for row in subjects.itertuples(index=False):
        img = nib.load(row.ct_path)
        zooms = tuple(round(float(z), 2) for z in img.header.get_zooms()[:3])
        vertebrae, count = None, 0
        if isinstance(row.centroids_path, str):
            ctd = read_centroids(row.centroids_path)
            ctd = ctd[ctd.label.isin(list(rank))]
            count = len(ctd)
            if count:
                ordered = sorted(ctd.label, key=rank.__getitem__)
                vertebrae = f"{VERTEBRA_NAMES[ordered[0]]}-{VERTEBRA_NAMES[ordered[-1]]}"
        rows.append({"scan": row.scan, "split": row.split, "shape": tuple(img.shape),
                     "spacing_mm": zooms, "axcodes": "".join(nib.aff2axcodes(img.affine)),
                     "oblique_deg": round(obliquity_deg(img.affine), 1),
                     "orientation_known": _orientation_known(row.ct_path) is not False,
                     "vertebrae": vertebrae, "n_vertebrae": count})
    return pd.DataFrame(rows)
