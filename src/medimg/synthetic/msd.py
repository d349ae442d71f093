"""A small phantom segmentation data set in the nnU-Net v2 raw or the Decathlon layout.

Prostate-like pelvic MRI in two channels (``T2``, ``ADC``) with two labels, as in the
Decathlon's Task05: the **peripheral zone** (PZ, 1), a posterior crescent, and the
**transition zone** (TZ, 2), the gland's core. What the generic segmentation pipeline
(:mod:`medimg.tasks.segmentation`) must cope with on real data is built in:

- anisotropic voxels (about 0.6-0.8 mm in-plane, 2.5-3.6 mm between slices) that
  differ from case to case, so the plan has a median spacing to choose;
- orientations that differ between cases (RAS, LPS, LAS and PIR storage orders), so
  reading must reorient and a prediction must go back to each case's own grid;
- zones that overlap in intensity with the surrounding tissue on each channel alone
  (TZ is close to muscle on T2; PZ to fat-free tissue on ADC), smooth shading (a coil
  bias field), noise and a body of varying size, so one threshold does not segment it;
- in the Decathlon layout, 4-D files with both channels and the ``._<name>`` stray
  files that the Decathlon tarballs (packed on macOS) carry.

Written files::

    <root>/Dataset900_PhantomProstate/        (layout "nnunet")
        dataset.json  imagesTr/<case>_0000.nii.gz (T2), <case>_0001.nii.gz (ADC)
        labelsTr/<case>.nii.gz  imagesTs/<case>_000X.nii.gz
    <root>/Task900_PhantomProstate/           (layout "decathlon")
        dataset.json  imagesTr/<case>.nii.gz (x, y, z, 2)  labelsTr/<case>.nii.gz
        imagesTs/<case>.nii.gz  imagesTr/._<case>.nii.gz (stray AppleDouble files)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["LABELS", "ORIENTATIONS", "make_msd", "synthesize_case"]

#: Label values of the phantom (nnU-Net form: name -> value).
LABELS: dict[str, int] = {"background": 0, "PZ": 1, "TZ": 2}
#: Storage orientations cycled through the cases.
ORIENTATIONS: tuple[str, ...] = ("RAS", "LPS", "LAS", "PIR")
_CHANNELS = ("T2", "ADC")


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cells: int,
                  strength: float) -> np.ndarray:
    """Smooth random multiplicative field ``1 + strength * noise`` (coil shading)."""
    from scipy import ndimage

    coarse = rng.normal(size=tuple(max(2, cells) for _ in shape))
    zoom = [s / c for s, c in zip(shape, coarse.shape, strict=True)]
    field = ndimage.zoom(coarse, zoom, order=3, mode="nearest")[tuple(slice(0, s) for s in shape)]
    field /= max(1e-6, np.abs(field).max())
    return (1.0 + strength * field).astype(np.float32)


def synthesize_case(shape: Sequence[int] = (96, 96, 24), *, seed: int | np.random.SeedSequence = 0,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One phantom case in RAS+ voxel order.

    Parameters
    ----------
    shape : sequence of 3 int
        Typical grid ``(x, y, z)``; each case varies it by up to about 10%.
    seed : int or numpy.random.SeedSequence
        Randomness of this case.

    Returns
    -------
    image : numpy.ndarray
        ``(x, y, z, 2)`` float32, channels ``T2`` and ``ADC`` (arbitrary MR units,
        background air near 0).
    label : numpy.ndarray
        ``(x, y, z)`` uint8 in {0, 1 (PZ), 2 (TZ)}.
    affine : numpy.ndarray
        ``(4, 4)`` voxel-to-RAS+ mm (anisotropic spacing).
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = tuple(max(8, int(np.rint(s * rng.uniform(0.9, 1.1)))) for s in shape)
    spacing = np.array([rng.uniform(0.6, 0.8), 0.0, rng.uniform(2.5, 3.6)])
    spacing[1] = spacing[0]
    # world coordinates (mm) of voxel centres, origin at the grid centre
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    extent = np.array(shape) * spacing
    # body: an elliptic cylinder filling most of the field of view, tapering with z
    body_a = extent[0] * rng.uniform(0.38, 0.46)
    body_b = extent[1] * rng.uniform(0.30, 0.40)
    taper = 1.0 - 0.15 * (z / (extent[2] / 2)) ** 2
    body = (x / (body_a * taper)) ** 2 + (y / (body_b * taper)) ** 2 <= 1.0
    # gland: an ellipsoid near the centre (slightly anterior), irregular surface
    centre = np.array([rng.normal(0, 3), rng.normal(4, 3), rng.normal(0, 4)])
    radii = np.array([rng.uniform(16, 24), rng.uniform(12, 17), rng.uniform(14, 22)])
    radii[2] = min(radii[2], extent[2] * 0.38)
    wobble = ndimage.gaussian_filter(rng.normal(size=shape), sigma=(6, 6, 1.5))
    wobble /= max(1e-6, np.abs(wobble).max())
    r = np.sqrt(((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                + ((z - centre[2]) / radii[2]) ** 2)
    gland = (r + 0.12 * wobble) <= 1.0
    # transition zone: the anterior core; peripheral zone: the posterior crescent
    inner = rng.uniform(0.55, 0.72)
    tz = gland & ((r + 0.08 * wobble) <= inner) & (y > centre[1] - radii[1] * 0.35)
    pz = gland & ~tz & (y < centre[1] + radii[1] * 0.25)
    label = np.zeros(shape, np.uint8)
    label[pz] = 1
    label[tz] = 2
    # muscle bands (levator/obturator-like) lateral to the gland: T2-dark like the TZ
    muscle = body & ~gland & (np.abs(np.abs(x - centre[0]) - radii[0] * 1.45) < 5.0) \
        & (np.abs(y - centre[1]) < radii[1] * 1.3)
    fat = body & ~gland & ~muscle
    texture = ndimage.gaussian_filter(rng.normal(size=shape), sigma=(1.5, 1.5, 0.5))
    texture /= max(1e-6, texture.std())
    t2 = np.zeros(shape, np.float32)
    adc = np.zeros(shape, np.float32)
    tissue = {  # (T2 mean, ADC mean), each case's contrast varies
        "fat": (rng.uniform(380, 460), rng.uniform(500, 700)),
        "muscle": (rng.uniform(150, 200), rng.uniform(1150, 1350)),
        "pz": (rng.uniform(330, 420), rng.uniform(1500, 1800)),
        "tz": (rng.uniform(190, 250), rng.uniform(1050, 1250)),
    }
    for mask, key in ((fat, "fat"), (muscle, "muscle"), (pz, "pz"), (tz, "tz")):
        t2[mask] = tissue[key][0]
        adc[mask] = tissue[key][1]
    # blur the borders (partial volume), then texture, shading and noise
    t2 = ndimage.gaussian_filter(t2, sigma=(0.8, 0.8, 0.4))
    adc = ndimage.gaussian_filter(adc, sigma=(1.2, 1.2, 0.5))
    shading = _smooth_field(rng, shape, 3, 0.25)
    t2 = (t2 * (1 + 0.10 * texture)) * shading
    adc = adc * (1 + 0.08 * texture)
    t2 += rng.normal(0, 12, shape).astype(np.float32)
    adc += rng.normal(0, 60, shape).astype(np.float32)
    inside = ndimage.binary_dilation(body, iterations=1)
    t2 = np.where(inside, np.maximum(t2, 0), np.abs(rng.normal(0, 4, shape)))
    adc = np.where(inside, np.maximum(adc, 0), np.abs(rng.normal(0, 10, shape)))
    image = np.stack([t2, adc], axis=-1).astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * spacing + rng.normal(0, 5, 3)
    return image, label, affine


def _store(array: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels in the storage order ``axcodes`` (flips/permutations) and affine."""
    import nibabel as nib

    start = nib.orientations.io_orientation(affine)
    target = nib.orientations.axcodes2ornt(tuple(axcodes))
    transform = nib.orientations.ornt_transform(start, target)
    stored = nib.orientations.apply_orientation(array, transform)
    return (np.ascontiguousarray(stored),
            affine @ nib.orientations.inv_ornt_aff(transform, array.shape[:3]))


