"""medimg.metrics: Dice (NumPy and TensorFlow; masks counted, probabilities as float32
dot products), soft-Dice loss, Keras Dice metric, BraTS regions, region Dice, Hausdorff
95, and classification evaluation (AUC with a bootstrap interval, ROC curve, confusion
matrix at a threshold, AUC per group)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medimg import metrics
from medimg.errors import InvalidImageError
from medimg.metrics import (
    auc_by_group,
    auc_with_ci,
    confusion_at,
    rank_auc,
    roc_curve,
    youden_threshold,
)


def _masks(rng, shape=(12, 10, 8)):
    a = rng.random(shape) > 0.6
    b = a.copy()
    b[:3] = ~b[:3]
    return a, b


def test_dice_matches_definition(rng):
    a, b = _masks(rng)
    expected = 2 * np.sum(a & b) / (a.sum() + b.sum())
    assert metrics.dice(a, b) == pytest.approx(expected, rel=1e-4)
    assert metrics.dice(a.astype(np.float32), b.astype(np.uint8)) == pytest.approx(expected,
                                                                                 rel=1e-4)
    assert metrics.dice(a, a) == pytest.approx(1.0)
    assert metrics.dice(a, ~a) == pytest.approx(0.0, abs=1e-6)


def test_dice_two_empty_masks_is_one_and_one_empty_is_zero():
    empty = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    assert metrics.dice(empty, empty) == pytest.approx(1.0)
    assert metrics.dice(empty, full) == pytest.approx(0.0, abs=1e-6)


def test_dice_per_class_axis(rng):
    a, b = _masks(rng, (2, 6, 6, 3))
    per_class = metrics.dice(a, b, axis=(0, 1, 2))
    assert per_class.shape == (3,)
    for c in range(3):
        assert per_class[c] == pytest.approx(metrics.dice(a[..., c], b[..., c]))


def test_dice_tensorflow_agrees_with_numpy(rng):
    tf = pytest.importorskip("tensorflow")
    a, _ = _masks(rng, (2, 6, 6, 3))
    p = rng.random(a.shape).astype(np.float32)
    for axis in (None, (0, 1, 2), (1, 2)):
        np_value = metrics.dice(a, p, axis=axis)
        tf_value = metrics.dice(tf.constant(a), tf.constant(p), axis=axis)
        np.testing.assert_allclose(tf_value.numpy(), np_value, rtol=1e-5)
    assert float(metrics.dice(tf.zeros((3, 3)), tf.zeros((3, 3)))) == pytest.approx(1.0)


def test_dice_shape_mismatch_is_a_clear_error():
    with pytest.raises(InvalidImageError, match="shape"):
        metrics.dice(np.zeros((3, 3)), np.zeros((3, 4)))


def test_soft_dice_loss_values(rng):
    pytest.importorskip("keras")
    t = (rng.random((2, 4, 4, 4, 2)) > 0.5).astype(np.float32)
    assert float(metrics.soft_dice_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(metrics.soft_dice_loss(t, 1 - t, smooth=1e-6)) == pytest.approx(1.0, abs=1e-5)
    p = rng.random(t.shape).astype(np.float32)
    axes = (0, 1, 2, 3)
    expected = 1 - np.mean((2 * (p * t).sum(axes) + 1) / ((p**2).sum(axes) + (t**2).sum(axes) + 1))
    assert float(metrics.soft_dice_loss(t, p)) == pytest.approx(expected, rel=1e-5)


def test_soft_dice_loss_has_useful_gradient():
    tf = pytest.importorskip("tensorflow")
    t = tf.constant(np.eye(2, dtype=np.float32)[np.array([[0, 1], [1, 0]])][None])
    p = tf.Variable(tf.fill(t.shape, 0.5))
    with tf.GradientTape() as tape:
        loss = metrics.soft_dice_loss(t, p)
    grad = tape.gradient(loss, p).numpy()
    # raising the probability of the true class lowers the loss
    assert np.all(grad[t.numpy() == 1] < 0)


def test_keras_dice_metric_accumulates_over_batches(rng):
    pytest.importorskip("keras")
    t = rng.random((4, 6, 6, 2)) > 0.5
    p = rng.random((4, 6, 6, 2)).astype(np.float32)
    metric = metrics.dice_metric("d")
    metric.update_state(t[:2].astype(np.float32), p[:2])
    metric.update_state(t[2:].astype(np.float32), p[2:])
    assert float(metric.result()) == pytest.approx(metrics.dice(t, p > 0.5), rel=1e-5)
    metric.reset_state()
    only = metrics.dice_metric("d0", class_index=1)
    only.update_state(t.astype(np.float32), p)
    assert float(only.result()) == pytest.approx(metrics.dice(t[..., 1], p[..., 1] > 0.5),
                                                 rel=1e-5)


def test_brats_regions_numpy_and_tensorflow():
    label = np.array([0, 1, 2, 4, 3])
    regions = metrics.brats_regions(label)
    expected = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1]], bool)
    np.testing.assert_array_equal(regions, expected)
    tf = pytest.importorskip("tensorflow")
    np.testing.assert_array_equal(metrics.brats_regions(tf.constant(label)).numpy(), expected)


def test_brats_regions_rejects_non_integer_labels():
    with pytest.raises(InvalidImageError, match="integers"):
        metrics.brats_regions(np.array([0.5, 1.0]))


def test_region_dice_dict():
    truth = np.zeros((6, 6, 6), np.uint8)
    truth[1:4, 1:4, 1:4] = 2
    truth[2, 2, 2] = 4
    pred = truth.copy()
    pred[2, 2, 2] = 1  # right tumour core, wrong enhancing label
    scores = metrics.region_dice(pred, truth)
    assert set(scores) == {"WT", "TC", "ET"}
    assert scores["WT"] == pytest.approx(1.0)
    assert scores["TC"] == pytest.approx(1.0)
    assert scores["ET"] == pytest.approx(0.0, abs=1e-4)
    empty = np.zeros_like(truth)
    assert metrics.region_dice(empty, empty) == pytest.approx({"WT": 1.0, "TC": 1.0, "ET": 1.0})


def test_hausdorff95_shifted_cube_and_spacing():
    a = np.zeros((20, 20, 20), bool)
    a[5:10, 5:10, 5:10] = True
    b = np.roll(a, 3, axis=0)
    assert metrics.hausdorff95(a, a) == pytest.approx(0.0)
    assert metrics.hausdorff95(a, b) == pytest.approx(3.0)
    assert metrics.hausdorff95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(6.0)
    # symmetric
    assert metrics.hausdorff95(b, a) == pytest.approx(metrics.hausdorff95(a, b))


def test_hausdorff95_ignores_few_outliers_unlike_max():
    a = np.zeros((40, 40), bool)
    a[5:35, 5:35] = True
    b = a.copy()
    b[0, 0] = True  # one stray voxel far away
    assert metrics.hausdorff95(a, b) < 1.0


def test_hausdorff95_empty_masks_and_bad_input():
    empty = np.zeros((5, 5, 5), bool)
    one = empty.copy()
    one[2, 2, 2] = True
    assert metrics.hausdorff95(empty, empty) == 0.0
    assert metrics.hausdorff95(empty, one) == float("inf")
    with pytest.raises(InvalidImageError, match="spacing"):
        metrics.hausdorff95(one, one, spacing=(1, 1))
    with pytest.raises(InvalidImageError, match="shapes"):
        metrics.hausdorff95(one, one[:4])


# --- Dice on every input kind (issue 14 item 3, issue 11 item 8) -----------------------


@pytest.mark.parametrize(("shape", "axis"), [
    ((3, 16, 16, 6), None),
    ((3, 16, 16, 6), (1, 2, 3)),          # one per region
    ((2, 6, 6, 3), (0, 1, 2)),            # one per class, classes last (rows are short)
    ((2, 6, 6, 3), (1, 2)),               # per sample and class
    ((3, 70_000), 1),                     # rows longer than one block
    ((140_000,), None),                   # several blocks
    ((4, 5, 6), -1),
])
def test_dice_float_masks_equal_bool_masks_exactly(rng, shape, axis):
    """0.0/1.0 float masks (and 0/1 integer masks) give exactly the bool result: a
    block's float32 sums of 0/1 values are exact integers."""
    t = rng.random(shape) > 0.6
    p = rng.random(shape) > 0.5
    expected = metrics.dice(t, p, axis=axis)
    for kind_t, kind_p in [(np.float32, np.float32), (np.float64, np.float32),
                           (np.uint8, np.float32), (np.int64, np.uint8), (bool, np.float16)]:
        got = metrics.dice(t.astype(kind_t), p.astype(kind_p), axis=axis)
        assert np.shape(got) == np.shape(expected)
        np.testing.assert_array_equal(got, expected)


