"""medimg.intensity: window (NumPy and tf.Tensor agree), dicom_window (the DICOM VOI,
checked against pydicom's own implementation) and CLAHE (OpenCV on NumPy; the TensorFlow
implementation equals OpenCV exactly on every size class)."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest
import tensorflow as tf
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from medimg.errors import InvalidImageError
from medimg.intensity import clahe, dicom_window, standardize, window
from medimg.io import dicom_pixels


def _file(name):
    return pydicom.dcmread(get_testdata_file(name, download=False))


def _pydicom_normalised(ds, index=0):
    """pydicom's VOI output scaled to [0, 1] the way dicom_window documents."""
    arr = apply_modality_lut(ds.pixel_array, ds)
    out = apply_voi_lut(arr, ds, index=index).astype(np.float64)
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[index].LUTDescriptor[2])
        return out / (2.0**bits - 1)
    if ds.PixelRepresentation == 0:
        low, high = 0.0, 2.0**ds.BitsStored - 1
    else:
        low, high = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    low, high = low * slope + intercept, high * slope + intercept
    return (out - low) / (high - low)


# ------------------------------------------------------------------------------ window
def test_window_clips_and_rescales():
    out = window(np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0]), center=40, width=400)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert out.dtype == np.float32


def test_window_without_rescale_keeps_units():
    out = window(np.array([-1000.0, 40.0, 3000.0]), center=40, width=400, rescale=False)
    np.testing.assert_allclose(out, [-160.0, 40.0, 240.0])


@pytest.mark.parametrize("width", [0, -5, np.inf, np.nan])
def test_window_rejects_bad_width(width):
    with pytest.raises(InvalidImageError, match="width"):
        window(np.zeros(3), center=0, width=width)


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize(("center", "width"), [(40, 400), (-600, 1500), (400, 1800)])
def test_window_numpy_and_tensorflow_agree(rng, center, width, rescale):
    tf = pytest.importorskip("tensorflow")
    image = rng.uniform(-1100, 2000, size=(2, 16, 16)).astype(np.float32)
    expected = window(image, center, width, rescale=rescale)
    got = window(tf.constant(image), center, width, rescale=rescale)
    assert tf.is_tensor(got)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-5)


def test_window_works_inside_tf_function(rng):
    tf = pytest.importorskip("tensorflow")
    image = rng.uniform(-1000, 1000, size=(8, 8)).astype(np.float32)
    fn = tf.function(lambda x: window(x, -600, 1500))
    np.testing.assert_allclose(fn(tf.constant(image)).numpy(), window(image, -600, 1500),
                               atol=1e-6)


def test_window_on_real_ct_soft_tissue():
    hu = dicom_pixels(get_testdata_file("CT_small.dcm", download=False))
    shown = window(hu, 40, 400)
    assert shown.min() == 0.0 and shown.max() == 1.0
    # pixels inside the window map linearly, the rest saturate
    inside = (hu > -160) & (hu < 240)
    np.testing.assert_allclose(shown[inside], (hu[inside] + 160) / 400, atol=1e-6)


# ------------------------------------------------------------------------ dicom_window
def test_dicom_window_matches_pydicom_on_mr():
    ds = _file("MR_small.dcm")
    got = dicom_window(ds, dicom_pixels(ds))
    np.testing.assert_allclose(got, _pydicom_normalised(ds), atol=1e-6)
    assert 0.0 < got.mean() < 1.0


def test_dicom_window_multi_valued_index():
    ds = _file("examples_overlay.dcm")  # Window Center [450, 200]
    image = dicom_pixels(ds)
    first, second = dicom_window(ds, image, 0), dicom_window(ds, image, 1)
    np.testing.assert_allclose(first, _pydicom_normalised(ds, 0), atol=1e-6)
    np.testing.assert_allclose(second, _pydicom_normalised(ds, 1), atol=1e-6)
    assert not np.allclose(first, second)
    with pytest.raises(InvalidImageError, match="index 2"):
        dicom_window(ds, image, 2)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(600, 1200), (300.5, 1), (1000, 37)])
def test_dicom_window_functions_match_pydicom(function, center, width):
    ds = _file("MR_small.dcm")
    ds.VOILUTFunction = function
    ds.WindowCenter, ds.WindowWidth = center, width
    expected = _pydicom_normalised(ds)
    np.testing.assert_allclose(dicom_window(ds, dicom_pixels(ds)), expected, atol=1e-6)


