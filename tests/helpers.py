"""Small helpers several test modules share (import as ``from tests.helpers import ...``)."""

from __future__ import annotations

import nibabel as nib


def save_nifti(path, array, affine, *, codes=1):
    """Write ``array`` to ``path`` (NIfTI-1) with the sform and qform both set to ``affine``
    under the code ``codes`` (1 = scanner; 0 = unset), creating parent folders; returns
    ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(array, affine)
    img.set_sform(affine, code=codes)
    img.set_qform(affine, code=codes)
    nib.save(img, str(path))
    return path
