"""Execute notebooks under a profile and collect their headline figures.

Shared by ``make demo`` (``medimg demo``), ``medimg notebook`` and the tests. A notebook
runs in its own kernel with its folder as working directory and, in the kernel's
environment, ``MEDIMG_PROFILE`` set to the profile, matplotlib on the inline backend
(figures embedded in the executed copy) and ``MEDIMG_RESULTS_FILE`` pointing at a file
that :func:`medimg.report.record` fills in.

A quiet log: the kernel talks to the runner over local sockets (IPC, not unencrypted
TCP); before its first cell the kernel runs :func:`kernel_startup`, which silences
TensorFlow's C++ start-up lines (written to file descriptor 2 before any log level
applies) at the first ``import tensorflow`` or ``import keras``, and makes
``tqdm.auto`` choose text bars without a warning; the executed copy keeps only the
final state of each progress bar (carriage returns resolved). Errors stay visible: a
failing cell is named, and what TensorFlow logs after start-up at warning level or
above still reaches the notebook. While a notebook runs, a line every
``progress_every`` seconds says which notebook, which cell and how long.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.abc
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._fsutil import atomic_write_text
from .errors import NotebookError
from .report import HEADLINE_KEY, RESULTS_ENV, headline_figures, load_results

__all__ = ["NotebookRun", "chapter_title", "find_notebooks", "format_duration", "format_table",
           "kernel_startup", "run_notebook", "run_notebooks"]

#: Seconds between two progress lines while a notebook runs (0: none).
PROGRESS_EVERY_S = 30.0

#: The line every kernel runs before the notebook's first cell (binds no name).
KERNEL_STARTUP = "__import__('medimg.runner').runner.kernel_startup()"


@dataclass
class NotebookRun:
    """What one notebook execution produced."""

    name: str
    status: str  # "ok" or "failed"
    wall_time_s: float
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    executed_path: str | None = None
    html_path: str | None = None
    title: str | None = None
    #: keys (or [key, n_key]) of the figures for the closing table (report.record)
    headline: list[list[str]] | None = None


# ---------------------------------------------------------------------------------------
# Inside the kernel.
# ---------------------------------------------------------------------------------------

_QUIET_MODULES = ("tensorflow", "keras")


class _QuietLoader(importlib.abc.Loader):
    """Executes a module with file descriptor 2 silenced; for TensorFlow also the first
    device listing (where the CUDA driver lookup logs its "failed call to cuInit")."""

    def __init__(self, loader: Any, finder: _QuietImportFinder):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        from ._backend import stderr_silenced

        # The module sees its real loader (resources, introspection) from the start.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with stderr_silenced():
            self._loader.exec_module(module)
            if module.__name__ == "tensorflow":
                with contextlib.suppress(Exception):  # a real device problem shows later
                    module.config.list_physical_devices()
        self._finder.loaded(module.__name__)


class _QuietImportFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` and ``keras`` as the other finders would and wraps their
    loaders in :class:`_QuietLoader`; removes itself once both are imported."""

    def __init__(self) -> None:
        self._pending = {name for name in _QUIET_MODULES if name not in sys.modules}

    def find_spec(self, name, path=None, target=None):
        if name not in self._pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self)
        return spec

    def loaded(self, name: str) -> None:
        self._pending.discard(name)
        if name == "tensorflow":
            with contextlib.suppress(ImportError):
                from absl import logging as absl_logging

                absl_logging.set_verbosity(absl_logging.ERROR)
        if not self._pending:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)


def kernel_startup() -> None:
    """Prepare a notebook kernel for an unattended run (the runner calls it first).

    * The first ``import tensorflow`` or ``import keras`` (direct, or inside a medimg
      function) runs with file descriptor 2 silenced, as
      :func:`medimg._backend.import_tensorflow_quietly` does for the command line:
      TensorFlow's shared libraries log at load time (oneDNN, CUDA lookups, cuInit on
      a machine without a GPU) before ``TF_CPP_MIN_LOG_LEVEL`` applies. Later
      warnings and errors still reach the notebook.
    * ``tqdm.auto`` is resolved once with its "IProgress not found" warning
      suppressed: without ipywidgets it gives text bars, which the runner reduces to
      their final state in the executed copy.
    """
    import warnings

    if not any(isinstance(f, _QuietImportFinder) for f in sys.meta_path) \
            and any(name not in sys.modules for name in _QUIET_MODULES):
        sys.meta_path.insert(0, _QuietImportFinder())
    with warnings.catch_warnings(), contextlib.suppress(ImportError):
        warnings.filterwarnings("ignore", message=".*IProgress not found.*")
        import tqdm.auto  # noqa: F401


