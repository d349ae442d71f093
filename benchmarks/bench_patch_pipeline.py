"""The training input pipeline at the full profile's patch size, from the on-disk cache.

BraTS-sized synthetic subjects (:func:`medimg.synthetic.make_brats`, 240x240x155 at 1 mm,
four sequences) are generated once under ``--scratch`` and preprocessed by the generic
segmentation pipeline into its case cache (the BraTS adapter's plan with the ``full``
profile's 128x128x128 patch; N4 is switched off here only to make the cache quickly: it
changes the voxel values, not what is stored or how it is read).

Rows:

- **pipeline**: patches/s of 4x128x128x128 (float32 image, three region targets) out of
  :func:`medimg.tasks.segmentation.patch_dataset` (``tf.data``: a parallel map of reads,
  batches of 2, prefetch) against the same reader called in a plain Python loop (what a
  ``from_generator`` pipeline does: one thread), interleaved. The absolute rate is what
  to hold against a training step: NVIDIA's published nnU-Net figure on one A100 is about
  27 such patches/s in float16, so a pipeline above ~30 patches/s keeps such a GPU fed
  (``--train-step`` also times one step of the full 3-D U-Net on this CPU).
- **memory**: peak resident memory (RSS sampled every 10 ms; ``ru_maxrss`` would include
  the parent's memory at fork) of a
  process that reads one epoch through ``patch_dataset`` from 12 and from 48 subjects
  (each in a fresh process; the same number of patches per epoch, ``--patches-per-case``
  per subject of the larger set), and its growth over the RSS once TensorFlow is
  imported and the dataset built.

Usage::

    python benchmarks/bench_patch_pipeline.py [--subjects 48] [--scratch DIR] [--train-step]

The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from harness import Row, emit, parser

HERE = Path(__file__).resolve().parent


def prepared_cache(scratch: Path, n_subjects: int, shape, patch, n_jobs: int = -1):
    """Subjects made once and preprocessed into the segmentation cache: (plan, cached)."""
    from medimg.synthetic import make_brats
    from medimg.tasks import brats
    from medimg.tasks import segmentation as seg

    root = scratch / f"brats-{'x'.join(map(str, shape))}"
    folder = root / "MICCAI_BraTS2020_TrainingData"
    have = len(list(folder.glob("BraTS20_Training_*"))) if folder.is_dir() else 0
    if have < n_subjects:
        make_brats(root, n_subjects, seed=0, shape=shape, compress=False, n_jobs=n_jobs,
                   progress=False)
    cases = brats.find_cases(root)
    cases = cases[cases["label"].notna()].head(n_subjects)
    cases.attrs.update(brats.find_cases(root).attrs)
    prints = seg.fingerprint(cases, n_jobs=n_jobs, progress=False)
    plan = seg.make_plan(prints, patch_shape=list(patch), max_depth=5 if patch[0] >= 64 else 3,
                         base_filters=32, batch_size=2, bias_correction=False)
    manifest = seg.preprocess(cases, plan, scratch / "cache", n_jobs=n_jobs, progress=False)
    bad = manifest[manifest["status"] == "error"]
    if len(bad):
        raise RuntimeError(f"preprocessing failed: {bad['error'].iloc[0]}")
    return plan, seg.cached_cases(manifest)


_MEMORY_SCRIPT = r"""
import json, os, resource, sys, threading, time
import numpy as np
from medimg.tasks import segmentation as seg
page = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20
plan = seg.Plan.from_dict(json.loads(sys.argv[1]))
paths = json.loads(sys.argv[2])
per_case = int(sys.argv[3])
def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
marks = {"imported": maxrss_mb()}
ds = seg.patch_dataset(paths, plan, patches_per_case=per_case, batch_size=2, seed=0)
marks["dataset built"] = maxrss_mb()
baseline = rss_mb()
peak = [baseline]
done = threading.Event()
def watch():
    while not done.wait(0.01):
        peak[0] = max(peak[0], rss_mb())
watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
start = time.perf_counter()
count = 0
for images, targets in ds:
    count += int(images.shape[0])
    if count == 2:
        marks["first batch"] = maxrss_mb()
seconds = time.perf_counter() - start
done.set(); watcher.join()
print("RESULT " + json.dumps({"patches": count, "seconds": seconds, "baseline_mb": baseline,
                              "peak_mb": max(peak[0], rss_mb()),
                              "maxrss_mb": maxrss_mb(), "marks": marks}))
