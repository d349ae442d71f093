"""3-D spatial helpers (issue 4): the SimpleITK conversion, constant slices, foreground
crop, crop/pad (NumPy and tf.Tensor), resampling checked against SimpleITK's
resampler; and z-score standardisation per channel (intensity.standardize), the last
step before volumes go into a network."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medimg.errors import InvalidImageError
from medimg.intensity import standardize
from medimg.io import Volume, read_nifti
from medimg.spatial import (
    constant_slices,
    crop_or_pad,
    crop_to_foreground,
    from_sitk,
    resample,
    to_sitk,
)

OBLIQUE_FREE = [
    np.array([[-1.0, 0, 0, 10], [0, -2.0, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]]),  # LPS
    np.array([[0, 0, -1.5, 7], [-1.0, 0, 0, 3], [0, 2.0, 0, -4], [0, 0, 0, 1]]),  # permuted
    np.diag([0.9, 1.1, 2.5, 1.0]),  # RAS
]


def _world(affine, index):
    return (np.asarray(affine) @ np.append(np.asarray(index, float), 1.0))[:3]


# --------------------------------------------------------------------------- SimpleITK

@pytest.mark.parametrize("affine", OBLIQUE_FREE, ids=["LPS", "permuted", "RAS"])
def test_to_sitk_matches_simpleitk_reading_the_same_file(tmp_path, rng, affine):
    array = rng.normal(size=(5, 6, 7)).astype(np.float32)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(array, affine), str(path))
    reference = sitk.ReadImage(str(path))
    for volume in (read_nifti(path, canonical=False), read_nifti(path)):
        image = to_sitk(volume)
        # the same voxel index lands at the same LPS point in both images...
        last = tuple(n - 1 for n in volume.shape)
        for index in [(0, 0, 0), last, (2, 1, 3)]:
            world_ras = _world(volume.affine, index)
            lps = world_ras * [-1, -1, 1]
            np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(index), lps,
                                       atol=1e-5)
            ref_index = reference.TransformPhysicalPointToIndex(tuple(lps))
            # ...and holds the same value
            assert image[index] == pytest.approx(reference[ref_index])
        assert image.GetSize() == volume.shape
    # without reorientation the grid is SimpleITK's own
    image = to_sitk(read_nifti(path, canonical=False))
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image),
                                  sitk.GetArrayFromImage(reference))


@pytest.mark.parametrize("affine", OBLIQUE_FREE, ids=["LPS", "permuted", "RAS"])
def test_from_sitk_matches_nibabel_and_round_trips(tmp_path, rng, affine):
    array = rng.integers(0, 100, size=(4, 6, 5)).astype(np.int16)
    path = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(array, affine), str(path))
    volume = from_sitk(sitk.ReadImage(str(path)))
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(volume.array, array)  # (x, y, z) order, nibabel's
    back = from_sitk(to_sitk(array, affine))
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, affine, atol=1e-12)
    vector = np.stack([array, array * 2], axis=-1)
    image = to_sitk(vector, affine)
    assert image.GetNumberOfComponentsPerPixel() == 2 and image.GetSize() == array.shape
    np.testing.assert_array_equal(from_sitk(image).array, vector)


def test_to_sitk_spacing_default_and_bad_input():
    image = to_sitk(np.zeros((4, 5, 6), bool), spacing=(1.0, 2.0, 3.0))
    assert image.GetSize() == (4, 5, 6) and image.GetSpacing() == (1.0, 2.0, 3.0)
    assert image.GetPixelID() == sitk.sitkUInt8
    # RAS identity becomes ITK's LPS direction diag(-1, -1, 1)
    assert image.GetDirection() == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    with pytest.raises(InvalidImageError, match="shape"):
        to_sitk(np.zeros((4, 5)))
    with pytest.raises(InvalidImageError, match="3-D"):
        from_sitk(sitk.Image(4, 4, sitk.sitkFloat32))


# --------------------------------------------------------------------------- constant slices

def _constant_slices_loop(array, axis, channel_axis=None):
    out = []
    for i in range(array.shape[axis]):
        piece = np.take(array, i, axis=axis)
        if channel_axis is None:
            constant = bool(np.all(piece == piece.flat[0]))
        else:
            c_axis = channel_axis if channel_axis < axis else channel_axis - 1
            constant = all(np.all(ch == ch.flat[0])
                           for ch in np.moveaxis(piece, c_axis, 0))
        if constant:
            out.append(i)
    return np.array(out, dtype=np.int64)


def test_constant_slices_matches_a_loop(rng):
    volume = np.zeros((9, 8, 7, 2), np.float32)
    volume[2:6, 1:7, 3:5, 0] = rng.normal(size=(4, 6, 2))
    volume[3:8, 2:4, 1:6, 1] = rng.normal(size=(5, 2, 5))
    volume[:, :, 6, 1] = 5.0  # constant (but not zero) in one channel
    volume[0, 0, 0, 0] = 1.0  # a single voxel makes its slices informative
    for axis in range(3):
        np.testing.assert_array_equal(constant_slices(volume, axis, channel_axis=-1),
                                      _constant_slices_loop(volume, axis, 3))
        scalar = volume[..., 0]
        np.testing.assert_array_equal(constant_slices(scalar, axis),
                                      _constant_slices_loop(scalar, axis))
    assert 6 in constant_slices(volume, 2, channel_axis=-1)
    # channels first works too
    first = np.moveaxis(volume, -1, 0)
    np.testing.assert_array_equal(constant_slices(first, 3, channel_axis=0),
                                  constant_slices(volume, 2, channel_axis=-1))
    nan = np.zeros((3, 3, 3))
    nan[1, 1, 1] = np.nan
    assert 1 not in constant_slices(nan, 0)


def test_constant_slices_tensor_agrees(rng):
    tf = pytest.importorskip("tensorflow")
    volume = np.zeros((6, 5, 4, 2), np.float32)
    volume[1:4, 2:4, 1:3, 0] = rng.normal(size=(3, 2, 2))
    volume[..., 1] = 3.0
    for axis in range(3):
        out = constant_slices(tf.constant(volume), axis, channel_axis=-1)
        np.testing.assert_array_equal(out.numpy(), constant_slices(volume, axis,
                                                                   channel_axis=-1))
    with pytest.raises(InvalidImageError):
        constant_slices(volume, 1, channel_axis=1)
    with pytest.raises(InvalidImageError):
        constant_slices(np.zeros(4), 0)


# --------------------------------------------------------------------------- crop / pad

def test_crop_to_foreground_box_margin_and_affine(rng):
    array = np.zeros((10, 12, 8, 2), np.float32)
    array[3:6, 4:9, 2:5, 1] = 1.0
    cropped, box = crop_to_foreground(array)
    assert box == ((3, 6), (4, 9), (2, 5)) and cropped.shape == (3, 5, 3, 2)
    _, box = crop_to_foreground(array, margin=(1, 10, 0))
    assert box == ((2, 7), (0, 12), (2, 5))
    affine = OBLIQUE_FREE[1]
    volume = Volume(array, affine)
    cropped, box = crop_to_foreground(volume, margin=1)
    assert isinstance(cropped, Volume)
    # the first voxel of the crop sits where voxel (start...) sat
    np.testing.assert_allclose(_world(cropped.affine, (0, 0, 0)),
                               _world(affine, [a for a, _ in box]))
    np.testing.assert_array_equal(cropped.array, array[2:7, 3:10, 1:6])
    mask = np.zeros((10, 12, 8), bool)
    mask[5, 5, 5] = True
    _, box = crop_to_foreground(array, mask)
    assert box == ((5, 6), (5, 6), (5, 6))
    with pytest.raises(InvalidImageError, match="no foreground"):
        crop_to_foreground(np.zeros((3, 3, 3)))
    with pytest.raises(InvalidImageError, match="mask"):
        crop_to_foreground(array, np.ones((3, 3, 3), bool))


def test_crop_or_pad_numpy(rng):
    array = rng.normal(size=(7, 4, 5, 2)).astype(np.float32)
    out = crop_or_pad(array, (5, 7, 5))
    assert out.shape == (5, 7, 5, 2)
    np.testing.assert_array_equal(out[:, 1:5], array[1:6])
    assert np.all(out[:, 0] == 0) and np.all(out[:, 5:] == 0)  # odd extra voxel at the end
    padded = crop_or_pad(np.ones((2, 2)), (4, 5), value=-1)
    assert padded[1:3, 1:3].sum() == 4 and (padded == -1).sum() == 16
    # a Volume keeps its voxels in place in the world
    volume = Volume(array, OBLIQUE_FREE[0])
    moved = crop_or_pad(volume, (5, 7, 5))
    np.testing.assert_allclose(_world(moved.affine, (0, 1, 0)), _world(volume.affine, (1, 0, 0)))
    with pytest.raises(InvalidImageError):
        crop_or_pad(array, (0, 3, 3))
    with pytest.raises(InvalidImageError):
        crop_or_pad(np.zeros((3, 3)), (3, 3, 3))


def test_crop_or_pad_tensor_agrees(rng):
    tf = pytest.importorskip("tensorflow")
    array = rng.normal(size=(7, 4, 5, 2)).astype(np.float32)
    for shape in [(5, 7, 5), (7, 4, 5), (2, 9, 6), (8, 3)]:
        np.testing.assert_array_equal(crop_or_pad(tf.constant(array), shape, value=2).numpy(),
                                      crop_or_pad(array, shape, value=2))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32)])
    def traced(x):
        return crop_or_pad(x, (6, 6, 6))

    out = traced(tf.constant(array))
    assert tuple(out.shape) == (6, 6, 6, 2)
    np.testing.assert_array_equal(out.numpy(), crop_or_pad(array, (6, 6, 6)))


# --------------------------------------------------------------------------- resample

def _sitk_resample(volume, out, interpolator):
    image = to_sitk(volume)
    grid = to_sitk(np.zeros(out.shape[:3], np.float32), out.affine)
    return sitk.GetArrayFromImage(
        sitk.Resample(image, grid, sitk.Transform(), interpolator, 0.0)).transpose(2, 1, 0)


@pytest.mark.parametrize("affine", OBLIQUE_FREE, ids=["LPS", "permuted", "RAS"])
def test_resample_agrees_with_simpleitk(rng, affine):
    array = rng.normal(size=(11, 9, 7)).astype(np.float32)
    volume = Volume(array, affine)
    for target in [(1.0, 1.0, 1.0), (2.0, 0.7, 1.3)]:
        linear = resample(volume, target, order=1)
        assert linear.spacing == pytest.approx(target)
        assert linear.array.dtype == np.float32
        assert linear.axcodes == volume.axcodes
        # same first voxel centre, same directions
        np.testing.assert_allclose(linear.affine[:3, 3], affine[:3, 3])
        reference = _sitk_resample(volume, linear, sitk.sitkLinear)
        # ITK leaves points beyond the last voxel centre to its own border rule: compare
        # the samples inside the input's hull of voxel centres
        positions = np.stack(np.meshgrid(*[np.arange(s) for s in linear.shape],
                                         indexing="ij"), -1).reshape(-1, 3)
        source = (np.linalg.inv(affine) @ linear.affine @ np.c_[positions,
                                                                np.ones(len(positions))].T)
        inside = np.all((source[:3] >= -1e-6)
                        & (source[:3] <= np.array(array.shape)[:, None] - 1 + 1e-6), axis=0)
        assert inside.mean() > 0.5
        np.testing.assert_allclose(linear.array.reshape(-1)[inside],
                                   reference.reshape(-1)[inside], atol=1e-4)
    labels = Volume(rng.integers(0, 5, size=(11, 9, 7)).astype(np.uint8), affine)
    nearest = resample(labels, (2.0, 3.0, 4.0), order=0)
    assert nearest.array.dtype == np.uint8
    np.testing.assert_array_equal(nearest.array,
                                  _sitk_resample(labels, nearest, sitk.sitkNearestNeighbor))


def test_resample_keeps_world_positions_of_voxel_centres():
    # intensity = a linear function of the world position: linear interpolation must
    # reproduce it at each output voxel centre's world position
    affine = OBLIQUE_FREE[1]
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in (12, 10, 8)], indexing="ij"), -1)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    coefficients = np.array([0.5, -1.0, 2.0])
    volume = Volume((world @ coefficients).astype(np.float32), affine)
    out = resample(volume, (1.0, 1.0, 1.0), order=1)
    out_grid = np.stack(np.meshgrid(*[np.arange(s) for s in out.shape], indexing="ij"), -1)
    out_world = out_grid @ out.affine[:3, :3].T + out.affine[:3, 3]
    source = (out_world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    inside = np.all((source >= 0) & (source <= np.array(volume.shape) - 1), axis=-1)
    np.testing.assert_allclose(out.array[inside], (out_world @ coefficients)[inside],
                               atol=1e-3)
    # the new grid covers the same extent
    extent = np.array(volume.shape) * np.array(volume.spacing)
    np.testing.assert_allclose(np.array(out.shape) * np.array(out.spacing), extent, atol=1.0)


def test_resample_channels_and_bad_input(rng):
    array = rng.normal(size=(6, 6, 6, 2)).astype(np.float32)
    volume = Volume(array, np.eye(4))
    out = resample(volume, 2.0)
    assert out.shape == (3, 3, 3, 2)
    np.testing.assert_allclose(out.array[..., 1], resample(volume.with_array(array[..., 1]),
                                                           2.0).array)
    with pytest.raises(InvalidImageError, match="Volume"):
        resample(array, 1.0)
    with pytest.raises(InvalidImageError, match="spacing"):
        resample(volume, (1.0, 0.0, 1.0))
    with pytest.raises(InvalidImageError, match="order"):
        resample(volume, 1.0, order=7)


# --------------------------------------------------------------------------- standardize

def test_standardize_per_channel_with_mask(rng):
    image = np.zeros((6, 7, 5, 3), np.float32)
    mask = np.zeros((6, 7, 5), bool)
    mask[1:5, 2:6, 1:4] = True
    scales = np.array([1.0, 100.0, 0.01], np.float32)
    image[mask] = rng.normal(10.0, 2.0, size=(mask.sum(), 3)) * scales
    out = standardize(image, mask)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out[mask].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out[mask].std(0), 1.0, atol=1e-4)
    for c in range(3):
        inside = image[..., c][mask]
        np.testing.assert_allclose(out[..., c], (image[..., c] - inside.mean()) / inside.std(),
                                   rtol=1e-4, atol=1e-4)
    filled = standardize(image, mask, fill_outside=0.0)
    assert np.all(filled[~mask] == 0)
    whole = standardize(image)
    np.testing.assert_allclose(whole.reshape(-1, 3).mean(0), 0.0, atol=1e-4)
    with pytest.raises(InvalidImageError, match="mask"):
        standardize(image, np.ones((6, 7), bool))


def test_standardize_constant_input_is_finite():
    constant = np.full((4, 4, 4, 2), 7.0, np.float32)
    out = standardize(constant)
    assert np.all(np.isfinite(out)) and np.all(out == 0)
    empty = standardize(constant, np.zeros((4, 4, 4), bool))
    assert np.all(np.isfinite(empty))


def test_standardize_tensor_agrees(rng):
    tf = pytest.importorskip("tensorflow")
    image = rng.normal(5.0, 3.0, size=(5, 5, 4, 2)).astype(np.float32)
    mask = image[..., 0] > 4
    np.testing.assert_allclose(standardize(tf.constant(image), tf.constant(mask),
                                           fill_outside=0.0).numpy(),
                               standardize(image, mask, fill_outside=0.0), atol=1e-5)
    np.testing.assert_allclose(standardize(tf.constant(image)).numpy(), standardize(image),
                               atol=1e-5)
