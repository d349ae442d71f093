"""Shared pieces of the robustness suite: where the real files are, and the one rule
every case is judged by.

A case is **right** when medimg returns what the source says (the intact file's
pixels, nibabel's affine ...), a **clean error** when it raises a
:class:`~medimg.errors.MedimgError` whose message names the file (and, where the
case says so, the problem, e.g. "truncated"), and **other** otherwise: a silently
different result, or any other exception. Every test asserts "right or clean error";
the counts are printed at the end of the run (``conftest.py``). Nothing identifying
is printed: messages carry file names and medimg's own wording only.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medimg.errors import MedimgError

RIGHT, CLEAN, OTHER = "right", "clean error", "other"

#: (group, outcome) -> number of cases, filled as the tests run.
OUTCOMES: collections.Counter = collections.Counter()

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def dicom_test_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name}: pydicom-data is a dev dependency (pip install -e .[dev])"
    return Path(path)


def same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def judge(group: str, path: Path, action: Callable[[Path], Any],
          expected: Callable[[Any], bool] | None, *, must_say: str | None = None,
          damaged: Path | None = None) -> tuple[str, str]:
    """Run ``action(path)`` and classify it; record and return ``(outcome, detail)``.

    ``expected(result)`` says whether a returned result is right (None: any result is
    wrong, the input must be refused). ``must_say``: a clean error must contain it.
    ``damaged``: the file a clean error must name when it is not ``path`` itself (an
    AFNI ``.BRIK.gz`` read through its ``.HEAD``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = action(path)
    except MedimgError as exc:
        text = str(exc)
        named = (damaged or path).name in text
        said = must_say is None or must_say in text.lower()
        outcome = CLEAN if named and said else OTHER
        detail = f"{type(exc).__name__}: {text[-300:]}"
    except Exception as exc:  # the point is to catch anything else
        outcome, detail = OTHER, f"raw {type(exc).__name__}: {str(exc)[:200]}"
    else:
        ok = expected is not None and expected(result)
        outcome, detail = (RIGHT, "returned the right result") if ok else (
            OTHER, "returned a different result without an error")
    OUTCOMES[(group, outcome)] += 1
    return outcome, detail
