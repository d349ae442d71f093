"""The one cache rule: keyed on settings and sources, atomic, resumable, locked.

Every preprocessed cache in medimg (the segmentation cases, the BraTS HDF5 files, the
RSNA images, the VerSe slices) follows the same rule, written once here:

- **Keyed.** A cache folder is named after a hash of its settings
  (:func:`settings_key`): change a setting and the work is redone in a new folder,
  never mixed with the old one. Each item also records a stamp of its source files
  (:func:`source_stamp`: path, size and modification time): an edited source redoes
  that item only.
- **Atomic.** Items are written under a temporary name (a dot-file) and renamed when
  complete (:mod:`medimg._fsutil`), with the umask's mode.
- **Resumable, losing nothing.** The manifest (``manifest.csv``) is rewritten as each
  item ends, so an interrupted run (Ctrl-C, ``kill -9``) keeps what it finished; a
  rerun redoes only the rest. A failing item is recorded with its error and the batch
  goes on.
- **Locked.** A build holds an exclusive lock on the folder (``.lock``), so two
  processes never write one cache at once; the holder removes temporary files a
  killed run left behind. Listing (:func:`cached_items`) never returns a temporary or
  failed item.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .._fsutil import atomic_write_text
from ..errors import LayoutError

__all__ = [
    "MANIFEST",
    "MANIFEST_COLUMNS",
    "build",
    "cache_folder",
    "cached_items",
    "clean_temporary",
    "lock",
    "read_h5",
    "read_manifest",
    "settings_key",
    "source_stamp",
    "write_h5",
]

#: File name of a cache folder's manifest.
MANIFEST = "manifest.csv"
#: Columns of the manifest (``status``: ok, cached or error).
MANIFEST_COLUMNS = ["item", "status", "path", "source", "seconds", "error"]
_SETTINGS = "settings.json"
_LOCK = ".lock"


def _plain(value: Any) -> Any:
    """JSON-able form of settings (tuples as lists, NumPy scalars as Python numbers)."""
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def settings_key(settings: Mapping[str, Any], length: int = 12) -> str:
    """A short stable hash of ``settings`` (key order and tuple/list do not matter).

    Examples
    --------
    >>> settings_key({"a": 1, "b": (2, 3)}) == settings_key({"b": [2, 3], "a": 1})
    True
    """
    text = json.dumps(_plain(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def source_stamp(paths: Sequence[str | os.PathLike | None] | str | os.PathLike) -> str:
    """A stamp of source files: their resolved paths, sizes and modification times.

    Any edit, replacement or move of a source changes the stamp. A missing file is
    part of the stamp too (``missing``), so a file appearing later changes it.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    parts = []
    for path in paths:
        if path is None:
            parts.append("none")
            continue
        p = Path(path)
        try:
            st = p.stat()
            parts.append(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p}|missing")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def cache_folder(root: str | os.PathLike, name: str, settings: Mapping[str, Any]) -> Path:
    """``<root>/<name>-<settings_key>``, created, with its ``settings.json`` beside.

    Parameters
    ----------
    root : path
        Where caches of this kind live (e.g. ``data/cache/segmentation``).
    name : str
        What is cached (the data set's name).
    settings : mapping
        Everything that changes the cached content (plan, versions of the layout).
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "cache"
    folder = Path(root) / f"{safe}-{settings_key(settings)}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _SETTINGS
    text = json.dumps(_plain(settings), indent=2, sort_keys=True) + "\n"
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        atomic_write_text(target, text)
    return folder


@contextlib.contextmanager
def lock(folder: str | os.PathLike, *, wait: bool = True) -> Iterator[Path]:
    """Hold the exclusive build lock of a cache folder (``fcntl.flock``).

    Raises
    ------
    LayoutError
        ``wait=False`` and another process holds the lock.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / _LOCK, "a+")  # closed in finally
    try:
        flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle.fileno(), flags)
        except BlockingIOError:
            raise LayoutError("another process is building this cache", folder) from None
        yield folder
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def clean_temporary(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files an interrupted write left (``.<stem>.*.tmp*``).

    Call it only while holding :func:`lock` (nobody else is writing then).

    Returns
    -------
    list of pathlib.Path
        What was removed.
    """
    removed = []
    for path in Path(folder).glob(".*.tmp*"):
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def read_manifest(folder: str | os.PathLike) -> pd.DataFrame:
    """The manifest of a cache folder (empty with :data:`MANIFEST_COLUMNS` if none).

    A damaged manifest reads as empty: the items are then redone, never trusted.
    """
    path = Path(folder) / MANIFEST
    if path.is_file():
        try:
            table = pd.read_csv(path, dtype={"item": str, "status": str, "path": str,
                                             "source": str, "error": str})
            if list(table.columns[:len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS:
                return table
        except (OSError, ValueError, pd.errors.ParserError):
            pass
    return pd.DataFrame(columns=MANIFEST_COLUMNS)


def _write_manifest(folder: Path, records: Mapping[str, dict[str, Any]],
                    extra_columns: Sequence[str]) -> None:
    columns = MANIFEST_COLUMNS + [c for c in extra_columns if c not in MANIFEST_COLUMNS]
    table = pd.DataFrame(list(records.values()), columns=columns)
    atomic_write_text(folder / MANIFEST, table.to_csv(index=False))


def cached_items(folder: str | os.PathLike) -> pd.DataFrame:
    """The usable items of a cache: status ok or cached, and the file present.

    Never lists temporary files (they are not in the manifest) nor failed items.

    Returns
    -------
    pandas.DataFrame
        The manifest rows of usable items (``item``, ``path``, ...), sorted by item.
    """
    folder = Path(folder)
    table = read_manifest(folder)
    if table.empty:
        return table
    ok = table["status"].isin(["ok", "cached"])
    present = table["path"].map(lambda p: isinstance(p, str) and (folder / Path(p).name).is_file())
    out = table[ok & present].copy()
    out["path"] = out["path"].map(lambda p: str(folder / Path(p).name))
    return out.sort_values("item", ignore_index=True)


def build(
    items: Sequence[Mapping[str, Any]],
    work: Callable[[Mapping[str, Any]], Mapping[str, Any] | None],
    folder: str | os.PathLike,
    *,
    n_jobs: int | None = -1,
    progress: bool = True,
    desc: str = "caching",
    unit: str = "item",
    overwrite: bool = False,
    extra_columns: Sequence[str] = (),
    backend: str | None = None,
) -> pd.DataFrame:
    """Run ``work`` on every item not yet cached, recording each as it ends.

    Parameters
    ----------
    items : sequence of mappings
        Each with ``item`` (a unique name, e.g. the case), ``target`` (the file the
        work writes, inside ``folder``) and ``sources`` (paths its content comes
        from), optionally ``settings`` (a mapping: when the folder is not keyed on the
        settings, they key each item instead, so a change redoes it); anything else is
        passed on to ``work``.
    work : callable
        A picklable function of one item that writes ``item["target"]`` atomically
        and returns a mapping of extra manifest columns (or None). It may raise: the
        item is then recorded as an error and the others go on.
    folder : path
        The cache folder (from :func:`cache_folder`).
    n_jobs : int, optional
        Worker processes (-1: every core).
    progress : bool
        Show a progress bar.
    desc, unit : str
        Progress-bar label.
    overwrite : bool
        Redo every item.
    extra_columns : sequence of str
        Columns of the manifest filled from ``work``'s return value.
    backend : str, optional
        :func:`medimg._parallel.map_items` backend (default: processes; ``dask`` for a
        cluster).

    Returns
    -------
    pandas.DataFrame
        The manifest: ``item, status (ok | cached | error), path, source, seconds,
        error`` and ``extra_columns``, in the order of ``items``.
    """
    from .._parallel import map_items

    folder = Path(folder)
    with lock(folder):
        clean_temporary(folder)
        previous = {str(r["item"]): r for r in read_manifest(folder).to_dict("records")}
        records: dict[str, dict[str, Any]] = {}
        todo = []
        for item in items:
            name = str(item["item"])
            if name in records:
                raise LayoutError(f"two items are named {name!r}", folder)
            stamp = source_stamp(item.get("sources") or [])
            if item.get("settings") is not None:  # per-item settings key the item too
                stamp = f"{stamp}-{settings_key(item['settings'])}"
            target = Path(item["target"])
            record = {"item": name, "status": None, "path": str(target), "source": stamp,
                      "seconds": float("nan"), "error": None}
            old = previous.get(name)
            if (not overwrite and old is not None and old.get("status") in ("ok", "cached")
                    and old.get("source") == stamp and target.is_file()):
                record.update({k: old.get(k) for k in extra_columns if k in old})
                record.update(status="cached", seconds=old.get("seconds"))
            else:
                todo.append({**item, "item": name, "target": str(target)})
            records[name] = record
        _write_manifest(folder, records, extra_columns)

        def finished(result: Any) -> None:
            name = result.item["item"]
            record = records[name]
            if result.ok:
                record.update(status="ok", error=None, **dict(result.value or {}))
            else:
                error = result.error or "unknown error"
                record.update(status="error",
                              error=error if name in error else f"{error} [{name}]")
            _write_manifest(folder, records, extra_columns)

        map_items(_timed(work), todo, n_jobs=n_jobs, progress=progress, desc=desc, unit=unit,
                  on_result=finished, **({"backend": backend} if backend else {}))
    return pd.DataFrame(list(records.values()),
                        columns=MANIFEST_COLUMNS + [c for c in extra_columns
                                                    if c not in MANIFEST_COLUMNS])


class _timed:
    """``work`` wrapped to add the seconds it took (picklable, unlike a closure)."""

    def __init__(self, work: Callable[[Mapping[str, Any]], Mapping[str, Any] | None]):
        self.work = work

    def __call__(self, item: Mapping[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        value = dict(self.work(item) or {})
        value["seconds"] = round(time.perf_counter() - start, 3)
        return value


def write_h5(path: str | os.PathLike, arrays: Mapping[str, Any], attrs: Mapping[str, Any], *,
             chunks: Mapping[str, tuple[int, ...]] | None = None,
             compression: str | None = "lzf") -> Path:
    """Write arrays and attributes to one HDF5 file atomically.

    Parameters
    ----------
    path : path
        The file (written under a temporary name, then renamed).
    arrays : mapping of str to numpy.ndarray
        Datasets; names with ``/`` create groups (``locations/1``).
    attrs : mapping
        File attributes (numbers, strings, arrays; dicts and lists of dicts are stored
        as JSON strings).
    chunks : mapping of str to tuple, optional
        Chunk shape per dataset (default: h5py's choice for arrays of 2+ dimensions).
    compression : str or None
        ``lzf`` (fast, built into h5py), ``gzip`` or None.
    """
    import h5py
    import numpy as np

    from .._fsutil import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for name, array in arrays.items():
            array = np.asarray(array)
            chunk = (chunks or {}).get(name)
            big = array.ndim >= 2 and array.size > 1024
            h5.create_dataset(name, data=array, chunks=chunk if big else None,
                              compression=compression if big else None)
        for key, value in attrs.items():
            if isinstance(value, Mapping) or (isinstance(value, list | tuple) and value
                                              and isinstance(value[0], Mapping)):
                value = "json:" + json.dumps(_plain(value))
            elif value is None:
                value = "json:null"
            h5.attrs[key] = value
    return Path(path)


def read_h5(path: str | os.PathLike, names: Sequence[str] | None = None
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read datasets (all, or ``names``) and the attributes of an HDF5 file.

    Returns
    -------
    arrays : dict of str to numpy.ndarray
        Group members come back as ``"group/name"``.
    attrs : dict
        Strings decoded; JSON-stored values parsed.

    Raises
    ------
    DecodeError
        Missing, truncated or not HDF5; a requested dataset is absent.
    """
    import h5py

    from ..errors import DecodeError

    arrays: dict[str, Any] = {}
    try:
        with h5py.File(path, "r") as h5:
            if names is None:
                wanted: list[str] = []
                h5.visititems(lambda key, obj: wanted.append(key)
                              if isinstance(obj, h5py.Dataset) else None)
            else:
                wanted = list(names)
            for name in wanted:
                arrays[name] = h5[name][()]
            attrs = {k: _attr(v) for k, v in h5.attrs.items()}
    except (OSError, KeyError) as exc:
        raise DecodeError(f"cannot read the HDF5 cache file ({exc})", path) from None
    return arrays, attrs


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[5:])
    return value
