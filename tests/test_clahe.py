"""medimg.intensity.clahe: OpenCV on NumPy, a TensorFlow re-implementation on tensors;
the two agree within one grey level (in practice exactly) on 8-bit images."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.errors import InvalidImageError
from medimg.intensity import clahe

tf = pytest.importorskip("tensorflow")


def _phantom(rows: int, cols: int, rng: np.random.Generator, dtype=np.uint8) -> np.ndarray:
    """Smooth structure plus noise, with a flat dark border (flat regions stress clipping)."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = 120 + 70 * np.sin(xx / 11.0) * np.cos(yy / 17.0) + rng.normal(0, 15, (rows, cols))
    img[: rows // 8] = 3
    if dtype == np.uint16:
        img = img * 180
    return np.clip(img, 0, np.iinfo(dtype).max).astype(dtype)


def _max_diff(a, b) -> int:
    return int(np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64)).max())


@pytest.mark.parametrize(
    ("rows", "cols", "clip_limit", "tile_grid"),
    [
        (256, 256, 4.0, (8, 8)),    # divisible by the grid
        (250, 187, 4.0, (8, 8)),    # not divisible: mirror padding at bottom/right
        (97, 203, 40.0, (3, 5)),    # OpenCV's default clip, rectangular grid
        (64, 64, 1.0, (8, 8)),      # strong clipping, small tiles
        (80, 72, 0.0, (4, 4)),      # no clipping: plain adaptive equalisation
    ],
)
def test_tensorflow_agrees_with_opencv(rows, cols, clip_limit, tile_grid, rng):
    img = _phantom(rows, cols, rng)
    expected = clahe(img, clip_limit, tile_grid)
    got = clahe(tf.constant(img), clip_limit, tile_grid)
    assert tf.is_tensor(got) and got.dtype == tf.uint8 and got.shape == img.shape
    assert _max_diff(expected, got.numpy()) <= 1


def test_numpy_path_is_opencv(rng):
    import cv2

    img = _phantom(120, 90, rng)
    ref = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(6, 4)).apply(img)  # (tilesX, tilesY)
    np.testing.assert_array_equal(clahe(img, 3.0, (4, 6)), ref)


def test_changes_contrast(rng):
    img = (_phantom(128, 128, rng) // 4 + 100).astype(np.uint8)  # low-contrast band
    out = clahe(img)
    assert out.std() > 1.5 * img.std()


def test_uint16_agrees(rng):
    img = _phantom(96, 80, rng, np.uint16)
    out = clahe(tf.constant(img))
    assert out.dtype == tf.uint16
    assert _max_diff(clahe(img), out.numpy()) <= 1


@pytest.mark.parametrize("shape", [(3, 64, 48), (3, 64, 48, 1), (64, 48, 1)])
def test_batches_and_channel_axis(shape, rng):
    imgs = rng.integers(0, 256, shape, dtype=np.uint8)
    cpu = clahe(imgs)
    gpu_path = clahe(tf.constant(imgs)).numpy()
    assert cpu.shape == shape and gpu_path.shape == shape
    assert _max_diff(cpu, gpu_path) <= 1
    if len(shape) >= 3 and shape[0] == 3:
        first = imgs[0, ..., 0] if imgs.ndim == 4 else imgs[0]
        np.testing.assert_array_equal(np.squeeze(cpu[0]), clahe(first))


def test_inside_tf_function_and_tf_data(rng):
    imgs = rng.integers(0, 256, (4, 40, 56), dtype=np.uint8)
    traced = tf.function(lambda x: clahe(x, 2.0, (4, 4)),
                         input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
    assert _max_diff(traced(tf.constant(imgs)).numpy(), clahe(imgs, 2.0, (4, 4))) <= 1
    ds = tf.data.Dataset.from_tensor_slices(imgs).map(lambda x: clahe(x, 2.0, (4, 4)))
    for i, out in enumerate(ds):
        assert _max_diff(out.numpy(), clahe(imgs[i], 2.0, (4, 4))) <= 1


def test_real_ct_slice():
    """A real CT from pydicom's bundled files, windowed to 8 bits."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm", download=False)
    if path is None:
        pytest.skip("pydicom's bundled CT_small.dcm is not installed")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    img = np.clip((hu + 160) / 400 * 255, 0, 255).astype(np.uint8)
    assert _max_diff(clahe(img), clahe(tf.constant(img)).numpy()) <= 1


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((32, 32), np.float32), {}, "uint8 or uint16"),
        (np.zeros((4, 4), np.uint8), {}, "smaller than"),
        (np.zeros((2, 32, 32, 3), np.uint8), {}, "expected shape"),
        (np.zeros((32, 32), np.uint8), {"tile_grid": (0, 8)}, "tile_grid"),
        (np.zeros((32, 32), np.uint8), {"tile_grid": 8}, "tile_grid"),
        (np.zeros((32, 32), np.uint8), {"clip_limit": float("nan")}, "clip_limit"),
    ],
)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_bad_input(image, kwargs, match, as_tensor):
    x = tf.constant(image) if as_tensor else image
    with pytest.raises(InvalidImageError, match=match):
        clahe(x, **kwargs)


@pytest.mark.gpu
def test_on_gpu_agrees_with_opencv(rng):
    """Training on a GPU and inference on a CPU see the same pixels."""
    imgs = np.stack([_phantom(250, 187, rng) for _ in range(4)])
    with tf.device("/GPU:0"):
        out = clahe(tf.constant(imgs))
        assert "GPU" in out.device
    assert _max_diff(out.numpy(), clahe(imgs)) <= 1