# ---------------------------------------------------------------------------------------
# In the runner.
# ---------------------------------------------------------------------------------------


def find_notebooks(directory: str | os.PathLike) -> list[Path]:
    """The chapter notebooks of ``directory`` in name order (checkpoints excluded)."""
    return sorted(p for p in Path(directory).glob("*.ipynb") if not p.name.startswith("."))


def chapter_title(nb: Any) -> str | None:
    """The text of the notebook's first markdown heading (its chapter title)."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                title = stripped.lstrip("#").strip()
                if title:
                    return title
    return None


def format_duration(seconds: float) -> str:
    """``42 s``, ``3m05s`` or ``1h02m``."""
    seconds = max(0.0, float(seconds))
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _cell_failure(nb: Any, exc: Exception) -> str:
    """Which cell failed, counted among code cells from 1, with its first line."""
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                return (f"code cell {number} (`{first.strip()[:80]}`) raised "
                        f"{output.get('ename')}: {output.get('evalue')}")
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}"


def _read_notebook(path: Path) -> Any:
    """Read ``path`` as a notebook; a missing or malformed file is a NotebookError."""
    import nbformat

    if not path.exists():
        raise NotebookError("no such notebook", path)
    if path.is_dir():
        raise NotebookError("is a folder, not a notebook (.ipynb file)", path)
    try:
        return nbformat.read(path, as_version=4)
    except PermissionError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # NotJSONError is a ValueError
        raise NotebookError(f"not a readable notebook (.ipynb JSON): "
                            f"{type(exc).__name__}", path) from exc


def _writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and make sure files can be written in it, before
    any work is done (an OSError naming the folder otherwise)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Permission denied (cannot write the reports there)",
                              str(folder))
    return folder


class _Progress:
    """Notebook progress: which code cell runs, and a line every ``every`` seconds."""

    def __init__(self, nb: Any, name: str, every: float, stream: Any = None):
        self.name = name
        self.every = every
        self.stream = stream
        self.code_number = {}
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and cell.source.strip():
                self.code_number[index] = len(self.code_number) + 1
        self.sources = {index: cell.source for index, cell in enumerate(nb.cells)}
        self.cell: int | None = None
        self.cell_start = self.start = time.perf_counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_cell_start(self, cell: Any, cell_index: int) -> None:
        if cell_index in self.code_number:
            self.cell, self.cell_start = cell_index, time.perf_counter()

    def line(self) -> str:
        now = time.perf_counter()
        text = f"[medimg]   {self.name}: {format_duration(now - self.start)}"
        if self.cell is not None:
            first = next((ln.strip() for ln in self.sources[self.cell].splitlines()
                          if ln.strip() and not ln.lstrip().startswith("#")), "")
            first = first if len(first) <= 60 else first[:57] + "..."
            text += (f", code cell {self.code_number[self.cell]}/{len(self.code_number)} "
                     f"running for {format_duration(now - self.cell_start)}: {first}")
        return text

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            print(self.line(), file=self.stream or sys.stdout, flush=True)

    def __enter__(self) -> _Progress:
        self.start = time.perf_counter()
        if self.every and self.every > 0:
            self._thread = threading.Thread(target=self._beat, daemon=True,
                                            name=f"medimg-progress-{self.name}")
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _kernel_environment(profile: str, results_file: Path, home: Path,
                        extra_env: dict[str, str] | None) -> dict[str, str]:
    # A kernel started from a test is not inside the test: with PYTEST_CURRENT_TEST
    # inherited, ipykernel would stop forwarding C-level output, unlike under make demo.
    inherited = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    return {
        **inherited,
        "MEDIMG_PROFILE": profile,
        RESULTS_ENV: str(results_file),
        "MEDIMG_HOME": str(home),
        # matplotlib's inline backend (ipykernel's default) embeds the figures in the
        # executed copy; an inherited MPLBACKEND=Agg would silently drop them.
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        # TensorFlow's C++ log: as the caller set it, else fatal only, as the medimg
        # command sets it (its ERROR level also carries notices such as oneDNN's "DT_INT32
        # only with AVX-512"; a failing op still raises in the cell). The start-up lines
        # are silenced by kernel_startup whatever the level. Python's deprecation
        # warnings are for developers.
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        # tqdm bars redraw at most every 10 s (the executed copy keeps the last state)
        "TQDM_MININTERVAL": "10",
        **(extra_env or {}),
    }


def _split_figures(groups: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list | None]:
    figures: dict[str, Any] = {}
    headline: list | None = None
    for group in groups.values():
        group = dict(group)
        entries = group.pop(HEADLINE_KEY, None)
        if entries is not None:
            headline = [*(headline or []), *entries]
        figures.update(group)
    return figures, headline


def run_notebook(
    path: str | os.PathLike,
    *,
    profile: str = "smoke",
    output_dir: str | os.PathLike | None = None,
    html: bool = False,
    timeout: int | None = None,
    kernel_name: str = "python3",
    raise_on_error: bool = True,
    extra_env: dict[str, str] | None = None,
    progress_every: float = 0.0,
    announce: bool = False,
) -> NotebookRun:
    """Execute a notebook top to bottom under ``profile``.

    Parameters
    ----------
    path : path
        The ``.ipynb`` file.
    profile : str
        ``smoke``, ``demo`` or ``full`` (exported as ``MEDIMG_PROFILE``).
    output_dir : path, optional
        Where the executed copy (and HTML) go; nothing is written when None. It is
        created, and checked to be writable, before the notebook starts. The executed
        copy is written even when a cell fails, for debugging.
    html : bool
        Also export HTML beside the executed copy (titled with the chapter title).
    timeout : int, optional
        Seconds allowed per cell (None: no limit).
    kernel_name : str
        Jupyter kernel to run the notebook in.
    raise_on_error : bool
        Raise :class:`NotebookError` on the first failing cell (default); when False
        the failure is returned in ``NotebookRun.error``.
    extra_env : dict, optional
        More environment variables for the kernel.
    progress_every : float
        Print a progress line (notebook, code cell, elapsed time) every so many
        seconds while the notebook runs; 0 prints none.
    announce : bool
        Print a line naming the notebook and the profile when it starts (after the
        notebook and ``output_dir`` were checked).

    Returns
    -------
    NotebookRun

    Raises
    ------
    NotebookError
        A missing or unreadable notebook, or the first failing cell, named by its
        number among code cells and its first line.
    OSError
        ``output_dir`` cannot be created or written (before anything runs).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from traitlets.config import Config

    from .config import find_repo_root

    path = Path(path).resolve()
    nb = _read_notebook(path)
    out = None if output_dir is None else _writable_folder(output_dir)
    name = path.stem
    title = chapter_title(nb)
    if announce:
        print(f"[medimg] {name} (profile {profile})", flush=True)
    with tempfile.TemporaryDirectory(prefix="medimg-run-") as tmp:
        config = Config()
        if os.name == "posix":
            # Local sockets (nothing on the network, no "unencrypted TCP" warning), at an
            # absolute path: the kernel runs in the notebook's folder, the runner may not.
            config.KernelManager.transport = "ipc"
            config.KernelManager.ip = str(Path(tmp) / "kernel")
        results_file = Path(tmp) / "results.json"
        env = _kernel_environment(profile, results_file, find_repo_root(path.parent), extra_env)
        progress = _Progress(nb, name, progress_every)
        client = NotebookClient(
            nb, timeout=timeout, kernel_name=kernel_name, config=config,
            resources={"metadata": {"path": str(path.parent)}},
            coalesce_streams=True,  # progress bars: their final state only
            # the results are on disk when the last cell ends; a graceful shutdown only adds
            # ipykernel's "Task was destroyed but it is pending!" to the log
            shutdown_kernel="immediate",
            extra_arguments=([f"--IPKernelApp.exec_lines={KERNEL_STARTUP}"]
                             if kernel_name.startswith("python") else []),
            on_cell_start=progress.on_cell_start,
        )
        error = None
        start = time.perf_counter()
        with progress:
            try:
                client.execute(env=env)
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
                error = _cell_failure(nb, exc)
        wall = time.perf_counter() - start
        figures, headline = _split_figures(load_results(results_file))
    run = NotebookRun(name=name, status="ok" if error is None else "failed",
                      wall_time_s=round(wall, 2), error=error, figures=figures,
                      title=title, headline=headline)
    if out is not None:
        executed = out / path.name
        atomic_write_text(executed, nbformat.writes(nb))
        run.executed_path = str(executed)
        if html:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(
                nb, resources={"metadata": {"name": title or name}})
            html_path = executed.with_suffix(".html")
            atomic_write_text(html_path, body)
            run.html_path = str(html_path)
    if error is not None and raise_on_error:
        raise NotebookError(error, path)
    return run


