"""The exception hierarchy of medimg.

Every error medimg raises on bad input is a :class:`MedimgError`, so a notebook or
a batch job can catch one type. Messages name the file (or subject), the field and
what was expected, e.g.::

    InvalidImageError: data/x.dcm: Pixel Spacing missing (expected 2 values in mm)
"""

from __future__ import annotations

import os

__all__ = [
    "ConfigError",
    "DecodeError",
    "InvalidImageError",
    "LayoutError",
    "MedimgError",
    "NotebookError",
    "PatchError",
    "PrivacyError",
]


class MedimgError(Exception):
    """Base class of every error medimg raises on purpose.

    Parameters
    ----------
    message : str
        What is wrong and what was expected.
    path : str or os.PathLike, optional
        The file (or directory, or subject) the problem is in. When given it is
        put in front of the message so that the message always names it.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.detail = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class ConfigError(MedimgError, ValueError):
    """A configuration file is missing, malformed, or holds an unknown key or a wrong type."""


class InvalidImageError(MedimgError, ValueError):
    """An image or volume cannot be used: wrong shape, affine, values, or missing fields."""


class DecodeError(InvalidImageError):
    """A file cannot be read or decoded (not DICOM/NIfTI, truncated, no decoder installed)."""


class LayoutError(MedimgError):
    """A data set on disk does not have the layout expected (missing or ambiguous files,
    label tables that disagree with each other or with the images)."""


class PatchError(MedimgError, ValueError):
    """Patches cannot be drawn as asked (patch larger than the volume, no position
    satisfies the foreground threshold)."""


class PrivacyError(MedimgError, ValueError):
    """A request would put identifying data (a patient's name, birth date, IDs, private
    attributes ...) into a table or an output; the message says which attribute and
    the explicit opt-in that allows it."""


class NotebookError(MedimgError):
    """A notebook failed to execute; the message names the notebook and the cell."""
