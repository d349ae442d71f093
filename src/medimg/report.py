"""Headline figures of a notebook, collected into ``reports/results.json``.

A notebook calls :func:`record` with the figures it wants kept, and names the 2-4 that
belong in the closing table of ``make demo``::

    from medimg import report
    report.record("03_pneumonia_classification",
                  test_auc=0.84, test_auc_low=0.76, test_auc_high=0.91, n_test=60,
                  baseline_auc=0.72, baseline_auc_low=0.61, baseline_auc_high=0.82,
                  headline=["test_auc", "baseline_auc"])

The table then reads ``test AUC 0.84 (0.76-0.91), n=60`` and ``baseline AUC 0.72
(0.61-0.82), n=60``. When the notebook runs under :mod:`medimg.runner` (``make demo``,
the tests), the runner points ``MEDIMG_RESULTS_FILE`` at a file and collects what was
recorded; run interactively, ``record`` just returns the figures.

Key conventions
---------------
Names are lower case with underscores and say where a figure was measured and in
which unit; the table is built from the names alone:

* **Intervals.** ``<key>``, ``<key>_low`` and ``<key>_high`` are a value and its 95%
  interval; they render as one figure, ``0.84 (0.76-0.91)``.
* **Sets.** A figure's first word names the set it was measured on: ``test_``,
  ``validation_``, ``train_``. ``baseline_<metric>`` is the baseline on the test set,
  ``<metric>_gain`` the model minus the baseline on the test set (paired).
* **Counts** start with ``n_``: ``n_test`` (subjects or patients in the test set),
  ``n_test_positive``, ``n_train``, ``n_patients``. The n printed beside a headline
  figure with an interval is ``n_<first word>`` (``test_auc`` -> ``n_test``); baselines
  and gains, both measured on the test set, print ``n_test``. A headline entry
  ``(key, n_key)`` names its count explicitly (and prints it with any figure).
* **Units** end the name: ``_mm`` (millimetres), ``_ml`` (millilitres), ``_hu``
  (Hounsfield units), ``_seconds`` (seconds), ``_per_s`` (per second); ``_rate`` and
  ``_share`` are proportions in [0, 1]. Metrics without a unit (AUC, Dice,
  sensitivity) have no suffix.
* **Headline.** ``headline=[...]`` lists, in order, the keys (the ``<key>`` of a triple)
  shown in the closing table; 2-4 per notebook. Without it the table shows the first
  (at most four) interval triples, test figures first, then baselines.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._fsutil import atomic_write_text

__all__ = ["HEADLINE_KEY", "RESULTS_ENV", "figure_label", "format_figure", "headline_figures",
           "load_results", "record"]

RESULTS_ENV = "MEDIMG_RESULTS_FILE"

#: Where a group's headline list is kept in the results file (not a figure).
HEADLINE_KEY = "headline"

#: How words of a key are written in the table.
_WORDS = {"auc": "AUC", "dice": "Dice", "wt": "WT", "tc": "TC", "et": "ET", "ct": "CT",
          "hd95": "HD95", "ap": "AP", "pa": "PA", "n4": "N4", "lr": "LR", "roc": "ROC",
          "hu": "HU", "mri": "MRI"}
#: Unit suffixes: (suffix, unit written after the value).
_UNITS = (("_per_s", "/s"), ("_seconds", "s"), ("_mm", "mm"), ("_ml", "mL"), ("_hu", "HU"))
#: Figures measured on the test set without saying so in their first word.
_ON_TEST = ("baseline_",)


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


def _headline_entries(headline: Any) -> list[list[str]]:
    """``headline`` as a list of ``[key]`` or ``[key, n_key]`` (JSON-ready)."""
    if isinstance(headline, str):
        headline = [headline]
    entries = []
    for entry in headline:
        if isinstance(entry, str):
            entries.append([entry])
        elif (isinstance(entry, Sequence) and len(entry) in (1, 2)
              and all(isinstance(part, str) for part in entry)):
            entries.append(list(entry))
        else:
            raise TypeError(f"a headline entry is a key or a (key, n_key) pair, got {entry!r}")
    return entries


def record(name: str, *, headline: Sequence[Any] | None = None, **figures: Any) -> dict[str, Any]:
    """Record figures under ``name`` (usually the notebook's name).

    Parameters
    ----------
    name : str
        Group the figures belong to; repeated calls with the same name merge.
    headline : sequence of str or (str, str), optional
        The keys shown in the closing table of ``make demo``, in order (2-4): a key, or
        ``(key, n_key)`` to name the count printed beside it. See the module's key
        conventions.
    **figures : number, str, bool or None
        The figures, e.g. ``test_auc=0.91, test_auc_low=0.86, test_auc_high=0.95``.
        NumPy and TensorFlow scalars are converted; NaN becomes None (JSON has no NaN).

    Returns
    -------
    dict
        The figures as stored (without the headline list).

    Raises
    ------
    TypeError
        A figure that is not a scalar, or a malformed headline entry.
    KeyError
        A headline key that is not among the figures recorded under ``name``.
    """
    if HEADLINE_KEY in figures:  # pragma: no cover - the keyword catches it first
        raise TypeError(f"{HEADLINE_KEY!r} is reserved")
    plain = {key: _plain(key, value) for key, value in figures.items()}
    entries = None if headline is None else _headline_entries(headline)
    target = os.environ.get(RESULTS_ENV)
    results = load_results(target) if target else {}
    group = {**results.get(name, {}), **plain}
    if entries is not None:
        missing = [part for entry in entries for part in entry if part not in group]
        if missing:
            raise KeyError(f"headline of {name!r} names {', '.join(missing)}, which "
                           f"{'is' if len(missing) == 1 else 'are'} not recorded")
        group[HEADLINE_KEY] = entries
    if target:
        results[name] = group
        # in recording order: the table's default headline follows it
        atomic_write_text(target, json.dumps(results, indent=2))
    return plain


def load_results(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read a results file written by :func:`record` (empty when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------
# Rendering figures for the closing table.
# ---------------------------------------------------------------------------------------


def _split_unit(key: str) -> tuple[str, str | None]:
    for suffix, unit in _UNITS:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], unit
    return key, None


def figure_label(key: str) -> str:
    """The words of a key as printed in the table (unit suffix removed).

    Examples
    --------
    >>> figure_label("test_dice_wt"), figure_label("ct_lung_hu"), figure_label("auc_gain")
    ('test Dice WT', 'CT lung', 'AUC gain')
    """
    stem, _ = _split_unit(key)
    return " ".join(_WORDS.get(word, word) for word in stem.split("_") if word)


def _number(value: float, digits: int | None = None) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    if digits is None:
        size = abs(value)
        digits = 0 if size >= 100 else 1 if size >= 10 else 2
    return f"{value:,.{digits}f}"


def format_figure(value: Any, low: Any = None, high: Any = None, *, unit: str | None = None,
                  n: Any = None) -> str:
    """One figure as text: ``0.84 (0.76-0.91), n=60`` or ``-850 HU``.

    The interval's bounds get the value's number of decimals; bounds that are
    negative are joined by "to" rather than a hyphen.
    """
    if value is None:
        text = "n/a"
    elif isinstance(value, str | bool):
        text = str(value)
    else:
        size = abs(value) if not isinstance(value, numbers.Integral) else None
        digits = None if size is None else (0 if size >= 100 else 1 if size >= 10 else 2)
        text = _number(value, digits)
        if isinstance(low, numbers.Real) and isinstance(high, numbers.Real):
            places = 2 if digits is None else digits
            lo, hi = _number(float(low), places), _number(float(high), places)
            text += f" ({lo} to {hi})" if min(low, high) < 0 else f" ({lo}-{hi})"
    if unit:
        text += unit if unit.startswith("/") else f" {unit}"
    if n is not None:
        text += f", n={_number(n)}"
    return text


def _count_for(key: str, figures: Mapping[str, Any]) -> str | None:
    first = key.split("_", 1)[0]
    if key.startswith(_ON_TEST) or key.endswith("_gain") or "_gain_" in key:
        candidate = "n_test"
    else:
        candidate = f"n_{first}"
    return candidate if isinstance(figures.get(candidate), numbers.Integral) else None


def _default_headline(figures: Mapping[str, Any]) -> list[list[str]]:
    triples = [key for key in figures
               if not key.endswith(("_low", "_high"))
               and f"{key}_low" in figures and f"{key}_high" in figures]
    ranked = sorted(triples, key=lambda k: (0 if k.startswith("test_") else
                                            1 if k.startswith("baseline_") else 2))
    return [[key] for key in ranked[:4]]


def headline_figures(figures: Mapping[str, Any],
                     headline: Sequence[Any] | None = None) -> list[tuple[str, str]]:
    """The headline figures of one notebook as ``(label, text)`` pairs.

    Parameters
    ----------
    figures : mapping
        What the notebook recorded (flat: key -> value).
    headline : sequence, optional
        Keys (or ``(key, n_key)`` pairs) to show; default ``figures["headline"]``,
        else the first four interval triples (test figures first, then baselines).

    Returns
    -------
    list of (str, str)
        E.g. ``[("test AUC", "0.84 (0.76-0.91), n=60")]``. A key that was not
        recorded is left out.
    """
    if headline is None:
        headline = figures.get(HEADLINE_KEY)
    entries = _default_headline(figures) if headline is None else _headline_entries(headline)
    rows = []
    for entry in entries:
        key = entry[0]
        if key not in figures:
            continue
        has_interval = f"{key}_low" in figures and f"{key}_high" in figures
        n_key = entry[1] if len(entry) > 1 else (_count_for(key, figures) if has_interval
                                                 else None)
        _, unit = _split_unit(key)
        rows.append((figure_label(key),
                     format_figure(figures[key], figures.get(f"{key}_low"),
                                   figures.get(f"{key}_high"), unit=unit,
                                   n=figures.get(n_key) if n_key else None)))
    return rows
