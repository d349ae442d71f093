"""medimg.viz: each figure helper draws what it says (panels, images, boxes, curves)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from medimg import viz


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and (ax.images or ax.lines or ax.patches
                                                           or ax.collections)]


def test_image_grid_draws_boxes_in_pixel_coordinates():
    images = [np.zeros((32, 32)), np.ones((32, 32)), np.eye(32)]
    boxes = [[(2, 3, 10, 12)], [], [(0, 0, 5, 5), (10, 10, 4, 4)]]
    fig = viz.image_grid(images, titles=["a", "b", "c"], boxes=boxes, ncols=2)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 3 and len(fig.axes) == 4  # 2x2 grid, last panel empty
    rects = [[p for p in ax.patches if isinstance(p, Rectangle)] for ax in drawn]
    assert [len(r) for r in rects] == [1, 0, 2]
    first = rects[0][0]
    assert (first.get_x(), first.get_y(), first.get_width(), first.get_height()) == (2, 3, 10, 12)
    assert [ax.get_title() for ax in drawn] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="at least one image"):
        viz.image_grid([])


def test_category_rates_bars_sum_to_one():
    table = pd.DataFrame({"view": ["AP", "AP", "PA", "PA", "PA"],
                          "sex": ["F", "M", "F", "M", "M"],
                          "class": ["a", "b", "a", "a", "b"]})
    fig = viz.category_rates(table, ["view", "sex"], by="class")
    ax = fig.axes[0]
    heights = {}
    for patch in ax.patches:
        x = round(patch.get_x() + patch.get_width() / 2, 3)
        heights[x] = heights.get(x, 0) + patch.get_height()
    assert len(heights) == 2 and all(h == pytest.approx(1.0) for h in heights.values())


def test_distributions_by_one_histogram_per_group():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"age": rng.integers(1, 90, 60).astype(float),
                          "spacing": rng.uniform(0.14, 0.17, 60),
                          "class": ["x", "y", "z"] * 20})
    table.loc[0, "age"] = np.nan  # missing values are left out, not an error
    fig = viz.distributions_by(table, ["age", "spacing"], by="class")
    assert len(visible_axes(fig)) == 2
    assert len(fig.legends[0].get_texts()) == 3


def test_intensity_histogram_shades_each_window():
    values = np.linspace(-1000, 1000, 1000)
    fig = viz.intensity_histogram(values, spans={"soft": (40, 400), "bone": (400, 1800)})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["soft", "bone"]


def test_training_curves_one_panel_per_metric():
    history = {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6],
               "auc": [0.6, 0.8, 0.9], "val_auc": [0.55, 0.7, 0.8]}
    fig = viz.training_curves(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "auc"]
    assert all(len(ax.lines) == 2 for ax in fig.axes)
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), history["val_loss"])


def test_overlay_draws_truth_outline_and_prediction_fill():
    image = np.random.default_rng(0).normal(size=(40, 40))
    truth = np.zeros((40, 40), np.uint8)
    truth[10:20, 10:20] = 1
    prediction = np.zeros((40, 40), np.uint8)
    prediction[12:22, 12:22] = 1
    fig = viz.overlay(image, truth, prediction, window=(0, 4), title="t")
    ax = fig.axes[0]
    assert len(ax.images) == 2  # image + prediction fill
    assert ax.images[0].get_clim() == (-2.0, 2.0)
    assert ax.collections, "the truth outline (contour) is missing"
    empty = viz.overlay(image, np.zeros_like(truth), np.zeros_like(truth))
    assert len(empty.axes[0].images) == 1 and not empty.axes[0].collections


def test_segmentation_slices_picks_tumour_slices():
    image = np.zeros((16, 16, 12, 4), np.float32)
    truth = np.zeros((16, 16, 12), np.uint8)
    truth[4:8, 4:8, 5:9] = 2
    fig = viz.segmentation_slices(image, truth, truth, n_slices=2,
                                  channel_names=["flair", "t1", "t1ce", "t2"])
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 6
    slices = sorted({int(t.rsplit(" ", 1)[1]) for t in titles})
    assert all(5 <= s <= 8 for s in slices)
    assert titles[0].startswith("flair")
