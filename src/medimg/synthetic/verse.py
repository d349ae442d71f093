"""VerSe-like spine CT phantoms written in the VerSe 2019/2020 BIDS layouts.

Each subject is a CT volume in Hounsfield units, laid out around a curved spine
(lordosis/kyphosis, a slight scoliosis). A vertebra has a waisted, kidney-shaped body
with concave endplates (a cortical shell brighter than its cancellous core), pedicles,
laminae around the spinal canal, superior and inferior articular processes,
transverse processes and a spinous process whose length and downward slope depend on
the region; intervertebral discs separate the bodies, and osteoporotic spines may
carry a wedge compression fracture. Every vertebra carries its VerSe label (1-7
cervical, 8-19 thoracic, 20-24 lumbar, 25 L6, 28 T13) in the mask, and the centroid
file lists the centre of each one in the VerSe JSON format.

The surroundings make a HU threshold a poor segmentation, as in real scans: some
subjects are osteoporotic (cancellous bone 70-140 HU, cortex 280-450 HU, against
150-260 and 450-800 HU), about half have intravenous contrast (aorta 150-350 HU, IVC
90-170 HU), some carry calcified aortic plaques (450-1000 HU) or oral contrast in bowel
loops (200-500 HU); thoracic levels have ribs (bone, unlabelled) and lungs, the sacrum
under L5 is bone without a label, and paraspinal muscles (with fatty streaks), psoas,
the trachea, subcutaneous fat and air behind the back fill the rest. Noise (12-30 HU)
and a point-spread blur give partial-volume edges.

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
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from .._fsutil import atomic_path, atomic_write_text
from .._parallel import map_items
from ._fields import trilinear_noise

__all__ = ["make_verse"]

#: VerSe labels in cranio-caudal order (T13 = 28 sits after T12, L6 = 25 after L5).
_ORDER = list(range(1, 25))
_THORACIC = frozenset([*range(8, 20), 28])
_HU_AIR, _HU_FAT, _HU_MUSCLE, _HU_CSF, _HU_CORD, _HU_LUNG = -1000.0, -95.0, 50.0, 8.0, 35.0, -850.0

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


def _smooth_fields(rng: np.random.Generator, shape: tuple[int, int, int],
                   spacing: tuple[float, float, float], cells_mm: Sequence[float]
                   ) -> list[np.ndarray]:
    """Smooth random fields (about unit standard deviation), one per feature size in mm.

    Each is white noise on a coarse grid (one value per ``cell_mm``) interpolated
    trilinearly to ``shape`` (:func:`~medimg.synthetic._fields.trilinear_noise`).
    """
    fields = []
    for cell in cells_mm:
        steps = [s / cell for s in spacing]
        coarse_shape = [int(np.ceil(n * st)) + 2 for n, st in zip(shape, steps, strict=True)]
        field = trilinear_noise(rng, shape, coarse_shape, steps)
        # trilinear averaging leaves white noise a standard deviation of about 0.54
        fields.append(field / np.float32(0.55))
    return fields


def _subject_settings(rng: np.random.Generator) -> dict:
    """Per-subject bone density, contrast phase, calcification and noise (HU)."""
    osteoporotic = bool(rng.random() < 0.35)
    contrast = bool(rng.random() < 0.55)
    return {
        "osteoporotic": osteoporotic,
        # trabecular bone: 150-260 HU in healthy adults, far lower in osteoporosis
        "cancellous": float(rng.uniform(70, 140) if osteoporotic else rng.uniform(150, 260)),
        # thin cortex, partial-volumed at ~1 mm voxels
        "cortical": float(rng.uniform(280, 450) if osteoporotic else rng.uniform(450, 800)),
        "disc": float(rng.uniform(70, 100)),
        "contrast": contrast,
        "aorta": float(rng.uniform(150, 350) if contrast else rng.uniform(35, 50)),
        "ivc": float(rng.uniform(90, 170) if contrast else rng.uniform(30, 45)),
        "calcified": bool(rng.random() < (0.7 if osteoporotic else 0.35)),
        "oral_contrast": bool(rng.random() < 0.35),
        "fatty_muscle": float(rng.uniform(0.0, 0.35) + (0.25 if osteoporotic else 0.0)),
        "noise": float(rng.uniform(12, 30)),
        "aorta_radius": float(rng.uniform(9, 13)),
        "skin_gap": float(rng.uniform(8, 35)),  # muscle + fat behind the spinous tips
        "fat_mm": float(rng.uniform(4, 22)),
    }


def _vertebra_geometry(label: int, pitch: float, scale: float, rng: np.random.Generator
                       ) -> dict:
    """Sizes (mm) of one vertebra: body, canal, pedicles, laminae, processes."""
    region = "cervical" if label <= 7 else "thoracic" if label in _THORACIC else "lumbar"
    s = scale
    a = 20.0 * s * float(rng.uniform(0.94, 1.06))  # body half-width
    b = 15.0 * s * float(rng.uniform(0.94, 1.06))  # body half-depth
    pb = 0.82 * b  # posterior wall behind the body centre
    canal_lat = 11.5 * max(s, 0.75)
    canal_ap = (6.0 if region == "cervical" else 7.5) * max(s, 0.75)
    return {
        "region": region, "a": a, "b": b, "pb": pb, "h": 0.74 * pitch,
        "canal_lat": canal_lat, "canal_ap": canal_ap,
        "vc": -pb - 1.5 - 2.0 * s - canal_ap,  # canal centre (AP)
        "lamina": 2.0 + 3.0 * s,
        "pedicle_u": canal_lat + 1.0 + 2.5 * s, "pedicle_w": 1.5 + 3.5 * s,
        "pedicle_h": 0.30 * pitch,
        "transverse": {"cervical": 8.0, "thoracic": 16.0 * s, "lumbar": 22.0 * s}[region],
        "transverse_slope": {"cervical": 0.2, "thoracic": 0.55, "lumbar": 0.1}[region],
        "spinous": ({"cervical": 14.0 if label < 7 else 22.0, "thoracic": 30.0 * s,
                     "lumbar": 24.0 * s}[region]),
        "spinous_droop": {"cervical": 0.35, "thoracic": 0.85, "lumbar": 0.1}[region],
        "wedge": 0.0,
    }


def _draw_rib(ct, mask, u, v, w, g, side, settings, texture):
    """One rib (unlabelled bone): from the costovertebral joint, posterolateral then forwards."""
    s_lat = side * u - 0.8 * g["a"]  # lateral distance from the rib head
    dv = v - (-g["pb"] + 1.0 - 0.84 * s_lat + 0.012 * s_lat ** 2)
    dw = w - (0.25 * g["h"] - 0.45 * s_lat)
    rv, rw = 3.0, 5.5 * np.sqrt(g["a"] / 20.0)
    dv2, dw2 = dv * dv, dw * dw
    along = (s_lat >= 0) & (mask == 0)
    rib = along & (dv2 / rv ** 2 + dw2 / rw ** 2 <= 1.0)
    marrow = rib & (dv2 / (rv - 1.3) ** 2 + dw2 / (rw - 1.3) ** 2 <= 1.0)
    ct[rib] = 0.85 * settings["cortical"] + 40.0 * texture[rib]
    ct[marrow] = 1.1 * settings["cancellous"] + 40.0 + 30.0 * texture[marrow]


def _draw_sacrum(ct, mask, u, v, w, g, settings, texture):
    """The sacrum below L5 (unlabelled in VerSe): S1 body and alae, sloping backwards."""
    a, b = 1.1 * g["a"], g["b"]
    depth = np.clip(-w, 0.0, None)
    back = v + 0.8 * depth  # the sacrum tilts backwards as it descends
    below = w <= -1.0
    body = below & ((u / a) ** 2 + (back / b) ** 2 <= 1.0)
    ala = below & (np.abs(u) <= a + 30.0 - 0.5 * depth) & (np.abs(back + 0.3 * b) <= 0.5 * b)
    canal = ((u / (0.7 * g["canal_lat"])) ** 2 + ((back + b + 5.0) / 5.0) ** 2 <= 1.0)
    arch = below & ((u / (0.7 * g["canal_lat"] + 5.0)) ** 2
                    + ((back + b + 5.0) / 10.0) ** 2 <= 1.0) & ~canal
    bone = (body | ala | arch) & (mask == 0)
    ala_inner = ((np.abs(u) <= a + 28.5 - 0.5 * depth)
                 & (np.abs(back + 0.3 * b) <= 0.5 * b - 1.5))
    inner = bone & (w <= -2.5) & (ala_inner | ((u / (a - 1.5)) ** 2 + (back / (b - 1.5)) ** 2
                                              <= 1.0))
    ct[bone] = settings["cortical"] * (1.0 + 0.08 * texture[bone])
    ct[inner] = settings["cancellous"] + 35.0 * texture[inner]
    ct[canal & below] = _HU_CSF


def _draw_vertebra(ct, mask, u, v, w, g, label, settings, texture):
    """Body (cortical shell, cancellous core, waist, concave endplates), disc, posterior arch."""
    a, b, pb, h = g["a"], g["b"], g["pb"], g["h"]
    half = h / 2.0
    if g["wedge"]:  # compression fracture: the anterior body loses height
        half = half * (1.0 - g["wedge"] * np.clip((v + pb) / (b + pb), 0.0, 1.0))
    waist = 1.0 - 0.07 * np.clip(1.0 - (w / (h / 2.0)) ** 2, 0.0, 1.0)
    aw, bw = a * waist, b * waist
    r2 = (u / aw) ** 2 + (v / bw) ** 2
    concave = 1.0 * np.clip(1.0 - r2, 0.0, 1.0)  # endplates dip towards the centre
    back = v >= -pb + 1.5 * np.clip(1.0 - (u / (0.5 * a)) ** 2, 0.0, 1.0)  # kidney shape
    body = (r2 <= 1.0) & back & (np.abs(w) <= half - concave)
    cortex = 1.0 if settings["osteoporotic"] else 1.6
    inner = (((u / (aw - cortex)) ** 2 + (v / (bw - cortex)) ** 2 <= 1.0)
             & (v >= -pb + cortex) & (np.abs(w) <= half - concave - 0.8 * cortex))
    disc = ((r2 <= 1.06) & (v >= -pb) & ~body & (np.abs(w) <= g["pitch"] / 2.0 + 0.6)
            & (mask == 0))
    ct[disc] = settings["disc"] - 12.0 * np.clip(1.0 - r2[disc] * 2.0, 0.0, 1.0)

    # posterior elements around the canal
    vc, cl, ca, t = g["vc"], g["canal_lat"], g["canal_ap"], g["lamina"]
    canal = (u / cl) ** 2 + ((v - vc) / ca) ** 2 < 1.0
    lamina = (((u / (cl + t)) ** 2 + ((v - vc) / (ca + t)) ** 2 <= 1.0) & ~canal & (v <= vc + 1.0)
              & (np.abs(w + 0.25 * (v - vc)) <= 0.25 * g["pitch"]))
    au = np.abs(u)
    pedicle = ((((au - g["pedicle_u"]) / g["pedicle_w"]) ** 2
                + ((w - 0.1 * h) / g["pedicle_h"]) ** 2 <= 1.0) & (v <= -pb + 3.0) & (v >= vc))
    facet_r = 1.0 + 3.5 * g["a"] / 20.0
    superior = ((((au - cl - 2.0) / facet_r) ** 2 + ((v - vc + 1.0) / facet_r) ** 2 <= 1.0)
                & (w >= 0) & (w <= g["pitch"] / 2.0 + 1.5))
    inferior = ((((au - cl + 1.0) / facet_r) ** 2 + ((v - vc + 5.0) / facet_r) ** 2 <= 1.0)
                & (w <= 0) & (w >= -g["pitch"] / 2.0 - 1.5))
    reach = au - g["pedicle_u"]
    tr = 1.5 + 2.5 * g["a"] / 20.0
    transverse = ((reach >= 0) & (reach <= g["transverse"])
                  & (((v - vc - 2.0 + g["transverse_slope"] * reach) / tr) ** 2
                     + ((w - 0.1 * h) / tr) ** 2 <= 1.0))
    start = vc - ca - t + 2.0
    depth = start - v  # along the spinous process, backwards
    frac = np.clip(depth / g["spinous"], 0.0, 1.0)
    spinous = ((depth >= 0) & (depth <= g["spinous"])
               & ((u / (0.8 + 2.5 * g["a"] / 20.0 * (1 - 0.3 * frac))) ** 2
                  + ((w + g["spinous_droop"] * depth) / ((2.0 + 5.0 * g["a"] / 20.0)
                                                         * (1 - 0.35 * frac))) ** 2 <= 1.0))
    posterior = (lamina | pedicle | superior | inferior | transverse | spinous) & ~canal & ~body
    # thin bone: mostly cortex, partial-volumed
    ct[posterior] = (0.45 * settings["cancellous"] + 0.55 * settings["cortical"]
                     + 50.0 * texture[posterior])
    ct[body] = settings["cortical"] * (1.0 + 0.08 * texture[body])
    core = body & inner
    ct[core] = g["cancellous"] + 35.0 * texture[core]
    mask[body | posterior] = label


def _phantom(rng: np.random.Generator, shape: tuple[int, int, int],
             spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """CT (float32 HU) and mask (uint8 VerSe labels) on a RAS+ grid of ``shape``.

    Coordinates are millimetres from the volume centre: x to the patient's right,
    y anterior, z superior. Soft tissue is laid out relative to the spine's centre
    line, then bone is drawn vertebra by vertebra (ribs are bone but not labelled),
    then the scanner's blur and noise.
    """
    from scipy import ndimage

    sx, sy, sz = spacing
    nx, ny, nz = shape
    x = ((np.arange(nx) - (nx - 1) / 2) * sx).astype(np.float32)
    y = ((np.arange(ny) - (ny - 1) / 2) * sy).astype(np.float32)
    z = ((np.arange(nz) - (nz - 1) / 2) * sz).astype(np.float32)
    fov_z = nz * sz
    settings = _subject_settings(rng)

    # spine centre line: sagittal curve (lordosis/kyphosis) and a slight scoliosis
    y0 = float(rng.uniform(0.0, 0.15)) * ny * sy
    amp_y = float(rng.uniform(4, 12))
    amp_x = float(rng.uniform(0, 6))
    phase = float(rng.uniform(0, 2 * np.pi))
    period = float(rng.uniform(1.2, 2.0)) * fov_z
    centre_x = (amp_x * np.sin(2 * np.pi * z / period + phase / 2)).astype(np.float32)
    centre_y = (y0 + amp_y * np.sin(2 * np.pi * z / period + phase)).astype(np.float32)

    labels = _sequence(rng, fov_z)
    size = float(rng.uniform(0.9, 1.1))
    heights = [30.0 * _region_scale(lab) * size for lab in labels]
    top = fov_z / 2 + float(rng.uniform(0, 0.6)) * heights[0]
    vertebrae = []
    for label, pitch in zip(labels, heights, strict=True):
        g = _vertebra_geometry(label, pitch, _region_scale(label) * size, rng)
        g.update(label=label, pitch=pitch, zc=top - pitch / 2)
        g["cancellous"] = settings["cancellous"] * float(rng.uniform(0.9, 1.1))
        if settings["osteoporotic"] and g["region"] != "cervical" and rng.random() < 0.2:
            g["wedge"] = float(rng.uniform(0.15, 0.4))
        vertebrae.append(g)
        top -= pitch

    # per-slice anatomy, interpolated between vertebra centres (z must increase for interp)
    zc = np.array([g["zc"] for g in vertebrae])[::-1]

    def along_z(values) -> np.ndarray:
        return np.interp(z, zc, np.asarray(values, dtype=np.float64)[::-1]).astype(np.float32)

    a_z = along_z([g["a"] for g in vertebrae])
    b_z = along_z([g["b"] for g in vertebrae])
    pb_z = along_z([g["pb"] for g in vertebrae])
    vc_z = along_z([g["vc"] for g in vertebrae])
    cl_z = along_z([g["canal_lat"] for g in vertebrae])
    ca_z = along_z([g["canal_ap"] for g in vertebrae])
    spine_depth = along_z([-g["vc"] + g["canal_ap"] + g["lamina"] + g["spinous"]
                           for g in vertebrae])
    thoracic = along_z([g["region"] == "thoracic" for g in vertebrae])
    lumbar = along_z([g["region"] == "lumbar" for g in vertebrae])
    low_lumbar = along_z([g["label"] in (23, 24, 25) for g in vertebrae])
    upper = along_z([g["label"] <= 11 for g in vertebrae])  # trachea down to about T4

    def col(values: np.ndarray) -> np.ndarray:  # per-slice values broadcast over (x, y)
        return values[None, None, :]

    u_all = x[:, None, None] - col(centre_x)  # spine-relative, (nx, 1, nz)
    v_all = y[None, :, None] - col(centre_y)  # (1, ny, nz)
    fine, medium, coarse = _smooth_fields(rng, shape, spacing, (2.5, 6.0, 18.0))
    wide = 1e4

    def box(k0: int, k1: int, u_range=(-wide, wide), v_range=(-wide, wide)):
        """Index box of slices k0:k1 holding spine-relative u, v in the given ranges (mm)."""
        k0, k1 = max(0, int(k0)), min(nz, int(k1))
        if k1 <= k0:
            return None
        cx0, cx1 = float(centre_x[k0:k1].min()), float(centre_x[k0:k1].max())
        cy0, cy1 = float(centre_y[k0:k1].min()), float(centre_y[k0:k1].max())
        i0, i1 = np.searchsorted(x, [cx0 + u_range[0], cx1 + u_range[1]])
        j0, j1 = np.searchsorted(y, [cy0 + v_range[0], cy1 + v_range[1]])
        if i1 <= i0 or j1 <= j0:
            return None
        return slice(int(i0), int(i1)), slice(int(j0), int(j1)), slice(k0, k1)

    def slab(indicator: np.ndarray) -> tuple[int, int]:
        """First and one-past-last slice where ``indicator`` holds (0, 0 if nowhere)."""
        hits = np.flatnonzero(indicator)
        return (int(hits[0]), int(hits[-1]) + 1) if hits.size else (0, 0)

    def local(where):
        i, j, k = where
        return u_all[i, :, k], v_all[:, j, k], col(np.arange(nz)[k])

    ct = np.multiply(coarse, np.float32(6.0))
    ct += np.float32(40.0)
    a_max, b_max = float(a_z.max()), float(b_z.max())

    # behind the spine: skin, subcutaneous fat, paraspinal muscles with fatty streaks
    where = box(0, nz, v_range=(-wide, -float(pb_z.min()) + 2.0))
    if where is not None:
        u, v, k = local(where)
        c, med = ct[where], medium[where]
        skin = -(spine_depth[k] + settings["skin_gap"]) - 0.004 * u * u + 2.0 * coarse[where]
        fat_layer = v < skin + settings["fat_mm"]
        c[fat_layer] = _HU_FAT + 10.0 * med[fat_layer]
        c[v < skin] = _HU_AIR
        # erector spinae: one rounded bundle either side of the spinous processes
        bundle_u = (np.abs(u) - 0.45 * a_z[k] - 12.0) / (0.45 * a_z[k] + 14.0)
        bundle_v = (v + pb_z[k] + 28.0) / 30.0
        muscle = ~fat_layer & (bundle_u * bundle_u + bundle_v * bundle_v <= 1.0)
        c[muscle] = _HU_MUSCLE + 8.0 * med[muscle]
        streaks = muscle & (med > 1.6 - 1.6 * settings["fatty_muscle"])
        c[streaks] = -60.0 + 20.0 * fine[where][streaks]
    # thorax: lungs lateral to the spine and in front of the ribs, with vessels
    where = box(*slab(thoracic > 0.35), v_range=(-float(pb_z.max()) - 30.0, 75.0))
    if where is not None:
        u, v, k = local(where)
        c, au = ct[where], np.abs(u)
        lung = ((au > a_z[k] + 4.0 + 3.0 * medium[where])
                & (v > -pb_z[k] - 10.0 - 0.35 * (au - a_z[k]))
                # the mediastinum and heart in front of the spine, bulging to the left
                & (((u + 8.0) / (a_z[k] + 20.0)) ** 2 + ((v - 60.0) / 60.0) ** 2 > 1.0))
        c[lung] = _HU_LUNG + 30.0 * coarse[where][lung]
        vessels = lung & (fine[where] > 1.5)
        c[vessels] = 30.0 + 20.0 * medium[where][vessels]
    # abdomen: psoas muscles in a fat rim; bowel with mesenteric fat in front
    k_lumbar = slab(lumbar > 0.5)
    where = box(*k_lumbar, v_range=(-b_max - 20.0, b_max))
    if where is not None:
        u, v, k = local(where)
        c = ct[where]
        radius = 6.0 + 12.0 * np.clip(lumbar[k] * (0.4 + low_lumbar[k]), 0, 1)
        q = ((np.abs(u) - a_z[k] - 4.0 - radius) ** 2 + (v + 0.2 * b_z[k]) ** 2) / radius ** 2
        rim = (q > 1.0) & (q <= 1.35)
        c[rim] = _HU_FAT + 15.0 * fine[where][rim]
        psoas = q <= 1.0
        c[psoas] = 52.0 + 8.0 * medium[where][psoas]
    where = box(*k_lumbar, v_range=(float(b_z.min()) + 26.0, wide))
    if where is not None:
        u, v, k = local(where)
        c = ct[where]
        mesentery = (v > b_z[k] + 26.0) & (medium[where] > 0.9)
        c[mesentery] = _HU_FAT + 15.0 * fine[where][mesentery]
    # neck and upper thorax: the trachea (air) in front of the spine
    where = box(*slab(upper > 0.5), (-9.0, 9.0), (float(b_z.min()) + 8.0, b_max + 24.0))
    if where is not None:
        u, v, k = local(where)
        trachea = (u / 8.0) ** 2 + ((v - b_z[k] - 16.0) / 7.0) ** 2 <= 1.0
        ct[where][trachea] = _HU_AIR + 30.0 * fine[where][trachea]
    # aorta (left, in front of the spine; ends at the L4 bifurcation) and IVC (right)
    ra = settings["aorta_radius"]
    aorta_u = -(a_z * (0.55 - 0.35 * lumbar) + 0.7 * ra)
    aorta_v = b_z * (0.3 + 0.7 * lumbar) + ra * lumbar + 3.0
    k_aorta = slab(((thoracic + lumbar) > 0.5) & (low_lumbar < 0.5))
    where = box(*k_aorta, (float(aorta_u.min()) - ra - 3.0, float(aorta_u.max()) + ra + 3.0),
                (float(aorta_v.min()) - ra - 3.0, float(aorta_v.max()) + ra + 3.0))
    if where is not None:
        u, v, k = local(where)
        c = ct[where]
        distance = np.sqrt((u - aorta_u[k]) ** 2 + (v - aorta_v[k]) ** 2)
        c[distance <= ra + 1.2] = 45.0  # the wall
        lumen = distance <= ra
        c[lumen] = settings["aorta"] + 12.0 * fine[where][lumen]
    where = box(*k_lumbar, (0.0, a_max + 25.0), (float(b_z.min()), b_max + 20.0))
    if where is not None:
        u, v, k = local(where)
        ivc = ((u - a_z[k] * 0.45 - 9.0) / 11.0) ** 2 + ((v - b_z[k] - 9.0) / 8.0) ** 2 <= 1.0
        ct[where][ivc] = settings["ivc"] + 10.0 * fine[where][ivc]
    # spinal canal: CSF around the cord (no cord below L1)
    cl_max, ca_max = float(cl_z.max()), float(ca_z.max())
    where = box(0, nz, (-cl_max - 1, cl_max + 1),
                (float(vc_z.min()) - ca_max - 1, float(vc_z.max()) + ca_max + 1))
    if where is not None:
        u, v, k = local(where)
        c = ct[where]
        q = (u / cl_z[k]) ** 2 + ((v - vc_z[k]) / ca_z[k]) ** 2
        c[q < 1.0] = _HU_CSF
        c[(q < 0.3) & (lumbar[k] < 0.5)] = _HU_CORD

    # gas and oral contrast in bowel loops
    def ball(centre, radius, value):
        cx, cy, cz = centre
        i = np.abs(x - cx) <= radius
        j = np.abs(y - cy) <= radius
        k = np.abs(z - cz) <= radius
        if not (i.any() and j.any() and k.any()):
            return
        where = np.ix_(i, j, k)
        d2 = ((x[i, None, None] - cx) ** 2 + (y[None, j, None] - cy) ** 2
              + (z[None, None, k] - cz) ** 2)
        sub = ct[where]
        sub[d2 <= radius * radius] = value
        ct[where] = sub

    abdominal = np.flatnonzero(lumbar > 0.5)
    if abdominal.size:
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.choice(abdominal))
            ball((centre_x[k] + float(rng.uniform(-35, 35)),
                  centre_y[k] + b_z[k] + float(rng.uniform(28, 60)), z[k]),
                 float(rng.uniform(5, 13)), _HU_AIR + 40.0)
        if settings["oral_contrast"]:
            for _ in range(int(rng.integers(1, 4))):
                k = int(rng.choice(abdominal))
                ball((centre_x[k] + float(rng.uniform(-35, 35)),
                      centre_y[k] + b_z[k] + float(rng.uniform(28, 60)), z[k]),
                     float(rng.uniform(5, 12)), float(rng.uniform(200, 500)))

    # bone, top to bottom: ribs (unlabelled) then each vertebra
    mask = np.zeros(shape, np.uint8)
    for g in vertebrae:
        if g["label"] in _THORACIC:  # ribs first: the vertebra is drawn over them
            for side in (-1.0, 1.0):
                where = box(np.searchsorted(z, g["zc"] - 45.0),
                            np.searchsorted(z, g["zc"] + 0.25 * g["h"] + 7.0),
                            (0.8 * g["a"], wide) if side > 0 else (-wide, -0.8 * g["a"]),
                            (-g["pb"] - 40.0, -g["pb"] + 8.0))
                if where is not None:
                    u, v, _ = local(where)
                    w = (z[where[2]] - g["zc"])[None, None, :]
                    _draw_rib(ct[where], mask[where], u, v, w, g, side, settings, fine[where])
        droop = g["spinous_droop"] * g["spinous"] + 6.0
        reach = max(g["pedicle_u"] + g["transverse"] + 5.0, g["a"] * 1.1)
        where = box(np.searchsorted(z, g["zc"] - g["pitch"] / 2 - droop),
                    np.searchsorted(z, g["zc"] + g["pitch"] / 2 + 3.0), (-reach, reach),
                    (g["vc"] - g["canal_ap"] - g["lamina"] - g["spinous"] - 4.0,
                     g["b"] * 1.1 + 2.0))
        if where is not None:
            u, v, _ = local(where)
            w = (z[where[2]] - g["zc"])[None, None, :]
            _draw_vertebra(ct[where], mask[where], u, v, w, g, g["label"], settings, fine[where])

    last = vertebrae[-1]
    if last["label"] in (24, 25):  # the sacrum below the last lumbar vertebra
        bottom = last["zc"] - last["pitch"] / 2
        where = box(0, np.searchsorted(z, bottom), (-wide, wide),
                    (-last["b"] - 80.0, last["b"] + 2.0))
        if where is not None:
            u, v, _ = local(where)
            w = (z[where[2]] - bottom)[None, None, :]
            _draw_sacrum(ct[where], mask[where], u, v, w, last, settings, fine[where])

    if settings["calcified"] and k_aorta[1] > k_aorta[0]:  # plaques on the aortic wall
        for _ in range(int(rng.integers(3, 10))):
            k = int(rng.integers(*k_aorta))
            angle = float(rng.uniform(0, 2 * np.pi))
            ball((centre_x[k] + aorta_u[k] + ra * np.cos(angle),
                  centre_y[k] + aorta_v[k] + ra * np.sin(angle), z[k]),
                 float(rng.uniform(1.0, 2.5)), float(rng.uniform(450, 1000)))

    # scanner: noise (uniform, unit variance: the blur makes it Gaussian and correlated,
    # as CT noise is, and uniform draws are several times cheaper), point-spread blur
    sigma = [max(0.3, 0.6 / s) for s in spacing]
    gain = settings["noise"] * np.sqrt(12.0) * 2.5  # ~noise HU left after the blur
    ct += np.float32(gain) * (rng.random(shape, dtype=np.float32) - np.float32(0.5))
    ct = ndimage.gaussian_filter(ct, sigma, mode="nearest", truncate=3.0)
    np.maximum(ct, -1024.0, out=ct)
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

