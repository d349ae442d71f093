"""medimg.viz: the display conventions (orientation letters from the affine, radiological
axial/coronal, sagittal anterior on the left, extents in mm), colour bars, legends, n on
bars and intervals, and that each figure draws what it says. Grad-CAM
(medimg.models.grad_cam) is tested here too, beside its figures."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from medimg import metrics, viz
from medimg.errors import ConfigError, InvalidImageError
from medimg.io import Volume

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and (ax.images or ax.lines or ax.patches
                                                           or ax.collections)]


def letters(ax):
    """The orientation letters drawn on an axes, as (top, bottom, left, right)."""
    found = {t.get_gid(): t.get_text() for t in ax.texts
             if (t.get_gid() or "").startswith("orientation-")}
    return tuple(found.get(f"orientation-{e}") for e in ("top", "bottom", "left", "right"))


def colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def legend_texts(legend):
    return [t.get_text() for t in legend.get_texts()]


def reoriented(volume, codes):
    """The same anatomy stored with axes pointing to ``codes``."""
    transform = ornt_transform(io_orientation(volume.affine), axcodes2ornt(codes))
    return Volume(apply_orientation(volume.array, transform),
                  volume.affine @ inv_ornt_aff(transform, volume.shape[:3]))


@pytest.fixture
def head():
    """An RAS volume with anisotropic voxels and landmarks: a bright block at the
    patient's right-anterior-superior corner, a dimmer one at left-posterior-inferior."""
    rng = np.random.default_rng(0)
    array = rng.normal(100, 5, (20, 24, 16)).astype(np.float32)
    array[15:19, 18:22, 11:15] = 400  # right (high x), anterior (high y), superior (high z)
    array[1:4, 1:4, 1:4] = 250        # left, posterior, inferior
    affine = np.diag([0.8, 1.2, 3.0, 1.0])
    affine[:3, 3] = (-10.0, 20.0, -30.0)
    return Volume(array, affine)


# ---------------------------------------------------------------------------------------
# The orientation core
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("codes", ["LPS", "PIR", "ASL", "ILP"])
@pytest.mark.parametrize("plane", viz.PLANES)
def test_same_anatomy_in_any_stored_orientation_displays_identically(head, codes, plane):
    other = reoriented(head, codes)
    assert "".join(other.axcodes) == codes
    for index in (0, 3, None):
        a = viz.display_slice(head, plane, index)
        b = viz.display_slice(other, plane, index)
        np.testing.assert_array_equal(a.array, b.array)
        assert a.letters == b.letters
        assert a.spacing == pytest.approx(b.spacing)
        assert a.position_mm == pytest.approx(b.position_mm)
    point = (head.affine @ [12, 7, 9, 1])[:3]
    np.testing.assert_array_equal(viz.display_slice(head, plane, point_mm=point).array,
                                  viz.display_slice(other, plane, point_mm=point).array)


def test_letters_follow_the_conventions(head):
    assert viz.display_slice(head, "axial").letters == ("A", "P", "R", "L")
    assert viz.display_slice(head, "coronal").letters == ("S", "I", "R", "L")
    assert viz.display_slice(head, "sagittal").letters == ("S", "I", "A", "P")


def test_landmarks_land_where_the_convention_says(head):
    # Axial through the bright block: right-anterior block -> viewer's left, top.
    axial = viz.display_slice(head, "axial", 12)
    rows, cols = np.nonzero(axial.array == 400)
    assert rows.max() < axial.array.shape[0] / 2 and cols.max() < axial.array.shape[1] / 2
    # Coronal: right-superior -> left, top.
    coronal = viz.display_slice(head, "coronal", 19)
    rows, cols = np.nonzero(coronal.array == 400)
    assert rows.max() < coronal.array.shape[0] / 2 and cols.max() < coronal.array.shape[1] / 2
    # Sagittal: anterior-superior -> LEFT, top; posterior-inferior block -> right, bottom.
    sagittal = viz.display_slice(head, "sagittal", 16)
    rows, cols = np.nonzero(sagittal.array == 400)
    assert rows.max() < sagittal.array.shape[0] / 2 and cols.max() < sagittal.array.shape[1] / 2
    low = viz.display_slice(head, "sagittal", 2)
    rows, cols = np.nonzero(low.array == 250)
    assert rows.min() > low.array.shape[0] / 2 and cols.min() > low.array.shape[1] / 2


@pytest.mark.parametrize("plane, shape_mm", [("axial", (24 * 1.2, 20 * 0.8)),
                                             ("coronal", (16 * 3.0, 20 * 0.8)),
                                             ("sagittal", (16 * 3.0, 24 * 1.2))])
