"""The network of a plan, its loss and its metrics.

One builder (:func:`medimg.models.unet`, 2-D or 3-D by the plan), a soft-Dice +
cross-entropy loss (nnU-Net's; binary cross-entropy for region outputs, categorical
for classes), and hard Dice metrics: one per foreground output (``dice_<name>``) and
``dice``, all foreground outputs pooled, which early stopping watches
(``val_dice``). The notebook shows the compile line itself::

    model = segmentation.build_model(plan)
    model.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate),
                  loss=segmentation.loss_for(plan), metrics=segmentation.metrics_for(plan))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import ConfigError, DecodeError
from ...metrics import dice_metric, soft_dice_loss
from ...models import unet
from .plan import Plan

__all__ = ["build_model", "check_model", "compile_model", "dice_bce_loss", "dice_cce_loss",
           "load_model", "loss_for", "metrics_for"]


def dice_bce_loss(y_true: Any, y_pred: Any) -> Any:
    """Soft Dice (:func:`medimg.metrics.soft_dice_loss`) + binary cross-entropy, for
    sigmoid outputs (regions, one channel per region)."""
    from keras import losses, ops


    bce = losses.binary_crossentropy(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"))
    return soft_dice_loss(y_true, y_pred) + ops.mean(bce)


def dice_cce_loss(y_true: Any, y_pred: Any) -> Any:
    """Soft Dice (:func:`medimg.metrics.soft_dice_loss`) + categorical cross-entropy, for
    softmax outputs (one-hot classes)."""
    from keras import losses, ops


    cce = losses.categorical_crossentropy(ops.cast(y_true, "float32"),
                                          ops.cast(y_pred, "float32"))
    return soft_dice_loss(y_true, y_pred) + ops.mean(cce)


def loss_for(plan: Plan) -> Any:
    """The loss matching the plan's output activation."""
    return dice_bce_loss if plan.activation == "sigmoid" else dice_cce_loss


_POOLED: Any = None


def _pooled_dice_class() -> Any:
    """A Dice metric over several output channels pooled (foreground only)."""
    global _POOLED
    if _POOLED is not None:
        return _POOLED
    from keras import ops


    base = type(dice_metric())

    class PooledDice(base):  # type: ignore[misc, valid-type]
        def __init__(self, channels=(), **kwargs):
            super().__init__(**kwargs)
            self.channels = [int(c) for c in channels]

        def update_state(self, y_true, y_pred, sample_weight=None):
            index = ops.convert_to_tensor(self.channels, dtype="int32")
            super().update_state(ops.take(y_true, index, axis=-1),
                                 ops.take(y_pred, index, axis=-1))

        def get_config(self):
            return {**super().get_config(), "channels": self.channels}

    _POOLED = PooledDice
    return PooledDice


def metrics_for(plan: Plan) -> list:
    """``dice`` (foreground outputs pooled) and ``dice_<name>`` per foreground output."""
    foreground = plan.foreground_outputs
    metrics = [_pooled_dice_class()(channels=foreground, name="dice")]
    if len(foreground) > 1:
        for k in foreground:
            name = "".join(c if c.isalnum() else "_" for c in plan.outputs[k].lower())
            metrics.append(dice_metric(f"dice_{name}", class_index=k))
    return metrics


def build_model(plan: Plan, *, batch_norm: bool = True, deconvolution: bool = False,
                mixed_precision: bool = False, name: str | None = None) -> Any:
    """The plan's U-Net (uncompiled): input channels, outputs and depth from the plan.

    The spatial input size is left open (fully convolutional), so the model trains on
    patches and predicts windows or whole slices of any size divisible by
    ``2 ** (plan.depth - 1)``.

    Parameters
    ----------
    plan : Plan
    batch_norm, deconvolution : bool
        See :func:`medimg.models.unet`.
    mixed_precision : bool
        Build under the ``mixed_float16`` policy (float16 compute, float32 weights and
        outputs; GPUs with tensor cores); other models are not affected.
    name : str, optional
        Model name (default ``<data set>_unet<2|3>d``).

    Returns
    -------
    keras.Model
    """
    import keras


    spatial = (None,) * plan.spatial_dims
    dataset = "".join(c if c.isalnum() else "_" for c in str(plan.dataset.get("name", "")))
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
    try:
        return unet((*spatial, plan.n_channels), plan.n_outputs, depth=plan.depth,
                    base_filters=plan.base_filters, batch_norm=batch_norm,
                    deconvolution=deconvolution, final_activation=plan.activation,
                    name=name or f"{dataset or 'segmentation'}_unet{plan.spatial_dims}d")
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def compile_model(model: Any, plan: Plan, *, learning_rate: float = 1e-3,
                  xla: bool = False) -> Any:
    """``model.compile`` with Adam, :func:`loss_for` and :func:`metrics_for` (returns it)."""
    import keras

    if float(learning_rate) <= 0:
        raise ConfigError(f"train.learning_rate must be positive, got {learning_rate}")
    model.compile(optimizer=keras.optimizers.Adam(float(learning_rate)), loss=loss_for(plan),
                  metrics=metrics_for(plan), jit_compile=bool(xla))
    return model


def check_model(model: Any, plan: Plan, *, where: Any = None) -> None:
    """Raise a clear error when ``model`` does not fit ``plan`` (channels, outputs, rank).

    Raises
    ------
    ConfigError
    """
    inputs = tuple(model.input_shape)
    outputs = tuple(model.output_shape)
    who = where if where is not None else getattr(model, "name", "model")
    if len(inputs) - 2 != plan.spatial_dims:
        raise ConfigError(f"model is {len(inputs) - 2}-D, the plan is {plan.dimensionality}",
                          who)
    if inputs[-1] != plan.n_channels:
        raise ConfigError(f"model takes {inputs[-1]} input channel(s), the plan has "
                          f"{plan.n_channels} ({', '.join(n['channel'] for n in plan.normalization)})",
                          who)
    if outputs[-1] != plan.n_outputs:
        raise ConfigError(f"model gives {outputs[-1]} output channel(s), the plan has "
                          f"{plan.n_outputs} ({', '.join(plan.outputs)})", who)


def load_model(path: str | os.PathLike, plan: Plan | None = None) -> Any:
    """Load a trained model (``model.keras``) for prediction, checked against its plan.

    Parameters
    ----------
    path : path
        The ``.keras`` file.
    plan : Plan, optional
        Default: ``plan.json`` beside the model.

    Returns
    -------
    (keras.Model, Plan)

    Raises
    ------
    DecodeError
        Missing file, or not a Keras model.
    ConfigError
        No plan beside it, or a model that does not fit the plan.
    """
    import keras

    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise DecodeError("no such model file (medimg train segmentation writes "
                          "DIR/model.keras)", path)
    if plan is None:
        plan = Plan.load(path.parent / "plan.json")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise DecodeError(f"cannot load as a Keras model ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})", path) from None
    check_model(model, plan, where=path)
    return model, plan
