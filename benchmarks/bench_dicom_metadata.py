"""DICOM metadata table: the textbook approach against medimg.io.dicom_metadata.

Items are JPEG Baseline chest X-ray DICOMs (1024x1024, 8-bit, as the real RSNA set has
them), written by medimg.synthetic.make_rsna into a temporary folder.

Textbook (what most RSNA notebooks do): a thread pool; per file ``pydicom.dcmread`` of the
whole file and ``ds.pixel_array`` (pydicom's default plugin), the header fields parsed
into a one-row DataFrame, all rows concatenated at the end.

medimg: ``dicom_metadata`` -- header-only reads (``stop_before_pixels`` +
``specific_tags``) for the header fields; with ``pixel_stats=True`` it decodes too
(libjpeg-turbo through Pillow); processes on every core, chunked; one DataFrame built
once. Both sides produce the same typed columns (checked before timing).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from harness import compare, emit, parser

from medimg.io import dicom_metadata, opaque_ids
from medimg.synthetic.rsna import make_rsna


def _textbook_row(path: str, pixel_stats: bool) -> pd.DataFrame:
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    age = int(ds.PatientAge) if str(ds.PatientAge).isdigit() else None
    row = {
        "path": path, "patient_id": ds.PatientID,
        "age_years": age if age is not None and age <= 120 else None,
        "sex": ds.PatientSex, "view_position": ds.ViewPosition, "modality": ds.Modality,
        "body_part": ds.BodyPartExamined,
        "pixel_spacing_x_mm": float(ds.PixelSpacing[1]),
        "pixel_spacing_y_mm": float(ds.PixelSpacing[0]),
        "rows": ds.Rows, "columns": ds.Columns,
    }
    if pixel_stats:
        row.update(pixel_min=float(pixels.min()), pixel_max=float(pixels.max()),
                   pixel_mean=float(pixels.mean()), pixel_std=float(pixels.std()))
    return pd.DataFrame([row])


def textbook_metadata(paths: list[str], pixel_stats: bool) -> pd.DataFrame:
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        frames = list(pool.map(lambda p: _textbook_row(p, pixel_stats), paths))
    return pd.concat(frames, ignore_index=True)


def medimg_metadata(paths: list[str], pixel_stats: bool) -> pd.DataFrame:
    return dicom_metadata(paths, pixel_stats=pixel_stats, n_jobs=-1, progress=False)


def main() -> None:
    args = parser(__doc__).parse_args()
    warnings.simplefilter("ignore", UserWarning)  # RSNA's bare-digit ages are invalid AS
    n = 48 if args.quick else 400
    with tempfile.TemporaryDirectory(prefix="bench-rsna-") as tmp:
        root = make_rsna(Path(tmp), n, seed=0, n_test_patients=0, progress=False)
        paths = sorted(str(p) for p in (root / "stage_2_train_images").glob("*.dcm"))
        # same answers both ways, checked before timing
        for stats in (False, True):
            ours = medimg_metadata(paths[:8], stats).set_index("path")
            theirs = textbook_metadata(paths[:8], stats).set_index("path")
            for column in theirs.columns:
                left = ours[column].astype(object).where(ours[column].notna(), None)
                right = theirs[column].astype(object).where(theirs[column].notna(), None)
                if column == "patient_id":  # medimg hides identifiers (opaque hashes)
                    right = pd.Series(opaque_ids(right), index=right.index)
                if column.startswith("pixel_") and column not in ("pixel_spacing_x_mm",
                                                                   "pixel_spacing_y_mm"):
                    # JPEG decoders may differ by one grey level (IDCT rounding)
                    np.testing.assert_allclose(left.astype(float), right.astype(float),
                                               atol=1.0, err_msg=column)
                else:
                    assert list(map(str, left)) == list(map(str, right)), column
        cores = os.cpu_count()
        emit(compare(
            f"DICOM metadata, header fields ({n} JPEG CR files)",
            lambda: textbook_metadata(paths, False), lambda: medimg_metadata(paths, False),
            items=n, repeats=args.repeats, note=f"{cores} cores; target >= 20x"))
        emit(compare(
            f"DICOM metadata + pixel stats ({n} JPEG CR files)",
            lambda: textbook_metadata(paths, True), lambda: medimg_metadata(paths, True),
            items=n, repeats=args.repeats, note=f"{cores} cores; target >= 2.5x"))


if __name__ == "__main__":
    main()
