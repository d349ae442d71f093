"""Synthetic RSNA Pneumonia look-alike: chest X-ray phantoms as JPEG DICOMs + label CSVs.

The folder :func:`make_rsna` writes has the Kaggle stage-2 layout, so the real-data
code (:mod:`medimg.datasets.rsna`, notebooks 01 and 03) reads it unchanged::

    root/
      stage_2_train_images/<patientId>.dcm
      stage_2_test_images/<patientId>.dcm
      stage_2_train_labels.csv          patientId,x,y,width,height,Target (one row per box)
      stage_2_detailed_class_info.csv   patientId,class (same rows)
      stage_2_sample_submission.csv     patientId,PredictionString

Files mirror the real ones: Modality CR, 1024x1024, 8-bit MONOCHROME2, JPEG Baseline
(lossy, encapsulated), Pixel Spacing 0.139-0.171 mm, PatientAge as bare digits with a
few impossible values, PatientSex, ViewPosition AP/PA, BodyPartExamined CHEST.

Each image is a chest phantom drawn at low resolution, upscaled, then given
full-resolution grain: a body outline with shoulders and humeral heads, lungs with
apices, costophrenic angles and diaphragm domes (the right one higher), pulmonary
vessels branching from the hila and fainter towards the periphery, mediastinum,
aortic knob, a heart shadow (larger on AP films), trachea and main bronchi, a gastric
bubble, the spine, posterior ribs as curved bands (brighter cortices) and fainter
anterior ribs, clavicles, scapulae on AP views, and soft-tissue shadows over the
lower zones in some patients.

"Lung Opacity" patients carry 1-4 ill-defined, patchy airspace opacities inside the
lungs where their boxes are: they replace part of the lung's air (``opacity_contrast``
sets how much at the peak) and hide the lung markings (vessels) they overlap, with no
sharp edge; ribs and vessels outside them still cross them. "No Lung Opacity / Not
Normal" patients carry other findings: an enlarged heart, a pleural effusion blunting
a costophrenic angle, nodules, plate-like atelectasis, fine reticulation, or support
devices (endotracheal and nasogastric tubes, central lines, a pacemaker with leads,
ECG electrodes); opacity patients sometimes carry devices too. AP views carry
opacities more often, as in the real set (roughly three quarters of opacity patients
are AP there), so view position, age and sex alone predict the label a little (a
logistic regression on them: AUC about 0.65-0.72 on the demo profile) and the image
must do the rest.

On the demo profile (300 patients, ``opacity_contrast`` (0.6, 0.9)), the two-input CNN
of :func:`medimg.training.train_rsna` reached a held-out AUC of 0.83 (seed 42) and
0.86 (seed 7) on 60 test patients; a logistic regression on 32-px thumbnails about
0.85 (5-fold). Lower ``opacity_contrast`` for a harder task.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._fsutil import atomic_path, atomic_write_text
from ..errors import InvalidImageError

__all__ = ["CLASSES", "make_rsna", "render_chest"]

#: Classes of stage_2_detailed_class_info.csv, with the real set's patient fractions.
CLASSES = ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal")
CLASS_FRACTIONS = (0.23, 0.44, 0.33)
#: P(view is AP | class), close to the real stage-2 training set.
AP_FRACTION = {"Lung Opacity": 0.74, "No Lung Opacity / Not Normal": 0.43, "Normal": 0.30}
#: Boxes per opacity patient: 1, 2, 3, 4 (the real set is mostly 1-2).
BOX_COUNT_P = (0.42, 0.53, 0.04, 0.01)
#: Peak opacity density range, as the fraction of the lung's air an opacity replaces at
#: its peak (see :func:`render_chest`).
OPACITY_CONTRAST = (0.6, 0.9)
PIXEL_SPACINGS_MM = (0.139, 0.14, 0.143, 0.168, 0.171)
IMPOSSIBLE_AGES = ("148", "150", "151", "153", "155")
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

TRAIN_DIR, TEST_DIR = "stage_2_train_images", "stage_2_test_images"
LABELS_CSV, CLASS_CSV = "stage_2_train_labels.csv", "stage_2_detailed_class_info.csv"
SUBMISSION_CSV = "stage_2_sample_submission.csv"


@dataclass
class _Patient:
    patient_id: str
    seed: int
    label: str
    view: str
    sex: str
    age: str
    spacing_mm: float
    n_boxes: int
    split: str
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)


# --------------------------------------------------------------------------- drawing
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise (Gaussian-filtered white noise)."""
    import cv2

    noise = rng.standard_normal(shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / (noise.std() + 1e-6)


def _ellipse_mask(shape, center, axes, angle=0.0) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (round(center[0]), round(center[1])),
                (max(1, round(axes[0])), max(1, round(axes[1]))), angle, 0, 360, 1, -1)
    return mask.astype(np.float32)


