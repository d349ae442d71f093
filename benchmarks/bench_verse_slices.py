"""VerSe sagittal slices: the textbook PNG-per-slice approach against medimg's slice cache.

Textbook (as in many spine-segmentation tutorials): load each NIfTI with nibabel, bring it
to the closest canonical orientation, cut every sagittal slice, resize it with PIL, put it
in the bone window as 8 bits and write one PNG per slice (and one per label slice); every
epoch then opens and decodes every PNG again.

medimg: the generic segmentation pipeline's preprocessing as the spine chapter runs it
(:func:`medimg.tasks.segmentation.preprocess` with a 2-D sagittal plan through the VerSe
adapter: canonical orientation, in-plane resampling of whole volumes, CT normalised, one
chunked HDF5 file per scan, parallel over scans) once; an epoch reads the HDF5 arrays.

Two rows, slices/s: extraction (NIfTI -> files on disk) and loading one epoch (files ->
arrays in memory). Run: ``python benchmarks/bench_verse_slices.py [--quick]``.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np
from harness import compare, emit, parser

from medimg.synthetic.verse import make_verse
from medimg.tasks import segmentation, spine

SPACING_MM = 1.0
WINDOW = (400.0, 1800.0)


def textbook_extract(subjects, out: Path) -> int:
    import nibabel as nib
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    low = WINDOW[0] - WINDOW[1] / 2
    n = 0
    for row in subjects.itertuples(index=False):
        ct = nib.as_closest_canonical(nib.load(row.ct_path))
        mask = nib.as_closest_canonical(nib.load(row.mask_path))
        image = ct.get_fdata()
        label = np.asarray(mask.dataobj).astype(np.uint8)
        zooms = ct.header.get_zooms()
        size = (round(image.shape[1] * zooms[1] / SPACING_MM),   # width: posterior->anterior
                round(image.shape[2] * zooms[2] / SPACING_MM))   # height: inferior->superior
        for i in range(image.shape[0]):
            pixels = np.clip((image[i].T[::-1] - low) / WINDOW[1] * 255, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).resize(size, Image.BILINEAR).save(
                out / f"{row.scan}_{i:04d}_ct.png")
            Image.fromarray(np.ascontiguousarray(label[i].T[::-1])).resize(
                size, Image.NEAREST).save(out / f"{row.scan}_{i:04d}_msk.png")
            n += 1
    return n


def textbook_load(folder: Path) -> int:
    from PIL import Image

    images, labels = [], []
    for path in sorted(folder.glob("*_ct.png")):
        images.append(np.asarray(Image.open(path)))
        labels.append(np.asarray(Image.open(str(path).replace("_ct.png", "_msk.png"))))
    return len(images)


def medimg_load(manifest) -> int:
    n = 0
    for path in segmentation.cached_cases(manifest).path:
        image, label, _ = segmentation.read_case(path)
        for i in range(len(image)):
            np.asarray(image[i]).copy()
            np.asarray(label[i]).copy()
            n += 1
    return n


def main() -> None:
    args = parser(__doc__).parse_args()
    n_scans = 2 if args.quick else 6
    with tempfile.TemporaryDirectory(prefix="bench-verse-") as tmp:
        tmp = Path(tmp)
        make_verse(tmp / "data", n_scans, seed=0, n_jobs=-1)
        cases = spine.find_cases(tmp / "data")
        labelled = cases[cases.label.notna()]
        labelled.attrs.update(cases.attrs)
        subjects = labelled.rename(columns={"case": "scan", "label": "mask_path"}).assign(
            ct_path=[images[0] for images in labelled.images])
        plan = segmentation.make_plan(
            segmentation.fingerprint(labelled, n_jobs=-1, progress=False), dimensionality="2d",
            slice_axis="sagittal", target_spacing=[SPACING_MM] * 3, crop_to_nonzero=False,
            patch_shape=[64, 64])
        counter = itertools.count()

        def fresh(name: str) -> Path:
            path = tmp / f"{name}-{next(counter)}"
            return path

        def run_textbook_extract():
            out = fresh("png")
            textbook_extract(subjects, out)
            shutil.rmtree(out)

        def run_medimg_extract():
            out = fresh("cache")
            segmentation.preprocess(labelled, plan, out, n_jobs=-1, progress=False)
            shutil.rmtree(out)

        n_slices = textbook_extract(subjects, tmp / "png-kept")
        manifest = segmentation.preprocess(labelled, plan, tmp / "cache-kept", n_jobs=-1,
                                           progress=False)
        assert medimg_load(manifest) == n_slices
        emit(compare("verse slices: extraction (NIfTI -> slice files)", run_textbook_extract,
                     run_medimg_extract, items=n_slices, repeats=args.repeats,
                     note=f"{n_scans} scans, PNG per slice vs HDF5 cache, 2 processes"))
        emit(compare("verse slices: loading one epoch", lambda: textbook_load(tmp / "png-kept"),
                     lambda: medimg_load(manifest), items=n_slices, repeats=args.repeats,
                     note="PIL decode of every PNG vs HDF5 case files"))


if __name__ == "__main__":
    main()
