"""N4 bias-field correction with SimpleITK."""

from __future__ import annotations
