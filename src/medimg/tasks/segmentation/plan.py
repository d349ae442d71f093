"""The plan: everything derived from a data set's fingerprint that preprocessing, the
network and prediction must agree on, saved as ``plan.json`` beside the model.

As nnU-Net does (Isensee et al., 2021), the plan is worked out from the data rather than
hand-set: the target spacing is the median spacing of the training cases (for
anisotropic data, the coarse axis takes the 10th percentile so that thin-slice cases
are not thrown away); the patch starts at the median shape after resampling and is
shrunk, largest physical extent first, until one training batch fits the memory
budget; the number of U-Net levels follows from the patch; every CT channel is clipped
to the 0.5-99.5 percentiles of the foreground intensities of the whole data set and
z-scored with their mean and standard deviation, every other channel is z-scored per
case (over the non-zero region when cropping to it removes a quarter of the volume or
more, as on skull-stripped MRI).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..._fsutil import atomic_write_text
from ..._parallel import map_items
from ...datasets.msd import DatasetDescription, load_case
from ...errors import ConfigError, InvalidImageError, LayoutError, MedimgError

__all__ = [
    "PLANES",
    "PLAN_VERSION",
    "Plan",
    "estimate_memory_mb",
    "fingerprint",
    "make_plan",
]

#: Version of the plan and of the cache layout it keys (bump when either changes).
PLAN_VERSION = 1
#: Slice planes of canonical RAS+ volumes and the axis each one cuts across.
PLANES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
#: Foreground intensities kept per case and CT channel for the data-set statistics.
_SAMPLES_PER_CASE = 10_000


@dataclass
class Plan:
    """What preprocessing, training and prediction share for one data set.

    Attributes
    ----------
    dataset : dict
        The :class:`medimg.datasets.msd.DatasetDescription` (``to_dict`` form).
    dimensionality : {"3d", "2d"}
        3-D patches, or 2-D slices across ``slice_axis``.
    slice_axis : int or None
        2-D only: the array axis the slices cut across (0 sagittal, 1 coronal, 2 axial
        in canonical RAS+ order).
    target_spacing : tuple of 3 float
        Voxel size in mm of the preprocessed volumes (2-D: the slice axis keeps each
        case's own spacing, ``target_spacing[slice_axis]`` is then informative only).
    crop_to_nonzero : bool
        Cases are cropped to the box where any channel is non-zero.
    use_nonzero_mask : bool
        Z-scored channels use the statistics of the non-zero region only and keep 0
        outside it.
    normalization : list of dict
        Per channel: ``channel`` (name), ``scheme`` (``ct``, ``zscore`` or ``none``)
        and for ``ct`` the data-set ``low``/``high`` clip and ``mean``/``std``.
    bias_correction : bool
        N4 on every non-CT channel before normalisation; ``n4_shrink`` and
        ``n4_iterations`` its settings.
    class_values : list of int
        Label value of each stored class code (code ``k`` is ``class_values[k]``).
    outputs : list of str
        Names of the network's output channels.
    target_table : list of list of float
        ``(n_codes, n_outputs)``: the training target of a voxel of each code.
    activation : {"softmax", "sigmoid"}
        Output activation (classes or nnU-Net regions).
    regions_class_order : list of int or None
        Regions only: label value painted where each output is predicted, in order.
    patch_shape : tuple of int
        Training patch (and prediction window) in voxels, spatial axes only.
    depth : int
        U-Net levels (``depth - 1`` poolings); ``patch_shape`` is divisible by
        ``2 ** (depth - 1)``.
    base_filters : int
        Filters of the first level.
    batch_size : int
        Global training batch.
    median_shape : tuple of int
        Median shape of a preprocessed case (voxels).
    n_cases : int
        Cases the fingerprint was computed on.
    """
    dataset: dict[str, Any]
    dimensionality: str
    slice_axis: int | None
    target_spacing: tuple[float, float, float]
    crop_to_nonzero: bool
    use_nonzero_mask: bool
    normalization: list[dict[str, Any]]
    bias_correction: bool
    n4_shrink: int
    n4_iterations: list[int]
    class_values: list[int]
    outputs: list[str]
    target_table: list[list[float]]
    activation: str
    regions_class_order: list[int] | None
    patch_shape: tuple[int, ...]
    depth: int
    base_filters: int
    batch_size: int
    median_shape: tuple[int, ...] = ()
    n_cases: int = 0
    version: int = PLAN_VERSION
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ derived
    @property
    def n_channels(self) -> int:
        """Input channels."""
        return len(self.normalization)

    @property
    def n_outputs(self) -> int:
        """Output channels."""
        return len(self.outputs)

    @property
    def foreground_outputs(self) -> list[int]:
        """Output channels that are foreground (all of them for regions; classes
        without the background)."""
        if self.activation == "sigmoid":
            return list(range(self.n_outputs))
        return [k for k, v in enumerate(self.class_values) if v != 0]

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return 2 if self.dimensionality == "2d" else 3

    def preprocessing_settings(self) -> dict[str, Any]:
        """What the cached cases depend on (the cache key): change any and the cache is
        rebuilt."""
        return {
            "version": self.version,
            "dataset": {k: self.dataset.get(k) for k in ("name", "layout", "channel_names",
                                                         "labels")},
            "dimensionality": self.dimensionality,
            "slice_axis": self.slice_axis,
            "target_spacing": [round(float(s), 6) for s in self.target_spacing],
            "crop_to_nonzero": self.crop_to_nonzero,
            "use_nonzero_mask": self.use_nonzero_mask,
            "normalization": self.normalization,
            "bias_correction": self.bias_correction,
            "n4": [self.n4_shrink, list(self.n4_iterations)] if self.bias_correction else None,
            "class_values": list(self.class_values),
        }

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = asdict(self)
        out["target_spacing"] = [float(s) for s in self.target_spacing]
        out["patch_shape"] = [int(p) for p in self.patch_shape]
        out["median_shape"] = [int(p) for p in self.median_shape]
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: Any = None) -> Plan:
        """The inverse of :meth:`to_dict` (checks the version)."""
        version = int(values.get("version", -1))
        if version != PLAN_VERSION:
            raise ConfigError(f"plan version {version}, this medimg reads version "
                              f"{PLAN_VERSION}; retrain or use the matching medimg", where)
        try:
            kwargs = dict(values)
            kwargs["target_spacing"] = tuple(float(s) for s in values["target_spacing"])
            kwargs["patch_shape"] = tuple(int(p) for p in values["patch_shape"])
            kwargs["median_shape"] = tuple(int(p) for p in values.get("median_shape", ()))
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a valid plan ({exc})", where) from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``plan.json`` atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        """Read a ``plan.json`` (the one beside a model by default).

        Raises
        ------
        ConfigError
            Missing, unreadable or not a plan (the message names the file).
        """
        path = Path(path)
        if path.is_dir():
            path = path / "plan.json"
        if not path.is_file():
            raise ConfigError("no plan.json (train with medimg train segmentation, which "
                              "writes it beside model.keras)", path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the plan ({exc})", path) from None
        return cls.from_dict(values, where=path)

    def description(self) -> Any:
        """The data set's :class:`~medimg.datasets.msd.DatasetDescription`."""
        return DatasetDescription.from_dict(self.dataset)

    def summary(self) -> pd.DataFrame:
        """The plan as a two-column table (what a notebook shows)."""
        rows = [
            ("data set", f"{self.dataset.get('name')} ({self.dataset.get('layout')} layout, "
                         f"{self.n_cases} cases fingerprinted)"),
            ("channels", ", ".join(f"{n['channel']} ({n['scheme']})"
                                   for n in self.normalization)),
            ("outputs", f"{', '.join(self.outputs)} ({self.activation})"),
            ("dimensionality", self.dimensionality + (
                f" (slices across axis {self.slice_axis})" if self.slice_axis is not None
                else "")),
            ("target spacing (mm)", " x ".join(f"{s:.3g}" for s in self.target_spacing)),
            ("median shape (voxels)", " x ".join(map(str, self.median_shape))),
            ("patch (voxels)", " x ".join(map(str, self.patch_shape))),
            ("U-Net", f"{self.depth} levels, {self.base_filters} base filters"),
            ("batch", str(self.batch_size)),
            ("crop to non-zero", str(self.crop_to_nonzero)),
            ("N4 bias correction", str(self.bias_correction)),
        ]
        rows += [("note", note) for note in self.notes]
        return pd.DataFrame(rows, columns=["setting", "value"]).set_index("setting")


# --------------------------------------------------------------------------- fingerprint

def _fingerprint_one(task: Mapping[str, Any]) -> dict[str, Any]:
    """Worker: the facts of one case the plan needs (runs in a subprocess)."""
    import nibabel as nib


    description = DatasetDescription.from_dict(task["dataset"])
    image, label = load_case(task["row"], description)
    array = image.array
    nonzero = (array != 0).any(axis=-1)
    if nonzero.any():
        box = [np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
               for axis in range(3)]
        nonzero_shape = [int(b[-1] - b[0] + 1) for b in box]
    else:
        nonzero_shape = [0, 0, 0]
    rng = np.random.default_rng(zlib.crc32(str(task["row"]["case"]).encode()))
    samples: dict[int, list[float]] = {}
    foreground = label.array > 0 if label is not None else nonzero
    for c in task["ct_channels"]:
        values = array[..., c][foreground]
        if values.size > _SAMPLES_PER_CASE:
            values = rng.choice(values, _SAMPLES_PER_CASE, replace=False)
        samples[c] = values.astype(np.float32).tolist()
    present = [int(v) for v in np.unique(label.array)] if label is not None else []
    return {"case": task["row"]["case"], "shape": list(array.shape[:3]),
            "spacing": list(image.spacing), "nonzero_shape": nonzero_shape,
            "axcodes": "".join(nib.aff2axcodes(image.meta["source_affine"])),
            "labels_present": present, "samples": samples}


def fingerprint(cases: pd.DataFrame, *, n_jobs: int | None = -1,
                progress: bool = True) -> pd.DataFrame:
    """Read every case once and record what the plan needs.

    Only the cases given are read: pass the training and validation cases, never the
    test cases (the test set chooses nothing, not even a normalisation statistic).

    Parameters
    ----------
    cases : pandas.DataFrame
        Rows of :func:`medimg.datasets.msd.find_cases` (or an adapter's equivalent)
        with ``attrs["dataset"]``.
    n_jobs : int, optional
        Worker processes (-1: every core).
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per case: ``case``, ``shape`` and ``spacing`` (canonical RAS+ axes),
        ``nonzero_shape`` (box of the non-zero region), ``labels_present``; the
        foreground intensity samples of CT channels are in ``attrs["samples"]``
        (channel index -> 1-D float32 array). A case that fails to read raises: a plan
        must not be made from a data set with broken cases (the message names it).

    Raises
    ------
    MedimgError
        The first case that failed (all failures are listed in the message).
    """
    description = cases.attrs.get("dataset")
    if description is None:
        raise LayoutError("fingerprint: the case table has no attrs['dataset'] (use "
                          "medimg.datasets.msd.find_cases or an adapter's find_cases)")
    ct = [i for i, name in enumerate(description.channel_names) if _scheme(name) == "ct"]
    labelled = cases[cases["label"].notna()]
    if labelled.empty:
        raise LayoutError("fingerprint: no labelled case to plan from")
    tasks = [{"row": {k: row[k] for k in ("case", "images", "label")},
              "dataset": description.to_dict(), "ct_channels": ct}
             for row in labelled.to_dict("records")]
    results = map_items(_fingerprint_one, tasks, n_jobs=n_jobs, progress=progress,
                        desc="fingerprint", unit="case")
    failed = [r for r in results if not r.ok]
    if failed:
        listing = "; ".join(f"{r.item['row']['case']}: {r.error}" for r in failed[:5])
        raise MedimgError(f"{len(failed)} of {len(results)} case(s) cannot be read: {listing}"
                          + (" ..." if len(failed) > 5 else ""), description.path)
    rows = [r.value for r in results]
    samples = {c: np.concatenate([np.asarray(r["samples"][c], np.float32) for r in rows])
               for c in ct}
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "samples"} for r in rows])
    frame.attrs["samples"] = samples
    frame.attrs["dataset"] = description
    return frame