def test_dice_float_masks_large_counts_stay_exact(rng):
    """More ones than float32 holds exactly (2**24) in one sum."""
    t = np.ones(2**24 + 3, np.float32)
    p = t.copy()
    p[::7] = 0
    assert metrics.dice(t, p) == metrics.dice(t > 0, p > 0)


@pytest.mark.parametrize(("shape", "axis"), [
    ((3, 40, 40, 12), None), ((3, 40, 40, 12), (1, 2, 3)), ((2, 8, 8, 3), (0, 1, 2)),
    ((200_000,), None),
])
def test_dice_soft_agrees_with_a_float64_reference(rng, shape, axis):
    t = (rng.random(shape) > 0.7).astype(np.float32)
    p = rng.random(shape, dtype=np.float32)
    t64, p64 = t.astype(np.float64), p.astype(np.float64)
    reference = ((2 * np.sum(t64 * p64, axis=axis) + 1e-5)
                 / (np.sum(t64, axis=axis) + np.sum(p64, axis=axis) + 1e-5))
    np.testing.assert_allclose(metrics.dice(t, p, axis=axis), reference, rtol=1e-6)
    np.testing.assert_allclose(metrics.dice(t64, p64, axis=axis), reference, rtol=1e-12)


@pytest.mark.parametrize(("y_true", "match"), [
    (np.array([0, 1, 2]), "integer array.*only 0 and 1"),
    (np.array([0, -1], np.int8), "integer array"),
    (np.array([0.0, 1.5]), r"\[0, 1\]"),
    (np.array([-0.1, 0.5], np.float32), r"\[0, 1\]"),
    (np.array([np.nan, 0.0]), "NaN or infinite"),
    (np.array([np.inf, 0.0]), "NaN or infinite"),
    (np.array(["a", "b"]), "dtype"),
])
def test_dice_refuses_values_its_input_kind_cannot_hold(y_true, match):
    with pytest.raises(InvalidImageError, match=match):
        metrics.dice(y_true, np.zeros(y_true.shape, bool))
    with pytest.raises(InvalidImageError, match=match.replace("y_true", "y_pred")):
        metrics.dice(np.zeros(y_true.shape, bool), y_true)


