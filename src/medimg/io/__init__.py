"""Image input and output: NIfTI volumes (:class:`Volume`) and DICOM files and series.

All public names live here (``medimg.io.read_nifti`` ...); the submodules are private
organisation.
"""

from typing import Any

from .dicom import (
    DEFAULT_METADATA_FIELDS,
    LPS_TO_RAS,
    VOLUME_ATTRIBUTES,
    dicom_metadata,
    dicom_pixels,
    header_table,
    opaque_ids,
    parse_age,
    read_dicom,
    read_enhanced,
    read_series,
)
from .volume import READABLE_FORMATS, Volume, read_nifti, write_nifti

__all__ = [
    "DEFAULT_METADATA_FIELDS",
    "FORBIDDEN_FIELDS",  # from .dicom on first use (needs pydicom's dictionary)
    "HIDDEN_IN_DISPLAY",
    "LPS_TO_RAS",
    "READABLE_FORMATS",
    "VOLUME_ATTRIBUTES",
    "Volume",
    "dicom_metadata",
    "dicom_pixels",
    "header_table",
    "opaque_ids",
    "parse_age",
    "read_dicom",
    "read_enhanced",
    "read_nifti",
    "read_series",
    "write_nifti",
]


def __getattr__(name: str) -> Any:
    if name in ("FORBIDDEN_FIELDS", "HIDDEN_IN_DISPLAY"):
        from . import dicom

        return getattr(dicom, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
