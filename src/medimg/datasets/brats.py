"""BraTS 2020: find subjects, load them, and preprocess them into an HDF5 cache.

On-disk layout of the data set (real or synthetic, :func:`medimg.synthetic.make_brats`)::

    <root>/MICCAI_BraTS2020_TrainingData/
        name_mapping.csv                        (optional: Grade, BraTS_2020_subject_ID, ...)
        BraTS20_Training_001/
            BraTS20_Training_001_flair.nii[.gz]
            BraTS20_Training_001_t1.nii[.gz]
            BraTS20_Training_001_t1ce.nii[.gz]
            BraTS20_Training_001_t2.nii[.gz]
            BraTS20_Training_001_seg.nii[.gz]   labels {0, 1, 2, 4}
    <root>/MICCAI_BraTS2020_ValidationData/
        BraTS20_Validation_001/ ...             (the same without seg)

Label values follow BraTS: 0 background, 1 necrotic / non-enhancing tumour core,
2 peritumoral oedema, 4 enhancing tumour (3 is unused).

HDF5 cache layout (written by :func:`preprocess`; ``LAYOUT_VERSION`` 1)
------------------------------------------------------------------------
One file per subject, ``<out_dir>/<subject>.h5``, plus ``<out_dir>/manifest.csv``
(one row per subject: ``subject, split, status, seconds, error, path, shape``;
status is ``ok``, ``cached`` (done by an earlier run, skipped) or ``error``).

datasets
    ``image``  ``(x, y, z, 4)`` float32, channels in :data:`SEQUENCES` order
               ``(flair, t1, t1ce, t2)``; NIfTI voxel order after reorientation to
               closest canonical RAS+; N4-corrected (attr ``n4``); cropped to the
               slices that carry information; **not standardised** (the background
               is exactly 0: standardise at load time, e.g.
               ``medimg.intensity.standardize(image, mask=image[..., 0] > 0)``).
    ``label``  ``(x, y, z)`` uint8 in {0, 1, 2, 3}: BraTS label 4 (enhancing) is
               stored as **3** so labels are contiguous class indices. Absent for
               subjects without a segmentation (validation set; attr ``has_label``).

    Both are chunked (at most 64 voxels per axis, all channels in one chunk) and
    compressed with gzip level 1 and the shuffle filter.

attributes (of the file)
    ``subject`` str; ``split`` str (``training`` / ``validation``); ``sequences``
    list of str; ``layout_version`` int; ``n4`` bool; ``has_label`` bool;
    ``affine`` (4, 4) float64: voxel-to-RAS+ mm of the **original, uncropped** grid
    (after canonical reorientation); ``original_shape`` (3,) int64: that grid's
    shape; ``crop_box`` (3, 2) int64: half-open ``[start, stop)`` per axis of the
    cached arrays inside the original grid; ``cropped_affine`` (4, 4) float64: the
    affine of the cached arrays themselves; ``spacing`` (3,) float64 mm;
    ``source_axcodes`` str (orientation of the files on disk, e.g. ``LPS``).

A prediction ``p`` of shape ``image.shape[:3]`` goes back to the original space
with :func:`uncrop` (``full[box] = p`` in a zero array of ``original_shape``, with
``affine``), then :func:`medimg.io.write_nifti` writes a file that overlays the
source images in ITK-SNAP or 3D Slicer.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidImageError, LayoutError

__all__ = [
    "LABEL_VALUES",
    "LAYOUT_VERSION",
    "SEQUENCES",
    "find_subjects",
    "load_subject",
    "preprocess",
    "read_h5",
    "uncrop",
]

#: The four MRI sequences, in channel order.
SEQUENCES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
#: Label values a BraTS segmentation may hold.
LABEL_VALUES: tuple[int, ...] = (0, 1, 2, 4)
#: Version of the HDF5 layout written by :func:`preprocess` (see the module docstring).
LAYOUT_VERSION = 1

_ROLES = (*SEQUENCES, "seg")
_ALIASES = {
    "flair": "flair", "t2flair": "flair", "t2_flair": "flair",
    "t1": "t1", "t1w": "t1", "t1n": "t1",
    "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce", "t1_ce": "t1ce", "t1post": "t1ce",
    "t2": "t2", "t2w": "t2",
    "seg": "seg", "segm": "seg", "label": "seg", "labels": "seg", "mask": "seg",
}
_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_SUBJECT_COLUMNS = ["subject", "split", *_ROLES, "grade", "note", "problem"]
_MANIFEST_COLUMNS = ["subject", "split", "status", "seconds", "error", "path", "shape"]


# --------------------------------------------------------------------------- discovery

def _split_of(name: str) -> str:
    lowered = name.lower()
    if "validation" in lowered:
        return "validation"
    if "testing" in lowered or "test" in lowered.split("_"):
        return "testing"
    return "training"


def _split_dirs(root: Path) -> list[Path]:
    """Folders holding subject folders: the MICCAI_* folders under root, or root itself."""
    named = sorted(p for p in root.iterdir()
                   if p.is_dir() and re.search(r"(training|validation|testing)data", p.name,
                                               re.IGNORECASE))
    if named:
        return named
    return [root]


def _guess_role(subject: str, filename: str) -> str | None:
    """Role of one NIfTI file from its name, or None when the name does not tell."""
    stem = _NIFTI.sub("", filename)
    if stem.lower().startswith(subject.lower() + "_"):
        suffix = stem[len(subject) + 1:].lower()
        if suffix in _ALIASES:
            return _ALIASES[suffix]
    token = stem.rsplit("_", 1)[-1].lower()
    if token in _ALIASES:
        return _ALIASES[token]
    return None


def _scan_subject(folder: Path, split: str) -> dict[str, Any]:
    subject = folder.name
    row: dict[str, Any] = {"subject": subject, "split": split, "note": None, "problem": None}
    row.update(dict.fromkeys(_ROLES))
    files = sorted(p for p in folder.iterdir() if p.is_file() and _NIFTI.search(p.name))
    found: dict[str, list[Path]] = {}
    unknown: list[Path] = []
    for path in files:
        role = _guess_role(subject, path.name)
        if role is None:
            unknown.append(path)
        else:
            found.setdefault(role, []).append(path)
    problems, notes = [], []
    for role, paths in found.items():
        if len(paths) > 1:
            problems.append(f"{len(paths)} files could be {role}: "
                            + ", ".join(p.name for p in paths))
        else:
            row[role] = str(paths[0])
            expected = re.compile(rf"{re.escape(subject)}_{role}\.nii(\.gz)?$", re.IGNORECASE)
            if not expected.fullmatch(paths[0].name):
                notes.append(f"{role} taken from {paths[0].name} (nonstandard name)")
    needed = list(SEQUENCES) + (["seg"] if split == "training" else [])
    missing = [r for r in needed if r not in found]
    if unknown and len(unknown) == 1 and len(missing) == 1:
        # One unrecognised file and one missing role: the file can only be that role
        # (BraTS 2020 subject 355's segmentation is named W39_1998.09.19_Segm.nii).
        row[missing[0]] = str(unknown[0])
        notes.append(f"{missing[0]} taken from {unknown[0].name} (the only unmatched file)")
        missing, unknown = [], []
    if missing:
        problems.append("missing " + ", ".join(missing)
                        + (f" (unrecognised files: {', '.join(p.name for p in unknown)})"
                           if unknown else ""))
    elif unknown:
        notes.append("ignored " + ", ".join(p.name for p in unknown))
    row["note"] = "; ".join(notes) or None
    row["problem"] = "; ".join(problems) or None
    return row


def _read_grades(split_dir: Path) -> dict[str, str]:
    table = split_dir / "name_mapping.csv"
    if not table.is_file():
        return {}
    try:
        frame = pd.read_csv(table)
    except Exception as exc:
        raise LayoutError(f"cannot read name_mapping.csv ({exc})", table) from exc
    id_columns = [c for c in frame.columns if "2020" in c and "id" in c.lower()]
    if "Grade" not in frame.columns or not id_columns:
        return {}
    return dict(zip(frame[id_columns[0]].astype(str), frame["Grade"].astype(str), strict=True))


def find_subjects(root: str | os.PathLike, *, strict: bool = False) -> pd.DataFrame:
    """One row per BraTS subject with the paths of its four sequences and label.

    Finds the BraTS 2020 layout (see the module docstring) under ``root``: the
    ``MICCAI_BraTS2020_TrainingData`` / ``..._ValidationData`` folders, or ``root``
    itself when it is one of them. A file whose name breaks the
    ``<subject>_<sequence>.nii[.gz]`` pattern is still used when it can be told
    apart unambiguously (a known suffix such as ``_Segm``, or the only unmatched
    file for the only missing role); the row's ``note`` says so. Subjects whose
    files cannot be resolved keep a ``problem`` message (or raise, when ``strict``).

    Parameters
    ----------
    root : str or os.PathLike
        The data set folder.
    strict : bool
        Raise on the first subject with a problem instead of reporting it.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, split, flair, t1, t1ce, t2, seg, grade, note, problem``;
        paths are strings, ``seg`` is None for validation subjects, ``grade`` (HGG /
        LGG) comes from ``name_mapping.csv`` when present. Sorted by split, subject.

    Raises
    ------
    LayoutError
        ``root`` is missing or holds no subject folder; with ``strict``, a subject
        with a missing or ambiguous file.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError("data set folder not found (expected the folder holding "
                          "MICCAI_BraTS2020_TrainingData/)", root)
    rows = []
    for split_dir in _split_dirs(root):
        split = _split_of(split_dir.name) if split_dir != root else None
        grades = _read_grades(split_dir)
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            if not any(_NIFTI.search(f.name) for f in folder.iterdir() if f.is_file()):
                continue
            row = _scan_subject(folder, split or _split_of(folder.name))
            row["grade"] = grades.get(folder.name)
            if strict and row["problem"]:
                raise LayoutError(row["problem"], folder)
            rows.append(row)
    if not rows:
        raise LayoutError("no BraTS subject folders found (expected "
                          "MICCAI_BraTS2020_TrainingData/BraTS20_Training_NNN/"
                          "BraTS20_Training_NNN_<flair|t1|t1ce|t2|seg>.nii[.gz])", root)
    frame = pd.DataFrame(rows, columns=_SUBJECT_COLUMNS)
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.sort_values(["split", "subject"], ignore_index=True)


