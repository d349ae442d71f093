"""Data-set verbs of the ``medimg`` command (``prepare``, ``train``, ``predict``).

Each verb is a small function: parse arguments, load the config, call the package
function that does the work. Heavy imports (TensorFlow) happen inside the handlers,
so ``medimg --help`` stays fast.
"""

from __future__ import annotations

import argparse  # noqa: F401  (used by the handlers added below)

from .cli import register  # noqa: F401
