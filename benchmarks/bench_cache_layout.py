"""Case-cache layouts for patch reads: which on-disk layout serves 4x128x128x128 patches.

Training reads random patches of preprocessed cases from the cache, never whole volumes.
This benchmark writes the same preprocessed BraTS-sized cases (synthetic, 240x240x155 at
1 mm, four sequences, cropped to the brain and z-scored: what
:mod:`medimg.tasks.segmentation.preprocess` stores) in each candidate layout and reads the
same random patches from each, interleaved (layout A, B, ..., A, B, ...), with one
thread and with two (``tf.data``'s parallel map runs reads on threads):

- HDF5, lzf, chunks of 64^3 voxels x 4 channels (the layout before issue 12);
- HDF5 uncompressed, chunks of 32^3 and 64^3 voxels x 4 channels;
- HDF5 with Blosc/LZ4 and byte shuffle (``hdf5plugin``), chunks of 32^3 and 64^3;
- a plain ``.npy`` file, memory-mapped for each read (the pages are unmapped after the
  copy, so they do not stay in the reader's resident memory);
- HDF5 stored contiguous and uncompressed, read through a mapping of the file (only
  the pages the patch touches are faulted in; unmapped after the copy here, as the
  ``.npy`` reader is): what :mod:`medimg.tasks.segmentation` writes and reads now (its
  reader keeps the last two cases mapped and shares large copies among idle threads,
  which this layout comparison leaves out).

Reported per layout: MB on disk per case, patches/s (median over the repeats) with 1 and
2 threads. Cases are in the page cache (warm: the steady state of training epochs after
the first).

The textbook column of the table rows is the former layout (HDF5 lzf, chunks of 64^3);
the medimg column is the layout :mod:`medimg.tasks.segmentation.preprocess` now writes.

Usage: ``python benchmarks/bench_cache_layout.py [--cases N] [--scratch DIR]``; the
synthetic subjects are generated once under ``--scratch`` (default
``/tmp/medimg-bench``) and reused.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from harness import Row, emit, parser

PATCH = (128, 128, 128)


def preprocessed_cases(scratch: Path, n: int, shape=(240, 240, 155)) -> list[np.ndarray]:
    """``n`` synthetic BraTS subjects, cropped to the brain and z-scored per channel over
    it (the cache's content), generated once under ``scratch``."""
    from medimg.synthetic.brats import synthesize_subject

    out = []
    for index in range(n):
        path = scratch / f"case-{'x'.join(map(str, shape))}-{index:03d}.npy"
        if not path.is_file():
            subject = synthesize_subject(shape, seed=1000 + index)
            image = np.stack([subject.images[k] for k in sorted(subject.images)], axis=-1)
            image = image.astype(np.float32)
            nonzero = (image != 0).any(-1)
            box = tuple(slice(int(h[0]), int(h[-1]) + 1) for h in
                        (np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != ax)))
                         for ax in range(3)))
            image, nonzero = image[box], nonzero[box]
            for c in range(image.shape[-1]):
                values = image[..., c][nonzero]
                image[..., c] = np.where(nonzero, (image[..., c] - values.mean())
                                         / max(values.std(), 1e-8), 0)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, np.ascontiguousarray(image, np.float32))
            os.replace(tmp, path)
        out.append(np.load(path))
    return out


def _h5_writer(chunk, compression):
    def write(path, image):
        import h5py

        kwargs = {}
        if compression == "lzf":
            kwargs = {"compression": "lzf"}
        elif compression == "blosc-lz4":
            import hdf5plugin

            kwargs = dict(hdf5plugin.Blosc(cname="lz4", clevel=5,
                                           shuffle=hdf5plugin.Blosc.SHUFFLE))
        chunks = None if chunk is None else (*(min(chunk, s) for s in image.shape[:3]),
                                             image.shape[3])
        with h5py.File(path, "w") as h5:
            h5.create_dataset("image", data=image, chunks=chunks, **kwargs)
        return path
    return write


def _npy_write(path, image):
    np.save(path, image)
    return path


def _window(start, shape):
    stop = start + np.asarray(PATCH)
    src = tuple(slice(max(0, int(a)), min(int(s), int(b))) for a, b, s in zip(start, stop, shape,
                                                                                strict=True))
    dst = tuple(slice(int(s.start - a), int(s.stop - a)) for s, a in zip(src, start, strict=True))
    return src, dst


class H5Reader:
    suffix = ".h5"

    def __init__(self, paths):
        import h5py

        self.files = [h5py.File(p, "r") for p in paths]
        self.shapes = [f["image"].shape for f in self.files]

    def read(self, index, start):
        data = self.files[index]["image"]
        src, dst = _window(start, data.shape[:3])
        out = np.zeros((*PATCH, data.shape[3]), np.float32)
        out[dst] = data[src]
        return out


class NpyReader:
    suffix = ".npy"

    def __init__(self, paths):
        self.paths = list(paths)
        self.shapes = [np.load(p, mmap_mode="r").shape for p in self.paths]

    def read(self, index, start):
        volume = np.load(self.paths[index], mmap_mode="r")
        src, dst = _window(start, volume.shape[:3])
        out = np.zeros((*PATCH, volume.shape[3]), np.float32)
        out[dst] = volume[src]
        del volume  # unmapped: its pages leave this process's resident memory
        return out


