"""BraTS-like brain MRI phantoms written in the BraTS 2020 layout.

Anatomy comes from the MNI152 templates that nilearn ships inside its wheel (no
download): the grey-matter, white-matter and brain-mask probability maps are warped
by a random affine (size, aspect, a tilt, a shift) into the target grid, so every
subject's brain is different. Tissue contrasts per sequence follow MRI physics (CSF
dark on T1 and FLAIR, bright on T2; white matter brighter than grey on T1).

Each subject has one glioma, "HGG" (three in four, as in BraTS 2020) or "LGG":

* shape: the whole tumour is a lobulated blob (distance to a seed scaled by smooth
  noise, thresholded) that spreads further along white matter; the core is a second
  such blob inside it; borders fade over 1-3 mm, and the label is where the
  compartment's fraction passes one half, so the edge is not a step;
* compartments vary per subject: high-grade cores have an enhancing rim of varying
  thickness and completeness (some with little enhancing tumour) around necrosis of
  varying size; low-grade cores are mostly non-enhancing, some with a small enhancing
  focus or a cyst; the oedema around the core ranges from a thin rim to a wide halo;
* contrasts: oedema bright on FLAIR and T2, enhancing tumour bright on T1ce, necrosis
  dark on T1ce and bright on T2, non-enhancing tumour dark on T1; how far each
  compartment stands out from white matter varies per subject (70-115 % of the
  nominal difference), so tumour and normal intensities overlap;
* mass effect: the anatomy around the tumour is pushed aside (a volume-preserving
  radial displacement that falls off as 1/r^2: the ventricles and midline bend);
* look-alikes without a label: white-matter hyperintensities and a patchy
  periventricular band (bright on FLAIR/T2 like oedema: a FLAIR threshold takes them
  for tumour) and enhancing vessels (bright on T1ce like enhancing tumour).

Each sequence is multiplied by its own smooth bias field (a random low-order
polynomial in log space, up to about +-30 %) and gets Rician noise, so N4 has
something to correct. The skull is stripped, as in BraTS: the background is exactly 0.

Files are int16 at 1 mm, stored like the real BraTS files (LPS voxel order, affine
``diag(-1, -1, 1)``) so readers must reorient; :func:`synthesize_subject` returns the
same data in memory, with the true bias fields and tissue map, for benchmarks.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._fields import trilinear_noise

__all__ = ["CONTRASTS", "SyntheticSubject", "make_brats", "synthesize_subject"]

SEQUENCES = ("flair", "t1", "t1ce", "t2")
_TUMOUR_CLASSES = ("oedema", "non_enhancing", "necrosis", "enhancing")
#: Mean intensity of each tissue class per sequence (arbitrary MR units, before the
#: per-subject gain, conspicuity, bias field and noise). Oedema is bright on FLAIR and
#: T2 (above grey matter), enhancing tumour bright on T1ce, necrosis dark on T1ce and
#: bright on T2, non-enhancing tumour dark on T1 and bright on T2 (in some subjects
#: darker on FLAIR: the "T2-FLAIR mismatch" of many low-grade gliomas); ``white_lesion``
#: (unlabelled white-matter hyperintensities) mimics oedema and ``vessel`` (unlabelled
#: enhancing vessels, flow voids on T2) mimics enhancing tumour.
CONTRASTS: dict[str, dict[str, float]] = {
    "flair": {"csf": 150, "gm": 800, "wm": 620, "oedema": 1200, "non_enhancing": 1150,
              "necrosis": 700, "enhancing": 1000, "white_lesion": 1150, "vessel": 300},
    "t1": {"csf": 250, "gm": 650, "wm": 950, "oedema": 640, "non_enhancing": 560,
           "necrosis": 320, "enhancing": 720, "white_lesion": 800, "vessel": 400},
    "t1ce": {"csf": 300, "gm": 700, "wm": 1000, "oedema": 700, "non_enhancing": 600,
             "necrosis": 340, "enhancing": 1700, "white_lesion": 850, "vessel": 1600},
    "t2": {"csf": 1900, "gm": 1050, "wm": 750, "oedema": 1550, "non_enhancing": 1650,
           "necrosis": 1750, "enhancing": 1150, "white_lesion": 1350, "vessel": 300},
}
#: range of the oedema's per-subject conspicuity (share of its nominal FLAIR/T2 contrast)
_OEDEMA_CONSPICUITY = (0.7, 1.15)
_NAME_MAPPING_COLUMNS = ("Grade", "BraTS_2017_subject_ID", "BraTS_2018_subject_ID",
                         "TCGA_TCIA_subject_ID", "BraTS_2019_subject_ID",
                         "BraTS_2020_subject_ID")


@dataclass
class SyntheticSubject:
    """One synthetic subject in memory, canonical RAS+ voxel order ``(x, y, z)``.

    Attributes
    ----------
    images : dict of str to numpy.ndarray
        ``flair, t1, t1ce, t2``: int16, what is written to disk.
    label : numpy.ndarray
        uint8 BraTS labels {0, 1, 2, 4}.
    bias_fields : dict of str to numpy.ndarray
        float32 true multiplicative field of each sequence (1 = no bias).
    tissue : numpy.ndarray
        uint8: 0 background, 1 CSF, 2 grey matter, 3 white matter, 4 tumour.
    affine : numpy.ndarray
        (4, 4) voxel-to-RAS+ mm of these arrays (1 mm voxels).
    grade : str
        ``HGG`` or ``LGG`` (either may have little or some enhancing tumour).
    meta : dict
        Tumour facts: ``centre`` (voxels), ``oedema_radius_mm``, ``core_radius_mm``,
        ``mass_effect_mm`` and ``voxels`` (count per label 1, 2, 4).
    """

    images: dict[str, np.ndarray]
    label: np.ndarray
    bias_fields: dict[str, np.ndarray]
    tissue: np.ndarray
    affine: np.ndarray
    grade: str
    meta: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def _templates() -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """MNI152 (gm, wm, brain) probabilities stacked (3, x, y, z) and the brain's bounding box."""
    from nilearn import datasets

    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=1).dataobj, dtype=np.float32)
    if gm.max() > 1.5:  # some nilearn versions ship uint8 0-255 maps
        gm, wm = gm / 255.0, wm / 255.0
    # The template brain mask is generous at the edges; tissue probability counts too.
    brain = np.clip(np.maximum(brain * 0.999, gm + wm), 0.0, 1.0)
    hits = np.argwhere(brain > 0.5)
    low, high = hits.min(axis=0).astype(np.float64), hits.max(axis=0).astype(np.float64)
    return np.stack([gm, wm, brain]), (low, high)