_SHIFT = 4  # sub-pixel bits for OpenCV drawing


def _pts(points: Any) -> np.ndarray:
    """Float (x, y) points as OpenCV's fixed-point int32 polyline."""
    return np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32)


def _chaikin(points: np.ndarray, iterations: int = 3, closed: bool = True) -> np.ndarray:
    """Corner cutting: a smooth curve through a coarse polygon."""
    p = np.asarray(points, np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0) if closed else p[1:]
        a = p if closed else p[:-1]
        new = np.empty((2 * len(a), 2))
        new[0::2] = 0.75 * a + 0.25 * q
        new[1::2] = 0.25 * a + 0.75 * q
        p = new if closed else np.vstack([points[0], new, points[-1]])
    return p


def _bezier(p0, p1, p2, n: int = 16) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1)
            + t ** 2 * np.asarray(p2))


def _fill(shape, polygon) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [_pts(polygon)], 1.0, cv2.LINE_8, _SHIFT)
    return mask


def _curve(layer: np.ndarray, points, value: float, thickness: float) -> None:
    import cv2

    cv2.polylines(layer, [_pts(points)], False, float(value), max(1, round(thickness)),
                  cv2.LINE_8, _SHIFT)


def _anatomy(rng: np.random.Generator, n: int, view: str) -> dict[str, Any]:
    """Random sizes and positions of one patient's chest at an ``n x n`` drawing size."""
    cx = n * (0.5 + rng.uniform(-0.03, 0.03))
    half_width = n * rng.uniform(0.33, 0.39)  # lateral lung margin from the midline
    apex = n * rng.uniform(0.09, 0.14)
    dome_right = n * rng.uniform(0.64, 0.72)  # patient's right = image left, higher
    heart = rng.uniform(0.9, 1.1) * (1.12 if view == "AP" else 1.0)
    return {
        "cx": cx, "half_width": half_width, "apex": apex,
        "domes": (dome_right, dome_right + n * rng.uniform(0.01, 0.04)),
        "heart": heart, "tilt": rng.uniform(-2.5, 2.5),
        "jitter": rng.uniform(-0.012, 0.012, (2, 12, 2)) * n,
        "carina": n * rng.uniform(0.31, 0.35),
        "rib_gap": rng.uniform(0.95, 1.05),
        "soft_tissue": rng.uniform(0.0, 0.1) if rng.random() < 0.45 else 0.0,
        "bubble": rng.random() < 0.6,
        "bone": rng.uniform(0.8, 1.2),
    }


def _lung_polygons(a: dict[str, Any], n: int) -> list[np.ndarray]:
    """Outline of each lung: apex, lateral wall, costophrenic angle, dome, heart border."""
    cx, w, apex = a["cx"], a["half_width"], a["apex"]
    heart = a["heart"]
    polygons = []
    for i, side in enumerate((-1.0, 1.0)):
        dome = a["domes"][i]
        # the heart pushes the medial base of the left lung (image right) outwards
        medial_base = (0.09 if side < 0 else 0.15 * heart) * n
        points = np.array([
            [cx + side * 0.045 * n, apex + 0.07 * n],
            [cx + side * 0.12 * n, apex],
            [cx + side * 0.26 * n, apex + 0.06 * n],
            [cx + side * 0.95 * w, 0.36 * n],
            [cx + side * 1.0 * w, dome - 0.05 * n],
            [cx + side * 0.99 * w, dome + 0.045 * n],  # costophrenic angle
            [cx + side * 0.8 * w, dome + 0.015 * n],
            [cx + side * 0.5 * w, dome - 0.025 * n],  # top of the dome
            [cx + side * medial_base, dome - 0.01 * n],
            [cx + side * (medial_base * 0.85), dome - 0.12 * n],
            [cx + side * 0.07 * n, 0.4 * n],
            [cx + side * 0.055 * n, 0.26 * n],
        ]) + a["jitter"][i]
        polygons.append(_chaikin(points, 3))
    return polygons


def _vessel_tree(layer: np.ndarray, rng: np.random.Generator, start, angle: float,
                 length: float, width: float, value: float, depth: int) -> None:
    """Pulmonary vessels: branching, tapering, fainter towards the periphery."""
    import cv2

    if depth == 0 or length < 2.0:
        return
    angle += rng.uniform(-0.2, 0.2)
    end = (start[0] + length * np.cos(angle), start[1] + length * np.sin(angle))
    a, b = _pts([start, end])
    cv2.line(layer, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), float(value),
             max(1, round(width)), cv2.LINE_8, _SHIFT)
    for turn in (-1.0, 1.0):
        _vessel_tree(layer, rng, end, angle + turn * rng.uniform(0.3, 0.6),
                     length * rng.uniform(0.65, 0.8), width * 0.75, value * 0.85, depth - 1)


