"""Execute notebooks under a profile and collect their headline figures.

Shared by ``make demo`` (``medimg demo``) and the tests. A notebook runs with its own
folder as working directory, ``MEDIMG_PROFILE`` set to the profile, matplotlib on the
inline backend (figures embedded in the executed copy), and ``MEDIMG_RESULTS_FILE`` pointing at a file that
:func:`medimg.report.record` fills in.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._fsutil import atomic_write_text
from .errors import NotebookError
from .report import RESULTS_ENV, load_results

__all__ = ["NotebookRun", "find_notebooks", "format_table", "run_notebook", "run_notebooks"]


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


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def find_notebooks(directory: str | os.PathLike) -> list[Path]:
    """The chapter notebooks of ``directory`` in name order (checkpoints excluded)."""
    return sorted(p for p in Path(directory).glob("*.ipynb") if not p.name.startswith("."))


def _cell_failure(nb: Any, exc: Exception) -> str:
    """Which cell failed, counted among code cells from 1, with its first line."""
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                return (f"code cell {number} (`{first.strip()[:80]}`) raised "
                        f"{output.get('ename')}: {output.get('evalue')}")
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


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
) -> NotebookRun:
    """Execute a notebook top to bottom under ``profile``.

    Parameters
    ----------
    path : path
        The ``.ipynb`` file.
    profile : str
        ``smoke``, ``demo`` or ``full`` (exported as ``MEDIMG_PROFILE``).
    output_dir : path, optional
        Where the executed copy (and HTML) go; nothing is written when None.
        The executed copy is written even when a cell fails, for debugging.
    html : bool
        Also export HTML beside the executed copy.
    timeout : int, optional
        Seconds allowed per cell (None: no limit).
    raise_on_error : bool
        Raise :class:`NotebookError` on the first failing cell (default); when False
        the failure is returned in ``NotebookRun.error``.

    Returns
    -------
    NotebookRun

    Raises
    ------
    NotebookError
        The first failing cell, named by its number among code cells and first line.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from .config import find_repo_root

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    name = path.stem
    with tempfile.TemporaryDirectory(prefix="medimg-results-") as tmp:
        results_file = Path(tmp) / "results.json"
        env = {
            "MEDIMG_PROFILE": profile,
            RESULTS_ENV: str(results_file),
            "MEDIMG_HOME": str(find_repo_root(path.parent)),
            # matplotlib's inline backend (ipykernel's default) embeds the figures in the
            # executed copy; an inherited MPLBACKEND=Agg would silently drop them.
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
            **(extra_env or {}),
        }
        client = NotebookClient(
            nb, timeout=timeout, kernel_name=kernel_name,
            resources={"metadata": {"path": str(path.parent)}},
        )
        error = None
        start = time.perf_counter()
        with _environ(**env):
            try:
                client.execute()
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
                error = _cell_failure(nb, exc)
        wall = time.perf_counter() - start
        figures = load_results(results_file)
    run = NotebookRun(name=name, status="ok" if error is None else "failed",
                      wall_time_s=round(wall, 2), error=error,
                      figures={k: v for group in figures.values() for k, v in group.items()})
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        executed = out / path.name
        atomic_write_text(executed, nbformat.writes(nb))
        run.executed_path = str(executed)
        if html:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(nb)
            html_path = executed.with_suffix(".html")
            atomic_write_text(html_path, body)
            run.html_path = str(html_path)
    if error is not None and raise_on_error:
        raise NotebookError(error, path)
    return run


def format_table(runs: Iterable[NotebookRun]) -> str:
    """A plain-text table: notebook, status, wall time, headline figures."""
    rows = []
    for run in runs:
        figures = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in run.figures.items()
        )
        rows.append((run.name, run.status, f"{run.wall_time_s:.0f} s", figures or run.error or ""))
    header = ("notebook", "status", "time", "headline figures")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip((*header[:3],), widths, strict=True))
             + "  " + header[3]]
    lines.append("-" * min(120, len(lines[0]) + 40))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:3], widths, strict=True))
                     + "  " + row[3])
    return "\n".join(lines)


def run_notebooks(
    notebooks: Iterable[str | os.PathLike],
    *,
    profile: str = "demo",
    reports_dir: str | os.PathLike = "reports",
    html: bool = True,
    timeout: int | None = None,
) -> list[NotebookRun]:
    """Run several notebooks, keep going past failures, write ``results.json``.

    Each notebook's executed copy and HTML go to ``reports_dir``; the headline
    figures and wall times of all of them go to ``reports_dir/results.json``
    (``{"profile": ..., "notebooks": {name: {...}}}``), rewritten after every
    notebook so an interrupted run keeps what finished.
    """
    reports = Path(reports_dir)
    runs: list[NotebookRun] = []
    for nb_path in notebooks:
        print(f"[medimg] running {Path(nb_path).name} (profile {profile}) ...", flush=True)
        run = run_notebook(nb_path, profile=profile, output_dir=reports, html=html,
                           timeout=timeout, raise_on_error=False)
        status = "ok" if run.error is None else f"FAILED: {run.error}"
        print(f"[medimg]   {run.wall_time_s:.0f} s, {status}", flush=True)
        runs.append(run)
        summary = {"profile": profile, "python": sys.version.split()[0],
                   "notebooks": {r.name: asdict(r) for r in runs}}
        atomic_write_text(reports / "results.json", json.dumps(summary, indent=2))
    return runs
