"""Image input and output: NIfTI volumes (:class:`Volume`) and DICOM files and series.

All public names live here (``medimg.io.read_nifti`` ...); the submodules are private
organisation.
"""

from .volume import Volume, read_nifti, write_nifti

__all__ = ["Volume", "read_nifti", "write_nifti"]