def _chest(rng: np.random.Generator, a: dict[str, Any], n: int, view: str):
    """Density map of a normal chest (float32, brighter = denser), the lung masks, the
    air the lungs take out of it and the lung markings (both of which an opacity
    replaces)."""
    import cv2

    cx, w, apex = a["cx"], a["half_width"], a["apex"]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    # body outline: neck, shoulders, chest wall, abdomen; soft tissue brighter where
    # it is seen edge-on at the sides
    outline = np.array([[cx - 0.09 * n, -1], [cx - 0.11 * n, 0.05 * n], [cx - 0.3 * n, 0.07 * n],
                        [cx - 0.5 * n, 0.13 * n], [cx - w - 0.08 * n, 0.4 * n],
                        [cx - w - 0.07 * n, n + 1], [cx + w + 0.07 * n, n + 1],
                        [cx + w + 0.08 * n, 0.4 * n], [cx + 0.5 * n, 0.13 * n],
                        [cx + 0.3 * n, 0.07 * n], [cx + 0.11 * n, 0.05 * n],
                        [cx + 0.09 * n, -1]])
    body = cv2.GaussianBlur(_fill((n, n), _chaikin(outline, 2)), (0, 0), 2.0)
    thick = cv2.GaussianBlur(body, (0, 0), 0.06 * n)
    image = 0.05 + body * (0.38 + 0.05 * yy / n) + 0.1 * (body - thick).clip(0, None)

    lungs = [cv2.GaussianBlur(_fill((n, n), p), (0, 0), 1.2) for p in _lung_polygons(a, n)]
    lung = np.clip(lungs[0] + lungs[1], 0.0, 1.0)
    # air: the lungs are thickest (darkest) in the middle zones
    air = lung * (0.27 - 0.05 * np.exp(-((yy - apex) / (0.08 * n)) ** 2))
    texture = _smooth_noise(rng, (n, n), 1.0) * 0.012 + _smooth_noise(rng, (n, n), 4.0) * 0.01
    image -= air
    # pulmonary vessels from the hila
    vessels = np.zeros((n, n), np.float32)
    for side in (-1.0, 1.0):
        hilum = (cx + side * 0.085 * n, a["carina"] + 0.06 * n)
        for angle in (-0.4 * np.pi, 0.0, 0.35 * np.pi):
            direction = np.pi / 2 - side * (np.pi / 2) + side * angle  # fan outwards
            _vessel_tree(vessels, rng, hilum, direction + rng.uniform(-0.15, 0.15),
                         n * rng.uniform(0.08, 0.11), max(1.0, n / 100), 0.07, 5)
    # lung markings (vessels, interstitium): what an airspace opacity hides
    markings = (cv2.GaussianBlur(vessels, (0, 0), 0.7) + texture) * lung
    image += markings
    # mediastinum, aortic knob, heart, trachea, gastric bubble
    mediastinum = _fill((n, n), _chaikin(np.array(
        [[cx - 0.05 * n, 0], [cx + 0.05 * n, 0], [cx + 0.06 * n, 0.27 * n],
         [cx + 0.09 * n, 0.3 * n], [cx + 0.06 * n, 0.42 * n], [cx - 0.06 * n, 0.42 * n],
         [cx - 0.065 * n, 0.27 * n]]), 2))
    heart_size = a["heart"]
    heart = _ellipse_mask((n, n), (cx + 0.04 * n * heart_size, a["domes"][0] - 0.055 * n),
                          (0.15 * n * heart_size, 0.115 * n * heart_size), -15)
    solid = cv2.GaussianBlur(np.maximum(mediastinum, heart), (0, 0), 1.8)
    image += solid * (0.04 + air * 0.85)  # soft tissue in front of (and instead of) air
    trachea = np.zeros((n, n), np.float32)
    _curve(trachea, [(cx, 0), (cx + 0.005 * n, a["carina"])], 1.0, 0.035 * n)
    for side in (-1.0, 1.0):
        _curve(trachea, [(cx, a["carina"]), (cx + side * 0.07 * n, a["carina"] + 0.07 * n)],
               1.0, 0.022 * n)
    image -= cv2.GaussianBlur(trachea, (0, 0), 1.2) * 0.07
    if a["bubble"]:
        bubble = _ellipse_mask((n, n), (cx + 0.19 * n, a["domes"][1] + 0.05 * n),
                               (0.05 * n, 0.028 * n))
        image -= cv2.GaussianBlur(bubble, (0, 0), 1.5) * 0.12
    if a["soft_tissue"]:  # breasts or other soft tissue over the lower zones
        for side in (-1.0, 1.0):
            shadow = _ellipse_mask((n, n), (cx + side * 0.25 * n, a["domes"][0] - 0.08 * n),
                                   (0.15 * n, 0.11 * n))
            shadow[: int(a["domes"][0] - 0.08 * n)] = 0
            image += cv2.GaussianBlur(shadow, (0, 0), 3.0) * a["soft_tissue"]

    # bones: spine, posterior and anterior ribs (bands with brighter cortices), clavicles,
    # humeral heads, scapulae on AP films
    bones = np.zeros((n, n), np.float32)
    spine = (np.abs(xx - cx) < 0.032 * n).astype(np.float32)
    discs = (np.sin(2 * np.pi * yy / (0.052 * n)) > -0.8).astype(np.float32)
    bones += spine * (0.035 + 0.025 * discs)
    gap = (a["domes"][0] - apex) / 9.0 * a["rib_gap"]
    for side in (-1.0, 1.0):
        for k in range(10):
            y = apex - 0.02 * n + k * gap
            rib = _bezier((cx + side * 0.035 * n, y), (cx + side * 0.55 * w, y - 0.045 * n),
                          (cx + side * 1.04 * w, y + 0.09 * n + 0.006 * n * k))
            thickness = 0.024 * n * (0.8 + 0.03 * k)
            _curve(bones, rib, 0.075, thickness)
            _curve(bones, rib, 0.04, max(1.0, thickness - 2.0))  # marrow: darker than cortex
        for k in range(6):  # anterior ribs: fainter, sloping down towards the midline
            y = apex + 0.06 * n + k * gap * 1.1
            rib = _bezier((cx + side * 1.0 * w, y), (cx + side * 0.6 * w, y + 0.02 * n),
                          (cx + side * 0.13 * n, y + 0.12 * n))
            _curve(bones, rib, 0.03, 0.02 * n)
        clavicle = _bezier((cx + side * 0.04 * n, 0.17 * n), (cx + side * 0.16 * n, 0.17 * n),
                           (cx + side * 0.31 * n, 0.09 * n))
        _curve(bones, clavicle, 0.1, 0.028 * n)
        head = _ellipse_mask((n, n), (cx + side * 0.47 * n, 0.17 * n), (0.06 * n, 0.065 * n))
        bones += head * 0.12
        if view == "AP":
            scapula = np.array([[cx + side * 0.25 * n, 0.14 * n],
                                [cx + side * 0.4 * n, 0.16 * n],
                                [cx + side * 0.32 * n, 0.44 * n]])
            bones += _fill((n, n), _chaikin(scapula, 2)) * 0.05
    image += cv2.GaussianBlur(bones, (0, 0), 0.8) * body * a["bone"]
    return image.astype(np.float32), lungs, air, markings


