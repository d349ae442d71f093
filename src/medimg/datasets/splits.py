"""The one split helper: train / validation / test by patient or subject, never by image.

Every data set splits the same way and gets the same answer back: a copy of its table
with a ``split`` column whose values are ``"train"``, ``"validation"`` and ``"test"``
(a pandas ``Categorical`` in that order). Rows that share a group (one patient's
images, one subject's scans) always land in the same part, so nothing of a test
patient is ever seen in training; with ``stratify`` each part keeps the share of every
class, down to small sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, LayoutError

__all__ = ["SPLITS", "parts", "split_by_group", "summary"]

#: The parts, in order; the ``split`` column is a Categorical with these categories.
SPLITS: tuple[str, ...] = ("train", "validation", "test")


def _counts(n: int, validation_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Groups for (validation, test) out of ``n``: rounded shares, at least one each when
    the fraction is positive and three or more groups exist, training keeping one."""
    n_test = round(n * test_fraction)
    n_validation = round(n * validation_fraction)
    if n >= 3:
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
        n_validation = max(n_validation, 1 if validation_fraction > 0 else 0)
    n_test = min(n_test, max(0, n - 1))
    n_validation = min(n_validation, max(0, n - 1 - n_test))
    return n_validation, n_test


def split_by_group(
    table: pd.DataFrame | Sequence[str],
    *,
    group: str | None = None,
    stratify: str | None = None,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> pd.DataFrame:
    """Assign every row to train, validation or test, keeping groups together.

    Groups (patients, subjects) are shuffled with ``seed`` and cut by the fractions;
    with ``stratify``, separately within each class of that column, so every part
    keeps the class balance. Rounded shares with at least one group in validation and
    in test when their fraction is positive and a class has three or more groups;
    training always keeps at least one group.

    Parameters
    ----------
    table : pandas.DataFrame or sequence of str
        One row per item (image, scan, case); a plain sequence of names is turned into
        a table with a ``subject`` column.
    group : str, optional
        Column naming the unit of splitting (``patientId``, ``subject``). Default: each
        row is its own group.
    stratify : str, optional
        Column to stratify by; it must be constant within each group (a patient with
        one positive and one negative row cannot be stratified).
    validation_fraction, test_fraction : float
        Shares of the groups, each in ``[0, 1)``, summing below 1.
    seed : int
        Shuffling seed: the same table and seed give the same split.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` (same index and order) with ``split``: Categorical of
        :data:`SPLITS`.

    Raises
    ------
    ConfigError
        Fractions out of range.
    LayoutError
        A missing column, an empty table, missing group names, or a stratify value that
        differs within a group.

    Examples
    --------
    >>> t = split_by_group(["a", "b", "c", "d", "e"], validation_fraction=0.2,
    ...                    test_fraction=0.2, seed=0)
    >>> t.split.value_counts().sort_index().tolist()
    [3, 1, 1]
    """
    if not (0 <= validation_fraction < 1 and 0 <= test_fraction < 1
            and validation_fraction + test_fraction < 1):
        raise ConfigError(f"split: validation_fraction and test_fraction must be in [0, 1) and "
                          f"sum below 1, got {validation_fraction} and {test_fraction}")
    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame({"subject": [str(n) for n in table]})
        group = group or "subject"
    if len(table) == 0:
        raise LayoutError("split: nothing to split (the table is empty)")
    for column in (group, stratify):
        if column is not None and column not in table.columns:
            raise LayoutError(f"split: no column {column!r} (columns: "
                              f"{', '.join(map(str, table.columns))})")
    groups = (table[group] if group else pd.Series(np.arange(len(table)), index=table.index))
    if groups.isna().any():
        raise LayoutError(f"split: {int(groups.isna().sum())} row(s) have no {group!r}")
    keys = groups.astype(str).to_numpy()
    if stratify:
        classes = table[stratify].astype("string").fillna("<missing>").to_numpy()
        per_group = pd.Series(classes).groupby(keys).nunique()
        mixed = per_group[per_group > 1]
        if len(mixed):
            raise LayoutError(f"split: {stratify!r} differs within {len(mixed)} {group or 'row'}"
                              f" group(s) (e.g. {', '.join(map(str, mixed.index[:3]))}); "
                              "stratify by a value that is constant per group")
        class_of = dict(zip(keys, classes, strict=True))
    else:
        class_of = dict.fromkeys(keys, "")
    rng = np.random.default_rng(seed)
    part_of: dict[str, str] = {}
    for value in sorted(set(class_of.values())):
        members = np.array(sorted(k for k, c in class_of.items() if c == value))
        members = members[rng.permutation(members.size)]
        n_validation, n_test = _counts(members.size, validation_fraction, test_fraction)
        part_of.update(dict.fromkeys(members[:n_test], "test"))
        part_of.update(dict.fromkeys(members[n_test:n_test + n_validation], "validation"))
        part_of.update(dict.fromkeys(members[n_test + n_validation:], "train"))
    out = table.copy()
    out["split"] = pd.Categorical([part_of[k] for k in keys], categories=list(SPLITS))
    return out


def parts(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The rows of each part of a split table: ``{"train": ..., "validation": ...,
    "test": ...}`` (each a DataFrame, possibly empty), in :data:`SPLITS` order."""
    if "split" not in table.columns:
        raise LayoutError("parts: the table has no 'split' column (use split_by_group first)")
    return {name: table[table["split"] == name] for name in SPLITS}


def summary(table: pd.DataFrame, *, group: str | None = None,
            target: str | None = None) -> pd.DataFrame:
    """Rows (and groups, and positives) per part: the table a notebook shows after a split.

    Parameters
    ----------
    table : pandas.DataFrame
        With a ``split`` column.
    group : str, optional
        Count distinct values of this column too (patients, subjects).
    target : str, optional
        A 0/1 column: add its sum and mean per part.

    Returns
    -------
    pandas.DataFrame
        Index :data:`SPLITS`; columns ``rows`` (and ``groups``, ``positives``, ``rate``).
    """
    parts_ = parts(table)
    rows: list[dict[str, Any]] = []
    for name, part in parts_.items():
        row: dict[str, Any] = {"split": name, "rows": len(part)}
        if group:
            row["groups"] = int(part[group].nunique())
        if target:
            values = pd.to_numeric(part[target], errors="coerce")
            row["positives"] = int(values.sum())
            row["rate"] = float(values.mean()) if len(part) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")

