"""`Volume` (an array that keeps its affine) and NIfTI reading and writing."""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._fsutil import atomic_path
from ..errors import DecodeError, InvalidImageError

__all__ = ["READABLE_FORMATS", "Volume", "read_nifti", "write_nifti"]


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


_GZIP_MAGIC = b"\x1f\x8b"

#: Formats :func:`read_nifti` reads (through nibabel), for messages.
READABLE_FORMATS = "NIfTI-1/2 (.nii, .nii.gz, .hdr/.img), Analyze 7.5, MGH/MGZ, MINC 1/2, AFNI (.HEAD/.BRIK), PAR/REC"


def _is_gzip(path: Path) -> bool:
    """Gzip by its magic bytes, or by a name that says so (a damaged magic is damage)."""
    if path.name.lower().endswith((".gz", ".mgz")):
        return True
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def _gunzip_verified(path: str | os.PathLike) -> bytes:
    """The decompressed content of a gzip file, after checking its CRC-32 and length.

    nibabel reads a ``.nii.gz`` only as far as the voxels go, so gzip's end-of-member
    check (CRC-32 and length of the uncompressed data) never runs and a flipped bit
    in the compressed stream comes back as changed voxels. This reads every member
    to its end, so any corruption the gzip format can detect is an error.

    Raises
    ------
    DecodeError
        Truncated stream, CRC or length mismatch, invalid deflate data, or bytes
        after the last member.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return gzip.decompress(data)
    except EOFError:
        raise DecodeError(f"truncated gzip stream: the {len(data):,}-byte file ends before "
                          "the end-of-stream marker", path) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DecodeError(f"corrupt gzip stream ({exc}); the file is damaged (CRC-32 or "
                          "length check failed, or invalid compressed data)", path) from None


def _nifti_error(path: Path, exc: BaseException) -> DecodeError:
    if isinstance(exc, EOFError | zlib.error) or "compressed file ended" in str(exc).lower():
        return DecodeError("file is truncated or its gzip stream is corrupt", path)
    short = re.search(r"Expected (\d+) bytes, got (\d+) bytes(?: from (.+))?$", str(exc))
    if short or "mmap length is greater than file size" in str(exc):
        holder = "the file"
        if short and short.group(3) and Path(short.group(3).strip()).name != path.name:
            holder = Path(short.group(3).strip()).name  # the data file of a pair (.img, .BRIK)
        detail = (f": the header asks for {int(short.group(1)):,} bytes of voxels, {holder} "
                  f"holds {int(short.group(2)):,}" if short else "")
        return DecodeError(f"truncated, or its header describes more data than it holds{detail}",
                           path)
    text = str(exc).strip().splitlines()
    return DecodeError(f"cannot read the image ({type(exc).__name__}: "
                       f"{text[0] if text else ''})", path)


def _load_nibabel(path: Path) -> tuple[Any, str]:
    """(nibabel image, class name) for ``path``, every gzip member verified first."""
    import io

    import nibabel as nib
    from nibabel.fileholders import FileHolder

    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)", path)
    verified: dict[str, bytes] = {}
    if _is_gzip(path):
        verified[str(path)] = _gunzip_verified(path)
    klass = None
    sniff = None
    for candidate in nib.imageclasses.all_image_classes:
        try:
            valid, sniff = candidate.path_maybe_image(str(path), sniff)
        except Exception:  # a damaged or foreign file can break a format's sniffer
            valid = False
        if valid:
            klass = candidate
            break
    if klass is None:
        with open(path, "rb") as handle:
            head = handle.read(132)
        hint = (" (it is DICOM: use medimg.io.read_dicom or read_series)"
                if head[128:132] == b"DICM" else "")
        raise DecodeError(f"not an image format nibabel reads ({READABLE_FORMATS}){hint}", path)
    file_map = klass.filespec_to_file_map(str(path))
    for key, holder in list(file_map.items()):
        name = holder.filename
        if name is None:
            continue
        if not Path(name).is_file():
            if key not in ("image", "header"):  # optional companions (SPM's .mat)
                continue
            raise DecodeError(f"{klass.__name__}: its {key} file {Path(name).name} is missing "
                              "(a .hdr needs its .img, a .PAR its .REC, a .HEAD its .BRIK)", path)
        if name not in verified and _is_gzip(Path(name)):
            verified[name] = _gunzip_verified(name)
        if name in verified:
            file_map[key] = FileHolder(fileobj=io.BytesIO(verified[name]))
    return klass.from_file_map(file_map), klass.__name__


def read_nifti(
    path: str | os.PathLike, *, canonical: bool = True, dtype: Any | None = None
) -> Volume:
    """Read a NIfTI-1/2 file (or another volume format nibabel reads) into a :class:`Volume`.

    Besides NIfTI (``.nii``, ``.nii.gz``, ``.hdr``/``.img`` pairs) this reads what
    nibabel reads as a volume: Analyze 7.5, MGH/MGZ (FreeSurfer), MINC 1/2, AFNI
    ``.HEAD``/``.BRIK``, Philips PAR/REC. The geometry is nibabel's affine for the
    format. Every gzip-compressed file (``.nii.gz``, ``.mgz``, ``.BRIK.gz``) is
    checked end to end (CRC-32 and length) before it is used, so a damaged file is
    an error rather than silently changed voxels.

    Parameters
    ----------
    path : str or os.PathLike
        The file (for pairs, either file of the pair; for AFNI the ``.HEAD``).
    canonical : bool
        Reorient to the closest canonical RAS+ orientation (DESIGN.md §3), so that
        ``array[x, y, z]`` runs left→right, posterior→anterior, inferior→superior
        whatever the scanner wrote. Flips and permutations only: no interpolation.
    dtype : numpy dtype, optional
        Cast the voxels to this type. By default the on-disk type is kept when the
        file has no scaling (so labels stay integers) and float32 is used when
        the format scales the data (``scl_slope``/``scl_inter``, AFNI brick
        factors, PAR/REC scaling).

    Returns
    -------
    Volume
        ``(x, y, z)`` or ``(x, y, z, t)`` (a 2-D image gets a z axis of length 1).
        ``meta`` holds ``path``, ``format`` (nibabel's class name, e.g.
        ``'Nifti1Image'``, ``'MGHImage'``), ``original_axcodes`` and
        ``xyzt_units`` (from the NIfTI header; ``('mm', 'unknown')`` for the
        other formats, which define positions in mm).

    Raises
    ------
    DecodeError
        The file is missing, empty, truncated, fails its gzip check, is not a
        format nibabel reads, or is not a volume (a surface, CIFTI, streamlines).
        The message names the file.
    InvalidImageError
        The image has more than 4 dimensions, or its affine is singular.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DecodeError("no such file", path)
    try:
        img, format_name = _load_nibabel(path)
        if not isinstance(img, nib.spatialimages.SpatialImage) or img.affine is None:
            raise DecodeError(f"{format_name} is not a volume with an affine (a surface, "
                              "CIFTI or other non-spatial file)", path)
        proxy = img.dataobj
        slope, inter = getattr(proxy, "slope", None), getattr(proxy, "inter", None)
        scaled = not (slope in (None, 1.0) and inter in (None, 0.0)) or (
            slope is not None and not np.isfinite(slope)
        ) or getattr(proxy, "scaling", None) is not None  # AFNI brick factors
        if dtype is None and scaled:
            dtype = np.float32
        array = np.asanyarray(proxy) if dtype is None else img.get_fdata(dtype=np.float32)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        if not array.dtype.isnative:  # big-endian on disk: native order for NumPy/TF/OpenCV
            array = array.astype(array.dtype.newbyteorder("="))
        affine = np.asarray(img.affine, dtype=np.float64)
        header = img.header
        units = (tuple(str(u) for u in header.get_xyzt_units())
                 if hasattr(header, "get_xyzt_units") else ("mm", "unknown"))
    except DecodeError:
        raise
    except Exception as exc:
        raise _nifti_error(path, exc) from exc
    while array.ndim > 4 and array.shape[-1] == 1:  # dim[0] larger than the data needs
        array = array[..., 0]
    if array.ndim == 5 and array.shape[3] == 1:  # (x, y, z, t=1, c) vector images
        array = array[:, :, :, 0, :]
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.ndim not in (3, 4):
        raise InvalidImageError(f"image has shape {array.shape}, expected 3-D or 4-D", path)
    if array.size == 0:
        raise InvalidImageError(f"image has no voxels (shape {array.shape})", path)
    if not np.all(np.isfinite(affine)):
        raise InvalidImageError("the affine (sform/qform) is not finite", path)
    meta = {
        "path": str(path),
        "format": format_name,
        "original_axcodes": tuple(nib.aff2axcodes(affine)),
        "xyzt_units": units,
    }
    volume = Volume(array, affine, meta)
    return volume.to_canonical() if canonical else volume