def _opacities(rng: np.random.Generator, lungs: list[np.ndarray], n_boxes: int, n: int,
               contrast: tuple[float, float]):
    """Ill-defined, patchy airspace opacities; their density and their boxes."""
    import cv2

    sides = [0, 1] if n_boxes >= 2 else [int(rng.integers(2))]
    sides = (sides * 2)[:n_boxes] if n_boxes > 2 else sides
    density = np.zeros((n, n), np.float32)
    boxes = []
    for i, side in enumerate(sides):
        ys, xs = np.nonzero(lungs[side] > 0.5)
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        lw, lh = x1 - x0, y1 - y0
        w = lw * rng.uniform(0.45, 0.8)
        h = lh * rng.uniform(0.3, 0.55)
        # lower zones more often; a second box in the same lung goes to the other half
        band = (0.0, 1.0) if len(sides) <= 2 else ((0.0, 0.45) if i < 2 else (0.5, 1.0))
        top = y0 + lh * (band[0] + (band[1] - band[0]) * rng.beta(2.2, 1.6)) - h / 2
        top = float(np.clip(top, y0, y1 - h))
        left = float(rng.uniform(x0 + 0.05 * lw, max(x0 + 0.05 * lw + 1, x1 - w - 0.05 * lw)))
        blob = np.zeros((n, n), np.float32)
        for _ in range(int(rng.integers(3, 7))):
            centre = (left + w * rng.uniform(0.2, 0.8), top + h * rng.uniform(0.2, 0.8))
            axes = (w * rng.uniform(0.12, 0.3), h * rng.uniform(0.15, 0.35))
            blob = np.maximum(blob, _ellipse_mask((n, n), centre, axes, rng.uniform(0, 180)))
        blob = cv2.GaussianBlur(blob, (0, 0), max(1.0, min(w, h) / 5.0))
        blob /= max(float(blob.max()), 1e-6)
        patchy = np.clip(0.8 + 0.3 * _smooth_noise(rng, (n, n), 2.0), 0.3, 1.2)
        peak = rng.uniform(*contrast)
        density = np.maximum(density, blob * patchy * peak)
        ys, xs = np.nonzero(blob * lungs[side] > 0.3)
        if len(xs):
            boxes.append((float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                          float(ys.max() - ys.min() + 1)))
    return density, boxes


