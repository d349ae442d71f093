"""Patch sampling (foreground threshold without try-and-reject), grid patches and
sliding-window prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg import patches
from medimg.errors import InvalidImageError, PatchError


def _volume(rng, shape=(30, 28, 20), channels=2):
    image = rng.normal(size=(*shape, channels)).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[10:18, 8:16, 6:12] = 2
    label[12:15, 10:13, 8:10] = 1
    return image, label


def _brute_force_starts(label, patch, max_background):
    needed = math.ceil((1 - max_background) * math.prod(patch) - 1e-9)
    grid = [s - p + 1 for s, p in zip(label.shape, patch, strict=True)]
    allowed = []
    for start in np.ndindex(*grid):
        window = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
        if np.count_nonzero(label[window]) >= needed:
            allowed.append(start)
    return np.array(allowed)


@pytest.mark.parametrize("max_background", [0.5, 0.9, 0.99])
def test_allowed_starts_match_brute_force(rng, max_background):
    _, label = _volume(rng, (14, 12, 10))
    label[:] = 0
    label[4:9, 3:8, 2:7] = 1
    label[0, 0, 0] = 4
    patch = (6, 5, 4)
    got = patches.allowed_starts(label, patch, max_background=max_background)
    np.testing.assert_array_equal(got, _brute_force_starts(label, patch, max_background))


@pytest.mark.parametrize("max_background", [0.5, 0.9, 1.0])
def test_allowed_start_indices_are_the_flat_form_of_allowed_starts(rng, max_background):
    _, label = _volume(rng, (14, 12, 10))
    patch = (6, 5, 4)
    flat, grid = patches.allowed_start_indices(label, patch, max_background=max_background)
    assert grid == (9, 8, 7)
    starts = patches.allowed_starts(label, patch, max_background=max_background)
    if flat is None:  # every position allowed
        assert max_background == 1.0 and len(starts) == math.prod(grid)
    else:
        assert flat.dtype == np.int64 and np.all(np.diff(flat) > 0)  # sorted, distinct
        np.testing.assert_array_equal(np.stack(np.unravel_index(flat, grid), 1), starts)


def test_sample_patches_respect_threshold_and_are_distinct(rng):
    image, label = _volume(rng)
    patch = (12, 10, 8)
    pairs = patches.sample_patches(image, label, patch, 25, max_background=0.8, rng=rng)
    assert len(pairs) == 25
    found = set()
    for image_patch, label_patch in pairs:
        assert image_patch.shape == (*patch, 2) and label_patch.shape == patch
        assert np.mean(label_patch == 0) <= 0.8
        # locate the patch in the volume to check it is a true copy at a valid start
        matches = [s for s in patches.allowed_starts(label, patch, max_background=0.8)
                   if np.array_equal(image[tuple(slice(a, a + p) for a, p in zip(s, patch, strict=True))],
                                     image_patch)]
        assert len(matches) == 1
        found.add(tuple(matches[0]))
    assert len(found) == 25  # distinct starts


def test_sample_patches_is_reproducible_and_uses_rng(rng):
    image, label = _volume(rng)
    a = patches.sample_patches(image, label, (8, 8, 8), 5, rng=7)
    b = patches.sample_patches(image, label, (8, 8, 8), 5, rng=np.random.default_rng(7))
    c = patches.sample_patches(image, label, (8, 8, 8), 5, rng=8)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True))


def test_sample_patches_2d_and_single_channel(rng):
    image = rng.random((20, 24), dtype=np.float32)
    label = np.zeros((20, 24), np.uint8)
    label[5:10, 5:10] = 1
    pairs = patches.sample_patches(image, label, (6, 6), 3, max_background=0.5, rng=0)
    assert all(p.shape == (6, 6) and np.mean(lab == 0) <= 0.5 for p, lab in pairs)


def test_sampling_uniform_over_allowed_positions():
    label = np.zeros((8, 8, 8), np.uint8)
    label[3:5, 3:5, 3:5] = 1
    allowed = patches.allowed_starts(label, (4, 4, 4), max_background=0.9)
    counts = np.zeros(len(allowed))
    index = {tuple(s): i for i, s in enumerate(allowed)}
    generator = np.random.default_rng(0)
    for _ in range(400):
        for s in patches.patch_starts(label, (4, 4, 4), 1, max_background=0.9, rng=generator):
            counts[index[tuple(s)]] += 1
    assert counts.min() > 0  # every allowed position can be drawn


@pytest.mark.parametrize(
    ("label_fill", "patch", "n", "kwargs", "match"),
    [
        (False, (8, 8, 8), 1, {}, "empty"),
        (True, (40, 8, 8), 1, {}, "larger than the volume"),
        (True, (8, 8), 1, {}, "axes"),
        (True, (8, 8, 8), 1, {"max_background": 1.5}, r"\[0, 1\]"),
        (True, (8, 8, 8), 1, {"max_background": 0.0}, "needs at least|no position"),
        (True, (8, 8, 8), 10**6, {}, "distinct"),
    ],
)
def test_sample_patches_bad_input(rng, label_fill, patch, n, kwargs, match):
    image, label = _volume(rng)
    if not label_fill:
        label[:] = 0
    with pytest.raises(PatchError, match=match):
        patches.sample_patches(image, label, patch, n, **kwargs)


def test_sample_patches_nan_and_mismatched_grid(rng):
    image, label = _volume(rng)
    image[3, 4, 5, 1] = np.nan
    with pytest.raises(InvalidImageError, match=r"NaN.*\(3, 4, 5, 1\)"):
        patches.sample_patches(image, label, (8, 8, 8), 2)
    with pytest.raises(InvalidImageError, match="shape"):
        patches.sample_patches(image[:-1], label, (8, 8, 8), 2)


def test_max_background_one_allows_empty_label(rng):
    image, label = _volume(rng)
    label[:] = 0
    pairs = patches.sample_patches(image, label, (8, 8, 8), 3, max_background=1.0, rng=0)
    assert len(pairs) == 3


def test_grid_starts_cover_every_voxel_borders_included():
    shape, patch = (23, 17, 9), (8, 8, 4)
    for overlap in (0.0, 0.5, 0.75):
        starts = patches.grid_starts(shape, patch, overlap=overlap)
        covered = np.zeros(shape, int)
        for s in starts:
            assert all(0 <= a and a + p <= n for a, p, n in zip(s, patch, shape, strict=True))
            covered[tuple(slice(a, a + p) for a, p in zip(s, patch, strict=True))] += 1
        assert covered.min() >= 1
        if overlap == 0.5:
            assert covered[8:15, 8:9, 4:5].min() >= 2


def test_grid_patches_reassemble_the_volume(rng):
    image = rng.random((12, 10, 6, 2), dtype=np.float32)
    windows, starts = patches.grid_patches(image, (4, 4, 3), overlap=0.25)
    assert windows.shape[1:] == (4, 4, 3, 2) and len(windows) == len(starts)
    rebuilt = np.zeros_like(image)
    for w, s in zip(windows, starts, strict=True):
        rebuilt[s[0]:s[0] + 4, s[1]:s[1] + 4, s[2]:s[2] + 3] = w
    np.testing.assert_array_equal(rebuilt, image)
    with pytest.raises(PatchError, match="larger"):
        patches.grid_patches(image, (13, 4, 3))


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_sliding_window_of_a_pointwise_function_is_exact(rng, blend):
    image = rng.random((21, 18, 11, 2), dtype=np.float32)
    calls = []

    def fn(batch):
        calls.append(len(batch))
        return np.stack([batch[..., 0] * 2.0, batch[..., 1] - 1.0, batch.sum(-1)], axis=-1)

    out = patches.sliding_window_predict(fn, image, (8, 8, 4), overlap=0.5, batch_size=3,
                                         blend=blend)
    assert out.shape == (21, 18, 11, 3) and out.dtype == np.float32
    expected = np.stack([image[..., 0] * 2, image[..., 1] - 1, image.sum(-1)], axis=-1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert max(calls) <= 3


def test_sliding_window_blends_disagreeing_windows():
    image = np.zeros((16, 1, 1, 1), np.float32)

    # each window predicts its own start position everywhere: the result is a weighted mean
    counter = iter(range(100))

    def fn(batch):
        return np.stack([np.full(batch.shape[1:], next(counter), np.float32) for _ in batch])

    out = patches.sliding_window_predict(fn, image, (8, 1, 1), overlap=0.5, batch_size=1,
                                         blend="constant")
    # windows start at 0, 4, 8 -> outputs 0, 1, 2; voxels 4..7 are covered by windows 0, 1
    np.testing.assert_allclose(out[:4, 0, 0, 0], 0.0)
    np.testing.assert_allclose(out[4:8, 0, 0, 0], 0.5)
    np.testing.assert_allclose(out[12:, 0, 0, 0], 2.0)


def test_sliding_window_pads_small_volumes_and_accepts_keras_models(rng):
    keras = pytest.importorskip("keras")
    from medimg.models import unet

    model = unet((8, 8, 8, 1), 2, depth=2, base_filters=2)
    image = rng.random((6, 9, 8, 1), dtype=np.float32)
    out = patches.sliding_window_predict(model, image, (8, 8, 8), batch_size=2)
    assert out.shape == (6, 9, 8, 2)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    assert isinstance(model, keras.Model)


def test_sliding_window_bad_input(rng):
    image = rng.random((8, 8, 8, 1), dtype=np.float32)
    with pytest.raises(InvalidImageError, match="channel"):
        patches.sliding_window_predict(lambda b: b, image[..., 0], (4, 4, 4))
    with pytest.raises(PatchError, match="predictor returned"):
        patches.sliding_window_predict(lambda b: b[:, :2], image, (4, 4, 4))
    with pytest.raises(PatchError, match="blend"):
        patches.sliding_window_predict(lambda b: b, image, (4, 4, 4), blend="mean")
    image[1, 1, 1, 0] = np.nan
    with pytest.raises(InvalidImageError, match="NaN"):
        patches.sliding_window_predict(lambda b: b, image, (4, 4, 4))


def test_gaussian_weights_peak_centre_and_positive_corners():
    w = patches.gaussian_weights((9, 9, 5))
    assert w.max() == pytest.approx(1.0) and w[4, 4, 2] == pytest.approx(1.0)
    assert w.min() > 0 and w[0, 0, 0] < w[4, 4, 2]


def test_channel_statistics_match_intensity_standardize(rng):
    from medimg.intensity import standardize

    image = rng.normal(1000.0, 50.0, size=(20, 18, 70, 3)).astype(np.float32)
    image[:4] = 0  # background outside the "brain"
    mask = image[..., 0] != 0
    mean, std = patches.channel_statistics(image, mask)
    np.testing.assert_allclose(mean, image[mask].mean(0, dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(std, image[mask].astype(np.float64).std(0), rtol=1e-5)
    same = patches.channel_statistics(image, "nonzero")
    np.testing.assert_allclose(same[0], mean, rtol=1e-6)
    np.testing.assert_allclose(same[1], std, rtol=1e-6)
    np.testing.assert_allclose((image - mean) / std, standardize(image, mask=mask), atol=1e-4)
    constant = np.full((4, 4, 4, 2), 7.0, np.float32)
    m, s = patches.channel_statistics(constant)
    np.testing.assert_allclose(m, 7.0) and np.testing.assert_allclose(s, 1.0)


def test_patch_sampler_standardizes_with_subject_statistics(rng):
    image, label = _volume(rng)
    image = image * np.float32([3.0, 0.5]) + np.float32([100.0, -20.0])
    sampler = patches.PatchSampler(image, label, (8, 8, 6), max_background=0.9,
                                   standardize=True, mask=np.ones(label.shape, bool))
    np.testing.assert_allclose(sampler.mean, image.reshape(-1, 2).mean(0), rtol=1e-5)
    starts = sampler.starts(3, rng=5)
    images, labels = sampler.sample(3, rng=5)
    assert images.dtype == np.float32 and images.shape == (3, 8, 8, 6, 2)
    for start, got, lab in zip(starts, images, labels, strict=True):
        window = tuple(slice(a, a + 8 if i < 2 else a + 6) for i, a in enumerate(start))
        np.testing.assert_allclose(got, (image[window] - sampler.mean) / sampler.std,
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(lab, label[window])
    pairs = list(sampler.iter_patches(2, rng=1))
    assert len(pairs) == 2 and pairs[0][0].flags.c_contiguous
    assert sampler.n_allowed == len(patches.allowed_starts(label, (8, 8, 6), max_background=0.9))


def test_patch_sampler_reports_nan_when_standardizing(rng):
    image, label = _volume(rng)
    image[5, 5, 5, 0] = np.inf
    with pytest.raises(InvalidImageError, match=r"NaN or infinite.*\(5, 5, 5, 0\)"):
        patches.PatchSampler(image, label, (8, 8, 8), standardize=True)


def test_patch_sampler_in_place_reuses_the_callers_array(rng):
    image, label = _volume(rng)
    original = image.copy()
    copy = patches.PatchSampler(image, label, (8, 8, 6), standardize=True)
    np.testing.assert_array_equal(image, original)  # default: the caller's array is kept
    owned = patches.PatchSampler(image, label, (8, 8, 6), standardize=True, in_place=True)
    assert owned.image is image
    np.testing.assert_allclose(image, copy.image, atol=1e-6)
    np.testing.assert_allclose(image, (original - copy.mean) / copy.std, rtol=1e-5, atol=1e-5)


def _old_sample(sampler, n, rng):
    """PatchSampler.sample as it was before the preallocated batch: every patch copied
    by iter_patches, then np.stack."""
    pairs = list(sampler.iter_patches(n, rng=rng))
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("channels", [None, 3])
def test_patch_sampler_sample_equals_the_stacked_patches(rng, standardize, channels):
    image, label = _volume(rng, (26, 24, 18), channels or 1)
    if channels is None:
        image = image[..., 0]
    sampler = patches.PatchSampler(image, label, (8, 7, 6), max_background=0.9,
                                   standardize=standardize)
    images, labels = sampler.sample(12, rng=11)
    old_images, old_labels = _old_sample(sampler, 12, rng=11)
    assert images.dtype == old_images.dtype and labels.dtype == old_labels.dtype
    assert images.shape == old_images.shape and labels.shape == old_labels.shape
    np.testing.assert_array_equal(images, old_images)
    np.testing.assert_array_equal(labels, old_labels)
    # and the same patches as sample_patches draws for the same seed (no standardising)
    if not standardize:
        pairs = patches.sample_patches(image, label, (8, 7, 6), 12, max_background=0.9,
                                       rng=11)
        np.testing.assert_array_equal(images, np.stack([p[0] for p in pairs]))
        np.testing.assert_array_equal(labels, np.stack([p[1] for p in pairs]))
    assert images.flags.c_contiguous and labels.flags.c_contiguous


def test_patch_sampler_sample_zero_patches(rng):
    image, label = _volume(rng)
    sampler = patches.PatchSampler(image, label, (8, 8, 8))
    images, labels = sampler.sample(0, rng=0)
    assert images.shape == (0, 8, 8, 8, 2) and images.dtype == image.dtype
    assert labels.shape == (0, 8, 8, 8) and labels.dtype == label.dtype