def _is_rigid(affine: np.ndarray, shape: tuple[int, ...], *, tolerance_voxels: float = 0.1) -> bool:
    """Whether a rigid affine (rotation, voxel sizes, offset) reproduces ``affine``.

    NIfTI's qform can only hold a rotation, per-axis voxel sizes and an offset. This
    asks whether the qform nibabel derives from ``affine`` places every voxel of an
    image of ``shape`` within ``tolerance_voxels`` of the smallest voxel size of where
    ``affine`` places it (checked at the 8 corners, where the error is largest).
    Sheared affines (a gantry-tilted CT, which :func:`medimg.io.read_series` keeps
    as a shear) are not rigid.
    """
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    header = nib.Nifti1Header()
    header.set_qform(affine, code=1)
    qform = header.get_qform()
    extent = [max(int(n) - 1, 0) for n in shape[:3]]
    corners = np.array([[i, j, k, 1.0] for i in (0, extent[0]) for j in (0, extent[1])
                        for k in (0, extent[2])])
    error = np.abs((qform - affine) @ corners.T)[:3].max()
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).min()
    return bool(error <= tolerance_voxels * spacing)


def write_nifti(volume: Volume, path: str | os.PathLike, *, dtype: Any | None = None) -> Path:
    """Write a :class:`Volume` as NIfTI-1 atomically, keeping its affine.

    The file is written to a temporary name in the same directory and renamed, so
    an interrupted write never leaves a truncated ``.nii.gz`` behind. Units are mm.

    Geometry: the affine is always stored as the sform (code 1, scanner). NIfTI's
    qform can hold only a rigid transform, so it is stored too (code 1) only when
    it reproduces the affine within a tenth of a voxel everywhere in the image
    (:func:`_is_rigid`). A sheared affine (e.g. a gantry-tilted CT from
    :func:`medimg.io.read_series`) gets **qform code 0**: an approximating qform
    would place voxels millimetres away in any reader that prefers the qform.
    nibabel, FSL, AFNI and 3D Slicer's NIfTI reader then use the exact sform.
    ITK-based readers (SimpleITK, ITK-SNAP) refuse such a file with "ITK only
    supports orthonormal direction cosines" rather than misplacing voxels; to
    open it there, resample it onto a rigid grid first.

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
    if _is_rigid(volume.affine, array.shape):
        img.set_qform(volume.affine, code=1)
    else:
        img.set_qform(volume.affine, code=0)  # never store an approximate geometry
    img.header.set_xyzt_units("mm", "sec")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
