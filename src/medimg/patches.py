"""Patches of volumes: foreground-aware sampling, grid patches, sliding-window prediction."""

from __future__ import annotations
