"""GPU check: what the ``full`` profile needs from a GPU, measured in under 5 minutes.

Run it as is on a machine with a GPU, from the repository root::

    python benchmarks/gpu_check.py            # full sizes (a GPU)
    python benchmarks/gpu_check.py --quick    # small sizes (proves it runs, e.g. on a CPU)

Keras runs on TensorFlow when TensorFlow imports, else on JAX (GPU machines that have
JAX but no TensorFlow); ``--backend jax|tensorflow`` forces one. It prints one table:

- 3-D U-Net training steps/s at the full profile's patch (4x128x128x128, batch 2,
  5 levels, 32 base filters, three sigmoid region outputs, soft Dice + cross-entropy),
  in float32 and in mixed precision (``mixed_float16``), and the patches/s that asks of
  the input pipeline (``benchmarks/bench_patch_pipeline.py`` measures what it gives);
- sliding-window prediction: seconds per 240x240x155 four-channel volume (128^3 windows,
  overlap 0.5, Gaussian blending; :func:`medimg.patches.sliding_window_predict`);
- CLAHE on a batch of 16 512x512 images: medimg's TensorFlow path on the device against
  OpenCV on the CPU (needs TensorFlow: under JAX the row says so and only OpenCV runs).

Each row stops timing after a few seconds (``--seconds``); compilation is excluded
(one untimed warm-up step). Nothing is asserted: it reports.

Status: written and run on a CPU with ``--quick`` (both backends); it has **not yet run
on a GPU** (no GPU was available when it was written).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("medimg") is None:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent / "src"))


def choose_backend(requested: str | None) -> str:
    """Set ``KERAS_BACKEND`` before Keras is imported (it is read once, at import)."""
    if requested:
        backend = requested
    elif os.environ.get("KERAS_BACKEND"):
        backend = os.environ["KERAS_BACKEND"]
    elif importlib.util.find_spec("tensorflow") is not None:
        backend = "tensorflow"
    else:
        backend = "jax"
    os.environ["KERAS_BACKEND"] = backend
    return backend


def devices(backend: str) -> str:
    if backend == "jax":
        import jax

        return ", ".join(f"{d.platform}:{getattr(d, 'device_kind', d)}" for d in jax.devices())
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return ", ".join(d.name for d in gpus) or "CPU only"


def timed(step, seconds: float, minimum: int = 2) -> tuple[float, int]:
    """Seconds per call of ``step`` (after one untimed call), over at least ``minimum``
    calls and about ``seconds`` of wall time."""
    step()  # compile / warm up
    calls, start = 0, time.perf_counter()
    while calls < minimum or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return (time.perf_counter() - start) / calls, calls


def training_rows(args, sizes, backend) -> list[tuple[str, str, str]]:
    import keras
    import numpy as np

    from medimg.metrics import soft_dice_loss
    from medimg.models import unet

    def loss(y_true, y_pred):
        from keras import losses, ops

        bce = losses.binary_crossentropy(ops.cast(y_true, "float32"),
                                         ops.cast(y_pred, "float32"))
        return soft_dice_loss(y_true, y_pred) + ops.mean(bce)

    patch, depth, filters, batch = sizes["patch"], sizes["depth"], sizes["filters"], 2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *patch, 4)).astype("float32")
    y = (rng.random((batch, *patch, 3)) > 0.9).astype("float32")
    rows = []
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_dtype_policy(policy)
        # TensorFlow's CPU kernels have no float16 3-D pooling: XLA (which has) is the
        # fallback when the default compilation cannot run a row
        for jit in ("auto", True):
            try:
                model = unet((*patch, 4), 3, depth=depth, base_filters=filters,
                             final_activation="sigmoid")
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss,
                              jit_compile=jit)
                seconds, calls = timed(lambda m=model: m.train_on_batch(x, y), args.seconds)
                rows.append((f"3-D U-Net training, {policy}",
                             f"{1 / seconds:.2f} steps/s = {batch / seconds:.1f} patches/s",
                             f"batch {batch} of 4x{'x'.join(map(str, patch))}, {depth} levels, "
                             f"{filters} filters, {model.count_params() / 1e6:.1f} M "
                             f"parameters, {calls} steps timed"
                             + (", XLA (the default compilation failed)" if jit is True
                                else "")))
                break
            except Exception as exc:  # a row that cannot run says why; the others run
                if jit is True or backend != "tensorflow":
                    rows.append((f"3-D U-Net training, {policy}", "failed",
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"))
                    break
            finally:
                keras.mixed_precision.set_dtype_policy("float32")
                keras.backend.clear_session()
                keras.mixed_precision.set_dtype_policy(policy)
        keras.mixed_precision.set_dtype_policy("float32")
    return rows


def sliding_row(args, sizes) -> tuple[str, str, str]:
    import keras
    import numpy as np

    from medimg.models import unet
    from medimg.patches import sliding_window_predict

    patch, volume = sizes["patch"], sizes["volume"]
    model = unet((*patch, 4), 3, depth=sizes["depth"], base_filters=sizes["filters"],
                 final_activation="sigmoid")
    image = np.random.default_rng(1).normal(size=(*volume, 4)).astype("float32")
    try:
        seconds, calls = timed(lambda: sliding_window_predict(model, image, patch, overlap=0.5,
                                                              batch_size=2), args.seconds,
                               minimum=1)
        return ("sliding-window prediction", f"{seconds:.2f} s per volume",
                f"{'x'.join(map(str, volume))}x4, windows {'x'.join(map(str, patch))}, "
                f"overlap 0.5, float32, {calls} volume(s) timed")
    except Exception as exc:
        return ("sliding-window prediction", "failed",
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    finally:
        keras.backend.clear_session()


def clahe_rows(args, sizes, backend) -> list[tuple[str, str, str]]:
    import numpy as np

    try:
        import cv2
    except ImportError:
        return [("CLAHE", "not run", "OpenCV (opencv-python-headless) is not installed")]
    n, size = 16, sizes["clahe"]
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    clahe = cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8))
    seconds, _ = timed(lambda: [clahe.apply(image) for image in batch], args.seconds)
    rows = [("CLAHE, OpenCV (CPU)", f"{n / seconds:.0f} images/s",
             f"batch of {n} {size}x{size} uint8, one image at a time")]
    if backend != "tensorflow":
        rows.append(("CLAHE, medimg on the device", "skipped",
                     "medimg's CLAHE on tensors is TensorFlow code: not run under JAX"))
        return rows
    import tensorflow as tf

    from medimg.intensity import clahe as medimg_clahe

    tensor = tf.constant(batch)
    ours, _ = timed(lambda: medimg_clahe(tensor).numpy(), args.seconds)
    same = np.array_equal(medimg_clahe(tensor).numpy(), np.stack([clahe.apply(b) for b in batch]))
    rows.append(("CLAHE, medimg (TensorFlow)", f"{n / ours:.0f} images/s",
                 f"{seconds / ours:.1f}x OpenCV; equal to OpenCV: {same}"))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (any machine)")
    p.add_argument("--backend", choices=("jax", "tensorflow"), default=None)
    p.add_argument("--seconds", type=float, default=None, help="timing per row")
    args = p.parse_args()
    backend = choose_backend(args.backend)
    if args.quick:
        sizes = {"patch": (32, 32, 32), "depth": 3, "filters": 8, "volume": (64, 64, 48),
                 "clahe": 128}
        args.seconds = args.seconds or 1.0
    else:
        sizes = {"patch": (128, 128, 128), "depth": 5, "filters": 32,
                 "volume": (240, 240, 155), "clahe": 512}
        args.seconds = args.seconds or 20.0
    try:
        import keras
    except ImportError:
        print("gpu_check: Keras is not installed here: pip install keras "
              "opencv-python-headless (and jax[cuda12] or tensorflow[and-cuda])",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows = training_rows(args, sizes, backend)
    rows.append(sliding_row(args, sizes))
    rows += clahe_rows(args, sizes, backend)
    print(f"\nmedimg GPU check{' (--quick sizes)' if args.quick else ''}: Keras "
          f"{keras.__version__} on {backend}; devices: {devices(backend)}; "
          f"{platform.node()}; {time.perf_counter() - start:.0f} s")
    width = max(len(r[0]) for r in rows)
    value = max(len(r[1]) for r in rows)
    print(f"{'check':<{width}}  {'result':<{value}}  notes")
    print("-" * (width + value + 40))
    for name, result, note in rows:
        print(f"{name:<{width}}  {result:<{value}}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
