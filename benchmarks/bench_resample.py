"""3-D resampling to a new voxel spacing: SciPy (textbook) vs medimg vs TorchIO and MONAI.

A BraTS-sized MRI volume (240x240x155, 1 mm; quick: 120x120x78) resampled to 1.5 mm
isotropic, and an anisotropic CT-like volume (256x256x60 at 0.8x0.8x3 mm; quick:
128x128x30) to 1 mm isotropic, trilinear:

textbook: SciPy's ``ndimage.affine_transform`` on the voxel grid (one thread; what
``medimg.spatial.resample`` did before), edge values past the last voxel;
medimg: :func:`medimg.spatial.resample` (SimpleITK's multi-threaded resampler on the
same grid);
peers: TorchIO ``Resample`` (SimpleITK too) and MONAI ``Spacing`` (PyTorch), each on its
own output grid: their grids are compared with medimg's (shape, first voxel centre) and,
where they coincide, their values.

A cubic-spline row (order 3) and a nearest-neighbour row (labels, order 0) check that
both give the same values (and voxels).

Usage: ``python benchmarks/bench_resample.py [--quick]``
"""

from __future__ import annotations

import numpy as np
from harness import Peer, compare, emit, max_abs_diff, not_installed, parser, peer_available

from medimg.io import Volume
from medimg.spatial import resample


def scipy_resample(volume, spacing, order=1):
    """The textbook (and former medimg) resampler: SciPy on the voxel grid."""
    from scipy import ndimage

    target = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    ratio = target / np.asarray(volume.spacing)
    out_shape = tuple(int(s) for s in np.maximum(1, np.round(np.asarray(volume.shape[:3])
                                                             / ratio)))
    array = np.asarray(volume.array)
    out_dtype = array.dtype if order == 0 else np.float32
    work = array if order == 0 else array.astype(np.float32, copy=False)
    out = ndimage.affine_transform(work, ratio, output_shape=out_shape, order=order,
                                   mode="nearest", output=out_dtype)
    return volume.with_array(out, volume.affine @ np.diag([*ratio, 1.0]))


def phantom(shape, rng):
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij", sparse=True)
    r = grid[0] ** 2 + grid[1] ** 2 + (grid[2] * 1.2) ** 2
    image = 400 * (r < 0.7) + 200 * (r < 0.3) + 50 * np.sin(8 * grid[0]) * np.cos(6 * grid[1])
    return (image + rng.normal(0, 10, shape)).astype(np.float32)


def grid_agreement(name, out_array, out_affine, reference):
    """Compare a peer's output grid and values with medimg's."""
    shape = tuple(out_array.shape[-3:])
    if shape != reference.shape[:3]:
        return f"own grid {'x'.join(map(str, shape))} vs {'x'.join(map(str, reference.shape))}"
    offset = np.abs(np.asarray(out_affine)[:3, 3] - reference.affine[:3, 3]).max()
    if offset > 1e-3:
        return f"same shape, first voxel centre {offset:.2g} mm away"
    return f"same grid, max diff {max_abs_diff(out_array.reshape(shape), reference.array):.2g}"


def peers_for(volume, spacing, reference):
    peers = []
    version = peer_available("TorchIO")
    if version is None:
        peers.append(not_installed("TorchIO"))
    else:
        import torch
        import torchio as tio

        torch.set_num_threads(2)
        image = tio.ScalarImage(tensor=torch.from_numpy(volume.array[None]), affine=volume.affine)
        transform = tio.Resample(tuple(float(s) for s in spacing), image_interpolation="linear")

        def torchio_resample():
            return transform(image)

        out = torchio_resample()
        peers.append(Peer(version, torchio_resample,
                          grid_agreement("TorchIO", out.data.numpy(), out.affine, reference)))
    version = peer_available("MONAI")
    if version is None:
        peers.append(not_installed("MONAI"))
    else:
        import torch
        from monai.data import MetaTensor
        from monai.transforms import Spacing

        image = MetaTensor(torch.from_numpy(volume.array[None]),
                           affine=torch.from_numpy(volume.affine))
        transform = Spacing(pixdim=tuple(float(s) for s in spacing), mode="bilinear",
                            padding_mode="border", dtype=np.float32)

        def monai_spacing():
            return transform(image)

        out = monai_spacing()
        peers.append(Peer(version, monai_spacing,
                          grid_agreement("MONAI", out.numpy(), out.affine.numpy(), reference)))
    return peers


def main() -> None:
    args = parser(__doc__).parse_args()
    rng = np.random.default_rng(0)
    cases = [("MRI 240x240x155 1 mm -> 1.5 mm", (240, 240, 155), (1.0, 1.0, 1.0), 1.5),
             ("CT 256x256x60 0.8x0.8x3 mm -> 1 mm", (256, 256, 60), (0.8, 0.8, 3.0), 1.0)]
    if args.quick:
        cases = [("MRI 120x120x78 2 mm -> 3 mm", (120, 120, 78), (2.0, 2.0, 2.0), 3.0),
                 ("CT 128x128x30 1.6x1.6x6 mm -> 2 mm", (128, 128, 30), (1.6, 1.6, 6.0), 2.0)]
    for name, shape, spacing, target in cases:
        volume = Volume(phantom(shape, rng), np.diag([*spacing, 1.0]))
        got = resample(volume, target, order=1)
        expected = scipy_resample(volume, target, order=1)
        note = (f"-> {'x'.join(map(str, got.shape))}, max diff vs SciPy "
                f"{max_abs_diff(got.array, expected.array):.2g}")
        emit(compare(f"resample {name}, linear", lambda v=volume, t=target: scipy_resample(v, t),
                     lambda v=volume, t=target: resample(v, t), items=1, repeats=args.repeats,
                     note=note, peers=peers_for(volume, (target,) * 3, got)))
    volume = Volume(phantom(cases[0][1], rng), np.diag([*cases[0][2], 1.0]))
    target = cases[0][3]
    difference = max_abs_diff(resample(volume, target, order=3).array,
                              scipy_resample(volume, target, order=3).array)
    emit(compare(f"resample {cases[0][0]}, cubic spline",
                 lambda: scipy_resample(volume, target, order=3),
                 lambda: resample(volume, target, order=3), items=1,
                 repeats=max(1, args.repeats - 1), note=f"max diff vs SciPy {difference:.2g}"))
    labels = Volume((phantom(cases[0][1], rng) > 300).astype(np.uint8) * 2,
                    np.diag([*cases[0][2], 1.0]))
    target = cases[0][3]
    same = np.array_equal(resample(labels, target, order=0).array,
                          scipy_resample(labels, target, order=0).array)
    emit(compare(f"resample labels {cases[0][0].split(' ', 1)[1]}, nearest",
                 lambda: scipy_resample(labels, target, order=0),
                 lambda: resample(labels, target, order=0), items=1, repeats=args.repeats,
                 note="same voxels as SciPy" if same else "VOXELS DIFFER from SciPy"))


if __name__ == "__main__":
    main()
