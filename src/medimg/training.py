"""Training helpers for Keras models: the standard callbacks and a ``train`` wrapper.

:func:`callbacks` gives the four callbacks every training run here uses (best
checkpoint, early stopping, a CSV log of every epoch and TensorBoard logs), all
writing under one run folder; :func:`train` fits a model with them, restores the
best weights and returns the history as a table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["callbacks", "train"]


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
    train_data, validation_data : tf.data.Dataset
        Batches of ``(inputs, targets)``.
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

    Returns
    -------
    pandas.DataFrame
        One row per epoch (``epoch`` and every logged metric); ``attrs`` holds
        ``best_epoch``, ``monitor`` and ``run_dir``.
    """
    import tempfile

    import keras
    import pandas as pd

    if epochs < 1:
        raise ConfigError(f"train: epochs must be >= 1, got {epochs}")
    if validation_data is None and monitor.startswith("val_"):
        monitor = monitor[len("val_"):]
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    run_dir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="medimg-"))
    cbs = callbacks(run_dir, monitor=monitor, patience=patience, tensorboard=tensorboard)
    history = model.fit(train_data, validation_data=validation_data, epochs=int(epochs),
                        callbacks=cbs, class_weight=class_weight, verbose=verbose,
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
        best_path = run_dir / "best.keras"
        if not stopped_early and best_path.is_file() and best_epoch != len(table):
            model.load_weights(best_path)
    table.attrs.update(best_epoch=best_epoch, monitor=monitor, run_dir=str(run_dir))
    return table

