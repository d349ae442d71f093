"""Metrics and losses: Dice (hard and soft), soft-Dice loss, BraTS regions, Hausdorff 95,
and classification evaluation (AUC with a bootstrap interval, ROC)."""

from __future__ import annotations
