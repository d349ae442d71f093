"""medimg.datasets.splits: the one split helper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg.datasets.splits import SPLITS, parts, split_by_group, summary
from medimg.errors import ConfigError, LayoutError


def _table(n_patients=40, rows_per_patient=2, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.random(n_patients) < 0.3
    return pd.DataFrame({
        "patient": np.repeat([f"p{i:03d}" for i in range(n_patients)], rows_per_patient),
        "target": np.repeat(target.astype(int), rows_per_patient),
        "image": range(n_patients * rows_per_patient),
    })


def test_groups_never_cross_parts_and_every_row_is_assigned():
    table = split_by_group(_table(), group="patient", validation_fraction=0.2,
                           test_fraction=0.25, seed=1)
    assert list(table["split"].cat.categories) == list(SPLITS)
    assert table["split"].notna().all()
    assert (table.groupby("patient")["split"].nunique() == 1).all()
    counts = table.groupby("split", observed=True)["patient"].nunique()
    assert counts["test"] == 10 and counts["validation"] == 8 and counts["train"] == 22


def test_stratified_parts_keep_the_class_balance():
    table = split_by_group(_table(200, 1), group="patient", stratify="target", seed=2,
                           validation_fraction=0.2, test_fraction=0.2)
    rates = table.groupby("split", observed=True)["target"].mean()
    overall = table["target"].mean()
    assert (abs(rates - overall) < 0.03).all()


def test_same_seed_same_split_and_another_seed_differs():
    a = split_by_group(_table(), group="patient", seed=5)
    b = split_by_group(_table(), group="patient", seed=5)
    c = split_by_group(_table(), group="patient", seed=6)
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != c["split"].tolist()


def test_order_and_index_are_kept():
    table = _table().sample(frac=1.0, random_state=0)
    out = split_by_group(table, group="patient")
    assert out.index.tolist() == table.index.tolist()
    assert out["image"].tolist() == table["image"].tolist()


def test_small_sets_keep_one_group_per_part_and_training_never_empty():
    out = split_by_group(["a", "b", "c"], validation_fraction=0.1, test_fraction=0.1)
    assert sorted(out["split"].astype(str)) == ["test", "train", "validation"]
    out = split_by_group(["a"], validation_fraction=0.4, test_fraction=0.4)
    assert out["split"].tolist() == ["train"]


def test_stratify_value_must_be_constant_within_a_group():
    table = _table()
    table.loc[0, "target"] = 1 - table.loc[1, "target"]
    with pytest.raises(LayoutError, match="differs within"):
        split_by_group(table, group="patient", stratify="target")


@pytest.mark.parametrize("validation, test", [(-0.1, 0.2), (0.6, 0.5), (0.2, 1.0)])
def test_bad_fractions(validation, test):
    with pytest.raises(ConfigError):
        split_by_group(_table(), group="patient", validation_fraction=validation,
                       test_fraction=test)


def test_missing_column_and_missing_group_values():
    with pytest.raises(LayoutError, match="no column 'subject'"):
        split_by_group(_table(), group="subject")
    table = _table()
    table.loc[3, "patient"] = None
    with pytest.raises(LayoutError, match="have no 'patient'"):
        split_by_group(table, group="patient")
    with pytest.raises(LayoutError, match="empty"):
        split_by_group(pd.DataFrame({"patient": []}), group="patient")


def test_parts_and_summary():
    table = split_by_group(_table(), group="patient", stratify="target", seed=0)
    pieces = parts(table)
    assert list(pieces) == list(SPLITS)
    assert sum(len(p) for p in pieces.values()) == len(table)
    table_summary = summary(table, group="patient", target="target")
    assert table_summary["rows"].sum() == len(table)
    assert table_summary["groups"].sum() == table["patient"].nunique()
    with pytest.raises(LayoutError):
        parts(_table())
