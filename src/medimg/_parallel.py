"""Run a function over many items, in parallel, with a progress bar, losing nothing.

Batch jobs in medimg (DICOM metadata, preprocessing a data set, building caches)
all need the same three things: use every core, show progress, and turn a failing
item into a recorded error instead of stopping the batch. This module does that once.

Backends (joblib's): ``loky`` (worker processes on this machine, the default),
``threading``, and ``dask``: the items run on the workers of a ``dask.distributed``
cluster, so that ``medimg prepare ...`` preprocesses a data set on a cluster unchanged::

    dask scheduler &  dask worker tcp://HOST:8786 &   # or any existing cluster
    MEDIMG_DASK_SCHEDULER=tcp://HOST:8786 medimg prepare brats

The scheduler's address comes from the ``backend`` argument itself (``"tcp://HOST:8786"``
means "dask at that address"), else from ``MEDIMG_DASK_SCHEDULER``; with
``MEDIMG_DASK_SCHEDULER`` set, the default backend is ``dask``. The workers must import
the same medimg (a shared file system or the same environment on every node), and read
and write the same paths (the cache folder on a shared file system). Failures come back
as :class:`ItemResult` errors like any other backend's, so a cache build still lists them
in its manifest.

Shared copies (:func:`shared_copy`): a large array copy split among the caller and the
helper threads idle at that moment (patch reads, which are bound by memory latency).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

#: Environment variable holding a dask.distributed scheduler address (``tcp://host:8786``).
DASK_SCHEDULER_ENV = "MEDIMG_DASK_SCHEDULER"
_BACKENDS = ("loky", "threading", "multiprocessing", "dask")
#: Seconds to wait for a dask scheduler to answer.
DASK_CONNECT_TIMEOUT_S = 30.0


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
    backend: str | None = None,
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
    backend : {"loky", "threading", "dask"} or str, optional
        joblib backend: processes for CPU-bound work (decoding, filtering),
        threads for work that releases the GIL, ``dask`` for the workers of a
        ``dask.distributed`` cluster (see the module docstring); a scheduler address
        (``tcp://host:8786``) means ``dask`` at that address. Default: ``dask`` when
        ``MEDIMG_DASK_SCHEDULER`` is set, else ``loky``.
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
    backend, address = resolve_backend(backend)
    workers = min(resolve_n_jobs(n_jobs), max(1, len(items)))
    if backend == "dask":
        workers = max(1, len(items)) if n_jobs in (None, -1) else max(1, workers)
    # nothing to do (a rerun that finds everything cached) draws no empty bar
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress or not items,
               leave=True)
    results: list[ItemResult] = []
    try:
        if workers == 1 and backend != "dask":
            for item in items:
                results.append(_guarded(fn, item))
                if on_result is not None:
                    on_result(results[-1])
                bar.update(1)
        else:
            from joblib import Parallel, delayed, parallel_config

            with contextlib.ExitStack() as stack:
                if backend == "dask":
                    # the cluster's workers are not this process's children: no watchdog
                    stack.enter_context(_dask_client(address))
                    stack.enter_context(parallel_config(backend="dask"))
                    parallel = Parallel(n_jobs=workers, return_as="generator",
                                        batch_size=batch_size)
                    parent = None
                else:
                    parallel = Parallel(n_jobs=workers, backend=backend,
                                        return_as="generator", batch_size=batch_size)
                    parent = os.getpid()
                for result in parallel(delayed(_guarded)(fn, item, parent) for item in items):
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
                    bar.update(1)
    finally:
        bar.close()
    return results


def resolve_backend(backend: str | None) -> tuple[str, str | None]:
    """``(joblib backend, dask scheduler address or None)`` for a ``backend`` argument.

    Raises
    ------
    ConfigError
        An unknown backend, or ``dask`` without a scheduler address.
    """
    env = os.environ.get(DASK_SCHEDULER_ENV, "").strip() or None
    if backend is None or backend == "":
        return ("dask", env) if env else ("loky", None)
    backend = str(backend)
    if "://" in backend:
        return "dask", backend
    if backend not in _BACKENDS:
        raise ConfigError(f"parallel backend {backend!r} is not one of "
                          f"{', '.join(_BACKENDS)} or a dask scheduler address (tcp://host:port)")
    if backend == "dask" and env is None:
        raise ConfigError(f"the dask backend needs a scheduler address: set "
                          f"{DASK_SCHEDULER_ENV}=tcp://host:port or pass it as the backend")
    return backend, env if backend == "dask" else None


@contextlib.contextmanager
def _dask_client(address: str | None) -> Iterator[Any]:
    """A ``dask.distributed`` client of the scheduler at ``address`` for the block (the
    joblib backend sends its tasks to the current client)."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - a runtime dependency
        raise ConfigError("the dask backend needs dask.distributed "
                          "(pip install 'dask[distributed]')") from None
    try:
        client = Client(address, set_as_default=True, timeout=DASK_CONNECT_TIMEOUT_S)
    except OSError as exc:
        raise ConfigError(f"cannot reach the dask scheduler at {address} ({exc}); check "
                          f"{DASK_SCHEDULER_ENV} or the config") from None
    try:
        with client.as_current():
            yield client
    finally:
        client.close()


