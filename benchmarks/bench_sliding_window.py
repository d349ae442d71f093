"""Whole-scan prediction by sliding windows: a textbook loop vs medimg vs MONAI and TorchIO.

One cropped BraTS-sized volume (128x160x136, four sequences; quick: 64x64x48), windows
of 64^3 (quick: 32^3), 50% overlap, two predictors:

1. a pointwise function (``0.5 x + 1`` on three channels): the cost of the windowing
   and blending machinery itself;
2. a small 3-D U-Net (Keras, depth 3, 8 base filters): a realistic prediction.

textbook: a Python loop over the windows, one window per call of the predictor
(``model.predict`` for the U-Net), outputs averaged with constant weights;
medimg: :func:`medimg.patches.sliding_window_predict` (windows in batches of 4,
Gaussian blending as nnU-Net, sigma = 1/8 of the window);
peers, on the same volume with the same predictor (the U-Net called from PyTorch through
NumPy, so only the windowing differs): MONAI ``sliding_window_inference`` (Gaussian,
sigma_scale 0.125, batches of 4) and TorchIO ``GridSampler`` + ``GridAggregator``
(Hann blending). The agreement column gives the largest difference from medimg's output
(a pointwise predictor must come out exactly; Gaussian blends agree to float rounding).

Items are volumes (the table's figure is volumes/s; seconds per volume are printed).
"""

from __future__ import annotations

import numpy as np
from harness import Peer, compare, emit, max_abs_diff, not_installed, parser, peer_available

from medimg.models import unet
from medimg.patches import grid_starts, sliding_window_predict


def textbook_sliding_window(predict_one, image, patch, overlap=0.5):
    out = None
    counts = np.zeros((*image.shape[:3], 1), np.float32)
    for start in grid_starts(image.shape[:3], patch, overlap=overlap):
        window = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
        prediction = predict_one(image[window][None])[0]
        if out is None:
            out = np.zeros((*image.shape[:3], prediction.shape[-1]), np.float32)
        out[window] += prediction
        counts[window] += 1
    return out / counts


def synthetic_subject(shape, rng):
    image = rng.normal(0.0, 1.0, size=(*shape, 4)).astype(np.float32) + 5.0
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r = (((x - shape[0] / 2) / (shape[0] / 6)) ** 2 + ((y - shape[1] / 2) / (shape[1] / 6)) ** 2
         + ((z - shape[2] / 2) / (shape[2] / 6)) ** 2)
    image[..., 0] += 2.0 * (r < 1)
    return image


def pointwise(batch):
    return batch[..., :3] * np.float32(0.5) + np.float32(1.0)


def peers_for(image, patch, predict_batch, reference):
    """MONAI and TorchIO on the same volume; ``predict_batch`` maps a channels-last NumPy
    batch to a channels-last NumPy batch (wrapped for PyTorch's channels-first)."""
    peers = []
    for name in ("MONAI", "TorchIO"):
        version = peer_available(name)
        if version is None:
            peers.append(not_installed(name))
            continue
        import torch

        torch.set_num_threads(2)

        def torch_predict(batch):
            channels_last = batch.permute(0, 2, 3, 4, 1).numpy()
            out = predict_batch(np.ascontiguousarray(channels_last))
            return torch.from_numpy(np.ascontiguousarray(np.moveaxis(out, -1, 1)))

        volume = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))
        if name == "MONAI":
            from monai.inferers import sliding_window_inference

            def run(volume=volume, torch_predict=torch_predict):
                with torch.no_grad():
                    out = sliding_window_inference(volume[None], patch, 4, torch_predict,
                                                   overlap=0.5, mode="gaussian",
                                                   sigma_scale=0.125)
                return np.moveaxis(out[0].numpy(), 0, -1)
        else:
            import torchio as tio

            subject = tio.Subject(image=tio.ScalarImage(tensor=volume))
            overlap = tuple(p // 2 for p in patch)

            def run(subject=subject, overlap=overlap, torch_predict=torch_predict):
                sampler = tio.inference.GridSampler(subject, patch, overlap)
                aggregator = tio.inference.GridAggregator(sampler, overlap_mode="hann")
                loader = torch.utils.data.DataLoader(sampler, batch_size=4)
                with torch.no_grad():
                    for batch in loader:
                        aggregator.add_batch(torch_predict(batch["image"][tio.DATA]),
                                             batch[tio.LOCATION])
                return np.moveaxis(aggregator.get_output_tensor().numpy(), 0, -1)
        peers.append(Peer(version, run, f"max diff {max_abs_diff(run(), reference):.1g}"))
    return peers


def main() -> None:
    args = parser(__doc__).parse_args()
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    shape = (64, 64, 48) if args.quick else (128, 160, 136)
    patch = (32, 32, 32) if args.quick else (64, 64, 64)
    image = synthetic_subject(shape, rng)
    n_windows = len(grid_starts(shape, patch, overlap=0.5))
    print(f"volume {shape}x4, window {patch}, 50% overlap: {n_windows} windows")

    # 1. pointwise predictor: the machinery alone
    fast = sliding_window_predict(pointwise, image, patch, overlap=0.5, batch_size=4)
    np.testing.assert_allclose(fast, pointwise(image), rtol=1e-6)
    row = compare("sliding window, pointwise predictor",
                  lambda: textbook_sliding_window(pointwise, image, patch),
                  lambda: sliding_window_predict(pointwise, image, patch, overlap=0.5,
                                                 batch_size=4),
                  items=1, repeats=args.repeats, peers=peers_for(image, patch, pointwise, fast),
                  note="max diff from the pointwise result "
                       f"{max_abs_diff(fast, pointwise(image)):.1g}")
    emit(row)

    # 2. a small 3-D U-Net, the same weights everywhere
    model = unet((None, None, None, 4), 3, depth=3, base_filters=8)

    def predict_batch(batch):
        return np.asarray(model.predict_on_batch(batch))

    fast = sliding_window_predict(model, image, patch, overlap=0.5, batch_size=4)
    constant = sliding_window_predict(model, image, patch, overlap=0.5, batch_size=4,
                                      blend="constant")
    slow = textbook_sliding_window(lambda w: model.predict(w, verbose=0), image, patch)
    same = max_abs_diff(constant, slow)  # same answer with the same weights
    repeats = max(1, args.repeats - 1) if not args.quick else args.repeats
    row = compare("sliding window, 3-D U-Net",
                  lambda: textbook_sliding_window(lambda w: model.predict(w, verbose=0),
                                                  image, patch),
                  lambda: sliding_window_predict(model, image, patch, overlap=0.5,
                                                 batch_size=4),
                  items=1, repeats=repeats, peers=peers_for(image, patch, predict_batch, fast),
                  note=f"constant blend vs textbook max diff {same:.1g}")
    emit(row)
    print(f"seconds per volume (U-Net): textbook {1 / row.textbook_items_per_s:.1f} s, "
          f"medimg {1 / row.medimg_items_per_s:.1f} s")


if __name__ == "__main__":
    main()