def _devices(layer: np.ndarray, rng: np.random.Generator, a: dict[str, Any], n: int,
             kinds: Sequence[str]) -> None:
    """Support devices as they look on films: tubes with walls, lines, a pacemaker, leads."""
    import cv2

    cx, carina = a["cx"], a["carina"]
    width = max(1.0, n / 160)
    if "et_tube" in kinds:  # endotracheal tube: two walls and a radiopaque stripe
        tip = carina - n * rng.uniform(0.03, 0.07)
        for dx, value in ((-0.012, 0.12), (0.012, 0.12), (0.004, 0.35)):
            _curve(layer, [(cx + dx * n, 0), (cx + dx * n + 0.004 * n, tip)], value, width)
    if "ng_tube" in kinds:  # nasogastric tube down the oesophagus into the stomach
        x = cx + 0.015 * n
        path = [(x, 0), (x + 0.005 * n, 0.45 * n), (x + 0.03 * n, a["domes"][1]),
                (cx + 0.16 * n, a["domes"][1] + 0.07 * n), (cx + 0.2 * n, a["domes"][1] + 0.05 * n)]
        _curve(layer, _chaikin(np.array(path), 2, closed=False), 0.3, width)
    if "central_line" in kinds:
        side = -1.0 if rng.random() < 0.7 else 1.0
        path = [(cx + side * 0.3 * n, 0.1 * n), (cx + side * 0.15 * n, 0.17 * n),
                (cx - 0.04 * n, 0.24 * n), (cx - 0.035 * n, 0.36 * n)]
        _curve(layer, _chaikin(np.array(path), 2, closed=False), 0.3, width)
    if "pacemaker" in kinds:
        centre = (cx + 0.25 * n + rng.uniform(-0.02, 0.02) * n, 0.19 * n)
        box = cv2.boxPoints(((centre[0], centre[1]), (0.07 * n, 0.05 * n), rng.uniform(-20, 20)))
        cv2.fillPoly(layer, [_pts(_chaikin(box, 2))], 0.6, cv2.LINE_8, _SHIFT)
        heart_tip = (cx + 0.1 * n * a["heart"], a["domes"][0] - 0.05 * n)
        for offset in (0.0, 0.03 * n):
            lead = [centre, (cx + 0.05 * n, 0.2 * n + offset), (cx - 0.03 * n, 0.38 * n),
                    (heart_tip[0] - offset, heart_tip[1] - offset)]
            _curve(layer, _chaikin(np.array(lead), 2, closed=False), 0.4, width)
    if "electrodes" in kinds:
        for _ in range(int(rng.integers(2, 5))):
            c = (cx + rng.uniform(-0.4, 0.4) * n, rng.uniform(0.08, 0.75) * n)
            cv2.circle(layer, tuple(int(v) for v in _pts([c])[0]), round(0.013 * n * 16), 0.35,
                       max(1, round(width)), cv2.LINE_8, _SHIFT)
            cv2.circle(layer, tuple(int(v) for v in _pts([c])[0]), round(0.004 * n * 16), 0.6,
                       -1, cv2.LINE_8, _SHIFT)
            end = (c[0] + rng.uniform(-0.3, 0.3) * n, n + 5)
            _curve(layer, _bezier(c, (c[0] + rng.uniform(-0.1, 0.1) * n, (c[1] + n) / 2), end),
                   0.15, width)


