"""Shared fixtures and the ``gpu`` marker's skip rule."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


def _gpu_visible() -> bool:
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return False
    return bool(tf.config.list_physical_devices("GPU"))


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    if _gpu_visible():
        return
    skip = pytest.mark.skip(reason="needs a GPU (none visible to TensorFlow)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy generator (tests are reproducible)."""
    return np.random.default_rng(1234)
