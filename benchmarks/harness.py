"""Shared timing harness for the benchmarks: textbook approach vs medimg vs peers, same run.

Each benchmark script calls :func:`compare` once per stage and :func:`emit` with the
result; ``benchmarks/run.py`` (``make bench``) runs every ``bench_*.py`` and prints one
table. All sides are run interleaved (textbook, medimg, each peer, textbook, ...) so
that machine noise hits them alike; the figure is the median items/s over the repeats.

Peers are other libraries doing the same job (MONAI, TorchIO, kornia). They are never
dependencies of medimg: when one is importable (the side environment in
``benchmarks/README.md``) its stage also times it on the same input and checks that the
answers agree; otherwise its column says "not installed".
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

MARKER = "MEDIMG-BENCH "

#: peer display name -> import name
PEER_MODULES = {"MONAI": "monai", "TorchIO": "torchio", "kornia": "kornia"}


@dataclass
class Peer:
    """One peer library's way of doing a stage.

    ``run`` is a zero-argument callable doing the same work as medimg (None when the
    library is not installed); ``agreement`` says what was compared with medimg's
    answer and how close it was (worked out by the benchmark before timing).
    """

    name: str
    run: Callable[[], object] | None = None
    agreement: str = ""


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
    #: one dict per peer: name, items_per_s (None: not run), ratio (medimg / peer),
    #: agreement
    peers: list = field(default_factory=list)


def peer_available(name: str) -> str | None:
    """``"<name> <version>"`` when the peer's package imports, else None."""
    module_name = PEER_MODULES.get(name, name.lower())
    if importlib.util.find_spec(module_name) is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except Exception:  # a broken install counts as absent
        return None
    return f"{name} {getattr(module, '__version__', '')}".strip()


def peer_version(name: str) -> str | None:
    """Like :func:`peer_available` from the package metadata only (no import)."""
    from importlib import metadata

    try:
        return f"{name} {metadata.version(PEER_MODULES.get(name, name.lower()))}"
    except metadata.PackageNotFoundError:
        return None


def not_installed(name: str) -> Peer:
    return Peer(name, None, "not installed")


def compare(
    stage: str,
    textbook: Callable[[], object],
    medimg: Callable[[], object],
    *,
    items: int,
    repeats: int = 3,
    warmup: bool = True,
    note: str = "",
    peers: Sequence[Peer] = (),
) -> Row:
    """Time ``textbook()``, ``medimg()`` and each installed peer interleaved; each call
    processes ``items`` items.

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
    note : str
        Shown after the row.
    peers : sequence of Peer
        Other libraries doing the same work (``run=None``: not installed).
    """
    sides = [textbook, medimg] + [p.run for p in peers if p.run is not None]
    if warmup:
        for side in sides:
            side()
    times: list[list[float]] = [[] for _ in sides]
    for _ in range(repeats):
        for i, side in enumerate(sides):
            start = time.perf_counter()
            side()
            times[i].append(time.perf_counter() - start)
    rates = [items / statistics.median(t) for t in times]
    peer_rows, k = [], 2
    for p in peers:
        rate = None
        if p.run is not None:
            rate, k = rates[k], k + 1
        peer_rows.append({"name": p.name, "items_per_s": rate,
                          "ratio": None if rate is None else rates[1] / rate,
                          "agreement": p.agreement})
    return Row(stage, rates[0], rates[1], rates[1] / rates[0], items, repeats, note, peer_rows)


def format_peers(peers: Sequence[dict]) -> str:
    """``MONAI 2.1x (max diff 0); TorchIO not installed`` (ratio = medimg / peer)."""
    parts = []
    for p in peers:
        if p.get("items_per_s") is None:
            parts.append(f"{p['name']} {p.get('agreement') or 'not run'}")
        else:
            agreement = f" ({p['agreement']})" if p.get("agreement") else ""
            parts.append(f"{p['name']} {p['ratio']:.2g}x{agreement}")
    return "; ".join(parts)


def emit(row: Row) -> None:
    """Print a row for humans and, on a marked line, for ``run.py``."""
    print(f"{row.stage}: textbook {row.textbook_items_per_s:.3g}/s, "
          f"medimg {row.medimg_items_per_s:.3g}/s, ratio {row.ratio:.1f}x"
          + (f" ({row.note})" if row.note else ""))
    for p in row.peers:
        rate = "" if p["items_per_s"] is None else f" {p['items_per_s']:.3g}/s,"
        print(f"    peer {p['name']}:{rate} {format_peers([p])}")
    print(MARKER + json.dumps(asdict(row)), flush=True)


def max_abs_diff(a, b) -> float:
    """Largest absolute difference of two arrays (any array-likes, torch included)."""
    import numpy as np

    a = a.detach().cpu().numpy() if hasattr(a, "detach") else a
    b = b.detach().cpu().numpy() if hasattr(b, "detach") else b
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def parser(description: str) -> argparse.ArgumentParser:
    """Argument parser every benchmark shares (``--quick`` for small sizes)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, for CI smoke)")
    p.add_argument("--repeats", type=int, default=3)
    return p
