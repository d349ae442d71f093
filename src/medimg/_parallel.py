"""Run a function over many items, in parallel, with a progress bar, losing nothing.

Batch jobs in medimg (DICOM metadata, preprocessing a data set, building caches)
all need the same three things: use every core, show progress, and turn a failing
item into a recorded error instead of stopping the batch. This module does that once.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ItemResult:
    """Outcome of one item of a batch.

    Attributes
    ----------
    item : Any
        The input item.
    value : Any
        What the function returned (None when it failed).
    error : str or None
        ``"ExceptionType: message"`` when the function raised, else None.
    """

    item: Any
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Number of worker processes for ``n_jobs`` (-1 or None: all cores; -2: all but one)."""
    cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return cpus
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return n_jobs


_WATCHDOG: threading.Thread | None = None


def _exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """In a worker process: exit as soon as the process that started the batch is gone.

    A batch killed with ``kill -9`` (or a closed terminal) must not leave workers that
    keep computing and writing files nobody will record. Workers poll their parent's
    pid from a daemon thread (portable, unlike ``PR_SET_PDEATHSIG``, which also fires
    when the parent's spawning *thread* ends); when it changes they leave at once.
    What they were writing stays a temporary file, which the next run removes.
    """
    global _WATCHDOG
    if _WATCHDOG is not None or os.getpid() == parent_pid or os.getppid() != parent_pid:
        return

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(70)  # EX_SOFTWARE: the batch is gone

    _WATCHDOG = threading.Thread(target=watch, name="medimg-parent-watchdog", daemon=True)
    _WATCHDOG.start()


def _guarded(fn: Callable[[Any], Any], item: Any, parent_pid: int | None = None) -> ItemResult:
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    try:
        return ItemResult(item, fn(item), None)
    except Exception as exc:  # a batch records the failure and goes on
        if os.environ.get("MEDIMG_DEBUG"):
            traceback.print_exc()
        return ItemResult(item, None, f"{type(exc).__name__}: {exc}")


def map_items(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    n_jobs: int | None = -1,
    progress: bool = True,
    desc: str | None = None,
    unit: str = "item",
    backend: str = "loky",
    batch_size: int | str = "auto",
    on_result: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Apply ``fn`` to every item, in parallel, keeping input order.

    Parameters
    ----------
    fn : callable
        A picklable function of one item (a module-level function or a
        ``functools.partial`` of one).
    items : iterable
        The inputs.
    n_jobs : int, optional
        Worker processes; -1 uses every core, 1 runs in this process (no pool).
    progress : bool
        Show a tqdm progress bar.
    desc, unit : str
        Progress-bar label and unit.
    backend : {"loky", "threading"}
        joblib backend: processes for CPU-bound work (decoding, filtering),
        threads for work that releases the GIL.
    batch_size : int or "auto"
        Items sent to a worker at a time (joblib's auto-tuning by default).
    on_result : callable, optional
        Called in this process with each :class:`ItemResult` as soon as it is known
        (in input order), e.g. to record finished work before the batch ends.

    Returns
    -------
    list of ItemResult
        One per item, in input order; failed items carry their error.
    """
    from tqdm.auto import tqdm

    items = list(items) if not isinstance(items, Sequence) else items
    workers = min(resolve_n_jobs(n_jobs), max(1, len(items)))
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, leave=True)
    results: list[ItemResult] = []
    try:
        if workers == 1:
            for item in items:
                results.append(_guarded(fn, item))
                if on_result is not None:
                    on_result(results[-1])
                bar.update(1)
        else:
            from joblib import Parallel, delayed

            parallel = Parallel(
                n_jobs=workers, backend=backend, return_as="generator", batch_size=batch_size
            )
            parent = os.getpid()
            for result in parallel(delayed(_guarded)(fn, item, parent) for item in items):
                results.append(result)
                if on_result is not None:
                    on_result(result)
                bar.update(1)
    finally:
        bar.close()
    return results
