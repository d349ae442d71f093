"""`Volume` (an array that keeps its affine) and NIfTI reading and writing."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._fsutil import atomic_path
from ..errors import DecodeError, InvalidImageError

__all__ = ["Volume", "read_nifti", "write_nifti"]


@dataclass
class Volume:
    """A 3-D (or 3-D + channels) image with the affine that places it in space.

    Geometry travels with the voxels: everything that changes the grid (reorienting,
    cropping, resampling) returns a new ``Volume`` with the matching affine, and a
    ``Volume`` written back to NIfTI overlays its source in ITK-SNAP or 3D Slicer.

    Parameters
    ----------
    array : numpy.ndarray
        Voxels in NIfTI order, ``(x, y, z)`` or ``(x, y, z, c)`` (channels last).
    affine : numpy.ndarray, shape (4, 4)
        Voxel index ``(i, j, k, 1)`` to world (scanner RAS+) millimetres.
    meta : dict, optional
        Free-form provenance (source path, modality, ...); never used for geometry.

    Attributes
    ----------
    spacing : tuple of float
        Voxel size along the three array axes, in mm (column norms of the affine).
    axcodes : tuple of str
        Anatomical direction each array axis points to, e.g. ``('R', 'A', 'S')``.

    Examples
    --------
    >>> v = Volume(np.zeros((4, 5, 6), np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
    >>> v.spacing, v.axcodes
    ((2.0, 2.0, 3.0), ('R', 'A', 'S'))
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asanyarray(self.array)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise InvalidImageError(
                f"affine has shape {self.affine.shape}, expected (4, 4)", self.meta.get("path")
            )
        if self.array.ndim not in (3, 4):
            raise InvalidImageError(
                f"array has {self.array.ndim} dimensions, expected 3 (x, y, z) or 4 (x, y, z, c)",
                self.meta.get("path"),
            )
        if not np.all(np.isfinite(self.affine)) or abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise InvalidImageError(
                "affine is singular or not finite", self.meta.get("path")
            )

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape, ``(x, y, z)`` or ``(x, y, z, c)``."""
        return tuple(self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three spatial array axes."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Anatomical orientation codes of the array axes (nibabel convention, RAS+)."""
        import nibabel as nib

        return tuple(nib.aff2axcodes(self.affine))

    def with_array(self, array: np.ndarray, affine: np.ndarray | None = None) -> Volume:
        """A new Volume on the same grid (or on ``affine``) holding ``array``."""
        return Volume(array, self.affine if affine is None else affine, dict(self.meta))

    def to_canonical(self) -> Volume:
        """Reoriented to the closest canonical RAS+ orientation (axis flips and
        permutations only, no interpolation); the affine follows."""
        import nibabel as nib

        ornt = nib.orientations.io_orientation(self.affine)
        if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
            return self
        array = nib.orientations.apply_orientation(self.array, ornt)
        affine = self.affine @ nib.orientations.inv_ornt_aff(ornt, self.array.shape[:3])
        return Volume(np.ascontiguousarray(array), affine, dict(self.meta))

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing=({spacing}) mm, "
            f"axcodes={''.join(self.axcodes)})"
        )


def _nifti_error(path: Path, exc: BaseException) -> DecodeError:
    if isinstance(exc, EOFError | zlib.error) or "compressed file ended" in str(exc).lower():
        return DecodeError("file is truncated or its gzip stream is corrupt", path)
    return DecodeError(f"cannot read as NIfTI ({type(exc).__name__}: {exc})", path)


def read_nifti(
    path: str | os.PathLike, *, canonical: bool = True, dtype: Any | None = None
) -> Volume:
    """Read a NIfTI-1/2 file (``.nii`` or ``.nii.gz``) into a :class:`Volume`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    canonical : bool
        Reorient to the closest canonical RAS+ orientation (DESIGN.md §3), so that
        ``array[x, y, z]`` runs left→right, posterior→anterior, inferior→superior
        whatever the scanner wrote. Flips and permutations only: no interpolation.
    dtype : numpy dtype, optional
        Cast the voxels to this type. By default the on-disk type is kept when the
        file has no scaling (so labels stay integers) and float32 is used when
        ``scl_slope``/``scl_inter`` scale the data.

    Returns
    -------
    Volume
        ``meta`` holds ``path``, ``original_axcodes`` and ``xyzt_units``.

    Raises
    ------
    DecodeError
        The file is missing, truncated, or not NIfTI.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DecodeError("no such file", path)
    try:
        img = nib.load(str(path))
        slope, inter = img.dataobj.slope, img.dataobj.inter
        scaled = not (slope in (None, 1.0) and inter in (None, 0.0)) or (
            slope is not None and not np.isfinite(slope)
        )
        if dtype is None and scaled:
            dtype = np.float32
        array = np.asanyarray(img.dataobj) if dtype is None else img.get_fdata(dtype=np.float32)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
    except DecodeError:
        raise
    except Exception as exc:
        raise _nifti_error(path, exc) from exc
    if array.ndim == 5 and array.shape[3] == 1:  # (x, y, z, t=1, c) vector images
        array = array[:, :, :, 0, :]
    if array.ndim not in (3, 4):
        raise InvalidImageError(f"NIfTI has shape {array.shape}, expected 3-D or 4-D", path)
    meta = {
        "path": str(path),
        "original_axcodes": tuple(nib.aff2axcodes(img.affine)),
        "xyzt_units": tuple(str(u) for u in img.header.get_xyzt_units()),
    }
    volume = Volume(array, img.affine, meta)
    return volume.to_canonical() if canonical else volume


def write_nifti(volume: Volume, path: str | os.PathLike, *, dtype: Any | None = None) -> Path:
    """Write a :class:`Volume` as NIfTI-1 atomically, keeping its affine.

    The file is written to a temporary name in the same directory and renamed, so
    an interrupted write never leaves a truncated ``.nii.gz`` behind. The affine is
    stored as both the sform and the qform (code 1, scanner), and units as mm.

    Parameters
    ----------
    volume : Volume
        What to write; ``(x, y, z)`` or ``(x, y, z, c)``.
    path : str or os.PathLike
        ``.nii`` or ``.nii.gz`` (compressed).
    dtype : numpy dtype, optional
        On-disk type; default the array's own (bool is stored as uint8).

    Returns
    -------
    pathlib.Path
        The written path.
    """
    import nibabel as nib

    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise InvalidImageError("NIfTI path must end in .nii or .nii.gz", path)
    array = np.asarray(volume.array)
    if dtype is not None:
        array = array.astype(dtype)
    elif array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    img = nib.Nifti1Image(array, volume.affine)
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