def test_extent_is_shape_times_spacing(head, plane, shape_mm):
    ds = viz.display_slice(head, plane)
    assert ds.size_mm == pytest.approx(shape_mm)
    rows, cols = ds.array.shape
    assert ds.extent == pytest.approx((0.0, cols * ds.spacing[1], rows * ds.spacing[0], 0.0))
    _fig, ax = plt.subplots()
    viz.draw_slice(ds, ax)
    assert ax.images[0].get_extent() == pytest.approx(list(ds.extent))
    assert ax.get_xlabel() == "mm" and ax.get_ylabel() == "mm"
    assert letters(ax) == ds.letters


def test_index_and_point_are_checked(head):
    ds = viz.display_slice(head, "axial", point_mm=(0.0, 30.0, -30.0 + 3.0 * 5))
    assert ds.index == 5 and ds.position_mm == pytest.approx(-15.0)
    with pytest.raises(InvalidImageError, match="outside"):
        viz.display_slice(head, "axial", point_mm=(0, 0, 500))
    with pytest.raises(InvalidImageError, match="outside"):
        viz.display_slice(head, "axial", 16)
    with pytest.raises(ConfigError, match="plane"):
        viz.display_slice(head, "oblique")
    with pytest.raises(InvalidImageError, match="shape"):
        viz.display_slice(np.zeros((4, 4)), "axial")