def test_dice_accepts_negative_zero_and_empty_input():
    t = np.array([-0.0, 1.0, 0.0], np.float32)  # -0.0 is a valid 0 (sign bit set)
    assert metrics.dice(t, np.array([0, 1, 0], bool)) == pytest.approx(1.0)
    assert metrics.dice(np.zeros(0, np.float32), np.zeros(0, bool)) == pytest.approx(1.0)


def test_dice_refuses_bad_values_late_in_a_large_array():
    p = np.zeros(300_000, np.float32)
    p[-1] = 2.0  # in the last block
    with pytest.raises(InvalidImageError, match=r"from 0 to 2"):
        metrics.dice(np.zeros(p.shape, bool), p)


def test_dice_refuses_bad_tensors_eagerly():
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(InvalidImageError, match=r"\[0, 1\]"):
        metrics.dice(tf.constant([0.0, 1.0]), tf.constant([0.2, 1.2]))
    with pytest.raises(InvalidImageError, match="integer array"):
        metrics.dice(tf.constant([0, 3]), tf.constant([0.0, 1.0]))
    assert float(metrics.dice(tf.constant([0, 1]), tf.constant([0.0, 1.0]))) == \
        pytest.approx(1.0)


def test_region_dice_refuses_labels_outside_brats():
    truth = np.zeros((6, 6, 6), np.uint8)
    truth[1:4, 1:4, 1:4] = 2
    for bad in (7, 5, 255):
        pred = truth.copy()
        pred[0, 0, 0] = bad  # used to count as background and score 1.0
        with pytest.raises(InvalidImageError, match=rf"pred holds label\(s\) \[{bad}\]"):
            metrics.region_dice(pred, truth)
        with pytest.raises(InvalidImageError, match="truth holds label"):
            metrics.region_dice(truth, pred)
    negative = truth.astype(np.int16)
    negative[0, 0, 0] = -1
    with pytest.raises(InvalidImageError, match="-1"):
        metrics.region_dice(negative, truth)
    both = truth.copy()
    both[0, 0, 0], both[0, 0, 1] = 3, 4
    with pytest.raises(InvalidImageError, match="both label 3 and label 4"):
        metrics.region_dice(both, truth)
    with pytest.raises(InvalidImageError, match="integer labels"):
        metrics.region_dice(truth + 0.5, truth)


