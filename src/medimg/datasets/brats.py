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
    "LABEL_NAMES",
    "LABEL_VALUES",
    "LAYOUT_VERSION",
    "SEQUENCES",
    "cached_subjects",
    "default_cache_dir",
    "find_subjects",
    "label_volumes",
    "load_subject",
    "nifti_header",
    "preprocess",
    "read_h5",
    "subject_files",
    "summarize_subjects",
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


def _holds_subjects(folder: Path) -> bool:
    """True when a child folder of ``folder`` holds NIfTI files (a subject folder)."""
    return any(p.is_dir() and any(_NIFTI.search(f.name) for f in p.iterdir() if f.is_file())
               for p in folder.iterdir())


def _split_dirs(root: Path, depth: int = 2) -> list[Path]:
    """Folders holding subject folders: the MICCAI_* folders under root, or root itself.

    The Kaggle mirror nests them one level deeper
    (``BraTS2020_TrainingData/MICCAI_BraTS2020_TrainingData/``), so a named folder that
    holds no subject folder itself is searched ``depth`` levels down.
    """
    named = sorted(p for p in root.iterdir()
                   if p.is_dir() and re.search(r"(training|validation|testing)data", p.name,
                                               re.IGNORECASE))
    found: list[Path] = []
    for folder in named:
        if _holds_subjects(folder):
            found.append(folder)
        elif depth > 0:
            found.extend(d for d in _split_dirs(folder, depth - 1) if d != folder)
    return found or [root]


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


def _names_a_role(filename: str, subject: str) -> bool:
    """True when any part of the file name (after the subject) is a sequence or label
    name: such a file is a variant of that role, never a stand-in for another."""
    stem = _NIFTI.sub("", filename).lower()
    if stem.startswith(subject.lower()):
        stem = stem[len(subject):]
    tokens = [t for t in re.split(r"[^a-z0-9]+", stem) if t]
    return any(t in _ALIASES for t in tokens)


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
    if (unknown and len(unknown) == 1 and len(missing) == 1
            and not _names_a_role(unknown[0].name, subject)):
        # One unrecognised file that names no sequence and one missing role: the file can
        # only be that role. A file that names another sequence (a stray
        # "<subject>_flair_backup.nii.gz") never stands in for a missing one.
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