def test_stored_cut_keeps_array_order_but_labels_the_edges(head):
    pir = reoriented(head, "PIR")
    stored = viz.display_slice(pir, "sagittal", reorient=False)
    np.testing.assert_array_equal(stored.array, pir.array[:, :, pir.shape[2] // 2])
    assert stored.letters == ("A", "P", "S", "I")  # rows run to P, columns to I


def test_display_slice_2d_puts_anterior_left_and_swaps_spacing():
    image = np.arange(12.0).reshape(3, 4)  # rows run to I, columns to A (VerSe sagittal)
    ds = viz.display_slice_2d(image, (2.0, 1.0), ("I", "A"))
    assert ds.plane == "sagittal" and ds.letters == ("S", "I", "A", "P")
    np.testing.assert_array_equal(ds.array, image[:, ::-1])
    transposed = viz.display_slice_2d(image, (2.0, 1.0), ("L", "P"))  # rows L, cols P: axial
    assert transposed.plane == "axial" and transposed.letters == ("A", "P", "R", "L")
    np.testing.assert_array_equal(transposed.array, image.T)
    assert transposed.spacing == (1.0, 2.0)
    kept = viz.display_slice_2d(image, (2.0, 1.0), ("I", "A"), reorient=False)
    assert kept.letters == ("S", "I", "P", "A")
    assert viz.display_slice_2d(image).letters is None
    with pytest.raises(InvalidImageError, match="axcodes"):
        viz.display_slice_2d(image, (1, 1), ("I", "S"))
    with pytest.raises(InvalidImageError, match="spacing"):
        viz.display_slice_2d(image, (0, 1), ("I", "A"))


def test_caption_states_the_convention(head):
    fig, axes = plt.subplots(1, 2)
    viz.draw_slice(viz.display_slice(head, "axial"), axes[0])
    viz.draw_slice(viz.display_slice(head, "sagittal"), axes[1])
    caption = [t for t in fig.texts if t.get_gid() == "display-convention"]
    assert len(caption) == 1
    text = caption[0].get_text().replace("\n", " ")
    assert "radiological" in text and "anterior on the left" in text
    assert viz.convention_caption(["coronal"]).startswith("Display: coronal: radiological")


# ---------------------------------------------------------------------------------------
# Volume views
# ---------------------------------------------------------------------------------------


def brats_label(shape):
    label = np.zeros(shape, np.uint8)
    label[12:18, 15:21, 8:14] = 2
    label[13:17, 16:20, 9:13] = 1
    label[14:16, 17:19, 10:12] = 4
    return label


def test_three_plane_letters_mm_legend_and_same_data_for_lps(head):
    label = brats_label(head.shape)
    fig = viz.three_plane(head, label=label)
    panels = image_axes(fig)
    assert [letters(ax) for ax in panels] == [("S", "I", "A", "P"), ("S", "I", "R", "L"),
                                              ("A", "P", "R", "L")]
    assert all(ax.get_xlabel() == "mm" for ax in panels)
    assert legend_texts(panels[-1].get_legend()) == [
        "1 necrotic / non-enhancing core", "2 oedema", "4 enhancing tumour"]
    lps = reoriented(head, "LPS")
    lps_label = Volume(reoriented(Volume(label, head.affine), "LPS").array, lps.affine)
    centre = tuple(int(c) for c in np.argwhere(label > 0).mean(axis=0).round())
    centre_mm = head.affine @ [*centre, 1]
    lps_point = tuple(round(v) for v in np.linalg.solve(lps.affine, centre_mm)[:3])
    other = viz.three_plane(lps, label=lps_label, point=lps_point)
    for a, b in zip(panels, image_axes(other), strict=True):
        np.testing.assert_array_equal(a.images[0].get_array(), b.images[0].get_array())
        np.testing.assert_array_equal(a.images[1].get_array(), b.images[1].get_array())
    assert not colorbars(fig)
    with_bar = viz.three_plane(head, colorbar=True, units="HU")
    assert [c.get_ylabel() for c in colorbars(with_bar)] == ["HU"]


def test_sequence_planes_colour_bar_rows_and_label_legend(head):
    image = np.stack([head.array, head.array * 0 + 1.1, head.array], axis=-1)
    fig = viz.sequence_planes(image, ["T1", "bias field", "T1 after N4"], affine=head.affine,
                              label=brats_label(head.shape), colorbar=[False, True, False],
                              units=[None, "field (no unit)", None])
    assert [c.get_ylabel() for c in colorbars(fig)] == ["field (no unit)"]
    assert len(image_axes(fig)) == 12
    assert legend_texts(fig.legends[0])[1] == "2 oedema"
    with pytest.raises(InvalidImageError, match="names"):
        viz.sequence_planes(image, ["a", "b"])


def test_slice_view_legend_names_truth_and_prediction(head):
    truth = head.array > 300
    fig = viz.slice_view(head, "coronal", index=19, truth=truth, prediction=np.roll(truth, 1, 0),
                         colorbar=True, units="a.u.")
    ax = image_axes(fig)[0]
    assert legend_texts(ax.get_legend()) == ["truth (outline)", "prediction (fill)"]
    assert letters(ax) == ("S", "I", "R", "L")
    assert colorbars(fig)[0].get_ylabel() == "a.u."


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
    assert legend_texts(fig.legends[0]) == ["2 oedema"]
    assert all(letters(ax) == ("A", "P", "R", "L") for ax in fig.axes)


def test_segmentation_slices_error_column_counts_false_positives_and_negatives():
    image = np.random.default_rng(1).normal(size=(16, 16, 12)).astype(np.float32)
    truth = np.zeros((16, 16, 12), np.uint8)
    truth[4:8, 4:8, 5:9] = 1
    prediction = np.zeros_like(truth)
    prediction[5:10, 4:8, 5:9] = 1  # one column of x missed, two extra
    fig = viz.segmentation_slices(image, truth, prediction, slices=[6], errors=True)
    assert [ax.get_title().split(",")[0] for ax in fig.axes] == ["image (z = 6.0 mm)", "truth",
                                                                 "prediction", "errors"]
    assert fig.axes[3].get_xlabel() == "FP 8 px · FN 4 px"
    texts = legend_texts(fig.legends[0])
    assert "false positive" in texts and "false negative" in texts
    assert "truth" in texts and "prediction" in texts  # binary masks, not BraTS labels


def test_sagittal_overlays_across_stored_orientations():
    rng = np.random.default_rng(2)
    ct = rng.normal(40, 10, (12, 20, 30)).astype(np.float32)
    mask = np.zeros(ct.shape, np.uint8)
    for n, level in enumerate((25, 24, 20, 28, 19)):  # L6, L5, L1, T13, T12 going up
        mask[4:8, 8:14, 2 + 5 * n:6 + 5 * n] = level
    ct[mask > 0] = 500
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    ct_volume = reoriented(Volume(ct, affine), "PIR")       # as a VerSe loader gives it
    prediction = Volume((mask > 0).astype(np.uint8), affine)  # on the file's (RAS) grid
    fig = viz.sagittal_overlays(ct_volume, reoriented(Volume(mask, affine), "PIR"), prediction,
                                n_slices=2)
    panels = image_axes(fig)
    assert len(panels) == 8 and all(letters(ax)[2] == "A" for ax in panels)
    assert colorbars(fig)[0].get_ylabel() == "CT (HU)"
    assert legend_texts(fig.legends[0])[:6] == ["T12", "T13", "L1", "L5", "L6", "prediction"]
    assert panels[3].get_xlabel() == "FP 0 px · FN 0 px"
    # The bone is on the left half when anterior: planted at y 8:14 of 20 (anterior half).
    shown = panels[0].images[0].get_array()
    assert np.argwhere(shown > 300)[:, 1].mean() < shown.shape[1] / 2


def test_vertebra_labels_legend_in_anatomical_order():
    mask = np.zeros((10, 12, 60), np.uint8)
    for n, level in enumerate((26, 25, 20, 28, 19, 1)):  # S, L6, L1, T13, T12, C1 upwards
        mask[3:7, 4:8, 2 + 9 * n:8 + 9 * n] = level
    ct = np.where(mask > 0, 600.0, 0.0).astype(np.float32)
    fig = viz.vertebra_labels(Volume(ct, np.eye(4)), mask)
    ax = image_axes(fig)[0]
    assert legend_texts(ax.get_legend()) == ["C1", "T12", "T13", "L1", "L6", "S"]
    names = {t.get_text(): t.get_position()[1] for t in ax.texts
             if (t.get_gid() or "").startswith("level-")}
    assert sorted(names, key=names.get) == ["C1", "T12", "T13", "L1", "L6", "S"]  # top down


def test_vertebra_tables_agree_with_the_verse_module():
    from medimg.datasets import verse

    assert viz.VERTEBRA_NAMES == verse.VERTEBRA_NAMES
    assert [viz.VERTEBRA_NAMES[v] for v in viz.VERTEBRA_ORDER] == (
        [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 14)]
        + [f"L{i}" for i in range(1, 7)] + ["S", "Cocc"])


def test_orientation_check_stored_rows_differ_displayed_rows_agree(head):
    fig = viz.orientation_check({"RAS": head, "PIR": reoriented(head, "PIR")}, units="a.u.")
    stored, displayed = image_axes(fig)[:2], image_axes(fig)[2:]
    assert letters(stored[0]) != letters(stored[1])
    assert letters(displayed[0]) == letters(displayed[1]) == ("S", "I", "A", "P")
    np.testing.assert_array_equal(displayed[0].images[0].get_array(),
                                  displayed[1].images[0].get_array())


def test_window_views_clim_and_colour_bars(head):
    fig = viz.window_views(head, {"soft": (40, 400), "bone": (400, 1800)}, plane="axial")
    panels = image_axes(fig)
    assert [ax.images[0].get_clim() for ax in panels] == [(-160.0, 240.0), (-500.0, 1300.0)]
    assert [c.get_ylabel() for c in colorbars(fig)] == ["HU", "HU"]


def test_n4_comparison_shares_grey_scale_and_centres_the_field(head):
    field = np.linspace(0.9, 1.2, head.shape[0])[:, None, None] * np.ones(head.shape)
    mask = np.ones(head.shape, bool)
    fig = viz.n4_comparison(head, head.array / field, field, mask=mask, planes=["axial"])
    before, shown_field, after = image_axes(fig)
    assert before.images[0].get_clim() == after.images[0].get_clim()
    norm = shown_field.images[0].norm
    assert norm.vcenter == 1.0 and norm.vmin < 0.95 and norm.vmax > 1.15
    labels = [c.get_ylabel() for c in colorbars(fig)]
    assert labels[1].startswith("bias field") and labels[0] == labels[2] == "intensity (a.u.)"


# ---------------------------------------------------------------------------------------
# 2-D overlays, errors, galleries
# ---------------------------------------------------------------------------------------


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
    assert legend_texts(ax.get_legend()) == ["truth (outline)", "prediction (fill)"]
    empty = viz.overlay(image, np.zeros_like(truth), np.zeros_like(truth))
    assert len(empty.axes[0].images) == 1 and not empty.axes[0].collections


def test_overlay_with_orientation_and_vertebra_labels():
    image = np.zeros((30, 20))
    truth = np.zeros((30, 20), np.uint8)
    truth[2:8, 14:18] = 19    # T12, superior-anterior (rows run to I, columns to A)
    truth[10:16, 14:18] = 28  # T13
    fig = viz.overlay(image, truth, labels=True, spacing=(1.5, 1.0), axcodes=("I", "A"))
    ax = fig.axes[0]
    assert letters(ax) == ("S", "I", "A", "P")
    assert ax.images[0].get_extent() == pytest.approx([0, 20, 45, 0])
    shown = ax.images[1].get_array()
    assert np.argwhere(~np.ma.getmaskarray(shown))[:, 1].max() < 10  # anterior now on the left
    assert legend_texts(ax.get_legend()) == ["T12", "T13", "truth (outline)"]


def test_error_map_counts_each_kind():
    truth = np.zeros((20, 20), np.uint8)
    truth[5:10, 5:10] = 1
    prediction = np.zeros_like(truth)
    prediction[5:10, 7:13] = 1
    fig = viz.error_map(np.zeros((20, 20)), truth, prediction, spacing=(0.5, 0.5))
    texts = legend_texts(fig.axes[0].get_legend())
    assert texts == ["false positive: 15 px, 4 mm²", "false negative: 10 px, 2 mm²",
                     "agree (true positive): 15 px, 4 mm²"]
    core = viz.error_map(np.zeros((20, 20)), truth * 4, prediction * 1, classes={4})
    assert legend_texts(core.axes[0].get_legend())[1] == "false negative: 25 px"
    with pytest.raises(InvalidImageError, match="one shape"):
        viz.error_map(np.zeros((20, 20)), truth, prediction[:10])


def test_overlay_grid_one_legend_for_the_batch():
    images = np.zeros((5, 16, 16, 1))
    truths = np.zeros((5, 16, 16, 1), np.uint8)
    truths[:, 4:8, 4:8] = 1
    fig = viz.overlay_grid(images, truths, truths, ncols=3, titles=list("abcde"))
    assert len([ax for ax in fig.axes if ax.images]) == 5
    assert legend_texts(fig.legends[0]) == ["truth (outline)", "prediction (fill)"]


def test_augmentation_panels_share_the_original_grey_scale():
    rng = np.random.default_rng(3)
    before = rng.uniform(0, 1, (3, 12, 12))
    after = np.stack([np.fliplr(b) * 1.5 for b in before])
    fig = viz.augmentation_panels(before, after, truths_before=before > 0.9,
                                  truths_after=after > 1.35, titles=["flip x1.5"] * 3)
    panels = image_axes(fig)
    assert len(panels) == 6
    for col in range(3):
        assert panels[col].images[0].get_clim() == panels[col + 3].images[0].get_clim()
    np.testing.assert_array_equal(panels[3].images[0].get_array(), after[0])
    with pytest.raises(InvalidImageError, match="as many"):
        viz.augmentation_panels(before, after[:2])


def test_case_gallery_shows_the_misclassified_most_confident_first():
    y_true = np.array([0, 0, 1, 1, 0, 1])
    y_score = np.array([0.9, 0.2, 0.3, 0.8, 0.55, 0.05])
    images = [np.full((8, 8), i, float) for i in range(6)]
    fig = viz.case_gallery(images, y_true, y_score, threshold=0.5,
                           ids=[f"p{i}" for i in range(6)], axcodes=("I", "L"), spacing=(2, 2))
    shown = [ax for ax in fig.axes if ax.images]
    titles = [ax.get_title() for ax in shown]
    assert [t.split("\n")[1] for t in titles] == ["p5", "p0", "p2", "p4"]
    assert titles[0].startswith("FN · truth 1 · score 0.05")
    assert titles[1].startswith("FP · truth 0 · score 0.90")
    assert letters(shown[0]) == ("S", "I", "R", "L")
    assert "4 of 4 misclassified" in fig.legends[0].get_title().get_text()
    none = viz.case_gallery(images[:2], [0, 1], [0.1, 0.9])
    assert "no misclassified cases among 2" in [t.get_text() for t in none.axes[0].texts]
    with pytest.raises(ConfigError, match="which"):
        viz.case_gallery(images, y_true, y_score, which="bad")


def test_grad_cam_overlay_resizes_the_heat_map_and_adds_a_colour_bar():
    image = np.zeros((64, 48))
    heat = np.zeros((8, 6))
    heat[1, 4] = 1.0
    fig = viz.grad_cam_overlay(image, heat, spacing=(1.0, 1.0), axcodes=("I", "L"))
    ax = image_axes(fig)[0]
    assert ax.images[1].get_array().shape == (64, 48)
    row, col = np.unravel_index(np.argmax(ax.images[1].get_array()), (64, 48))
    assert row < 24 and col > 24
    assert colorbars(fig)[0].get_ylabel().startswith("Grad-CAM")
    gallery = viz.grad_cam_gallery(np.zeros((3, 16, 16, 1)), np.zeros((3, 16, 16)),
                                   y_true=[1, 0, 1], y_score=[0.9, 0.7, 0.2])
    assert len(image_axes(gallery)) == 6 and len(colorbars(gallery)) == 1
    assert [ax.get_title() for ax in image_axes(gallery)[:3]] == [
        "TP · truth 1\nscore 0.90", "FP · truth 0\nscore 0.70", "FN · truth 1\nscore 0.20"]


# ---------------------------------------------------------------------------------------
# Plots: histograms, bars, curves
# ---------------------------------------------------------------------------------------


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


def test_image_grid_letters_mm_boxes_and_colour_bar():
    fig = viz.image_grid([np.zeros((32, 32))], boxes=[[(2, 3, 10, 12)]], spacing=(0.5, 0.5),
                         axcodes=("I", "L"), colorbar=True, units="HU")
    ax = image_axes(fig)[0]
    assert letters(ax) == ("S", "I", "R", "L")
    box = next(p for p in ax.patches if isinstance(p, Rectangle))
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (1, 1.5, 5, 6)
    assert colorbars(fig)[0].get_ylabel() == "HU"


def test_category_rates_bars_sum_to_one_and_show_n():
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
    assert [t.get_text() for t in ax.texts if t.get_gid() == "bar-n"] == ["n=2", "n=3"]
    counts = viz.category_rates(table, ["sex"], by="class", normalize=False)
    tops = [t.get_position()[1] for t in counts.axes[0].texts if t.get_gid() == "bar-n"]
    assert tops == [2, 3]


def test_distributions_by_one_histogram_per_group_with_n():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"age": rng.integers(1, 90, 60).astype(float),
                          "spacing": rng.uniform(0.14, 0.17, 60),
                          "class": ["x", "y", "z"] * 20})
    table.loc[0, "age"] = np.nan  # missing values are left out, not an error
    fig = viz.distributions_by(table, ["age", "spacing"], by="class")
    assert len(visible_axes(fig)) == 2
    assert legend_texts(fig.legends[0]) == ["x (n=20)", "y (n=20)", "z (n=20)"]