class SlabReader:
    """medimg's reader: contiguous HDF5 datasets read through a mapping of the file."""

    def __init__(self, paths):
        import h5py

        from medimg.tasks.segmentation.data import _raw_layout

        self.paths = [str(p) for p in paths]
        self.layouts = []
        for p in self.paths:
            with h5py.File(p, "r") as h5:
                self.layouts.append(_raw_layout(h5["image"]))
        self.shapes = [layout[1] for layout in self.layouts]

    def read(self, index, start):
        from medimg.tasks.segmentation.data import _map_arrays

        shape = self.shapes[index]
        src, dst = _window(start, shape[:3])
        out = np.zeros((*PATCH, shape[3]), np.float32)
        (volume,) = _map_arrays(self.paths[index], [self.layouts[index]])
        out[dst] = volume[src]
        del volume  # unmapped: its pages leave this process's resident memory
        return out


def _contiguous_write(path, image):
    from medimg.datasets.cache import write_h5

    write_h5(path, {"image": image}, {}, compression=None)
    return path


LAYOUTS = {
    "hdf5 lzf, chunks 64^3 (former)": (_h5_writer(64, "lzf"), H5Reader, ".h5"),
    "hdf5 uncompressed, chunks 32^3": (_h5_writer(32, None), H5Reader, ".h5"),
    "hdf5 uncompressed, chunks 64^3": (_h5_writer(64, None), H5Reader, ".h5"),
    "hdf5 blosc-lz4, chunks 32^3": (_h5_writer(32, "blosc-lz4"), H5Reader, ".h5"),
    "hdf5 blosc-lz4, chunks 64^3": (_h5_writer(64, "blosc-lz4"), H5Reader, ".h5"),
    "npy, memory-mapped": (_npy_write, NpyReader, ".npy"),
    "hdf5 contiguous, mapped": (_contiguous_write, SlabReader, ".h5"),
}


def starts_for(shapes, n, seed=0):
    """``n`` random (case, start) pairs; a start may be negative (padding) where the case is
    smaller than the patch, as the training reader draws them."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        index = k % len(shapes)
        shape = np.asarray(shapes[index][:3])
        low, high = np.minimum(0, shape - PATCH), np.maximum(0, shape - PATCH)
        out.append((index, np.array([rng.integers(a, b + 1) for a, b in zip(low, high,
                                                                             strict=True)])))
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--cases", type=int, default=3, help="subjects (BraTS-sized)")
    p.add_argument("--patches", type=int, default=24, help="patches read per timed call")
    p.add_argument("--scratch", default=os.environ.get("MEDIMG_BENCH_SCRATCH",
                                                       "/tmp/medimg-bench"))
    args = p.parse_args()
    shape = (96, 96, 64) if args.quick else (240, 240, 155)
    global PATCH
    if args.quick:
        PATCH = (48, 48, 32)
    n_cases = min(args.cases, 2) if args.quick else args.cases
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    images = preprocessed_cases(scratch, n_cases, shape)
    print(f"{n_cases} cases {', '.join('x'.join(map(str, i.shape)) for i in images)} "
          f"(cropped, z-scored, float32), patch 4x{'x'.join(map(str, PATCH))}")
    layouts = dict(LAYOUTS)
    try:
        import hdf5plugin  # noqa: F401  (optional: not a medimg dependency)
    except ImportError:
        layouts = {k: v for k, v in layouts.items() if "blosc" not in k}
        print("hdf5plugin not installed: the Blosc/LZ4 layouts are left out "
              "(pip install hdf5plugin to time them)")
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        readers, sizes = {}, {}
        for name, (write, reader_cls, suffix) in layouts.items():
            paths = [write(str(Path(tmp) / f"{abs(hash(name))}-{k}{suffix}"), image)
                     for k, image in enumerate(images)]
            sizes[name] = np.mean([os.path.getsize(q) for q in paths]) / 1e6
            readers[name] = reader_cls(paths)
        work = starts_for(readers[next(iter(readers))].shapes, args.patches)
        reference = [readers["npy, memory-mapped"].read(i, s) for i, s in work[:3]]
        for reader in readers.values():  # every layout gives the same patches
            for (i, s), ref in zip(work[:3], reference, strict=False):
                np.testing.assert_array_equal(reader.read(i, s), ref)
        rates: dict[tuple[str, int], list[float]] = {}
        pools = {1: None, 2: ThreadPoolExecutor(2)}
        for _ in range(args.repeats):
            for threads, pool in pools.items():
                for name, reader in readers.items():
                    start = time.perf_counter()
                    if pool is None:
                        for i, s in work:
                            reader.read(i, s)
                    else:
                        list(pool.map(lambda pair, r=reader: r.read(*pair), work))
                    rates.setdefault((name, threads), []).append(
                        len(work) / (time.perf_counter() - start))
        pools[2].shutdown()
    load = os.getloadavg()[0]
    print(f"{'layout':<34} {'MB/case':>8} {'1 thread/s':>11} {'2 threads/s':>12}"
          f"   (load average {load:.1f} on {os.cpu_count()} cores)")
    for name in layouts:
        print(f"{name:<34} {sizes[name]:>8.1f} "
              f"{statistics.median(rates[name, 1]):>11.1f} "
              f"{statistics.median(rates[name, 2]):>12.1f}")
    former = "hdf5 lzf, chunks 64^3 (former)"
    chosen = "hdf5 contiguous, mapped"
    for threads in (1, 2):
        old = statistics.median(rates[former, threads])
        new = statistics.median(rates[chosen, threads])
        emit(Row(f"cache read 4x{'x'.join(map(str, PATCH))}, {threads} thread(s)", old, new,
                 new / old, len(work), args.repeats,
                 note=f"textbook = former layout; medimg = {chosen}; "
                      f"{sizes[former]:.0f} vs {sizes[chosen]:.0f} MB/case; load {load:.1f}"))


if __name__ == "__main__":
    main()
