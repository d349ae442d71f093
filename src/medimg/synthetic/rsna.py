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

Each image is a chest phantom (body outline, lungs with vessel texture and a domed
diaphragm, heart, mediastinum, spine, ribs, clavicles; scapulae on AP views) drawn at
low resolution, upscaled, then given full-resolution grain. "Lung Opacity" patients
carry 1-4 textured consolidations inside the lungs exactly where their boxes are;
"No Lung Opacity / Not Normal" patients carry another finding (pleural effusion,
tubes and wires, an enlarged heart, small nodules); AP views carry opacities more
often, as in the real set (roughly three quarters of opacity patients are AP there).

The task is learnable but not trivial at the default ``opacity_contrast``: on the demo
profile (300 patients, seed 42) a logistic regression on 32-px thumbnails reaches a
held-out AUC of about 0.97 and a four-block CNN trained from scratch at 128 px
(Flatten head, class weights, 30 epochs, about 40 s on 2 CPU cores) about 0.99; a
global-average-pooling + batch-norm variant of that CNN learned far less reliably
(0.57-0.74) on so few images. Lower ``opacity_contrast`` for a harder task.
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
#: Peak opacity density range. At (0.2, 0.32) a small CNN trained from scratch on 225
#: demo images at 128 px reaches a held-out AUC of about 0.99 (a Flatten head; 30
#: epochs); at (0.12, 0.22) the same network reaches about 0.75.
OPACITY_CONTRAST = (0.2, 0.32)
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