def test_intensity_histogram_shades_each_window():
    values = np.linspace(-1000, 1000, 1000)
    fig = viz.intensity_histogram(values, spans={"soft": (40, 400), "bone": (400, 1800)})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["soft", "bone"]
    assert ax.get_ylabel() == "pixels (n = 1,000)"


def test_hu_histogram_reference_lines_and_ranges():
    hu = np.concatenate([np.full(100, -1000.0), np.full(50, 40.0), np.full(10, 3000.0)])
    fig = viz.hu_histogram(hu)
    ax = fig.axes[0]
    assert legend_texts(ax.get_legend()) == [
        "air (-1000 HU)", "fat (-100 HU)", "soft tissue (40 HU)",
        "cancellous bone (200 to 400 HU)", "cortical bone (> 1000 HU)"]
    lines = sorted(line.get_xdata()[0] for line in ax.lines)
    assert lines == [-1000, -100, 40]
    assert "n = 160 voxels (10 outside" in ax.get_title()
    masked = viz.hu_histogram(hu, mask=hu > -500)
    assert masked.axes[0].get_title().startswith("n = 60 voxels")


def test_sequence_histograms_and_constant_slices(head):
    image = np.stack([head.array, head.array], -1)
    fig = viz.sequence_histograms(image, ["a", "b"], label=brats_label(head.shape))
    assert fig.axes[0].get_xlabel() == "intensity (a.u.)"
    assert legend_texts(fig.axes[0].get_legend())[1].startswith("tumour (n = ")
    padded = np.pad(head.array, ((2, 0), (0, 0), (0, 0)))
    profile = viz.constant_slice_profile(padded, affine=head.affine)
    assert profile.axes[0].get_title() == "x: 2 of 22 constant"
    assert profile.axes[0].get_xlabel() == "slice index (L → R)"


