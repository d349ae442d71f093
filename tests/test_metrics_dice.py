"""Dice (NumPy and TensorFlow), soft-Dice loss, Keras Dice metric, BraTS regions,
region Dice and Hausdorff 95."""

from __future__ import annotations

import numpy as np
import pytest

from medimg import metrics
from medimg.errors import InvalidImageError


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