# --------------------------------------------------------------------------- planning

def _scheme(channel_name: str) -> str:
    name = str(channel_name).strip().lower()
    if name == "ct":
        return "ct"
    if name in ("nonorm", "none", "no_norm"):
        return "none"
    return "zscore"


def estimate_memory_mb(patch_shape: Sequence[int], *, depth: int, base_filters: int,
                       batch_size: int, n_channels: int = 1) -> float:
    """Rough activation memory of one training step of :func:`medimg.models.unet`, in MB.

    Counts the feature maps of every level (filters double, voxels shrink by
    ``2**ndim`` per pooling) in float32, times about 12 tensors kept per map (two
    convolutions with batch normalisation and ReLU on the way down, their twins and the
    concatenation on the way up, and their gradients). It is an estimate for choosing a
    patch, not a measurement.
    """
    ndim = len(patch_shape)
    voxels = float(np.prod(patch_shape))
    total = sum(voxels / (2 ** ndim) ** level * base_filters * 2 ** level
                for level in range(int(depth)))
    total += voxels * n_channels
    return batch_size * total * 4 * 12 / 1e6


def _depth_for(patch: Sequence[int], max_depth: int) -> int:
    """Most levels (up to ``max_depth``) keeping at least 4 voxels per axis at the bottom."""
    depth = 1
    while depth < max_depth and min(patch) / 2 ** depth >= 4:
        depth += 1
    return depth