def test_training_curves_one_panel_per_metric_and_kept_epoch():
    history = pd.DataFrame({"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6],
                            "auc": [0.6, 0.8, 0.9], "val_auc": [0.55, 0.7, 0.8]})
    fig = viz.training_curves(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "auc"]
    assert all(len(ax.lines) == 2 for ax in fig.axes)
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), history["val_loss"])
    history.attrs["best_epoch"] = 2
    marked = viz.training_curves(history)
    assert marked.axes[0].lines[2].get_xdata()[0] == 2
    assert "kept epoch 2" in legend_texts(marked.axes[0].get_legend())


@pytest.fixture
def scores():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 120)
    model = np.clip(0.3 * y + rng.normal(0.35, 0.2, 120), 0, 1)
    baseline = np.clip(0.08 * y + rng.normal(0.4, 0.2, 120), 0, 1)
    return y, model, baseline


def test_roc_curves_legend_gives_auc_interval_and_baseline(scores):
    y, model, baseline = scores
    fig = viz.roc_curves(y, model, baselines={"metadata": baseline}, n_bootstrap=200, seed=1,
                         operating_point=0.5)
    ax = fig.axes[0]
    auc = metrics.auc_with_ci(y, model, n_bootstrap=200, seed=1)
    base = metrics.auc_with_ci(y, baseline, n_bootstrap=200, seed=1)
    texts = legend_texts(ax.get_legend())
    assert texts[0] == (f"model: AUC {auc['auc']:.3f} (95% CI {auc['low']:.3f}-"
                        f"{auc['high']:.3f})")
    assert texts[1].startswith(f"metadata: AUC {base['auc']:.3f} (95% CI")
    assert texts[2] == "chance: AUC 0.5"
    roc = metrics.roc_curve(y, model)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), roc.fpr)
    cm = metrics.confusion_at(y, model, threshold=0.5)
    assert ax.lines[3].get_ydata()[0] == pytest.approx(cm.attrs["sensitivity"])
    assert ax.get_title() == f"ROC: n = 120 ({int(y.sum())} positive)"


