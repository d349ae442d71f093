"""RSNA images delivered to the model: the textbook generator vs medimg's cached tf.data.

Textbook (as in many tutorials): every epoch iterates the DataFrame row by row, reads
and decodes each DICOM again, resamples to 1 mm with ``scipy.ndimage.zoom`` (cubic
spline), resizes to the network input with cubic interpolation, applies CLAHE and
yields batches. medimg: ``rsna.build_cache`` decodes, resizes once (area averaging,
one interpolation) and applies CLAHE once, in parallel, into uint8 files read once into
memory; every epoch then reads ``classification.make_dataset`` (gather, convert, prefetch).

Two stages, each measured in the same run, interleaved:

1. *Epoch 2 onwards*: one epoch of the textbook generator vs one epoch of the cached
   ``tf.data`` pipeline (the cache exists; it is read, not rebuilt).
2. *Building the cache*: the textbook preprocessing of every file (decode, zoom, cubic,
   CLAHE) vs ``build_cache`` from scratch (decode, one area resize, CLAHE; all cores).

Usage: ``python benchmarks/bench_rsna_pipeline.py [--quick] [--n 64] [--size 128]``
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil
import tempfile
from pathlib import Path

import numpy as np
from harness import compare, emit, parser


def textbook_preprocess(path: str, size: int) -> np.ndarray:
    """What the tutorials do for one file (decode, zoom to 1 mm, cubic resize, CLAHE)."""
    import cv2
    import pydicom
    from scipy import ndimage

    ds = pydicom.dcmread(path)
    image = ds.pixel_array.astype(np.float32)
    spacing = [float(v) for v in ds.PixelSpacing]
    image = ndimage.zoom(image, spacing)  # to 1 mm (cubic spline, order 3)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8)).apply(image)


def textbook_generator(table, size: int, batch_size: int, feature_columns):
    """One epoch: row by row, decoding every file again."""
    images, features, targets = [], [], []
    for _, row in table.iterrows():
        images.append(textbook_preprocess(row["path"], size)[..., None] / 255.0)
        features.append(row[list(feature_columns)].to_numpy(np.float32))
        targets.append(row["Target"])
        if len(images) == batch_size:
            yield (np.stack(images), np.stack(features)), np.asarray(targets, np.float32)
            images, features, targets = [], [], []
    if images:
        yield (np.stack(images), np.stack(features)), np.asarray(targets, np.float32)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=None, help="patients (images)")
    p.add_argument("--size", type=int, default=128, help="model input side in pixels")
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    n = args.n or (12 if args.quick else 48)

    from medimg.datasets import rsna
    from medimg.io import dicom_metadata
    from medimg.synthetic.rsna import make_rsna
    from medimg.tasks import classification, pneumonia

    work = Path(tempfile.mkdtemp(prefix="medimg-bench-rsna-"))
    try:
        root = make_rsna(work / "data", n, seed=0, n_test_patients=0, progress=False)
        patients = rsna.patients(rsna.load_labels(root))
        table = pneumonia.feature_table(patients, dicom_metadata(patients.path, progress=False))
        shape = (args.size, args.size)
        cache = rsna.build_cache(table, work / "cache", image_shape=shape, progress=False)
        ds = classification.make_dataset(
            cache.images_for(table.patientId),
            table[list(pneumonia.FEATURE_COLUMNS)].to_numpy(np.float32),
            table.Target.to_numpy(np.float32), batch_size=args.batch, shuffle=True, seed=0)

        def textbook_epoch():
            return sum(len(t) for _, t in textbook_generator(table, args.size, args.batch,
                                                                 pneumonia.FEATURE_COLUMNS))

        def medimg_epoch():
            return sum(int(t.shape[0]) for _, t in ds)

        assert textbook_epoch() == medimg_epoch() == len(table)
        emit(compare(f"RSNA images to the model, epoch >= 2 ({args.size} px)", textbook_epoch,
                     medimg_epoch, items=len(table), repeats=args.repeats,
                     note="textbook decodes+zoom+cubic+CLAHE every epoch; medimg reads the "
                          "uint8 cache via tf.data"))

        def textbook_build():
            return [textbook_preprocess(path, args.size) for path in table.path]

        def medimg_build():
            shutil.rmtree(work / "cache", ignore_errors=True)
            return rsna.build_cache(table, work / "cache", image_shape=shape, progress=False)

        emit(compare(f"RSNA cache build ({args.size} px)", textbook_build, medimg_build,
                     items=len(table), repeats=args.repeats,
                     note=f"zoom+cubic serial vs one area resize on {os.cpu_count()} cores"))

        def medimg_build_one_process():
            shutil.rmtree(work / "cache", ignore_errors=True)
            return rsna.build_cache(table, work / "cache", image_shape=shape, n_jobs=1,
                                    progress=False)

        # The same without parallelism: what one interpolation and the faster decoder
        # path buy on their own.
        emit(compare(f"RSNA cache build, one process ({args.size} px)", textbook_build,
                     medimg_build_one_process, items=len(table), repeats=args.repeats,
                     note="zoom+cubic vs one area resize, both serial"))

        # Same pixels? The cache is sharper (area averaging) but must show the same image.
        textbook_image = textbook_preprocess(table.path.iloc[0], args.size).astype(float)
        cached = np.asarray(cache.images[cache.rows([table.patientId.iloc[0]])[0]], float)
        corr = np.corrcoef(textbook_image.ravel(), cached.ravel())[0, 1]
        print(f"correlation of textbook and cached pixels for one image: {corr:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