def _not_normal(image: np.ndarray, rng: np.random.Generator, a: dict[str, Any],
                lungs: list[np.ndarray], n: int) -> list[str]:
    """Findings that are not pneumonia: effusion, nodules, atelectasis, devices, reticulation.

    (An enlarged heart is drawn with the anatomy, see :func:`render_chest`.)
    """
    import cv2

    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    lung = np.clip(lungs[0] + lungs[1], 0, 1)
    kinds = ["effusion", "nodules", "atelectasis", "devices", "reticulation"]
    found = list(rng.choice(kinds, size=int(rng.integers(1, 3)), replace=False,
                            p=[0.25, 0.2, 0.15, 0.25, 0.15]))
    if "effusion" in found:  # blunted costophrenic angle with a meniscus
        side = int(rng.integers(2))
        level = a["domes"][side] - n * rng.uniform(0.03, 0.12)
        lateral = a["cx"] + (-1 if side == 0 else 1) * a["half_width"]
        meniscus = level - 0.4 * np.clip(n * 0.15 - np.abs(xx - lateral), 0, None)
        fluid = cv2.GaussianBlur((yy > meniscus).astype(np.float32), (0, 0), 2.5)
        image += fluid * lungs[side] * rng.uniform(0.12, 0.2)
    if "nodules" in found:  # well-defined round densities, one to a few
        for _ in range(int(rng.integers(1, 4))):
            side = int(rng.integers(2))
            ys, xs = np.nonzero(lungs[side] > 0.7)
            k = int(rng.integers(len(xs)))
            r = n * rng.uniform(0.008, 0.025)
            nodule = _ellipse_mask((n, n), (xs[k], ys[k]), (r, r * rng.uniform(0.8, 1.2)))
            image += cv2.GaussianBlur(nodule, (0, 0), 0.7) * rng.uniform(0.06, 0.14)
    if "atelectasis" in found:  # plate-like band at a base
        side = int(rng.integers(2))
        y = a["domes"][side] - n * rng.uniform(0.05, 0.12)
        x = a["cx"] + (-1 if side == 0 else 1) * a["half_width"] * rng.uniform(0.3, 0.6)
        band = np.zeros((n, n), np.float32)
        _curve(band, [(x - 0.09 * n, y + rng.uniform(-0.02, 0.02) * n), (x, y),
                      (x + 0.09 * n, y + rng.uniform(-0.02, 0.02) * n)], 1.0, 0.012 * n)
        image += cv2.GaussianBlur(band, (0, 0), 1.0) * lungs[side] * rng.uniform(0.06, 0.12)
    if "reticulation" in found:  # fine interstitial lines, lower zones
        lines = np.clip(_smooth_noise(rng, (n, n), 1.0), 0.0, None)
        weight = np.clip((yy - 0.4 * n) / (0.3 * n), 0, 1) * lung
        image += lines * weight * rng.uniform(0.015, 0.03)
    if "devices" in found:
        layer = np.zeros((n, n), np.float32)
        choice = ["et_tube", "ng_tube", "central_line", "pacemaker", "electrodes"]
        _devices(layer, rng, a, n, list(rng.choice(choice, size=int(rng.integers(1, 4)),
                                                   replace=False)))
        image += cv2.GaussianBlur(layer, (0, 0), 0.6)
    return found


def render_chest(
    seed: int,
    *,
    label: str = "Normal",
    view: str = "PA",
    n_boxes: int = 0,
    size: int = 1024,
    draw_size: int = 256,
    opacity_contrast: tuple[float, float] = OPACITY_CONTRAST,
) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """Draw one chest X-ray phantom.

    Parameters
    ----------
    seed : int
        Everything about the image (anatomy, findings, noise) follows from it; the
        anatomy and exposure do not depend on ``label`` (a seed drawn as "Normal"
        and as "Lung Opacity" differs only by the findings).
    label : str
        One of :data:`CLASSES`.
    view : {"PA", "AP"}
        AP views have a larger heart shadow, visible scapulae and more blur.
    n_boxes : int
        Opacities to draw (only for ``"Lung Opacity"``).
    size : int
        Output rows = columns.
    draw_size : int
        Resolution the anatomy is drawn at before upscaling (speed).
    opacity_contrast : (float, float)
        Range of an opacity's peak density, as the fraction of the lung's air it
        replaces (1 would be a solid, airless consolidation); lower is subtler. The
        opacity is ill-defined and patchy, so most of it is fainter than its peak.

    Returns
    -------
    image : numpy.ndarray, uint8, (size, size)
        MONOCHROME2 (bright = dense).
    boxes : list of (x, y, width, height)
        Opacity boxes in output pixels (empty unless ``label`` is opacity).
    """
    import cv2

    if label not in CLASSES:
        raise InvalidImageError(f"label {label!r} is not one of {CLASSES}")
    # separate streams: a seed's anatomy and exposure do not depend on its findings
    rng, findings_rng, exposure_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    n = draw_size
    anatomy = _anatomy(rng, n, view)
    if label == "No Lung Opacity / Not Normal" and findings_rng.random() < 0.3:
        anatomy["heart"] *= findings_rng.uniform(1.25, 1.4)  # cardiomegaly
    image, lungs, air, markings = _chest(rng, anatomy, n, view)

    boxes: list[tuple[float, float, float, float]] = []
    if label == "Lung Opacity":
        density, boxes = _opacities(findings_rng, lungs, max(1, n_boxes), n, opacity_contrast)
        # fluid and cells take the place of air and hide the vessels (silhouette)
        image += density * (air - markings)
        if findings_rng.random() < 0.3:  # sick patients often carry devices
            layer = np.zeros((n, n), np.float32)
            _devices(layer, findings_rng, anatomy, n,
                     list(findings_rng.choice(["et_tube", "ng_tube", "central_line",
                                               "electrodes"], size=2, replace=False)))
            image += cv2.GaussianBlur(layer, (0, 0), 0.6)
    elif label == "No Lung Opacity / Not Normal":
        _not_normal(image, findings_rng, anatomy, lungs, n)

    # acquisition: exposure, contrast, blur (AP portable films are softer), rotation
    gamma = exposure_rng.uniform(0.8, 1.25)
    image = np.clip(image, 0, 1) ** gamma
    image = image * exposure_rng.uniform(0.85, 1.1) + exposure_rng.uniform(-0.03, 0.05)
    rotation = cv2.getRotationMatrix2D((n / 2, n / 2), anatomy["tilt"], 1.0)
    image = cv2.warpAffine(image.astype(np.float32), rotation, (n, n),
                           borderMode=cv2.BORDER_REPLICATE)
    scale = size / n
    big = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    if view == "AP":
        big = cv2.GaussianBlur(big, (0, 0), scale * 0.6)
    big += exposure_rng.standard_normal((size, size), dtype=np.float32) * np.float32(0.012)
    big += cv2.resize(_smooth_noise(exposure_rng, (n // 4, n // 4), 1.0), (size, size)) * 0.015
    out = np.clip(big * 255.0, 0, 255).astype(np.uint8)

    # the boxes follow the small rotation applied to the image
    rotated = []
    for x, y, w, h in boxes:
        corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]])
        moved = corners @ rotation.T
        x0, y0 = moved.min(axis=0)
        x1, y1 = moved.max(axis=0)
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(n), x1), min(float(n), y1)
        rotated.append((round(x0 * scale), round(y0 * scale),
                        round((x1 - x0) * scale), round((y1 - y0) * scale)))
    return out, [tuple(float(v) for v in b) for b in rotated]


