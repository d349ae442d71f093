"""medimg.spatial.resize and resample_to_spacing (2-D): OpenCV on NumPy, tf.image on
tensors; shapes, dtypes, area averaging when shrinking, agreement of the two paths."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.errors import InvalidImageError
from medimg.spatial import resample_to_spacing, resize

tf = pytest.importorskip("tensorflow")


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