def _round_patch(patch: Sequence[float], factor: int) -> tuple[int, ...]:
    return tuple(int(max(factor, factor * round(float(p) / factor))) for p in patch)


def make_plan(
    prints: pd.DataFrame,
    *,
    dimensionality: str = "3d",
    slice_axis: str | int = "auto",
    target_spacing: Sequence[float] = (),
    spacing_scale: float = 1.0,
    crop_to_nonzero: bool = True,
    bias_correction: bool = False,
    n4_shrink: int = 4,
    n4_iterations: Sequence[int] = (50, 50, 30, 20),
    patch_shape: Sequence[int] = (),
    memory_budget_mb: float = 1500.0,
    max_patch_voxels: int = 0,
    max_depth: int = 5,
    base_filters: int = 16,
    batch_size: int = 2,
) -> Plan:
    """Work out the plan from a fingerprint (:func:`fingerprint`) and the settings.

    Parameters
    ----------
    prints : pandas.DataFrame
        From :func:`fingerprint` (``attrs["dataset"]`` and ``attrs["samples"]``).
    dimensionality : {"3d", "2d"}
        3-D patches or 2-D slices.
    slice_axis : {"auto", "sagittal", "coronal", "axial"} or int
        2-D only: the plane; ``auto`` cuts across the coarsest axis (the acquisition
        plane of thick-slice data).
    target_spacing : sequence of 3 float
        Voxel size in mm; empty: the median of the cases (the coarse axis of anisotropic
        data takes the 10th percentile, not below the other axes' spacing).
    spacing_scale : float
        Multiplies the planned spacing (> 1 for a faster, coarser demo).
    crop_to_nonzero : bool
        Crop cases to their non-zero box.
    bias_correction, n4_shrink, n4_iterations :
        N4 on non-CT channels (:func:`medimg.bias.n4_correct`).
    patch_shape : sequence of int
        Training patch (2 or 3 sizes); empty: planned.
    memory_budget_mb : float
        Largest :func:`estimate_memory_mb` of one training batch.
    max_patch_voxels : int
        If positive, a cap on the patch's voxels (CPU demos).
    max_depth : int
        Most U-Net levels.
    base_filters : int
        Filters of the first level.
    batch_size : int
        Global training batch.

    Returns
    -------
    Plan

    Raises
    ------
    ConfigError
        Bad settings (unknown dimensionality or plane, a patch of the wrong length or
        not divisible by ``2 ** (depth - 1)``, non-positive spacing).
    InvalidImageError
        A 2-D data set (one voxel thick) given to a 3-D plan.
    """
    description = prints.attrs.get("dataset")
    if description is None:
        raise LayoutError("make_plan: the fingerprint has no attrs['dataset']")
    if dimensionality not in ("3d", "2d"):
        raise ConfigError(f"plan.dimensionality must be '3d' or '2d', got {dimensionality!r}")
    notes: list[str] = []
    spacings = np.asarray(prints["spacing"].tolist(), dtype=np.float64)
    shapes = np.asarray(prints["shape"].tolist(), dtype=np.float64)
    flat_axes = [a for a in range(3) if np.median(shapes[:, a]) <= 1]
    if flat_axes and dimensionality == "3d":
        raise InvalidImageError(
            f"the cases are 2-D (axis {flat_axes[0]} is one voxel thick, median shape "
            f"{np.median(shapes, axis=0).astype(int).tolist()}); set plan.dimensionality "
            "to 2d", description.path)
    # ---- target spacing
    if len(target_spacing):
        target = np.broadcast_to(np.asarray(target_spacing, dtype=np.float64), (3,)).copy()
        if not np.all(np.isfinite(target)) or np.any(target <= 0):
            raise ConfigError(f"preprocess.target_spacing_mm must be positive mm, got "
                              f"{list(target_spacing)}")
    else:
        target = np.median(spacings, axis=0)
        worst = int(np.argmax(target))
        others = [a for a in range(3) if a != worst]
        if target[worst] > 3 * target[others].min():
            tenth = float(np.percentile(spacings[:, worst], 10))
            target[worst] = max(tenth, float(target[others].max()))
            notes.append(f"anisotropic data: axis {worst} spacing set to the 10th "
                         f"percentile ({target[worst]:.3g} mm)")
    if float(spacing_scale) <= 0:
        raise ConfigError(f"preprocess.spacing_scale must be positive, got {spacing_scale}")
    target = target * float(spacing_scale)
    # ---- slices
    axis: int | None = None
    if dimensionality == "2d":
        if slice_axis == "auto":
            axis = int(np.argmax(np.median(spacings, axis=0)))
        elif isinstance(slice_axis, int | np.integer) and 0 <= int(slice_axis) < 3:
            axis = int(slice_axis)
        elif slice_axis in PLANES:
            axis = PLANES[str(slice_axis)]
        else:
            raise ConfigError(f"plan.slice_axis must be auto, {', '.join(PLANES)} or 0-2, got "
                              f"{slice_axis!r}")
    # ---- shapes after cropping and resampling
    base_shapes = (np.asarray(prints["nonzero_shape"].tolist(), dtype=np.float64)
                   if crop_to_nonzero else shapes)
    base_shapes = np.where(base_shapes > 0, base_shapes, shapes)
    scale = spacings / target
    if axis is not None:
        scale[:, axis] = 1.0  # 2-D: the slice axis is not resampled
    resampled = np.maximum(1, np.round(base_shapes * scale))
    median_shape = tuple(int(s) for s in np.median(resampled, axis=0))
    shrink = np.prod(np.asarray(prints["nonzero_shape"].tolist(), np.float64), axis=1) / \
        np.maximum(1, np.prod(shapes, axis=1))
    use_mask = bool(crop_to_nonzero and np.median(shrink) < 0.75)
    # ---- normalisation
    normalization = []
    samples = prints.attrs.get("samples", {})
    for c, name in enumerate(description.channel_names):
        scheme = _scheme(name)
        entry: dict[str, Any] = {"channel": name, "scheme": scheme}
        if scheme == "ct":
            values = np.asarray(samples.get(c, []), dtype=np.float64)
            if values.size == 0:
                raise InvalidImageError(f"channel {name!r} (CT): no foreground voxel in any "
                                        "case to take intensity statistics from",
                                        description.path)
            low, high = np.percentile(values, [0.5, 99.5])
            clipped = np.clip(values, low, high)
            entry.update(low=float(low), high=float(high), mean=float(clipped.mean()),
                         std=float(max(clipped.std(), 1e-8)))
        normalization.append(entry)
    # ---- outputs
    values = list(description.label_values)
    if description.regions:
        outputs = list(description.foreground)
        table = [[1.0 if v in description.labels[name] else 0.0 for name in outputs]
                 for v in values]
        activation, order = "sigmoid", list(description.regions_class_order or [])
    else:
        by_value = {v[0]: name for name, v in description.labels.items()}
        outputs = [by_value.get(v, str(v)) for v in values]
        table = np.eye(len(values)).tolist()
        activation, order = "softmax", None
    # ---- patch and depth
    spatial = [a for a in range(3) if a != axis]
    if len(patch_shape):
        patch = tuple(int(p) for p in patch_shape)
        if len(patch) != len(spatial):
            raise ConfigError(f"plan.patch_shape {list(patch)} must have {len(spatial)} sizes "
                              f"for a {dimensionality} plan")
        depth = int(max_depth)
        while depth > 1 and any(p % 2 ** (depth - 1) for p in patch):
            depth -= 1
        depth = min(depth, _depth_for(patch, int(max_depth)))
    else:
        patch_f = np.array([median_shape[a] for a in spatial], dtype=np.float64)
        extent = np.array([target[a] for a in spatial])
        while True:
            rounded = _round_patch(patch_f, 2 ** (_depth_for(patch_f, max_depth) - 1))
            depth = _depth_for(rounded, int(max_depth))
            memory = estimate_memory_mb(rounded, depth=depth, base_filters=base_filters,
                                        batch_size=batch_size,
                                        n_channels=description.n_channels)
            too_many = int(max_patch_voxels) > 0 and np.prod(rounded) > int(max_patch_voxels)
            shrinkable = patch_f > 8.0
            if (memory <= memory_budget_mb and not too_many) or not shrinkable.any():
                break
            # the largest physical extent among the axes that can still shrink
            biggest = int(np.argmax(np.where(shrinkable, patch_f * extent, -np.inf)))
            patch_f[biggest] = max(8.0, patch_f[biggest] * 0.9)
        patch = rounded
        depth = _depth_for(patch, int(max_depth))
        while depth > 1 and any(p % 2 ** (depth - 1) for p in patch):
            depth -= 1
        notes.append(f"patch {list(patch)} planned for about {memory:.0f} MB per batch")
    return Plan(
        dataset=description.to_dict(), dimensionality=dimensionality, slice_axis=axis,
        target_spacing=tuple(float(s) for s in target), crop_to_nonzero=bool(crop_to_nonzero),
        use_nonzero_mask=use_mask, normalization=normalization,
        bias_correction=bool(bias_correction), n4_shrink=int(n4_shrink),
        n4_iterations=[int(i) for i in n4_iterations], class_values=[int(v) for v in values],
        outputs=outputs, target_table=table, activation=activation,
        regions_class_order=order, patch_shape=tuple(patch), depth=int(depth),
        base_filters=int(base_filters), batch_size=int(batch_size),
        median_shape=median_shape, n_cases=len(prints), notes=notes)