def test_precision_recall_average_precision_and_prevalence(scores):
    from sklearn.metrics import average_precision_score

    y, model, baseline = scores
    fig = viz.precision_recall(y, model, baselines={"metadata": baseline}, n_bootstrap=100)
    ax = fig.axes[0]
    texts = legend_texts(ax.get_legend())
    assert texts[0].startswith(f"model: AP {average_precision_score(y, model):.3f} (95% CI ")
    assert ax.lines[-1].get_ydata()[0] == pytest.approx(y.mean())
    assert texts[-1] == f"no skill: prevalence {y.mean():.2f}"


def test_calibration_counts_per_bin_and_observed_rates(scores):
    y, model, _ = scores
    fig = viz.calibration(y, model, n_bins=5)
    table = viz.calibration_table(y, model, n_bins=5)
    counts = [int(t.get_text()) for t in fig.axes[1].texts if t.get_gid() == "bin-n"]
    assert counts == table.n.tolist() and sum(counts) == 120
    first = (model < 0.2)
    assert table.n.iloc[0] == first.sum()
    assert table.observed.iloc[0] == pytest.approx(y[first].mean())
    assert all(table.observed_low <= table.observed) and all(table.observed <= table.observed_high)
    brier = np.mean((model - y) ** 2)
    assert f"Brier {brier:.3f}, n = 120" in legend_texts(fig.axes[0].get_legend())[1]
    with pytest.raises(InvalidImageError, match="probabilities"):
        viz.calibration(y, model * 3)


