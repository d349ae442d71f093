"""medimg.spatial. 3-D: the SimpleITK conversion, constant slices, foreground crop,
crop/pad (NumPy and tf.Tensor), resampling (SimpleITK's resampler; equal to the former
SciPy implementation and to a direct SimpleITK call in world coordinates). 2-D: resize
and resample_to_spacing (OpenCV on NumPy, tf.image on tensors)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medimg.errors import InvalidImageError
from medimg.io import Volume, read_nifti
from medimg.spatial import (
    constant_slices,
    crop_or_pad,
    crop_to_foreground,
    from_sitk,
    resample,
    resample_to_spacing,
    resize,
    to_sitk,
)

tf = pytest.importorskip("tensorflow")

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
# (issue 14 item 5: SimpleITK's multi-threaded resampler behind the same API)


def _scipy_resample(volume, spacing, order=1):
    """medimg.spatial.resample as it was before SimpleITK (SciPy's affine_transform on
    the voxel grid, edge values past the last voxel): the reference the new one keeps."""
    from scipy import ndimage

    target = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    ratio = target / np.asarray(volume.spacing)
    out_shape = tuple(int(s) for s in np.maximum(1, np.round(np.asarray(volume.shape[:3])
                                                             / ratio)))
    array = np.asarray(volume.array)
    out_dtype = array.dtype if order == 0 else np.float32
    work = array if order == 0 else array.astype(np.float32, copy=False)

    def one(channel):
        return ndimage.affine_transform(channel, ratio, output_shape=out_shape, order=order,
                                        mode="nearest", output=out_dtype)

    out = (np.stack([one(work[..., c]) for c in range(array.shape[3])], axis=-1)
           if array.ndim == 4 else one(work))
    return volume.with_array(out, volume.affine @ np.diag([*ratio, 1.0]))


NON_CANONICAL = [
    *OBLIQUE_FREE,
    # oblique: rotated 30 degrees about z and 10 about x, anisotropic voxels
    np.array([[0.8660254 * 0.9, -0.4924039 * 1.2, 0.0868241 * 2.5, -12.0],
              [0.5 * 0.9, 0.8528685 * 1.2, -0.1503837 * 2.5, 30.0],
              [0.0, 0.1736482 * 1.2, 0.9848078 * 2.5, 7.5],
              [0, 0, 0, 1]]),
]
NON_CANONICAL_IDS = ["LPS", "permuted", "RAS", "oblique"]


def _smooth_volume(shape, channels=None):
    grid = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    field = np.sin(grid[0] / 3.0) + np.cos(grid[1] / 4.0) * grid[2] / 5.0
    if channels:
        field = np.stack([field * (c + 1) - c for c in range(channels)], axis=-1)
    return field.astype(np.float32)


@pytest.mark.parametrize("order", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("affine", NON_CANONICAL, ids=NON_CANONICAL_IDS)
@pytest.mark.parametrize("target", [(1.0, 1.0, 1.0), (0.6, 1.7, 3.1), (2.5, 2.0, 0.5)])
def test_resample_equals_the_former_scipy_implementation(rng, order, affine, target):
    volume = Volume(rng.normal(size=(13, 11, 9)).astype(np.float32), affine)
    got = resample(volume, target, order=order)
    expected = _scipy_resample(volume, target, order=order)
    assert got.shape == expected.shape and got.array.dtype == expected.array.dtype
    np.testing.assert_allclose(got.affine, expected.affine, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.array, expected.array, rtol=0, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64, bool])
def test_resample_labels_keep_dtype_and_equal_scipy(rng, dtype):
    labels = rng.integers(0, 5, size=(24, 20, 17))
    volume = Volume((labels > 2 if dtype is bool else labels).astype(dtype),
                    np.diag([1.0, 2.0, 1.5, 1.0]))
    # 1.5 mm from 1 mm: every other sample lies exactly half-way between two voxels
    for target in [(1.5, 1.5, 1.5), (0.5, 0.7, 3.0), (2.0, 2.0, 2.0)]:
        got = resample(volume, target, order=0)
        assert got.array.dtype == volume.array.dtype
        np.testing.assert_array_equal(got.array, _scipy_resample(volume, target, 0).array)


def _sitk_world_resample(volume, out, interpolator):
    """A direct SimpleITK call in world coordinates (LPS, the volume's own geometry) on
    the output grid, nearest-neighbour extrapolation beyond the input."""
    image = to_sitk(volume)
    grid = to_sitk(np.zeros(out.shape[:3], np.float32), out.affine)
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(grid)
    resampler.SetInterpolator(interpolator)
    resampler.SetUseNearestNeighborExtrapolator(True)
    resampler.SetOutputPixelType(image.GetPixelID())
    return from_sitk(resampler.Execute(image)).array


@pytest.mark.parametrize("affine", NON_CANONICAL, ids=NON_CANONICAL_IDS)
def test_resample_equals_a_direct_simpleitk_call_in_world_coordinates(affine):
    volume = Volume(_smooth_volume((15, 12, 10)), affine)
    for target in [(1.0, 1.0, 1.0), (2.0, 0.7, 1.3)]:
        linear = resample(volume, target, order=1)
        assert linear.spacing == pytest.approx(target)
        assert linear.array.dtype == np.float32
        assert linear.axcodes == volume.axcodes
        # same first voxel centre, same directions
        np.testing.assert_allclose(linear.affine[:3, 3], affine[:3, 3])
        reference = _sitk_world_resample(volume, linear, sitk.sitkLinear)
        # ITK's own border rule differs past the last voxel centre (nearest neighbour on
        # every axis there): compare the samples inside the hull of the voxel centres
        positions = np.stack(np.meshgrid(*[np.arange(s) for s in linear.shape],
                                         indexing="ij"), -1).reshape(-1, 3)
        source = (np.linalg.inv(affine) @ linear.affine
                  @ np.c_[positions, np.ones(len(positions))].T)
        inside = np.all((source[:3] >= -1e-6)
                        & (source[:3] <= np.array(volume.shape)[:, None] - 1 + 1e-6), axis=0)
        assert inside.mean() > 0.5
        np.testing.assert_allclose(linear.array.reshape(-1)[inside],
                                   reference.reshape(-1)[inside], atol=1e-5)
        # cubic: SciPy's border rule is 12 edge voxels then mirror-boundary coefficients;
        # given the same padded volume (its affine moved by the padding), a direct
        # SimpleITK call in world coordinates gives the same values everywhere
        cubic = resample(volume, target, order=3)
        shift = np.eye(4)
        shift[:3, 3] = -12
        padded = Volume(np.pad(volume.array, 12, mode="edge"), affine @ shift)
        reference = _sitk_world_resample(padded, cubic, sitk.sitkBSpline3)
        np.testing.assert_allclose(cubic.array, reference, atol=1e-5)
    labels = Volume((_smooth_volume((15, 12, 10)) * 2).astype(np.int16), affine)
    nearest = resample(labels, (2.0, 3.0, 4.0), order=0)
    assert nearest.array.dtype == np.int16
    np.testing.assert_array_equal(nearest.array,
                                  _sitk_world_resample(labels, nearest,
                                                       sitk.sitkNearestNeighbor))


def test_resample_anisotropic_upsampling_takes_edge_values_past_the_last_centre():
    """10 voxels of 1 mm to 0.2 mm: the last samples lie 0.8 voxel past the last centre
    (ITK alone would switch to nearest neighbour on every axis there)."""
    array = _smooth_volume((10, 6, 5))
    volume = Volume(array, np.diag([1.0, 2.0, 3.0, 1.0]))
    out = resample(volume, (0.2, 2.0, 0.5), order=1)
    assert out.shape == (50, 6, 30)
    np.testing.assert_allclose(out.array, _scipy_resample(volume, (0.2, 2.0, 0.5)).array,
                               atol=2e-6)
    np.testing.assert_allclose(out.array[45:, :, 0], np.repeat(array[-1:, :, 0], 5, axis=0),
                               atol=1e-6)


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


# --------------------------------------------------------------------------- 2-D resize


def _image(rows, cols, rng, dtype=np.uint8):
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = 128 + 80 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 5, (rows, cols))
    return np.clip(img, 0, 255).astype(dtype)


def test_shrink_by_integer_factor_is_block_mean(rng):
    img = rng.random((64, 48)).astype(np.float32)
    out = resize(img, (16, 12))
    blocks = img.reshape(16, 4, 12, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(out, blocks, atol=1e-5)
    np.testing.assert_allclose(resize(tf.constant(img), (16, 12)).numpy(), blocks, atol=1e-5)


@pytest.mark.parametrize(("src", "dst"), [((200, 200), (64, 64)), ((150, 120), (64, 64)),
                                          ((40, 40), (64, 64))])
def test_numpy_and_tensorflow_agree(src, dst, rng):
    img = _image(*src, rng)
    cpu = resize(img, dst)
    gpu_path = resize(tf.constant(img), dst).numpy()
    assert cpu.shape == dst == gpu_path.shape
    assert cpu.dtype == np.uint8 and gpu_path.dtype == np.uint8
    # OpenCV and tf.image differ in fractional-area weights and rounding; a couple of
    # grey levels on a smooth image, far from the error of a wrong method.
    assert np.abs(cpu.astype(int) - gpu_path.astype(int)).mean() < 1.0
    assert np.abs(cpu.astype(int) - gpu_path.astype(int)).max() <= 4


def test_channels_and_batches(rng):
    img = _image(60, 40, rng)[..., None]
    assert resize(img, (30, 20)).shape == (30, 20, 1)
    batch = tf.constant(np.stack([img, img]))
    assert tuple(resize(batch, (30, 20)).shape) == (2, 30, 20, 1)


def test_dtype_kept_and_saturated(rng):
    img = np.array([[0, 65535], [65535, 0]], dtype=np.uint16)
    out = resize(img, (4, 4), interpolation="cubic")  # cubic overshoots: must saturate
    assert out.dtype == np.uint16 and out.max() <= 65535
    booleans = resize(np.eye(8, dtype=bool), (4, 4), interpolation="nearest")
    assert booleans.dtype == bool


def test_resample_to_spacing_shapes(rng):
    img = _image(1024, 1024, rng)
    out = resample_to_spacing(img, (0.143, 0.143), 1.0)
    assert out.shape == (146, 146)
    anisotropic = resample_to_spacing(img[:100, :80], (0.5, 0.25), (1.0, 1.0))
    assert anisotropic.shape == (50, 20)
    t = resample_to_spacing(tf.constant(img[:100, :80]), (0.5, 0.25), (1.0, 1.0))
    assert tuple(t.shape) == (50, 20)


def test_resample_then_mean_is_kept(rng):
    img = _image(300, 300, rng).astype(np.float32)
    out = resample_to_spacing(img, (0.2, 0.2), (1.0, 1.0))
    assert abs(float(out.mean()) - float(img.mean())) < 0.5


def test_resample_inside_tf_data(rng):
    imgs = np.stack([_image(100, 100, rng)] * 3)
    spacings = np.array([[0.5, 0.5], [0.25, 0.25], [1.0, 1.0]], np.float32)
    ds = tf.data.Dataset.from_tensor_slices((imgs, spacings)).map(
        lambda x, s: resample_to_spacing(x, s, (1.0, 1.0)))
    assert [tuple(t.shape) for t in ds] == [(50, 50), (25, 25), (100, 100)]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: resize(np.zeros((4, 4)), (0, 3)), "positive"),
        (lambda: resize(np.zeros((4, 4)), (3,)), r"\(rows, cols\)"),
        (lambda: resize(np.zeros((2, 4, 4, 1)), (3, 3)), "expected"),
        (lambda: resize(np.zeros((4, 4)), (3, 3), interpolation="lanczos"), "interpolation"),
        (lambda: resample_to_spacing(np.zeros((4, 4)), (0.0, 1.0)), "spacing"),
        (lambda: resample_to_spacing(np.zeros((4, 4)), (np.nan, 1.0)), "spacing"),
        (lambda: resample_to_spacing(np.zeros((4, 4)), (1.0, 1.0), -1.0), "new_spacing"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(InvalidImageError, match=match):
        call()
