"""VerSe 2019/2020 spine CT: discovery, orientation, sagittal slice cache, tf.data, U-Net.

The VerSe challenge data (Sekuboyina et al., 2021) come in a BIDS-like layout, one
folder per release and split::

    dataset-verse19training/rawdata/sub-verse004/sub-verse004_ct.nii.gz
    dataset-verse19training/derivatives/sub-verse004/sub-verse004_seg-vert_msk.nii.gz
    dataset-verse19training/derivatives/sub-verse004/sub-verse004_seg-subreg_ctd.json
    dataset-01training/rawdata/sub-gl003/sub-gl003_dir-ax_ct.nii.gz        (VerSe 2020)
    dataset-01training/derivatives/sub-gl003/sub-gl003_dir-ax_seg-vert_msk.nii.gz

CT voxels are Hounsfield units; masks label each vertebra with its VerSe number
(1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 28 T13; 26/27 sacrum/coccyx appear in
centroid files). Scans arrive in any orientation (axial or sagittal acquisitions, RAS,
LPS, PIR, ...), so every scan is brought to one orientation per plane before slicing
(:data:`PLANE_ORIENTATIONS`): a sagittal slice is then ``array[i]``, rows running
superior to inferior and columns posterior to anterior, whatever the file's affine.

The 2-D pipeline:

1. :func:`find_subjects` lists the scans (with or without masks) of either release.
2. :func:`split_subjects` assigns train/validation/test by subject (the releases'
   own folders when present).
3. :func:`build_slice_cache` reorients each scan, resamples the slice plane to
   ``spacing_mm`` and stores the slice stack once as two ``.npy`` files (int16 HU,
   uint8 labels) plus a JSON index, in parallel, atomically, resumable.
4. :func:`slice_dataset` streams slices from the memory-mapped cache into a
   ``tf.data.Dataset`` (crops around the spine, bone window, augmentation, prefetch);
   binary (spine vs background) or per-vertebra targets.
5. :func:`build_model` / :func:`fit` train a 2-D :func:`medimg.models.unet` with
   Dice + cross-entropy; :func:`predict_scan` predicts every slice of a scan, restacks
   the volume in the file's own grid and affine; :func:`evaluate` computes the Dice on
   whole volumes and writes the predictions as NIfTI.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._fsutil import atomic_path, atomic_write_text
from ..errors import ConfigError, InvalidImageError, LayoutError

__all__ = [
    "MAX_LABEL",
    "N_VERTEBRA_CLASSES",
    "PLANE_ORIENTATIONS",
    "VERTEBRA_NAMES",
    "build_model",
    "build_slice_cache",
    "custom_objects",
    "dice_ce_loss",
    "evaluate",
    "example_slices",
    "find_subjects",
    "fit",
    "load_cached_slices",
    "load_scan",
    "predict_scan",
    "read_centroids",
    "reorient",
    "scan_table",
    "slice_dataset",
    "split_subjects",
    "train_from_config",
]

#: VerSe label -> vertebra name (as in the VerSe data utilities).
VERTEBRA_NAMES: dict[int, str] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{i + 7: f"T{i}" for i in range(1, 13)},
    **{i + 19: f"L{i}" for i in range(1, 7)},
    26: "S", 27: "Cocc", 28: "T13",
}
#: Largest label a VerSe vertebra mask may hold; class indices are the labels themselves.
MAX_LABEL = 28
N_VERTEBRA_CLASSES = MAX_LABEL + 1

#: Orientation each plane's slices are cut in: axis 0 is the slice axis, axis 1 the rows
#: (top to bottom), axis 2 the columns (left to right on screen).
PLANE_ORIENTATIONS: dict[str, tuple[str, str, str]] = {
    "sagittal": ("R", "I", "A"),  # rows superior->inferior, columns posterior->anterior
    "coronal": ("A", "I", "L"),   # rows superior->inferior, patient's right on the left
    "axial": ("S", "P", "L"),     # rows anterior->posterior, patient's right on the left
}
_AIR_HU = -1024
_CACHE_VERSION = 1
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
# Orientation and loading
# ---------------------------------------------------------------------------------------


def _check_axcodes(axcodes: Sequence[str]) -> tuple[str, str, str]:
    codes = tuple(str(c).upper() for c in axcodes)
    pairs = [{"L", "R"}, {"A", "P"}, {"S", "I"}]
    used = [next((i for i, p in enumerate(pairs) if c in p), None) for c in codes]
    if len(codes) != 3 or None in used or sorted(used) != [0, 1, 2]:
        raise ConfigError(f"orientation {''.join(map(str, axcodes))!r} is not valid: expected "
                          "three codes, one each of L/R, A/P and S/I (e.g. 'RAS', 'PIR')")
    return codes  # type: ignore[return-value]


def _obliquity_deg(affine: np.ndarray) -> float:
    """Largest angle (degrees) between a voxel axis and the nearest world axis."""
    rotation = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.clip(np.abs(rotation).max(axis=0), 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines.min())))


def reorient(volume, axcodes: Sequence[str] = ("R", "A", "S"), *,
             max_oblique_deg: float = 45.0, name: str | None = None):
    """Bring a volume to the orientation ``axcodes`` by axis flips and permutations.

    Parameters
    ----------
    volume : medimg.io.Volume
        Any orientation.
    axcodes : three str
        Target codes (e.g. ``"RAS"``, ``"PIR"``, or :data:`PLANE_ORIENTATIONS` values).
    max_oblique_deg : float
        Largest angle between a voxel axis and the world axis it is mapped to. Beyond
        it a flip/permutation would not make "sagittal" mean sagittal (the scan needs
        resampling), so the scan is refused.
    name : str, optional
        Scan name used in error messages (default the volume's path).

    Returns
    -------
    medimg.io.Volume
        Reoriented array with the matching affine; ``meta["source_affine"]``,
        ``meta["source_shape"]`` and ``meta["to_source"]`` (nibabel orientation array)
        allow mapping results back onto the original grid with :func:`_to_source`.

    Raises
    ------
    ConfigError
        ``axcodes`` is not a valid orientation.
    InvalidImageError
        The affine is too oblique (or degenerate) to be brought to ``axcodes``.
    """
    import nibabel as nib

    from ..io import Volume

    target = _check_axcodes(axcodes)
    who = name or volume.meta.get("path") or "volume"
    oblique = _obliquity_deg(volume.affine)
    if not np.isfinite(oblique) or oblique > max_oblique_deg:
        raise InvalidImageError(
            f"scan {who}: voxel axes are {oblique:.0f} degrees oblique to the patient axes "
            f"(limit {max_oblique_deg:g}); it cannot be brought to {''.join(target)} "
            "orientation by flips and permutations (resample it first)")
    source = nib.orientations.io_orientation(volume.affine)
    if np.isnan(source).any():
        raise InvalidImageError(f"scan {who}: orientation codes cannot be determined from the "
                                f"affine; it cannot be brought to {''.join(target)}")
    transform = nib.orientations.ornt_transform(source, nib.orientations.axcodes2ornt(target))
    shape = volume.array.shape[:3]
    array = nib.orientations.apply_orientation(volume.array, transform)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(transform, shape)
    meta = dict(volume.meta)
    meta["source_affine"] = volume.affine.copy()
    meta["source_shape"] = tuple(shape)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(target), source)
    meta["to_source"] = back
    return Volume(np.ascontiguousarray(array), affine, meta)


def _to_source(array: np.ndarray, meta: dict) -> np.ndarray:
    """Map an array in a reoriented grid back to the grid of the file it came from."""
    import nibabel as nib

    return np.ascontiguousarray(nib.orientations.apply_orientation(array, meta["to_source"]))


def _scan_name(scan: Any) -> tuple[str, str, str | None]:
    """(scan id, CT path, mask path) of a find_subjects row, a mapping or a CT path."""
    if isinstance(scan, (str, os.PathLike)):
        path = Path(scan)
        name = path.name.split("_ct.nii")[0]
        return name, str(path), None
    get = scan.get if hasattr(scan, "get") else (lambda k, d=None: getattr(scan, k, d))
    mask = get("mask_path", None)
    if mask is not None and not isinstance(mask, str) and pd.isna(mask):
        mask = None
    return str(get("scan")), str(get("ct_path")), mask


def _check_orientation_header(path: str, name: str, target: Sequence[str]) -> None:
    """Refuse NIfTI files that carry no orientation at all (qform and sform codes 0)."""
    import nibabel as nib

    try:
        header = nib.load(path).header
    except Exception:  # read_nifti reports unreadable files with the right error type
        return
    if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
        raise InvalidImageError(
            f"scan {name}: qform_code and sform_code are both 0 (orientation unknown), so "
            f"it cannot be brought to {''.join(target)} orientation; set the qform/sform",
            path)


def load_scan(scan: Any, *, orientation: Sequence[str] | str = PLANE_ORIENTATIONS["sagittal"],
              max_oblique_deg: float = 30.0, load_mask: bool = True):
    """Read a scan's CT (HU) and vertebra mask, checked, in one orientation.

    Parameters
    ----------
    scan : row of :func:`find_subjects`, mapping, or path of a CT
        What to read.
    orientation : str or three str
        Target axis codes, e.g. ``PLANE_ORIENTATIONS["sagittal"]`` (default) or ``"RAS"``.
    max_oblique_deg : float
        See :func:`reorient`.
    load_mask : bool
        Read the mask too (when the scan has one).

    Returns
    -------
    ct : medimg.io.Volume
        float32 Hounsfield units, reoriented; ``meta["scan"]`` is the scan id.
    mask : medimg.io.Volume or None
        uint8 VerSe labels on the same grid, or None.

    Raises
    ------
    InvalidImageError
        Each message names the scan: the CT is not 3-D; the mask's shape or affine
        differs from the CT's; mask labels outside VerSe's numbering (0-28); no
        orientation in the header or too oblique to reach ``orientation``.
    DecodeError
        Unreadable files.
    """
    from ..io import read_nifti

    name, ct_path, mask_path = _scan_name(scan)
    target = _check_axcodes(tuple(orientation))
    _check_orientation_header(ct_path, name, target)
    ct = read_nifti(ct_path, canonical=False)
    if ct.array.ndim != 3:
        raise InvalidImageError(f"scan {name}: CT has shape {ct.shape}, expected 3-D", ct_path)
    ct = ct.with_array(ct.array.astype(np.float32, copy=False))
    ct.meta["scan"] = name
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
        mask.meta["scan"] = name
    ct = reorient(ct, target, max_oblique_deg=max_oblique_deg, name=name)
    if mask is not None:
        mask = reorient(mask, target, max_oblique_deg=max_oblique_deg, name=name)
    return ct, mask


def _check_labels(array: np.ndarray, name: str, path: str) -> np.ndarray:
    """The mask as uint8 after checking it only holds VerSe labels 0..28."""
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InvalidImageError(f"scan {name}: mask holds non-integer values; expected "
                                    f"VerSe labels 0-{MAX_LABEL}", path)
    if array.dtype.kind in "iu" and array.dtype.itemsize == 1 and array.dtype.kind == "u":
        counts = np.bincount(array.ravel(), minlength=256)
        present = np.nonzero(counts)[0]
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

    Returns
    -------
    pandas.DataFrame
        ``scan``, ``split``, ``shape``, ``spacing_mm``, ``axcodes`` (on disk),
        ``oblique_deg``, ``vertebrae`` (first-last from the centroid file) and
        ``n_vertebrae``.
    """
    import nibabel as nib

    rows = []
    for row in subjects.itertuples(index=False):
        img = nib.load(row.ct_path)
        zooms = tuple(round(float(z), 2) for z in img.header.get_zooms()[:3])
        vertebrae, count = None, 0
        if isinstance(row.centroids_path, str):
            ctd = read_centroids(row.centroids_path)
            ctd = ctd[ctd.label <= MAX_LABEL]
            count = len(ctd)
            if count:
                vertebrae = f"{ctd.name.iloc[0]}-{ctd.name.iloc[-1]}"
        rows.append({"scan": row.scan, "split": row.split, "shape": tuple(img.shape),
                     "spacing_mm": zooms, "axcodes": "".join(nib.aff2axcodes(img.affine)),
                     "oblique_deg": round(_obliquity_deg(img.affine), 1),
                     "vertebrae": vertebrae, "n_vertebrae": count})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------


def split_subjects(subjects: pd.DataFrame, *, validation_fraction: float = 0.2,
                   test_fraction: float = 0.2, seed: int = 0,
                   use_release_splits: bool = True) -> pd.DataFrame:
    """Assign every labelled scan to ``train``, ``validation`` or ``test`` by subject.

    All scans of one subject (e.g. its ``_dir-ax`` and ``_dir-sag`` scans) land in the
    same fold. When ``use_release_splits`` and the scans come from release folders that
    provide all three splits with masks, those are used (training -> train); otherwise
    subjects are shuffled with ``seed`` and cut by the fractions (at least one subject
    per non-empty fold when there are three or more subjects).

    Returns
    -------
    pandas.DataFrame
        A copy of ``subjects`` with a ``fold`` column; scans without mask get
        ``"unlabelled"``.
    """
    out = subjects.copy()
    out["fold"] = "unlabelled"
    labelled = out[out.has_mask]
    mapping = {"training": "train", "validation": "validation", "test": "test"}
    if use_release_splits and labelled.split.notna().all() and \
            set(labelled.split) >= set(mapping):
        out.loc[labelled.index, "fold"] = labelled.split.map(mapping)
        return out
    ids = np.array(sorted(labelled.subject.unique()))
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    n = len(ids)
    n_test = round(test_fraction * n)
    n_val = round(validation_fraction * n)
    if n >= 3:
        n_test = max(n_test, 1) if test_fraction > 0 else 0
        n_val = max(n_val, 1) if validation_fraction > 0 else 0
    fold_of = {s: "test" for s in ids[:n_test]}
    fold_of.update({s: "validation" for s in ids[n_test:n_test + n_val]})
    fold_of.update({s: "train" for s in ids[n_test + n_val:]})
    out.loc[labelled.index, "fold"] = labelled.subject.map(fold_of)
    return out


# ---------------------------------------------------------------------------------------
# Slice cache
# ---------------------------------------------------------------------------------------


def _check_plane(plane: str) -> tuple[str, str, str]:
    if plane not in PLANE_ORIENTATIONS:
        raise ConfigError(f"plane {plane!r} is not one of {', '.join(PLANE_ORIENTATIONS)}")
    return PLANE_ORIENTATIONS[plane]


def _resize_stack(stack: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """Resize every slice of ``(n, h, w)`` to ``size`` (rows, cols) with OpenCV."""
    import cv2

    n, h, w = stack.shape
    if (h, w) == tuple(size):
        return stack
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = np.empty((n, *size), stack.dtype)
    # slices as channels: one OpenCV call per chunk (OpenCV 5 takes at most 128 channels)
    step = 128
    for start in range(0, n, step):
        chunk = np.ascontiguousarray(stack[start:start + step].transpose(1, 2, 0))
        resized = cv2.resize(chunk, (size[1], size[0]), interpolation=interpolation)
        out[start:start + step] = resized.reshape(*size, -1).transpose(2, 0, 1)
    return out


def _plane_size(shape: Sequence[int], spacing: Sequence[float], spacing_mm: float
                ) -> tuple[int, int]:
    return (max(1, round(shape[1] * spacing[1] / spacing_mm)),
            max(1, round(shape[2] * spacing[2] / spacing_mm)))


def _fingerprint(*paths: str | None) -> list:
    out = []
    for p in paths:
        if p is None:
            out.append(None)
        else:
            st = os.stat(p)
            out.append([os.path.basename(p), st.st_size, st.st_mtime_ns])
    return out


def _cache_settings(row: dict, plane: str, spacing_mm: float) -> dict:
    return {"version": _CACHE_VERSION, "plane": plane, "spacing_mm": float(spacing_mm),
            "source": _fingerprint(row["ct_path"], row["mask_path"])}


def _cached_entry(row: dict, *, folder: Path, plane: str, spacing_mm: float) -> dict | None:
    """The scan's cache entry when it is complete and matches the source and settings."""
    index_path = folder / f"{row['scan']}.json"
    if not index_path.is_file():
        return None
    try:
        entry = json.loads(index_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    try:
        settings = _cache_settings(row, plane, spacing_mm)
    except OSError:
        return None
    if entry.get("settings") != settings:
        return None
    if not all((folder / f"{row['scan']}_{kind}.npy").is_file() for kind in ("image", "label")):
        return None
    return entry


def _cache_one(row: dict, *, folder: Path, plane: str, spacing_mm: float,
               max_oblique_deg: float) -> dict:
    """Cache one scan's slices (skipped when an up-to-date entry exists)."""
    name = row["scan"]
    entry = _cached_entry(row, folder=folder, plane=plane, spacing_mm=spacing_mm)
    if entry is not None:
        return entry
    settings = _cache_settings(row, plane, spacing_mm)
    ct, mask = load_scan(row, orientation=PLANE_ORIENTATIONS[plane],
                         max_oblique_deg=max_oblique_deg)
    if mask is None:
        raise LayoutError(f"scan {name}: no vertebra mask, cannot cache training slices",
                          row["ct_path"])
    size = _plane_size(ct.shape, ct.spacing, spacing_mm)
    hu = np.clip(np.rint(ct.array), -1024, 3071).astype(np.int16)
    images = _resize_stack(hu, size, nearest=False)
    labels = _resize_stack(mask.array, size, nearest=True)
    fg = labels > 0
    fg_pixels = fg.sum(axis=(1, 2))
    centres = []
    for i in range(len(labels)):
        if fg_pixels[i]:
            rows_, cols_ = np.nonzero(fg[i])
            centres.append([round(float(rows_.mean()), 1), round(float(cols_.mean()), 1)])
        else:
            centres.append(None)
    for kind, array in (("image", images), ("label", labels)):
        with atomic_path(folder / f"{name}_{kind}.npy") as tmp:
            np.save(tmp, array)
    entry = {"scan": name, "settings": settings, "n_slices": len(images),
             "height": size[0], "width": size[1], "foreground_pixels": fg_pixels.tolist(),
             "foreground_centres": centres,
             "labels": [int(v) for v in np.unique(labels) if v]}
    # written last: its presence marks the entry complete
    atomic_write_text(folder / f"{name}.json", json.dumps(entry))
    return entry


def build_slice_cache(subjects: pd.DataFrame, cache_dir: str | os.PathLike, *,
                      plane: str = "sagittal", spacing_mm: float = 1.0,
                      max_oblique_deg: float = 30.0, n_jobs: int | None = -1,
                      progress: bool = True, on_error: str = "raise") -> pd.DataFrame:
    """Cache the slices of every labelled scan once (parallel, atomic, resumable).

    Each scan is read, checked and reoriented (:func:`load_scan`), its slice plane is
    resampled to ``spacing_mm`` (linear for CT, nearest for labels; the slice axis is
    kept: one cached slice per voxel plane), and stored as ``<scan>_image.npy`` (int16
    HU, ``(n_slices, rows, cols)``) and ``<scan>_label.npy`` (uint8 VerSe labels), then
    ``<scan>.json`` (sizes, per-slice foreground, settings, source file sizes and
    times) is written last. A rerun skips scans whose JSON matches; a changed source
    file or setting redoes that scan only.

    Why ``.npy``: the arrays are memory-mapped by :func:`slice_dataset`, so an epoch
    reads only the slices it uses, with no decoding (see
    ``benchmarks/bench_verse_slices.py`` for the measurement against PNG files).

    Parameters
    ----------
    subjects : pandas.DataFrame
        Rows of :func:`find_subjects`; scans without mask are skipped.
    cache_dir : path
        Root of the cache; entries go to ``<cache_dir>/<plane>-<spacing>mm/``.
    plane : {"sagittal", "coronal", "axial"}
    spacing_mm : float
        Pixel size of the cached slices.
    max_oblique_deg : float
        See :func:`reorient`.
    n_jobs : int
        Worker processes (-1: all cores).
    on_error : {"raise", "skip"}
        A scan that fails (bad mask, orientation ...) raises after the others are
        cached (``"raise"``), or is left out with a warning (``"skip"``).

    Returns
    -------
    pandas.DataFrame
        One row per cached scan: ``scan``, ``n_slices``, ``height``, ``width``,
        ``n_foreground_slices``, ``image_path``, ``label_path`` and the JSON entry in
        ``entry``.

    Raises
    ------
    InvalidImageError
        ``on_error="raise"`` and some scans failed; the message names each one.
    """
    from .._parallel import ItemResult, map_items

    _check_plane(plane)
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    folder = Path(cache_dir) / f"{plane}-{float(spacing_mm):g}mm"
    folder.mkdir(parents=True, exist_ok=True)
    labelled = subjects[subjects.has_mask] if "has_mask" in subjects else subjects
    rows = [dict(r) for r in labelled[["scan", "ct_path", "mask_path"]].to_dict("records")]
    work = partial(_cache_one, folder=folder, plane=plane, spacing_mm=spacing_mm,
                   max_oblique_deg=max_oblique_deg)
    # finished scans are picked up here, so a rerun starts no worker processes at all
    done = {r["scan"]: _cached_entry(r, folder=folder, plane=plane, spacing_mm=spacing_mm)
            for r in rows}
    todo = [r for r in rows if done[r["scan"]] is None]
    computed = {r.item["scan"]: r for r in (
        map_items(work, todo, n_jobs=n_jobs, progress=progress,
                  desc=f"caching {plane} slices", unit="scan") if todo else [])}
    results = [computed[r["scan"]] if done[r["scan"]] is None
               else ItemResult(r, done[r["scan"]]) for r in rows]
    failed = [f"{r.item['scan']}: {r.error}" for r in results if not r.ok]
    if failed:
        message = f"{len(failed)} of {len(rows)} scans could not be cached: " + "; ".join(failed)
        if on_error == "raise":
            raise InvalidImageError(message)
        import warnings

        warnings.warn(message, stacklevel=2)
    records = []
    for r in results:
        if not r.ok:
            continue
        e = r.value
        records.append({
            "scan": e["scan"], "n_slices": e["n_slices"], "height": e["height"],
            "width": e["width"],
            "n_foreground_slices": int(np.count_nonzero(e["foreground_pixels"])),
            "image_path": str(folder / f"{e['scan']}_image.npy"),
            "label_path": str(folder / f"{e['scan']}_label.npy"), "entry": e})
    return pd.DataFrame(records, columns=["scan", "n_slices", "height", "width",
                                          "n_foreground_slices", "image_path", "label_path",
                                          "entry"])


def load_cached_slices(index: pd.DataFrame, *, mmap: bool = True
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(images, labels)`` arrays of each cached scan (memory-mapped by default)."""
    mode = "r" if mmap else None
    return [(np.load(r.image_path, mmap_mode=mode), np.load(r.label_path, mmap_mode=mode))
            for r in index.itertuples(index=False)]


# ---------------------------------------------------------------------------------------
# tf.data
# ---------------------------------------------------------------------------------------


def _crop(image: np.ndarray, label: np.ndarray, top: int, left: int,
          shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A ``shape`` window at (top, left), padded with air / background outside."""
    h, w = image.shape
    out_i = np.full(shape, _AIR_HU, image.dtype)
    out_l = np.zeros(shape, label.dtype)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + shape[0], h), min(left + shape[1], w)
    if r1 > r0 and c1 > c0:
        out_i[r0 - top:r1 - top, c0 - left:c1 - left] = image[r0:r1, c0:c1]
        out_l[r0 - top:r1 - top, c0 - left:c1 - left] = label[r0:r1, c0:c1]
    return out_i, out_l


def _start(centre: float, size: int, extent: int) -> int:
    """Window start for a centre, kept inside the slice (or centred when it is smaller)."""
    if extent <= size:
        return (extent - size) // 2
    return int(np.clip(round(centre - size / 2), 0, extent - size))


class _SliceSampler:
    """Chooses the slices and crop windows of one epoch from the cache index."""

    def __init__(self, index: pd.DataFrame, slice_shape: tuple[int, int], *, training: bool,
                 background_fraction: float, seed: int):
        self.arrays = load_cached_slices(index)
        self.entries = list(index.entry)
        self.shape = slice_shape
        self.training = training
        self.background_fraction = background_fraction
        self.seed = seed
        self.epoch = 0
        self.foreground = [(s, i) for s, e in enumerate(self.entries)
                           for i, n in enumerate(e["foreground_pixels"]) if n]
        self.background = [(s, i) for s, e in enumerate(self.entries)
                           for i, n in enumerate(e["foreground_pixels"]) if not n]

    def __len__(self) -> int:
        return len(self.foreground) + min(len(self.background),
                                          round(self.background_fraction * len(self.foreground)))

    def plan(self) -> list[tuple[int, int, int, int]]:
        """(scan, slice, top, left) of every crop of the next epoch."""
        # validation sees the same crops every epoch; training new ones
        rng = np.random.default_rng([self.seed, self.epoch if self.training else 0])
        self.epoch += 1
        n_bg = min(len(self.background), round(self.background_fraction * len(self.foreground)))
        chosen = list(self.foreground)
        if n_bg:
            picks = rng.choice(len(self.background), n_bg, replace=False)
            chosen += [self.background[p] for p in np.sort(picks)]
        plan = []
        for s, i in chosen:
            entry = self.entries[s]
            h, w = entry["height"], entry["width"]
            centre = entry["foreground_centres"][i] or [h / 2, w / 2]
            if self.training:
                # jitter the window around the spine: the crop is the main augmentation
                centre = [centre[0] + rng.uniform(-0.25, 0.25) * self.shape[0],
                          centre[1] + rng.uniform(-0.25, 0.25) * self.shape[1]]
                top = _jitter_start(centre[0], self.shape[0], h, rng)
                left = _jitter_start(centre[1], self.shape[1], w, rng)
            else:
                top = _start(centre[0], self.shape[0], h)
                left = _start(centre[1], self.shape[1], w)
            plan.append((s, i, top, left))
        if self.training:
            rng.shuffle(plan)
        return plan

    def __call__(self):
        for s, i, top, left in self.plan():
            images, labels = self.arrays[s]
            yield _crop(images[i], labels[i], top, left, self.shape)


def _jitter_start(centre: float, size: int, extent: int, rng: np.random.Generator) -> int:
    if extent <= size:  # slice smaller than the window: place it anywhere inside
        return int(rng.integers(extent - size, 1))
    return int(np.clip(round(centre - size / 2), 0, extent - size))


def _augment(tf, image, label, seed):
    """Intensity jitter (contrast, brightness, noise) on windowed images in [0, 1]."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    contrast = tf.random.stateless_uniform([], seeds[0], 0.85, 1.15)
    brightness = tf.random.stateless_uniform([], seeds[1], -0.08, 0.08)
    noise = tf.random.stateless_normal(tf.shape(image), seeds[2], stddev=0.02)
    image = tf.clip_by_value((image - 0.5) * contrast + 0.5 + brightness + noise, 0.0, 1.0)
    return image, label


def _tf():
    from .._backend import tensorflow

    return tensorflow()


def slice_dataset(
    subjects: pd.DataFrame,
    cache_dir: str | os.PathLike,
    *,
    plane: str = "sagittal",
    spacing_mm: float = 1.0,
    slice_shape: Sequence[int] = (128, 128),
    target: str = "binary",
    window: Sequence[float] = (400.0, 1800.0),
    batch_size: int = 16,
    training: bool = True,
    augment: bool | None = None,
    background_fraction: float = 0.2,
    seed: int = 0,
    max_oblique_deg: float = 30.0,
    n_jobs: int | None = -1,
    progress: bool = True,
):
    """A ``tf.data.Dataset`` of 2-D slices and targets from the scans in ``subjects``.

    The slices are cached once (:func:`build_slice_cache`, resumable; the first call
    does the work) and streamed from the memory-mapped cache. Every epoch holds every
    slice that shows spine plus ``background_fraction`` times as many slices without
    it; each slice is cut to ``slice_shape`` around the spine (randomly shifted when
    training), put in the bone window, augmented when training, batched and prefetched.
    Split by subject first (:func:`split_subjects`) and call this once per fold.

    Parameters
    ----------
    subjects : pandas.DataFrame
        Scans of one fold (rows of :func:`find_subjects`).
    cache_dir : path
        Cache root (see :func:`build_slice_cache`).
    plane : {"sagittal", "coronal", "axial"}
        Slicing plane; scans are reoriented to :data:`PLANE_ORIENTATIONS` first.
    spacing_mm : float
        Pixel size of the slices.
    slice_shape : (rows, cols)
        Window fed to the network (pixels); padded with air where the slice is smaller.
    target : {"binary", "vertebrae"}
        ``binary``: ``(rows, cols, 1)`` float32 spine mask (for a sigmoid output).
        ``vertebrae``: ``(rows, cols, 29)`` one-hot of VerSe labels (softmax output;
        class index = VerSe label).
    window : (center, width)
        Intensity window in HU (default the bone window 400/1800), mapped to [0, 1].
    batch_size : int
    training : bool
        Shuffle, random windows, augmentation and a new background draw per epoch;
        when False the epoch is deterministic (validation).
    augment : bool, optional
        Intensity augmentation; defaults to ``training``.
    background_fraction : float
        Slices without spine per slice with spine.
    seed : int
    max_oblique_deg, n_jobs, progress
        Passed to :func:`build_slice_cache`.

    Returns
    -------
    tf.data.Dataset
        Elements ``(image (B, rows, cols, 1) float32, target)``; ``len(dataset)`` is the
        number of batches per epoch (``dataset.cardinality()``).

    Raises
    ------
    ConfigError
        Unknown plane or target, bad ``slice_shape``.
    LayoutError
        No labelled scan in ``subjects``.
    """
    tf = _tf()
    from ..intensity import window as apply_window

    _check_plane(plane)
    if target not in ("binary", "vertebrae"):
        raise ConfigError(f"target must be 'binary' or 'vertebrae', got {target!r}")
    slice_shape = tuple(int(s) for s in slice_shape)
    if len(slice_shape) != 2 or min(slice_shape) < 1:
        raise ConfigError(f"slice_shape must be two positive integers, got {slice_shape!r}")
    if "has_mask" in subjects and not subjects.has_mask.any():
        raise LayoutError("no scan with a vertebra mask in this fold")
    index = build_slice_cache(subjects, cache_dir, plane=plane, spacing_mm=spacing_mm,
                              max_oblique_deg=max_oblique_deg, n_jobs=n_jobs,
                              progress=progress)
    sampler = _SliceSampler(index, slice_shape, training=training,
                            background_fraction=background_fraction, seed=seed)
    n_items = len(sampler)
    if n_items == 0:
        raise LayoutError("the cached scans hold no slice with spine")
    signature = (tf.TensorSpec(slice_shape, tf.int16), tf.TensorSpec(slice_shape, tf.uint8))
    ds = tf.data.Dataset.from_generator(sampler, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_items))
    center, width = (float(v) for v in window)

    @tf.autograph.experimental.do_not_convert
    def to_example(image, label):
        image = apply_window(image[..., None], center, width)
        if target == "binary":
            return image, tf.cast(label[..., None] > 0, tf.float32)
        return image, tf.one_hot(tf.cast(label, tf.int32), N_VERTEBRA_CLASSES, dtype=tf.float32)

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    if augment if augment is not None else training:
        counter = tf.data.Dataset.counter()
        seeds = counter.map(lambda i: tf.stack([tf.cast(seed, tf.int64), i]))
        augment_fn = tf.autograph.experimental.do_not_convert(
            lambda example, s: _augment(tf, example[0], example[1], s))
        ds = tf.data.Dataset.zip((ds, seeds)).map(augment_fn,
                                                  num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------
# Model, loss, training
# ---------------------------------------------------------------------------------------


def dice_ce_loss(y_true, y_pred):
    """Soft-Dice loss plus cross-entropy (binary for one channel, categorical otherwise).

    Dice handles the imbalance between the thin spine and the large background; the
    cross-entropy gives well-behaved gradients from the first step.
    """
    from keras import losses, ops

    from ..metrics import soft_dice_loss

    if y_pred.shape[-1] == 1:
        ce = losses.binary_crossentropy(y_true, y_pred)
    else:
        ce = losses.categorical_crossentropy(y_true, y_pred)
    return soft_dice_loss(y_true, y_pred) + ops.mean(ce)


def custom_objects() -> dict:
    """For ``keras.models.load_model`` of models compiled by :func:`build_model`."""
    from ..metrics import custom_objects as metric_objects

    return {**metric_objects(), "dice_ce_loss": dice_ce_loss}


def build_model(*, target: str = "binary", depth: int = 4, base_filters: int = 16,
                batch_norm: bool = True, learning_rate: float = 1e-3, seed: int | None = None):
    """A compiled 2-D :func:`medimg.models.unet` for slices of any size.

    Parameters
    ----------
    target : {"binary", "vertebrae"}
        One sigmoid channel, or 29 softmax classes (VerSe labels).
    depth, base_filters, batch_norm
        U-Net settings; slices are padded to a multiple of ``2 ** (depth - 1)`` for
        prediction.
    learning_rate : float
        Adam step size.
    seed : int, optional
        Seeds Keras (weights initialisation) for repeatable runs.

    Returns
    -------
    keras.Model
        Input ``(None, None, None, 1)``; loss :func:`dice_ce_loss`; metric ``dice``
        (hard Dice of the spine, all vertebrae pooled, for both targets).
    """
    import keras

    from ..metrics import dice_metric
    from ..models import unet

    if target not in ("binary", "vertebrae"):
        raise ConfigError(f"target must be 'binary' or 'vertebrae', got {target!r}")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    binary = target == "binary"
    model = unet((None, None, 1), 1 if binary else N_VERTEBRA_CLASSES, depth=depth,
                 base_filters=base_filters, batch_norm=batch_norm,
                 final_activation="sigmoid" if binary else "softmax",
                 name=f"verse_unet2d_{target}")
    metrics = [dice_metric("dice")] if binary else [keras.metrics.CategoricalAccuracy("accuracy")]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=dice_ce_loss,
                  metrics=metrics)
    return model


def fit(model, train_ds, validation_ds=None, *, epochs: int = 10, verbose: int = 2,
        restore_best: bool = True, checkpoint: str | os.PathLike | None = None
        ) -> pd.DataFrame:
    """Train and return the history as a table (one row per epoch, with seconds).

    Parameters
    ----------
    model : keras.Model
        From :func:`build_model`.
    train_ds, validation_ds : tf.data.Dataset
        From :func:`slice_dataset`.
    epochs : int
    verbose : int
        Keras verbosity (2: one line per epoch).
    restore_best : bool
        End with the weights of the epoch with the lowest validation loss (training
        loss without validation data), not those of the last epoch: with few scans
        the validation Dice jumps from epoch to epoch.
    checkpoint : path, optional
        Save the best model (lowest validation loss) here (``.keras``).

    Returns
    -------
    pandas.DataFrame
        Columns ``epoch``, ``loss``, metrics, ``val_*``, ``seconds``.
    """
    import keras

    times: list[float] = []

    class _Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    callbacks: list = [_Timer()]
    monitor = "val_loss" if validation_ds is not None else "loss"
    if restore_best:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=epochs + 1,
                                                       restore_best_weights=True))
    if checkpoint is not None:
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.ModelCheckpoint(str(checkpoint), monitor=monitor,
                                                         save_best_only=True))
    # the datasets shuffle themselves (per epoch, seeded)
    history = model.fit(train_ds, validation_data=validation_ds, epochs=epochs,
                        verbose=verbose, callbacks=callbacks, shuffle=False)
    table = pd.DataFrame(history.history)
    table.insert(0, "epoch", np.arange(1, len(table) + 1))
    table["seconds"] = times[: len(table)]
    return table


# ---------------------------------------------------------------------------------------
# Whole-scan prediction and evaluation
# ---------------------------------------------------------------------------------------


def _pool_factor(model) -> int:
    pools = sum(1 for layer in model.layers if "pool" in type(layer).__name__.lower())
    return 2 ** pools


def predict_scan(model, scan: Any, *, plane: str = "sagittal", spacing_mm: float = 1.0,
                 window: Sequence[float] = (400.0, 1800.0), batch_size: int = 16,
                 threshold: float = 0.5, max_oblique_deg: float = 30.0,
                 return_probabilities: bool = False):
    """Segment a whole scan slice by slice and restack it on the scan's own grid.

    The CT is reoriented to the plane's orientation, every slice is resampled to
    ``spacing_mm`` exactly as in the cache, padded to a size the U-Net accepts,
    predicted, cut back, resampled to the scan's pixel grid, restacked, and finally
    mapped back to the file's own orientation: the result overlays the CT with the
    CT's affine (write it with :func:`medimg.io.write_nifti`).

    Parameters
    ----------
    model : keras.Model
        From :func:`build_model` (any spatial input size).
    scan : row of :func:`find_subjects`, mapping or CT path
    plane, spacing_mm, window, max_oblique_deg
        As used for training.
    batch_size : int
        Slices per forward pass.
    threshold : float
        Probability above which a pixel is spine (binary models).
    return_probabilities : bool
        Also return the foreground probability volume (float32, same grid).

    Returns
    -------
    medimg.io.Volume or (Volume, Volume)
        uint8 labels (binary: 0/1; vertebrae: VerSe labels) with the scan's on-disk
        affine and shape; ``meta["scan"]``, ``meta["seconds"]``.
    """
    from ..intensity import window as apply_window
    from ..io import Volume

    start = time.perf_counter()
    ct, _ = load_scan(scan, orientation=_check_plane(plane), max_oblique_deg=max_oblique_deg,
                      load_mask=False)
    n, h0, w0 = ct.shape
    size = _plane_size(ct.shape, ct.spacing, spacing_mm)
    images = _resize_stack(ct.array.astype(np.float32, copy=False), size, nearest=False)
    factor = _pool_factor(model)
    padded = (-(-size[0] // factor) * factor, -(-size[1] // factor) * factor)
    batch = np.full((n, *padded, 1), 0.0, np.float32)
    batch[:, : size[0], : size[1], 0] = apply_window(images, *window)
    n_out = model.output_shape[-1]
    probabilities = np.empty((n, *size, n_out), np.float32)
    for i in range(0, n, batch_size):
        out = np.asarray(model.predict_on_batch(batch[i:i + batch_size]))
        probabilities[i:i + batch_size] = out[:, : size[0], : size[1], :]
    if n_out == 1:
        foreground = _resize_stack(probabilities[..., 0], (h0, w0), nearest=False)
        labels = (foreground > threshold).astype(np.uint8)
    else:
        classes = probabilities.argmax(axis=-1).astype(np.uint8)
        labels = _resize_stack(classes, (h0, w0), nearest=True)
        foreground = _resize_stack(1.0 - probabilities[..., 0], (h0, w0), nearest=False)
    meta = {"scan": ct.meta["scan"], "seconds": time.perf_counter() - start}
    affine = ct.meta["source_affine"]
    result = Volume(_to_source(labels, ct.meta), affine, meta)
    if return_probabilities:
        return result, Volume(_to_source(foreground.astype(np.float32), ct.meta), affine,
                              dict(meta))
    return result


def evaluate(model, subjects: pd.DataFrame, *, out_dir: str | os.PathLike | None = None,
             progress: bool = True, **settings: Any) -> pd.DataFrame:
    """Predict whole scans, compute Dice against their masks, optionally write NIfTI.

    Parameters
    ----------
    model : keras.Model
    subjects : pandas.DataFrame
        Scans to evaluate (rows of :func:`find_subjects`); scans without mask are
        predicted (and written) but get no Dice.
    out_dir : path, optional
        Where ``<scan>_pred.nii.gz`` go (uint8, the CT's affine).
    **settings
        Passed to :func:`predict_scan` (plane, spacing_mm, window, threshold ...).

    Returns
    -------
    pandas.DataFrame
        ``scan``, ``dice`` (spine vs background on the whole volume, in the scan's own
        grid), ``vertebra_dice`` (mean Dice over the scan's true vertebrae; vertebra
        models only), ``seconds`` and ``prediction_path``.
    """
    from tqdm.auto import tqdm

    from ..io import read_nifti, write_nifti
    from ..metrics import dice

    rows = []
    for row in tqdm(list(subjects.itertuples(index=False)), desc="predicting scans",
                    unit="scan", disable=not progress):
        prediction = predict_scan(model, row._asdict(), **settings)
        record: dict[str, Any] = {"scan": row.scan, "dice": None, "vertebra_dice": None,
                                  "seconds": round(prediction.meta["seconds"], 2),
                                  "prediction_path": None}
        if row.has_mask:
            truth = read_nifti(row.mask_path, canonical=False).array
            truth = _check_labels(truth, row.scan, row.mask_path)
            record["dice"] = float(dice(truth > 0, prediction.array > 0))
            if model.output_shape[-1] > 1:
                scores = [float(dice(truth == v, prediction.array == v))
                          for v in np.unique(truth) if v]
                record["vertebra_dice"] = float(np.mean(scores)) if scores else None
        if out_dir is not None:
            path = Path(out_dir) / f"{row.scan}_pred.nii.gz"
            write_nifti(prediction, path, dtype=np.uint8)
            record["prediction_path"] = str(path)
        rows.append(record)
    return pd.DataFrame(rows)


def example_slices(ct, mask=None, prediction=None, *, n: int = 3) -> list[dict[str, Any]]:
    """Slices of a loaded scan for display with :func:`medimg.viz.overlay`.

    Parameters
    ----------
    ct, mask : medimg.io.Volume
        From :func:`load_scan` (already in the plane's orientation).
    prediction : medimg.io.Volume, optional
        From :func:`predict_scan` (on the file's grid); brought to the CT's orientation.
    n : int
        Number of slices: spread over the slices that show spine (truth, else
        prediction, else the middle of the scan).

    Returns
    -------
    list of dict
        Keyword arguments of :func:`medimg.viz.overlay`: ``image`` (HU), ``truth``,
        ``prediction``, ``title`` and ``aspect`` (row / column spacing).
    """
    pred = None
    if prediction is not None:
        pred = reorient(prediction, ct.axcodes, max_oblique_deg=90).array
        if pred.shape != ct.shape:
            raise InvalidImageError(f"prediction shape {pred.shape} does not match the CT "
                                    f"{ct.shape} of scan {ct.meta.get('scan')}")
    reference = mask.array if mask is not None else pred
    if reference is not None and reference.any():
        shown = np.nonzero(reference.any(axis=(1, 2)))[0]
        picks = shown[np.round(np.linspace(0.3, 0.7, n) * (len(shown) - 1)).astype(int)]
    else:
        picks = np.round(np.linspace(0.3, 0.7, n) * (ct.shape[0] - 1)).astype(int)
    aspect = ct.spacing[1] / ct.spacing[2]
    return [{"image": ct.array[i], "truth": None if mask is None else mask.array[i],
             "prediction": None if pred is None else pred[i], "aspect": aspect,
             "title": f"{ct.meta.get('scan', '')} slice {i}"} for i in picks]


def train_from_config(cfg, *, root: str | os.PathLike | None = None, epochs: int | None = None,
                      out_dir: str | os.PathLike | None = None, verbose: int = 2
                      ) -> dict[str, Any]:
    """The whole notebook-05 pipeline from a config: what ``medimg train verse`` runs.

    Finds the scans (``root``, else the config's data root, else synthetic data), splits
    them by subject, caches the slices, trains the U-Net, predicts every held-out scan
    (validation, test and unlabelled) as NIfTI and saves the model.

    Parameters
    ----------
    cfg : medimg.config.Config
        ``load_config("verse", profile)``.
    root : path, optional
        VerSe folder overriding the config.
    epochs : int, optional
        Overrides ``cfg.epochs``.
    out_dir : path, optional
        Predictions and ``model.keras`` (default ``<output_dir>/<profile>``).
    verbose : int
        Keras verbosity.

    Returns
    -------
    dict
        ``history`` and ``scores`` (DataFrames), ``folds``, ``model_path``, ``out_dir``,
        ``dice_validation``, ``dice_test`` (means; None when a fold is empty).
    """
    from ..synthetic import ensure_data

    data_root = Path(root) if root else ensure_data(cfg)
    cache_dir = cfg.repo_root / cfg.cache_dir / cfg.profile
    out = Path(out_dir) if out_dir else cfg.repo_root / cfg.output_dir / cfg.profile
    folds = split_subjects(find_subjects(data_root), seed=cfg.seed, **cfg.split.to_dict())
    common = dict(plane=cfg.plane, spacing_mm=cfg.slice_spacing_mm,
                  max_oblique_deg=cfg.max_oblique_deg)
    data = dict(slice_shape=cfg.slice_shape, target=cfg.target, window=cfg.window,
                batch_size=cfg.batch_size, background_fraction=cfg.background_fraction,
                n_jobs=cfg.n_jobs, **common)
    train = slice_dataset(folds[folds.fold == "train"], cache_dir, training=True,
                          seed=cfg.seed, **data)
    has_validation = bool((folds.fold == "validation").any())
    validation = (slice_dataset(folds[folds.fold == "validation"], cache_dir, training=False,
                                **data) if has_validation else None)
    model = build_model(target=cfg.target, learning_rate=cfg.learning_rate, seed=cfg.seed,
                        **cfg.model.to_dict())
    history = fit(model, train, validation, epochs=epochs or cfg.epochs, verbose=verbose)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.keras"
    with atomic_path(model_path) as tmp:
        model.save(tmp)
    held_out = folds[folds.fold.isin(["validation", "test", "unlabelled"])]
    scores = evaluate(model, held_out, out_dir=out, window=cfg.window,
                      threshold=cfg.threshold, **common)
    scores = scores.merge(folds[["scan", "fold"]], on="scan")

    def mean_dice(fold: str) -> float | None:
        values = scores.loc[scores.fold == fold, "dice"].dropna()
        return float(values.mean()) if len(values) else None

    return {"history": history, "scores": scores, "folds": folds, "model_path": model_path,
            "out_dir": out, "dice_validation": mean_dice("validation"),
            "dice_test": mean_dice("test")}
