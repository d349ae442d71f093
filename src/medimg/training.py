"""Training helpers for Keras models: the standard callbacks and a ``train`` wrapper.

:func:`callbacks` gives the four callbacks every training run here uses (best
checkpoint, early stopping, a CSV log of every epoch and TensorBoard logs), all
writing under one run folder; :func:`train` fits a model with them, restores the
best weights and returns the history as a table.

Devices and GPU switches
------------------------
- **Several devices** (``train.distribute`` in the configs): :func:`strategy_for` gives
  ``none`` (one device), ``mirrored`` (``tf.distribute.MirroredStrategy`` over every
  visible GPU, or every logical CPU device when there is no GPU) or ``multi_worker``
  (``MultiWorkerMirroredStrategy``, the cluster read from ``TF_CONFIG``; every worker
  runs the same program, the chief writes the run folder). Build and compile the model
  inside :func:`scope` and pass the strategy to :func:`train`; training data may then be
  a ``dataset_fn(input_context)`` (e.g.
  :func:`medimg.tasks.segmentation.patch_dataset_fn`), each worker reading its own shard.
  ``train.batch_size`` is the **global** batch: each of ``R`` replicas computes
  ``batch_size / R`` samples per step and the gradients are summed over the replicas,
  so a step matches one device's step on the whole batch for losses that are means over
  samples. A loss pooled over the batch (the soft Dice of
  :func:`medimg.metrics.soft_dice_loss`) is pooled per replica, and batch normalisation
  uses per-replica statistics, as in nnU-Net's multi-GPU training without its all-gather.
  Create a ``multi_worker`` strategy first thing in the program (before any other
  TensorFlow work): collective operations are set up when TensorFlow starts.
- **Mixed precision** (``train.mixed_precision``): the model is built under Keras'
  ``mixed_float16`` policy (float16 compute, float32 weights and outputs; Keras wraps the
  optimiser in a ``LossScaleOptimizer``). A GPU switch: tensor cores make it about twice
  as fast; on a CPU it is slower than float32 and only tested for correctness.
- **XLA** (``train.xla``): ``jit_compile`` of the training step. A GPU switch: fused
  kernels; on a CPU compilation costs more than it saves.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["DISTRIBUTE", "callbacks", "is_chief", "scope", "strategy_for", "train"]

#: Values of the ``train.distribute`` config key.
DISTRIBUTE = ("none", "mirrored", "multi_worker")


def strategy_for(distribute: str | None, *, devices: list[str] | None = None) -> Any:
    """The ``tf.distribute`` strategy of a ``train.distribute`` setting (None for one device).

    Parameters
    ----------
    distribute : {"none", "mirrored", "multi_worker"} or None
        ``mirrored``: one replica per device on this machine; ``multi_worker``: one per
        device on every worker of the cluster in ``TF_CONFIG``.
    devices : list of str, optional
        ``mirrored`` only: the devices (default every visible GPU, else every logical
        CPU device).

    Returns
    -------
    tf.distribute.Strategy or None

    Raises
    ------
    ConfigError
        An unknown setting, or ``multi_worker`` without a valid ``TF_CONFIG``.
    """
    name = "none" if distribute in (None, "", False) else str(distribute)
    if name not in DISTRIBUTE:
        raise ConfigError(f"train.distribute must be one of {', '.join(DISTRIBUTE)}, got "
                          f"{distribute!r}")
    if name == "none":
        return None
    import tensorflow as tf

    if name == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=list(devices))
    text = os.environ.get("TF_CONFIG", "")
    try:
        config = json.loads(text) if text else None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise ConfigError("train.distribute is multi_worker but TF_CONFIG does not describe "
                          "the cluster: set TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:port\", "
                          "\"host2:port\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}' "
                          "on every worker")
    return tf.distribute.MultiWorkerMirroredStrategy()


def scope(strategy: Any) -> Any:
    """``strategy.scope()``, or a no-op for None: build and compile the model inside it.

    Examples
    --------
    >>> strategy = strategy_for(cfg.train.distribute)          # doctest: +SKIP
    >>> with scope(strategy):                                 # doctest: +SKIP
    ...     model = build_model(plan); compile_model(model, plan)
    """
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run's files (always, except on the non-chief
    workers of a multi-worker strategy)."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return task_type == "worker" and task_id == 0 and not has_chief


def _distributed(data: Any, strategy: Any) -> Any:
    """A dataset function distributed by ``strategy`` (or called once without one)."""
    if data is None or not callable(data) or hasattr(data, "element_spec"):
        return data
    if strategy is None:
        import tensorflow as tf

        return data(tf.distribute.InputContext())
    return strategy.distribute_datasets_from_function(data)


def _is_multi_worker(strategy: Any) -> bool:
    if strategy is None:
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@contextlib.contextmanager
def _keras_multi_worker(model: Any, strategy: Any, data: Any) -> Iterator[None]:
    """Work around Keras 3's ``fit`` under ``MultiWorkerMirroredStrategy`` (keras-team/keras
    issue 20585, tensorflow issue 72388): its symbolic build reduces a nested input batch
    across workers (``Attempt to convert a value (PerReplica ...)``) and its per-step
    logs are averaged with ``axis=0`` over scalars. The model is built here from the
    data's element spec, fit runs under the strategy's scope with the symbolic build
    skipped, and the logs are averaged over the workers with ``axis=None``; all other
    strategies run Keras unchanged."""
    if not _is_multi_worker(strategy):
        yield
        return
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as keras_trainer

    spec = data(tf.distribute.InputContext()).element_spec if callable(data) and not hasattr(
        data, "element_spec") else data.element_spec
    original_reduce = keras_trainer.reduce_per_replica

    def reduce_per_replica(values: Any, reduce_strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and _is_multi_worker(reduce_strategy):
            return tf.nest.map_structure(
                lambda value: reduce_strategy.reduce("MEAN", value, axis=None), values)
        return original_reduce(values, reduce_strategy, reduction)

    saved = model._distribute_strategy
    with strategy.scope():
        model._symbolic_build(data_batch=spec)
    keras_trainer.reduce_per_replica = reduce_per_replica
    model._distribute_strategy = None  # fit then takes the strategy from the scope
    try:
        with strategy.scope():
            yield
    finally:
        model._distribute_strategy = saved
        keras_trainer.reduce_per_replica = original_reduce


@contextlib.contextmanager
def _worker_folder(run_dir: Path, chief: bool) -> Iterator[Path]:
    """The run folder for the chief; a temporary one another worker writes and drops."""
    if chief:
        yield run_dir
        return
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="medimg-worker-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def callbacks(
    run_dir: str | os.PathLike,
    *,
    monitor: str = "val_auc",
    mode: str = "auto",
    patience: int = 5,
    tensorboard: bool = True,
    checkpoint: bool = True,
    verbose: int = 0,
) -> list:
    """Best checkpoint, early stopping, CSV log and TensorBoard, under ``run_dir``.

    Parameters
    ----------
    run_dir : path
        Folder of this run: ``best.keras`` (the best model so far by ``monitor``),
        ``history.csv`` (one row per epoch, appended as training goes, so an
        interrupted run still has its log) and ``tensorboard/``.
    monitor : str
        Quantity deciding "best" and early stopping (``val_auc``, ``val_loss``...).
    mode : {"auto", "min", "max"}
        Whether ``monitor`` improves downwards or upwards; ``auto`` picks ``max``
        for names containing ``auc``/``acc``/``dice`` and ``min`` otherwise (Keras'
        own ``auto`` only knows accuracy).
    patience : int
        Epochs without improvement before stopping (0 disables early stopping).
    tensorboard, checkpoint : bool
        Include those callbacks.
    verbose : int
        Verbosity of checkpoint/early stopping messages.

    Returns
    -------
    list of keras.callbacks.Callback
    """
    import keras

    if mode == "auto":
        mode = "max" if any(k in monitor for k in ("auc", "acc", "dice", "precision",
                                                   "recall")) else "min"
    if mode not in ("min", "max"):
        raise ConfigError(f"callbacks: mode must be 'auto', 'min' or 'max', got {mode!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    result: list = []
    if checkpoint:
        result.append(keras.callbacks.ModelCheckpoint(
            str(run_dir / "best.keras"), monitor=monitor, mode=mode, save_best_only=True,
            verbose=verbose))
    if patience and patience > 0:
        result.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=int(patience), restore_best_weights=True,
            verbose=verbose))
    result.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv")))
    if tensorboard:
        result.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"),
                                                  write_graph=False, profile_batch=0))
    return result


def train(
    model: Any,
    train_data: Any,
    validation_data: Any = None,
    *,
    epochs: int = 10,
    run_dir: str | os.PathLike | None = None,
    monitor: str = "val_auc",
    patience: int = 5,
    tensorboard: bool = True,
    class_weight: dict | None = None,
    verbose: int | str = "auto",
    seed: int | None = None,
    strategy: Any = None,
):
    """Fit ``model`` with :func:`callbacks` and return the history as a DataFrame.

    Without validation data, ``monitor`` falls back to the training metric of the
    same name (``val_auc`` -> ``auc``). The model ends with the weights of its best
    epoch (early stopping restores them; when training ran to ``epochs`` the best
    checkpoint is reloaded), so evaluation uses the model that was selected.

    Parameters
    ----------
    model : keras.Model
        Compiled.
    train_data, validation_data : tf.data.Dataset or callable
        Batches of ``(inputs, targets)`` (global batches), or a
        ``dataset_fn(input_context)`` returning per-replica batches (distributed with
        ``strategy.distribute_datasets_from_function``; see the module docstring).
    epochs : int
        Maximum epochs.
    run_dir : path, optional
        Where callbacks write (a temporary folder when None).
    monitor, patience, tensorboard :
        As for :func:`callbacks`.
    class_weight : dict, optional
        ``{0: w0, 1: w1}`` for imbalanced classes.
    verbose :
        Keras ``fit`` verbosity.
    seed : int, optional
        Seeds Keras (Python, NumPy and TensorFlow generators) before fitting.
    strategy : tf.distribute.Strategy, optional
        From :func:`strategy_for`; the model must have been built and compiled inside
        :func:`scope` of the same strategy. On a multi-worker cluster only the chief
        writes ``run_dir``.

    Returns
    -------
    pandas.DataFrame
        One row per epoch (``epoch`` and every logged metric); ``attrs`` holds
        ``best_epoch``, ``monitor``, ``run_dir`` and ``replicas``.

    Raises
    ------
    ConfigError
        ``epochs`` < 1, or a model built outside the strategy's scope.
    """
    import tempfile

    import keras
    import pandas as pd

    if epochs < 1:
        raise ConfigError(f"train: epochs must be >= 1, got {epochs}")
    if validation_data is None and monitor.startswith("val_"):
        monitor = monitor[len("val_"):]
    if strategy is not None and getattr(model, "distribute_strategy", None) is not strategy:
        raise ConfigError("train: the model was not built under this strategy; build and "
                          "compile it inside medimg.training.scope(strategy)")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    run_dir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="medimg-"))
    local_train_data = train_data
    train_data = _distributed(train_data, strategy)
    validation_data = _distributed(validation_data, strategy)
    with _worker_folder(run_dir, is_chief(strategy)) as folder:
        cbs = callbacks(folder, monitor=monitor, patience=patience, tensorboard=tensorboard)
        with _keras_multi_worker(model, strategy, local_train_data):
            history = model.fit(train_data, validation_data=validation_data,
                                epochs=int(epochs), callbacks=cbs, class_weight=class_weight,
                                verbose=verbose,
                                shuffle=False)  # tf.data pipelines shuffle themselves
        table = pd.DataFrame(history.history)
        table.insert(0, "epoch", range(1, len(table) + 1))
        mode_max = any(k in monitor for k in ("auc", "acc", "dice", "precision", "recall"))
        best_epoch = None
        if monitor in table:
            values = table[monitor]
            best_epoch = int(table["epoch"][values.idxmax() if mode_max else values.idxmin()])
            stopped_early = any(isinstance(c, keras.callbacks.EarlyStopping) and c.stopped_epoch
                                for c in cbs)
            best_path = folder / "best.keras"
            if not stopped_early and best_path.is_file() and best_epoch != len(table):
                with scope(strategy):
                    model.load_weights(best_path)
    replicas = int(strategy.num_replicas_in_sync) if strategy is not None else 1
    table.attrs.update(best_epoch=best_epoch, monitor=monitor, run_dir=str(run_dir),
                       replicas=replicas)
    return table
