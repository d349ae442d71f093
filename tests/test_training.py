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


# --------------------------------------------------------------------------- devices
# Distribution needs TensorFlow configured before it starts (logical devices, collective
# ops), so these run in fresh processes.

import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from medimg.training import DISTRIBUTE, scope, strategy_for  # noqa: E402


def _run_python(script, *args, env=None, timeout=300):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
                   **(env or {})}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment)


def _result(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def segmentation_cache(tmp_path_factory):
    """A tiny phantom data set preprocessed into the segmentation cache: (plan, paths)."""
    from medimg.datasets import msd
    from medimg.synthetic.msd import make_msd
    from medimg.tasks import segmentation as seg

    root = make_msd(tmp_path_factory.mktemp("phantom"), seed=5, n_cases=4, n_test=0,
                    shape=(32, 32, 12))
    cases = msd.find_cases(root)
    prints = seg.fingerprint(cases, n_jobs=1, progress=False)
    plan = seg.make_plan(prints, patch_shape=[16, 16, 8], max_depth=2, base_filters=4,
                         batch_size=4)
    manifest = seg.preprocess(cases, plan, tmp_path_factory.mktemp("cache"), n_jobs=1,
                              progress=False)
    plan_path = tmp_path_factory.mktemp("plan") / "plan.json"
    plan.save(plan_path)
    return plan_path, list(seg.cached_cases(manifest)["path"])


def test_strategy_settings(monkeypatch):
    assert DISTRIBUTE == ("none", "mirrored", "multi_worker")
    assert strategy_for("none") is None and strategy_for(None) is None
    with pytest.raises(ConfigError, match="train.distribute"):
        strategy_for("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        strategy_for("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        strategy_for("multi_worker")
    monkeypatch.delenv("TF_CONFIG")
    mirrored = strategy_for("mirrored", devices=["/cpu:0"])
    assert mirrored.num_replicas_in_sync == 1
    model = two_input_classifier((32, 32, 1), 2, filters=(4,))  # built outside the scope
    with pytest.raises(ConfigError, match="scope"):
        train(model, None, strategy=mirrored, epochs=1)
    with scope(None):  # one device: a no-op
        pass


_TWO_DEVICES = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from medimg import training
from medimg.models import unet
from medimg.tasks import segmentation as seg

rng = np.random.default_rng(0)
x = rng.normal(size=(32, 16, 16, 1)).astype("float32")
y = (x > 0.3).astype("float32")

def dataset_fn(context):
    per_replica = context.get_per_replica_batch_size(8)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(per_replica)

def fit(strategy, plain=False):
    keras.utils.set_random_seed(0)
    with training.scope(strategy):
        model = unet((16, 16, 1), 1, depth=2, base_filters=4, batch_norm=False,
                     final_activation="sigmoid")
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8) if plain else dataset_fn
    history = training.train(model, data, epochs=3, patience=0, tensorboard=False,
                             verbose=0, monitor="loss", strategy=strategy)
    return history, model.get_weights()

strategy = training.strategy_for("mirrored")  # one per process: collectives are keyed
one, weights_one = fit(None)
two, weights_two = fit(strategy)
three, _ = fit(strategy, plain=True)  # a plain dataset of global batches (the classifier's)
# the segmentation pipeline's own dataset_fn and model on the two devices
plan = seg.Plan.load(sys.argv[1])
with training.scope(strategy):
    model = seg.build_model(plan, batch_norm=False)
    seg.compile_model(model, plan, learning_rate=1e-3)
fn = seg.patch_dataset_fn(json.loads(sys.argv[2]), plan, patches_per_case=4, batch_size=4)
shard = fn(tf.distribute.InputContext(1, 0, 2))
images, _ = next(iter(shard))
history = training.train(model, fn, epochs=1, patience=0, tensorboard=False, verbose=0,
                         monitor="loss", strategy=strategy)
print("RESULT " + json.dumps({
    "devices": strategy.num_replicas_in_sync,
    "loss_one": one["loss"].tolist(), "loss_two": two["loss"].tolist(),
    "loss_plain": three["loss"].tolist(),
    "replicas": [one.attrs["replicas"], two.attrs["replicas"]],
    "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(weights_one, weights_two)),
    "per_replica_batch": int(images.shape[0]),
    "segmentation_loss": float(history["loss"].iloc[-1]),
    "segmentation_replicas": history.attrs["replicas"]}))
"""


@pytest.mark.slow
def test_two_devices_give_the_results_of_one(segmentation_cache):
    plan_path, paths = segmentation_cache
    result = _result(_run_python(_TWO_DEVICES, plan_path, json.dumps(paths)))
    assert result["devices"] == 2 and result["replicas"] == [1, 2]
    # a mean loss over samples: one step on 2 x 4 samples is one step on 8
    np.testing.assert_allclose(result["loss_two"], result["loss_one"], rtol=1e-4)
    np.testing.assert_allclose(result["loss_plain"], result["loss_one"], rtol=1e-4)
    assert result["max_weight_diff"] < 1e-4
    assert result["loss_one"][-1] < result["loss_one"][0]  # it did learn
    # the segmentation pipeline: the global batch of 4 split into 2 per replica
    assert result["per_replica_batch"] == 2
    assert result["segmentation_replicas"] == 2 and np.isfinite(result["segmentation_loss"])


_WORKER = r"""
import json, os, sys
from medimg import training
strategy = training.strategy_for("multi_worker")   # first: collectives start with TF
import numpy as np
from medimg.tasks import segmentation as seg
plan = seg.Plan.load(sys.argv[1])
with training.scope(strategy):
    model = seg.build_model(plan, batch_norm=False)
    seg.compile_model(model, plan, learning_rate=1e-2)
fn = seg.patch_dataset_fn(json.loads(sys.argv[2]), plan, patches_per_case=4, batch_size=4,
                          seed=3)
history = training.train(model, fn, epochs=1, patience=0, tensorboard=False, verbose=0,
                         monitor="loss", strategy=strategy, run_dir=sys.argv[3])
print("RESULT " + json.dumps({
    "replicas": strategy.num_replicas_in_sync, "chief": training.is_chief(strategy),
    "epochs": len(history), "loss": float(history["loss"].iloc[-1]),
    "checksum": float(sum(np.abs(w).sum() for w in model.get_weights()))}))
"""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_local_workers_train_one_epoch_together(segmentation_cache, tmp_path):
    plan_path, paths = segmentation_cache
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    procs = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(_run_python(_WORKER, plan_path, json.dumps(paths), tmp_path / f"run{index}",
                                 env={"TF_CONFIG": config}))
    results = [_result(p) for p in procs]
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    assert all(r["epochs"] == 1 and np.isfinite(r["loss"]) for r in results)
    # synchronous training: both workers end with the same weights
    assert results[0]["checksum"] == pytest.approx(results[1]["checksum"], rel=1e-6)
    assert (tmp_path / "run0" / "history.csv").is_file()  # the chief writes the run
    assert not (tmp_path / "run1").exists()  # the other worker writes nothing there
