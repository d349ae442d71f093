"""Figures: image grids with boxes, three-plane views, overlays, montages, training curves.

Functions draw on matplotlib axes and return the figure; they never call ``plt.show``."""

from __future__ import annotations
