"""medimg.models.two_input_classifier and medimg.training: shapes, the loss that matches
the output, both inputs used, callbacks writing their files, learning a toy task."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.errors import ConfigError

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from medimg.models import two_input_classifier  # noqa: E402
from medimg.training import callbacks, train  # noqa: E402


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
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        two_input_classifier(**kwargs)


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


def test_train_rsna_is_a_command():
    from medimg.cli import build_parser

    args = build_parser().parse_args(["train", "rsna", "--profile", "smoke", "--epochs", "1"])
    assert args.dataset == "rsna" and args.epochs == 1 and callable(args.handler)


@pytest.mark.slow
def test_train_rsna_end_to_end(tmp_path):
    """The `medimg train rsna` job on a tiny synthetic set: runs, evaluates, saves."""
    from medimg.config import load_config
    from medimg.synthetic.rsna import make_rsna
    from medimg.training import train_rsna

    root = make_rsna(tmp_path / "rsna", 20, seed=3, image_size=128, draw_size=64, n_jobs=1,
                     progress=False)
    cfg = load_config("rsna", "smoke", overrides={"n_jobs": 1, "classifier": {
        "image_size": 32, "filters": [4, 8], "epochs": 2, "batch_size": 8,
        "cache_dir": str(tmp_path / "cache"), "run_dir": str(tmp_path / "runs"),
        "n_bootstrap": 50}})
    result = train_rsna(cfg, root=root, progress=False, verbose=0)
    assert 0.0 <= result["test_auc"] <= 1.0 and result["n_test"] >= 2
    assert result["epochs_run"] == 2 and result["cache_counts"]["images"] == 20
    assert (tmp_path / "runs" / "smoke" / "model.keras").is_file()
    assert set(result["auc_by_view"].group) <= {"AP", "PA"}
    assert 0.0 <= result["threshold"] <= 1.0
