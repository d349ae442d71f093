"""BraTS preprocessing throughput (subjects per minute): a plain serial loop against
:func:`medimg.datasets.brats.preprocess` with one and with two worker processes.

Data: synthetic BraTS subjects (:func:`medimg.synthetic.make_brats`, 240x240x155 at
1 mm, ``.nii.gz``, as BraTS distributes them); ``--quick`` uses 64x64x48.

textbook (a serial loop as a notebook would write it, the same N4 settings as medimg
so the comparison is about the pipeline, not the N4 call): per subject, nibabel
``get_fdata`` of the five files, empty slices found by a Python loop over slices,
for each sequence SimpleITK N4 fitted on the volume shrunk 4x (brain mask,
iterations (50, 50, 30, 20)) and its field evaluated at full resolution, label 4
mapped to 3, one gzip-compressed HDF5 file. No orientation handling, no checks, no
resume, no manifest. (The fully textbook choice, SimpleITK N4 at full resolution per
sequence, costs minutes per sequence at this size: see ``bench_n4.py``.)

medimg: ``preprocess(root, out, n_jobs=1 | 2, overwrite=True)`` (reorientation,
shape/affine/label/NaN checks, N4 with shrink 4, crop, atomic HDF5, manifest).

Each call redoes every subject (fresh output folder). Each side is timed once
(``--repeats`` to change): the full mode takes minutes, without warm-up; ``--quick``
warms up first (worker pool started, imports done).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from harness import compare, emit, parser

from medimg.datasets.brats import SEQUENCES, find_subjects, preprocess
from medimg.synthetic.brats import make_brats


def textbook_subject(paths: dict, out: Path, subject: str) -> None:
    import h5py
    import nibabel as nib
    import SimpleITK as sitk

    image = np.stack([nib.load(paths[s]).get_fdata(dtype=np.float32) for s in SEQUENCES], -1)
    label = np.asarray(nib.load(paths["seg"]).get_fdata(), dtype=np.uint8)
    box = []
    for axis in range(3):
        keep = []
        for i in range(image.shape[axis]):
            index = (slice(None),) * axis + (i,)  # a view, not a copy (np.take copies)
            piece = image[index]
            if piece.max() != piece.min() or label[index].any():
                keep.append(i)
        box.append(slice(keep[0], keep[-1] + 1))
    image = np.ascontiguousarray(image[tuple(box)])
    label = label[tuple(box)]
    for c in range(image.shape[-1]):
        channel = image[..., c]
        itk_image = sitk.GetImageFromArray(channel)
        itk_mask = sitk.GetImageFromArray((channel > 0).astype(np.uint8))
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.SetMaximumNumberOfIterations([50, 50, 30, 20])
        corrector.Execute(sitk.Shrink(itk_image, [4] * 3), sitk.Shrink(itk_mask, [4] * 3))
        log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(itk_image))
        image[..., c] = channel / np.exp(log_field)
    label[label == 4] = 3
    with h5py.File(out / f"{subject}.h5", "w") as h5:
        h5.create_dataset("image", data=image, compression="gzip", compression_opts=1)
        h5.create_dataset("label", data=label, compression="gzip", compression_opts=1)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--subjects", type=int, default=4)
    p.set_defaults(repeats=None)
    args = p.parse_args()
    shape = (64, 64, 48) if args.quick else (240, 240, 155)
    repeats = args.repeats or 1
    work = Path(tempfile.mkdtemp(prefix="bench_brats_"))
    try:
        make_brats(work / "raw", args.subjects, seed=0, shape=shape, progress=False)
        table = find_subjects(work / "raw")
        rows = table.to_dict("records")
        print(f"{len(rows)} synthetic subjects {shape}, 4 sequences + seg, .nii.gz")
        counter = iter(range(10**6))

        def fresh() -> Path:
            out = work / f"out{next(counter)}"
            out.mkdir()
            return out

        def textbook():
            out = fresh()
            for row in rows:
                textbook_subject(row, out, row["subject"])

        def medimg(n_jobs):
            def run():
                manifest = preprocess(table, fresh(), n_jobs=n_jobs, progress=False)
                assert (manifest.status == "ok").all(), manifest.error.tolist()
            return run

        n = len(rows)
        size = "x".join(map(str, shape))
        for n_jobs in (1, 2):
            row = compare(f"BraTS preprocess {size}, n_jobs={n_jobs}", textbook, medimg(n_jobs),
                          items=n, repeats=repeats, warmup=args.quick)
            row.note = (f"subjects/min: serial loop {60 * row.textbook_items_per_s:.2f}, "
                        f"medimg n_jobs={n_jobs} {60 * row.medimg_items_per_s:.2f}")
            emit(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