"""


def epoch_memory(plan, paths, per_case) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, json.dumps(plan.to_dict()),
                           json.dumps([str(p) for p in paths]), str(per_case)],
                          capture_output=True, text=True, env=env, check=True)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def train_step_seconds(plan) -> float:
    """Seconds of one training step of the plan's U-Net (batch 2) on this machine."""
    import keras

    from medimg.tasks import segmentation as seg

    model = seg.build_model(plan)
    seg.compile_model(model, plan)
    x = np.random.default_rng(0).normal(size=(2, *plan.patch_shape, plan.n_channels))
    y = (np.random.default_rng(1).random((2, *plan.patch_shape, plan.n_outputs)) > 0.9)
    model.train_on_batch(x.astype(np.float32), y.astype(np.float32))  # build and trace
    start = time.perf_counter()
    model.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    keras.backend.clear_session()
    return time.perf_counter() - start


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--subjects", type=int, default=48)
    p.add_argument("--small", type=int, default=12, help="the smaller memory run")
    p.add_argument("--patches-per-case", type=int, default=4)
    p.add_argument("--batches", type=int, default=12, help="batches per timed call")
    p.add_argument("--train-step", action="store_true", help="time one full-size U-Net step")
    p.add_argument("--memory-only", action="store_true", help="only the memory rows")
    p.add_argument("--no-memory", action="store_true", help="skip the memory rows")
    p.add_argument("--scratch", default=os.environ.get("MEDIMG_BENCH_SCRATCH",
                                                       "/tmp/medimg-bench"))
    args = p.parse_args()
    if args.quick:
        shape, patch, n, small, batches = (96, 96, 64), (48, 48, 32), 4, 2, 4
    else:
        shape, patch, n, small, batches = ((240, 240, 155), (128, 128, 128), args.subjects,
                                           args.small, args.batches)
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    plan, cached = prepared_cache(scratch, n, shape, patch)
    print(f"{len(cached)} cases cached in {time.perf_counter() - start:.0f} s, patch "
          f"{plan.n_channels}x{'x'.join(map(str, plan.patch_shape))}, outputs {plan.outputs}")
    from medimg.tasks import segmentation as seg

    paths = list(cached["path"][:small])
    if args.memory_only:
        return memory_rows(plan, cached, small, n, args.patches_per_case)
    ds = seg.patch_dataset(paths, plan, patches_per_case=64, batch_size=2, seed=0)
    reader = ds.reader
    rng = np.random.default_rng(0)

    def pipeline() -> float:
        # a fresh iterator each call, its first batch (start-up) untimed; nothing reads
        # ahead while the other side is timed
        iterator = iter(ds)
        next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        seconds = time.perf_counter() - start
        del iterator
        return seconds

    def loop() -> float:
        start = time.perf_counter()
        for _ in range(2 * batches):
            reader.sample(int(rng.integers(len(paths))), int(rng.integers(2**62)))
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"loop": [], "pipeline": []}
    loop(), pipeline()  # warm-up
    for _ in range(args.repeats):
        times["loop"].append(loop())
        times["pipeline"].append(pipeline())
    rates = {k: 2 * batches / statistics.median(v) for k, v in times.items()}
    row = Row(f"patch pipeline {plan.n_channels}x{'x'.join(map(str, plan.patch_shape))}",
              rates["loop"], rates["pipeline"], rates["pipeline"] / rates["loop"],
              2 * batches, args.repeats,
              note=f"textbook = the reader in a Python loop (one thread, no targets); "
                   f"medimg = tf.data (targets, batches of 2, steady state); load "
                   f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    emit(row)
    if args.train_step:
        seconds = train_step_seconds(plan)
        print(f"one training step (batch 2, {plan.depth} levels, {plan.base_filters} filters) "
              f"on this CPU: {seconds:.1f} s = {2 / seconds:.2f} patches/s consumed; the "
              f"pipeline gives {row.medimg_items_per_s:.1f} patches/s")
    if not args.no_memory:
        memory_rows(plan, cached, small, n, args.patches_per_case)


def memory_rows(plan, cached, small, n, per_case, repeats=2) -> None:
    # the same number of patches per epoch from either set: only the subjects differ;
    # interleaved and repeated (the allocator and the machine's load move the peak)
    for count in [small, n] * repeats:
        result = epoch_memory(plan, list(cached["path"][:count]), per_case * n // count)
        print(f"memory, {count} subjects, one epoch of {result['patches']} patches "
              f"({result['patches'] / result['seconds']:.1f} patches/s): peak RSS over the "
              f"epoch {result['peak_mb']:.0f} MB, {result['peak_mb'] - result['baseline_mb']:.0f}"
              f" MB above the RSS once the dataset is built ({result['baseline_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
