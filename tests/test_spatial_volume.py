"""3-D spatial helpers and standardisation: SimpleITK conversion, constant slices,
crops, resampling (against SimpleITK), z-scores (NumPy and TensorFlow agree)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.errors import InvalidImageError
from medimg.intensity import standardize
from medimg.io import Volume
from medimg.spatial import (
    constant_slices,
    crop_or_pad,
    crop_to_foreground,
    from_sitk,
    resample,
    to_sitk,
)

AFFINE = np.array([[0.0, 0.0, -2.5, 40.0], [-1.2, 0.0, 0.0, 12.0], [0.0, 1.5, 0.0, -7.0],
                   [0.0, 0.0, 0.0, 1.0]])


def test_sitk_round_trip_keeps_voxels_and_positions(rng):
    array = rng.random((5, 6, 7)).astype(np.float32)
    image = to_sitk(array, AFFINE)
    assert image.GetSize() == (5, 6, 7)
    # Voxel (i, j, k) sits at the same place: RAS from the affine, LPS from ITK.
    for index in [(0, 0, 0), (4, 2, 6), (1, 5, 3)]:
        ras = AFFINE @ [*index, 1.0]
        lps = np.asarray(image.TransformIndexToPhysicalPoint(index))
        assert np.allclose(lps, ras[:3] * [-1, -1, 1])
        assert image[index] == pytest.approx(array[index])
    back = from_sitk(image)
    assert np.array_equal(back.array, array) and np.allclose(back.affine, AFFINE)


def test_sitk_vector_and_volume_input(rng):
    array = rng.random((4, 5, 6, 3)).astype(np.float32)
    image = to_sitk(Volume(array, AFFINE))
    assert image.GetNumberOfComponentsPerPixel() == 3
    assert np.array_equal(from_sitk(image).array, array)


def test_constant_slices_numpy_and_tensorflow_agree():
    tf = pytest.importorskip("tensorflow")
    volume = np.zeros((6, 5, 4, 2), np.float32)
    volume[2:4, 1:3, 1, 0] = 1.0
    volume[..., 1] = 3.0  # constant channel: no information
    assert constant_slices(volume, 0, channel_axis=-1).tolist() == [0, 1, 4, 5]
    assert constant_slices(volume, 2, channel_axis=-1).tolist() == [0, 2, 3]
    assert constant_slices(volume[..., 0], 1).tolist() == [0, 3, 4]
    got = constant_slices(tf.constant(volume), 0, channel_axis=-1).numpy().tolist()
    assert got == [0, 1, 4, 5]
    nan = np.zeros((3, 2, 2))
    nan[1, 0, 0] = np.nan
    assert constant_slices(nan, 0).tolist() == [0, 2]


def test_crop_to_foreground_volume_keeps_place():
    array = np.zeros((10, 9, 8), np.int16)
    array[3:6, 2:4, 5] = 7
    cropped, box = crop_to_foreground(Volume(array, AFFINE), margin=1)
    assert box == ((2, 7), (1, 5), (4, 7))
    assert np.allclose(cropped.affine @ [0, 0, 0, 1], AFFINE @ [2, 1, 4, 1])
    assert cropped.array.sum() == array.sum()
    with pytest.raises(InvalidImageError, match="no foreground"):
        crop_to_foreground(np.zeros((4, 4, 4)))


def test_crop_or_pad_numpy_tf_and_volume():
    tf = pytest.importorskip("tensorflow")
    array = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    out = crop_or_pad(array, (3, 6, 3))
    assert out.shape == (3, 6, 3)
    assert np.array_equal(out[:, 1:5], array[1:4])
    assert np.array_equal(crop_or_pad(tf.constant(array), (3, 6, 3)).numpy(), out)
    volume = crop_or_pad(Volume(array, AFFINE), (3, 6, 3))
    # Output voxel (0, 1, 0) is input voxel (1, 0, 0): same place in space.
    assert np.allclose(volume.affine @ [0, 1, 0, 1], AFFINE @ [1, 0, 0, 1])


@pytest.mark.parametrize("spacing, order", [((2.4, 3.0, 1.25), 1), ((0.6, 0.75, 5.0), 1),
                                           ((2.4, 1.5, 2.5), 0)])
def test_resample_agrees_with_simpleitk(rng, spacing, order):
    array = rng.random((12, 10, 8)).astype(np.float32) * 100
    volume = Volume(array, AFFINE)
    out = resample(volume, spacing, order=order)
    assert np.allclose(out.spacing, spacing)
    assert np.allclose(out.affine[:3, 3], AFFINE[:3, 3])
    reference = to_sitk(out.array * 0, out.affine)
    interpolator = sitk.sitkLinear if order == 1 else sitk.sitkNearestNeighbor
    expected = from_sitk(sitk.Resample(to_sitk(volume), reference, sitk.Transform(),
                                       interpolator, -1.0)).array
    inside = expected >= 0  # ITK leaves points past the edge at the default value
    assert inside.mean() > 0.6
    assert np.allclose(out.array[inside], expected[inside], atol=1e-3)


def test_resample_labels_keep_dtype():
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:6, 2:6, 2:6] = 4
    out = resample(Volume(labels, np.eye(4)), 0.5, order=0)
    assert out.shape == (16, 16, 16) and out.array.dtype == np.uint8
    assert set(np.unique(out.array)) == {0, 4}
    with pytest.raises(InvalidImageError, match="Volume"):
        resample(labels, 2.0)


def test_standardize_per_channel_mask_and_tf(rng):
    tf = pytest.importorskip("tensorflow")
    image = rng.random((6, 5, 4, 2)).astype(np.float32) * [10, 1000] + [0, 500]
    mask = image[..., 0] > 3
    out = standardize(image, mask, fill_outside=0.0)
    assert np.allclose(out[mask].mean(axis=0), 0, atol=1e-4)
    assert np.allclose(out[mask].std(axis=0), 1, atol=1e-4)
    assert np.all(out[~mask] == 0)
    tf_out = standardize(tf.constant(image), tf.constant(mask), fill_outside=0.0).numpy()
    assert np.allclose(tf_out, out, atol=1e-4)
    constant = standardize(np.full((3, 3, 3), 7.0))
    assert np.all(np.isfinite(constant)) and np.allclose(constant, 0)
    with pytest.raises(InvalidImageError, match="mask has shape"):
        standardize(image, mask[:2])
