"""Image input and output: NIfTI volumes (:class:`Volume`) and DICOM files and series.

All public names live here (``medimg.io.read_nifti`` ...); the submodules are private
organisation.
"""

from .dicom import (
    DEFAULT_METADATA_FIELDS,
    FORBIDDEN_FIELDS,
    HIDDEN_IN_DISPLAY,
    LPS_TO_RAS,
    dicom_metadata,
    dicom_pixels,
    header_table,
    opaque_ids,
    parse_age,
    read_dicom,
    read_series,
)
from .volume import Volume, read_nifti, write_nifti

__all__ = [
    "DEFAULT_METADATA_FIELDS",
    "FORBIDDEN_FIELDS",
    "HIDDEN_IN_DISPLAY",
    "LPS_TO_RAS",
    "Volume",
    "dicom_metadata",
    "dicom_pixels",
    "header_table",
    "opaque_ids",
    "parse_age",
    "read_dicom",
    "read_nifti",
    "read_series",
    "write_nifti",
]