# --------------------------------------------------------------------------- shared copies

#: Copies at least this large (bytes) are shared with idle helper threads.
SPLIT_COPY_BYTES = 1 << 20


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class CopyHelpers:
    """Idle threads that take a share of a large patch copy.

    A patch copy out of a case file is bound by memory latency, not bandwidth: its
    source rows are short runs far apart (a 160x160x24x4 float32 patch of a BraTS case
    is 25,600 runs of 384 bytes, 5.6 times as many bytes apart), which one core copies at
    about a quarter of its streaming rate; NumPy releases the GIL while it copies. So the
    first axis is shared out among the caller and whichever helpers are idle at that
    moment (none is waited for: under a parallel ``tf.data`` map every core is already
    reading its own patch, and the caller then copies alone).

    Parameters
    ----------
    helpers : int
        Helper threads (0: the caller copies alone). The pool is started on first use
        in each process, so a forked child starts its own.
    """

    def __init__(self, helpers: int):
        self.helpers = max(0, int(helpers))
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._pid != os.getpid():
                self._idle = threading.BoundedSemaphore(self.helpers)
                self._pool = ThreadPoolExecutor(self.helpers, thread_name_prefix="medimg-copy")
                self._pid = os.getpid()

    @staticmethod
    def _copy_part(pairs: Sequence[tuple[np.ndarray, np.ndarray]], part: int,
                   parts: int) -> None:
        for dst, src in pairs:
            lo, hi = (dst.shape[0] * part) // parts, (dst.shape[0] * (part + 1)) // parts
            np.copyto(dst[lo:hi], src[lo:hi])

    def _helper(self, idle: Any, pairs: Sequence[tuple[np.ndarray, np.ndarray]], part: int,
                parts: int) -> None:
        try:
            self._copy_part(pairs, part, parts)
        finally:
            idle.release()

    def copy(self, *pairs: tuple[np.ndarray, np.ndarray]) -> None:
        """``dst[...] = src`` for each ``(dst, src)`` pair (same shapes), the first axis
        shared out among the caller and the helper threads idle at this moment."""
        taken = 0
        if self.helpers and sum(dst.nbytes for dst, _ in pairs) >= SPLIT_COPY_BYTES:
            if self._pid != os.getpid():
                self._start()
            idle, pool = self._idle, self._pool
            most = min(self.helpers, min(dst.shape[0] for dst, _ in pairs) - 1)
            while taken < most and idle.acquire(False):
                taken += 1
        parts = taken + 1
        futures = []
        for part in range(1, parts):
            try:
                futures.append(pool.submit(self._helper, idle, pairs, part, parts))
            except RuntimeError:  # the pool is shut down (interpreter exit): copy here
                idle.release()
                self._copy_part(pairs, part, parts)
        self._copy_part(pairs, 0, parts)
        for future in futures:
            future.result()


#: The process's helpers: up to 3, one fewer than the CPUs available.
COPY = CopyHelpers(min(4, available_cpus()) - 1)


def shared_copy(*pairs: tuple[np.ndarray, np.ndarray]) -> None:
    """``dst[...] = src`` for each ``(dst, src)`` pair, shared with idle helper threads
    when the pairs hold at least :data:`SPLIT_COPY_BYTES` (:class:`CopyHelpers`)."""
    COPY.copy(*pairs)