def _lung_geometry(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Random anatomy of one patient at an ``n x n`` drawing resolution."""
    cx = n * (0.5 + rng.uniform(-0.03, 0.03))
    lung_w = n * rng.uniform(0.15, 0.18)
    lung_h = n * rng.uniform(0.29, 0.34)
    lung_cy = n * rng.uniform(0.44, 0.49)
    gap = n * rng.uniform(0.16, 0.19)
    lungs = []
    for side in (-1, 1):  # image left (patient's right), image right (patient's left)
        lungs.append({
            "center": (cx + side * gap, lung_cy + rng.uniform(-0.01, 0.01) * n),
            "axes": (lung_w * rng.uniform(0.95, 1.05), lung_h * rng.uniform(0.95, 1.05)),
            "angle": side * rng.uniform(-6, 2),
            "dome_y": lung_cy + lung_h * rng.uniform(0.55, 0.7),
        })
    return {"cx": cx, "lungs": lungs, "body_w": n * rng.uniform(0.40, 0.47),
            "heart_scale": rng.uniform(0.9, 1.1), "tilt": rng.uniform(-2.5, 2.5)}


def _lung_mask(geometry: dict[str, Any], n: int) -> list[np.ndarray]:
    import cv2

    masks = []
    for lung in geometry["lungs"]:
        mask = _ellipse_mask((n, n), lung["center"], lung["axes"], lung["angle"])
        # the diaphragm dome cuts the lung base
        cx = lung["center"][0]
        dome = _ellipse_mask((n, n), (cx, lung["dome_y"] + 0.1 * n), (0.2 * n, 0.12 * n))
        mask *= 1.0 - dome
        # the mediastinum cuts the medial edge
        mask[:, :] *= (np.abs(np.arange(n) - geometry["cx"]) > 0.06 * n)[None, :]
        masks.append(cv2.GaussianBlur(mask, (0, 0), 1.0))
    return masks


def _boxes_for(rng: np.random.Generator, masks: list[np.ndarray], n_boxes: int,
               n: int) -> list[tuple[float, float, float, float]]:
    """Boxes (x, y, width, height) at drawing resolution, inside the lungs."""
    sides = [0, 1] if n_boxes >= 2 else [int(rng.integers(2))]
    sides = (sides * 2)[:n_boxes] if n_boxes > 2 else sides
    boxes = []
    for i, side in enumerate(sides):
        ys, xs = np.nonzero(masks[side] > 0.5)
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        lw, lh = x1 - x0, y1 - y0
        w = lw * rng.uniform(0.5, 0.85)
        h = lh * rng.uniform(0.3, 0.55) if n_boxes > 2 else lh * rng.uniform(0.35, 0.7)
        # a second box in the same lung goes to the other half (upper/lower)
        band = (0.0, 1.0) if len(sides) <= 2 else ((0.0, 0.45) if i < 2 else (0.5, 1.0))
        top_low = y0 + band[0] * (lh - h) + 0.1 * lh
        top_high = y0 + band[1] * (lh - h)
        y = rng.uniform(min(top_low, top_high), max(top_low, top_high))
        x = rng.uniform(x0, max(x0 + 1, x1 - w))
        boxes.append((float(x), float(y), float(w), float(h)))
    return boxes


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
        Everything about the image (anatomy, findings, noise) follows from it.
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
        Range of an opacity's peak density, in units where air-filled lung is
        about 0.15 and soft tissue 0.5 (before exposure); lower is subtler.

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
    geometry = _lung_geometry(rng, n)
    cx = geometry["cx"]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)

    # body: soft tissue, thicker (brighter) towards the edges and the abdomen
    body = _ellipse_mask((n, n), (cx, 0.62 * n), (geometry["body_w"], 0.66 * n))
    shoulders = _ellipse_mask((n, n), (cx, 0.14 * n), (geometry["body_w"] * 1.08, 0.14 * n))
    body = np.maximum(body, shoulders)
    body = cv2.GaussianBlur(body, (0, 0), 2.0)
    image = 0.04 + body * (0.42 + 0.08 * (yy / n))

    masks = _lung_mask(geometry, n)
    lungs = np.clip(masks[0] + masks[1], 0, 1)
    vessels = 0.5 + 0.5 * _smooth_noise(rng, (n, n), 1.2)
    # lungs are dark (air); vessel markings fade towards the periphery
    hilum = np.exp(-(((xx - cx) / (0.22 * n)) ** 2 + ((yy - 0.45 * n) / (0.3 * n)) ** 2))
    image -= lungs * (0.28 - 0.05 * vessels * (0.3 + hilum))

    # mediastinum and heart (patient's left = image right)
    mediastinum = _ellipse_mask((n, n), (cx, 0.38 * n), (0.055 * n, 0.28 * n))
    heart_scale = geometry["heart_scale"] * (1.12 if view == "AP" else 1.0)
    if label == "No Lung Opacity / Not Normal" and findings_rng.random() < 0.35:
        heart_scale *= 1.3  # cardiomegaly
    heart = _ellipse_mask((n, n), (cx + 0.05 * n * heart_scale, 0.62 * n),
                          (0.14 * n * heart_scale, 0.11 * n * heart_scale), -15)
    solid = cv2.GaussianBlur(np.maximum(mediastinum, heart), (0, 0), 2.0)
    image = image * (1 - solid) + solid * 0.58
    visible_lungs = lungs * (1 - solid)  # findings behind the heart do not show

    # spine with disc spaces, ribs, clavicles
    bones = np.zeros((n, n), np.float32)
    spine = ((np.abs(xx - cx) < 0.032 * n) & (yy > 0.05 * n)).astype(np.float32)
    discs = (np.sin(2 * np.pi * yy / (0.05 * n)) > -0.85).astype(np.float32)
    bones += cv2.GaussianBlur(spine * (0.05 * discs + 0.04), (0, 0), 1.2)
    for side in (-1, 1):
        lung = geometry["lungs"][0 if side < 0 else 1]
        top = lung["center"][1] - lung["axes"][1] * 0.95
        for k in range(9):
            y = top + k * lung["axes"][1] * 0.2
            center = (round(cx + side * 0.02 * n), round(y - 0.02 * n))
            axes = (round(lung["axes"][0] * 2.2), round(0.07 * n + k * 0.004 * n))
            start, end = (180, 250) if side < 0 else (290, 360)
            cv2.ellipse(bones, center, axes, 0, start, end, 0.09, max(1, n // 110))
            cv2.ellipse(bones, (center[0], center[1] + round(0.03 * n)), axes, 0,
                        180 - end, 180 - start, 0.05, max(1, n // 128))
        clavicle_end = (round(cx + side * 0.26 * n), round(0.11 * n))
        cv2.line(bones, (round(cx + side * 0.03 * n), round(0.17 * n)), clavicle_end, 0.16,
                 max(2, n // 64))
        if view == "AP":  # scapulae project over the lateral lungs on AP films
            scapula = np.array([[cx + side * 0.26 * n, 0.14 * n], [cx + side * 0.38 * n, 0.16 * n],
                                [cx + side * 0.33 * n, 0.42 * n]], np.int32)
            cv2.fillConvexPoly(bones, scapula, 0.06)
    image += cv2.GaussianBlur(bones, (0, 0), 0.8) * body

    boxes: list[tuple[float, float, float, float]] = []
    if label == "Lung Opacity":
        boxes = _boxes_for(findings_rng, masks, max(1, n_boxes), n)
        opacity = np.zeros((n, n), np.float32)
        for x, y, w, h in boxes:
            # an irregular consolidation: a few overlapping lobules filling the box
            blob = np.zeros((n, n), np.float32)
            for _ in range(int(findings_rng.integers(2, 5))):
                cx_b = x + w * findings_rng.uniform(0.3, 0.7)
                cy_b = y + h * findings_rng.uniform(0.3, 0.7)
                axes = (w * findings_rng.uniform(0.22, 0.38), h * findings_rng.uniform(0.22, 0.38))
                blob = np.maximum(blob, _ellipse_mask((n, n), (cx_b, cy_b), axes,
                                                      findings_rng.uniform(0, 180)))
            blob = cv2.GaussianBlur(blob, (0, 0), max(1.0, min(w, h) / 9))
            # mottled density with darker air bronchograms
            texture = np.clip(0.8 + 0.3 * _smooth_noise(findings_rng, (n, n), 2.5), 0.4, 1.3)
            opacity = np.maximum(opacity, blob * texture * findings_rng.uniform(*opacity_contrast))
        image += opacity * cv2.GaussianBlur(visible_lungs, (0, 0), 1.5)
    elif label == "No Lung Opacity / Not Normal":
        findings = findings_rng.choice(["effusion", "tubes", "nodules"],
                                       size=findings_rng.integers(1, 3),
                              replace=False)
        if "effusion" in findings:
            lung = geometry["lungs"][int(findings_rng.integers(2))]
            level = lung["dome_y"] - lung["axes"][1] * findings_rng.uniform(0.15, 0.35)
            # a meniscus: fluid climbs higher laterally
            meniscus = level - 0.25 * np.abs(xx - lung["center"][0]) * (
                np.sign(xx - cx) == np.sign(lung["center"][0] - cx))
            fluid = cv2.GaussianBlur((yy > meniscus).astype(np.float32), (0, 0), 2.5)
            image += fluid * visible_lungs * 0.22
        if "tubes" in findings:
            _draw_tubes(image, findings_rng, cx, n)
        if "nodules" in findings:
            for _ in range(int(findings_rng.integers(1, 4))):
                lung = geometry["lungs"][int(findings_rng.integers(2))]
                c = (lung["center"][0] + findings_rng.uniform(-0.5, 0.5) * lung["axes"][0],
                     lung["center"][1] + findings_rng.uniform(-0.5, 0.5) * lung["axes"][1])
                nodule = _ellipse_mask((n, n), c, (0.012 * n, 0.012 * n))
                image += cv2.GaussianBlur(nodule, (0, 0), 0.8) * 0.2
    if label == "Lung Opacity" and findings_rng.random() < 0.25:
        _draw_tubes(image, findings_rng, cx, n)

    # acquisition: exposure, contrast, blur (AP portable films are softer), rotation
    gamma = exposure_rng.uniform(0.8, 1.25)
    image = np.clip(image, 0, 1) ** gamma
    image = image * exposure_rng.uniform(0.85, 1.1) + exposure_rng.uniform(-0.03, 0.05)
    rotation = cv2.getRotationMatrix2D((n / 2, n / 2), geometry["tilt"], 1.0)
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


def _draw_tubes(image: np.ndarray, rng: np.random.Generator, cx: float, n: int) -> None:
    """Endotracheal tube, a central line and ECG leads (thin, very bright)."""
    import cv2

    layer = np.zeros_like(image)
    width = max(1, n // 128)
    if rng.random() < 0.7:  # ET tube down the trachea
        tip = 0.28 * n + rng.uniform(-0.04, 0.04) * n
        cv2.line(layer, (round(cx + 0.005 * n), 0), (round(cx), round(tip)), 0.5, width + 1)
    if rng.random() < 0.6:  # central line from the neck into the mediastinum
        side = rng.choice([-1, 1])
        pts = np.array([[cx + side * 0.22 * n, 0.05 * n], [cx + side * 0.12 * n, 0.16 * n],
                        [cx + side * 0.03 * n, 0.3 * n], [cx + 0.02 * n, 0.42 * n]], np.int32)
        cv2.polylines(layer, [pts], False, 0.45, width)
    for _ in range(int(rng.integers(2, 5))):  # ECG electrodes with their wires
        c = (round(cx + rng.uniform(-0.35, 0.35) * n), round(rng.uniform(0.1, 0.8) * n))
        cv2.circle(layer, c, max(2, n // 60), 0.55, -1)
        end = (round(c[0] + rng.uniform(-0.3, 0.3) * n), n - 1)
        cv2.line(layer, c, end, 0.3, width)
    image += cv2.GaussianBlur(layer, (0, 0), 0.6)


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