def test_dicom_window_rescaled_ct_matches_pydicom():
    ds = _file("CT_small.dcm")
    ds.WindowCenter, ds.WindowWidth = 40, 400
    np.testing.assert_allclose(dicom_window(ds, dicom_pixels(ds)), _pydicom_normalised(ds),
                               atol=1e-6)


def test_dicom_window_prefers_voi_lut_sequence_like_pydicom():
    ds = _file("MR_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [1024, 500, 12]  # entries, first input value mapped, bits
    item.LUTData = [int(v) for v in np.linspace(0, 4095, 1024)]
    ds.VOILUTSequence = [item]
    got = dicom_window(ds, dicom_pixels(ds))
    np.testing.assert_allclose(got, _pydicom_normalised(ds), atol=1e-6)
    pixels = dicom_pixels(ds)
    assert np.all(got[pixels < 500] == 0.0) and np.all(got[pixels >= 1523] == 1.0)


def test_dicom_window_monochrome1_is_inverted_back():
    ds = _file("MR_small.dcm")
    mono1 = copy.deepcopy(ds)
    mono1.PhotometricInterpretation = "MONOCHROME1"
    # dicom_pixels inverted MONOCHROME1 (brighter = denser); the windowed display must
    # be the standard VOI of the stored values, shown inverted (1 = white = dense)
    shown = dicom_window(mono1, dicom_pixels(mono1))
    np.testing.assert_allclose(shown, 1.0 - _pydicom_normalised(ds), atol=1e-6)


def test_dicom_window_tensorflow_agrees_with_numpy():
    tf = pytest.importorskip("tensorflow")
    for name, tweak in (("MR_small.dcm", {}), ("MR_small.dcm", {"VOILUTFunction": "SIGMOID"}),
                        ("CT_small.dcm", {"WindowCenter": 40, "WindowWidth": 400})):
        ds = _file(name)
        for key, value in tweak.items():
            setattr(ds, key, value)
        image = dicom_pixels(ds)
        np.testing.assert_allclose(dicom_window(ds, tf.constant(image)).numpy(),
                                   dicom_window(ds, image), atol=1e-6)


def test_dicom_window_tensorflow_lut_and_monochrome1_agree_with_numpy():
    tf = pytest.importorskip("tensorflow")
    ds = _file("MR_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [1024, 500, 12]
    item.LUTData = [int(v) for v in np.linspace(0, 4095, 1024)]
    ds.VOILUTSequence = [item]
    ds.PhotometricInterpretation = "MONOCHROME1"
    image = dicom_pixels(ds)
    fn = tf.function(lambda x: dicom_window(ds, x))
    np.testing.assert_allclose(fn(tf.constant(image)).numpy(), dicom_window(ds, image),
                               atol=1e-6)


def test_dicom_window_without_voi_is_an_error():
    ds = _file("CT_small.dcm")  # no Window Center/Width
    with pytest.raises(InvalidImageError, match="no VOI"):
        dicom_window(ds, dicom_pixels(ds))


def test_dicom_window_rejects_width_below_one_for_linear():
    ds = _file("MR_small.dcm")
    ds.WindowWidth = 0.5
    with pytest.raises(InvalidImageError, match="Window Width"):
        dicom_window(ds, dicom_pixels(ds))


# ---------------------------------------------------------------------------------------
# CLAHE
# ---------------------------------------------------------------------------------------


def _phantom(rows: int, cols: int, rng: np.random.Generator, dtype=np.uint8) -> np.ndarray:
    """Smooth structure plus noise, with a flat dark border (flat regions stress clipping)."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = 120 + 70 * np.sin(xx / 11.0) * np.cos(yy / 17.0) + rng.normal(0, 15, (rows, cols))
    img[: rows // 8] = 3
    if dtype == np.uint16:
        img = img * 180
    return np.clip(img, 0, np.iinfo(dtype).max).astype(dtype)


def _opencv(img: np.ndarray, clip_limit: float, tile_grid: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.createCLAHE(clipLimit=clip_limit,
                           tileGridSize=(tile_grid[1], tile_grid[0])).apply(img)


# Every size class of OpenCV's padding rule: no padding only when BOTH sides divide;
# otherwise ``tiles - n % tiles`` on both axes, a whole extra tile on a side that divides.
SIZE_CLASSES = [
    pytest.param(256, 256, (8, 8), id="both-divide"),
    pytest.param(64, 64, (8, 8), id="both-divide-small-tiles"),
    pytest.param(600, 700, (8, 8), id="rows-divide-600x700"),  # was 11 grey levels off
    pytest.param(96, 90, (8, 8), id="rows-divide"),
    pytest.param(90, 96, (8, 8), id="cols-divide"),
    pytest.param(250, 187, (8, 8), id="neither"),
    pytest.param(97, 203, (3, 5), id="neither-rectangular-grid"),
    pytest.param(255, 257, (8, 8), id="odd"),
    pytest.param(13, 11, (8, 8), id="between-one-and-two-tiles"),
    pytest.param(7, 9, (8, 8), id="smaller-than-grid"),
    pytest.param(4, 4, (8, 8), id="tiny"),
    pytest.param(2, 17, (8, 8), id="two-rows"),
    pytest.param(1, 5, (8, 8), id="one-row"),
    pytest.param(1, 1, (8, 8), id="one-pixel"),
]


@pytest.mark.parametrize(("rows", "cols", "tile_grid"), SIZE_CLASSES)
@pytest.mark.parametrize("clip_limit", [4.0, 0.0, 40.0])
def test_clahe_tensorflow_equals_opencv_on_every_size_class(rows, cols, tile_grid, clip_limit,
                                                            rng):
    img = _phantom(rows, cols, rng)
    expected = _opencv(img, clip_limit, tile_grid)
    got = clahe(tf.constant(img), clip_limit, tile_grid)
    assert tf.is_tensor(got) and got.dtype == tf.uint8 and got.shape == img.shape
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_array_equal(clahe(img, clip_limit, tile_grid), expected)  # NumPy path


def test_clahe_strong_clipping_redistributes_like_opencv(rng):
    """A flat image with a few outliers: most of the histogram is clipped, so the
    remainder's one-count-every-step rule decides the maps."""
    img = np.full((64, 72), 100, np.uint8)
    img[rng.integers(0, 64, 40), rng.integers(0, 72, 40)] = rng.integers(0, 256, 40)
    for clip_limit in (0.01, 1.0, 2.5):
        np.testing.assert_array_equal(clahe(tf.constant(img), clip_limit, (8, 8)).numpy(),
                                      _opencv(img, clip_limit, (8, 8)))


@pytest.mark.parametrize(("rows", "cols", "tile_grid"),
                         [(96, 80, (8, 8)), (33, 47, (4, 4)), (5, 3, (8, 8))])
def test_clahe_uint16_equals_opencv(rows, cols, tile_grid, rng):
    img = _phantom(rows, cols, rng, np.uint16)
    out = clahe(tf.constant(img), 4.0, tile_grid)
    assert out.dtype == tf.uint16
    np.testing.assert_array_equal(out.numpy(), _opencv(img, 4.0, tile_grid))


def test_clahe_uint16_batch_is_processed_image_by_image(rng):
    imgs = np.stack([_phantom(40, 36, rng, np.uint16) for _ in range(3)])
    out = clahe(tf.constant(imgs), 2.0, (4, 4)).numpy()
    for image, got in zip(imgs, out, strict=True):
        np.testing.assert_array_equal(got, _opencv(image, 2.0, (4, 4)))


def test_clahe_numpy_path_is_opencv(rng):
    img = _phantom(120, 90, rng)
    np.testing.assert_array_equal(clahe(img, 3.0, (4, 6)), _opencv(img, 3.0, (4, 6)))


def test_clahe_changes_contrast(rng):
    img = (_phantom(128, 128, rng) // 4 + 100).astype(np.uint8)  # low-contrast band
    out = clahe(img)
    assert out.std() > 1.5 * img.std()


@pytest.mark.parametrize("shape", [(3, 64, 48), (3, 64, 48, 1), (64, 48, 1), (3, 61, 45)])
def test_clahe_batches_and_channel_axis(shape, rng):
    imgs = rng.integers(0, 256, shape, dtype=np.uint8)
    cpu = clahe(imgs)
    tf_path = clahe(tf.constant(imgs)).numpy()
    assert cpu.shape == shape and tf_path.shape == shape
    np.testing.assert_array_equal(tf_path, cpu)
    if shape[0] == 3:
        first = imgs[0, ..., 0] if imgs.ndim == 4 else imgs[0]
        np.testing.assert_array_equal(np.squeeze(cpu[0]), clahe(first))
    empty_batch = clahe(tf.zeros((0, *shape[1:]), tf.uint8)) if shape[0] == 3 else None
    assert empty_batch is None or empty_batch.shape == (0, *shape[1:])


def test_clahe_inside_tf_function_with_reduce_retracing(rng):
    """One traced function for any size and layout (shapes relax to None after the
    first retrace; the layout is read from the run-time shape)."""
    run = tf.function(lambda x: clahe(x, 2.0, (4, 4)), reduce_retracing=True)
    for shape in [(40, 56), (33, 47), (3, 40, 56), (40, 56, 1), (2, 30, 20, 1), (25, 31)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        out = run(tf.constant(img))
        assert out.shape == shape
        np.testing.assert_array_equal(out.numpy(), clahe(img, 2.0, (4, 4)))


def test_clahe_unknown_rank_in_tf_function(rng):
    run = tf.function(lambda x: clahe(x, 2.0, (4, 4)),
                      input_signature=[tf.TensorSpec(None, tf.uint8)])
    for shape in [(40, 56), (3, 40, 56), (40, 56, 1), (2, 30, 20, 1)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(run(tf.constant(img)).numpy(), clahe(img, 2.0, (4, 4)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="clahe: expected shape"):
        run(tf.zeros((2, 3, 4, 5, 1), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one channel"):
        run(tf.zeros((2, 3, 4, 5), tf.uint8))


def test_clahe_inside_tf_data(rng):
    imgs = rng.integers(0, 256, (4, 40, 56), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(imgs).map(lambda x: clahe(x, 2.0, (4, 4)))
    for i, out in enumerate(ds):
        np.testing.assert_array_equal(out.numpy(), clahe(imgs[i], 2.0, (4, 4)))
    batched = tf.data.Dataset.from_tensor_slices(imgs).batch(2).map(
        lambda x: clahe(x, 3.0, (8, 8)))
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b in batched]),
                                  clahe(imgs, 3.0, (8, 8)))


def test_clahe_real_ct_slice():
    """A real CT from pydicom's bundled files, windowed to 8 bits."""
    path = get_testdata_file("CT_small.dcm", download=False)
    if path is None:
        pytest.skip("pydicom's bundled CT_small.dcm is not installed")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    img = np.clip((hu + 160) / 400 * 255, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(clahe(tf.constant(img)).numpy(), clahe(img))


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((32, 32), np.float32), {}, "uint8 or uint16"),
        (np.zeros((0, 32), np.uint8), {}, "empty"),
        (np.zeros((2, 32, 32, 3), np.uint8), {}, "expected shape"),
        (np.zeros((2, 2, 32, 32, 1), np.uint8), {}, "expected shape"),
        (np.zeros((32, 32), np.uint8), {"tile_grid": (0, 8)}, "tile_grid"),
        (np.zeros((32, 32), np.uint8), {"tile_grid": 8}, "tile_grid"),
        (np.zeros((32, 32), np.uint8), {"clip_limit": float("nan")}, "clip_limit"),
    ],
)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_clahe_bad_input(image, kwargs, match, as_tensor):
    x = tf.constant(image) if as_tensor else image
    with pytest.raises(InvalidImageError, match=match):
        clahe(x, **kwargs)


@pytest.mark.gpu
def test_clahe_on_gpu_equals_opencv(rng):
    """Training on a GPU and inference on a CPU see the same pixels."""
    imgs = np.stack([_phantom(250, 187, rng) for _ in range(4)])
    with tf.device("/GPU:0"):
        out = clahe(tf.constant(imgs))
        assert "GPU" in out.device
    np.testing.assert_array_equal(out.numpy(), clahe(imgs))
    img16 = _phantom(96, 80, rng, np.uint16)
    with tf.device("/GPU:0"):
        out16 = clahe(tf.constant(img16))
    np.testing.assert_array_equal(out16.numpy(), clahe(img16))


# ---------------------------------------------------------------------------------------
# standardize
# ---------------------------------------------------------------------------------------


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
