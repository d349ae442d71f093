"""Classification evaluation in medimg.metrics: AUC with a bootstrap interval, ROC curve,
confusion matrix at a threshold, AUC per group."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medimg.errors import InvalidImageError
from medimg.metrics import (
    _rank_auc,
    auc_by_group,
    auc_with_ci,
    confusion_at,
    roc_curve,
    youden_threshold,
)


def _scores(rng, n=400, separation=1.0):
    truth = rng.integers(0, 2, n)
    score = rng.normal(truth * separation, 1.0)
    return truth, score


def test_rank_auc_matches_sklearn_with_ties(rng):
    truth = rng.integers(0, 2, 200)
    score = np.round(rng.normal(truth * 0.8, 1.0), 1)  # many ties
    assert _rank_auc(truth[None], score[None])[0] == pytest.approx(roc_auc_score(truth, score))


def test_auc_and_interval(rng):
    truth, score = _scores(rng)
    r = auc_with_ci(truth, score, n_bootstrap=500, seed=0)
    assert r["auc"] == pytest.approx(roc_auc_score(truth, score))
    assert r["low"] < r["auc"] < r["high"]
    assert 0.03 < r["high"] - r["low"] < 0.2  # about 4 standard errors at n=400
    assert r["n"] == 400 and r["n_positive"] == int(truth.sum()) and r["n_bootstrap"] == 500
    again = auc_with_ci(truth, score, n_bootstrap=500, seed=0)
    assert (again["low"], again["high"]) == (r["low"], r["high"])  # seeded


def test_interval_narrows_with_more_cases(rng):
    small = auc_with_ci(*_scores(rng, 80), n_bootstrap=400, seed=1)
    large = auc_with_ci(*_scores(rng, 2000), n_bootstrap=400, seed=1)
    assert (large["high"] - large["low"]) < 0.6 * (small["high"] - small["low"])


def test_interval_covers_true_auc(rng):
    """Coverage check: the true AUC of N(0,1) vs N(1,1) is Phi(1/sqrt 2) = 0.760."""
    true_auc = 0.7602
    hits = sum(
        (r := auc_with_ci(*_scores(np.random.default_rng(s), 150), n_bootstrap=300,
                          seed=s))["low"] <= true_auc <= r["high"]
        for s in range(40)
    )
    assert hits >= 32  # nominal 95% of 40 = 38; allow bootstrap undercoverage and noise


def test_bootstrap_skips_one_class_resamples():
    r = auc_with_ci([0, 0, 0, 0, 0, 0, 0, 1], np.arange(8.0), n_bootstrap=200, seed=0)
    assert r["auc"] == 1.0
    assert 0 < r["n_bootstrap"] < 200  # resamples without the positive were skipped


def test_roc_curve():
    table = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert list(table.columns) == ["fpr", "tpr", "threshold"]
    assert table.fpr.iloc[0] == 0 and table.tpr.iloc[-1] == 1
    assert np.all(np.diff(table.fpr) >= 0)


def test_confusion_at_threshold():
    cm = confusion_at([0, 0, 1, 1, 1], [0.2, 0.7, 0.6, 0.9, 0.1], threshold=0.5)
    assert cm.values.tolist() == [[1, 1], [1, 2]]
    assert cm.attrs["sensitivity"] == pytest.approx(2 / 3)
    assert cm.attrs["specificity"] == pytest.approx(0.5)
    assert cm.attrs["ppv"] == pytest.approx(2 / 3)
    strict = confusion_at([0, 0, 1, 1, 1], [0.2, 0.7, 0.6, 0.9, 0.1], threshold=0.95)
    assert strict.values.tolist() == [[2, 0], [3, 0]] and np.isnan(strict.attrs["ppv"])


def test_youden_threshold_separates_low_probabilities():
    # Well ranked but all below 0.5 (an imbalanced, under-confident model).
    truth = np.array([0, 0, 0, 0, 1, 1])
    score = np.array([0.05, 0.1, 0.12, 0.2, 0.3, 0.4])
    assert confusion_at(truth, score, 0.5).attrs["sensitivity"] == 0.0
    t = youden_threshold(truth, score)
    assert t == pytest.approx(0.3)
    cm = confusion_at(truth, score, t)
    assert cm.attrs["sensitivity"] == 1.0 and cm.attrs["specificity"] == 1.0


def test_auc_by_group(rng):
    truth, score = _scores(rng, 300, separation=2.0)
    groups = np.where(np.arange(300) % 3 == 0, "AP", "PA").astype(object)
    groups[5] = None
    table = auc_by_group(truth, score, groups, n_bootstrap=100, seed=0)
    assert list(table.group) == ["AP", "PA", "missing"]
    assert table.n.sum() == 300
    ap = table.set_index("group").loc["AP"]
    mask = groups == "AP"
    assert ap.auc == pytest.approx(roc_auc_score(truth[mask], score[mask]))
    assert np.isnan(table.set_index("group").loc["missing"].auc)  # one case: undefined


@pytest.mark.parametrize(
    ("truth", "score", "match"),
    [
        ([0, 1, 1], [0.1, 0.2], "has 3 values"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "only 0 and 1"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "non-finite"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "undefined"),
        ([], [], "empty"),
    ],
)
def test_bad_input(truth, score, match):
    with pytest.raises(InvalidImageError, match=match):
        auc_with_ci(truth, score, n_bootstrap=10)
