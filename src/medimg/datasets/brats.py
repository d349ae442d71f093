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
    "TARGET_CHANNELS",
    "build_model",
    "cached_subjects",
    "check_model",
    "config_arguments",
    "dataset",
    "default_cache_dir",
    "evaluate",
    "find_subjects",
    "label_volumes",
    "load_model",
    "load_subject",
    "nifti_header",
    "predict_subject",
    "predict_volume",
    "preprocess",
    "probabilities_to_labels",
    "read_h5",
    "split_subjects",
    "standardize_volume",
    "summarize_subjects",
    "targets_from_labels",
    "train_from_config",
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
            # cached rows carry the figures of the run that did the work: keep them
            previous = {r.subject: {"seconds": r.seconds, "shape": r.shape}
                        for r in old.itertuples() if r.status in ("ok", "cached")}
        except Exception:  # a damaged manifest is rebuilt, never fatal
            previous = {}
    options = {
        "n4": bool(n4),
        "shrink": int(shrink),
        "iterations": [int(i) for i in iterations],
        "compression_level": int(compression_level),
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
            record.update(status="cached", **previous.get(subject, {}))
        else:
            tasks.append({"row": row, "target": str(target), "options": options})
    # Workers from the subjects left to do (a resumed run with one left uses every core
    # in SimpleITK); processes x SimpleITK threads should not oversubscribe the cores.
    workers = min(resolve_n_jobs(n_jobs), max(1, len(tasks)))
    options["n_threads"] = max(1, (os.cpu_count() or 1) // workers)
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


# =======================================================================================
# Issue 6: training data (tf.data from the HDF5 cache), the 3-D U-Net, whole-scan
# prediction. Everything below works on the cache written by `preprocess` above.
# =======================================================================================

#: Output channels of a model per kind of target.
TARGET_CHANNELS: dict[str, int] = {"regions": 3, "classes": 4}


def _check_targets(targets: str) -> str:
    if targets not in TARGET_CHANNELS:
        from ..errors import ConfigError

        raise ConfigError(f"targets must be 'regions' (WT, TC, ET; sigmoid) or 'classes' "
                          f"(0, 1, 2, 4 one-hot; softmax), got {targets!r}")
    return targets


def default_cache_dir(root: str | os.PathLike) -> Path:
    """Where the HDF5 cache of the data set at ``root`` goes by default: beside it, as
    ``<root>-h5`` (the folder ``medimg prepare brats`` writes), so the notebooks and
    the command line share one cache."""
    root = Path(root)
    return root.parent / f"{root.name}-h5"


def cached_subjects(cache_dir: str | os.PathLike) -> pd.DataFrame:
    """The subjects of an HDF5 cache that can be trained on.

    Reads ``manifest.csv`` (written by :func:`preprocess`) when present, else lists
    ``*.h5``; keeps subjects whose file exists and whose status is not an error.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, path``, sorted by subject.

    Raises
    ------
    LayoutError
        No usable cached subject.
    """
    cache_dir = Path(cache_dir)
    manifest = cache_dir / "manifest.csv"
    rows = []
    if manifest.is_file():
        table = pd.read_csv(manifest)
        for r in table.itertuples():
            path = Path(str(r.path))
            if not path.is_file():  # relative, or the cache folder was moved
                path = cache_dir / path.name
            if r.status != "error" and path.is_file():
                rows.append({"subject": str(r.subject), "path": str(path)})
    else:
        rows = [{"subject": p.stem, "path": str(p)} for p in sorted(cache_dir.glob("*.h5"))]
    if not rows:
        raise LayoutError("no preprocessed subject (.h5) found; run medimg.datasets.brats."
                          "preprocess (or `medimg prepare brats`) first", cache_dir)
    return pd.DataFrame(rows).sort_values("subject", ignore_index=True)


def split_subjects(subjects: Any, *, val_fraction: float = 0.2, test_fraction: float = 0.2,
                   seed: int = 0) -> dict[str, list[str]]:
    """Split subjects into train, validation and test sets, by subject (never by patch).

    Parameters
    ----------
    subjects : sequence of str, pandas.DataFrame or path
        Subject names, a table with a ``subject`` column (e.g. :func:`cached_subjects`)
        or a cache folder.
    val_fraction, test_fraction : float
        Shares of the subjects (rounded, at least one subject each when the fraction
        is positive and enough subjects exist; training keeps at least one).
    seed : int
        Shuffling seed.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}`` of subject names, disjoint.
    """
    if isinstance(subjects, str | os.PathLike):
        subjects = cached_subjects(subjects)
    names = list(subjects["subject"]) if isinstance(subjects, pd.DataFrame) else list(subjects)
    names = sorted(dict.fromkeys(str(n) for n in names))
    if len(names) < 1:
        raise LayoutError("split_subjects: no subjects to split")
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = [names[i] for i in order]

    def share(fraction: float) -> int:
        return 0 if fraction <= 0 else max(1, round(fraction * len(names)))

    n_test = min(share(test_fraction), max(0, len(names) - 1))
    n_val = min(share(val_fraction), max(0, len(names) - 1 - n_test))
    return {"test": sorted(shuffled[:n_test]),
            "val": sorted(shuffled[n_test:n_test + n_val]),
            "train": sorted(shuffled[n_test + n_val:])}


def _subject_paths(subjects: Any, cache_dir: str | os.PathLike | None) -> list[Path]:
    if isinstance(subjects, pd.DataFrame):
        return [Path(p) for p in subjects["path"]]
    paths = []
    for s in subjects:
        p = Path(s)
        if p.suffix != ".h5":
            if cache_dir is None:
                raise LayoutError(f"subject {s!r} is not an .h5 path and no cache_dir was given")
            p = Path(cache_dir) / f"{s}.h5"
        paths.append(p)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise LayoutError(f"cached subject file(s) not found: {', '.join(missing[:3])}"
                          + (" ..." if len(missing) > 3 else ""))
    return paths


def _load_sampler(path: Path, patch_shape: tuple[int, ...], max_background: float):
    """Read a cached subject and make its patch sampler; errors name the file."""
    from ..errors import MedimgError
    from ..patches import PatchSampler

    image, label, _ = read_h5(path)
    if label is None:
        raise LayoutError("subject has no label (validation data cannot be trained on)", path)
    try:
        return PatchSampler(image, label, patch_shape, max_background=max_background,
                            standardize=True, in_place=True)
    except MedimgError as exc:
        raise type(exc)(exc.detail, path) from None


def targets_from_labels(label: Any, targets: str = "regions") -> Any:
    """Training targets from cached labels {0, 1, 2, 3} (tf.Tensor or NumPy).

    ``"regions"``: the BraTS regions WT, TC, ET as 3 channels (for sigmoid outputs);
    ``"classes"``: one-hot over the 4 classes 0, 1, 2, 3 (= BraTS 4; softmax).

    Returns
    -------
    float32, shape ``label.shape + (3,)`` or ``+ (4,)``
    """
    from .._backend import is_tensor, tensorflow
    from ..metrics import brats_regions

    _check_targets(targets)
    if targets == "regions":
        regions = brats_regions(label)
        return regions if is_tensor(regions) else regions.astype(np.float32)
    if is_tensor(label):
        tf = tensorflow()
        return tf.one_hot(tf.cast(label, tf.int32), 4, dtype=tf.float32)
    return np.eye(4, dtype=np.float32)[np.asarray(label, dtype=np.intp)]


def dataset(
    subjects: Any,
    *,
    cache_dir: str | os.PathLike | None = None,
    patch_shape: Sequence[int] = (64, 64, 32),
    batch_size: int = 2,
    patches_per_subject: int = 8,
    max_background: float = 0.96,
    targets: str = "regions",
    sampling: str = "on_the_fly",
    shuffle: bool = True,
    seed: int = 0,
    keep_in_memory: bool = True,
    prefetch: bool = True,
) -> Any:
    """A ``tf.data`` pipeline of standardised training patches from the HDF5 cache.

    Every pass (epoch) visits each subject once, in random order, and draws
    ``patches_per_subject`` patches with at most ``max_background`` background
    (:class:`medimg.patches.PatchSampler`: what the label allows and the subject's
    intensity statistics are worked out once; each patch is copied once, z-scored per
    sequence over the brain on the way, exactly as :func:`predict_volume` standardises
    whole scans). Patches of several subjects are shuffled together, batched, turned
    into targets in TensorFlow and prefetched.

    Parameters
    ----------
    subjects : sequence of str or paths, or pandas.DataFrame
        Subject names (with ``cache_dir``) or ``.h5`` paths, e.g. one split of
        :func:`split_subjects`; or a table with a ``path`` column.
    cache_dir : path, optional
        The cache folder, when ``subjects`` are names.
    patch_shape : sequence of 3 int
        Patch size ``(x, y, z)``; each must fit in every subject's cached volume.
    batch_size : int
        Patches per batch (the last, incomplete batch is dropped when shuffling).
    patches_per_subject : int
        Patches drawn per subject per pass.
    max_background : float
        Largest fraction of background voxels in a patch.
    targets : {"regions", "classes"}
        See :func:`targets_from_labels`.
    sampling : {"on_the_fly", "pre_extracted"}
        ``on_the_fly``: new random patches every epoch (more variety; the default,
        it outpaces a CPU training step by far, see ``benchmarks/bench_patches.py``).
        ``pre_extracted``: patches drawn once, kept in memory and reshuffled each
        epoch (the chapter's approach; the first epoch pays for the sampling).
    shuffle : bool
        Shuffle subjects and patches. With ``shuffle=False`` (validation) every pass
        yields the same patches in the same order.
    seed : int
        Seed of the subject order and patch positions (reproducible runs).
    keep_in_memory : bool
        Keep each subject's volume and sampler after its first visit (fast; needs
        the cache's size in RAM). When False, subjects are re-read every visit.
    prefetch : bool
        Prefetch batches (``tf.data.AUTOTUNE``).

    Returns
    -------
    tf.data.Dataset
        Batches ``(image (B, x, y, z, 4) float32, target (B, x, y, z, C) float32)``
        with ``C`` 3 (regions) or 4 (classes).

    Raises
    ------
    LayoutError
        A subject file is missing or has no label.
    PatchError
        The patch does not fit a subject, or no subject has a position with enough
        tumour (subjects without tumour are skipped with a warning).
    ConfigError
        Unknown ``targets`` or ``sampling``.
    """
    import warnings

    from .._backend import tensorflow
    from ..errors import ConfigError, PatchError

    tf = tensorflow()
    _check_targets(targets)
    if sampling not in ("on_the_fly", "pre_extracted"):
        raise ConfigError(f"sampling must be 'on_the_fly' or 'pre_extracted', got {sampling!r}")
    patch = tuple(int(p) for p in patch_shape)
    if len(patch) != 3:
        raise ConfigError(f"patch_shape must have 3 values (x, y, z), got {patch_shape!r}")
    paths = _subject_paths(subjects, cache_dir)
    if not paths:
        raise LayoutError("dataset: no subjects given")
    samplers: dict[Path, Any] = {}
    skipped: set[Path] = set()
    epoch_rng = np.random.default_rng(seed)
    n_batches = None

    def sampler_for(path: Path):
        if path in samplers:
            return samplers[path]
        try:
            sampler = _load_sampler(path, patch, max_background)
        except PatchError as exc:
            if "larger than the volume" in str(exc):
                raise
            if path not in skipped:
                warnings.warn(f"skipping {path.name}: {exc.detail}", stacklevel=2)
                skipped.add(path)
            return None
        if keep_in_memory:
            samplers[path] = sampler
        return sampler

    if keep_in_memory:
        # load every subject now: bad subjects fail here, with their names, rather than
        # mid-epoch, and the number of batches per epoch is known to Keras
        for path in paths:
            sampler_for(path)
        per_epoch = sum(min(int(patches_per_subject), s.n_allowed) for s in samplers.values())
        if per_epoch == 0:
            raise PatchError(f"no subject among {len(paths)} has a {patch} patch with at most "
                             f"{max_background:.0%} background")
        n_batches = (per_epoch // int(batch_size) if shuffle
                     else -(-per_epoch // int(batch_size)))

    def generate():
        rng = epoch_rng if shuffle else np.random.default_rng(seed)
        order = rng.permutation(len(paths)) if shuffle else range(len(paths))
        produced = 0
        for index in order:
            sampler = sampler_for(paths[index])
            if sampler is None:
                continue
            n = min(int(patches_per_subject), sampler.n_allowed)
            for image_patch, label_patch in sampler.iter_patches(n, rng=rng):
                produced += 1
                yield image_patch, label_patch
        if produced == 0:
            raise PatchError(f"no subject among {len(paths)} has a {patch} patch with at most "
                             f"{max_background:.0%} background")

    signature = (tf.TensorSpec((*patch, len(SEQUENCES)), tf.float32),
                 tf.TensorSpec(patch, tf.uint8))
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    if sampling == "pre_extracted":
        ds = ds.cache()
    if shuffle:
        buffer = max(2 * int(patches_per_subject), 4 * int(batch_size))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=shuffle)

    @tf.autograph.experimental.do_not_convert
    def to_targets(image, label):
        return image, targets_from_labels(label, targets)

    ds = ds.map(to_targets, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if n_batches is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    if not shuffle and sampling == "on_the_fly":
        ds = ds.cache()  # validation: the same patches every epoch, sampled once
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


def build_model(*, patch_shape: Sequence[int] = (64, 64, 32), targets: str = "regions",
                depth: int = 3, base_filters: int = 8, batch_norm: bool = True,
                deconvolution: bool = False, learning_rate: float = 1e-3,
                mixed_precision: bool = False, xla: bool = False) -> Any:
    """The chapter's 3-D U-Net for BraTS, compiled with soft-Dice loss and Dice metrics.

    Four input channels (the sequences); 3 sigmoid outputs for ``targets="regions"``
    (WT, TC, ET) or 4 softmax outputs for ``"classes"``. The spatial input size is
    left open (fully convolutional), so the same model predicts whole scans window by
    window at any window size divisible by ``2 ** (depth - 1)``.

    Parameters
    ----------
    patch_shape : sequence of 3 int
        Training patch size (checked against the depth).
    targets : {"regions", "classes"}
    depth, base_filters, batch_norm, deconvolution :
        See :func:`medimg.models.unet`.
    learning_rate : float
        Adam's learning rate.
    mixed_precision : bool
        Compute in float16 (``mixed_float16``; on GPUs with tensor cores), keeping the
        weights and the outputs in float32. Only this model is affected.
    xla : bool
        Compile the training step with XLA (``jit_compile``).

    Returns
    -------
    keras.Model
        Compiled; metrics ``dice_wt`` (regions: WT channel; classes: all tumour
        classes pooled) and, for regions, ``dice_tc`` and ``dice_et``.
    """
    import keras

    from ..metrics import dice_metric, soft_dice_loss
    from ..models import unet

    _check_targets(targets)
    patch = tuple(int(p) for p in patch_shape)
    factor = 2 ** (int(depth) - 1)
    if len(patch) != 3 or any(p % factor for p in patch):
        from ..errors import ConfigError

        raise ConfigError(f"patch_shape {patch} must be 3 sizes divisible by 2**(depth-1) = "
                          f"{factor}")
    n_out = TARGET_CHANNELS[targets]
    # layers take the dtype policy in force when they are made: set it for this model
    # only, so other models built later in the session are not affected
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
    try:
        model = unet((None, None, None, len(SEQUENCES)), n_out, depth=depth,
                     base_filters=base_filters, batch_norm=batch_norm,
                     deconvolution=deconvolution,
                     final_activation="sigmoid" if targets == "regions" else "softmax",
                     name="brats_unet3d")
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    if targets == "regions":
        metrics = [dice_metric("dice_wt", class_index=0), dice_metric("dice_tc", class_index=1),
                   dice_metric("dice_et", class_index=2)]
    else:
        metrics = [_classes_whole_tumour_dice()]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=soft_dice_loss,
                  metrics=metrics, jit_compile=bool(xla))
    return model


def _classes_whole_tumour_dice():
    """Whole-tumour Dice for one-hot class targets: tumour = not class 0."""
    from ..metrics import _keras_dice_metric_class

    base = _keras_dice_metric_class()

    class WholeTumourDice(base):
        def update_state(self, y_true, y_pred, sample_weight=None):
            from keras import ops

            super().update_state(1.0 - y_true[..., :1], 1.0 - ops.cast(y_pred[..., :1],
                                                                        "float32"))

    return WholeTumourDice(name="dice_wt")


def load_model(path: str | os.PathLike, *, targets: str | None = None) -> Any:
    """Load a saved model (``.keras``) for prediction, checking its output channels.

    Parameters
    ----------
    path : path
        A model saved with ``model.save("x.keras")``.
    targets : {"regions", "classes"}, optional
        What the config expects; the model's output channels must match.

    Raises
    ------
    DecodeError
        The file is missing or not a Keras model.
    ConfigError
        The model's output channels do not match ``targets``.
    """
    import keras

    from ..errors import DecodeError
    from ..metrics import custom_objects

    path = Path(path)
    if not path.is_file():
        raise DecodeError("no such model file", path)
    try:
        model = keras.models.load_model(path, compile=False, custom_objects=custom_objects())
    except Exception as exc:
        raise DecodeError(f"cannot load as a Keras model ({type(exc).__name__}: {exc})",
                          path) from exc
    if targets is not None:
        check_model(model, targets, where=path)
    return model


def check_model(model: Any, targets: str, *, where: Any = None) -> None:
    """Raise a clear error when ``model`` does not fit the BraTS data and ``targets``.

    Raises
    ------
    ConfigError
        Input channels other than 4, or output channels other than 3 (regions) / 4
        (classes).
    """
    from ..errors import ConfigError

    _check_targets(targets)
    expected = TARGET_CHANNELS[targets]
    outputs = model.output_shape[-1]
    inputs = model.input_shape[-1]
    name = where if where is not None else getattr(model, "name", "model")
    if inputs != len(SEQUENCES):
        raise ConfigError(f"model takes {inputs} input channels, expected {len(SEQUENCES)} "
                          f"(the sequences {', '.join(SEQUENCES)})", name)
    if outputs != expected:
        raise ConfigError(
            f"model outputs {outputs} channels but targets={targets!r} needs {expected} "
            f"({'WT, TC, ET' if targets == 'regions' else 'classes 0, 1, 2, 4'}); set "
            f"targets in configs/brats.yaml to what the model was trained for", name)


def probabilities_to_labels(probabilities: np.ndarray, targets: str = "regions", *,
                            threshold: float = 0.5) -> np.ndarray:
    """Label map (cache codes {0, 1, 2, 3}, 3 = BraTS 4) from model outputs.

    ``"regions"``: nested thresholding, so the regions stay nested as BraTS defines
    them: oedema (2) where WT, core (1) where also TC, enhancing (3) where also ET.
    ``"classes"``: the most probable class.

    Parameters
    ----------
    probabilities : numpy.ndarray, shape (x, y, z, 3 or 4)
    targets : {"regions", "classes"}
    threshold : float
        For regions.

    Returns
    -------
    numpy.ndarray, uint8, shape (x, y, z)
    """
    from ..errors import InvalidImageError

    _check_targets(targets)
    probabilities = np.asarray(probabilities)
    if probabilities.shape[-1] != TARGET_CHANNELS[targets]:
        raise InvalidImageError(f"probabilities have {probabilities.shape[-1]} channels, "
                                f"targets={targets!r} needs {TARGET_CHANNELS[targets]}")
    if targets == "classes":
        return np.argmax(probabilities, axis=-1).astype(np.uint8)
    wt = probabilities[..., 0] > threshold
    tc = wt & (probabilities[..., 1] > threshold)
    et = tc & (probabilities[..., 2] > threshold)
    label = np.zeros(probabilities.shape[:-1], np.uint8)
    label[wt] = 2
    label[tc] = 1
    label[et] = 3
    return label


def standardize_volume(image: np.ndarray) -> np.ndarray:
    """Z-score each sequence over the brain (first channel non-zero), float32: the same
    statistics the training patches use (:func:`medimg.patches.channel_statistics`)."""
    from ..patches import channel_statistics

    mean, std = channel_statistics(image, "nonzero")
    out = np.asarray(image, dtype=np.float32) - mean
    out /= std
    return out


def predict_volume(model: Any, image: np.ndarray, *, patch_shape: Sequence[int] = (64, 64, 32),
                   targets: str = "regions", overlap: float = 0.5, batch_size: int = 2,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Predict one preprocessed (cached) volume with a sliding window.

    Parameters
    ----------
    model : keras.Model or callable
        Trained model (4 input channels).
    image : numpy.ndarray, shape (x, y, z, 4)
        The cached image (not standardised; this function standardises it exactly as
        the training patches were).
    patch_shape : sequence of 3 int
        Window size (the training patch size works; the model is fully convolutional).
    targets : {"regions", "classes"}
    overlap, batch_size, progress :
        See :func:`medimg.patches.sliding_window_predict` (Gaussian blending).

    Returns
    -------
    labels : numpy.ndarray, uint8, shape (x, y, z)
        Cache codes {0, 1, 2, 3}.
    probabilities : numpy.ndarray, float32, shape (x, y, z, 3 or 4)
    """
    from ..patches import sliding_window_predict

    if hasattr(model, "output_shape"):
        check_model(model, targets)
    probabilities = sliding_window_predict(model, standardize_volume(image), patch_shape,
                                           overlap=overlap, batch_size=batch_size,
                                           blend="gaussian", progress=progress)
    return probabilities_to_labels(probabilities, targets), probabilities


def evaluate(model: Any, subjects: Any, *, cache_dir: str | os.PathLike | None = None,
             patch_shape: Sequence[int] = (64, 64, 32), targets: str = "regions",
             overlap: float = 0.5, batch_size: int = 2, hausdorff: bool = True,
             progress: bool = True) -> pd.DataFrame:
    """Whole-scan Dice (and Hausdorff 95) per BraTS region for held-out subjects.

    Each cached subject is predicted with :func:`predict_volume` and compared with its
    label on the cached grid (outside the crop box both are background, so the scores
    equal those on the original grid). A region absent from truth and prediction
    scores Dice 1.0 and HD95 0 (BraTS convention); absent from only one, HD95 is inf.

    Returns
    -------
    pandas.DataFrame
        One row per subject: ``subject, dice_wt, dice_tc, dice_et`` (and ``hd95_wt``,
        ``hd95_tc``, ``hd95_et`` in mm), ``seconds`` (prediction time).
    """
    import time as _time

    from tqdm.auto import tqdm

    from ..metrics import brats_regions, hausdorff95, region_dice

    rows = []
    for path in tqdm(_subject_paths(subjects, cache_dir), desc="evaluate", unit="subject",
                     disable=not progress):
        image, label, attrs = read_h5(path)
        if label is None:
            raise LayoutError("subject has no label to evaluate against", path)
        start = _time.perf_counter()
        predicted, _ = predict_volume(model, image, patch_shape=patch_shape, targets=targets,
                                      overlap=overlap, batch_size=batch_size)
        row = {"subject": attrs.get("subject", path.stem),
               "seconds": _time.perf_counter() - start}
        row.update({f"dice_{k.lower()}": v for k, v in region_dice(predicted, label).items()})
        if hausdorff:
            spacing = tuple(float(s) for s in attrs.get("spacing", (1.0, 1.0, 1.0)))
            truth_regions, predicted_regions = brats_regions(label), brats_regions(predicted)
            for i, name in enumerate(("wt", "tc", "et")):
                row[f"hd95_{name}"] = hausdorff95(predicted_regions[..., i],
                                                  truth_regions[..., i], spacing)
        rows.append(row)
    return pd.DataFrame(rows)


def predict_subject(model: Any, subject: str | os.PathLike, out: str | os.PathLike | None = None,
                    *, patch_shape: Sequence[int] = (64, 64, 32), targets: str = "regions",
                    overlap: float = 0.5, batch_size: int = 2, n4: bool = True,
                    preprocess_options: Mapping[str, Any] | None = None,
                    source_orientation: bool = True, progress: bool = True) -> Any:
    """Segment one whole scan and (optionally) write it as NIfTI on the original grid.

    ``subject`` is a BraTS subject folder (its four NIfTI sequences; preprocessed
    like the training data: N4, cropped to the informative slices) or a cached
    ``.h5`` file. The predicted label map is mapped back to the BraTS values
    {0, 1, 2, 4}, pasted into the original grid (e.g. 240x240x155) and carries the
    original affine, so it overlays the input in ITK-SNAP or 3D Slicer.

    Parameters
    ----------
    model : keras.Model or path
        A trained model or a ``.keras`` file (see :func:`load_model`).
    subject : path
        Subject folder or ``.h5`` file.
    out : path, optional
        ``.nii.gz`` / ``.nii`` to write (atomically).
    patch_shape, targets, overlap, batch_size :
        See :func:`predict_volume`.
    n4 : bool
        N4-correct a raw subject (as the cache was made); ignored for ``.h5``.
    preprocess_options : mapping, optional
        Further :func:`preprocess` settings for a raw subject (``shrink``,
        ``iterations``; e.g. the config's ``preprocess`` section), so it is prepared
        exactly like the training cache.
    source_orientation : bool
        Return (and write) the labels in the voxel order of the subject's files on
        disk (e.g. BraTS' LPS), so the array matches the source segmentation voxel for
        voxel and the affine equals the source's; otherwise closest canonical RAS+ (the
        same positions in space either way).
    progress : bool
        Progress bar over the windows.

    Returns
    -------
    medimg.io.Volume
        uint8 labels {0, 1, 2, 4} on the original grid with the original affine (in
        the files' own orientation with ``source_orientation``).

    Raises
    ------
    LayoutError, DecodeError, InvalidImageError
        The subject cannot be read (message names the subject and file).
    ConfigError
        The model's output channels do not match ``targets``.
    """
    import tempfile

    from ..errors import MedimgError
    from ..io.volume import write_nifti

    if isinstance(model, str | os.PathLike):
        model = load_model(model, targets=targets)
    else:
        check_model(model, targets)
    subject = Path(subject)
    if subject.suffix == ".h5":
        image, _, attrs = read_h5(subject)
    elif subject.is_dir():
        try:
            table = find_subjects(subject.parent)
            rows = table[table["subject"] == subject.name]
        except LayoutError:
            rows = pd.DataFrame()
        if rows.empty:
            raise LayoutError("not a BraTS subject folder (no <subject>_<sequence>.nii[.gz] "
                              "files found)", subject)
        if rows.iloc[0]["problem"]:
            raise LayoutError(rows.iloc[0]["problem"], subject)
        with tempfile.TemporaryDirectory(prefix="medimg-predict-") as tmp:
            options = {k: v for k, v in dict(preprocess_options or {}).items()
                       if k not in ("n4", "n_jobs", "progress", "overwrite")}
            manifest = preprocess(rows, tmp, n_jobs=1, n4=n4, progress=False, **options)
            record = manifest.iloc[0]
            if record["status"] == "error":
                raise MedimgError(f"preprocessing failed: {record['error']}", subject)
            image, _, attrs = read_h5(record["path"])
    else:
        raise LayoutError("expected a subject folder or a cached .h5 file", subject)
    labels, _ = predict_volume(model, image, patch_shape=patch_shape, targets=targets,
                               overlap=overlap, batch_size=batch_size, progress=progress)
    volume = uncrop(labels, attrs, brats_labels=True)
    if source_orientation and attrs.get("source_axcodes"):
        volume = _reorient(volume, str(attrs["source_axcodes"]))
    volume.meta["source"] = str(subject)
    if out is not None:
        write_nifti(volume, out, dtype=np.uint8)
    return volume


def train_from_config(cfg: Any, *, root: str | os.PathLike | None = None,
                      epochs: int | None = None, out_dir: str | os.PathLike | None = None,
                      verbose: int | str = 2) -> dict[str, Any]:
    """The whole chapter from a terminal: preprocess, split, train, evaluate, save.

    What notebook 04 does step by step, with the settings of a ``brats`` config:
    the HDF5 cache (:func:`preprocess`, resumable) beside the data set
    (:func:`default_cache_dir`), a split by subject, on-the-fly patches, the 3-D
    U-Net trained with early stopping on the validation whole-tumour Dice, whole-scan
    Dice and HD95 per region on the held-out subjects, the model saved as ``.keras``.

    Parameters
    ----------
    cfg : Config
        ``load_config("brats", profile)``.
    root : path, optional
        The data set (default: the config's data root, else synthetic data).
    epochs : int, optional
        Override the config's ``epochs``.
    out_dir : path, optional
        Model, run logs (default: the config's ``output_dir/<profile>``).
    verbose :
        Keras ``fit`` verbosity.

    Returns
    -------
    dict
        ``model_path``, ``history`` (DataFrame), ``scores`` (DataFrame per test
        subject), ``dice_wt``/``dice_tc``/``dice_et`` (means), ``split``,
        ``train_seconds``.
    """
    import time as _time

    from .. import training
    from ..synthetic import ensure_data

    root = Path(root) if root else ensure_data(cfg)
    out_dir = Path(out_dir) if out_dir else cfg.repo_root / cfg.output_dir / cfg.profile
    settings = config_arguments(cfg)
    cache_dir = default_cache_dir(root)
    manifest = preprocess(root, cache_dir, n_jobs=cfg.n_jobs, **cfg.preprocess.to_dict())
    failed = manifest[manifest["status"] == "error"]
    for row in failed.itertuples():
        print(f"[medimg] skipped {row.subject}: {row.error}")
    subjects = cached_subjects(cache_dir)
    split = split_subjects(subjects, val_fraction=cfg.val_fraction,
                           test_fraction=cfg.test_fraction, seed=cfg.seed)
    train_ds = dataset(split["train"], cache_dir=cache_dir, seed=cfg.seed, **settings["data"])
    val_ds = (dataset(split["val"], cache_dir=cache_dir, shuffle=False, seed=cfg.seed,
                      **settings["data"]) if split["val"] else None)
    model = build_model(**settings["model"])
    start = _time.perf_counter()
    history = training.train(model, train_ds, val_ds, epochs=int(epochs or cfg.epochs),
                             monitor="val_dice_wt", patience=cfg.patience,
                             run_dir=out_dir / "run", tensorboard=False, seed=cfg.seed,
                             verbose=verbose)
    train_seconds = _time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "brats_unet3d.keras"
    model.save(model_path)
    scores = (evaluate(model, split["test"], cache_dir=cache_dir, **settings["predict"])
              if split["test"] else pd.DataFrame())
    means = {f"dice_{r}": (float(scores[f"dice_{r}"].mean()) if len(scores) else None)
             for r in ("wt", "tc", "et")}
    return {"model_path": model_path, "history": history, "scores": scores, "split": split,
            "train_seconds": train_seconds, "cache_dir": cache_dir, **means}


def _reorient(volume: Any, axcodes: str) -> Any:
    """The same voxels in another axis order (flips and permutations only)."""
    import nibabel as nib

    from ..io.volume import Volume

    current = nib.orientations.io_orientation(volume.affine)
    target = nib.orientations.axcodes2ornt(tuple(axcodes))
    transform = nib.orientations.ornt_transform(current, target)
    array = nib.orientations.apply_orientation(volume.array, transform)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(transform, volume.array.shape[:3])
    return Volume(np.ascontiguousarray(array), affine, dict(volume.meta))


def config_arguments(cfg: Any) -> dict[str, dict[str, Any]]:
    """Keyword arguments for :func:`dataset`, :func:`build_model` and the prediction
    functions, read from a ``brats`` config (``configs/brats.yaml``)."""
    patch = tuple(int(p) for p in cfg.patch_shape)
    return {
        "data": {"patch_shape": patch, "batch_size": int(cfg.batch_size),
                 "patches_per_subject": int(cfg.patches_per_subject),
                 "max_background": float(cfg.max_background), "targets": cfg.targets,
                 "sampling": cfg.sampling},
        "model": {"patch_shape": patch, "targets": cfg.targets, "depth": int(cfg.depth),
                  "base_filters": int(cfg.base_filters), "batch_norm": bool(cfg.batch_norm),
                  "deconvolution": bool(cfg.deconvolution),
                  "learning_rate": float(cfg.learning_rate),
                  "mixed_precision": bool(cfg.mixed_precision), "xla": bool(cfg.xla)},
        "predict": {"patch_shape": tuple(int(p) for p in cfg.window_shape) or patch,
                    "targets": cfg.targets, "overlap": float(cfg.overlap),
                    "batch_size": int(cfg.predict_batch_size)},
    }


# =======================================================================================
# Notebook 02 (issue 4): NIfTI header table, label volumes in mL, and a per-subject
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
