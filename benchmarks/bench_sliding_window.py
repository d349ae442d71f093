"""Whole-scan prediction and the training input pipeline of the BraTS 3-D U-Net.

1. Sliding-window prediction of one cropped BraTS-sized volume (128x160x136, four
   sequences; quick: 64x64x48) with the same small 3-D U-Net both ways, 50% overlap:

   textbook: a Python loop over the windows, ``model.predict`` on one window at a time,
   outputs averaged with constant weights;
   medimg: :func:`medimg.patches.sliding_window_predict` (windows in batches through
   ``predict_on_batch``, Gaussian blending).

   Items are volumes (the table's figure is volumes/s; seconds per volume are printed).

2. The ``tf.data`` pipeline (:func:`medimg.datasets.brats.dataset`, patches sampled on
   the fly) against what one training step consumes: patches/s produced by iterating
   the pipeline alone, and patches/s a training step of the demo model takes. The
   pipeline should outpace training by a wide margin (it does: that is why patches are
   sampled on the fly rather than pre-extracted); printed, not a ratio row.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from harness import compare, emit, parser

from medimg.datasets import brats
from medimg.models import unet
from medimg.patches import grid_starts, sliding_window_predict


def textbook_sliding_window(model, image, patch, overlap=0.5):
    out = None
    counts = np.zeros((*image.shape[:3], 1), np.float32)
    for start in grid_starts(image.shape[:3], patch, overlap=overlap):
        window = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
        prediction = model.predict(image[window][None], verbose=0)[0]
        if out is None:
            out = np.zeros((*image.shape[:3], prediction.shape[-1]), np.float32)
        out[window] += prediction
        counts[window] += 1
    return out / counts


def synthetic_subject(shape, rng):
    image = rng.normal(0.0, 1.0, size=(*shape, 4)).astype(np.float32) + 5.0
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r = (((x - shape[0] / 2) / (shape[0] / 6)) ** 2 + ((y - shape[1] / 2) / (shape[1] / 6)) ** 2
         + ((z - shape[2] / 2) / (shape[2] / 6)) ** 2)
    label = np.zeros(shape, np.uint8)
    label[r < 1] = 2
    label[r < 0.4] = 1
    label[(r > 0.4) & (r < 0.6)] = 3
    image[..., 0] += 2.0 * (label > 0)
    return image, label


def write_cache(folder: Path, n: int, shape, rng) -> list[Path]:
    import h5py

    paths = []
    for i in range(n):
        image, label = synthetic_subject(shape, rng)
        path = folder / f"subject_{i:03d}.h5"
        with h5py.File(path, "w") as h5:
            h5.create_dataset("image", data=image)
            h5.create_dataset("label", data=label)
            h5.attrs["subject"] = path.stem
        paths.append(path)
    return paths


def main() -> None:
    args = parser(__doc__).parse_args()
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    shape = (64, 64, 48) if args.quick else (128, 160, 136)
    patch = (32, 32, 32) if args.quick else (64, 64, 64)
    image, _ = synthetic_subject(shape, rng)
    model = unet((None, None, None, 4), 3, depth=3, base_filters=8)
    n_windows = len(grid_starts(shape, patch, overlap=0.5))
    print(f"volume {shape}x4, window {patch}, 50% overlap: {n_windows} windows")
    fast = sliding_window_predict(model, image, patch, overlap=0.5, batch_size=4,
                                  blend="constant")
    slow = textbook_sliding_window(model, image, patch)
    np.testing.assert_allclose(fast, slow, atol=1e-4)  # same answer with the same weights
    row = compare("sliding-window prediction (volumes)",
                  lambda: textbook_sliding_window(model, image, patch),
                  lambda: sliding_window_predict(model, image, patch, overlap=0.5,
                                                 batch_size=4, blend="gaussian"),
                  items=1, repeats=max(1, args.repeats - 1 if not args.quick else args.repeats))
    emit(row)
    print(f"seconds per volume: textbook {1 / row.textbook_items_per_s:.1f} s, "
          f"medimg {1 / row.medimg_items_per_s:.1f} s")

    # tf.data pipeline against one training step
    train_patch, batch_size, per_subject = ((16, 16, 16), 2, 4) if args.quick else \
        ((48, 48, 32), 2, 16)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_cache(Path(tmp), 4 if args.quick else 8,
                            (48, 48, 40) if args.quick else (130, 160, 140), rng)
        ds = brats.dataset(paths, patch_shape=train_patch, batch_size=batch_size,
                           patches_per_subject=per_subject, max_background=0.9, seed=0)
        n_patches = int(ds.cardinality()) * batch_size
        for _ in ds:  # first pass loads the subjects
            pass
        start = time.perf_counter()
        for _ in ds:
            pass
        pipeline_rate = n_patches / (time.perf_counter() - start)
        cached = brats.dataset(paths, patch_shape=train_patch, batch_size=batch_size,
                               patches_per_subject=per_subject, max_background=0.9, seed=0,
                               sampling="pre_extracted")
        start = time.perf_counter()
        for _ in cached:  # first epoch draws the patches
            pass
        first_epoch_rate = n_patches / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in cached:
            pass
        cached_rate = n_patches / (time.perf_counter() - start)
        demo = brats.build_model(patch_shape=train_patch, depth=3 if not args.quick else 2,
                                 base_filters=8)
        batches = list(ds.take(4))
        demo.train_on_batch(*batches[0])
        start = time.perf_counter()
        for x, y in batches[1:]:
            demo.train_on_batch(x, y)
        step_rate = (len(batches) - 1) * batch_size / (time.perf_counter() - start)
    print(f"tf.data pipeline: {pipeline_rate:.0f} patches/s of {train_patch}; one training "
          f"step consumes {step_rate:.1f} patches/s: the pipeline is "
          f"{pipeline_rate / step_rate:.0f}x faster than training needs")
    print(f"pre-extracted instead: {first_epoch_rate:.0f} patches/s in the first epoch, "
          f"{cached_rate:.0f} patches/s from the in-memory cache afterwards; either way "
          "training is the bottleneck, so on-the-fly sampling (new patches every epoch) is "
          "the default")


if __name__ == "__main__":
    main()
