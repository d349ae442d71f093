"""medimg.training: the one training loop (callbacks writing their files, the best epoch
restored) learning a toy task, and the callbacks' modes."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.errors import ConfigError

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from medimg.models import two_input_classifier  # noqa: E402
from medimg.training import callbacks, train  # noqa: E402


def _toy_data(rng, n):
    """Positives carry a bright square; a feature also leaks half the label."""
    images = rng.normal(0.3, 0.05, (n, 32, 32, 1)).astype(np.float32)
    target = (np.arange(n) % 2).astype(np.float32)
    images[target == 1, 10:20, 10:20] += 0.5
    features = np.stack([target * rng.integers(0, 2, n), rng.random(n)], 1).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices(((images, features), target)).batch(16), target


@pytest.mark.slow
def test_train_learns_and_logs(tmp_path, rng):
    keras.utils.set_random_seed(0)
    train_ds, _ = _toy_data(rng, 128)
    val_ds, _ = _toy_data(rng, 64)
    model = two_input_classifier((32, 32, 1), 2, filters=(8, 16), learning_rate=3e-3)
    history = train(model, train_ds, val_ds, epochs=6, run_dir=tmp_path, patience=3,
                    verbose=0, seed=0)
    assert {"epoch", "loss", "auc", "val_loss", "val_auc"} <= set(history.columns)
    assert (tmp_path / "best.keras").is_file() and (tmp_path / "history.csv").is_file()
    assert any((tmp_path / "tensorboard").rglob("*tfevents*"))
    assert history.val_auc.max() > 0.9
    assert history.attrs["best_epoch"] == int(history.epoch[history.val_auc.idxmax()])
    reloaded = keras.saving.load_model(tmp_path / "best.keras")
    assert reloaded.output_shape == (None, 1)


def test_callbacks_mode():
    cbs = callbacks("/tmp/medimg-test-callbacks", monitor="val_loss", tensorboard=False)
    kinds = {type(c).__name__ for c in cbs}
    assert kinds == {"ModelCheckpoint", "EarlyStopping", "CSVLogger"}
    stop = next(c for c in cbs if type(c).__name__ == "EarlyStopping")
    assert stop.monitor_op is None or stop.mode == "min"
    with pytest.raises(ConfigError):
        callbacks("/tmp/medimg-test-callbacks", mode="up")
