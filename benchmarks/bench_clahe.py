"""CLAHE: OpenCV one image at a time (textbook) vs medimg's TensorFlow CLAHE on a batch.

The TensorFlow implementation exists so CLAHE can run inside ``tf.data`` and on a GPU
with the pixels OpenCV gives (it equals OpenCV exactly). On a CPU, OpenCV's hand-tuned
loop is the reference; the target is a batch within 3x OpenCV's time per image (a
ratio of 0.33 or more). Peer: kornia's ``equalize_clahe`` on the same batch (float
images in [0, 1]; its own interpolation, so it differs from OpenCV by a few grey
levels). On a machine with a GPU the TensorFlow side runs on the device.

Before timing, the script checks the TensorFlow result against OpenCV on every size
class of OpenCV's padding rule and prints the largest difference per class.

Usage: ``python benchmarks/bench_clahe.py [--quick] [--size 512] [--batch 16]``
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from harness import Peer, compare, emit, not_installed, parser, peer_available

SIZE_CLASSES = {  # (rows, cols, tile grid)
    "both sides divide": (512, 512, (8, 8)),
    "rows divide (600x700)": (600, 700, (8, 8)),
    "cols divide (1020x1024)": (1020, 1024, (8, 8)),
    "neither": (250, 187, (8, 8)),
    "odd": (255, 257, (8, 8)),
    "rectangular grid": (97, 203, (3, 5)),
    "smaller than the grid": (7, 5, (8, 8)),
    "one pixel": (1, 1, (8, 8)),
}


def phantom(rows, cols, rng, n=None):
    yy, xx = np.mgrid[0:rows, 0:cols]
    base = 120 + 60 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    shape = (rows, cols) if n is None else (n, rows, cols)
    return np.clip(base + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--size", type=int, default=None, help="image side in pixels")
    p.add_argument("--batch", type=int, default=None, help="images per batch")
    args = p.parse_args()
    size = args.size or (256 if args.quick else 512)
    batch = args.batch or (8 if args.quick else 16)

    import cv2
    import tensorflow as tf

    from medimg.intensity import clahe

    rng = np.random.default_rng(0)
    differences = []
    for name, (rows, cols, grid) in SIZE_CLASSES.items():
        image = phantom(rows, cols, rng)
        expected = cv2.createCLAHE(4.0, (grid[1], grid[0])).apply(image)
        got = clahe(tf.constant(image), 4.0, grid).numpy()
        differences.append(f"{name} {int(np.abs(got.astype(int) - expected).max())}")
    print("TF CLAHE vs OpenCV, largest difference in grey levels per size class: "
          + ", ".join(differences))

    images = phantom(size, size, rng, batch)
    op = cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8))

    def textbook():
        return [op.apply(image) for image in images]

    expected = np.stack(textbook())
    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    with tf.device(device):
        batch_tensor = tf.constant(images)
        run = tf.function(lambda x: clahe(x, 4.0, (8, 8)))
        out = run(batch_tensor).numpy()
    diff = int(np.abs(out.astype(int) - expected.astype(int)).max())

    def medimg():
        with tf.device(device):
            return run(batch_tensor).numpy()  # .numpy() waits for the device

    peers = [not_installed("kornia")]
    version = peer_available("kornia")
    if version is not None:
        import kornia
        import torch

        torch.set_num_threads(2)
        floats = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)

        def kornia_clahe():
            return kornia.enhance.equalize_clahe(floats, clip_limit=4.0, grid_size=(8, 8))

        grey = np.round(kornia_clahe().numpy()[:, 0] * 255).astype(int)
        peers = [Peer(version, kornia_clahe,
                      f"vs OpenCV: max {int(np.abs(grey - expected).max())} grey levels, "
                      f"mean {np.abs(grey - expected).mean():.2f}")]
    row = compare(f"CLAHE {size}x{size}, batch of {batch}", textbook, medimg, items=batch,
                  repeats=args.repeats, peers=peers,
                  note=f"TF on {device.strip('/').split(':')[0]}, max diff vs OpenCV {diff} "
                       "grey levels")
    emit(row)
    print(f"ms per image: OpenCV {1e3 / row.textbook_items_per_s:.3f}, TensorFlow "
          f"{1e3 / row.medimg_items_per_s:.3f} ({row.textbook_items_per_s / row.medimg_items_per_s:.2f}x "
          "OpenCV's time; target <= 3x)")


if __name__ == "__main__":
    main()
