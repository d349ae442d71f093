"""Shared timing harness for the benchmarks: textbook approach vs medimg, same run.

Each benchmark script calls :func:`compare` once per stage and :func:`emit` with the
result; ``benchmarks/run.py`` (``make bench``) runs every ``bench_*.py`` and prints one
table. Both sides are run interleaved (textbook, medimg, textbook, medimg, ...) so that
machine noise hits them alike; the figure is the median items/s over the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

MARKER = "MEDIMG-BENCH "


@dataclass
class Row:
    """One line of the benchmark table."""

    stage: str
    textbook_items_per_s: float
    medimg_items_per_s: float
    ratio: float
    items: int
    repeats: int
    note: str = ""


def compare(
    stage: str,
    textbook: Callable[[], object],
    medimg: Callable[[], object],
    *,
    items: int,
    repeats: int = 3,
    warmup: bool = True,
    note: str = "",
) -> Row:
    """Time ``textbook()`` and ``medimg()`` interleaved; each call processes ``items`` items.

    Parameters
    ----------
    stage : str
        Name shown in the table.
    textbook, medimg : callable
        Zero-argument callables doing the same work the two ways.
    items : int
        Items (files, images, patches, volumes) one call processes.
    repeats : int
        Timed calls of each; the median is reported.
    warmup : bool
        Call each once untimed first (imports, caches, JIT).
    """
    if warmup:
        textbook()
        medimg()
    t_times, m_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        textbook()
        t_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        medimg()
        m_times.append(time.perf_counter() - start)
    t_rate = items / statistics.median(t_times)
    m_rate = items / statistics.median(m_times)
    return Row(stage, t_rate, m_rate, m_rate / t_rate, items, repeats, note)


def emit(row: Row) -> None:
    """Print a row for humans and, on a marked line, for ``run.py``."""
    print(f"{row.stage}: textbook {row.textbook_items_per_s:.3g}/s, "
          f"medimg {row.medimg_items_per_s:.3g}/s, ratio {row.ratio:.1f}x"
          + (f" ({row.note})" if row.note else ""))
    print(MARKER + json.dumps(asdict(row)), flush=True)


def parser(description: str) -> argparse.ArgumentParser:
    """Argument parser every benchmark shares (``--quick`` for small sizes)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, for CI smoke)")
    p.add_argument("--repeats", type=int, default=3)
    return p