def subject_files(folder: str | os.PathLike) -> dict[str, Any]:
    """The files of one subject folder by role, as :func:`find_subjects` finds them.

    Parameters
    ----------
    folder : path
        One subject's folder (the four sequences, and ``seg`` when labelled).

    Returns
    -------
    dict
        ``subject``, ``flair``, ``t1``, ``t1ce``, ``t2``, ``seg`` (paths or None),
        ``note`` and ``problem`` (None when every sequence was found unambiguously).

    Raises
    ------
    LayoutError
        ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LayoutError("expected a BraTS subject folder (four sequences)", folder)
    return _scan_subject(folder, "validation")


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
    subject is recorded in the manifest and the batch goes on. The cache follows
    :mod:`medimg.datasets.cache`: the manifest is rewritten as each subject ends (an
    interrupted run keeps what it finished), temporary files of a killed run are
    removed, and a rerun redoes a subject only when its source files (path, size,
    time) or these settings changed, or when it failed.

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
        Redo every subject.
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
    from .._parallel import resolve_n_jobs
    from .cache import build

    subjects = root if isinstance(root, pd.DataFrame) else find_subjects(root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"layout_version": LAYOUT_VERSION, "n4": bool(n4), "shrink": int(shrink),
                "iterations": [int(i) for i in iterations],
                "compression_level": int(compression_level)}
    rows = subjects.to_dict("records")
    # processes x SimpleITK threads should not oversubscribe the cores
    workers = min(resolve_n_jobs(n_jobs), max(1, len(rows)))
    options = {**settings, "n_threads": max(1, (os.cpu_count() or 1) // workers)}
    items = []
    for row in rows:
        sources = [row.get(role) for role in _ROLES]
        items.append({"item": row["subject"], "target": str(out_dir / f"{row['subject']}.h5"),
                      "sources": sources, "settings": settings, "row": row,
                      "options": options})
    built = build(items, _preprocess_task, out_dir, n_jobs=workers, progress=progress,
                  desc="BraTS preprocess", unit="subject", overwrite=overwrite,
                  extra_columns=("shape",))
    split_of = {row["subject"]: row.get("split") for row in rows}
    manifest = built.rename(columns={"item": "subject"})
    manifest["split"] = manifest["subject"].map(split_of)
    return manifest[_MANIFEST_COLUMNS]


def _preprocess_task(item: Mapping[str, Any]) -> dict[str, Any]:
    """Worker of :func:`preprocess` (a subject with a layout problem fails here, named)."""
    row = item["row"]
    if row.get("problem"):
        raise LayoutError(row["problem"], row["subject"])
    value = _preprocess_one({"row": row, "target": item["target"], "options": item["options"]})
    return {"shape": value["shape"]}


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


def default_cache_dir(root: str | os.PathLike) -> Path:
    """Where :func:`preprocess` puts the HDF5 cache of the data set at ``root`` by default:
    beside it, as ``<root>-h5``."""
    root = Path(root)
    return root.parent / f"{root.name}-h5"


def cached_subjects(cache_dir: str | os.PathLike) -> pd.DataFrame:
    """The subjects of an HDF5 cache (written by :func:`preprocess`) that can be used.

    Read from the cache's manifest: subjects whose status is ``ok`` or ``cached`` and
    whose file exists. Temporary files an interrupted run left, failed subjects and
    files the manifest does not know are never listed.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, path``, sorted by subject.

    Raises
    ------
    LayoutError
        No usable cached subject.
    """
    from .cache import cached_items

    table = cached_items(cache_dir)
    if table.empty:
        raise LayoutError("no preprocessed subject (.h5) found; run medimg.datasets.brats."
                          "preprocess first", cache_dir)
    return (table.rename(columns={"item": "subject"})[["subject", "path"]]
            .sort_values("subject", ignore_index=True))


# =======================================================================================
# Notebook 02: NIfTI header table, label volumes in mL, and a per-subject
# summary (shape, spacing, constant slices, foreground box, tumour volumes).
# =======================================================================================

_HEADER_FIELDS = (
    ("dim", "array dimensions (number of axes, then sizes)"),
    ("datatype", "on-disk voxel type"),
    ("pixdim", "voxel size per axis (qfac first)"),
    ("xyzt_units", "units of pixdim (space, time)"),
    ("scl_slope / scl_inter", "intensity scaling: value * slope + inter"),
    ("qform_code", "qform meaning (1 scanner, 2 aligned, 0 unset)"),
    ("sform_code", "sform meaning (1 scanner, 2 aligned, 0 unset)"),
    ("affine", "voxel (i, j, k) -> world (x, y, z) mm"),
    ("axcodes", "direction each voxel axis points to"),
    ("descrip", "free text"),
)


def nifti_header(path: str | os.PathLike) -> pd.DataFrame:
    """The fields of a NIfTI header that decide geometry and intensities, as a table.

    Reads the header only (no voxel data).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    pandas.DataFrame
        Index ``field`` (``dim``, ``datatype``, ``pixdim``, ``xyzt_units``,
        ``scl_slope / scl_inter``, ``qform_code``, ``sform_code``, ``affine``,
        ``axcodes``, ``descrip``); columns ``value`` (a display string) and
        ``meaning``.

    Raises
    ------
    DecodeError
        The file is missing or not NIfTI.

    Examples
    --------
    >>> nifti_header(row.flair).loc["axcodes", "value"]          # doctest: +SKIP
    'LPS'
    """
    import nibabel as nib

    from ..errors import DecodeError

    path = Path(path)
    if not path.is_file():
        raise DecodeError("no such file", path)
    try:
        img = nib.load(str(path))
        header = img.header
        ndim = int(header["dim"][0])
        slope, inter = header.get_slope_inter()
        values = {
            "dim": f"{ndim}: " + " x ".join(str(int(d)) for d in header["dim"][1:ndim + 1]),
            "datatype": str(header.get_data_dtype()),
            "pixdim": ", ".join(f"{float(p):g}" for p in header["pixdim"][:ndim + 1]),
            "xyzt_units": ", ".join(str(u) for u in header.get_xyzt_units()),
            "scl_slope / scl_inter": ("none" if slope is None
                                      else f"{float(slope):g} / {float(inter or 0):g}"),
            "qform_code": str(int(header["qform_code"])),
            "sform_code": str(int(header["sform_code"])),
            "affine": "; ".join(" ".join(f"{round(float(v), 3) + 0.0:g}" for v in affine_row)
                                for affine_row in np.asarray(img.affine)[:3]),
            "axcodes": "".join(nib.aff2axcodes(img.affine)),
            "descrip": header["descrip"].item().decode("latin-1", "replace").strip() or "-",
        }
    except Exception as exc:
        raise DecodeError(f"cannot read the NIfTI header ({type(exc).__name__}: {exc})",
                          path) from exc
    frame = pd.DataFrame([(name, values[name], meaning) for name, meaning in _HEADER_FIELDS],
                         columns=["field", "value", "meaning"])
    return frame.set_index("field")


#: Names of the BraTS labels and regions in :func:`label_volumes` tables.
LABEL_NAMES: dict[str, str] = {
    "1": "necrotic / non-enhancing core", "2": "oedema", "4": "enhancing tumour",
    "WT": "whole tumour {1, 2, 4}", "TC": "tumour core {1, 4}", "ET": "enhancing {4}",
}


def label_volumes(label: Any, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> pd.DataFrame:
    """Voxel counts and volumes in millilitres of each BraTS label and region.

    Parameters
    ----------
    label : numpy.ndarray
        ``(x, y, z)`` integer BraTS labels {0, 1, 2, 4}.
    spacing : sequence of 3 float
        Voxel size in mm (1 mL = 1000 mm^3).

    Returns
    -------
    pandas.DataFrame
        One row per label ``0, 1, 2, 4`` and region ``WT, TC, ET`` (index as
        strings), columns ``name``, ``voxels`` (int) and ``volume_ml`` (float).

    Raises
    ------
    InvalidImageError
        Not 3-D, or values outside {0, 1, 2, 4} (a cache label with 3 must be mapped
        back to 4 first).

    Examples
    --------
    >>> label = np.zeros((10, 10, 10), np.uint8); label[:2, :5, :5] = 4
    >>> label_volumes(label, (1.0, 1.0, 2.0)).loc["ET", "volume_ml"]
    0.1
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise InvalidImageError(f"label has shape {label.shape}, expected 3-D (x, y, z)")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InvalidImageError(f"spacing must be 3 positive sizes in mm, got {spacing}")
    values = np.unique(label)
    bad = sorted(set(values.tolist()) - set(LABEL_VALUES))
    if bad:
        raise InvalidImageError(f"label holds values {bad}, expected only {{0, 1, 2, 4}}")
    counts = np.bincount(label.ravel().astype(np.int64), minlength=5)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    regions = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
    rows = [(str(v), "background" if v == 0 else LABEL_NAMES[str(v)], int(counts[v]))
            for v in LABEL_VALUES]
    rows += [(name, LABEL_NAMES[name], int(sum(counts[v] for v in values)))
             for name, values in regions.items()]
    frame = pd.DataFrame(rows, columns=["label", "name", "voxels"]).set_index("label")
    frame["volume_ml"] = frame["voxels"] * voxel_ml
    return frame