def format_table(runs: Iterable[NotebookRun], *, total: bool = True) -> str:
    """The closing table: per notebook its status, time, headline figures (with their
    95% intervals and n, see :mod:`medimg.report`) and HTML page; then the total time.

    Example::

        notebook                     status  time   headline figures (95% interval), n
        03_pneumonia_classification  ok      4m10s  test AUC 0.84 (0.76-0.91), n=60
                                                    baseline AUC 0.72 (0.61-0.82), n=60
                                                    reports/03_pneumonia_classification.html
        total                                4m10s
    """
    runs = list(runs)
    header = ("notebook", "status", "time", "headline figures (95% interval), n")
    blocks = []
    for run in runs:
        if run.status == "ok":
            lines = [f"{label} {text}" for label, text in
                     headline_figures(run.figures, run.headline)] or ["(no figures recorded)"]
        else:
            lines = [f"FAILED: {run.error or 'unknown error'}"]
        page = run.html_path or run.executed_path
        if page:
            lines.append(_relative(page))
        blocks.append(((run.name, run.status, format_duration(run.wall_time_s)), lines))
    widths = [max(len(row[i]) for row in [header[:3], *(b[0] for b in blocks),
                                          ("total", "", "")]) for i in range(3)]
    indent = sum(widths) + 2 * 3

    def left(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + "  "

    out = [left(header[:3]) + header[3], "-" * (indent + len(header[3]))]
    for cells, lines in blocks:
        out.append(left(cells) + lines[0])
        out.extend(" " * indent + line for line in lines[1:])
    if total and runs:
        out.append("-" * (indent + len(header[3])))
        out.append(left(("total", "", format_duration(sum(r.wall_time_s for r in runs))))
                   .rstrip())
    return "\n".join(line.rstrip() for line in out)


def _relative(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    with contextlib.suppress(ValueError):
        relative = os.path.relpath(path)
        if not relative.startswith(os.pardir):
            return relative
    return path


def run_notebooks(
    notebooks: Iterable[str | os.PathLike],
    *,
    profile: str = "demo",
    reports_dir: str | os.PathLike = "reports",
    html: bool = True,
    timeout: int | None = None,
    progress_every: float = PROGRESS_EVERY_S,
) -> list[NotebookRun]:
    """Run several notebooks, keep going past failures, write ``results.json``.

    Each notebook's executed copy and HTML go to ``reports_dir``; the headline
    figures and wall times of all of them go to ``reports_dir/results.json``
    (``{"profile": ..., "notebooks": {name: {...}}}``), rewritten after every
    notebook so an interrupted run keeps what finished. Every notebook is checked to
    exist, and ``reports_dir`` to be writable, before the first one starts.

    Raises
    ------
    NotebookError
        A notebook that does not exist or is not a notebook.
    OSError
        ``reports_dir`` cannot be created or written.
    """
    paths = [Path(p) for p in notebooks]
    for nb_path in paths:
        _read_notebook(nb_path.resolve())
    reports = _writable_folder(reports_dir)
    runs: list[NotebookRun] = []
    for index, nb_path in enumerate(paths, start=1):
        print(f"[medimg] {index}/{len(paths)} {nb_path.stem} (profile {profile})", flush=True)
        run = run_notebook(nb_path, profile=profile, output_dir=reports, html=html,
                           timeout=timeout, raise_on_error=False, progress_every=progress_every)
        status = "done" if run.error is None else f"FAILED: {run.error}"
        print(f"[medimg]   {nb_path.stem}: {status} in {format_duration(run.wall_time_s)}",
              flush=True)
        runs.append(run)
        summary = {"profile": profile, "python": sys.version.split()[0],
                   "total_seconds": round(sum(r.wall_time_s for r in runs), 2),
                   "notebooks": {r.name: asdict(r) for r in runs}}
        atomic_write_text(reports / "results.json", json.dumps(summary, indent=2))
    return runs
