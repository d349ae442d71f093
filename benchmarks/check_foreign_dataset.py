"""The generic segmentation pipeline on a data set that medimg did not write.

MONAI's ``create_test_image_3d`` (noisy spheres of two classes, MONAI's own generator,
not medimg's phantoms) fills a data set in the Medical Segmentation Decathlon layout:
``dataset.json`` with ``modality``, ``labels``, ``training`` and ``test``, 4-D images of
two channels (the second a different view of the same spheres), spacing 0.8 x 0.8 x 2.5
mm, and three orientations that differ between cases (RAS, LPS, PIR: the arrays are
transposed and flipped accordingly, so the anatomy is the same in millimetres). Then, as
a user would, from the command line:

1. ``medimg train segmentation --data ROOT --out OUT --profile demo`` (the held-out test
   cases are chosen by the config's split, never seen in training or model selection);
2. ``medimg predict segmentation`` on every held-out case and on the unlabelled
   ``imagesTs`` cases (stored PIR), each written on its own grid and affine;
3. ``medimg evaluate segmentation`` on those predictions against the labels.

It checks that every prediction has its input's shape and affine, and prints the
held-out Dice per label with its interval. MONAI is not a dependency of medimg: run this
in the peers environment of ``benchmarks/README.md``::

    .venv-peers/bin/python benchmarks/check_foreign_dataset.py [--cases 24] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

SPACING = (0.8, 0.8, 2.5)
SHAPE = (96, 96, 40)  # voxels, in RAS order
ORIENTATIONS = ("RAS", "LPS", "PIR")


def _oriented(array: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """``array`` (x, y, z[, c]) in RAS voxel order re-stored in orientation ``codes``, and
    the affine that puts each voxel where it was (same millimetres)."""
    ras = nib.orientations.axcodes2ornt("RAS")
    target = nib.orientations.axcodes2ornt(tuple(codes))
    transform = nib.orientations.ornt_transform(ras, target)
    spatial = array.shape[:3]
    out = nib.orientations.apply_orientation(array, transform)
    base = np.diag([*SPACING, 1.0])
    affine = base @ nib.orientations.inv_ornt_aff(transform, spatial)
    return np.ascontiguousarray(out), affine


def write_dataset(root: Path, n_cases: int, n_test: int, seed: int) -> Path:
    from monai.data.synthetic import create_test_image_3d

    task = root / "Task990_MonaiSpheres"
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (task / folder).mkdir(parents=True, exist_ok=True)
    state = np.random.RandomState(seed)
    training, test = [], []
    for k in range(n_cases + n_test):
        image, seg = create_test_image_3d(*SHAPE, num_objs=8, rad_max=14, rad_min=6,
                                          noise_max=0.5, num_seg_classes=2,
                                          random_state=state)
        second = 1.0 - image + state.uniform(0, 0.4, size=image.shape).astype(np.float32)
        channels = np.stack([image * 400.0 + 100.0, second * 250.0], axis=-1).astype(np.float32)
        codes = ORIENTATIONS[k % len(ORIENTATIONS)] if k < n_cases else "PIR"
        data, affine = _oriented(channels, codes)
        labels, _ = _oriented(seg.astype(np.uint8), codes)
        name = f"spheres_{k:03d}.nii.gz"
        if k < n_cases:
            nib.save(nib.Nifti1Image(data, affine), task / "imagesTr" / name)
            nib.save(nib.Nifti1Image(labels, affine), task / "labelsTr" / name)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            nib.save(nib.Nifti1Image(data, affine), task / "imagesTs" / name)
            test.append(f"./imagesTs/{name}")
    (task / "dataset.json").write_text(json.dumps({
        "name": "MonaiSpheres", "description": "MONAI create_test_image_3d spheres",
        "tensorImageSize": "4D", "modality": {"0": "MRI", "1": "MRI"},
        "labels": {"0": "background", "1": "dim", "2": "bright"},
        "numTraining": len(training), "numTest": len(test),
        "training": training, "test": test}, indent=1))
    return task


def medimg(*args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "medimg"), *args]
    print("$ medimg " + " ".join(args), flush=True)
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=24, help="labelled cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None, help="write the data set and run here")
    args = p.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="medimg-foreign-"))
    task = write_dataset(base / "data", args.cases, 2, args.seed)
    out = base / "run"
    start = time.perf_counter()
    done = medimg("train", "segmentation", "--data", str(task), "--out", str(out),
                  "--profile", "demo")
    print(done.stdout)
    print(f"train: {time.perf_counter() - start:.0f} s")
    from medimg.datasets import msd

    cases = msd.find_cases(task)
    held = out / "held_out"
    held.mkdir(exist_ok=True)
    predictions = out / "predictions"
    test_names = sorted(p.name.removesuffix(".nii.gz") for p in predictions.glob("*.nii.gz"))
    if not test_names:
        raise SystemExit(f"no test predictions under {predictions}")
    unlabelled = sorted(cases.loc[cases.label.isna(), "case"])  # imagesTs: the grid only
    start = time.perf_counter()
    for name in test_names + unlabelled:
        row = cases[cases.case == name].iloc[0]
        target = (held if name in test_names else out / "imagesTs") / f"{name}.nii.gz"
        target.parent.mkdir(exist_ok=True)
        medimg("predict", "segmentation", "--model", str(out / "model.keras"), "--image",
               *row["images"], "--out", str(target))
        written, source = nib.load(target), nib.load(row["images"][0])
        assert written.shape == source.shape[:3], (written.shape, source.shape)
        assert np.allclose(written.affine, source.affine), name
        print(f"  {name}: {''.join(nib.aff2axcodes(source.affine))} grid kept")
    print(f"predict: {(time.perf_counter() - start) / (len(test_names) + len(unlabelled)):.1f} "
          f"s per case")
    done = medimg("evaluate", "segmentation", "--predictions", str(held), "--data", str(task))
    print(done.stdout)
    print(f"data set and run: {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