def test_dice_bars_means_n_and_intervals():
    table = pd.DataFrame({"WT": [0.8, 0.9, 0.85, 0.7], "TC": [0.6, np.nan, 0.7, 0.5],
                          "ET": [0.5, np.nan, np.nan, np.nan]})
    fig = viz.dice_bars(table, n_bootstrap=500)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.8125, 0.6, 0.5])
    texts = [t.get_text() for t in ax.texts if t.get_gid() == "bar-n"]
    assert texts == ["0.81\nn=4", "0.60\nn=3", "0.50\nn=1"]
    bars = next(c for c in ax.containers if hasattr(c, "errorbar"))
    segments = bars.errorbar.lines[2][0].get_segments()
    low, high = segments[0][0][1], segments[0][1][1]
    assert 0.7 <= low < 0.8125 < high <= 0.9
    assert segments[2][0][1] == segments[2][1][1] == 0.5  # n = 1: no interval
    assert [t.get_text() for t in ax.get_xticklabels()] == ["WT", "TC", "ET"]


def test_dice_bars_vertebrae_in_anatomical_order_and_grouped_methods():
    model = pd.DataFrame({"L1": [0.9], "T13": [0.8], "C1": [0.5], "S": [0.4]})
    fig = viz.dice_bars({"U-Net": model, "HU threshold": model / 2})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["C1", "T13", "L1", "S"]
    assert legend_texts(ax.get_legend()) == ["U-Net", "HU threshold"]
    assert len(ax.patches) == 8


# ---------------------------------------------------------------------------------------
# Grad-CAM (medimg.models.grad_cam)
# ---------------------------------------------------------------------------------------


def planted_model(two_inputs=False):
    """A hand-weighted CNN: channel 0 (a small square) is the evidence; channel 1 (a
    larger, brighter blob) is seen by the network but weighs nothing in the output."""
    import keras
    from keras import layers

    image = keras.Input((32, 32, 2), name="image")
    x = layers.Conv2D(2, 3, padding="same", activation="relu", name="evidence")(image)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    inputs = [image]
    if two_inputs:
        features = keras.Input((3,), name="features")
        inputs.append(features)
        x = layers.Concatenate()([x, layers.Dense(1, name="feature_dense")(features)])
    output = layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(inputs, output)
    kernel = np.zeros((3, 3, 2, 2), np.float32)
    kernel[:, :, 0, 0] = kernel[:, :, 1, 1] = 1 / 9
    model.get_layer("evidence").set_weights([kernel, np.zeros(2, np.float32)])
    weights = [[4.0], [0.0]] + ([[1.0]] if two_inputs else [])
    model.get_layer("probability").set_weights([np.array(weights, np.float32),
                                                np.array([-1.0], np.float32)])
    return model


def planted_images(n=2):
    images = np.zeros((n, 32, 32, 2), np.float32)
    images[:, 4:10, 20:26, 0] = 1.0
    images[:, 18:30, 2:14, 1] = 3.0
    return images


