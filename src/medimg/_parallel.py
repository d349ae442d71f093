"""Run a function over many items, in parallel, with a progress bar, losing nothing.

Batch jobs in medimg (DICOM metadata, preprocessing a data set, building caches)
all need the same three things: use every core, show progress, and turn a failing
item into a recorded error instead of stopping the batch. This module does that once.
"""

from __future__ import annotations

import os
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


def _guarded(fn: Callable[[Any], Any], item: Any) -> ItemResult:
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
            for result in parallel(delayed(_guarded)(fn, item) for item in items):
                results.append(result)
                if on_result is not None:
                    on_result(result)
                bar.update(1)
    finally:
        bar.close()
    return results