# --------------------------------------------------------------------------- loading

def _field(row: Any, key: str) -> Any:
    if isinstance(row, Mapping | pd.Series):
        value = row.get(key)
    else:
        value = getattr(row, key, None)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def load_subject(row: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Read one subject's four sequences and label, checked against each other.

    Parameters
    ----------
    row : pandas.Series or mapping
        A row of :func:`find_subjects` (needs ``subject``, ``flair``, ``t1``,
        ``t1ce``, ``t2``, and ``seg`` or None).

    Returns
    -------
    image : numpy.ndarray
        ``(x, y, z, 4)`` float32, channels :data:`SEQUENCES`, canonical RAS+ order.
    label : numpy.ndarray or None
        ``(x, y, z)`` uint8 with the original BraTS values {0, 1, 2, 4}; None when the
        subject has no segmentation (validation).
    affine : numpy.ndarray
        ``(4, 4)`` voxel-to-RAS+ mm, shared by all five files.

    Raises
    ------
    LayoutError
        The row reports a problem (missing or ambiguous file).
    DecodeError
        A file is missing, truncated or not NIfTI (the message names it).
    InvalidImageError
        Files disagree in shape or affine (both named), a sequence holds NaN or
        infinite voxels, a label holds values outside {0, 1, 2, 4}.
    """
    from ..io.volume import read_nifti

    subject = _field(row, "subject") or "?"
    problem = _field(row, "problem")
    if problem:
        raise LayoutError(problem, subject)
    paths = {role: _field(row, role) for role in _ROLES}
    missing = [r for r in SEQUENCES if not paths[r]]
    if missing:
        raise LayoutError(f"no file for {', '.join(missing)}", subject)
    reference = None
    channels = []
    for role in SEQUENCES:
        volume = read_nifti(paths[role])
        if volume.array.ndim != 3:
            raise InvalidImageError(f"{role} has shape {volume.shape}, expected 3-D (x, y, z)",
                                    paths[role])
        _check_same_grid(reference, volume, paths[role])
        reference = reference or volume
        array = np.asarray(volume.array, dtype=np.float32)
        finite = np.isfinite(array)
        if not finite.all():
            raise InvalidImageError(f"{role} has {int(finite.size - finite.sum())} NaN or "
                                    "infinite voxels", paths[role])
        channels.append(array)
    image = np.stack(channels, axis=-1)
    label = None
    if paths["seg"]:
        volume = read_nifti(paths["seg"])
        _check_same_grid(reference, volume, paths["seg"])
        raw = np.asarray(volume.array)
        if raw.ndim != 3:
            raise InvalidImageError(f"seg has shape {raw.shape}, expected 3-D", paths["seg"])
        if not np.issubdtype(raw.dtype, np.integer):
            if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
                raise InvalidImageError("seg holds non-integer or NaN values, expected labels "
                                        "{0, 1, 2, 4}", paths["seg"])
        values = np.unique(raw)
        bad = sorted(set(values.tolist()) - set(LABEL_VALUES))
        if bad:
            raise InvalidImageError(f"seg holds label values {bad}, expected only "
                                    f"{{0, 1, 2, 4}}", paths["seg"])
        label = raw.astype(np.uint8)
    return image, label, reference.affine


def _check_same_grid(reference: Any, volume: Any, path: str) -> None:
    if reference is None:
        return
    ref_path = reference.meta.get("path")
    if volume.shape[:3] != reference.shape[:3]:
        raise InvalidImageError(f"shape {volume.shape[:3]} differs from {reference.shape[:3]} "
                                f"of {ref_path}", path)
    if not np.allclose(volume.affine, reference.affine, atol=1e-3):
        raise InvalidImageError(f"affine differs from that of {ref_path} (the files are not "
                                "on one voxel grid)", path)


# --------------------------------------------------------------------------- cache

def _crop_box(image: np.ndarray, label: np.ndarray | None) -> tuple[tuple[int, int], ...]:
    """Per axis, the range from the first to the last slice that carries information."""
    from ..spatial import constant_slices

    box = []
    for axis in range(3):
        informative = np.ones(image.shape[axis], dtype=bool)
        informative[constant_slices(image, axis, channel_axis=-1)] = False
        if label is not None:
            other = tuple(a for a in range(3) if a != axis)
            informative |= (label > 0).any(axis=other)
        hits = np.flatnonzero(informative)
        if hits.size == 0:
            raise InvalidImageError("every slice is constant: the volume holds no image")
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _write_h5(target: Path, image: np.ndarray, label: np.ndarray | None,
              attrs: dict[str, Any], compression_level: int) -> None:
    import h5py

    from .._fsutil import atomic_path

    chunks = tuple(min(64, s) for s in image.shape[:3])
    with atomic_path(target) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("image", data=image, chunks=(*chunks, image.shape[3]),
                              compression="gzip", compression_opts=compression_level,
                              shuffle=True)
            if label is not None:
                h5.create_dataset("label", data=label, chunks=chunks, compression="gzip",
                                  compression_opts=compression_level, shuffle=True)
            for key, value in attrs.items():
                h5.attrs[key] = value


def _preprocess_one(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: one subject from NIfTI files to its HDF5 file (runs in a subprocess)."""
    import nibabel as nib

    from ..bias import n4_correct
    from ..io.volume import Volume

    start = time.perf_counter()
    row, target, options = task["row"], Path(task["target"]), task["options"]
    subject = row["subject"]
    image, label, affine = load_subject(row)
    box = _crop_box(image, label)
    window = tuple(slice(a, b) for a, b in box)
    cropped = np.ascontiguousarray(image[window])
    shift = np.eye(4)
    shift[:3, 3] = [a for a, _ in box]
    cropped_affine = affine @ shift
    if options["n4"]:
        brain = (cropped > 0).any(axis=-1)
        for c, name in enumerate(SEQUENCES):
            channel = cropped[..., c]
            if not (channel > 0).any():
                raise InvalidImageError(f"{name} has no positive voxel", row[name])
            corrected = n4_correct(Volume(channel, cropped_affine), brain & (channel > 0),
                                   shrink=options["shrink"],
                                   iterations=options["iterations"],
                                   n_threads=options["n_threads"])
            cropped[..., c] = corrected.array
    cropped_label = None
    if label is not None:
        lut = np.array([0, 1, 2, 3, 3], dtype=np.uint8)  # BraTS 4 -> 3 (3 is unused)
        cropped_label = lut[label[window]]
    attrs = {
        "subject": subject,
        "split": row.get("split") or "training",
        "sequences": list(SEQUENCES),
        "layout_version": LAYOUT_VERSION,
        "n4": bool(options["n4"]),
        "has_label": cropped_label is not None,
        "affine": affine,
        "original_shape": np.asarray(image.shape[:3], dtype=np.int64),
        "crop_box": np.asarray(box, dtype=np.int64),
        "cropped_affine": cropped_affine,
        "spacing": np.sqrt((affine[:3, :3] ** 2).sum(axis=0)),
        "source_axcodes": "".join(nib.aff2axcodes(_source_affine(row))),
    }
    _write_h5(target, cropped, cropped_label, attrs, options["compression_level"])
    return {"seconds": time.perf_counter() - start, "shape": "x".join(map(str, cropped.shape))}


def _source_affine(row: Mapping[str, Any]) -> np.ndarray:
    import nibabel as nib

    return nib.load(row["flair"]).affine


def preprocess(
    root: str | os.PathLike | pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    n_jobs: int | None = -1,
    n4: bool = True,
    shrink: int = 4,
    iterations: Sequence[int] = (50, 50, 30, 20),
    overwrite: bool = False,
    compression_level: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Preprocess every subject into one HDF5 file each (layout in the module docstring).

    Per subject: load and check the five files (:func:`load_subject`); find the
    slices that carry information (:func:`medimg.spatial.constant_slices`; slices
    with tumour are always kept) and crop to them; N4-correct each sequence inside
    the brain (:func:`medimg.bias.n4_correct`); map label 4 to 3; stack to
    ``(x, y, z, 4)``; write ``<out_dir>/<subject>.h5`` atomically (a temporary file
    renamed when complete). Subjects run in parallel with a progress bar. A failing
    subject is recorded in the manifest and the batch goes on; a rerun skips the
    subjects whose file exists and redoes only the rest.

    Parameters
    ----------
    root : str, os.PathLike or pandas.DataFrame
        The data set folder, or a table from :func:`find_subjects` (e.g. a subset).
    out_dir : str or os.PathLike
        Where the ``.h5`` files and ``manifest.csv`` go (created).
    n_jobs : int
        Worker processes (-1: every core).
    n4 : bool
        Run N4 bias-field correction.
    shrink : int
        N4 shrink factor (see :func:`medimg.bias.n4_correct`).
    iterations : sequence of int
        N4 iterations per fitting level.
    overwrite : bool
        Redo subjects whose file already exists.
    compression_level : int
        gzip level of the datasets (1: fast; 9: smallest).
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        The manifest (also written to ``<out_dir>/manifest.csv``): ``subject, split,
        status (ok | cached | error), seconds, error, path, shape``.

    Raises
    ------
    LayoutError
        ``root`` holds no BraTS subject (nothing to do). Per-subject problems never
        raise: they are in the manifest.
    """
    from .._fsutil import atomic_write_text
    from .._parallel import map_items, resolve_n_jobs

    subjects = root if isinstance(root, pd.DataFrame) else find_subjects(root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.csv"
    previous = {}
    if manifest_path.is_file():
        try:
            old = pd.read_csv(manifest_path)
            previous = {r.subject: r.seconds for r in old.itertuples() if r.status == "ok"}
        except Exception:  # a damaged manifest is rebuilt, never fatal
            previous = {}
    workers = min(resolve_n_jobs(n_jobs), max(1, len(subjects)))
    options = {
        "n4": bool(n4),
        "shrink": int(shrink),
        "iterations": [int(i) for i in iterations],
        "compression_level": int(compression_level),
        # Processes x SimpleITK threads should not oversubscribe the cores.
        "n_threads": max(1, (os.cpu_count() or 1) // workers),
    }
    records: dict[str, dict[str, Any]] = {}
    tasks = []
    for row in subjects.to_dict("records"):
        subject = row["subject"]
        target = out_dir / f"{subject}.h5"
        record = {"subject": subject, "split": row.get("split"), "status": None,
                  "seconds": np.nan, "error": None, "path": str(target), "shape": None}
        records[subject] = record
        if row.get("problem"):
            record.update(status="error", error=f"LayoutError: {subject}: {row['problem']}")
        elif target.is_file() and not overwrite:
            record.update(status="cached", seconds=previous.get(subject, np.nan))
        else:
            tasks.append({"row": row, "target": str(target), "options": options})
    results = map_items(_preprocess_one, tasks, n_jobs=workers, progress=progress,
                        desc="BraTS preprocess", unit="subject")
    for result in results:
        record = records[result.item["row"]["subject"]]
        if result.ok:
            record.update(status="ok", **result.value)
        else:
            error = result.error or "unknown error"
            # The subject is named in every manifest error (file paths usually do it).
            record.update(status="error", error=error if record["subject"] in error
                          else f"{error} [subject {record['subject']}]")
    manifest = pd.DataFrame(list(records.values()), columns=_MANIFEST_COLUMNS)
    atomic_write_text(manifest_path, manifest.to_csv(index=False))
    return manifest


def read_h5(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Read one cached subject: ``(image, label or None, attrs)`` (layout above)."""
    import h5py

    from ..errors import DecodeError

    try:
        with h5py.File(path, "r") as h5:
            image = h5["image"][()]
            label = h5["label"][()] if "label" in h5 else None
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
    except (OSError, KeyError) as exc:
        raise DecodeError(f"cannot read the BraTS HDF5 cache ({exc})", path) from exc
    return image, label, attrs


def uncrop(array: np.ndarray, attrs: Mapping[str, Any], *, fill: float = 0,
           brats_labels: bool = False) -> Any:
    """Put an array on the cached (cropped) grid back into the original grid.

    Parameters
    ----------
    array : numpy.ndarray
        ``(x, y, z)`` or ``(x, y, z, c)`` matching the cached ``image``'s first three
        axes (e.g. a predicted label map).
    attrs : mapping
        The file's attributes (from :func:`read_h5`).
    fill : float
        Value outside the crop box.
    brats_labels : bool
        Map class 3 back to the BraTS label 4 (for label maps).

    Returns
    -------
    medimg.io.Volume
        On the original grid with the original affine: ready for
        :func:`medimg.io.write_nifti`.
    """
    from ..io.volume import Volume

    box = np.asarray(attrs["crop_box"], dtype=int)
    shape = tuple(int(s) for s in attrs["original_shape"])
    expected = tuple(int(b - a) for a, b in box)
    array = np.asarray(array)
    if array.shape[:3] != expected:
        raise InvalidImageError(f"array has shape {array.shape[:3]}, expected the cropped "
                                f"shape {expected}", attrs.get("subject"))
    if brats_labels:
        array = np.where(array == 3, 4, array).astype(array.dtype)
    full = np.full(shape + array.shape[3:], fill, dtype=array.dtype)
    full[tuple(slice(a, b) for a, b in box)] = array
    return Volume(full, np.asarray(attrs["affine"], dtype=np.float64),
                  {"subject": attrs.get("subject")})