def _rotation(rng: np.random.Generator, max_degrees: Sequence[float]) -> np.ndarray:
    """A small random rotation (about x, y and z, each up to ``max_degrees``)."""
    ax, ay, az = np.deg2rad(rng.uniform(-1, 1, 3) * np.asarray(max_degrees, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _warp_anatomy(shape: tuple[int, int, int], rng: np.random.Generator):
    """(gm, wm, brain) maps of a randomly placed, sized and tilted brain, and the warp.

    Output voxel ``o`` shows template voxel ``matrix @ o + offset``.
    """
    from scipy import ndimage

    maps, (low, high) = _templates()
    extent = high - low + 1
    # Fit the brain in the grid (BraTS brains fill most of the 155 axial slices).
    scale = rng.uniform(0.86, 0.94) * np.min(np.asarray(shape) / extent)
    zoom = scale * rng.uniform(0.95, 1.05, 3)
    rotation = _rotation(rng, (6.0, 4.0, 8.0))
    out_centre = (np.asarray(shape) - 1) / 2 + rng.uniform(-0.03, 0.03, 3) * np.asarray(shape)
    template_centre = (low + high) / 2
    matrix = rotation.T / zoom[:, None]
    offset = template_centre - matrix @ out_centre
    warped = [ndimage.affine_transform(m, matrix, offset=offset, output_shape=shape, order=1,
                                       mode="constant", cval=0.0, output=np.float32)
              for m in maps]
    return warped, matrix, offset


def _tissue_fractions(gm, wm, brain):
    """(csf, gm, wm, brain) fractions that sum to the brain fraction."""
    brain = np.clip(brain, 0.0, 1.0)
    gm = np.minimum(gm, brain)
    wm = np.minimum(wm, brain - gm)
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    return csf, gm, wm, brain


def _smooth_fields(rng: np.random.Generator, shape: tuple[int, ...],
                   cells: Sequence[float]) -> list[np.ndarray]:
    """Smooth random fields in about [-1, 1] (unit standard deviation before ``tanh``).

    White noise on a coarse grid (one value per ``cell`` voxels) interpolated
    trilinearly to ``shape`` (:func:`~medimg.synthetic._fields.trilinear_noise`), the
    fine grid shifted by a random fraction of a cell.
    """
    fields = []
    for cell in cells:
        coarse_shape = [int(np.ceil(n / cell)) + 3 for n in shape]
        field = trilinear_noise(rng, shape, coarse_shape, [1.0 / cell] * 3, random_offset=True)
        fields.append(np.tanh(field / np.float32(0.54)))  # trilinear averaging: std 0.54
    return fields


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 + 0.5 * np.tanh(0.5 * x)).astype(np.float32)


def _tumour(rng: np.random.Generator, shape: tuple[int, int, int], wm: np.ndarray,
            brain: np.ndarray, scale_mm: float) -> dict:
    """Where the tumour grows and how big it is: grade, centre, radii, mass effect (mm)."""
    grade = "HGG" if rng.random() < 0.75 else "LGG"  # BraTS 2020: 293 HGG, 76 LGG
    inner = wm > 0.6
    candidates = np.argwhere(inner[::3, ::3, ::3]) * 3
    if candidates.size == 0:
        candidates = np.argwhere(brain > 0.5)
    centre = candidates[rng.integers(len(candidates))].astype(np.float64)
    oedema_radius = scale_mm * rng.uniform(0.12, 0.2)
    ratio = rng.uniform(1.3, 2.2) if grade == "HGG" else rng.uniform(1.05, 1.5)
    core_radius = oedema_radius / ratio
    return {
        "grade": grade, "centre": centre, "oedema_radius": oedema_radius,
        "core_radius": core_radius,
        # volume pushed aside, in units of the core's volume: the mass effect
        "mass": rng.uniform(0.3, 1.0) * (1.0 if grade == "HGG" else 0.6),
    }


def _box(centre: np.ndarray, half: float, shape: tuple[int, int, int]):
    low = np.maximum(np.floor(centre - half).astype(int), 0)
    high = np.minimum(np.ceil(centre + half).astype(int) + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def _mass_effect(plan: dict, shape, maps, matrix, offset, warped) -> float:
    """Push the anatomy away from the tumour centre (in place); the largest shift in mm.

    A ball of ``mass * core volume`` is inserted at the centre: an output voxel at
    distance ``r`` shows the template point at ``cbrt(r**3 - mass * R**3)``, a
    volume-preserving displacement that falls off as ``1 / r**2`` (the ventricles and
    the midline bend away from a large tumour; distant anatomy stays put).
    """
    from scipy import ndimage

    centre, radius = plan["centre"], plan["core_radius"]
    inserted = plan["mass"] * radius ** 3
    box = _box(centre, 2.2 * plan["oedema_radius"], shape)
    grid = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float32) for s in box],
                       indexing="ij")
    d = [g - np.float32(c) for g, c in zip(grid, centre, strict=True)]
    r = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) + np.float32(1e-3)
    factor = np.cbrt(np.maximum(r ** 3 - np.float32(inserted), 0.0)) / r
    source = [np.float32(c) + di * factor for di, c in zip(d, centre, strict=True)]
    coordinates = np.einsum("ij,j...->i...", matrix.astype(np.float32), np.stack(source))
    coordinates += offset.astype(np.float32)[:, None, None, None]
    for template, out in zip(maps, warped, strict=True):
        out[box] = ndimage.map_coordinates(template, coordinates, order=1, mode="constant",
                                           cval=0.0, output=np.float32)
    return float(np.cbrt(inserted)) if inserted > 0 else 0.0


