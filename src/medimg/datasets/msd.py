"""Segmentation data sets in the nnU-Net v2 raw layout or the Medical Segmentation Decathlon
layout: find the cases, read the description, load one case checked against it.

The two layouts people download
-------------------------------
**nnU-Net v2 raw** (``DatasetNNN_Name/``)::

    dataset.json        {"channel_names": {"0": "T2", "1": "ADC"},
                         "labels": {"background": 0, "PZ": 1, "TZ": 2},
                         "numTraining": 32, "file_ending": ".nii.gz"}
    imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz, ...   one file per channel
    labelsTr/<case>.nii.gz                                   integer labels
    imagesTs/<case>_0000.nii.gz ...                          (optional, no labels)

Region-based label definitions (``"whole tumour": [1, 2, 3]`` with
``"regions_class_order"``) are read as regions; an optional ``"dataset"`` key listing
every case's files is honoured.

**Medical Segmentation Decathlon** (``TaskNN_Name/``)::

    dataset.json        {"modality": {"0": "FLAIR", "1": "T1w", ...},
                         "labels": {"0": "background", "1": "edema", ...},
                         "training": [{"image": "./imagesTr/BRATS_001.nii.gz",
                                       "label": "./labelsTr/BRATS_001.nii.gz"}, ...],
                         "test": ["./imagesTs/BRATS_485.nii.gz", ...]}
    imagesTr/<case>.nii.gz        all channels in one file, 4-D (x, y, z, c) when c > 1

nnU-Net v1 tasks use the Decathlon ``dataset.json`` with one file per channel
(``<case>_0000.nii.gz``) while ``training`` names ``<case>.nii.gz``; both are found.
Files whose name starts with a dot (the ``._<name>`` AppleDouble files of archives packed
on macOS, which the Decathlon tarballs contain) are never taken for images.

Images are read into NIfTI voxel order reoriented to closest canonical RAS+
(:func:`medimg.io.read_nifti`; ``.mha``/``.mhd``/``.nrrd`` through SimpleITK and
:func:`medimg.spatial.from_sitk`), channels last; each case keeps what is needed to
write a result back on its own grid (``meta["source_affine"]``, ``"source_shape"``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DecodeError, InvalidImageError, LayoutError

__all__ = [
    "CASE_COLUMNS",
    "DatasetDescription",
    "check_label_values",
    "describe",
    "find_cases",
    "load_case",
    "read_image",
]

#: Columns of :func:`find_cases`.
CASE_COLUMNS = ["case", "images", "label", "split", "packed"]
_SITK_ENDINGS = (".mha", ".mhd", ".nrrd", ".nhdr")
_NIFTI_ENDINGS = (".nii.gz", ".nii")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class DatasetDescription:
    """What a data set's ``dataset.json`` says, in one form for both layouts.

    Attributes
    ----------
    path : str
        The ``dataset.json`` file.
    layout : {"nnunet", "decathlon"}
        Which of the two layouts (nnU-Net v1 tasks read as ``decathlon``).
    name : str
        The data set's name (``name`` key, else the folder name).
    channel_names : tuple of str
        Input channels in file order (``_0000`` first).
    labels : dict of str to tuple of int
        Label (or region) name to the label values it covers; background first, as
        ``(0,)``. For plain labels each tuple holds one value.
    regions : bool
        The labels are nnU-Net regions (overlapping sets of values, sigmoid outputs).
    regions_class_order : tuple of int or None
        For regions: the label value written where each region is predicted, in the
        order they are painted (later regions overwrite earlier ones).
    file_ending : str
        ``.nii.gz`` unless the data set says otherwise.
    """

    path: str
    layout: str
    name: str
    channel_names: tuple[str, ...]
    labels: dict[str, tuple[int, ...]]
    regions: bool = False
    regions_class_order: tuple[int, ...] | None = None
    file_ending: str = ".nii.gz"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def n_channels(self) -> int:
        """Number of input channels."""
        return len(self.channel_names)

    @property
    def label_values(self) -> tuple[int, ...]:
        """Every label value a label file may hold, sorted (0 included)."""
        return tuple(sorted({v for values in self.labels.values() for v in values} | {0}))

    @property
    def foreground(self) -> dict[str, tuple[int, ...]]:
        """The labels (or regions) without the background."""
        return {k: v for k, v in self.labels.items() if v != (0,)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (for a plan file)."""
        out = asdict(self)
        out["labels"] = {k: list(v) for k, v in self.labels.items()}
        out["channel_names"] = list(self.channel_names)
        out["regions_class_order"] = (None if self.regions_class_order is None
                                      else list(self.regions_class_order))
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DatasetDescription:
        """The inverse of :meth:`to_dict`."""
        order = values.get("regions_class_order")
        return cls(path=str(values.get("path", "")), layout=str(values.get("layout", "nnunet")),
                   name=str(values.get("name", "")),
                   channel_names=tuple(values["channel_names"]),
                   labels={str(k): tuple(int(x) for x in v)
                           for k, v in values["labels"].items()},
                   regions=bool(values.get("regions", False)),
                   regions_class_order=None if order is None else tuple(int(x) for x in order),
                   file_ending=str(values.get("file_ending", ".nii.gz")),
                   extra=dict(values.get("extra") or {}))


