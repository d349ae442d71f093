"""Model builders: the U-Net (2-D and 3-D by input rank, shapes, options, clear errors,
learning) and the two-input classifier (shapes, the loss that matches its sigmoid, both
inputs used, options, clear errors)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from medimg.errors import ConfigError  # noqa: E402
from medimg.models import two_input_classifier, unet  # noqa: E402


def _count(model, kind):
    return sum(type(layer).__name__ == kind for layer in model.layers)


def test_unet_3d_shapes_and_structure():
    model = unet((16, 16, 8, 4), 3, depth=3, base_filters=4)
    assert model.output_shape == (None, 16, 16, 8, 3)
    assert _count(model, "Conv3D") == 2 * 3 + 2 * 2 + 1
    assert _count(model, "MaxPooling3D") == 2
    assert _count(model, "UpSampling3D") == 2
    assert _count(model, "Concatenate") == 2
    filters = [layer.filters for layer in model.layers if type(layer).__name__ == "Conv3D"]
    assert filters[:6] == [4, 4, 8, 8, 16, 16]  # doubling per level
    assert filters[-1] == 3  # 1x1x1 output convolution
    out = model.predict(np.zeros((1, 16, 16, 8, 4), np.float32), verbose=0)
    assert out.shape == (1, 16, 16, 8, 3)
    assert np.all((out >= 0) & (out <= 1))


def test_unet_2d_softmax_deconvolution_no_batchnorm():
    model = unet((32, 32, 1), 4, depth=4, base_filters=2, batch_norm=False,
                 deconvolution=True, final_activation="softmax")
    assert model.output_shape == (None, 32, 32, 4)
    assert _count(model, "Conv2DTranspose") == 3
    assert _count(model, "BatchNormalization") == 0
    out = model.predict(np.random.default_rng(0).random((2, 32, 32, 1), np.float32), verbose=0)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


def test_unet_fully_convolutional_with_none_sizes():
    model = unet((None, None, None, 2), 1, depth=2, base_filters=2)
    out = model.predict(np.zeros((1, 8, 12, 4, 2), np.float32), verbose=0)
    assert out.shape == (1, 8, 12, 4, 1)


def test_unet_output_float32_under_mixed_precision():
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = unet((8, 8, 1), 2, depth=2, base_filters=2)
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    assert model.output.dtype == "float32"


@pytest.mark.parametrize(
    ("shape", "kwargs", "match"),
    [
        ((16, 16), {}, "2-D or"),
        ((12, 16, 8, 4), {"depth": 4}, "divisible"),
        ((16, 16, 1), {"final_activation": "relu"}, "final_activation"),
        ((16, 16, 1), {"depth": 0}, "positive"),
    ],
)
def test_unet_bad_settings_are_clear_errors(shape, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        unet(shape, 2, **kwargs)


@pytest.mark.slow
def test_unet_learns_a_toy_segmentation():
    from medimg.metrics import dice, soft_dice_loss

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 16, 16, 1)).astype(np.float32)
    y = np.zeros_like(x)
    for i in range(len(x)):
        r, c = rng.integers(2, 10, 2)
        x[i, r:r + 5, c:c + 5] += 3.0
        y[i, r:r + 5, c:c + 5] = 1.0
    model = unet((16, 16, 1), 1, depth=2, base_filters=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=soft_dice_loss)
    model.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert dice(y > 0.5, model.predict(x, verbose=0) > 0.5) > 0.8


# --------------------------------------------------------------------------- classifier
def test_shapes_and_compilation():
    model = two_input_classifier((64, 64, 1), 12, filters=(8, 16))
    assert model.output_shape == (None, 1)
    assert [tuple(i.shape) for i in model.inputs] == [(None, 64, 64, 1), (None, 12)]
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)
    assert not model.loss.get_config()["from_logits"]  # sigmoid output, probabilities
    assert model.layers[-1].get_config()["activation"] == "sigmoid"
    out = model.predict([np.zeros((2, 64, 64, 1), np.float32), np.zeros((2, 12), np.float32)],
                        verbose=0)
    assert out.shape == (2, 1) and np.all((out >= 0) & (out <= 1))


def test_feature_branch_changes_output(rng):
    model = two_input_classifier((32, 32, 1), 4, filters=(4,), dropout=0.0, batch_norm=False)
    image = rng.random((1, 32, 32, 1)).astype(np.float32)
    a = model.predict([image, np.zeros((1, 4), np.float32)], verbose=0)
    b = model.predict([image, 5 * np.ones((1, 4), np.float32)], verbose=0)
    assert not np.allclose(a, b)


def test_options():
    plain = two_input_classifier((32, 32, 1), 0, filters=(4, 8), batch_norm=False, dropout=0.0,
                                 convs_per_block=2, compile=False)
    names = [layer.name for layer in plain.layers]
    assert "block1_conv2" in names and not any("bn" in n or "dropout" in n for n in names)
    assert "feature_dense" not in names


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_shape": (64, 64), "n_features": 3}, "H, W, C"),
        ({"image_shape": (64, 64, 1), "n_features": 3, "dropout": 1.0}, "dropout"),
        ({"image_shape": (8, 8, 1), "n_features": 3, "filters": (4, 4, 4, 4)}, "poolings"),
        ({"image_shape": (64, 64, 1), "n_features": -1}, "n_features"),
        ({"image_shape": (64, 64, 1), "n_features": 3, "batch_norm_momentum": 1.0}, "momentum"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        two_input_classifier(**kwargs)


def test_batch_norm_momentum_reaches_every_layer():
    model = two_input_classifier((32, 32, 1), 2, filters=(4, 8), convs_per_block=2,
                                 batch_norm_momentum=0.9, compile=False)
    momenta = [layer.momentum for layer in model.layers
               if type(layer).__name__ == "BatchNormalization"]
    assert momenta == [0.9] * 4
    default = two_input_classifier((32, 32, 1), 2, filters=(4,), compile=False)
    assert default.get_layer("block1_bn1").momentum == 0.99