def _write(array: np.ndarray, affine: np.ndarray, path: Path, dtype) -> None:
    from ..io import Volume, write_nifti

    write_nifti(Volume(array.astype(dtype), affine), path)


def make_msd(root: str | os.PathLike, *, seed: int, layout: str = "nnunet", n_cases: int = 24,
             n_test: int = 2, shape: Sequence[int] = (96, 96, 24)) -> Path:
    """Write the phantom prostate data set in the nnU-Net v2 or the Decathlon layout.

    Parameters
    ----------
    root : path
        Output folder; the data set folder is created inside it.
    seed : int
        Randomness; case ``i`` depends only on ``(seed, i)``.
    layout : {"nnunet", "decathlon"}
        On-disk layout (see the module docstring).
    n_cases : int
        Labelled training cases.
    n_test : int
        Unlabelled cases (``imagesTs``).
    shape : sequence of 3 int
        Typical grid ``(x, y, z)`` in voxels.

    Returns
    -------
    pathlib.Path
        The data set folder (holding ``dataset.json``), which
        :func:`medimg.datasets.msd.find_cases` reads.
    """
    from .._fsutil import atomic_write_text
    from ..errors import ConfigError

    if layout not in ("nnunet", "decathlon"):
        raise ConfigError(f"layout must be 'nnunet' or 'decathlon', got {layout!r}")
    if int(n_cases) < 1:
        raise ConfigError(f"n_cases must be at least 1, got {n_cases}")
    name = "PhantomProstate"
    folder = Path(root) / (f"Dataset900_{name}" if layout == "nnunet" else f"Task900_{name}")
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    training, test = [], []
    total = int(n_cases) + int(n_test)
    for index in range(total):
        case = f"prostate_{index + 1:03d}"
        image, label, affine = synthesize_case(shape, seed=np.random.SeedSequence([seed, index]))
        axcodes = ORIENTATIONS[index % len(ORIENTATIONS)]
        stored_image, stored_affine = _store(image, affine, axcodes)
        stored_label, _ = _store(label, affine, axcodes)
        labelled = index < int(n_cases)
        images = folder / ("imagesTr" if labelled else "imagesTs")
        if layout == "nnunet":
            for c in range(len(_CHANNELS)):
                _write(stored_image[..., c], stored_affine, images / f"{case}_{c:04d}.nii.gz",
                       np.float32)
        else:
            _write(stored_image, stored_affine, images / f"{case}.nii.gz", np.float32)
            if index == 0:  # what macOS tar leaves beside real files in the Decathlon tarballs
                (images / f"._{case}.nii.gz").write_bytes(b"\x00\x05\x16\x07AppleDouble")
        if labelled:
            _write(stored_label, stored_affine, folder / "labelsTr" / f"{case}.nii.gz", np.uint8)
            training.append(case)
        else:
            test.append(case)
    if layout == "nnunet":
        description = {"name": name, "channel_names": dict(enumerate(_CHANNELS)),
                       "labels": LABELS, "numTraining": len(training),
                       "file_ending": ".nii.gz",
                       "description": "medimg phantom: prostate-like MRI, PZ and TZ"}
        description["channel_names"] = {str(k): v for k, v in description["channel_names"].items()}
    else:
        description = {
            "name": name, "description": "medimg phantom: prostate-like MRI, PZ and TZ",
            "tensorImageSize": "4D",
            "modality": {str(i): c for i, c in enumerate(_CHANNELS)},
            "labels": {str(v): k for k, v in LABELS.items()},
            "numTraining": len(training), "numTest": len(test),
            "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                         for c in training],
            "test": [f"./imagesTs/{c}.nii.gz" for c in test],
        }
    atomic_write_text(folder / "dataset.json", json.dumps(description, indent=2) + "\n")
    return folder
