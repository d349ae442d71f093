"""Keras 3 model builders (channels-last): the two-input classifier and the U-Net
(one builder for 2-D and 3-D, chosen by the input rank)."""

from __future__ import annotations
