"""TensorFlow detection without importing TensorFlow.

Importing TensorFlow takes seconds, so NumPy-only users of medimg should never pay
for it. A value can only be a ``tf.Tensor`` if TensorFlow has already been imported
by the caller, which is what :func:`is_tensor` relies on.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
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


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Send what C and C++ code write to file descriptor 2 to /dev/null for a while.

    TensorFlow's shared libraries log at load time (oneDNN, CUDA driver lookups) through
    absl before any log level applies, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them;
    only the file descriptor can. Python's own ``sys.stderr`` is flushed first and is
    back when the block ends, errors included.
    """
    with contextlib.suppress(AttributeError, ValueError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> Any:
    """Import TensorFlow (and Keras) with their start-up lines silenced; return TensorFlow.

    For command lines and notebook kernels, where those lines bury the output that
    matters. A no-op when TensorFlow is already imported. Warnings and errors logged
    later (after start-up) still follow ``TF_CPP_MIN_LOG_LEVEL``.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with stderr_silenced():
        import keras  # noqa: F401 - loads its own libraries now, quietly
        import tensorflow as tf

        tf.constant(0.0) + 0.0  # the first op initialises the devices (more start-up lines)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    return tf


def gpu_available() -> bool:
    """True when TensorFlow sees at least one GPU."""
    try:
        tf = tensorflow()
    except ImportError:  # pragma: no cover - TensorFlow is a hard dependency
        return False
    return bool(tf.config.list_physical_devices("GPU"))
