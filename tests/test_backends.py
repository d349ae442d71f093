"""Keras backends: the models, the losses, the Dice metric and sliding-window prediction run
under ``KERAS_BACKEND=jax`` with TensorFlow absent (as on GPU machines that have JAX but
no TensorFlow). Keras chooses its backend when it is first imported, so this runs in a
fresh process, with ``tensorflow`` made unimportable there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

_SCRIPT = r"""
import json, os, sys
sys.modules["tensorflow"] = None   # importing TensorFlow now fails, as where it is absent
import numpy as np
import keras
from medimg import metrics, patches
from medimg.models import two_input_classifier, unet
from medimg.tasks import segmentation as seg

out = {"backend": keras.backend.backend()}
rng = np.random.default_rng(0)
keras.utils.set_random_seed(0)

# the losses against NumPy
t = (rng.random((2, 8, 8, 4, 3)) > 0.7).astype("float32")
p = rng.random((2, 8, 8, 4, 3)).astype("float32")
axes = (0, 1, 2, 3)
soft = 1 - np.mean((2 * (t * p).sum(axes) + 1) / ((p * p).sum(axes) + (t * t).sum(axes) + 1))
bce = -np.mean(t * np.log(np.clip(p, 1e-7, 1)) + (1 - t) * np.log(np.clip(1 - p, 1e-7, 1)))
out["soft_dice"] = [float(metrics.soft_dice_loss(t, p)), float(soft)]
out["dice_bce"] = [float(seg.dice_bce_loss(t, p)), float(soft + bce)]
probabilities = p / p.sum(-1, keepdims=True)
onehot = np.eye(3, dtype="float32")[rng.integers(0, 3, (2, 8, 8, 4))]
soft_c = 1 - np.mean((2 * (onehot * probabilities).sum(axes) + 1)
                     / ((probabilities ** 2).sum(axes) + (onehot ** 2).sum(axes) + 1))
cce = -np.mean((onehot * np.log(probabilities)).sum(-1))
out["dice_cce"] = [float(seg.dice_cce_loss(onehot, probabilities)), float(soft_c + cce)]

# the Dice metric against medimg.metrics.dice (NumPy)
metric = metrics.dice_metric()
metric.update_state(t, p)
out["dice_metric"] = [float(metric.result()), float(metrics.dice(t > 0.5, p > 0.5))]
plan = seg.Plan(
    dataset={"name": "Phantom", "channel_names": ["MRI"], "labels": {"background": [0],
             "a": [1], "b": [2]}}, dimensionality="3d", slice_axis=None,
    target_spacing=(1.0, 1.0, 1.0), crop_to_nonzero=True, use_nonzero_mask=False,
    normalization=[{"channel": "MRI", "scheme": "zscore"}] * 2, bias_correction=False,
    n4_shrink=4, n4_iterations=[10], class_values=[0, 1, 2], outputs=["background", "a", "b"],
    target_table=np.eye(3).tolist(), activation="softmax", regions_class_order=None,
    patch_shape=(16, 16, 8), depth=2, base_filters=4, batch_size=2)
pooled = [m for m in seg.metrics_for(plan) if m.name == "dice"][0]
pooled.update_state(onehot, probabilities)
foreground = np.argmax(probabilities, -1)
out["pooled_dice"] = [float(pooled.result()),
                      float(metrics.dice(onehot[..., 1:] > 0.5, probabilities[..., 1:] > 0.5))]

# the segmentation network of a plan, compiled as the pipeline does, learns (3-D)
model = seg.compile_model(seg.build_model(plan), plan, learning_rate=1e-2)
x = rng.normal(size=(4, 16, 16, 8, 2)).astype("float32")
codes = (x[..., 0] > 0.3).astype(int) + (x[..., 1] > 1.0).astype(int)
y = np.eye(3, dtype="float32")[codes]
history = model.fit(x, y, batch_size=2, epochs=4, verbose=0)
out["unet3d_loss"] = history.history["loss"]
out["metric_names"] = sorted(history.history)

# a 2-D U-Net with the soft-Dice loss and the Dice metric
flat = unet((32, 32, 1), 1, depth=2, base_filters=4, final_activation="sigmoid")
flat.compile(optimizer=keras.optimizers.Adam(1e-2), loss=metrics.soft_dice_loss,
             metrics=[metrics.dice_metric()])
images = rng.normal(size=(8, 32, 32, 1)).astype("float32")
out["unet2d_loss"] = flat.fit(images, (images > 0.5).astype("float32"), epochs=4,
                              verbose=0).history["loss"]

# sliding-window prediction with the model: one window is the model's own output
volume = x[0]
whole = patches.sliding_window_predict(model, volume, (16, 16, 8), overlap=0.5)
direct = np.asarray(model.predict(volume[None], verbose=0))[0]
out["sliding_one_window"] = float(np.max(np.abs(whole - direct)))
big = rng.normal(size=(24, 20, 12, 2)).astype("float32")
blended = patches.sliding_window_predict(model, big, (16, 16, 8), overlap=0.5, batch_size=4)
out["sliding_shape"] = list(blended.shape)
out["sliding_sums"] = float(np.max(np.abs(blended.sum(-1) - 1)))

# the two-input classifier
classifier = two_input_classifier((32, 32, 1), 2, filters=(4, 8), learning_rate=1e-2)
target = np.arange(16) % 2
pictures = rng.normal(0.0, 0.1, (16, 32, 32, 1)).astype("float32")
pictures[target == 1, 8:24, 8:24] += 1.0
features = rng.random((16, 2)).astype("float32")
out["classifier_loss"] = classifier.fit((pictures, features), target.astype("float32"),
                                        epochs=5, verbose=0).history["loss"]
out["tensorflow_loaded"] = sys.modules.get("tensorflow") is not None
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_models_losses_metrics_and_sliding_window_run_under_jax():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    assert out["backend"] == "jax" and out["tensorflow_loaded"] is False
    for name in ("soft_dice", "dice_bce", "dice_cce", "dice_metric", "pooled_dice"):
        got, want = out[name]
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5), name
    assert out["unet3d_loss"][-1] < out["unet3d_loss"][0]
    assert {"dice", "dice_a", "dice_b", "loss"} <= set(out["metric_names"])
    assert out["unet2d_loss"][-1] < out["unet2d_loss"][0]
    assert out["classifier_loss"][-1] < out["classifier_loss"][0]
    assert out["sliding_one_window"] < 1e-5
    assert out["sliding_shape"] == [24, 20, 12, 3] and out["sliding_sums"] < 1e-4
    assert np.isfinite(out["unet3d_loss"]).all()