def _tumour_regions(plan: dict, shape, wm, brain, rng) -> dict:
    """Soft fractions of each tumour compartment and the hard BraTS label, on a sub-box.

    The whole tumour is an irregular, lobulated blob (a distance to the centre scaled
    by smooth noise, thresholded) that spreads further along white matter; the core
    is another such blob inside it. Enhancing tumour is a rim of varying thickness
    and completeness around necrosis (HGG), or a small focus in some LGG. Borders are
    soft: the fractions fall off over 1-3 mm, and the label is where they pass 1/2.
    """
    centre, r_e, r_c = plan["centre"], plan["oedema_radius"], plan["core_radius"]
    box = _box(centre, 1.8 * r_e, shape)
    sub_shape = tuple(s.stop - s.start for s in box)
    grid = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float32) for s in box],
                       indexing="ij")
    p = np.stack([g - np.float32(c) for g, c in zip(grid, centre, strict=True)], axis=-1)
    n_oedema, n_core, n_rim, n_patch, n_texture = _smooth_fields(
        rng, sub_shape, (max(4.0, 0.5 * r_e), max(3.0, 0.45 * r_c), 4.0, 5.0, 3.0))

    def distance(radius: float, noise: np.ndarray, roughness: float, shift=None):
        axes = (radius * rng.uniform(0.8, 1.2, 3)).astype(np.float32)
        q = p if shift is None else p - shift.astype(np.float32)
        q = q @ _rotation(rng, (40, 40, 40)).astype(np.float32)
        return np.sqrt(((q / axes) ** 2).sum(axis=-1)) * (1.0 + roughness * noise)

    wm_box, brain_box = wm[box], brain[box]
    spread = rng.uniform(0.15, 0.35)  # oedema follows white matter
    d_oedema = distance(r_e, n_oedema, rng.uniform(0.15, 0.35)) / (
        1.0 + spread * (wm_box - 0.5))
    shift = rng.normal(0.0, 0.15 * (r_e - r_c), 3)
    d_core = distance(r_c, n_core, rng.uniform(0.1, 0.3), shift)
    width_oedema = rng.uniform(0.8, 2.0)  # mm over which the border fades
    width_core = rng.uniform(0.7, 1.5)
    w_core = _sigmoid((1.0 - d_core) * (r_c / width_core)) * brain_box
    w_whole = np.maximum(_sigmoid((1.0 - d_oedema) * (r_e / width_oedema)) * brain_box,
                         w_core)
    in_brain = brain_box > 0.5
    core = (w_core >= 0.5) & in_brain
    whole = ((w_whole >= 0.5) & in_brain) | core

    # inside the core: enhancing rim (HGG), necrosis, non-enhancing tumour
    if plan["grade"] == "HGG":
        thickness = rng.uniform(0.15, 0.6) * (1.0 + 0.4 * n_rim)  # of the core radius
        rim = _sigmoid((d_core - (1.0 - thickness)) * (r_c / 1.0))
        coverage = rng.uniform(-0.9, 0.9)  # high: a patchy, incomplete rim (little ET)
        enhancing = _sigmoid((n_patch - coverage) / 0.15)
        f_enh, f_net, f_nec = rim * enhancing, rim * (1.0 - enhancing), 1.0 - rim
    else:
        f_enh = np.zeros(sub_shape, np.float32)
        if rng.random() < 0.35:  # a small enhancing focus
            focus = centre + shift + rng.normal(0.0, 0.4 * r_c, 3)
            radius = rng.uniform(2.0, 5.0)
            dist = np.sqrt(((p - (focus - centre).astype(np.float32)) ** 2).sum(axis=-1))
            f_enh = _sigmoid((radius - dist) / 0.7)
        cyst = _sigmoid((0.45 - d_core) * (r_c / 1.5)) * (rng.random() < 0.3)
        f_nec = cyst * (1.0 - f_enh)
        f_net = 1.0 - f_enh - f_nec
    label = np.zeros(sub_shape, np.uint8)
    label[whole] = 2
    enhancing_label = core & (f_enh >= 0.5)
    label[core] = 1
    label[enhancing_label] = 4
    return {
        "box": box, "label": label, "whole": w_whole, "core": w_core,
        "enhancing": f_enh.astype(np.float32), "non_enhancing": f_net.astype(np.float32),
        "necrosis": f_nec.astype(np.float32),
        "texture": (1.0 + 0.1 * n_texture).astype(np.float32),
    }


