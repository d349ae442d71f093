"""Segmentation metrics: Dice (bool, 0/1 float and soft inputs) and Hausdorff 95.

Dice, on three BraTS regions (WT/TC/ET) stacked first, one Dice per region, at the
patch size 3x160x160x24 and the whole-scan size 3x240x240x155 (quick: 3x64x64x24):

textbook: the formula in float64 NumPy, ``2 sum(t p) / (sum t + sum p)`` per region;
medimg: :func:`medimg.metrics.dice` (masks counted; float input as float32 dot products
block by block, which gives exactly the bool result for 0/1 floats);
peer: MONAI ``compute_dice`` on torch tensors ``(1, 3, x, y, z)`` (the same values).

Hausdorff 95 of a predicted and a true tumour (a BraTS-sized volume, 1 x 1 x 1.5 mm):
textbook: surfaces and exact Euclidean distance transforms on the whole volume (SciPy);
medimg: :func:`medimg.metrics.hausdorff95` (the same, inside the joint bounding box);
peer: MONAI ``compute_hausdorff_distance(percentile=95)`` (the same definition).

Usage: ``python benchmarks/bench_metrics.py [--quick]``
"""

from __future__ import annotations

import numpy as np
from harness import Peer, compare, emit, max_abs_diff, not_installed, parser, peer_available

from medimg import metrics


def regions(shape, rng, shift):
    """Three nested ellipsoids (WT ⊃ TC ⊃ ET) with a rough border, shifted by ``shift``."""
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r = (((x - shape[0] * 0.5 - shift) / (shape[0] * 0.2)) ** 2
         + ((y - shape[1] * 0.45) / (shape[1] * 0.22)) ** 2
         + ((z - shape[2] * 0.5) / (shape[2] * 0.3)) ** 2)
    r = r + rng.normal(0, 0.05, shape)
    return np.stack([r < 1.0, r < 0.6, (r > 0.3) & (r < 0.5)])


def textbook_dice(t, p):
    t = t.astype(np.float64)
    p = p.astype(np.float64)
    axes = tuple(range(1, t.ndim))
    return 2 * np.sum(t * p, axis=axes) / (np.sum(t, axis=axes) + np.sum(p, axis=axes))


def monai_dice(name):
    version = peer_available(name)
    if version is None:
        return None
    import torch
    from monai.metrics import compute_dice

    torch.set_num_threads(2)
    return version, lambda t, p: compute_dice(p[None], t[None], include_background=True)[0]


def dice_rows(shape, repeats):
    rng = np.random.default_rng(0)
    truth = regions(shape[1:], rng, 0)
    predicted = regions(shape[1:], rng, shape[1] * 0.03)
    soft = np.clip(predicted * 0.8 + rng.random(predicted.shape, dtype=np.float32) * 0.2,
                   0, 1).astype(np.float32)
    size = "x".join(map(str, shape))
    axis = tuple(range(1, truth.ndim))
    monai = monai_dice("MONAI")
    times = {}
    for kind, (t, p) in {"bool": (truth, predicted),
                         "0/1 float32": (truth.astype(np.float32), predicted.astype(np.float32)),
                         "soft float32": (truth.astype(np.float32), soft)}.items():
        expected = textbook_dice(t, p)
        got = metrics.dice(t, p, axis=axis, smooth=0.0)
        peers = [not_installed("MONAI")]
        if monai is not None and kind.startswith("soft"):
            # compute_dice thresholds probabilities (hard Dice): not the same quantity
            peers = [Peer(monai[0], None, "no soft Dice (compute_dice binarises)")]
        elif monai is not None:
            import torch

            version, run = monai
            tt, pt = torch.from_numpy(t.astype(np.float32)), torch.from_numpy(
                p.astype(np.float32))
            peers = [Peer(version, lambda run=run, tt=tt, pt=pt: run(tt, pt),
                          f"max diff {max_abs_diff(run(tt, pt), got):.1g}")]
        row = compare(f"Dice {size}, {kind}", lambda t=t, p=p: textbook_dice(t, p),
                      lambda t=t, p=p: metrics.dice(t, p, axis=axis), items=1,
                      repeats=repeats, peers=peers,
                      note=f"max diff vs float64 {max_abs_diff(got, expected):.1g}")
        times[kind] = 1e3 / row.medimg_items_per_s
        emit(row)
    print(f"medimg Dice {size}: bool {times['bool']:.2f} ms, 0/1 float32 "
          f"{times['0/1 float32']:.2f} ms, soft float32 {times['soft float32']:.2f} ms "
          f"(float/bool {times['0/1 float32'] / times['bool']:.1f}x)")


def textbook_hd95(a, b, spacing):
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(a.ndim, 1)
    surface_a = a & ~ndimage.binary_erosion(a, structure, border_value=0)
    surface_b = b & ~ndimage.binary_erosion(b, structure, border_value=0)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
    return max(np.percentile(to_b[surface_a], 95), np.percentile(to_a[surface_b], 95))


def hd95_row(shape, repeats):
    rng = np.random.default_rng(1)
    spacing = (1.0, 1.0, 1.5)
    truth = regions(shape, rng, 0)[0]
    predicted = regions(shape, rng, shape[0] * 0.04)[0]
    got = metrics.hausdorff95(predicted, truth, spacing)
    expected = textbook_hd95(predicted, truth, spacing)
    peers = [not_installed("MONAI")]
    version = peer_available("MONAI")
    if version is not None:
        from monai.metrics import compute_hausdorff_distance

        p, t = predicted[None, None], truth[None, None]

        def monai():
            return compute_hausdorff_distance(p, t, include_background=True, percentile=95,
                                              spacing=list(spacing))

        peers = [Peer(version, monai, f"value {float(monai()):.6g} vs {got:.6g} mm")]
    emit(compare(f"HD95 {'x'.join(map(str, shape))} tumour", lambda: textbook_hd95(
        predicted, truth, spacing), lambda: metrics.hausdorff95(predicted, truth, spacing),
        items=1, repeats=repeats, peers=peers,
        note=f"{got:.6g} mm, textbook {expected:.6g} mm"))


def main() -> None:
    args = parser(__doc__).parse_args()
    shapes = [(3, 64, 64, 24)] if args.quick else [(3, 160, 160, 24), (3, 240, 240, 155)]
    for shape in shapes:
        dice_rows(shape, args.repeats)
    hd95_row((96, 96, 64) if args.quick else (240, 240, 155), args.repeats)


if __name__ == "__main__":
    main()