def _summarize_row(row: Mapping[str, Any]) -> dict[str, Any]:
    from ..io.volume import Volume
    from ..spatial import constant_slices, crop_to_foreground

    image, label, affine = load_subject(row)
    volume = Volume(image, affine)
    brain = (image != 0).any(axis=-1)
    spacing = volume.spacing
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out: dict[str, Any] = {
        "shape": "x".join(str(s) for s in image.shape[:3]),
        "spacing_x_mm": spacing[0], "spacing_y_mm": spacing[1], "spacing_z_mm": spacing[2],
        "axcodes": "".join(volume.axcodes),
        "brain_ml": float(brain.sum()) * voxel_ml,
    }
    for axis, name in enumerate("xyz"):
        out[f"constant_{name}"] = int(constant_slices(image, axis, channel_axis=-1).size)
        out[f"slices_{name}"] = int(image.shape[axis])
    try:
        _, box = crop_to_foreground(image)
        for (start, stop), name in zip(box, "xyz", strict=True):
            out[f"box_{name}"] = stop - start
    except InvalidImageError:
        out.update(box_x=0, box_y=0, box_z=0)
    if label is not None:
        volumes = label_volumes(label, spacing)["volume_ml"]
        out.update({f"{key.lower()}_ml": float(volumes[key]) for key in ("WT", "TC", "ET")})
        out.update({f"label{v}_ml": float(volumes[str(v)]) for v in (1, 2, 4)})
    return out


def summarize_subjects(subjects: pd.DataFrame, *, n_jobs: int | None = -1,
                       progress: bool = True) -> pd.DataFrame:
    """One row per subject: grid, spacing, constant slices, brain box and tumour volumes.

    Each subject is loaded with :func:`load_subject` (so the five files are checked
    against each other) in worker processes; a subject that fails becomes a row
    with its ``error`` and the others go on.

    Parameters
    ----------
    subjects : pandas.DataFrame
        From :func:`find_subjects`.
    n_jobs : int, optional
        Worker processes (-1: every core).
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, split, grade, shape`` (``"240x240x155"``),
        ``spacing_{x,y,z}_mm``, ``axcodes`` (after canonical reorientation),
        ``brain_ml`` (voxels non-zero in any sequence), ``constant_{x,y,z}`` (slices
        constant in every sequence, :func:`medimg.spatial.constant_slices`) and
        ``slices_{x,y,z}`` (slices per axis), ``box_{x,y,z}`` (size in voxels of the
        bounding box of the brain), ``wt_ml, tc_ml, et_ml`` and ``label{1,2,4}_ml``
        (NaN without a segmentation), and ``error`` (None when the subject loaded).
    """
    from .._parallel import map_items

    rows = [r._asdict() if hasattr(r, "_asdict") else dict(r)
            for r in (subjects.to_dict("records") if isinstance(subjects, pd.DataFrame)
                      else subjects)]
    results = map_items(_summarize_row, rows, n_jobs=n_jobs, progress=progress,
                        desc="summarising subjects", unit="subject")
    table = []
    for result in results:
        row = result.item
        entry = {"subject": row.get("subject"), "split": row.get("split"),
                 "grade": row.get("grade")}
        entry.update(result.value or {})
        entry["error"] = result.error
        table.append(entry)
    frame = pd.DataFrame(table)
    frame["error"] = frame["error"].astype(object).where(frame["error"].notna(), None)
    return frame
