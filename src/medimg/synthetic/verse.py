"""VerSe-like spine CT phantoms written in the VerSe 2019/2020 BIDS layouts.

Each subject is a CT volume in Hounsfield units: air around the body, a subcutaneous
fat layer, soft tissue, and a curved spine of vertebrae. A vertebra has a body
(cortical shell around cancellous bone) and posterior elements (neural arch around the
spinal canal, spinous and transverse processes); intervertebral discs separate the
bodies. Every vertebra carries its VerSe label (1-7 cervical, 8-19 thoracic, 20-24
lumbar, 25 L6, 28 T13) in the mask, and the centroid file lists the centre of each
one in the VerSe JSON format.

Subjects differ in voxel spacing, on-disk orientation (RAS, LPS, PIR, ...), which part
of the spine is in the field of view, curvature and size. Half are written in the VerSe
2019 layout, half in the VerSe 2020 layout (with ``_dir-ax``/``_dir-sag`` name parts),
spread over the releases' training/validation/test folders::

    dataset-verse19training/rawdata/sub-verse000/sub-verse000_ct.nii.gz
    dataset-verse19training/derivatives/sub-verse000/sub-verse000_seg-vert_msk.nii.gz
    dataset-verse19training/derivatives/sub-verse000/sub-verse000_seg-subreg_ctd.json
    dataset-01training/rawdata/sub-gl001/sub-gl001_dir-ax_ct.nii.gz
    ...
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import numpy as np

from .._fsutil import atomic_path, atomic_write_text
from .._parallel import map_items

__all__ = ["make_verse"]

#: VerSe labels in cranio-caudal order (T13 = 28 sits after T12, L6 = 25 after L5).
_ORDER = list(range(1, 25))
_HU_AIR, _HU_FAT, _HU_SOFT, _HU_CSF, _HU_DISC = -1000.0, -100.0, 45.0, 10.0, 85.0
_HU_CORTICAL, _HU_CANCELLOUS, _HU_POSTERIOR = 1100.0, 230.0, 700.0

# On-disk orientations; _dir-sag scans get thick sagittal slices stored sagittal-first.
_AXIAL_ORIENTATIONS = ("RAS", "LPS", "LAS", "RPI", "IPL", "ASL")
_SAGITTAL_ORIENTATIONS = ("PIR", "LIP", "RSA")
_SPLITS = ("training", "validation", "test")


def _region_scale(label: int) -> float:
    """Size of a vertebra relative to a lumbar one (cervical small, thoracic medium)."""
    if label <= 7:
        return 0.6
    if label <= 19 or label == 28:
        return 0.8
    return 1.0


def _sequence(rng: np.random.Generator, fov_z_mm: float) -> list[int]:
    """A cranio-caudal run of VerSe labels that fills the field of view."""
    order = list(_ORDER)
    if rng.random() < 0.15:  # transitional anatomy, as in VerSe
        order.insert(order.index(19) + 1, 28)
    elif rng.random() < 0.15:
        order.insert(order.index(24) + 1, 25)
    start = int(rng.integers(0, len(order) - 4))
    run, length = [], 0.0
    for label in order[start:]:
        run.append(label)
        length += 30.0 * _region_scale(label)
        if length > fov_z_mm + 30.0:
            break
    return run


def _phantom(rng: np.random.Generator, shape: tuple[int, int, int],
             spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """CT (float32 HU) and mask (uint8 VerSe labels) on a RAS+ grid of ``shape``."""
    sx, sy, sz = spacing
    nx, ny, nz = shape
    # world coordinates (mm) of voxel centres, origin at the volume centre
    x = ((np.arange(nx) - (nx - 1) / 2) * sx).astype(np.float32)
    y = ((np.arange(ny) - (ny - 1) / 2) * sy).astype(np.float32)
    z = ((np.arange(nz) - (nz - 1) / 2) * sz).astype(np.float32)
    fov_z = nz * sz

    ct = np.full(shape, _HU_AIR, np.float32)
    mask = np.zeros(shape, np.uint8)

    # body outline: an ellipse in the axial plane, fat under the skin
    body_rx = float(rng.uniform(0.42, 0.48)) * nx * sx
    body_ry = float(rng.uniform(0.40, 0.46)) * ny * sy
    fat_mm = float(rng.uniform(5, 12))
    ex = (x[:, None] / body_rx) ** 2 + (y[None, :] / body_ry) ** 2
    inner = (x[:, None] / (body_rx - fat_mm)) ** 2 + (y[None, :] / (body_ry - fat_mm)) ** 2
    axial = np.where(inner <= 1, _HU_SOFT, np.where(ex <= 1, _HU_FAT, _HU_AIR)).astype(np.float32)
    ct[:] = axial[:, :, None]
    # a few gas pockets in front of the spine (bowel) so that "dark" is not only outside
    for _ in range(int(rng.integers(1, 4))):
        cx = float(rng.uniform(-0.4, 0.4)) * body_rx
        cy = float(rng.uniform(0.25, 0.55)) * body_ry
        cz = float(rng.uniform(-0.4, 0.4)) * fov_z
        r = float(rng.uniform(6, 14))
        blob = ((x[:, None, None] - cx) ** 2 + (y[None, :, None] - cy) ** 2
                + (z[None, None, :] - cz) ** 2) <= r * r
        ct[blob] = _HU_AIR + 100

    # spine centre line: sagittal curve (lordosis/kyphosis) and a slight scoliosis
    y0 = float(rng.uniform(-0.05, 0.1)) * body_ry
    amp_y = float(rng.uniform(4, 12))
    amp_x = float(rng.uniform(0, 6))
    phase = float(rng.uniform(0, 2 * np.pi))
    period = float(rng.uniform(1.2, 2.0)) * fov_z

    def centre(zc: float) -> tuple[float, float]:
        return (amp_x * np.sin(2 * np.pi * zc / period + phase / 2),
                y0 + amp_y * np.sin(2 * np.pi * zc / period + phase))

    labels = _sequence(rng, fov_z)
    size = float(rng.uniform(0.9, 1.1))
    heights = [30.0 * _region_scale(lab) * size for lab in labels]
    top = fov_z / 2 + float(rng.uniform(0, 0.6)) * heights[0]
    cortex = 2.0
    for label, pitch in zip(labels, heights, strict=True):
        zc = top - pitch / 2
        top -= pitch
        scale = _region_scale(label) * size
        h = 0.72 * pitch  # body height; the rest is disc
        rx, ry = 21.0 * scale, 15.0 * scale
        z_lo, z_hi = zc - pitch / 2 - 2, zc + pitch / 2 + 2
        k0 = max(0, int(np.searchsorted(z, z_lo)))
        k1 = min(nz, int(np.searchsorted(z, z_hi)))
        if k1 <= k0:
            continue
        zz = z[None, None, k0:k1]
        cxs, cys = centre(zc)
        # tilt the vertebra with the local slope of the curve
        slope_y = (centre(zc + 1)[1] - centre(zc - 1)[1]) / 2
        xx = x[:, None, None] - cxs
        yy = y[None, :, None] - cys - slope_y * (zz - zc)
        dz = zz - zc
        sub_ct = ct[:, :, k0:k1]
        sub_mask = mask[:, :, k0:k1]

        # disc above and below: an ellipse between bodies
        disc = ((xx / rx) ** 2 + (yy / ry) ** 2 <= 1) & (np.abs(dz) > h / 2) & (
            np.abs(dz) <= pitch / 2 + 1)
        sub_ct[disc] = _HU_DISC

        # body: elliptic cylinder with a cortical shell
        radial = np.sqrt((xx / rx) ** 2 + (yy / ry) ** 2)
        body = (radial <= 1) & (np.abs(dz) <= h / 2)
        shell = body & ((radial >= 1 - cortex / min(rx, ry)) | (np.abs(dz) >= h / 2 - cortex))
        sub_ct[body] = _HU_CANCELLOUS
        sub_ct[shell] = _HU_CORTICAL

        # posterior elements: arch around the canal, spinous and transverse processes
        canal_r = 8.0 * max(scale, 0.8)
        arch_r = canal_r + 5.0 * scale
        ay = yy + ry + canal_r  # canal centre just behind the body
        ring = np.sqrt(xx ** 2 + ay ** 2)
        arch_h = 0.55 * pitch
        in_slab = np.abs(dz) <= arch_h / 2
        canal = (ring < canal_r) & in_slab
        arch = (ring >= canal_r) & (ring <= arch_r) & in_slab & (ay < 0.3 * canal_r)
        pedicle = (np.abs(xx) <= arch_r) & (np.abs(np.abs(xx) - canal_r - 2.5 * scale)
                                           <= 2.5 * scale) & (ay > 0) & (ay < canal_r) & in_slab
        spin_len = 22.0 * scale
        # spinous process points backwards and slightly down
        sp_y = -ay - arch_r + 2
        spinous = ((np.abs(xx) <= 3.0 * scale) & (sp_y >= 0) & (sp_y <= spin_len)
                   & (np.abs(dz + 0.35 * sp_y) <= 4.5 * scale))
        trans_len = 24.0 * scale
        transverse = ((np.abs(xx) >= canal_r) & (np.abs(xx) <= canal_r + trans_len)
                      & (np.abs(ay + 1.0) <= 4.0 * scale) & (np.abs(dz) <= 4.0 * scale))
        posterior = (arch | pedicle | spinous | transverse) & ~body
        sub_ct[canal & ~body] = _HU_CSF
        sub_ct[posterior] = _HU_POSTERIOR
        sub_mask[body | posterior] = label

    ct += rng.normal(0.0, 25.0, size=shape).astype(np.float32)
    ct[ct < -1024] = -1024
    return ct, mask


def _orientation_transform(axcodes: str, shape: tuple[int, ...]):
    import nibabel as nib

    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                           nib.orientations.axcodes2ornt(tuple(axcodes)))
    return ornt, nib.orientations.inv_ornt_aff(ornt, shape)


def _centroids(mask: np.ndarray, axcodes: tuple[str, ...]) -> list[dict]:
    from scipy import ndimage

    labels = [int(v) for v in np.unique(mask) if v]
    centres = ndimage.center_of_mass(np.ones_like(mask, dtype=np.uint8), mask, labels)
    out: list[dict] = [{"direction": list(axcodes)}]
    for label, (i, j, k) in zip(labels, centres, strict=True):
        out.append({"label": label, "X": round(float(i), 2), "Y": round(float(j), 2),
                    "Z": round(float(k), 2)})
    return out


def _split_of(index: int, n_subjects: int) -> str:
    if index >= n_subjects:  # unlabelled extras
        return "test"
    if index < max(1, round(0.6 * n_subjects)):
        return "training"
    return "validation" if index < max(2, round(0.8 * n_subjects)) else "test"


def _write_subject(item: tuple[int, str, bool], *, root: Path, seed: int,
                   fov_mm: tuple[float, float, float]) -> None:
    import nibabel as nib

    index, split, unlabelled = item
    rng = np.random.default_rng([seed, index])
    release = "2019" if index % 2 == 0 else "2020"
    direction = None
    if release == "2020":
        direction = "sag" if index % 4 == 3 else "ax"
    if direction == "sag":
        spacing = (float(rng.uniform(2.0, 3.0)), float(rng.uniform(0.8, 1.2)),
                   float(rng.uniform(0.8, 1.2)))
        orientation = _SAGITTAL_ORIENTATIONS[int(rng.integers(len(_SAGITTAL_ORIENTATIONS)))]
    else:
        in_plane = float(rng.uniform(0.8, 1.4))
        spacing = (in_plane, in_plane, float(rng.choice([1.0, 1.25, 1.5, 2.0])))
        orientation = _AXIAL_ORIENTATIONS[int(rng.integers(len(_AXIAL_ORIENTATIONS)))]
    shape = tuple(max(8, round(f * float(rng.uniform(0.9, 1.1)) / s))
                  for f, s in zip(fov_mm, spacing, strict=True))
    ct, mask = _phantom(rng, shape, spacing)

    # RAS grid centred near the origin, then stored in the subject's own orientation
    ras_affine = np.diag([*spacing, 1.0])
    ras_affine[:3, 3] = -(np.array(shape) - 1) / 2 * np.array(spacing) + rng.uniform(-20, 20, 3)
    ornt, back = _orientation_transform(orientation, shape)
    ct_disk = nib.orientations.apply_orientation(ct, ornt)
    mask_disk = nib.orientations.apply_orientation(mask, ornt)
    affine = ras_affine @ back

    if release == "2019":
        folder, subject = f"dataset-verse19{split}", f"sub-verse{index:03d}"
        stem = subject
    else:
        number = {"training": "01", "validation": "02", "test": "03"}[split]
        folder, subject = f"dataset-{number}{split}", f"sub-gl{index:03d}"
        stem = f"{subject}_dir-{direction}"
    raw = root / folder / "rawdata" / subject
    derivatives = root / folder / "derivatives" / subject

    def save(array: np.ndarray, dtype: type, path: Path) -> None:
        img = nib.Nifti1Image(np.ascontiguousarray(array.astype(dtype)), affine)
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
        img.header.set_xyzt_units("mm", "sec")
        with atomic_path(path) as tmp:
            nib.save(img, str(tmp))

    save(np.rint(ct_disk), np.int16, raw / f"{stem}_ct.nii.gz")
    if unlabelled:
        return
    save(mask_disk, np.uint8, derivatives / f"{stem}_seg-vert_msk.nii.gz")
    centroids = _centroids(mask_disk, tuple(nib.aff2axcodes(affine)))
    atomic_write_text(derivatives / f"{stem}_seg-subreg_ctd.json", json.dumps(centroids))


def make_verse(
    root: str | os.PathLike,
    n_subjects: int = 12,
    *,
    seed: int = 0,
    fov_mm: tuple[float, float, float] | list[float] = (110.0, 120.0, 170.0),
    n_unlabelled: int = 0,
    n_jobs: int = 1,
) -> Path:
    """Write ``n_subjects`` VerSe-like CT scans with vertebra masks and centroids.

    Parameters
    ----------
    root : path
        Output folder; the release folders (``dataset-verse19training``,
        ``dataset-01training``, ...) are created inside it.
    n_subjects : int
        Number of labelled scans. The first 60 % go to the training folders, the next
        20 % to validation, the rest to test (at least one training scan).
    seed : int
        Everything (anatomy, spacing, orientation, noise) follows from it.
    fov_mm : three floats
        Approximate field of view (left-right, posterior-anterior, inferior-superior)
        in mm; each subject varies it by ±10 %. Small values keep the volumes small.
    n_unlabelled : int
        Extra scans written without mask or centroids (in the test folders), as
        VerSe test scans were before their masks were released.
    n_jobs : int
        Worker processes (subjects are independent).

    Returns
    -------
    pathlib.Path
        ``root``.

    Notes
    -----
    The centroid JSON follows VerSe: the first entry is ``{"direction": [...]}``
    (the axis codes of the stored volume) and every other entry is
    ``{"label": l, "X": i, "Y": j, "Z": k}`` in voxel coordinates of the stored volume.

    Examples
    --------
    >>> make_verse("/tmp/verse", 2, seed=0)        # doctest: +SKIP
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fov = tuple(float(f) for f in fov_mm)
    if len(fov) != 3:
        raise ValueError(f"fov_mm must hold three numbers, got {fov_mm!r}")
    total = n_subjects + n_unlabelled
    items = [(i, _split_of(i, n_subjects), i >= n_subjects) for i in range(total)]
    write = partial(_write_subject, root=root, seed=seed, fov_mm=fov)
    if n_jobs == 1:
        for item in items:
            write(item)
    else:
        results = map_items(write, items, n_jobs=n_jobs, desc="verse phantoms", unit="scan")
        failed = [r for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"synthetic VerSe scan {failed[0].item} failed: {failed[0].error}")
    return root

