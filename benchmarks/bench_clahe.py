"""CLAHE: OpenCV one image at a time (textbook) vs medimg's TensorFlow CLAHE on a batch.

The TensorFlow implementation exists so CLAHE can run inside ``tf.data`` and on a GPU,
matching OpenCV to the grey level. On a CPU, OpenCV's hand-tuned loop is hard to beat,
so expect a ratio below 1 here; the interesting figure is on a GPU (run this script on a
machine with one: the TensorFlow side then runs on the device).

Usage: ``python benchmarks/bench_clahe.py [--quick] [--size 512] [--batch 32]``
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from harness import compare, emit, parser


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--size", type=int, default=None, help="image side in pixels")
    p.add_argument("--batch", type=int, default=None, help="images per batch")
    args = p.parse_args()
    size = args.size or (256 if args.quick else 512)
    batch = args.batch or (8 if args.quick else 32)

    import cv2
    import tensorflow as tf

    from medimg.intensity import clahe

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    base = 120 + 60 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    images = np.clip(base + rng.normal(0, 20, (batch, size, size)), 0, 255).astype(np.uint8)
    op = cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8))

    def textbook():
        return [op.apply(image) for image in images]

    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    with tf.device(device):
        batch_tensor = tf.constant(images)
        run = tf.function(lambda x: clahe(x, 4.0, (8, 8)), jit_compile=False)
        out = run(batch_tensor).numpy()
    diff = int(np.abs(out.astype(int) - np.stack(textbook()).astype(int)).max())

    def medimg():
        with tf.device(device):
            return run(batch_tensor).numpy()  # .numpy() waits for the device

    row = compare(f"CLAHE {size}x{size}, batch of {batch}", textbook, medimg, items=batch,
                  repeats=args.repeats,
                  note=f"TF on {device.strip('/').split(':')[0]}, max diff vs OpenCV {diff} "
                       "grey levels")
    emit(row)


if __name__ == "__main__":
    main()
