"""BraTS-like brain MRI phantoms written in the BraTS 2020 layout.

Anatomy comes from the MNI152 templates that nilearn ships inside its wheel (no
download): the grey-matter, white-matter and brain-mask probability maps are warped
by a random affine (size, aspect, a tilt, a shift) into the target grid, so every
subject's brain is different. Each subject gets a tumour with the three BraTS
compartments (necrotic core 1, oedema 2, enhancing rim 4, or a non-enhancing core for
"LGG" subjects) with irregular, smooth borders; tissue contrasts per sequence follow
MRI physics (CSF dark on T1 and FLAIR, bright on T2; white matter brighter than grey
on T1; enhancing tumour bright on T1ce; oedema bright on FLAIR and T2). Each sequence
is multiplied by its own smooth bias field (a random low-order polynomial in log
space, up to about +-30 %) and gets Rician noise, so N4 has something to correct.
The skull is stripped, as in BraTS: the background is exactly 0.

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

__all__ = ["CONTRASTS", "SyntheticSubject", "make_brats", "synthesize_subject"]

SEQUENCES = ("flair", "t1", "t1ce", "t2")
_CLASSES = ("csf", "gm", "wm", "necrosis", "oedema", "enhancing")
#: Mean intensity of each tissue class per sequence (arbitrary MR units, before the
#: per-subject gain, bias field and noise).
CONTRASTS: dict[str, dict[str, float]] = {
    "flair": {"csf": 150, "gm": 800, "wm": 600, "necrosis": 500, "oedema": 1450,
              "enhancing": 1050},
    "t1": {"csf": 250, "gm": 650, "wm": 950, "necrosis": 300, "oedema": 550,
           "enhancing": 700},
    "t1ce": {"csf": 300, "gm": 700, "wm": 1000, "necrosis": 320, "oedema": 600,
             "enhancing": 1700},
    "t2": {"csf": 1800, "gm": 1050, "wm": 750, "necrosis": 1500, "oedema": 1400,
           "enhancing": 1000},
}
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
        ``HGG`` (enhancing tumour present) or ``LGG``.
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
    """(csf, gm, wm, brain) probability maps of a randomly placed, sized and tilted brain."""
    from scipy import ndimage

    maps, (low, high) = _templates()
    extent = high - low + 1
    # Fit the brain in the grid (BraTS brains fill most of the 155 axial slices).
    scale = rng.uniform(0.86, 0.94) * np.min(np.asarray(shape) / extent)
    zoom = scale * rng.uniform(0.95, 1.05, 3)
    rotation = _rotation(rng, (6.0, 4.0, 8.0))
    out_centre = (np.asarray(shape) - 1) / 2 + rng.uniform(-0.03, 0.03, 3) * np.asarray(shape)
    template_centre = (low + high) / 2
    # Output voxel o samples template voxel  M (o - out_centre) + template_centre.
    matrix = rotation.T / zoom[:, None]
    offset = template_centre - matrix @ out_centre
    warped = [ndimage.affine_transform(m, matrix, offset=offset, output_shape=shape, order=1,
                                       mode="constant", cval=0.0, output=np.float32)
              for m in maps]
    gm, wm, brain = warped
    brain = np.clip(brain, 0.0, 1.0)
    gm = np.minimum(gm, brain)
    wm = np.minimum(wm, brain - gm)
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    return csf, gm, wm, brain


def _smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, cells: int = 4):
    """Smooth random field in [-1, 1]: a coarse Gaussian grid upsampled cubically."""
    from scipy import ndimage

    coarse = rng.standard_normal((cells,) * len(shape)).astype(np.float32)
    factors = [s / cells for s in shape]
    fine = ndimage.zoom(coarse, factors, order=3, mode="nearest", grid_mode=True)
    fine = fine[tuple(slice(0, s) for s in shape)]
    return np.tanh(fine).astype(np.float32)


def _tumour(shape, brain, wm, rng, scale_mm):
    """Soft memberships (oedema region, core, necrosis) and the hard label, on a sub-box."""
    # Centre in white matter, away from the brain's edge.
    inner = wm > 0.6
    candidates = np.argwhere(inner[::3, ::3, ::3]) * 3
    if candidates.size == 0:
        candidates = np.argwhere(brain > 0.5)
    centre = candidates[rng.integers(len(candidates))].astype(np.float64)
    oedema_radius = scale_mm * rng.uniform(0.13, 0.21)
    core_radius = oedema_radius * rng.uniform(0.45, 0.65)
    necrosis_radius = core_radius * rng.uniform(0.35, 0.65)
    half = int(np.ceil(oedema_radius * 1.6)) + 2
    low = np.maximum(centre.astype(int) - half, 0)
    high = np.minimum(centre.astype(int) + half + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    sub_shape = tuple(int(b - a) for a, b in zip(low, high, strict=True))
    grid = np.stack(np.meshgrid(*[np.arange(a, b, dtype=np.float32) for a, b in
                                  zip(low, high, strict=True)], indexing="ij"), axis=-1)
    offsets = (grid - centre.astype(np.float32)) @ _rotation(rng, (30, 30, 30)).astype(np.float32)

    def distance(radius: float) -> np.ndarray:
        axes = (radius * rng.uniform(0.75, 1.25, 3)).astype(np.float32)
        d = np.sqrt(((offsets / axes) ** 2).sum(axis=-1))
        return d * (1.0 + 0.22 * _smooth_noise(sub_shape, rng))  # irregular border

    def soft(d: np.ndarray, radius: float) -> np.ndarray:
        # Partial volume: membership falls from 1 to 0 over ~1.5 voxels at d = 1.
        return np.clip((1.0 - d) * (radius / 1.5) + 0.5, 0.0, 1.0).astype(np.float32)

    d_oedema, d_core, d_necrosis = distance(oedema_radius), distance(core_radius), \
        distance(necrosis_radius)
    in_brain = brain[box] > 0.5
    enhancing = rng.random() > 0.25
    label = np.zeros(sub_shape, dtype=np.uint8)
    label[(d_oedema < 1) & in_brain] = 2
    core = (d_core < 1) & in_brain
    if enhancing:
        label[core] = 4
        label[(d_necrosis < 1) & in_brain] = 1
    else:
        label[core] = 1
    w_oedema = soft(d_oedema, oedema_radius) * brain[box]
    w_core = soft(d_core, core_radius) * brain[box]
    w_necrosis = soft(d_necrosis, necrosis_radius) if enhancing else np.ones_like(w_core)
    # The core cannot reach outside the oedema region.
    w_core = np.minimum(w_core, w_oedema)
    return box, label, w_oedema, w_core, w_necrosis, enhancing


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
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3 sizes of at least 8 voxels, got {shape}")
    csf, gm, wm, brain = _warp_anatomy(shape, rng)
    _, (low, high) = _templates()
    scale_mm = float(np.mean((high - low) * np.min(np.asarray(shape) / (high - low + 1))))
    box, sub_label, w_oedema, w_core, w_necrosis, enhancing = _tumour(shape, brain, wm, rng,
                                                                      scale_mm)
    label = np.zeros(shape, dtype=np.uint8)
    label[box] = sub_label
    hard_brain = brain > 0.5
    tissue = np.zeros(shape, dtype=np.uint8)
    classes = np.argmax(np.stack([csf, gm, wm]), axis=0).astype(np.uint8) + 1
    tissue[hard_brain] = classes[hard_brain]
    tissue[label > 0] = 4
    texture = 1.0 + 0.08 * _smooth_noise(tuple(int(s.stop - s.start) for s in box), rng, 6)

    images, fields = {}, {}
    for name in SEQUENCES:
        means = {k: v * rng.uniform(0.93, 1.07) for k, v in CONTRASTS[name].items()}
        gain = rng.uniform(0.8, 1.25)
        healthy = csf * means["csf"] + gm * means["gm"] + wm * means["wm"]
        sub = healthy[box]
        inner = (w_necrosis * means["necrosis"] + (1 - w_necrosis) * means["enhancing"]
                 if enhancing else np.full_like(w_core, means["necrosis"]))
        lesion = (1 - w_core) * means["oedema"] + w_core * inner
        healthy[box] = (1 - w_oedema) * sub + w_oedema * lesion * texture
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
    return SyntheticSubject(images, label, fields, tissue, affine,
                            "HGG" if enhancing else "LGG")


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
