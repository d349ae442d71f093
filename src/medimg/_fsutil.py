"""Atomic file writing: a file appears complete under its final name or not at all.

Files end with the mode the process umask gives a new file (``0o666 & ~umask``, as
:func:`open` would create it), not the ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows.

    Linux reports it in ``/proc/self/status``; elsewhere it is read by setting and
    restoring it (under a lock, so threads of this process do not race).
    """
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Mode a new regular file gets from :func:`open`: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory (so the final ``os.replace`` is an
    atomic rename on one file system) and keeps the final suffix (so libraries that
    choose a format from the extension, such as nibabel with ``.nii.gz``, still do
    the right thing). If the body raises, the temporary file is removed and ``path``
    is left untouched: a rerun never sees a half-written file. The finished file
    has the mode the umask gives any new file (e.g. ``0o644`` under umask ``022``),
    not the private ``0o600`` the temporary file was created with.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination. Parent directories are created.
    suffix : str, optional
        Suffix of the temporary file; defaults to the full suffix of ``path``
        (``.nii.gz`` for ``x.nii.gz``).

    Yields
    ------
    pathlib.Path
        Where to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes) if path.suffixes else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # the writer may have replaced the file; set the mode on what will be renamed
        if tmp_path.is_file():
            os.chmod(tmp_path, default_file_mode())
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8) and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
