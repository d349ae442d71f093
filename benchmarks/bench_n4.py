"""N4 bias-field correction of one brain MRI volume: the textbook call against medimg.

The volume is a synthetic BraTS subject (:func:`medimg.synthetic.synthesize_subject`,
240x240x155 at 1 mm, T1 by default) whose multiplicative bias field is known, so the
quality of each correction can be measured, not just its speed:

* ``corr``: Pearson correlation of the estimated log field with the true log field
  over the brain (N4 finds the field up to a constant factor, which correlation
  ignores);
* ``WM CV``: coefficient of variation (std / mean) of white matter before and after
  correction; the field spreads one tissue over a range of intensities, so a good
  correction lowers it towards the noise floor.

textbook: SimpleITK's ``N4BiasFieldCorrectionImageFilter`` with its defaults
(4 levels of 50 iterations, 4 control points) at full resolution, with an Otsu mask
(``sitk.OtsuThreshold(image, 0, 1, 200)``), as in the SimpleITK examples.

medimg: :func:`medimg.bias.n4_correct` (Otsu mask, fit on the volume shrunk 4x per
axis, iterations (50, 50, 30, 20), the B-spline field evaluated at full resolution).

ANTsPy (``ants.n4_bias_field_correction`` with its defaults, shrink 4, the same Otsu
mask) is timed too when ``import ants`` works; it is not a medimg dependency (antspyx
pins numpy<2.4 and scipy<1.16): install it aside, e.g.
``pip install --no-deps --target /tmp/ants_pkg antspyx statsmodels patsy webcolors``,
and run with ``PYTHONPATH=/tmp/ants_pkg``.

``--fits 4:50,50,30,20 6:50,50,30`` instead times medimg's N4 with each shrink factor and
list of iterations per fitting level and reports the same two qualities (how the demo
profile's setting was chosen).

The full-size textbook run takes minutes, so the full mode times each side once
(``--repeats`` to change); ``--quick`` uses an 80x80x56 volume with warm-up and repeats.
"""

from __future__ import annotations

import numpy as np
from harness import compare, emit, parser

from medimg.bias import n4_correct
from medimg.io import Volume
from medimg.synthetic.brats import synthesize_subject


def quality(image, log_field, true_field, brain, white):
    """(correlation of log fields over the brain, WM CV after correction)."""
    corrected = image / np.exp(log_field)
    corr = float(np.corrcoef(log_field[brain], np.log(true_field[brain]))[0, 1])
    wm = corrected[white]
    return corr, float(wm.std() / wm.mean())


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--sequence", default="t1", choices=("flair", "t1", "t1ce", "t2"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fits", nargs="+", metavar="SHRINK:ITERATIONS",
                   help="instead of the comparison, medimg's N4 with each setting, e.g. "
                        "4:50,50,30,20 6:50,50,30 (time, field correlation, WM CV)")
    p.set_defaults(repeats=None)
    args = p.parse_args()
    if args.fits:
        compare_fits(args)
        return
    shape = (80, 80, 56) if args.quick else (240, 240, 155)
    repeats = args.repeats or (2 if args.quick else 1)
    warmup = args.quick

    import SimpleITK as sitk

    subject = synthesize_subject(shape, seed=args.seed)
    image = subject.images[args.sequence].astype(np.float32)
    true_field = subject.bias_fields[args.sequence]
    brain = subject.tissue > 0
    white = subject.tissue == 3
    volume = Volume(image, subject.affine)
    wm_before = float(image[white].std() / image[white].mean())
    print(f"{args.sequence} {shape}, true log field std {np.log(true_field[brain]).std():.3f}, "
          f"WM CV before {wm_before:.4f}, SimpleITK threads "
          f"{sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}")

    itk_image = sitk.GetImageFromArray(image.transpose(2, 1, 0))  # (z, y, x) for SimpleITK
    otsu = sitk.OtsuThreshold(itk_image, 0, 1, 200)
    otsu_array = sitk.GetArrayFromImage(otsu).transpose(2, 1, 0)
    results = {}

    def textbook():
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.Execute(itk_image, otsu)
        log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(itk_image))
        results["textbook"] = log_field.transpose(2, 1, 0)

    def medimg():
        _, field = n4_correct(volume, return_field=True)
        results["medimg"] = np.log(field)

    rows = [compare(f"N4 {'x'.join(map(str, shape))} SimpleITK full-res vs medimg",
                    textbook, medimg, items=1, repeats=repeats, warmup=warmup)]
    iterations = sitk.N4BiasFieldCorrectionImageFilter().GetMaximumNumberOfIterations()
    print(f"textbook: SimpleITK defaults, iterations {list(iterations)}, full resolution, "
          f"Otsu mask {int(otsu_array.sum())} voxels")

    try:
        import ants
    except ImportError:
        ants = None
        print("ANTsPy: not importable here (antspyx is no medimg dependency; see the "
              "docstring to install it aside)")
    if ants is not None:
        ants_image = ants.from_numpy(image)
        ants_mask = ants.from_numpy(otsu_array.astype(np.float32))

        def antspy():
            field = ants.n4_bias_field_correction(ants_image, mask=ants_mask,
                                                  return_bias_field=True)
            results["antspy"] = np.log(np.maximum(field.numpy(), 1e-6))

        rows.append(compare(f"N4 {'x'.join(map(str, shape))} ANTsPy vs medimg", antspy, medimg,
                            items=1, repeats=repeats, warmup=warmup))

    notes = []
    for name, log_field in results.items():
        corr, wm_after = quality(image, log_field, true_field, brain, white)
        notes.append(f"{name}: corr {corr:.3f}, WM CV {wm_before:.4f}->{wm_after:.4f}")
    note = "; ".join(notes)
    for row in rows:
        row.note = (f"{1 / row.textbook_items_per_s:.1f} s vs {1 / row.medimg_items_per_s:.2f} s"
                    f" per volume; {note}")
        emit(row)


def compare_fits(args) -> None:
    """medimg's N4 on one subject with several shrink factors and fitting levels: seconds,
    correlation of the estimated log field with the true one (how much of the field is
    found; a fit that also absorbs tissue structure scores lower), white-matter CV after
    (lower is more uniform, but a fit that flattens real tissue variation lowers it too)."""
    import time

    shape = (80, 80, 56) if args.quick else (240, 240, 155)
    subject = synthesize_subject(shape, seed=args.seed)
    image = subject.images[args.sequence].astype(np.float32)
    brain, white = subject.tissue > 0, subject.tissue == 3
    volume = Volume(image, subject.affine)
    print(f"{args.sequence} {shape}, seed {args.seed}, WM CV before "
          f"{image[white].std() / image[white].mean():.4f}")
    for fit in args.fits:
        shrink, iterations = fit.split(":")
        iterations = [int(i) for i in iterations.split(",")]
        start = time.perf_counter()
        _, field = n4_correct(volume, brain, shrink=int(shrink), iterations=iterations,
                              return_field=True)
        seconds = time.perf_counter() - start
        corr, wm_after = quality(image, np.log(field), subject.bias_fields[args.sequence],
                                 brain, white)
        print(f"shrink {shrink}, iterations {iterations}: {seconds:.2f} s, field corr "
              f"{corr:.3f}, WM CV {wm_after:.4f}")


if __name__ == "__main__":
    main()
