"""RSNA Pneumonia Detection Challenge (Kaggle): layout, label tables, the image cache.

The real stage-2 download (and :func:`medimg.synthetic.make_rsna`) looks like::

    root/
      stage_2_train_images/<patientId>.dcm     (the chapter's copy names it Train/)
      stage_2_test_images/<patientId>.dcm      (Test/)
      stage_2_train_labels.csv                 patientId,x,y,width,height,Target
      stage_2_detailed_class_info.csv          patientId,class

Both CSVs have one row per box (a patient with two boxes has two rows in each; a
patient without opacity has one row with empty box columns). :func:`load_labels`
merges them into one row per box; :func:`patients` reduces that to one row per patient
with its image path. :func:`build_cache` turns every patient's DICOM into the model's
pixels once (:func:`preprocess_image`: one resampling to an isotropic grid, CLAHE) and
keeps them as one ``uint8`` array on disk, keyed on the settings and on the source
files. Features, splits, models and evaluation live in :mod:`medimg.tasks`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._fsutil import atomic_path
from ..errors import InvalidImageError, LayoutError
from ..intensity import clahe
from ..io import dicom_pixels, read_dicom
from ..spatial import crop_or_pad, resize
from .cache import build as build_items
from .cache import cache_folder

__all__ = ["CACHE_VERSION", "CLASSES", "RsnaCache", "RsnaLayout", "build_cache", "check_boxes",
           "find_layout", "load_labels", "patients", "preprocess_image"]

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
        Missing files or columns; a patient with two classes or no class, or only
        in the class file; a row repeated exactly (a box counted twice); a Target
        that disagrees with the class (Target 1 must be "Lung Opacity"); a Target-1
        row without a box or a Target-0 row with one; a box of non-positive size or
        starting at a negative coordinate. The message names the file. (Boxes that
        end past the image's edge need the image size: :func:`check_boxes`.)
    """
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
    without_label = sorted(set(per_patient["patientId"]) - set(boxes["patientId"]))
    if without_label:
        raise LayoutError(f"{len(without_label)} patient(s) of {layout.class_csv.name} have no "
                          f"row in {layout.labels_csv.name} (e.g. {_examples(without_label)}): "
                          "their Target is unknown", layout.class_csv)
    repeated = boxes[boxes.duplicated(keep="first")]
    if len(repeated):
        raise LayoutError(f"{len(repeated)} row(s) repeat an earlier row exactly (a box counted "
                          f"twice; e.g. patient {_examples(repeated['patientId'])})",
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
    outside = labels["patientId"][has_box & ((labels["x"] < 0) | (labels["y"] < 0))]
    if len(outside):
        raise LayoutError(f"{outside.nunique()} box(es) start outside the image (negative x or "
                          f"y; e.g. {_examples(outside)})", layout.labels_csv)

    labels["class"] = pd.Categorical(labels["class"], categories=list(CLASSES))
    labels = labels[["patientId", "class", "Target", *coords]].reset_index(drop=True)
    labels.attrs["layout"] = layout
    return labels


def check_boxes(labels: Any, metadata: Any) -> None:
    """Refuse boxes that reach past the edge of their image.

    Parameters
    ----------
    labels : pandas.DataFrame
        From :func:`load_labels` (one row per box).
    metadata : pandas.DataFrame
        From :func:`medimg.io.dicom_metadata` on the patients' files, with ``path``,
        ``rows`` and ``columns``; joined on ``patientId`` through the file names
        (``<patientId>.dcm``).

    Raises
    ------
    LayoutError
        Some box ends past its image's columns or rows (the patients are named).
    """
    import pandas as pd

    if not {"path", "rows", "columns"} <= set(metadata.columns):
        raise LayoutError("check_boxes: metadata needs path, rows and columns "
                          "(medimg.io.dicom_metadata)")
    size = metadata.assign(patientId=metadata["path"].map(lambda p: Path(str(p)).stem))
    merged = labels.merge(size[["patientId", "rows", "columns"]], on="patientId", how="inner")
    columns = pd.to_numeric(merged["columns"], errors="coerce")
    rows = pd.to_numeric(merged["rows"], errors="coerce")
    past = merged["patientId"][(merged["x"] + merged["width"] > columns + 0.5)
                               | (merged["y"] + merged["height"] > rows + 0.5)]
    if len(past):
        layout = labels.attrs.get("layout")
        raise LayoutError(f"{past.nunique()} box(es) end past the edge of their image (x + "
                          f"width > Columns or y + height > Rows; e.g. {_examples(past)})",
                          getattr(layout, "labels_csv", None))


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


# --------------------------------------------------------------------------- cache
#: Version of the cached pixels' recipe (part of the cache key); bump it when
#: :func:`preprocess_image` changes what it makes of a file.
CACHE_VERSION = 2


@dataclass
class RsnaCache:
    """Preprocessed images on disk: one ``<patientId>.npy`` (rows, cols) uint8 each.

    Attributes
    ----------
    directory : pathlib.Path
        The cache folder: ``<cache_dir>/rsna-<hash of the settings>``, with
        ``settings.json`` and ``manifest.csv`` (:mod:`medimg.datasets.cache`).
    index : pandas.DataFrame
        One row per patient asked for: ``patientId``, ``row`` (into :attr:`images`;
        -1 for failures), ``flags`` (the documented defaults applied,
        ``;``-separated), ``error``, ``source`` (the stamp of the DICOM file it was
        made from: a changed file is rebuilt) and ``path`` (the cached image).
    settings : dict
        The preprocessing settings (image shape, spacing, CLAHE, version).
    counts : dict
        ``images``, ``built`` (this call), ``reused``, ``failed`` and one count per flag.
    """

    directory: Path
    index: Any
    settings: dict
    counts: dict

    @property
    def failed(self) -> Any:
        """Index rows whose file could not be turned into an image (with the error)."""
        return self.index[self.index["error"].notna()]

    @cached_property
    def images(self) -> np.ndarray:
        """Every cached image, ``(n, rows, cols)`` uint8, row ``i`` for index row ``i``
        (read once, on first use)."""
        ok = self.index[self.index["row"] >= 0].sort_values("row")
        return self._read(ok["path"])

    def _read(self, paths: Any) -> np.ndarray:
        out = np.empty((len(paths), *self.settings["image_shape"]), dtype=np.uint8)
        for i, path in enumerate(paths):
            out[i] = np.load(path)
        return out

    def rows(self, patient_ids: Any) -> Any:
        """Rows into :attr:`images` for ``patient_ids`` (-1 where absent or failed)."""
        lookup = pd.Series(self.index["row"].to_numpy(), index=self.index["patientId"])
        return lookup.reindex(pd.Index(patient_ids, dtype="string")).fillna(-1).astype(
            "int64").to_numpy()

    def images_for(self, patient_ids: Any) -> np.ndarray:
        """The cached images of ``patient_ids``, in that order, read into memory.

        Parameters
        ----------
        patient_ids : sequence of str
            Patients with a cached image (leave out :attr:`failed` ones first).

        Returns
        -------
        numpy.ndarray
            ``(len(patient_ids), rows, cols)`` uint8.

        Raises
        ------
        LayoutError
            A patient has no cached image (never built, or its file failed to decode);
            the message names the cache folder and the count.
        """
        rows = self.rows(patient_ids)
        missing = rows < 0
        if missing.any():
            ids = pd.Index(patient_ids, dtype="string")[missing]
            raise LayoutError(f"{int(missing.sum())} patient(s) have no cached image (e.g. "
                              f"{_examples(ids)}): not built, or their file failed to decode "
                              "(see RsnaCache.failed)", self.directory)
        if "images" in self.__dict__:  # already read
            return self.images[rows]
        paths = self.index.set_index("row").loc[rows, "path"]
        return self._read(paths)


def _to_uint8(pixels: Any, flags: list[str]) -> Any:
    """8-bit grey levels: as they are when they already fit, else a robust rescale."""
    finite = np.isfinite(pixels)
    if not finite.all():
        pixels = np.where(finite, pixels, 0)
        flags.append("non_finite_pixels")
    low, high = float(pixels.min()), float(pixels.max())
    if low >= 0 and high <= 255 and np.all(pixels == np.round(pixels)):
        return pixels.astype(np.uint8)
    # 16-bit (or rescaled) images: the 0.5-99.5 percentile range becomes 0-255, so a few
    # extreme pixels (markers, collimator edges) do not squash the lungs' contrast.
    flags.append("rescaled_to_8bit")
    lo, hi = np.percentile(pixels, (0.5, 99.5))
    if hi <= lo:
        hi = lo + 1.0
    scaled = (pixels.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def preprocess_image(pixels: Any, spacing: Any, *, image_shape: tuple[int, int] = (128, 128),
                     spacing_mm: float = 0.0, clip_limit: float | None = 4.0,
                     tile_grid: tuple[int, int] = (8, 8),
                     flags: list[str] | None = None) -> Any:
    """One chest X-ray to the model's pixels: 8-bit, one resize, letterbox, CLAHE.

    Resampling to an isotropic spacing and resizing to a fixed shape compose into
    one scaling, so it is done as one interpolation (area averaging when
    shrinking) from the native pixels: with ``spacing_mm=0`` the spacing is chosen
    so the whole field of view fits ``image_shape`` (a square 1024x1024 image
    becomes exactly ``image_shape``; a non-square one is centred with black bars,
    keeping its aspect in millimetres); with ``spacing_mm > 0`` the image is
    resampled to that spacing and centre-cropped or padded to ``image_shape``.
    CLAHE runs on the pixels the model sees: after the crop, before the black
    padding (which would otherwise skew the tile histograms and turn grey).

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(rows, cols)`` from :func:`medimg.io.dicom_pixels` (float32).
    spacing : (float, float) or None
        Pixel spacing ``(row_mm, col_mm)``; None: square pixels assumed (flagged
        ``spacing_missing``; the cache flags an unreadable or non-positive header
        value ``spacing_invalid`` and does the same).
    image_shape : (int, int)
        Output ``(rows, cols)``.
    spacing_mm : float
        Target isotropic spacing in mm, or 0 to fit the field of view.
    clip_limit, tile_grid :
        CLAHE settings (:func:`medimg.intensity.clahe`); ``clip_limit=None`` skips
        CLAHE (for pipelines that apply it on the device, see
        :func:`medimg.tasks.classification.make_dataset`).
    flags : list of str, optional
        Receives the documented defaults applied (``rescaled_to_8bit``,
        ``letterboxed``, ``cropped``, ``spacing_missing``, ...).

    Returns
    -------
    numpy.ndarray
        ``image_shape`` uint8.
    """
    flags = [] if flags is None else flags
    image = np.asarray(pixels)
    if image.ndim == 3 and image.shape[-1] == 3:
        image = image.mean(axis=-1)
        flags.append("colour_to_grey")
    elif image.ndim == 3:
        image = image[0]
        flags.append("first_frame_only")
    if image.ndim != 2 or min(image.shape) < 2:
        raise InvalidImageError(f"expected a 2-D image, got shape {image.shape}")
    if spacing is None:
        spacing = (1.0, 1.0)
        if "spacing_invalid" not in flags:
            flags.append("spacing_missing")
    row_mm, col_mm = (float(s) for s in spacing)
    if not (np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise InvalidImageError(f"invalid pixel spacing {spacing!r} (expected positive mm)")
    rows, cols = (int(s) for s in image_shape)
    height_mm, width_mm = image.shape[0] * row_mm, image.shape[1] * col_mm
    step = float(spacing_mm) if spacing_mm and spacing_mm > 0 else max(height_mm / rows,
                                                                       width_mm / cols)
    size = (max(1, round(height_mm / step)), max(1, round(width_mm / step)))
    image8 = _to_uint8(image, flags)
    scaled = resize(image8, size)
    if size[0] > rows or size[1] > cols:
        flags.append("cropped")
        scaled = crop_or_pad(scaled, (min(size[0], rows), min(size[1], cols)))
    if clip_limit is None:
        if scaled.shape != (rows, cols):
            flags.append("letterboxed")
            scaled = crop_or_pad(scaled, (rows, cols), value=0)
        return scaled
    if scaled.shape[0] >= tile_grid[0] and scaled.shape[1] >= tile_grid[1]:
        # CLAHE sees the pixels the model gets, not the black bars added below.
        scaled = clahe(scaled, clip_limit, tile_grid)
        if scaled.shape != (rows, cols):
            flags.append("letterboxed")
            scaled = crop_or_pad(scaled, (rows, cols), value=0)
        return scaled
    flags.append("letterboxed")
    return clahe(crop_or_pad(scaled, (rows, cols), value=0), clip_limit, tile_grid)


def _cache_item(item: dict[str, Any]) -> dict[str, str]:
    """Worker: one DICOM to one cached ``.npy`` image; returns its flags for the manifest."""
    path, settings = item["dicom"], item["settings"]
    ds = read_dicom(path)
    flags: list[str] = []
    raw = ds.get("PixelSpacing")
    spacing = None
    if raw is not None:
        # An unreadable, zero or negative Pixel Spacing is treated like a missing one
        # (square pixels: only the aspect ratio depends on it here), and flagged.
        try:
            values = [float(v) for v in raw]
            if len(values) == 2 and all(np.isfinite(v) and v > 0 for v in values):
                spacing = (values[0], values[1])
        except (TypeError, ValueError):
            pass
        if spacing is None:
            flags.append("spacing_invalid")
    try:
        image = preprocess_image(dicom_pixels(ds), spacing,
                                 image_shape=tuple(settings["image_shape"]),
                                 spacing_mm=settings["spacing_mm"],
                                 clip_limit=settings["clip_limit"],
                                 tile_grid=tuple(settings["tile_grid"]), flags=flags)
    except InvalidImageError as exc:
        raise InvalidImageError(exc.detail, path) from None
    with atomic_path(item["target"]) as tmp, open(tmp, "wb") as handle:
        np.save(handle, image)
    return {"flags": ";".join(flags)}


def build_cache(
    table: Any,
    cache_dir: str | os.PathLike,
    *,
    image_shape: tuple[int, int] = (128, 128),
    spacing_mm: float = 0.0,
    clip_limit: float | None = 4.0,
    tile_grid: tuple[int, int] = (8, 8),
    n_jobs: int | None = -1,
    progress: bool = True,
    force: bool = False,
) -> RsnaCache:
    """Decode, resample and CLAHE every patient's image once, one small file each.

    The cache follows the one cache rule (:mod:`medimg.datasets.cache`): it is keyed on
    its settings (a folder named after a hash of every preprocessing setting and
    :data:`CACHE_VERSION`, so a change of any setting builds a new cache) and on its
    sources (each image records the stamp of its DICOM file, so a replaced or
    regenerated file is built again while unchanged ones are reused); images are
    written atomically, the manifest is rewritten as each one ends (an interrupted
    build resumes where it stopped), and a lock keeps two builds apart. A file that no
    longer decodes becomes an index row with its error (counted; the batch goes on;
    see :attr:`RsnaCache.failed`).

    Parameters
    ----------
    table : pandas.DataFrame
        ``patientId`` and ``path`` (e.g. :func:`patients`).
    cache_dir : path
        Parent folder; the cache goes to ``<cache_dir>/rsna-<hash of the settings>``.
    image_shape, spacing_mm, clip_limit, tile_grid :
        Preprocessing (:func:`preprocess_image`).
    n_jobs : int
        Worker processes (-1: every core).
    progress : bool
        Progress bar.
    force : bool
        Rebuild everything.

    Returns
    -------
    RsnaCache
        Its index lists the patients of ``table``, in that order.
    """
    for column in ("patientId", "path"):
        if column not in table.columns:
            raise LayoutError(f"build_cache: missing column {column!r}")
    settings = {"image_shape": [int(s) for s in image_shape], "spacing_mm": float(spacing_mm),
                "clip_limit": None if clip_limit is None else float(clip_limit),
                "tile_grid": [int(t) for t in tile_grid], "version": CACHE_VERSION}
    directory = cache_folder(cache_dir, "rsna", settings)
    wanted = table[["patientId", "path"]].drop_duplicates("patientId")
    items = [{"item": str(pid), "target": str(directory / f"{pid}.npy"),
              "sources": [str(path)], "dicom": str(path), "settings": settings}
             for pid, path in wanted.itertuples(index=False)]
    manifest = build_items(items, _cache_item, directory, n_jobs=n_jobs, progress=progress,
                           desc="RSNA cache", unit="image", overwrite=force,
                           extra_columns=("flags",))
    usable = manifest["status"].isin(["ok", "cached"]).to_numpy()
    index = pd.DataFrame({
        "patientId": pd.array(manifest["item"].astype(str), dtype="string"),
        "row": np.where(usable, np.cumsum(usable) - 1, -1).astype("int64"),
        "flags": pd.array([f if ok and isinstance(f, str) and f else None
                           for f, ok in zip(manifest["flags"], usable, strict=True)],
                          dtype="string"),
        "error": pd.array(manifest["error"].where(~usable).astype(object), dtype="string"),
        "source": pd.array(manifest["source"].astype(object), dtype="string"),
        "path": pd.array(manifest["path"].astype(object), dtype="string"),
    })
    flag_counts: dict[str, int] = {}
    for flags in index["flags"].dropna():
        for flag in str(flags).split(";"):
            if flag:
                flag_counts[flag] = flag_counts.get(flag, 0) + 1
    status = manifest["status"]
    counts = {"images": int(usable.sum()), "built": int((status == "ok").sum()),
              "reused": int((status == "cached").sum()), "failed": int((status == "error").sum()),
              **flag_counts}
    return RsnaCache(directory=directory, index=index, settings=settings, counts=counts)