def _lesions(rng, shape, wm, csf, brain, n_white: int, n_vessels: int):
    """Unlabelled look-alikes: white-matter hyperintensities and enhancing vessels.

    Returns flat voxel indices and weights of each (small vascular lesions, bright on
    FLAIR and T2 like oedema; vessels near the surface, bright on T1ce like enhancing
    tumour), so that intensity alone does not find the tumour.
    """
    out = {"white": ([], []), "vessel": ([], [])}
    candidates = np.argwhere(wm[::4, ::4, ::4] > 0.7) * 4
    for _ in range(n_white if len(candidates) else 0):
        centre = candidates[rng.integers(len(candidates))] + rng.uniform(0, 4, 3)
        radius = rng.uniform(2.0, 6.0)
        box = _box(centre, 1.6 * radius, shape)
        grid = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float32) for s in box],
                           indexing="ij")
        axes = radius * rng.uniform(0.6, 1.4, 3)
        d = np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes, strict=True)))
        weight = _sigmoid((1.0 - d) * radius / 1.0) * wm[box] * rng.uniform(0.3, 0.6)
        index = np.ravel_multi_index([g.astype(np.intp).ravel() for g in grid], shape)
        keep = weight.ravel() > 0.02
        out["white"][0].append(index[keep])
        out["white"][1].append(weight.ravel()[keep])
    surface = np.argwhere((csf[::3, ::3, ::3] > 0.4) & (brain[::3, ::3, ::3] > 0.5)) * 3
    for _ in range(n_vessels if len(surface) else 0):
        point = surface[rng.integers(len(surface))].astype(np.float64)
        direction = rng.normal(size=3)
        radius = rng.uniform(0.6, 1.1)
        for _step in range(int(rng.integers(8, 25))):
            direction = direction / np.linalg.norm(direction) + rng.normal(0.0, 0.35, 3)
            point = point + 1.5 * direction / np.linalg.norm(direction)
            box = _box(point, radius + 1.5, shape)
            if any(s.stop <= s.start for s in box):
                break
            grid = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float32) for s in box],
                               indexing="ij")
            d = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, point, strict=True)))
            weight = _sigmoid((radius - d) / 0.5) * (brain[box] > 0.5)
            index = np.ravel_multi_index([g.astype(np.intp).ravel() for g in grid], shape)
            keep = weight.ravel() > 0.02
            out["vessel"][0].append(index[keep])
            out["vessel"][1].append(weight.ravel()[keep])
    out["cap"] = _periventricular_caps(rng, shape, wm, csf, brain)
    merged = {}
    for key, (indices, weights) in out.items():
        if indices:
            index = np.concatenate(indices)
            weight = np.concatenate(weights).astype(np.float32)
            # overlapping stamps: keep the strongest weight per voxel
            order = np.lexsort((-weight, index))
            index, weight = index[order], weight[order]
            first = np.r_[True, index[1:] != index[:-1]]
            merged[key] = (index[first], weight[first])
        else:
            merged[key] = (np.zeros(0, np.intp), np.zeros(0, np.float32))
    return merged


