"""TensorFlow detection without importing TensorFlow.

Importing TensorFlow takes seconds, so NumPy-only users of medimg should never pay
for it. A value can only be a ``tf.Tensor`` if TensorFlow has already been imported
by the caller, which is what :func:`is_tensor` relies on.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Quiet TensorFlow's C++ start-up log (set here, once, rather than inside `tensorflow()`:
# that function is called from code traced by tf.function, and autograph warns when it
# meets `os.environ` methods it cannot find the source of).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def is_tensor(x: Any) -> bool:
    """Return True when ``x`` is a TensorFlow tensor (eager, symbolic or variable).

    Never imports TensorFlow: if the caller has not imported it, ``x`` cannot be a
    tensor. KerasTensors (symbolic Keras 3 inputs) count as tensors too.
    """
    tf = sys.modules.get("tensorflow")
    if tf is not None and (tf.is_tensor(x) or isinstance(x, tf.Variable)):
        return True
    keras = sys.modules.get("keras")
    if keras is not None:
        kt = getattr(getattr(keras, "KerasTensor", None), "__mro__", None)
        if kt is not None and isinstance(x, keras.KerasTensor):
            return True
    return False


def tensorflow():
    """Import and return TensorFlow (its C++ log level set to warnings at medimg import)."""
    import tensorflow as tf

    return tf


def gpu_available() -> bool:
    """True when TensorFlow sees at least one GPU."""
    try:
        tf = tensorflow()
    except ImportError:  # pragma: no cover - TensorFlow is a hard dependency
        return False
    return bool(tf.config.list_physical_devices("GPU"))
