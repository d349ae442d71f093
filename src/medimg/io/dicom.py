"""DICOM files, series and metadata tables (pydicom underneath).

* :func:`read_dicom` reads one file (whole, or header only) with medimg errors.
* :func:`dicom_pixels` decodes pixel data to float32 with the Modality LUT applied
  (CT in Hounsfield units) and MONOCHROME1 inverted, so brighter always means denser.
* :func:`read_series` assembles a folder of 2-D slices into a 3-D :class:`Volume`
  whose affine maps voxels to RAS+ millimetres.
* :func:`dicom_metadata` builds one typed table of header fields (and optionally
  pixel statistics) for many files, in parallel, never reading patient names or
  birth dates.

DICOM places the patient in LPS coordinates (x to the patient's Left, y Posterior,
z Superior); NIfTI and :class:`Volume` use RAS+. The one conversion between them is
:data:`LPS_TO_RAS` (negate the first two world axes).
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DecodeError, InvalidImageError
from .volume import Volume

__all__ = [
    "DEFAULT_METADATA_FIELDS",
    "FORBIDDEN_FIELDS",
    "HIDDEN_IN_DISPLAY",
    "LPS_TO_RAS",
    "dicom_metadata",
    "dicom_pixels",
    "header_table",
    "opaque_ids",
    "parse_age",
    "read_dicom",
    "read_series",
]

#: Multiply an LPS affine on the left by this to get the RAS+ affine (and back).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Identifying fields that :func:`dicom_metadata` refuses to read.
FORBIDDEN_FIELDS = frozenset({
    "PatientName", "PatientBirthDate", "PatientBirthTime", "PatientAddress",
    "PatientTelephoneNumbers", "OtherPatientNames", "PatientMotherBirthName",
    "ReferringPhysicianName",
})

#: Header fields read by :func:`dicom_metadata` when ``fields`` is not given.
DEFAULT_METADATA_FIELDS = (
    "PatientID", "PatientAge", "PatientSex", "ViewPosition", "Modality",
    "BodyPartExamined", "PixelSpacing", "Rows", "Columns", "BitsStored",
    "PhotometricInterpretation",
)

# Rough per-file costs (1024x1024 JPEG CR, one core) deciding when processes pay off.
_HEADER_SECONDS, _DECODE_SECONDS, _MIN_PARALLEL_SECONDS = 0.0005, 0.006, 0.5

#: Oldest plausible age in years; older ages (the RSNA set has 148-155) are flagged.
MAX_PLAUSIBLE_AGE = 120

# JPEG processes 1 and 2/4: Pillow's libjpeg-turbo decodes these several times faster
# than the pylibjpeg plugin pydicom would pick first (both are standard-conforming).
_JPEG_TURBO_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")


# --------------------------------------------------------------------------- reading
def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def read_dicom(
    path: str | os.PathLike,
    *,
    header_only: bool = False,
    specific_tags: Sequence[str | int] | None = None,
    force: bool = False,
) -> Any:
    """Read one DICOM file with pydicom, turning failures into medimg errors.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    header_only : bool
        Stop before the pixel data (``stop_before_pixels``): reading a header is
        tens of times faster than reading and decoding a compressed image.
    specific_tags : sequence of str or int, optional
        Keep only these elements (keywords or tags); everything else is skipped
        without being parsed.
    force : bool
        Read files without the 128-byte preamble and ``DICM`` prefix (old
        ACR-NEMA files). Off by default so that non-DICOM files are refused.

    Returns
    -------
    pydicom.dataset.FileDataset

    Raises
    ------
    DecodeError
        The file is missing, not DICOM, or truncated inside its header.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise DecodeError("no such file", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return pydicom.dcmread(
                path, stop_before_pixels=header_only, force=force,
                specific_tags=list(specific_tags) if specific_tags is not None else None,
            )
    except InvalidDicomError:
        raise DecodeError("not a DICOM file (no 'DICM' prefix after the 128-byte preamble)",
                          path) from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DecodeError(f"cannot read the DICOM header ({_describe(exc)})", path) from exc


def _stored_range(ds: Any) -> tuple[float, float]:
    """Smallest and largest stored pixel value the header allows."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _modality_range(ds: Any) -> tuple[float, float]:
    """Range of values after the Modality LUT (what MONOCHROME1 inversion mirrors)."""
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, 2.0**bits - 1
    low, high = _stored_range(ds)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


def _decode(ds: Any, where: Any) -> np.ndarray:
    """Decoded stored values (pydicom's own decoders), or a DecodeError."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DecodeError("no pixel data (the file holds no image, or it was read "
                          "with header_only=True)", where)
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    plugin = ""
    if (syntax in _JPEG_TURBO_SYNTAXES and int(ds.get("BitsAllocated", 8)) == 8
            and int(ds.get("SamplesPerPixel", 1)) == 1):
        from pydicom.pixels import get_decoder

        if "pillow" in get_decoder(syntax).available_plugins:
            plugin = "pillow"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            if plugin:
                from pydicom.pixels import pixel_array

                try:
                    return pixel_array(ds, decoding_plugin=plugin)
                except Exception:  # fall back to pydicom's full plugin chain
                    pass
            return ds.pixel_array
    except NotImplementedError as exc:
        raise DecodeError(f"transfer syntax {syntax or '?'} is not supported "
                          f"({_describe(exc)})", where) from exc
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        text = " ".join(lines).lower()
        if "missing dependencies" in text or "no plugins" in text:
            needs = "; ".join(lines[1:]) or "pylibjpeg with pylibjpeg-libjpeg/-openjpeg/-rle, or gdcm"
            raise DecodeError(f"no decoder installed for transfer syntax {syntax or '?'} "
                              f"(any one of: {needs})", where) from exc
        detail = "; ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else "")
        raise DecodeError(f"the installed decoders failed on transfer syntax {syntax or '?'} "
                          f"(corrupt or unsupported data: {detail})", where) from exc
    except (ValueError, EOFError, OSError, KeyError, AttributeError, TypeError) as exc:
        text = str(exc).lower()
        if "less than expected" in text or "truncat" in text or "end of" in text:
            raise DecodeError(f"truncated pixel data ({_describe(exc)})", where) from exc
        raise DecodeError(f"cannot decode the pixel data ({_describe(exc)})", where) from exc


def dicom_pixels(
    ds_or_path: Any,
    *,
    modality_lut: bool = True,
    invert_monochrome1: bool = True,
) -> np.ndarray:
    """Decode a DICOM image to float32: Modality LUT applied, MONOCHROME1 inverted.

    Decodes every transfer syntax pydicom can with the installed plugins
    (uncompressed little/big endian, deflate, RLE, JPEG Baseline/Extended/Lossless,
    JPEG-LS, JPEG 2000). 8-bit JPEG Baseline/Extended greyscale is decoded with
    Pillow's libjpeg-turbo when present (about 6x faster than pylibjpeg; JPEG
    allows decoders to differ by one grey level).

    Parameters
    ----------
    ds_or_path : pydicom.Dataset or str or os.PathLike
        A dataset read with its pixel data, or a file path.
    modality_lut : bool
        Apply the Modality LUT: Rescale Slope/Intercept (CT comes out in Hounsfield
        units) or a Modality LUT Sequence. Colour images have none.
    invert_monochrome1 : bool
        For MONOCHROME1 (minimum = white), mirror values within the modality
        output range so that, as for MONOCHROME2, higher values mean denser tissue
        and display brighter. :func:`medimg.intensity.dicom_window` undoes this
        before applying the file's own window.

    Returns
    -------
    numpy.ndarray, float32
        ``(rows, cols)`` for one frame, ``(frames, rows, cols)`` for multi-frame
        files; colour images (RGB, YBR converted to RGB, palette colour) carry a
        trailing axis of 3.

    Raises
    ------
    DecodeError
        Not DICOM, no pixel data, truncated pixel data, or a compressed syntax
        with no decoder installed. The message names the file.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> hu = dicom_pixels(get_testdata_file("CT_small.dcm", download=False))
    >>> hu.shape, hu.dtype, float(hu.min()) < -500           # air is about -1000 HU
    ((128, 128), dtype('float32'), True)
    """
    if isinstance(ds_or_path, str | os.PathLike):
        ds = read_dicom(ds_or_path)
        where: Any = ds_or_path
    else:
        ds = ds_or_path
        where = getattr(ds, "filename", None) or "<dataset>"
    stored = _decode(ds, where)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()

    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        return np.asarray(apply_color_lut(stored, ds), dtype=np.float32)
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        return stored.astype(np.float32, copy=False)

    if modality_lut and ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        image = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    else:
        image = stored.astype(np.float32)
        if modality_lut:
            slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
            intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
            if slope != 1.0:
                image *= np.float32(slope)
            if intercept != 0.0:
                image += np.float32(intercept)
    if invert_monochrome1 and photometric == "MONOCHROME1":
        low, high = _modality_range(ds) if modality_lut else _stored_range(ds)
        image = np.float32(low + high) - image
    return image


# --------------------------------------------------------------------------- series
def _float_list(ds: Any, keyword: str, n: int, path: Any) -> np.ndarray:
    value = ds.get(keyword)
    try:
        array = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        array = np.array([])
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise InvalidImageError(f"{keyword} is {value!r}, expected {n} numbers", path)
    return array


def read_series(
    directory: str | os.PathLike,
    *,
    series_uid: str | None = None,
    canonical: bool = True,
    spacing_tolerance: float = 0.05,
    progress: bool = False,
) -> Volume:
    """Assemble a folder of 2-D DICOM slices (CT, MR) into a 3-D :class:`Volume`.

    Slices are sorted along the slice normal (the cross product of the two
    Image Orientation (Patient) direction cosines) by their Image Position
    (Patient); the slice spacing comes from those positions, never from Slice
    Thickness (which may overlap or leave gaps). Each slice goes through
    :func:`dicom_pixels`, so CT is in Hounsfield units even when Rescale
    Intercept differs between slices. The affine maps ``(column, row, slice)``
    indices to RAS+ mm (DICOM's LPS with the first two axes negated); the
    third column is the mean step between positions, so a gantry tilt appears
    as a sheared affine rather than being lost.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder holding the series' files (any names; non-DICOM files such as a
        README are skipped, ``DICOMDIR`` too).
    series_uid : str, optional
        Series Instance UID to read when the folder holds several series.
    canonical : bool
        Reorient to the closest RAS+ (flips/permutations, no interpolation), as
        :func:`medimg.io.read_nifti` does.
    spacing_tolerance : float
        Allowed relative deviation of each step between slices from the median
        step before the series is called irregular (missing slices).
    progress : bool
        Show a progress bar while reading slices.

    Returns
    -------
    Volume
        float32 array ``(x, y, z)``; ``meta`` holds ``path``, ``series_uid``,
        ``modality``, ``n_slices`` and ``files`` (sorted).

    Raises
    ------
    InvalidImageError
        No DICOM image in the folder, several series without ``series_uid``,
        slices of different size or orientation, duplicate positions, missing
        slices (a gap larger than the regular step), missing geometry fields.
    """
    from tqdm.auto import tqdm

    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidImageError("not a directory (expected a folder of DICOM slices)", directory)
    headers = []
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        if path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = read_dicom(path, header_only=True)
        except DecodeError:
            continue
        if "ImagePositionPatient" in ds or "Rows" in ds:
            headers.append((path, ds))
    if not headers:
        raise InvalidImageError("no DICOM image files found", directory)
    uids = sorted({str(ds.get("SeriesInstanceUID", "")) for _, ds in headers})
    if series_uid is not None:
        headers = [(p, ds) for p, ds in headers if str(ds.get("SeriesInstanceUID", "")) == series_uid]
        if not headers:
            raise InvalidImageError(f"no slice has SeriesInstanceUID {series_uid!r} "
                                    f"(found: {', '.join(uids)})", directory)
    elif len(uids) > 1:
        raise InvalidImageError(f"mixed series: {len(uids)} SeriesInstanceUIDs "
                                f"({', '.join(uids[:4])}{', ...' if len(uids) > 4 else ''}); "
                                "pass series_uid= to choose one", directory)

    first_path, first = headers[0]
    orientation = _float_list(first, "ImageOrientationPatient", 6, first_path)
    row_cos, col_cos = orientation[:3], orientation[3:]
    pixel_spacing = _float_list(first, "PixelSpacing", 2, first_path)
    shape = (int(first.Rows), int(first.Columns))
    positions = []
    for path, ds in headers:
        if not np.allclose(_float_list(ds, "ImageOrientationPatient", 6, path), orientation,
                           atol=1e-4):
            raise InvalidImageError(
                f"inconsistent orientation: ImageOrientationPatient "
                f"{list(ds.ImageOrientationPatient)} differs from {orientation.tolist()} "
                f"of {first_path.name}", path)
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise InvalidImageError(f"slice is {int(ds.Rows)}x{int(ds.Columns)}, expected "
                                    f"{shape[0]}x{shape[1]} like {first_path.name}", path)
        if not np.allclose(_float_list(ds, "PixelSpacing", 2, path), pixel_spacing, rtol=1e-4):
            raise InvalidImageError(f"PixelSpacing {list(ds.PixelSpacing)} differs from "
                                    f"{pixel_spacing.tolist()} of {first_path.name}", path)
        positions.append(_float_list(ds, "ImagePositionPatient", 3, path))
    positions_lps = np.array(positions)
    normal = np.cross(row_cos, col_cos)
    distance = positions_lps @ normal
    order = np.argsort(distance, kind="stable")
    distance, positions_lps = distance[order], positions_lps[order]
    files = [headers[i][0] for i in order]

    if len(files) > 1:
        steps = np.diff(distance)
        duplicate = np.flatnonzero(steps < 1e-3)
        if duplicate.size:
            i = int(duplicate[0])
            raise InvalidImageError(
                f"duplicate slice position {distance[i]:.3f} mm along the normal "
                f"({files[i].name} and {files[i + 1].name})", directory)
        step = float(np.median(steps))
        irregular = np.flatnonzero(np.abs(steps - step) > spacing_tolerance * step)
        if irregular.size:
            i = int(irregular[0])
            missing = round(steps[i] / step) - 1
            what = (f"about {missing} missing slice(s)" if missing >= 1
                    else "irregular slice spacing")
            raise InvalidImageError(
                f"{what}: step {steps[i]:.3f} mm between {files[i].name} and "
                f"{files[i + 1].name}, expected {step:.3f} mm", directory)
        slice_vector = (positions_lps[-1] - positions_lps[0]) / (len(files) - 1)
    else:
        thickness = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
        slice_vector = normal * thickness

    slices = []
    for path in tqdm(files, desc="slices", unit="slice", disable=not progress, leave=False):
        image = dicom_pixels(path)
        if image.ndim != 2:
            raise InvalidImageError(f"expected a single-frame greyscale slice, got shape "
                                    f"{image.shape}", path)
        slices.append(image)
    # (slices, rows, cols) -> NIfTI order (x=column, y=row, z=slice)
    array = np.ascontiguousarray(np.stack(slices, axis=0).transpose(2, 1, 0))
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_cos * pixel_spacing[1]  # along a row: column index, column spacing
    affine_lps[:3, 1] = col_cos * pixel_spacing[0]  # down a column: row index, row spacing
    affine_lps[:3, 2] = slice_vector
    affine_lps[:3, 3] = positions_lps[0]
    meta = {
        "path": str(directory),
        "series_uid": str(first.get("SeriesInstanceUID", "")),
        "modality": str(first.get("Modality", "")),
        "n_slices": len(files),
        "files": [str(f) for f in files],
    }
    volume = Volume(array, LPS_TO_RAS @ affine_lps, meta)
    return volume.to_canonical() if canonical else volume


# --------------------------------------------------------------------------- metadata
_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_AGE_DIVISOR = {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0, "": 1.0}


def parse_age(value: Any) -> tuple[int | None, str | None]:
    """Parse a DICOM Patient Age (``'051Y'``, ``'006M'``, or RSNA's bare ``'51'``).

    Parameters
    ----------
    value : str, int or None

    Returns
    -------
    age_years : int or None
        Whole years; None when missing, unreadable or impossible.
    flag : str or None
        Why the age was set to missing (``"impossible age '148'"``), or None.

    Examples
    --------
    >>> parse_age("051Y"), parse_age("006M"), parse_age("148")
    ((51, None), (0, None), (None, "impossible age '148' (> 120 years)"))
    """
    if value is None:
        return None, None
    text = str(value).strip()
    if not text:
        return None, None
    match = _AGE.match(text)
    if not match:
        return None, f"unreadable age {text!r}"
    years = int(int(match.group(1)) / _AGE_DIVISOR[match.group(2).upper()])
    if years > MAX_PLAUSIBLE_AGE:
        return None, f"impossible age {text!r} (> {MAX_PLAUSIBLE_AGE} years)"
    return years, None


def _plain_value(value: Any) -> Any:
    """A DICOM element value as a plain Python value for a table cell."""
    from pydicom.multival import MultiValue

    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return None  # binary values do not belong in a metadata table
    if isinstance(value, int | float):
        return value
    text = str(value)
    return text if text else None


def _metadata_row(path: str, *, fields: tuple[str, ...], pixel_stats: bool) -> dict[str, Any]:
    """One table row for one file; errors become the ``error`` column."""
    row: dict[str, Any] = {"path": path}
    flags: list[str] = []
    try:
        ds = read_dicom(path, header_only=not pixel_stats,
                        specific_tags=None if pixel_stats else list(fields))
    except DecodeError as exc:
        row["error"] = exc.detail
        return row
    for keyword in fields:
        if keyword == "PixelSpacing":
            value = ds.get("PixelSpacing")
            try:
                row_mm, col_mm = (float(v) for v in value)
            except (TypeError, ValueError):
                row_mm = col_mm = None
                flags.append("PixelSpacing missing" if value is None
                             else f"PixelSpacing {value!r} unreadable")
            row["pixel_spacing_x_mm"] = col_mm  # along a row = between columns
            row["pixel_spacing_y_mm"] = row_mm
        elif keyword == "PatientAge":
            raw = ds.get("PatientAge")
            years, flag = parse_age(raw)
            row["age_years"] = years
            if flag:
                flags.append(flag)
            if raw is None or not str(raw).strip():
                flags.append("PatientAge missing")
        else:
            row[keyword] = _plain_value(ds.get(keyword))
    if pixel_stats:
        try:
            row.update(_pixel_statistics(ds))
        except DecodeError as exc:
            row["error"] = exc.detail
    row["issues"] = "; ".join(flags) if flags else None
    return row


def _pixel_statistics(ds: Any) -> dict[str, float]:
    """min, max, mean, std of :func:`dicom_pixels` without building the float image.

    For the common case (one greyscale frame, a linear Modality LUT) the statistics of
    the stored integers are mapped through ``a * x + b`` (the rescale, and the
    MONOCHROME1 mirror): one OpenCV pass over the stored array instead of a float32
    copy and four NumPy reductions. Anything else goes through :func:`dicom_pixels`.
    """
    import cv2

    where = getattr(ds, "filename", None) or "<dataset>"
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    simple = (photometric in ("MONOCHROME1", "MONOCHROME2") and not ds.get("ModalityLUTSequence")
              and int(ds.get("NumberOfFrames", 1) or 1) == 1)
    if simple:
        stored = _decode(ds, where)
        if stored.ndim == 2 and stored.dtype in (np.uint8, np.uint16, np.int16, np.float32):
            slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
            intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
            a, b = slope, intercept
            if photometric == "MONOCHROME1":
                low, high = _modality_range(ds)
                a, b = -slope, low + high - intercept
            low_value, high_value, _, _ = cv2.minMaxLoc(stored)
            mean, std = cv2.meanStdDev(stored)
            ends = sorted((a * low_value + b, a * high_value + b))
            return {"pixel_min": ends[0], "pixel_max": ends[1],
                    "pixel_mean": a * float(mean[0, 0]) + b, "pixel_std": abs(a) * float(std[0, 0])}
    image = dicom_pixels(ds)
    return {"pixel_min": float(image.min()), "pixel_max": float(image.max()),
            "pixel_mean": float(image.mean(dtype=np.float64)),
            "pixel_std": float(image.std(dtype=np.float64))}


def _metadata_chunk(paths: Sequence[str], *, fields: tuple[str, ...],
                    pixel_stats: bool) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        try:
            with warnings.catch_warnings():  # e.g. RSNA's bare-digit ages are invalid AS
                warnings.simplefilter("ignore", UserWarning)
                rows.append(_metadata_row(path, fields=fields, pixel_stats=pixel_stats))
        except Exception as exc:  # one odd file never stops the batch
            rows.append({"path": path, "error": _describe(exc)})
    return rows


_COLUMN_NAMES = {
    "PatientID": "patient_id", "PatientSex": "sex", "ViewPosition": "view_position",
    "Modality": "modality", "BodyPartExamined": "body_part", "Rows": "rows",
    "Columns": "columns", "BitsStored": "bits_stored",
    "PhotometricInterpretation": "photometric",
}
_CATEGORIES = {"sex": ["F", "M", "O"], "view_position": None, "modality": None,
               "body_part": None, "photometric": None}


def dicom_metadata(
    paths: Iterable[str | os.PathLike],
    *,
    fields: Sequence[str] | None = None,
    pixel_stats: bool = False,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> Any:
    """A typed metadata table for many DICOM files, built in parallel.

    Header fields are read without the pixel data (``stop_before_pixels`` and
    ``specific_tags``: only the asked-for elements are parsed) unless
    ``pixel_stats`` asks for intensity statistics, which need decoding. Work
    is spread over processes (decoding is CPU-bound) in chunks, with a
    progress bar; the DataFrame is built once at the end. Patient names and
    birth dates are never read.

    Parameters
    ----------
    paths : iterable of path
        DICOM files.
    fields : sequence of str, optional
        DICOM keywords to read; default :data:`DEFAULT_METADATA_FIELDS`. Known
        fields get typed, snake-case columns (below); any other keyword becomes
        a column of that name holding the plain value.
    pixel_stats : bool
        Also decode each image (:func:`dicom_pixels`) and add ``pixel_min``,
        ``pixel_max``, ``pixel_mean``, ``pixel_std`` (float, modality units).
    n_jobs : int, optional
        Worker processes (-1: every core, but this process alone when the batch
        is too small to repay starting a pool; a positive number is obeyed).
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per path, in input order, with ``path``; ``patient_id``
        (string); ``age_years`` (nullable Int64; impossible ages such as 148
        are set to missing and flagged); ``sex``, ``view_position``,
        ``modality``, ``body_part``, ``photometric`` (category);
        ``pixel_spacing_x_mm``/``pixel_spacing_y_mm`` (float, between columns
        and between rows); ``rows``, ``columns``, ``bits_stored`` (Int64);
        ``issues`` (string: impossible age, missing Pixel Spacing, ...; missing
        when all is well) and ``error`` (string: why a file could not be read;
        its other columns are missing).

    Raises
    ------
    ValueError
        ``fields`` asks for an identifying field (:data:`FORBIDDEN_FIELDS`).

    Examples
    --------
    >>> table = dicom_metadata(sorted(Path("data/rsna").glob("*/*.dcm")))  # doctest: +SKIP
    >>> table.groupby("view_position", observed=True).age_years.median()  # doctest: +SKIP
    """
    import pandas as pd

    from .._parallel import map_items, resolve_n_jobs

    fields = tuple(DEFAULT_METADATA_FIELDS if fields is None else fields)
    forbidden = sorted(set(fields) & FORBIDDEN_FIELDS)
    if forbidden:
        raise ValueError(f"dicom_metadata never reads identifying fields; remove {forbidden}")
    paths = [os.fspath(p) for p in paths]
    workers = min(resolve_n_jobs(n_jobs), max(1, len(paths)))
    # A process pool costs about a second to start: use it only when the work would take
    # longer than that in this process.
    serial_seconds = len(paths) * (_DECODE_SECONDS if pixel_stats else _HEADER_SECONDS)
    if (n_jobs is None or n_jobs < 0) and serial_seconds < _MIN_PARALLEL_SECONDS:
        workers = 1
    # Chunks amortise process round trips (a header read takes well under a millisecond)
    # while leaving enough pieces for the bar to move and the workers to balance.
    chunk = max(1, min(256, len(paths) // (workers * 8) or 1))
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    results = map_items(partial(_metadata_chunk, fields=fields, pixel_stats=pixel_stats),
                        chunks, n_jobs=workers, progress=progress,
                        desc=f"DICOM metadata ({len(paths)} files)",
                        unit="file" if chunk == 1 else f"chunk of {chunk}")
    rows: list[dict[str, Any]] = []
    for result in results:
        if result.ok:
            rows.extend(result.value)
        else:
            rows.extend({"path": p, "error": result.error} for p in result.item)

    columns = ["path"]
    for keyword in fields:
        if keyword == "PixelSpacing":
            columns += ["pixel_spacing_x_mm", "pixel_spacing_y_mm"]
        elif keyword == "PatientAge":
            columns.append("age_years")
        else:
            columns.append(keyword)
    if pixel_stats:
        columns += ["pixel_min", "pixel_max", "pixel_mean", "pixel_std"]
    columns += ["issues", "error"]
    table = pd.DataFrame.from_records(rows, columns=columns)
    table = table.rename(columns=_COLUMN_NAMES)
    for column in ("path", "patient_id", "issues", "error"):
        if column in table:
            table[column] = table[column].astype("string")
    for column in ("age_years", "rows", "columns", "bits_stored"):
        if column in table:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    for column in ("pixel_spacing_x_mm", "pixel_spacing_y_mm", "pixel_min", "pixel_max",
                   "pixel_mean", "pixel_std"):
        if column in table:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    for column, categories in _CATEGORIES.items():
        if column in table:
            values = table[column].astype("string").str.strip().str.upper()
            if categories is None:
                categories = sorted(values.dropna().unique())
            table[column] = pd.Categorical(values, categories=categories)
    return table


def opaque_ids(values: Iterable[Any], *, salt: str = "medimg", length: int = 10) -> list[str]:
    """Replace identifiers by short salted hashes for display (same input, same output).

    Tables shown in notebooks or reports must not carry patient identifiers;
    hashing (rather than numbering) keeps rows joinable across tables.

    Parameters
    ----------
    values : iterable
        Identifiers (e.g. RSNA ``patientId``); missing values stay None.
    salt : str
        Mixed into the hash so the IDs cannot be looked up in a public table.
    length : int
        Hex characters kept.

    Returns
    -------
    list of str

    Examples
    --------
    >>> opaque_ids(["abc", "abc", None])                      # doctest: +SKIP
    ['p3b1f0c2d9a', 'p3b1f0c2d9a', None]
    """
    import pandas as pd

    out: list[Any] = []
    for value in values:
        if value is None or (np.ndim(value) == 0 and pd.isna(value)):
            out.append(None)
            continue
        digest = hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()[:length]
        out.append(f"p{digest}")
    return out


#: Fields :func:`header_table` masks by default (identifying, even when anonymised).
HIDDEN_IN_DISPLAY = FORBIDDEN_FIELDS | {"PatientID", "OtherPatientIDs", "OtherPatientIDsSequence",
                                        "AccessionNumber", "InstitutionName", "InstitutionAddress"}


def header_table(ds: Any, keywords: Sequence[str] | None = None, *,
                 hide: Iterable[str] = HIDDEN_IN_DISPLAY, max_chars: int = 64) -> Any:
    """The elements of a DICOM header as a table, identifying values masked.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset (file meta elements are listed first when present).
    keywords : sequence of str, optional
        Only these elements, in this order (absent ones are left out).
    hide : iterable of str
        Keywords whose values are replaced by ``"<hidden>"``.
    max_chars : int
        Longer values are shortened; pixel data is summarised by its size.

    Returns
    -------
    pandas.DataFrame
        Columns ``tag``, ``keyword``, ``VR``, ``value`` (strings), in file order;
        sequences appear as one row with their item count.
    """
    import pandas as pd

    hide = set(hide)
    rows = []
    meta = getattr(ds, "file_meta", None)
    if keywords is None:
        elements = list(meta or []) + list(ds)
    else:
        elements = [(meta if meta is not None and k in meta else ds)[k] for k in keywords
                    if k in ds or (meta is not None and k in meta)]
    for element in elements:
        keyword = element.keyword or "(private)"
        if keyword in hide:
            value = "<hidden>"
        elif element.VR == "SQ":
            value = f"<sequence of {len(element.value)} item(s)>"
        elif keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            value = f"<{len(element.value):,} bytes>"
        elif isinstance(element.value, bytes):
            value = f"<{len(element.value)} bytes>"
        else:
            value = str(element.value)
            name = getattr(element.value, "name", value) if element.VR == "UI" else value
            if name != value:  # a registered UID: say what it means
                value = f"{value} ({name})"
        if len(value) > max_chars:
            value = value[: max_chars - 3] + "..."
        rows.append((str(element.tag), keyword, str(element.VR), value))
    return pd.DataFrame(rows, columns=["tag", "keyword", "VR", "value"])