def _periventricular_caps(rng, shape, wm, csf, brain) -> tuple[list, list]:
    """Unlabelled periventricular hyperintensity: a band of white matter along the
    ventricles, 2-5 mm thick, its strength varying smoothly along it (real caps are
    strongest at the horns), bright on FLAIR and T2 like oedema. Common in glioma patients' scans (age, small
    vessel disease, transependymal flow) and, like the caps annotators leave out of the
    tumour, outside every label. Returns ``([flat indices], [weights])``."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(brain > 0.5)  # mm from the brain's edge
    ventricles = (csf > 0.5) & (depth > 12.0)
    if not ventricles.any():
        return [], []
    distance = ndimage.distance_transform_edt(~ventricles).astype(np.float32)
    thickness = rng.uniform(2.0, 5.0)
    (patches,) = _smooth_fields(rng, shape, [14.0])
    strength = rng.uniform(0.7, 1.0) * np.clip(0.6 + 0.6 * patches, 0.0, 1.0)
    weight = (_sigmoid((thickness - distance) / 0.7) * (distance > 0) * (wm > 0.3)
              * strength).ravel()
    index = np.flatnonzero(weight > 0.02)
    return [index], [weight[index]]


def _bias_field(shape, rng, strength: float) -> np.ndarray:
    """exp(random quadratic polynomial) over normalised coordinates, mean 1 over the grid."""
    coords = [np.linspace(-1.0, 1.0, s, dtype=np.float32) for s in shape]
    u = coords[0][:, None, None]
    v = coords[1][None, :, None]
    w = coords[2][None, None, :]
    c = rng.normal(0.0, 1.0, 9).astype(np.float32)
    log_field = (c[0] * u + c[1] * v + c[2] * w
                 + 0.5 * (c[3] * u * v + c[4] * v * w + c[5] * u * w)
                 + 0.5 * (c[6] * (u * u - 1 / 3) + c[7] * (v * v - 1 / 3) + c[8] * (w * w - 1 / 3)))
    log_field *= np.float32(strength / max(float(log_field.std()), 1e-6))
    log_field -= np.float32(log_field.mean())
    return np.exp(log_field, dtype=np.float32)


def synthesize_subject(shape: Sequence[int] = (240, 240, 155), *, seed=None,
                       bias_strength: float = 0.15, noise: float = 0.025) -> SyntheticSubject:
    """Generate one BraTS-like subject in memory (see the module docstring).

    Parameters
    ----------
    shape : sequence of 3 int
        Grid ``(x, y, z)`` at 1 mm.
    seed : int, sequence of int or numpy.random.SeedSequence, optional
        Randomness; the same seed gives the same subject.
    bias_strength : float
        Standard deviation of the log bias field over the grid (0.15: the field
        spans roughly 0.7 to 1.4).
    noise : float
        Noise standard deviation relative to the white-matter intensity.

    Returns
    -------
    SyntheticSubject
        ``meta`` holds the tumour's ``centre`` (voxels), ``oedema_radius_mm``,
        ``core_radius_mm``, ``mass_effect_mm`` (radius of the volume pushed aside)
        and the voxel counts of each label.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3 sizes of at least 8 voxels, got {shape}")
    maps, (low, high) = _templates()
    (gm, wm, brain), matrix, offset = _warp_anatomy(shape, rng)
    scale_mm = float(np.mean((high - low) * np.min(np.asarray(shape) / (high - low + 1))))
    plan = _tumour(rng, shape, wm, brain, scale_mm)
    mass_effect_mm = _mass_effect(plan, shape, maps, matrix, offset, (gm, wm, brain))
    csf, gm, wm, brain = _tissue_fractions(gm, wm, brain)
    regions = _tumour_regions(plan, shape, wm, brain, rng)
    box = regions["box"]
    label = np.zeros(shape, dtype=np.uint8)
    label[box] = regions["label"]
    hard_brain = brain > 0.5
    tissue = np.zeros(shape, dtype=np.uint8)
    classes = np.argmax(np.stack([csf, gm, wm]), axis=0).astype(np.uint8) + 1
    tissue[hard_brain] = classes[hard_brain]
    tissue[label > 0] = 4
    lesions = _lesions(rng, shape, wm, csf, brain, n_white=int(rng.integers(0, 4)),
                       n_vessels=int(rng.integers(1, 5)))

    # per subject: how conspicuous each tumour compartment is (overlap with normal tissue)
    conspicuity = {name: rng.uniform(0.7, 1.15) for name in _TUMOUR_CLASSES}
    conspicuity["oedema"] = rng.uniform(*_OEDEMA_CONSPICUITY)
    # some non-enhancing tumours are much darker on FLAIR than on T2 ("T2-FLAIR mismatch")
    mismatch = 0.85 if rng.random() < 0.3 else 1.0
    images, fields = {}, {}
    for name in SEQUENCES:
        means = {k: v * rng.uniform(0.93, 1.07) for k, v in CONTRASTS[name].items()}
        if name == "flair":
            means["non_enhancing"] *= mismatch
        for key in _TUMOUR_CLASSES:  # pulled towards white matter when inconspicuous
            means[key] = means["wm"] + conspicuity[key] * (means[key] - means["wm"])
        gain = rng.uniform(0.8, 1.25)
        healthy = csf * means["csf"] + gm * means["gm"] + wm * means["wm"]
        flat = healthy.reshape(-1)
        for key, target in (("white", "white_lesion"), ("cap", "white_lesion"),
                            ("vessel", "vessel")):
            index, weight = lesions[key]
            flat[index] = (1 - weight) * flat[index] + weight * means[target]
        sub = healthy[box]
        core = (regions["enhancing"] * means["enhancing"]
                + regions["non_enhancing"] * means["non_enhancing"]
                + regions["necrosis"] * means["necrosis"])
        oedema_part = regions["whole"] - regions["core"]
        lesion = (oedema_part * means["oedema"] + regions["core"] * core) * regions["texture"]
        healthy[box] = (1 - regions["whole"]) * sub + lesion
        bias = _bias_field(shape, rng, bias_strength)
        signal = healthy * (gain * bias)
        sigma = np.float32(noise * means["wm"] * gain)
        real = signal + sigma * rng.standard_normal(shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(shape, dtype=np.float32)
        magnitude = np.sqrt(real * real + imag * imag)  # Rician, as MR magnitude images
        magnitude[~hard_brain] = 0.0
        images[name] = np.clip(np.rint(magnitude), 0, 32767).astype(np.int16)
        fields[name] = bias
    # Canonical RAS+ affine whose LPS-stored twin is BraTS's diag(-1, -1, 1) at (0, 239, 0).
    affine = np.array([[1.0, 0, 0, -(shape[0] - 1)], [0, 1.0, 0, 0], [0, 0, 1.0, 0],
                       [0, 0, 0, 1.0]])
    counts = np.bincount(label.ravel(), minlength=5)
    meta = {"centre": plan["centre"].tolist(), "oedema_radius_mm": plan["oedema_radius"],
            "core_radius_mm": plan["core_radius"], "mass_effect_mm": mass_effect_mm,
            "voxels": {int(v): int(counts[v]) for v in (1, 2, 4)}}
    return SyntheticSubject(images, label, fields, tissue, affine, plan["grade"], meta)


def _lps_store(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same volume stored as BraTS stores it: x and y reversed, affine diag(-1, -1, 1)."""
    shape = array.shape
    flip = np.array([[-1.0, 0, 0, shape[0] - 1], [0, -1.0, 0, shape[1] - 1], [0, 0, 1.0, 0],
                     [0, 0, 0, 1.0]])
    return np.ascontiguousarray(array[::-1, ::-1, :]), affine @ flip


def _write_subject(task: dict) -> str:
    from ..io.volume import Volume, write_nifti

    subject = synthesize_subject(task["shape"], seed=task["seed"])
    folder = Path(task["folder"])
    name = folder.name
    extension = ".nii.gz" if task["compress"] else ".nii"
    parts = dict(subject.images)
    if task["with_label"]:
        parts["seg"] = subject.label
    for key, array in parts.items():
        stored, affine = _lps_store(array, subject.affine)
        write_nifti(Volume(stored, affine), folder / f"{name}_{key}{extension}")
    return subject.grade


def make_brats(
    root: str | os.PathLike,
    n_subjects: int,
    *,
    seed: int,
    shape: Sequence[int] = (240, 240, 155),
    n_validation: int = 0,
    compress: bool = True,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> Path:
    """Write a synthetic BraTS 2020 data set (layout of the real one, see the module docstring).

    Writes ``<root>/MICCAI_BraTS2020_TrainingData/BraTS20_Training_NNN/`` with the
    four sequences and ``seg`` per subject, and ``name_mapping.csv``; optionally
    ``MICCAI_BraTS2020_ValidationData`` (no ``seg``).

    Parameters
    ----------
    root : str or os.PathLike
        Output folder (created).
    n_subjects : int
        Training subjects.
    seed : int
        Randomness; subject ``i`` depends only on ``(seed, i)``.
    shape : sequence of 3 int
        Grid at 1 mm; BraTS uses ``(240, 240, 155)``; small shapes such as
        ``(64, 64, 48)`` keep tests and the smoke profile fast.
    n_validation : int
        Validation subjects (images only).
    compress : bool
        ``.nii.gz`` (as BraTS distributes) or ``.nii``.
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
    >>> make_brats("/tmp/brats", 2, seed=0, shape=(64, 64, 48))  # doctest: +SKIP
    """
    import pandas as pd

    from .._fsutil import atomic_write_text
    from .._parallel import map_items

    root = Path(root)
    shape = tuple(int(s) for s in shape)
    tasks = []
    for split, count in (("Training", int(n_subjects)), ("Validation", int(n_validation))):
        for index in range(count):
            name = f"BraTS20_{split}_{index + 1:03d}"
            tasks.append({
                "shape": shape,
                "seed": np.random.SeedSequence([int(seed), split == "Validation", index]),
                "folder": str(root / f"MICCAI_BraTS2020_{split}Data" / name),
                "with_label": split == "Training",
                "compress": bool(compress),
                "split": split,
                "name": name,
            })
    results = map_items(_write_subject, tasks, n_jobs=n_jobs, progress=progress,
                        desc="synthetic BraTS", unit="subject")
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"synthetic BraTS subject {failed[0].item['name']} failed: "
                           f"{failed[0].error}")
    for split in ("Training", "Validation"):
        rows = [{"Grade": r.value, "BraTS_2020_subject_ID": r.item["name"]}
                for r in results if r.item["split"] == split]
        if rows:
            table = pd.DataFrame(rows, columns=list(_NAME_MAPPING_COLUMNS))
            atomic_write_text(root / f"MICCAI_BraTS2020_{split}Data" / "name_mapping.csv",
                              table.to_csv(index=False, na_rep="NA"))
    return root
