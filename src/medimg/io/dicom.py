"""DICOM files, series and metadata tables (pydicom underneath).

* :func:`read_dicom` reads one file (whole, or header only) with medimg errors; a
  file that ends early is a :class:`~medimg.errors.DecodeError` saying "truncated",
  wherever it was cut.
* :func:`dicom_pixels` decodes pixel data to float32 with the Modality LUT applied
  (CT in Hounsfield units; for enhanced multi-frame files, each frame's own Pixel
  Value Transformation) and MONOCHROME1 inverted, so brighter always means denser.
* :func:`read_series` assembles a folder of 2-D slices (or the frames of enhanced
  multi-frame files) into a 3-D :class:`Volume` whose affine maps voxels to RAS+
  millimetres; :func:`read_enhanced` does the same for one enhanced CT/MR file. A
  4-D series (several images per slice position) is read one volume at a time.
* :func:`dicom_metadata` builds one typed table of header fields (and optionally
  pixel statistics) for many files, in parallel; :func:`header_table` shows one
  header. Neither ever shows identifying attributes (the Patient module, the PS3.15
  Annex E basic de-identification profile, private tags), however they are named,
  unless the caller opts in; identifiers become opaque hashes.

DICOM places the patient in LPS coordinates (x to the patient's Left, y Posterior,
z Superior); NIfTI and :class:`Volume` use RAS+. The one conversion between them is
:data:`LPS_TO_RAS` (negate the first two world axes).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DecodeError, InvalidImageError, PrivacyError
from ._privacy import (
    BASIC_PROFILE_TAGS,
    HASHED_TAGS,
    RETAINED_CHARACTERISTICS,
    is_identifying,
    parse_tag,
    tag_name,
)
from .volume import Volume

__all__ = [
    "DEFAULT_METADATA_FIELDS",
    "FORBIDDEN_FIELDS",  # noqa: F822 (built on first use by __getattr__)
    "HIDDEN_IN_DISPLAY",  # noqa: F822
    "LPS_TO_RAS",
    "VOLUME_ATTRIBUTES",
    "dicom_metadata",
    "dicom_pixels",
    "header_table",
    "modality_range",
    "opaque_ids",
    "parse_age",
    "read_dicom",
    "read_enhanced",
    "read_series",
    "voi_datasets",
]

#: Multiply an LPS affine on the left by this to get the RAS+ affine (and back).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Header fields read by :func:`dicom_metadata` when ``fields`` is not given.
#: ``PatientID`` comes out as an opaque hash; age and sex are the patient
#: characteristics PS3.15's Retain Patient Characteristics Option keeps.
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

_SHARED_GROUPS = "SharedFunctionalGroupsSequence"
_PER_FRAME_GROUPS = "PerFrameFunctionalGroupsSequence"

_PIXEL_SPACING_TAG, _PATIENT_AGE_TAG, _PATIENT_ID_TAG = 0x00280030, 0x00101010, 0x00100020


def _identifying_keywords(*, hashed: bool) -> frozenset[str]:
    """Keywords of the identifying attributes (for the keyword-set constants below)."""
    from pydicom.datadict import DicomDictionary, keyword_for_tag

    tags = set(BASIC_PROFILE_TAGS) | {t for t in DicomDictionary if t >> 16 == 0x0010}
    tags -= set(RETAINED_CHARACTERISTICS)
    if not hashed:
        tags -= set(HASHED_TAGS)
    return frozenset(k for k in (keyword_for_tag(t) for t in tags) if k)


def __getattr__(name: str) -> Any:
    # the keyword sets need pydicom's dictionary: built on first use, not at import
    if name == "FORBIDDEN_FIELDS":
        value = _identifying_keywords(hashed=False)
    elif name == "HIDDEN_IN_DISPLAY":
        value = _identifying_keywords(hashed=True)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


# FORBIDDEN_FIELDS: keywords dicom_metadata refuses without allow_identifying=True (the
#   Patient module and the PS3.15 basic profile, less the retained characteristics and
#   the hashed identifiers). The rule itself works on tags (_privacy.is_identifying):
#   private tags and tags given as numbers are refused too.
# HIDDEN_IN_DISPLAY: keywords whose values header_table masks (the same, IDs included).


# --------------------------------------------------------------------------- truncation
_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC",
                              b"UN", b"UR", b"UT", b"UV"})
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_TRANSFER_SYNTAX_TAG = 0x00020010
# implicit/explicit little endian, explicit big endian, deflated: pixel data not encapsulated
_NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                              "1.2.840.10008.1.2.1.99"})


class _Truncated(Exception):
    """The file ends before the structure it declares does."""


class _Malformed(Exception):
    """The bytes are not a DICOM data set (damage, not truncation)."""


class _Scanner:
    """Walks a DICOM byte stream element by element without decoding values, to tell
    whether it ends before the lengths and delimiters it declares (PS3.5 §7)."""

    def __init__(self, data: bytes, *, little: bool) -> None:
        self.data, self.end = data, len(data)
        self.u16 = struct.Struct("<H" if little else ">H")
        self.u32 = struct.Struct("<I" if little else ">I")
        self.transfer_syntax: str | None = None

    def _need(self, pos: int, size: int, what: str) -> None:
        if pos + size > self.end:
            raise _Truncated(f"the file ends inside {what}")

    def _tag(self, pos: int) -> int:
        return (self.u16.unpack_from(self.data, pos)[0] << 16) | self.u16.unpack_from(
            self.data, pos + 2)[0]

    def dataset(self, pos: int, *, implicit: bool, depth: int = 0, in_item: bool = False,
                only_group: int | None = None) -> int:
        """Position after the data set starting at ``pos`` (after its item delimiter
        when ``in_item``; at the first element of another group with ``only_group``)."""
        if depth > 12:
            raise _Malformed("sequences nested too deep")
        while pos < self.end:
            self._need(pos, 8, "an element header")
            tag = self._tag(pos)
            if only_group is not None and tag >> 16 != only_group:
                return pos
            if tag == _ITEM_END:
                if in_item:
                    return pos + 8
                raise _Malformed("item delimiter outside a sequence")
            if implicit:
                vr, length, header = b"", self.u32.unpack_from(self.data, pos + 4)[0], 8
            else:
                vr = self.data[pos + 4:pos + 6]
                if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
                    raise _Malformed("invalid VR")
                if vr in _LONG_LENGTH_VRS:
                    self._need(pos, 12, f"the header of {tag_name(tag)}")
                    length, header = self.u32.unpack_from(self.data, pos + 8)[0], 12
                else:
                    length, header = self.u16.unpack_from(self.data, pos + 6)[0], 8
            pos += header
            if length == 0xFFFFFFFF:
                if tag in _PIXEL_DATA_TAGS:
                    pos = self._items(pos, tag, fragments=True, implicit=implicit, depth=depth)
                else:  # a sequence (UN of undefined length is implicit VR little endian)
                    pos = self._items(pos, tag, fragments=False, depth=depth + 1,
                                      implicit=implicit or vr == b"UN")
                continue
            if pos + length > self.end:
                raise _Truncated(f"{tag_name(tag)} declares {length:,} bytes but only "
                                 f"{self.end - pos:,} remain in the file")
            if tag == _TRANSFER_SYNTAX_TAG:
                self.transfer_syntax = self.data[pos:pos + length].decode(
                    "ascii", "replace").strip("\x00 ")
            pos += length
        if in_item:
            raise _Truncated("the file ends inside a sequence item (no item delimiter)")
        return pos

    def _items(self, pos: int, tag: int, *, fragments: bool, implicit: bool, depth: int) -> int:
        what = "the encapsulated Pixel Data" if fragments else f"the sequence {tag_name(tag)}"
        count = 0
        while True:
            self._need(pos, 8, f"{what} (after {count} item(s), before its delimiter)")
            item_tag = self._tag(pos)
            length = self.u32.unpack_from(self.data, pos + 4)[0]
            pos += 8
            if item_tag == _SEQUENCE_END:
                return pos
            if item_tag != _ITEM:
                raise _Malformed("expected an item tag")
            count += 1
            if length == 0xFFFFFFFF and not fragments:
                pos = self.dataset(pos, implicit=implicit, depth=depth, in_item=True)
                continue
            if pos + length > self.end:
                raise _Truncated(f"item {count} of {what} declares {length:,} bytes but only "
                                 f"{self.end - pos:,} remain in the file")
            pos += length


def _short_file(size: int) -> str:
    return (f"the file is only {size:,} bytes, shorter than the 128-byte preamble and 'DICM' "
            "prefix every DICOM file starts with")


def _truncation(path: Any) -> str | None:
    """Why ``path`` is a truncated DICOM file, or None when it is complete (or not DICOM).

    Walks the element structure (lengths, sequence and item delimiters, encapsulated
    fragments; inflating a deflated data set first) and reports where the file ends
    before what it declares. Used on error paths only.
    """
    if not isinstance(path, str | os.PathLike):
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if len(data) < 132:
        return _short_file(len(data))
    if data[128:132] != b"DICM":
        return None
    try:
        meta = _Scanner(data, little=True)
        start = meta.dataset(132, implicit=False, only_group=0x0002)
        syntax = meta.transfer_syntax or "1.2.840.10008.1.2.1"
        body = data[start:]
        if not body:
            raise _Truncated("the file ends right after its file meta information "
                             "(no data set)")
        if syntax == "1.2.840.10008.1.2.1.99":  # deflated explicit VR little endian
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                body = inflater.decompress(body)
            except zlib.error:
                return None
            if not inflater.eof:
                raise _Truncated("the deflated data set ends before its end-of-stream marker")
        scanner = _Scanner(body, little=syntax != "1.2.840.10008.1.2.2")
        scanner.dataset(0, implicit=syntax == "1.2.840.10008.1.2")
    except _Truncated as exc:
        return str(exc)
    except (_Malformed, struct.error, IndexError):
        return None
    return None


def _file_truncation(ds: Any) -> str | None:
    """:func:`_truncation` of the file a dataset was read from (None for in-memory ones)."""
    return _truncation(getattr(ds, "filename", None))


def _quietly_truncated(ds: Any) -> bool:
    """Truncations pydicom reads without a word: the last element cut short, the
    encapsulated Pixel Data without its end (the last fragment or the delimiter
    missing), a deflated data set whose stream stops early."""
    if _last_element_short(ds):
        return True
    path = getattr(ds, "filename", None)
    if not isinstance(path, str | os.PathLike):
        return False
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax == "1.2.840.10008.1.2.1.99":
        return _truncation(path) is not None
    if "PixelData" not in ds:
        return False
    raw = ds.get_item(0x7FE00010)
    tell, value = getattr(raw, "value_tell", None), getattr(raw, "value", None)
    if getattr(raw, "length", None) != 0xFFFFFFFF or tell is None or not isinstance(value, bytes):
        return False
    try:
        size = os.path.getsize(path)
    except OSError:
        return False
    return tell + len(value) + 8 > size  # no room left for the sequence delimiter


def _image_object(ds: Any) -> str:
    """What says ``ds`` is an image ('a CT Image Storage object', 'the header describes a
    64x64 image'), or '' when nothing does."""
    if ds.get("Rows") is not None and ds.get("Columns") is not None:
        return f"the header describes a {ds.get('Rows')}x{ds.get('Columns')} image"
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
    name = getattr(uid, "name", "") or ""
    return f"it is a {name} object" if "Image Storage" in name else ""


def _read_header_only(ds: Any) -> bool:
    """Whether pydicom was told to stop before the pixel data (header-only read)."""
    return bool(getattr(ds, "_medimg_header_only", False))


def _last_element_short(ds: Any) -> bool:
    """Whether pydicom read fewer bytes for the last element than it declares: the file
    was cut after the pixel data (pydicom keeps the short value without a word)."""
    tags = list(ds.keys())
    if not tags:
        return False
    raw = ds.get_item(tags[-1])
    length, value = getattr(raw, "length", None), getattr(raw, "value", None)
    return (isinstance(length, int) and length != 0xFFFFFFFF and isinstance(value, bytes)
            and len(value) < length)


# --------------------------------------------------------------------------- reading
def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _looks_like_dicom(path: Path) -> bool:
    """A file that claims to be DICOM: the 'DICM' prefix, or a DICOM file name suffix."""
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


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
        The file is missing, not DICOM, or cannot be parsed; a file that ends
        before the structure it declares is reported as "truncated" with where it
        ends.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise DecodeError("no such file", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ds = pydicom.dcmread(
                path, stop_before_pixels=header_only, force=force,
                specific_tags=list(specific_tags) if specific_tags is not None else None,
            )
        ds._medimg_header_only = header_only or specific_tags is not None
        return ds
    except InvalidDicomError:
        size = path.stat().st_size
        if size < 132:
            raise DecodeError(f"not a DICOM file: {_short_file(size)} (truncated, or not "
                              "DICOM)", path) from None
        raise DecodeError("not a DICOM file (no 'DICM' prefix after the 128-byte preamble)",
                          path) from None
    except Exception as exc:  # pydicom raises many types on damaged input (struct.error ...)
        reason = _truncation(path)
        if reason:
            raise DecodeError(f"truncated: {reason}", path) from exc
        raise DecodeError(f"cannot read the DICOM header ({_describe(exc)})", path) from exc


def _stored_range(ds: Any) -> tuple[float, float]:
    """Smallest and largest stored pixel value the header allows."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _rescale(ds: Any, values: Mapping[str, Any] | None = None) -> tuple[float, float]:
    """(Rescale Slope, Rescale Intercept): from ``values`` (a frame's functional groups)
    first, else the top level; (1, 0) when absent.

    Raises
    ------
    InvalidImageError
        A value that is not a finite number (it would make every pixel NaN or inf).
    """
    values = values or {}
    result = []
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        raw = values.get(keyword, ds.get(keyword))
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            result.append(default)
            continue
        try:
            number = float(raw)
        except (TypeError, ValueError):
            number = float("nan")
        if not np.isfinite(number) or (keyword == "RescaleSlope" and number == 0):
            where = getattr(ds, "filename", None) or "<dataset>"
            raise InvalidImageError(f"{keyword} is {str(raw)!r}, expected a finite number"
                                    + (" other than 0" if keyword == "RescaleSlope" else ""),
                                    where)
        result.append(number)
    return result[0], result[1]


def modality_range(ds: Any) -> tuple[float, float]:
    """Range of values after the Modality LUT (what MONOCHROME1 inversion mirrors)."""
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, 2.0**bits - 1
    low, high = _stored_range(ds)
    slope, intercept = _rescale(ds)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


def _number_of_frames(ds: Any, where: Any) -> int:
    value = ds.get("NumberOfFrames", 1)
    try:
        frames = int(value if value not in (None, "") else 1)
    except (TypeError, ValueError):
        frames = -1
    if frames < 1:
        raise DecodeError(f"Number of Frames is {value!r}, expected a positive integer", where)
    return frames


def _check_native_length(ds: Any, where: Any) -> None:
    """For uncompressed pixel data: the length must be what the header describes.

    pydicom reads extra bytes as extra frames (or ignores them); a Rows or Columns
    value that disagrees with the data then yields a wrong image or "two frames".
    PS3.5 §8.1.1 allows one pad byte (to an even length) and nothing else.
    """
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax not in _NATIVE_SYNTAXES or "PixelData" not in ds:
        return
    from pydicom.pixels.utils import get_expected_length

    rows, columns = ds.get("Rows"), ds.get("Columns")
    try:
        frames = _number_of_frames(ds, where)
        expected = int(get_expected_length(ds, unit="bytes"))
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"the Image Pixel description is incomplete or invalid "
                          f"({_describe(exc)})", where) from exc
    actual = len(ds.PixelData)
    if actual == expected or (expected % 2 == 1 and actual == expected + 1):
        return
    described = (f"Rows {rows} x Columns {columns} x {ds.get('SamplesPerPixel', 1)} sample(s) x "
                 f"{ds.get('BitsAllocated')} bits x {frames} frame(s) = {expected:,} bytes, but "
                 f"Pixel Data holds {actual:,} bytes")
    if actual < expected:
        reason = _file_truncation(ds)
        if reason:
            raise DecodeError(f"truncated pixel data: {reason}", where)
        raise DecodeError(f"{described}: too few (truncated data, or wrong Rows/Columns/"
                          "Number of Frames/Bits Allocated)", where)
    raise DecodeError(f"{described}: too many (wrong Rows/Columns/Number of Frames/Bits "
                      "Allocated, or trailing bytes the standard does not allow)", where)


def _decode(ds: Any, where: Any) -> np.ndarray:
    """Decoded stored values (pydicom's own decoders), or a DecodeError."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        reason = _file_truncation(ds)
        if reason:
            raise DecodeError(f"truncated: {reason}", where)
        image_object = _image_object(ds)
        if image_object and getattr(ds, "filename", None) and not _read_header_only(ds):
            # cut exactly between two elements: only the missing pixel data gives it away
            raise DecodeError(f"truncated or incomplete: {image_object} but the file ends "
                              "before its Pixel Data", where)
        raise DecodeError("no pixel data (the file holds no image, or it was read "
                          "with header_only=True)", where)
    if _quietly_truncated(ds):  # before anything converts the raw elements it looks at
        reason = _file_truncation(ds) or "the last element is shorter than it declares"
        raise DecodeError(f"truncated: {reason}", where)
    _check_native_length(ds, where)
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
        reason = _file_truncation(ds)
        if reason:
            raise DecodeError(f"truncated pixel data: {reason}", where) from exc
        detail = "; ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else "")
        raise DecodeError(f"the installed decoders failed on transfer syntax {syntax or '?'} "
                          f"(corrupt or unsupported data: {detail})", where) from exc
    except Exception as exc:
        reason = _file_truncation(ds)
        text = str(exc).lower()
        if reason:
            raise DecodeError(f"truncated pixel data: {reason}", where) from exc
        if "less than expected" in text or "truncat" in text or "end of" in text:
            raise DecodeError(f"truncated pixel data ({_describe(exc)})", where) from exc
        raise DecodeError(f"cannot decode the pixel data ({_describe(exc)})", where) from exc


# ----------------------------------------------------------------- enhanced (multi-frame)
def _has_functional_groups(ds: Any) -> bool:
    """True for enhanced multi-frame files (Shared/Per-frame Functional Groups)."""
    return _SHARED_GROUPS in ds or _PER_FRAME_GROUPS in ds


def _flatten_item(item: Any, values: dict[str, Any], depth: int) -> None:
    for element in item:
        if element.VR == "SQ":
            if depth < 3 and element.value is not None and len(element.value) == 1:
                _flatten_item(element.value[0], values, depth + 1)
        elif element.keyword:
            values[element.keyword] = element.value


def _frame_values(ds: Any, frame: int) -> dict[str, Any]:
    """The attributes the functional groups give ``frame`` (0-based), by keyword.

    The macros of the Shared Functional Groups Sequence apply to every frame; those
    of the frame's item in the Per-frame Functional Groups Sequence override them
    (PS3.3 C.7.6.16). Each macro is a one-item sequence (Pixel Value Transformation,
    Frame VOI LUT, Plane Position/Orientation (Patient), Pixel Measures, Frame
    Content, MR Echo, MR Diffusion ...); its attributes are lifted to one level.
    """
    values: dict[str, Any] = {}
    shared = ds.get(_SHARED_GROUPS)
    if shared:
        _flatten_item(shared[0], values, 0)
    per_frame = ds.get(_PER_FRAME_GROUPS)
    if per_frame and frame < len(per_frame):
        _flatten_item(per_frame[frame], values, 0)
    return values


class _Header:
    """A header as one frame sees it: functional-group values first, then the top level."""

    def __init__(self, ds: Any, frame: int | None = None) -> None:
        self.ds = ds
        self.values = _frame_values(ds, frame) if frame is not None else {}

    def get(self, keyword: str, default: Any = None) -> Any:
        if keyword in self.values:
            return self.values[keyword]
        return self.ds.get(keyword, default)

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.values or keyword in self.ds


def _frame_rescale(ds: Any, frame: int) -> tuple[float, float]:
    """(slope, intercept) of the frame's Pixel Value Transformation (1, 0 when absent)."""
    return _rescale(ds, _frame_values(ds, frame))


_VOI_KEYWORDS = ("PhotometricInterpretation", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                 "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "RescaleType",
                 "ModalityLUTSequence", "VOILUTSequence", "WindowCenter", "WindowWidth",
                 "VOILUTFunction", "WindowCenterWidthExplanation")


def _frame_voi_dataset(ds: Any, frame: int) -> Any:
    """A small dataset holding the VOI-relevant attributes as ``frame`` sees them, so that
    code written for single-frame files (:func:`medimg.intensity.dicom_window`) applies
    the frame's own Frame VOI LUT and Pixel Value Transformation."""
    from pydicom.dataset import Dataset

    view = Dataset()
    for keyword in _VOI_KEYWORDS:
        if keyword in ds:
            view.add(ds[keyword])
    for keyword, value in _frame_values(ds, frame).items():
        if keyword in _VOI_KEYWORDS:
            setattr(view, keyword, value)
    view.filename = getattr(ds, "filename", None)
    if getattr(ds, "file_meta", None) is not None:
        view.file_meta = ds.file_meta
    return view


def _voi_signature(view: Any) -> tuple:
    keys = ("WindowCenter", "WindowWidth", "VOILUTFunction")
    if str(view.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        keys += ("RescaleSlope", "RescaleIntercept")  # the MONOCHROME1 mirror depends on them
    return (*(str(view.get(k)) for k in keys), id(view.get("VOILUTSequence")))


def voi_datasets(ds: Any, image: Any, frame: int | None) -> list[Any]:
    """The dataset(s) whose VOI :func:`medimg.intensity.dicom_window` applies to ``image``.

    One dataset for the whole image, or one per frame when ``image`` holds all the
    frames of an enhanced file whose frames carry different windows.

    Raises
    ------
    InvalidImageError
        A colour image (VOI windowing is defined for MONOCHROME1/2 only, PS3.3
        C.11.2, as pydicom also insists), ``frame`` out of range, or a single frame
        of a file whose frames have different windows without ``frame``.
    """
    where = getattr(ds, "filename", None) or "<dataset>"
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples > 1 or (photometric and photometric not in ("MONOCHROME1", "MONOCHROME2")):
        raise InvalidImageError(f"VOI windowing is defined for greyscale images (MONOCHROME1/2) "
                                f"only; this image is {photometric or '?'} with {samples} "
                                "sample(s) per pixel", where)
    if not _has_functional_groups(ds):
        return [ds]
    n_frames = _number_of_frames(ds, where)
    if frame is not None:
        if not 0 <= int(frame) < n_frames:
            raise InvalidImageError(f"frame {frame} asked for, the file has {n_frames} "
                                    "frame(s) (0-based)", where)
        return [_frame_voi_dataset(ds, int(frame))]
    views = [_frame_voi_dataset(ds, f) for f in range(n_frames)]
    if len({_voi_signature(v) for v in views}) == 1:
        return views[:1]
    shape = tuple(image.shape)
    if len(shape) >= 3 and shape[0] == n_frames:
        return views
    raise InvalidImageError(f"the {n_frames} frames have different windows (Frame VOI LUT); "
                            "pass frame= to say which frame this image is", where)


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

    Enhanced multi-frame files (Enhanced CT/MR/PET ..., with Shared and Per-frame
    Functional Groups) get each frame's own Pixel Value Transformation (Rescale
    Slope/Intercept from the per-frame group, else the shared one), so CT frames are
    in Hounsfield units and MR frames with different scale factors are comparable.

    Parameters
    ----------
    ds_or_path : pydicom.Dataset or str or os.PathLike
        A dataset read with its pixel data, or a file path.
    modality_lut : bool
        Apply the Modality LUT: Rescale Slope/Intercept (per frame for enhanced
        files; CT comes out in Hounsfield units) or a Modality LUT Sequence.
        Colour images have none.
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
        Not DICOM, no pixel data, truncated file (the message says "truncated"),
        pixel data whose length disagrees with Rows/Columns/frames (uncompressed
        syntaxes), or a compressed syntax with no decoder installed. The message
        names the file.

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

    if _has_functional_groups(ds) and not ds.get("ModalityLUTSequence"):
        n_frames = _number_of_frames(ds, where)
        image = stored.astype(np.float32)
        frames = image.reshape(n_frames, *image.shape[-2:])  # a view: edits reach ``image``
        transforms = np.array([_frame_rescale(ds, f) if modality_lut else (1.0, 0.0)
                               for f in range(n_frames)], dtype=np.float64)
        slopes = transforms[:, 0].astype(np.float32)[:, None, None]
        intercepts = transforms[:, 1].astype(np.float32)[:, None, None]
        if np.any(slopes != 1):
            frames *= slopes
        if np.any(intercepts != 0):
            frames += intercepts
        if invert_monochrome1 and photometric == "MONOCHROME1":
            low, high = _stored_range(ds)
            mirror = (low + high) * transforms[:, 0] + 2 * transforms[:, 1]
            frames *= np.float32(-1)
            frames += mirror.astype(np.float32)[:, None, None]
        return image

    if modality_lut and ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        image = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    else:
        image = stored.astype(np.float32)
        if modality_lut:
            slope, intercept = _rescale(ds)
            if slope != 1.0:
                image *= np.float32(slope)
            if intercept != 0.0:
                image += np.float32(intercept)
    if invert_monochrome1 and photometric == "MONOCHROME1":
        low, high = modality_range(ds) if modality_lut else _stored_range(ds)
        image = np.float32(low + high) - image
    return image


# --------------------------------------------------------------------------- series
#: Attributes that tell the volumes of a 4-D series apart (several images at each slice
#: position: fMRI time points, DWI b-values/directions, echoes, magnitude and phase ...),
#: tried in this order; the first that gives every position the same set of distinct
#: values names the volumes. Classic and enhanced (functional group) attributes both.
VOLUME_ATTRIBUTES = (
    "TemporalPositionIdentifier", "TemporalPositionIndex", "EchoNumbers", "EffectiveEchoTime",
    "EchoTime", "DiffusionBValue", "DiffusionGradientOrientation", "ImageType", "FrameType",
    "ComplexImageComponent", "AcquisitionNumber", "FrameAcquisitionNumber", "StackID",
    "TriggerTime", "InversionTime", "SeriesNumber", "AcquisitionTime", "ContentTime",
    "FrameAcquisitionDateTime",
)


def _float_list(ds: Any, keyword: str, n: int, path: Any) -> np.ndarray:
    value = ds.get(keyword)
    try:
        array = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        array = np.array([])
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise InvalidImageError(f"{keyword} is {value!r}, expected {n} numbers", path)
    return array


@dataclass
class _Slice:
    """One 2-D image of a series: a single-frame file, or one frame of an enhanced file."""

    path: Path
    frame: int | None
    header: _Header = field(repr=False)

    @property
    def label(self) -> str:
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame}"

    @property
    def where(self) -> str:
        return str(self.path) if self.frame is None else f"{self.path} (frame {self.frame})"


def _slices_of(path: Path, ds: Any) -> list[_Slice]:
    if _has_functional_groups(ds):
        return [_Slice(path, f, _Header(ds, f)) for f in range(_number_of_frames(ds, path))]
    return [_Slice(path, None, _Header(ds))]


def _normalised(value: Any) -> Any:
    """A header value as a hashable, comparable key ('2', 2 and 2.0 are equal)."""
    from pydicom.dataset import Dataset

    if value is None or isinstance(value, Dataset):
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        if "\\" in value:
            return _normalised(value.split("\\"))
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text
        return round(number, 6) if np.isfinite(number) else text
    if isinstance(value, int | float | np.integer | np.floating):
        return round(float(value), 6)
    if isinstance(value, Iterable):
        items = tuple(_normalised(v) for v in value)
        return items[0] if len(items) == 1 else items
    return str(value)


def _sort_key(value: Any) -> tuple:
    if value is None:
        return (0, "")
    if isinstance(value, float):
        return (1, value)
    if isinstance(value, tuple):
        return (2, tuple(_sort_key(v) for v in value))
    return (3, str(value))


def _apply_select(slices: list[_Slice], select: Mapping[str, Any], where: Any) -> list[_Slice]:
    from pydicom.datadict import tag_for_keyword

    if not isinstance(select, Mapping):
        raise ConfigError(f"select must be a mapping of DICOM keyword to value, got {select!r}")
    for keyword in select:
        if not isinstance(keyword, str) or tag_for_keyword(keyword) is None:
            raise ConfigError(f"select: {keyword!r} is not a DICOM keyword")
    wanted = {k: _normalised(v) for k, v in select.items()}
    kept = [s for s in slices
            if all(_normalised(s.header.get(k)) == v for k, v in wanted.items())]
    if not kept:
        present = "; ".join(
            f"{k}: " + ", ".join(repr(v) for v in sorted(
                {_normalised(s.header.get(k)) for s in slices}, key=_sort_key)[:8])
            for k in select)
        raise InvalidImageError(f"no image matches select={dict(select)!r} (values present: "
                                f"{present})", where)
    return kept


def _volume_key(slices: list[_Slice], groups: list[list[int]]) -> tuple[tuple[str, ...], list]:
    """Attributes (and each slice's key) that split every position group into the same
    set of distinct volumes; ``((), [])`` when none does."""
    columns = {k: [_normalised(s.header.get(k)) for s in slices] for k in VOLUME_ATTRIBUTES}
    columns = {k: v for k, v in columns.items() if any(x is not None for x in v)}

    def splits(keys: list) -> bool:
        reference = None
        for group in groups:
            values = [keys[i] for i in group]
            if len(set(values)) != len(values):
                return False
            if reference is None:
                reference = set(values)
            elif set(values) != reference:
                return False
        return True

    for keyword, keys in columns.items():
        if splits(keys):
            return (keyword,), keys
    # DWI: b-value and direction together; only attributes with the same values at
    # every position (acquisition times, for one, differ from slice to slice)
    same_everywhere = [k for k, v in columns.items()
                       if len({tuple(sorted((v[i] for i in g), key=_sort_key)) for g in groups}) == 1
                       and any(len({v[i] for i in g}) > 1 for g in groups)]
    if len(same_everywhere) > 1:
        keys = [tuple(columns[k][i] for k in same_everywhere) for i in range(len(slices))]
        if splits(keys):
            return tuple(same_everywhere), keys
    return (), []


def _choose_volume(slices: list[_Slice], distance: np.ndarray, volume: int | None,
                   where: Any) -> tuple[list[int], dict[str, Any]]:
    """Indices of the slices of one volume (one per position) and what was chosen."""
    order = np.argsort(distance, kind="stable")
    groups: list[list[int]] = []
    for i in order:
        if groups and abs(distance[i] - distance[groups[-1][0]]) < 1e-3:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    counts = sorted({len(g) for g in groups})
    if counts == [1]:
        if volume not in (None, 0):
            raise InvalidImageError(f"volume={volume!r} asked for, but the series holds one "
                                    "image per slice position", where)
        return [g[0] for g in groups], {}
    if len(counts) > 1:
        group = next(g for g in groups if len(g) > 1)
        labels = " and ".join(slices[i].label for i in group[:3])
        raise InvalidImageError(
            f"duplicate slice position {distance[group[0]]:.3f} mm along the normal ({labels}): "
            f"positions hold {counts[0]} to {counts[-1]} images (duplicate or extra files, or "
            "an incomplete 4-D series); pass select={'<DICOM keyword>': value} to keep one "
            "image per position", where)
    n = counts[0]
    attributes, keys = _volume_key(slices, groups)
    if attributes:
        values = sorted(set(keys), key=_sort_key)
        if volume is None:
            shown = ", ".join(repr(v) for v in values[:6]) + (", ..." if n > 6 else "")
            example = (f"select={{'{attributes[0]}': {values[0]!r}}}" if len(attributes) == 1
                       else f"select={dict(zip(attributes, values[0], strict=True))!r}")
            raise InvalidImageError(
                f"the series holds {n} volumes per slice position ({n} images at each of "
                f"{len(groups)} positions: a 4-D series such as DWI, fMRI, multi-echo or "
                f"magnitude+phase); they differ in {' + '.join(attributes)}: {shown}. Read one "
                f"with volume=0..{n - 1} (in that order) or {example}", where)
        if not isinstance(volume, int | np.integer) or not 0 <= volume < n:
            raise InvalidImageError(f"volume={volume!r}: the series holds {n} volumes per "
                                    f"position (0..{n - 1})", where)
        wanted = values[int(volume)]
        chosen = [next(i for i in g if keys[i] == wanted) for g in groups]
        key = dict(zip(attributes, wanted if len(attributes) > 1 else (wanted,), strict=True))
        return chosen, {"volumes_per_position": n, "volume": int(volume), "volume_key": key}
    if volume is None:
        raise InvalidImageError(
            f"the series holds {n} volumes per slice position ({n} images at each of "
            f"{len(groups)} positions: a 4-D series), and none of {', '.join(VOLUME_ATTRIBUTES)} "
            f"tells them apart. Read one with volume=0..{n - 1} (the k-th image at each "
            "position in Instance Number order) or select={'<DICOM keyword>': value}", where)
    if not isinstance(volume, int | np.integer) or not 0 <= volume < n:
        raise InvalidImageError(f"volume={volume!r}: the series holds {n} volumes per "
                                f"position (0..{n - 1})", where)

    def instance(i: int) -> tuple:
        number = _normalised(slices[i].header.get("InstanceNumber"))
        return (_sort_key(number), slices[i].label)

    chosen = [sorted(g, key=instance)[int(volume)] for g in groups]
    return chosen, {"volumes_per_position": n, "volume": int(volume),
                    "volume_key": {"InstanceNumber order": int(volume)}}


def _assemble(
    slices: list[_Slice],
    where: Path,
    *,
    select: Mapping[str, Any] | None,
    volume: int | None,
    canonical: bool,
    spacing_tolerance: float,
    progress: bool,
    meta: dict[str, Any],
) -> Volume:
    """Slices (files or frames) -> a Volume: geometry checks, one volume of a 4-D
    series, gap check, pixels, affine."""
    from tqdm.auto import tqdm

    if select:
        slices = _apply_select(slices, select, where)
    first = slices[0]
    orientation = _float_list(first.header, "ImageOrientationPatient", 6, first.where)
    row_cos, col_cos = orientation[:3], orientation[3:]
    pixel_spacing = _float_list(first.header, "PixelSpacing", 2, first.where)
    if np.any(pixel_spacing <= 0):
        raise InvalidImageError(f"PixelSpacing is {pixel_spacing.tolist()}, expected two "
                                "positive numbers (mm)", first.where)
    try:
        shape = (int(first.header.get("Rows")), int(first.header.get("Columns")))
    except (TypeError, ValueError):
        raise InvalidImageError("Rows/Columns missing or not integers", first.where) from None
    positions = []
    for s in slices:
        if not np.allclose(_float_list(s.header, "ImageOrientationPatient", 6, s.where),
                           orientation, atol=1e-4):
            raise InvalidImageError(
                f"inconsistent orientation: ImageOrientationPatient "
                f"{list(s.header.get('ImageOrientationPatient'))} differs from "
                f"{orientation.tolist()} of {first.label}", s.where)
        size = (s.header.get("Rows"), s.header.get("Columns"))
        if size != shape:
            raise InvalidImageError(f"slice is {size[0]}x{size[1]}, expected "
                                    f"{shape[0]}x{shape[1]} like {first.label}", s.where)
        if not np.allclose(_float_list(s.header, "PixelSpacing", 2, s.where), pixel_spacing,
                           rtol=1e-4):
            raise InvalidImageError(f"PixelSpacing {list(s.header.get('PixelSpacing'))} differs "
                                    f"from {pixel_spacing.tolist()} of {first.label}", s.where)
        positions.append(_float_list(s.header, "ImagePositionPatient", 3, s.where))
    positions_lps = np.array(positions)
    normal = np.cross(row_cos, col_cos)
    distance = positions_lps @ normal
    chosen, chosen_meta = _choose_volume(slices, distance, volume, where)
    chosen.sort(key=lambda i: distance[i])
    slices = [slices[i] for i in chosen]
    distance, positions_lps = distance[chosen], positions_lps[chosen]

    if len(slices) > 1:
        steps = np.diff(distance)
        step = float(np.median(steps))
        irregular = np.flatnonzero(np.abs(steps - step) > spacing_tolerance * step)
        if irregular.size:
            i = int(irregular[0])
            missing = round(steps[i] / step) - 1
            what = (f"about {missing} missing slice(s)" if missing >= 1
                    else "irregular slice spacing")
            raise InvalidImageError(
                f"{what}: step {steps[i]:.3f} mm between {slices[i].label} and "
                f"{slices[i + 1].label}, expected {step:.3f} mm", where)
        slice_vector = (positions_lps[-1] - positions_lps[0]) / (len(slices) - 1)
    else:
        thickness = first.header.get("SpacingBetweenSlices") or first.header.get("SliceThickness")
        try:
            thickness = float(thickness) if thickness not in (None, "") else 1.0
        except (TypeError, ValueError):
            thickness = 1.0
        slice_vector = normal * (thickness if np.isfinite(thickness) and thickness > 0 else 1.0)

    images = []
    decoded: dict[Path, np.ndarray] = {}  # enhanced files: decoded once, frames taken from it
    for s in tqdm(slices, desc="slices", unit="slice", disable=not progress, leave=False):
        if s.frame is None:
            image = dicom_pixels(s.path)
        else:
            if s.path not in decoded:
                pixels = dicom_pixels(s.path)
                decoded[s.path] = pixels[np.newaxis] if pixels.ndim == 2 else pixels
            image = decoded[s.path][s.frame]
        if image.ndim != 2:
            raise InvalidImageError(f"expected a single-frame greyscale slice, got shape "
                                    f"{image.shape}", s.where)
        images.append(image)
    # (slices, rows, cols) -> NIfTI order (x=column, y=row, z=slice)
    array = np.ascontiguousarray(np.stack(images, axis=0).transpose(2, 1, 0))
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_cos * pixel_spacing[1]  # along a row: column index, column spacing
    affine_lps[:3, 1] = col_cos * pixel_spacing[0]  # down a column: row index, row spacing
    affine_lps[:3, 2] = slice_vector
    affine_lps[:3, 3] = positions_lps[0]
    meta = {
        "path": str(where),
        "series_uid": str(first.header.get("SeriesInstanceUID", "")),
        "modality": str(first.header.get("Modality", "")),
        "n_slices": len(slices),
        "files": [str(s.path) for s in slices],
        **({"frames": [s.frame for s in slices]} if any(s.frame is not None for s in slices)
           else {}),
        **chosen_meta,
        **meta,
    }
    result = Volume(array, LPS_TO_RAS @ affine_lps, meta)
    return result.to_canonical() if canonical else result


def read_series(
    directory: str | os.PathLike,
    *,
    series_uid: str | None = None,
    canonical: bool = True,
    spacing_tolerance: float = 0.05,
    progress: bool = False,
    select: Mapping[str, Any] | None = None,
    volume: int | None = None,
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

    Enhanced multi-frame files in the folder contribute one slice per frame, with
    the frame's geometry from the Plane Position/Orientation (Patient) and Pixel
    Measures functional groups (see :func:`read_enhanced`).

    A **4-D series** holds several images at each slice position (fMRI time
    points, DWI b-values and directions, echoes, magnitude and phase). Read one
    volume at a time: ``volume=k`` takes the k-th volume, in the order of the
    attribute that tells them apart (the first of :data:`VOLUME_ATTRIBUTES` that
    does; else Instance Number order at each position), and
    ``select={"EchoNumbers": 2}`` keeps only the images whose header has those
    values (any DICOM keywords). Without either, a 4-D series is an error that
    says how many volumes there are and what tells them apart.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder holding the series' files (any names). Files that are not DICOM
        (a README, ``DICOMDIR``) are skipped; a file that claims to be DICOM (the
        ``DICM`` prefix or a ``.dcm``/``.ima`` name) but cannot be read is an
        error naming it, never silently dropped.
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
    select : mapping of str to value, optional
        Keep only images whose header attributes equal these values (``'2'``,
        ``2`` and ``2.0`` compare equal; multi-valued attributes as a list or
        backslash-separated text), e.g. ``{"ImageType": "ORIGINAL\\\\PRIMARY\\\\M"}``.
    volume : int, optional
        For a 4-D series: which volume (0-based) to read.

    Returns
    -------
    Volume
        float32 array ``(x, y, z)``; ``meta`` holds ``path``, ``series_uid``,
        ``modality``, ``n_slices``, ``files`` (in slice order), ``skipped``
        (names of the non-DICOM files passed over), ``frames`` (frame index per
        slice, for enhanced files) and, for a 4-D series, ``volumes_per_position``,
        ``volume`` and ``volume_key`` (the attribute values of the volume read).

    Raises
    ------
    DecodeError
        A file that looks like DICOM cannot be read or decoded (truncated,
        corrupt); the message names it.
    InvalidImageError
        No DICOM image in the folder, several series without ``series_uid``,
        slices of different size or orientation, duplicate positions, a 4-D
        series without ``volume``/``select``, missing slices (a gap larger than
        the regular step), missing or impossible geometry fields.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidImageError("not a directory (expected a folder of DICOM slices)", directory)
    headers = []
    skipped: list[str] = []
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        if path.name.upper() == "DICOMDIR":
            skipped.append(path.name)
            continue
        try:
            ds = read_dicom(path, header_only=True)
        except DecodeError:
            if _looks_like_dicom(path):
                raise  # a damaged slice is an error, not a README
            skipped.append(path.name)
            continue
        if "ImagePositionPatient" in ds or "Rows" in ds or _has_functional_groups(ds):
            headers.append((path, ds))
        else:  # DICOM without an image (structured report ...), unless it was cut short
            reason = _truncation(path)
            if reason:
                raise DecodeError(f"truncated: {reason}", path)
            if not str(ds.get("SOPClassUID", "")).strip():  # every stored object has one
                raise DecodeError("damaged DICOM header: no image attributes and no SOP Class "
                                  "UID", path)
            skipped.append(path.name)
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
    slices = [s for path, ds in headers for s in _slices_of(path, ds)]
    return _assemble(slices, directory, select=select, volume=volume, canonical=canonical,
                     spacing_tolerance=spacing_tolerance, progress=progress,
                     meta={"skipped": skipped})


def read_enhanced(
    path: str | os.PathLike,
    *,
    canonical: bool = True,
    spacing_tolerance: float = 0.05,
    select: Mapping[str, Any] | None = None,
    volume: int | None = None,
) -> Volume:
    """Read one enhanced multi-frame file (Enhanced CT/MR/PET ...) as a 3-D :class:`Volume`.

    Each frame is one slice. Its position and orientation come from the Plane
    Position (Patient) and Plane Orientation (Patient) functional groups, its
    pixel spacing from Pixel Measures, its values from its own Pixel Value
    Transformation (:func:`dicom_pixels`); per-frame groups override shared ones
    (PS3.3 C.7.6.16). Frames are sorted along the slice normal as in
    :func:`read_series` (the file's frame order does not matter), and a file with
    several frames per position (time points, echoes, b-values, stacks) is read one
    volume at a time with ``volume=`` or ``select=`` (keywords may name
    functional-group attributes such as ``TemporalPositionIndex``,
    ``EffectiveEchoTime``, ``DiffusionBValue`` or ``StackID``).

    Parameters
    ----------
    path : str or os.PathLike
        The enhanced DICOM file.
    canonical, spacing_tolerance, select, volume
        As for :func:`read_series`.

    Returns
    -------
    Volume
        float32 ``(x, y, z)``; ``meta`` as for :func:`read_series`, with
        ``frames`` (0-based frame index of each slice).

    Raises
    ------
    DecodeError
        The file cannot be read or decoded (truncated, corrupt).
    InvalidImageError
        Not an enhanced file (no functional groups), frames of different
        orientation or size, missing geometry, several frames per position
        without ``volume``/``select``, missing slices.

    Examples
    --------
    >>> ct = read_enhanced(get_testdata_file("eCT_Supplemental.dcm"))  # doctest: +SKIP
    >>> ct.spacing                                                     # doctest: +SKIP
    (0.388672, 0.388672, 10.0)
    """
    path = Path(path)
    ds = read_dicom(path, header_only=True)
    if not _has_functional_groups(ds):
        raise InvalidImageError("not an enhanced multi-frame file (no Shared or Per-frame "
                                "Functional Groups Sequence); read a folder of single-frame "
                                "slices with read_series", path)
    return _assemble(_slices_of(path, ds), path, select=select, volume=volume,
                     canonical=canonical, spacing_tolerance=spacing_tolerance, progress=False,
                     meta={})


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


def _metadata_row(path: str, *, fields: tuple[tuple[int, str], ...], pixel_stats: bool,
                  hash_ids: bool) -> dict[str, Any]:
    """One table row for one file; errors become the ``error`` column."""
    row: dict[str, Any] = {"path": path}
    flags: list[str] = []
    try:
        ds = read_dicom(path, header_only=not pixel_stats,
                        specific_tags=None if pixel_stats else [tag for tag, _ in fields])
    except DecodeError as exc:
        row["error"] = exc.detail
        return row
    for tag, column in fields:
        element = ds.get(tag)
        value = element.value if element is not None else None
        if tag == _PIXEL_SPACING_TAG:
            try:
                row_mm, col_mm = (float(v) for v in value)
            except (TypeError, ValueError):
                row_mm = col_mm = None
                flags.append("PixelSpacing missing" if value is None
                             else f"PixelSpacing {_plain_value(value)!r} unreadable")
            else:
                if not (np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
                    flags.append(f"PixelSpacing {_plain_value(value)!r} impossible (not positive "
                                 "and finite; set to missing)")
                    row_mm = col_mm = None
            row["pixel_spacing_x_mm"] = col_mm  # along a row = between columns
            row["pixel_spacing_y_mm"] = row_mm
        elif tag == _PATIENT_AGE_TAG:
            years, flag = parse_age(value)
            row["age_years"] = years
            if flag:
                flags.append(flag)
            if value is None or not str(value).strip():
                flags.append("PatientAge missing")
        else:
            value = _plain_value(value)
            if hash_ids and tag in HASHED_TAGS and value is not None:
                value = opaque_ids([value])[0]
            row[column] = value
    if pixel_stats:
        try:
            row.update(_pixel_statistics(ds))
        except InvalidImageError as exc:  # DecodeError included
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
              and not _has_functional_groups(ds) and _number_of_frames(ds, where) == 1)
    if simple:
        stored = _decode(ds, where)
        if stored.ndim == 2 and stored.dtype in (np.uint8, np.uint16, np.int16, np.float32):
            slope, intercept = _rescale(ds)
            a, b = slope, intercept
            if photometric == "MONOCHROME1":
                low, high = modality_range(ds)
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


def _metadata_chunk(paths: Sequence[str], *, fields: tuple[tuple[int, str], ...],
                    pixel_stats: bool, hash_ids: bool) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        try:
            with warnings.catch_warnings():  # e.g. RSNA's bare-digit ages are invalid AS
                warnings.simplefilter("ignore", UserWarning)
                rows.append(_metadata_row(path, fields=fields, pixel_stats=pixel_stats,
                                          hash_ids=hash_ids))
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


def _refuse_identifying(tags: Iterable[int], what: str) -> None:
    refused = [tag_name(t) for t in tags]
    if refused:
        raise PrivacyError(
            f"{what} never shows identifying attributes (the Patient module, the PS3.15 "
            f"Annex E basic de-identification profile, private tags): {', '.join(refused)}; "
            "remove them, or pass allow_identifying=True if you are entitled to see them")


def _resolve_fields(fields: Sequence[Any], allow_identifying: bool) -> tuple[tuple[int, str], ...]:
    """(tag, column name) per requested field; identifying ones refused by tag."""
    from pydicom.datadict import keyword_for_tag

    resolved = []
    for name in fields:
        try:
            tag = parse_tag(name)
        except ValueError as exc:
            raise ConfigError(f"dicom_metadata fields: {exc} (use keywords, tags, "
                              "(group, element) pairs or 'gggg,eeee' text)") from None
        resolved.append((tag, keyword_for_tag(tag) or tag_name(tag)))
    if not allow_identifying:
        _refuse_identifying([t for t, _ in resolved if is_identifying(t)
                             and t not in RETAINED_CHARACTERISTICS and t not in HASHED_TAGS],
                            "dicom_metadata")
    return tuple(resolved)


def dicom_metadata(
    paths: Iterable[str | os.PathLike],
    *,
    fields: Sequence[Any] | None = None,
    pixel_stats: bool = False,
    n_jobs: int | None = -1,
    progress: bool = True,
    allow_identifying: bool = False,
) -> Any:
    """A typed metadata table for many DICOM files, built in parallel.

    Header fields are read without the pixel data (``stop_before_pixels`` and
    ``specific_tags``: only the asked-for elements are parsed) unless
    ``pixel_stats`` asks for intensity statistics, which need decoding. Work
    is spread over processes (decoding is CPU-bound) in chunks, with a
    progress bar; the DataFrame is built once at the end.

    Privacy: identifying attributes are refused **by tag**, whatever form names
    them (keyword, int, ``pydicom.tag.Tag``, ``(group, element)``, ``"0010,0010"``):
    the Patient module group ``(0010,xxxx)``, every attribute of the PS3.15
    Annex E basic de-identification profile (Table E.1-1) and private tags. Two
    exceptions: the patient characteristics the profile's Retain Patient
    Characteristics Option keeps (age, sex, size, weight ...), and identifiers
    (Patient ID, Accession Number, Study ID, UIDs) which come out as opaque
    salted hashes (:func:`opaque_ids`): rows stay joinable, the IDs stay hidden.
    ``allow_identifying=True`` lifts both rules (raw values).

    Parameters
    ----------
    paths : iterable of path
        DICOM files.
    fields : sequence, optional
        DICOM attributes to read, as keywords or tags in any form; default
        :data:`DEFAULT_METADATA_FIELDS`. Known fields get typed, snake-case
        columns (below); any other becomes a column named by its keyword (or
        ``(gggg,eeee)``) holding the plain value.
    pixel_stats : bool
        Also decode each image (:func:`dicom_pixels`) and add ``pixel_min``,
        ``pixel_max``, ``pixel_mean``, ``pixel_std`` (float, modality units).
    n_jobs : int, optional
        Worker processes (-1: every core, but this process alone when the batch
        is too small to repay starting a pool; a positive number is obeyed).
    progress : bool
        Show a progress bar.
    allow_identifying : bool
        Explicit opt-in: read identifying attributes and keep identifiers raw.
        Only for people entitled to see them; never for tables that are shown,
        saved or shared.

    Returns
    -------
    pandas.DataFrame
        One row per path, in input order, with ``path``; ``patient_id``
        (string: an opaque hash of Patient ID, ``p`` + 10 hex digits, unless
        ``allow_identifying``); ``age_years`` (nullable Int64; impossible ages
        such as 148 are set to missing and flagged); ``sex``, ``view_position``,
        ``modality``, ``body_part``, ``photometric`` (category);
        ``pixel_spacing_x_mm``/``pixel_spacing_y_mm`` (float, between columns
        and between rows; missing when absent, unreadable or impossible: zero,
        negative or not finite, e.g. ``0\\0``, each flagged in ``issues``);
        ``rows``, ``columns``, ``bits_stored`` (Int64); ``issues`` (string:
        impossible age, missing or impossible Pixel Spacing, ...; missing when
        all is well) and ``error`` (string: why a file could not be read; its
        other columns are missing).

    Raises
    ------
    PrivacyError
        ``fields`` names an identifying attribute (and ``allow_identifying`` is
        False). A ``ValueError``.
    ConfigError
        A field is not a DICOM keyword or tag.

    Examples
    --------
    >>> table = dicom_metadata(sorted(Path("data/rsna").glob("*/*.dcm")))  # doctest: +SKIP
    >>> table.groupby("view_position", observed=True).age_years.median()  # doctest: +SKIP
    """
    import pandas as pd

    from .._parallel import map_items, resolve_n_jobs

    resolved = _resolve_fields(DEFAULT_METADATA_FIELDS if fields is None else list(fields),
                               allow_identifying)
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
    results = map_items(partial(_metadata_chunk, fields=resolved, pixel_stats=pixel_stats,
                                hash_ids=not allow_identifying),
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
    for tag, column in resolved:
        if tag == _PIXEL_SPACING_TAG:
            columns += ["pixel_spacing_x_mm", "pixel_spacing_y_mm"]
        elif tag == _PATIENT_AGE_TAG:
            columns.append("age_years")
        else:
            columns.append(column)
    if pixel_stats:
        columns += ["pixel_min", "pixel_max", "pixel_mean", "pixel_std"]
    columns += ["issues", "error"]
    columns = list(dict.fromkeys(columns))  # a field asked for twice gives one column
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


def header_table(ds: Any, keywords: Sequence[Any] | None = None, *,
                 hide: Iterable[Any] = (), max_chars: int = 64,
                 allow_identifying: bool = False) -> Any:
    """The elements of a DICOM header as a table, identifying values masked.

    Values of identifying attributes are shown as ``"<hidden>"``: decided by tag,
    as in :func:`dicom_metadata` (the Patient module, the PS3.15 Annex E basic
    profile, identifiers and UIDs, and every private tag, which may hold names),
    except the retained patient characteristics (age, sex, size, weight ...).

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset (file meta elements are listed first when present).
    keywords : sequence, optional
        Only these elements, in this order (absent ones are left out); keywords or
        tags in any form :func:`dicom_metadata` accepts.
    hide : iterable, optional
        Further attributes (keywords or tags) whose values are hidden.
    max_chars : int
        Longer values are shortened; pixel data is summarised by its size.
    allow_identifying : bool
        Explicit opt-in: show identifying values (only for people entitled to
        see them).

    Returns
    -------
    pandas.DataFrame
        Columns ``tag``, ``keyword``, ``VR``, ``value`` (strings), in file order;
        sequences appear as one row with their item count.
    """
    import pandas as pd

    def tag_of(name: Any) -> int:
        try:
            return parse_tag(name)
        except ValueError as exc:
            raise ConfigError(f"header_table: {exc}") from None

    hidden = {tag_of(h) for h in hide}
    rows = []
    meta = getattr(ds, "file_meta", None)
    if keywords is None:
        elements = list(meta or []) + list(ds)
    else:
        elements = []
        for name in keywords:
            tag = tag_of(name)
            holder = meta if meta is not None and tag >> 16 == 0x0002 else ds
            if tag in holder:
                elements.append(holder[tag])
    for element in elements:
        tag = int(element.tag)
        keyword = element.keyword or "(private)"
        identifying = is_identifying(tag) and tag not in RETAINED_CHARACTERISTICS
        if tag in hidden or (identifying and not allow_identifying):
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