@pytest.mark.parametrize("two_inputs", [False, True])
def test_grad_cam_highlights_the_planted_evidence_not_the_distractor(two_inputs):
    from medimg.models import grad_cam

    model = planted_model(two_inputs)
    images = planted_images()
    inputs = (images, np.ones((2, 3), np.float32)) if two_inputs else images
    cam = grad_cam(model, inputs)
    assert cam.shape == (2, 32, 32) and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    for heat in cam:
        row, col = np.unravel_index(np.argmax(heat), heat.shape)
        assert 3 <= row <= 10 and 19 <= col <= 26
        assert heat[18:30, 2:14].max() < 0.05  # the brighter blob carries no evidence
    # Plain activations would point at the distractor: Grad-CAM's weighting matters.
    import keras

    activations = keras.Model(model.inputs, model.get_layer("evidence").output)(
        list(inputs) if two_inputs else [inputs])
    summed = np.asarray(activations).sum(axis=-1)[0]
    assert summed[18:30, 2:14].max() > summed[4:10, 20:26].max()


def test_grad_cam_on_the_two_input_classifier_and_its_errors():
    from medimg.models import grad_cam, two_input_classifier

    model = two_input_classifier((32, 32, 1), 3, filters=(4, 8), compile=False)
    rng = np.random.default_rng(0)
    images, features = rng.normal(size=(3, 32, 32, 1)), rng.normal(size=(3, 3))
    as_tuple = grad_cam(model, (images, features))
    as_dict = grad_cam(model, {"image": images, "features": features})
    assert as_tuple.shape == (3, 32, 32)
    np.testing.assert_allclose(as_tuple, as_dict, atol=1e-6)
    assert np.all((as_tuple >= 0) & (as_tuple <= 1))
    explicit = grad_cam(model, (images, features), layer_name="block2_relu1")
    np.testing.assert_allclose(explicit, as_tuple, atol=1e-6)  # the default layer
    with pytest.raises(ConfigError, match="no layer 'nope'"):
        grad_cam(model, (images, features), layer_name="nope")
    with pytest.raises(ConfigError, match="class_index"):
        grad_cam(model, (images, features), class_index=3)


# ---------------------------------------------------------------------------------------
# Every figure renders to PNG, never calls plt.show; viz stays on its floor.
# ---------------------------------------------------------------------------------------


def test_every_new_figure_renders_to_png(head, scores, tmp_path, monkeypatch):
    def no_show(*args, **kwargs):
        raise AssertionError("viz must not call plt.show")

    monkeypatch.setattr(plt, "show", no_show)
    y, model, baseline = scores
    label = brats_label(head.shape)
    mask = np.zeros(head.shape, np.uint8)
    mask[8:12, 10:14, 2:6], mask[8:12, 10:14, 8:12] = 20, 19
    images = np.random.default_rng(5).normal(size=(4, 16, 16))
    figures = {
        "three_plane": lambda: viz.three_plane(head, label=label),
        "sequence_planes": lambda: viz.sequence_planes(np.stack([head.array] * 2, -1),
                                                       ["a", "b"], label=label,
                                                       affine=head.affine),
        "prediction_slices": lambda: viz.prediction_slices(head, label, np.roll(label, 1, 0)),
        "sagittal_overlays": lambda: viz.sagittal_overlays(head, mask, mask > 0),
        "vertebra_labels": lambda: viz.vertebra_labels(head, mask),
        "n4": lambda: viz.n4_comparison(head, head.array, np.ones(head.shape)),
        "windows": lambda: viz.window_views(head, {"w": (100, 200)}),
        "orientation": lambda: viz.orientation_check({"a": head}),
        "hu": lambda: viz.hu_histogram(head),
        "roc": lambda: viz.roc_curves(y, model, baselines={"b": baseline}, n_bootstrap=50),
        "pr": lambda: viz.precision_recall(y, model, n_bootstrap=50),
        "calibration": lambda: viz.calibration(y, model),
        "gallery": lambda: viz.case_gallery(images, [0, 1, 0, 1], [0.9, 0.1, 0.2, 0.8]),
        "grad_cam": lambda: viz.grad_cam_gallery(images, np.abs(images)),
        "augmentation": lambda: viz.augmentation_panels(images, images[:, ::-1]),
        "dice": lambda: viz.dice_bars({"WT": [0.8, 0.9], "TC": [0.7, 0.6]}),
        "errors": lambda: viz.error_map(images[0], images[0] > 0, images[1] > 0),
    }
    for name, make in figures.items():
        fig = make()
        assert isinstance(fig, matplotlib.figure.Figure), name
        path = tmp_path / f"{name}.png"
        fig.savefig(path, dpi=50)
        assert path.stat().st_size > 2000, name
        plt.close(fig)


def test_viz_imports_only_lower_floors():
    source = Path(viz.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            imported.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medimg"):
            imported.add(node.module.split(".")[1])
    assert imported <= {"io", "spatial", "metrics", "errors", ""}, imported