# --------------------------------------------------------------------------- dataset.json

def _dataset_json(root: Path) -> Path:
    """The ``dataset.json`` of ``root``, or of its only sub-folder that holds one."""
    if not root.is_dir():
        raise LayoutError("data set folder not found", root)
    candidate = root / "dataset.json"
    if candidate.is_file():
        return candidate
    below = sorted(p for p in root.glob("*/dataset.json") if not p.parent.name.startswith("."))
    if len(below) == 1:
        return below[0]
    if below:
        raise LayoutError("several data sets found (" + ", ".join(p.parent.name for p in below)
                          + "); point at one of them", root)
    raise LayoutError("no dataset.json (expected the nnU-Net raw layout DatasetNNN_Name/ or "
                      "the Decathlon layout TaskNN_Name/, each with a dataset.json)", root)


def _int_key(text: Any, path: Path, key: str) -> int:
    try:
        value = int(str(text))
    except ValueError:
        raise LayoutError(f"key {key!r}: {text!r} is not an integer", path) from None
    if value < 0:
        raise LayoutError(f"key {key!r}: {value} is negative", path)
    return value


def _channels(mapping: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(mapping, Mapping) or not mapping:
        raise LayoutError(f"key {key!r} must be a non-empty mapping like "
                          '{"0": "CT"}', path)
    indexed = {_int_key(k, path, key): str(v) for k, v in mapping.items()}
    expected = list(range(len(indexed)))
    if sorted(indexed) != expected:
        raise LayoutError(f"key {key!r}: channel indices {sorted(indexed)} are not "
                          f"0..{len(indexed) - 1}", path)
    return tuple(indexed[i] for i in expected)


def _labels(raw: Any, layout: str, path: Path) -> tuple[dict[str, tuple[int, ...]], bool]:
    if not isinstance(raw, Mapping) or not raw:
        raise LayoutError("key 'labels' must be a non-empty mapping", path)
    labels: dict[str, tuple[int, ...]] = {}
    if layout == "decathlon":  # {"0": "background", "1": "edema"}
        for key, name in raw.items():
            labels[str(name)] = (_int_key(key, path, "labels"),)
    else:  # {"background": 0, "edema": 1} or regions {"whole tumour": [1, 2, 3]}
        for name, value in raw.items():
            values = value if isinstance(value, list | tuple) else [value]
            if not values:
                raise LayoutError(f"key 'labels.{name}' is an empty list", path)
            labels[str(name)] = tuple(_int_key(v, path, f"labels.{name}") for v in values)
    if "ignore" in {name.lower() for name in labels}:
        raise LayoutError("an 'ignore' label (voxels left out of the loss) is not supported "
                          "by medimg; remove it or map it to background", path)
    regions = any(len(v) > 1 for v in labels.values())
    if not regions:
        values = [v[0] for v in labels.values()]
        if len(set(values)) != len(values):
            raise LayoutError(f"key 'labels': two names share one value ({values})", path)
    if (0,) not in labels.values():
        raise LayoutError("key 'labels' has no background (value 0)", path)
    background = next(k for k, v in labels.items() if v == (0,))
    ordered = {background: (0,), **{k: v for k, v in labels.items() if k != background}}
    return ordered, regions


def describe(root: str | os.PathLike) -> DatasetDescription:
    """Read and check a data set's ``dataset.json`` (either layout).

    Parameters
    ----------
    root : path
        The data set folder (holding ``dataset.json``), or a folder whose only
        sub-folder holds one.

    Returns
    -------
    DatasetDescription

    Raises
    ------
    LayoutError
        No or several ``dataset.json``; not JSON; a missing key (``channel_names`` or
        ``modality``, ``labels``); channel indices that are not 0..n-1; labels without
        background or with a shared value; regions without ``regions_class_order``.
        The message names the file and the key.
    """
    path = _dataset_json(Path(root))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayoutError(f"cannot read as JSON ({exc})", path) from None
    if not isinstance(raw, dict):
        raise LayoutError("expected a JSON object at the top level", path)
    if "channel_names" in raw:
        layout, channel_key = "nnunet", "channel_names"
    elif "modality" in raw:
        layout, channel_key = "decathlon", "modality"
    else:
        raise LayoutError("missing key 'channel_names' (nnU-Net v2) or 'modality' "
                          "(Decathlon)", path)
    if "labels" not in raw:
        raise LayoutError("missing key 'labels'", path)
    channel_names = _channels(raw[channel_key], path, channel_key)
    labels, regions = _labels(raw["labels"], layout, path)
    order = raw.get("regions_class_order")
    if regions:
        if not isinstance(order, list) or len(order) != len(labels) - 1:
            raise LayoutError("region-based labels need 'regions_class_order' with one label "
                              f"value per region ({len(labels) - 1} regions)", path)
        order = tuple(_int_key(v, path, "regions_class_order") for v in order)
    else:
        order = None
    ending = str(raw.get("file_ending", ".nii.gz"))
    if not ending.startswith("."):
        ending = "." + ending
    if ending.lower() not in _NIFTI_ENDINGS + _SITK_ENDINGS:
        raise LayoutError(f"key 'file_ending': {ending!r} is not supported (medimg reads "
                          f"{', '.join(_NIFTI_ENDINGS + _SITK_ENDINGS)})", path)
    extra = {k: raw[k] for k in ("training", "test", "dataset", "numTraining", "description",
                                 "tensorImageSize") if k in raw}
    return DatasetDescription(path=str(path), layout=layout,
                              name=str(raw.get("name") or path.parent.name),
                              channel_names=channel_names, labels=labels, regions=regions,
                              regions_class_order=order, file_ending=ending, extra=extra)


# --------------------------------------------------------------------------- cases

def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _stem(name: str, ending: str) -> str | None:
    return name[: -len(ending)] if name.lower().endswith(ending.lower()) else None


def _channel_files(folder: Path, ending: str, n_channels: int, *,
                   dataset_json: Path) -> dict[str, list[str]]:
    """``{case: [path of channel 0, 1, ...]}`` of a nnU-Net images folder."""
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        if not (path.is_file() and _visible(path)):
            continue
        stem = _stem(path.name, ending)
        if stem is None:
            continue  # README, a thumbnail, another format: not an image of this data set
        match = _CHANNEL.match(stem)
        if not match:
            raise LayoutError(f"{path.name} does not end in _XXXX{ending} (the channel number "
                              f"nnU-Net expects, e.g. {stem}_0000{ending})", folder)
        channel = int(match["channel"])
        if channel >= n_channels:
            raise LayoutError(f"{path.name}: channel {channel}, but {dataset_json.name} names "
                              f"{n_channels} channel(s) (channel_names)", folder)
        found.setdefault(match["case"], {})[channel] = path
    cases = {}
    for case, channels in found.items():
        missing = [i for i in range(n_channels) if i not in channels]
        if missing:
            names = ", ".join(f"{case}_{i:04d}{ending}" for i in missing)
            raise LayoutError(f"case {case!r} is missing channel file(s) {names}", folder)
        cases[case] = [str(channels[i]) for i in range(n_channels)]
    return cases


def _nnunet_cases(root: Path, description: DatasetDescription) -> list[dict[str, Any]]:
    ending, n = description.file_ending, description.n_channels
    dataset_json = Path(description.path)
    listing = description.extra.get("dataset")
    rows = []
    if isinstance(listing, Mapping):  # explicit file list per case
        for case, entry in listing.items():
            images = [str((root / p).resolve()) for p in entry.get("images", [])]
            label = entry.get("label")
            if len(images) != n:
                raise LayoutError(f"key 'dataset.{case}.images' lists {len(images)} files, "
                                  f"expected {n} (channel_names)", dataset_json)
            rows.append({"case": str(case), "images": images,
                         "label": str((root / label).resolve()) if label else None,
                         "split": "training" if label else "test", "packed": False})
    else:
        images_tr = root / "imagesTr"
        if not images_tr.is_dir():
            raise LayoutError("no imagesTr/ folder beside dataset.json", root)
        labels_tr = root / "labelsTr"
        for case, images in sorted(_channel_files(images_tr, ending, n,
                                                  dataset_json=dataset_json).items()):
            label = labels_tr / f"{case}{ending}"
            if not label.is_file():
                raise LayoutError(f"case {case!r} has no label file labelsTr/{case}{ending}",
                                  root)
            rows.append({"case": case, "images": images, "label": str(label),
                         "split": "training", "packed": False})
        if labels_tr.is_dir():
            known = {r["case"] for r in rows}
            orphans = sorted(p.name for p in labels_tr.iterdir()
                             if p.is_file() and _visible(p) and _stem(p.name, ending)
                             and _stem(p.name, ending) not in known)
            if orphans:
                raise LayoutError(f"label file(s) without images in imagesTr/: "
                                  f"{', '.join(orphans[:5])}", labels_tr)
        images_ts = root / "imagesTs"
        if images_ts.is_dir():
            for case, images in sorted(_channel_files(images_ts, ending, n,
                                                      dataset_json=dataset_json).items()):
                rows.append({"case": case, "images": images, "label": None, "split": "test",
                             "packed": False})
    return rows


def _decathlon_image(root: Path, entry: str, n: int, dataset_json: Path,
                     key: str) -> tuple[list[str], bool, str]:
    """(image paths, packed, case) of one ``training``/``test`` entry."""
    path = (root / entry).resolve()
    name = path.name
    ending = next((e for e in _NIFTI_ENDINGS + _SITK_ENDINGS if name.lower().endswith(e)), None)
    if ending is None:
        raise LayoutError(f"key {key!r}: {entry!r} is not an image file this reader knows",
                          dataset_json)
    case = name[: -len(ending)]
    if path.is_file():
        return [str(path)], True, case
    # nnU-Net v1: dataset.json names case.nii.gz, the folder holds case_0000.nii.gz ...
    split_files = [path.parent / f"{case}_{i:04d}{ending}" for i in range(n)]
    if split_files[0].is_file():
        missing = [p.name for p in split_files if not p.is_file()]
        if missing:
            raise LayoutError(f"case {case!r} is missing channel file(s) {', '.join(missing)}",
                              path.parent)
        return [str(p) for p in split_files], False, case
    raise LayoutError(f"key {key!r}: file {entry!r} not found", dataset_json)


def _decathlon_cases(root: Path, description: DatasetDescription) -> list[dict[str, Any]]:
    dataset_json = Path(description.path)
    n = description.n_channels
    training = description.extra.get("training")
    if not isinstance(training, list):
        raise LayoutError("missing key 'training' (a list of {\"image\", \"label\"})",
                          dataset_json)
    rows = []
    for i, entry in enumerate(training):
        if not isinstance(entry, Mapping) or "image" not in entry or "label" not in entry:
            raise LayoutError(f"key 'training[{i}]' must hold 'image' and 'label'", dataset_json)
        images, packed, case = _decathlon_image(root, entry["image"], n, dataset_json,
                                                f"training[{i}].image")
        label = (root / entry["label"]).resolve()
        if not label.is_file():
            raise LayoutError(f"key 'training[{i}].label': file {entry['label']!r} not found",
                              dataset_json)
        rows.append({"case": case, "images": images, "label": str(label),
                     "split": "training", "packed": packed})
    for i, entry in enumerate(description.extra.get("test") or []):
        if isinstance(entry, Mapping):
            entry = entry.get("image")
        if not isinstance(entry, str):
            raise LayoutError(f"key 'test[{i}]' must be an image path", dataset_json)
        images, packed, case = _decathlon_image(root, entry, n, dataset_json, f"test[{i}]")
        rows.append({"case": case, "images": images, "label": None, "split": "test",
                     "packed": packed})
    return rows


def find_cases(root: str | os.PathLike) -> pd.DataFrame:
    """One row per case of a data set in the nnU-Net v2 or Decathlon layout.

    Parameters
    ----------
    root : path
        The data set folder (holding ``dataset.json``).

    Returns
    -------
    pandas.DataFrame
        Columns ``case`` (str), ``images`` (list of str: the channel files in
        ``dataset.json`` order, or one 4-D file), ``label`` (str, None for test cases),
        ``split`` (the data set's own: ``training`` for labelled cases, ``test`` for
        the unlabelled ones of ``imagesTs``/``test``) and ``packed`` (True when one
        file holds all channels). Training cases first, each part sorted by case. ``attrs["dataset"]``
        holds the :class:`DatasetDescription` (also :func:`describe`).

    Raises
    ------
    LayoutError
        A bad ``dataset.json`` (see :func:`describe`); a case missing a channel file or
        its label; a label file with no images; an image name without the ``_XXXX``
        channel number; a file ``dataset.json`` lists that does not exist; two cases
        with one name; no training case. Messages name the file or folder.

    Examples
    --------
    >>> cases = find_cases("Dataset004_Hippocampus")                # doctest: +SKIP
    >>> cases.loc[0, ["case", "split"]].tolist()                   # doctest: +SKIP
    ['hippocampus_001', 'training']
    """
    description = describe(root)
    base = Path(description.path).parent
    rows = (_nnunet_cases(base, description) if description.layout == "nnunet"
            else _decathlon_cases(base, description))
    names = [r["case"] for r in rows]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise LayoutError(f"case name(s) used twice: {', '.join(duplicated[:5])}", base)
    if not any(r["split"] == "training" for r in rows):
        raise LayoutError("no labelled training case found", base)
    frame = pd.DataFrame(rows, columns=CASE_COLUMNS)
    frame = frame.sort_values(["split", "case"], key=lambda c: c.map({"training": 0, "test": 1})
                              if c.name == "split" else c, ignore_index=True)
    frame.attrs["dataset"] = description
    return frame


# --------------------------------------------------------------------------- loading

def read_image(path: str | os.PathLike, *, canonical: bool = True) -> Any:
    """Read one image file of a data set as a :class:`medimg.io.Volume`.

    NIfTI through :func:`medimg.io.read_nifti`; MetaImage (``.mha``/``.mhd``) and NRRD
    through SimpleITK, converted by :func:`medimg.spatial.from_sitk` (LPS to RAS+,
    ``(z, y, x)`` to ``(x, y, z)``). With ``canonical`` the volume is reoriented to the
    closest canonical RAS+ (flips and permutations only); otherwise it keeps the file's
    own voxel order.

    Raises
    ------
    DecodeError
        Missing, truncated or unreadable file (named).
    """
    from ..io import read_nifti

    path = Path(path)
    name = path.name.lower()
    if name.endswith(_NIFTI_ENDINGS):
        return read_nifti(path, canonical=canonical)
    if name.endswith(_SITK_ENDINGS):
        import SimpleITK as sitk

        from ..spatial import from_sitk

        if not path.is_file():
            raise DecodeError("no such file", path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise DecodeError(f"cannot read ({str(exc).strip().splitlines()[-1]})",
                              path) from None
        volume = from_sitk(image)
        volume.meta["path"] = str(path)
        return volume.to_canonical() if canonical else volume
    raise DecodeError("unsupported image format (NIfTI, MetaImage or NRRD expected)", path)


def _same_grid(reference: Any, volume: Any, path: str, what: str) -> None:
    ref_path = reference.meta.get("path")
    if tuple(volume.shape[:3]) != tuple(reference.shape[:3]):
        raise InvalidImageError(f"{what} has shape {volume.shape[:3]}, but "
                                f"{Path(str(ref_path)).name} has {reference.shape[:3]}: the "
                                "files of one case must share one voxel grid", path)
    spacing = np.asarray(reference.spacing)
    if not (np.allclose(volume.affine[:3, :3], reference.affine[:3, :3],
                        atol=1e-3 * spacing.max())
            and np.allclose(volume.affine[:3, 3], reference.affine[:3, 3],
                            atol=0.05 * spacing.min() + 1e-3)):
        raise InvalidImageError(f"{what}'s affine differs from that of "
                                f"{Path(str(ref_path)).name} (the files of one case are "
                                "not on one voxel grid)", path)


def check_label_values(array: np.ndarray, description: DatasetDescription,
                       path: Any = None) -> np.ndarray:
    """A label array as uint8 after checking it holds only ``dataset.json``'s values.

    Raises
    ------
    InvalidImageError
        Non-integer, NaN or out-of-range values (named with the file).
    """
    array = np.asarray(array)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InvalidImageError("label holds non-integer or NaN values", path)
    if array.dtype.kind not in "iufb":
        raise InvalidImageError(f"label has dtype {array.dtype}, expected integers", path)
    if array.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(array.ravel(), minlength=256))
    else:
        present = np.unique(array)
    allowed = set(description.label_values)
    bad = sorted(int(v) for v in present if int(v) not in allowed)
    if bad:
        raise InvalidImageError(f"label holds value(s) {bad[:10]} that "
                                f"{Path(description.path).name} does not define (labels "
                                f"{sorted(allowed)})", path)
    if max(allowed) > 255:
        raise InvalidImageError("label values above 255 are not supported", path)
    return array.astype(np.uint8, copy=False)


def _row_field(row: Any, key: str) -> Any:
    value = row.get(key) if isinstance(row, Mapping | pd.Series) else getattr(row, key, None)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def load_case(row: Any, description: DatasetDescription, *,
              load_label: bool = True) -> tuple[Any, Any]:
    """Read one case's channels and label, checked against each other and the description.

    Parameters
    ----------
    row : pandas.Series or mapping
        A row of :func:`find_cases` (``case``, ``images``, ``label``).
    description : DatasetDescription
        From :func:`describe` (or ``cases.attrs["dataset"]``).
    load_label : bool
        Read the label too, when the case has one.

    Returns
    -------
    image : medimg.io.Volume
        ``(x, y, z, c)`` float32, channels in ``channel_names`` order, canonical RAS+;
        ``meta`` holds ``case``, ``source_affine`` and ``source_shape`` (the grid of the
        files on disk, to write results back) and ``path`` (the first file).
    label : medimg.io.Volume or None
        ``(x, y, z)`` uint8 with the label values of the file, on the image's grid.

    Raises
    ------
    DecodeError
        A file is missing or unreadable.
    InvalidImageError
        Channel files on different grids, a 4-D file with the wrong number of
        channels, a 2-D or 5-D image, NaN or infinite voxels, label values that
        ``dataset.json`` does not define, or a label on another grid. Every message
        names the file.
    """
    from ..io import Volume

    case = str(_row_field(row, "case") or "?")
    paths = list(_row_field(row, "images") or [])
    if not paths:
        raise LayoutError(f"case {case!r} lists no image file")
    n = description.n_channels
    channels, reference, source = [], None, None
    for path in paths:
        on_disk = read_image(path, canonical=False)
        volume = on_disk.to_canonical()
        array = volume.array
        if array.ndim == 4 and len(paths) == 1:
            if array.shape[3] != n:
                raise InvalidImageError(f"4-D image has {array.shape[3]} channels, "
                                        f"{Path(description.path).name} names {n}", path)
            parts = [array[..., c] for c in range(n)]
        elif array.ndim == 3:
            parts = [array]
        else:
            raise InvalidImageError(f"image has shape {array.shape}, expected 3-D (x, y, z)"
                                    + (" or one 4-D file with every channel" if n > 1 else ""),
                                    path)
        if reference is None:
            reference, source = volume, on_disk
        else:
            _same_grid(reference, volume, path, "this channel")
        for part in parts:
            part = np.asarray(part, dtype=np.float32)
            finite = np.isfinite(part)
            if not finite.all():
                raise InvalidImageError(f"{int(finite.size - finite.sum())} NaN or infinite "
                                        "voxels", path)
            channels.append(part)
    if len(channels) != n:
        raise InvalidImageError(f"case {case!r} has {len(channels)} channels, "
                                f"{Path(description.path).name} names {n}", paths[0])
    meta = {"case": case, "path": paths[0], "source_affine": source.affine.copy(),
            "source_shape": tuple(int(s) for s in source.shape[:3])}
    image = Volume(np.stack(channels, axis=-1), reference.affine, meta)
    label = None
    label_path = _row_field(row, "label")
    if load_label and label_path:
        label_volume = read_image(label_path)
        if label_volume.array.ndim != 3:
            raise InvalidImageError(f"label has shape {label_volume.shape}, expected 3-D",
                                    label_path)
        _same_grid(reference, label_volume, label_path, "the label")
        values = check_label_values(label_volume.array, description, label_path)
        label = Volume(values, reference.affine, {"case": case, "path": str(label_path)})
    return image, label