# --------------------------------------------------------------------------- DICOM
def _dataset(patient: _Patient, image: np.ndarray) -> Any:
    """A DICOM dataset with the real RSNA files' fields, JPEG Baseline encapsulated."""
    import cv2
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, generate_uid

    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95,
                                           cv2.IMWRITE_JPEG_PROGRESSIVE, 0])
    if not ok:  # pragma: no cover - OpenCV always encodes 8-bit greyscale
        raise InvalidImageError("OpenCV failed to JPEG-encode the phantom", patient.patient_id)
    sop_uid = generate_uid(entropy_srcs=[patient.patient_id, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(SECONDARY_CAPTURE)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = UID(JPEG_BASELINE)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(SECONDARY_CAPTURE)
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "19010101"
    ds.StudyTime = ""
    ds.AccessionNumber = ""
    ds.Modality = "CR"
    ds.ConversionType = "WSD"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = f"view: {patient.view}"
    ds.PatientName = patient.patient_id  # as in the real set: the anonymised ID
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = patient.sex
    ds.PatientAge = patient.age
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = patient.view
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient.patient_id, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[patient.patient_id, "series"])
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = image.shape
    ds.PixelSpacing = [f"{patient.spacing_mm:.3f}", f"{patient.spacing_mm:.3f}"]
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def _write_patient(patient: _Patient, *, root: str, size: int, draw_size: int,
                   opacity_contrast: tuple[float, float]) -> _Patient:
    """Render (unless already on disk) and write one patient; returns it with its boxes."""
    image, boxes = render_chest(patient.seed, label=patient.label, view=patient.view,
                                n_boxes=patient.n_boxes, size=size, draw_size=draw_size,
                                opacity_contrast=opacity_contrast)
    folder = TRAIN_DIR if patient.split == "train" else TEST_DIR
    path = Path(root) / folder / f"{patient.patient_id}.dcm"
    if not path.is_file():
        with warnings.catch_warnings():
            # the real set stores ages as bare digits ('51'), which pydicom flags as invalid AS
            warnings.simplefilter("ignore", UserWarning)
            ds = _dataset(patient, image)
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    patient.boxes = boxes
    return patient


def _patients(n_patients: int, n_test: int, rng: np.random.Generator) -> list[_Patient]:
    counts = np.floor(np.array(CLASS_FRACTIONS) * n_patients).astype(int)
    counts[np.argsort(-(np.array(CLASS_FRACTIONS) * n_patients - counts))[
        : n_patients - counts.sum()]] += 1
    labels = [c for c, k in zip(CLASSES, counts, strict=True) for _ in range(k)]
    labels = list(rng.permutation(labels))
    labels += list(rng.choice(CLASSES, size=n_test, p=CLASS_FRACTIONS))
    n_total = n_patients + n_test
    n_impossible = max(1, n_total // 150)
    impossible_at = set(rng.choice(n_total, size=min(n_impossible, n_total), replace=False))
    seeds = rng.integers(0, 2**31 - 1, size=n_total)
    patients = []
    for i, label in enumerate(labels):
        view = "AP" if rng.random() < AP_FRACTION[label] else "PA"
        sex = "M" if rng.random() < 0.57 else "F"
        age = int(np.clip(rng.normal(47 + (4 if view == "AP" else 0), 16.5), 1, 92))
        age_text = str(rng.choice(IMPOSSIBLE_AGES)) if i in impossible_at else str(age)
        spacing = float(rng.choice(PIXEL_SPACINGS_MM[3:] if view == "AP" and rng.random() < 0.6
                                   else PIXEL_SPACINGS_MM[:3]))
        n_boxes = int(rng.choice([1, 2, 3, 4], p=BOX_COUNT_P)) if label == CLASSES[0] else 0
        patients.append(_Patient(
            patient_id=str(uuid.UUID(bytes=rng.bytes(16), version=4)),
            seed=int(seeds[i]), label=label, view=view, sex=sex, age=age_text,
            spacing_mm=spacing, n_boxes=n_boxes, split="train" if i < n_patients else "test"))
    return patients


def make_rsna(
    root: str | os.PathLike,
    n_patients: int,
    *,
    seed: int = 0,
    n_test_patients: int | None = None,
    image_size: int = 1024,
    draw_size: int = 256,
    opacity_contrast: Sequence[float] = OPACITY_CONTRAST,
    n_jobs: int = -1,
    progress: bool = True,
) -> Path:
    """Write a synthetic RSNA Pneumonia data set in the Kaggle stage-2 layout.

    Parameters
    ----------
    root : str or os.PathLike
        Output folder (created). Finished images are kept on a rerun (resume).
    n_patients : int
        Training patients (one image each); classes in the real proportions
        (23% Lung Opacity, 44% No Lung Opacity / Not Normal, 33% Normal).
    seed : int
        Everything follows from it; results do not depend on ``n_jobs``.
    n_test_patients : int, optional
        Unlabelled test images; default ``max(2, n_patients // 10)``.
    image_size : int
        Rows = columns of the written images (the real set: 1024).
    draw_size : int
        Resolution the anatomy is drawn at before upscaling.
    opacity_contrast : (float, float)
        How dense opacities are (see :func:`render_chest`); the task's difficulty.
    n_jobs : int
        Worker processes (-1: every core).
    progress : bool
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``root``.

    Examples
    --------
    >>> root = make_rsna("/tmp/rsna", 24, seed=0)          # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())             # doctest: +SKIP
    ['stage_2_detailed_class_info.csv', 'stage_2_sample_submission.csv', ...]
    """
    import pandas as pd

    from .._parallel import map_items

    if n_patients < 1:
        raise InvalidImageError(f"n_patients must be at least 1, got {n_patients}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n_test = max(2, n_patients // 10) if n_test_patients is None else int(n_test_patients)
    patients = _patients(int(n_patients), n_test, np.random.default_rng(seed))
    low, high = (float(v) for v in opacity_contrast)
    if not 0 < low <= high:
        raise InvalidImageError(f"opacity_contrast must be 0 < low <= high, got "
                                f"{list(opacity_contrast)}")
    results = map_items(partial(_write_patient, root=str(root), size=image_size,
                                draw_size=draw_size, opacity_contrast=(low, high)),
                        patients, n_jobs=n_jobs, progress=progress,
                        desc="synthetic RSNA", unit="image")
    failed = [r for r in results if not r.ok]
    if failed:
        raise InvalidImageError(f"{len(failed)} phantom(s) failed, first: {failed[0].error}",
                                root)
    done = [r.value for r in results]

    label_rows, class_rows = [], []
    for p in done:
        if p.split != "train":
            continue
        if p.label == CLASSES[0]:
            for x, y, w, h in p.boxes:
                label_rows.append((p.patient_id, x, y, w, h, 1))
                class_rows.append((p.patient_id, p.label))
        else:
            label_rows.append((p.patient_id, None, None, None, None, 0))
            class_rows.append((p.patient_id, p.label))
    labels = pd.DataFrame(label_rows, columns=["patientId", "x", "y", "width", "height", "Target"])
    classes = pd.DataFrame(class_rows, columns=["patientId", "class"])
    submission = pd.DataFrame({"patientId": [p.patient_id for p in done if p.split == "test"],
                               "PredictionString": "0.5 0 0 100 100"})
    for frame, name in ((labels, LABELS_CSV), (classes, CLASS_CSV),
                        (submission, SUBMISSION_CSV)):
        atomic_write_text(root / name, frame.to_csv(index=False))
    return root