def test_region_dice_cache_code_3_equals_label_4():
    truth = np.zeros((6, 6, 6), np.uint8)
    truth[1:4, 1:4, 1:4] = 2
    truth[2, 2, 2:4] = 4
    pred = truth.copy()
    pred[1, 1, 1] = 1
    cached_truth, cached_pred = truth.copy(), pred.copy()
    cached_truth[cached_truth == 4] = 3
    cached_pred[cached_pred == 4] = 3
    assert metrics.region_dice(cached_pred, cached_truth) == metrics.region_dice(pred, truth)


@pytest.mark.parametrize("spacing", [(1.0, 0.0, 1.0), (1.0, -1.0, 1.0), (np.nan, 1.0, 1.0),
                                     (np.inf, 1.0, 1.0), ("a", 1, 1)])
def test_hausdorff95_refuses_impossible_spacing(spacing):
    a = np.zeros((6, 6, 6), bool)
    a[2:4, 2:4, 2:4] = True
    with pytest.raises(InvalidImageError, match="spacing"):
        metrics.hausdorff95(a, a, spacing=spacing)


# --- classification evaluation --------------------------------------------------------


def _scores(rng, n=400, separation=1.0):
    truth = rng.integers(0, 2, n)
    score = rng.normal(truth * separation, 1.0)
    return truth, score


def test_rank_auc_matches_sklearn_with_ties(rng):
    truth = rng.integers(0, 2, 200)
    score = np.round(rng.normal(truth * 0.8, 1.0), 1)  # many ties
    assert rank_auc(truth[None], score[None])[0] == pytest.approx(roc_auc_score(truth, score))


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


def test_mean_with_ci_covers_the_mean_and_drops_missing_values():
    from medimg.metrics import mean_with_ci

    result = mean_with_ci([0.6, 0.7, None, float("nan"), 0.8, 0.9], seed=1)
    assert result["n"] == 4 and result["mean"] == pytest.approx(0.75)
    assert 0.6 <= result["low"] < result["mean"] < result["high"] <= 0.9
    again = mean_with_ci([0.6, 0.7, 0.8, 0.9], seed=1)
    assert again == mean_with_ci([0.6, 0.7, 0.8, 0.9], seed=1)  # seeded
    single = mean_with_ci([0.5])
    assert single["n"] == 1 and np.isnan(single["low"])
    assert mean_with_ci([])["n"] == 0


def test_proportion_with_ci_is_the_wilson_interval():
    from scipy.stats import binomtest

    from medimg.metrics import proportion_with_ci

    result = proportion_with_ci(7, 20)
    expected = binomtest(7, 20).proportion_ci(method="wilson")
    assert result["rate"] == 0.35
    assert (result["low"], result["high"]) == pytest.approx((expected.low, expected.high))
    assert np.isnan(proportion_with_ci(0, 0)["rate"])
    with pytest.raises(InvalidImageError):
        proportion_with_ci(5, 3)
