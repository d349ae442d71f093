"""Headline figures of a notebook, collected into ``reports/results.json``.

A notebook calls :func:`record` once per result it wants in the summary table::

    from medimg import report
    report.record("03_pneumonia_classification", auc=0.91, auc_low=0.86, auc_high=0.95)

When the notebook runs under :mod:`medimg.runner` (``make demo``, the tests), the
runner points ``MEDIMG_RESULTS_FILE`` at a file and collects what was recorded;
run interactively, ``record`` just returns (and shows) the figures.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

from ._fsutil import atomic_write_text

__all__ = ["RESULTS_ENV", "load_results", "record"]

RESULTS_ENV = "MEDIMG_RESULTS_FILE"


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return None if math.isnan(value) else value
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:  # NumPy / TF scalars
        return _plain(name, value.item())
    raise TypeError(f"figure {name!r} must be a number, string, bool or None, "
                    f"got {type(value).__name__}")


def record(name: str, **figures: Any) -> dict[str, Any]:
    """Record headline figures under ``name`` (usually the notebook's name).

    Parameters
    ----------
    name : str
        Group the figures belong to; repeated calls with the same name merge.
    **figures : number, str, bool or None
        The figures, e.g. ``auc=0.91``. NumPy and TensorFlow scalars are converted;
        NaN becomes None (JSON has no NaN).

    Returns
    -------
    dict
        The figures as stored.
    """
    plain = {key: _plain(key, value) for key, value in figures.items()}
    target = os.environ.get(RESULTS_ENV)
    if target:
        results = load_results(target)
        results.setdefault(name, {}).update(plain)
        atomic_write_text(target, json.dumps(results, indent=2, sort_keys=True))
    return plain


def load_results(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read a results file written by :func:`record` (empty when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
