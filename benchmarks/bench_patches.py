"""Patch sampling for 3-D training: the textbook try-and-reject loop against medimg.

Both sides draw, from one BraTS-sized subject (240x240x135 voxels, four sequences,
float32, a ~80k-voxel tumour), ``n`` training patches of 160x160x24 voxels holding at
most 96% background, standardised, with one-hot tumour targets, as on-the-fly training
does (tens of patches per subject visit).

textbook (the chapter's ``get_sub_volume`` + ``standardize``): per patch, random starts
are tried until one passes; each try one-hot encodes the label patch to count the
background; the accepted patch is standardised slice by slice and channel by channel
in Python loops.

medimg (:class:`medimg.patches.PatchSampler`): what the label allows is computed once
per subject (window counts from summed-area tables over the tumour's bounding box),
and so is the standardised subject (per-channel statistics over the brain, applied in
one blocked pass); each patch is then copied out once. Both sides hand each patch on
and let it go, as a training pipeline does. Note the standardisation differs by design: medimg z-scores
each sequence over the subject's brain (as nnU-Net and the inference path do), the
textbook each 2-D slice of each patch.

Two rows: the first counts the per-subject work in every call (a subject's first
visit), the second reuses the sampler (later epochs).

A third row is the training pipeline's way (issue 12): the per-subject work is done once
at preprocessing and stored in the case cache (the standardised subject, written
contiguous; the allowed starts of the rule, :func:`medimg.tasks.segmentation.sampling_index`),
so a subject's first visit in any later run opens its case file, reads the stored starts
and copies each patch out of the mapped file
(:class:`medimg.tasks.segmentation.CaseReader`, a new reader in every call). The
preprocessing itself (seconds per subject, paid once per data set) is printed apart.

A third row times sampling alone (no standardisation, no one-hot) against the peers,
MONAI ``RandCropByPosNegLabel`` (centres on foreground voxels) and TorchIO
``LabelSampler`` (centres drawn from the label): patches/s, and the share of their
patches that obey the rule "at most 96% background" (medimg's always do).

A fourth row compares :meth:`PatchSampler.sample` (one preallocated batch) with the
former implementation (every patch copied, then ``np.stack``), with the peak memory
of each (tracemalloc) and of :func:`sample_patches` (a list of patches).
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc

import numpy as np
from harness import Peer, compare, emit, not_installed, parser, peer_available

from medimg.patches import PatchSampler, sample_patches


def textbook_sub_volume(image, label, patch, *, num_classes=4, max_tries=1000,
                        background_threshold=0.96, random_state=np.random):
    """The chapter's sampler: random starts, one-hot per try, channels-first output."""
    orig_x, orig_y, orig_z = label.shape
    output_x, output_y, output_z = patch
    tries = 0
    while tries < max_tries:
        start_x = random_state.randint(0, orig_x - output_x + 1)
        start_y = random_state.randint(0, orig_y - output_y + 1)
        start_z = random_state.randint(0, orig_z - output_z + 1)
        y = label[start_x:start_x + output_x, start_y:start_y + output_y,
                  start_z:start_z + output_z]
        y = np.eye(num_classes, dtype=np.float32)[y]  # keras.utils.to_categorical
        bgrd_ratio = np.sum(y[:, :, :, 0]) / (output_x * output_y * output_z)
        tries += 1
        if bgrd_ratio <= background_threshold:
            x = np.copy(image[start_x:start_x + output_x, start_y:start_y + output_y,
                              start_z:start_z + output_z, :])
            x = np.moveaxis(x, 3, 0)
            y = np.moveaxis(y, 3, 0)[1:, :, :, :]
            return x, y
    raise RuntimeError("no valid sub-volume")


def textbook_standardize(image):
    """The chapter's per-slice z-score: loops over channels and z-slices."""
    standardized_image = np.zeros(image.shape)
    for c in range(image.shape[0]):
        for z in range(image.shape[3]):
            image_slice = image[c, :, :, z]
            centered = image_slice - np.mean(image_slice)
            if np.std(centered) != 0:
                centered = centered / np.std(centered)
            standardized_image[c, :, :, z] = centered
    return standardized_image


def make_subject(shape, seed=0):
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cx, cy, cz = (s / 2 for s in shape)
    brain = (((x - cx) / (0.42 * shape[0])) ** 2 + ((y - cy) / (0.46 * shape[1])) ** 2
             + ((z - cz) / (0.5 * shape[2])) ** 2) < 1
    image = rng.normal(500.0, 100.0, size=(*shape, 4)).astype(np.float32)
    image *= np.float32([1.0, 0.8, 1.2, 0.9])
    image[~brain] = 0
    r = (((x - 1.08 * cx) / (0.117 * shape[0])) ** 2 + ((y - 0.92 * cy) / (0.133 * shape[1])) ** 2
         + ((z - cz) / (0.163 * shape[2])) ** 2)
    label = np.zeros(shape, np.uint8)
    label[r < 1] = 2
    label[r < 0.7] = 3
    label[r < 0.5] = 1
    return image, label


def one_hot_tumour_classes(label):
    """Channels-last bool one-hot of classes 1..3 (the textbook's y, channels last): each
    voxel's code ``k`` becomes the uint32 ``(1 << 8k) >> 8``, whose first three bytes are
    the three channels (vectorised passes in place; a table look-up was 3x slower)."""
    packed = label.astype(np.uint32)
    packed <<= 3
    np.left_shift(np.uint32(1), packed, out=packed)
    packed >>= 8
    return packed.view(np.uint8).reshape(*label.shape, 4)[..., :3].view(bool)


def medimg_visit(sampler, n, rng):
    # a training pipeline consumes each patch and lets it go: both sides do the same
    for image, label in sampler.iter_patches(n, rng=rng):
        yield image, one_hot_tumour_classes(label)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--patches", type=int, default=40, help="patches drawn per subject visit")
    args = p.parse_args()
    shape, patch = ((120, 120, 68), (80, 80, 12)) if args.quick else ((240, 240, 135),
                                                                        (160, 160, 24))
    n = min(args.patches, 8) if args.quick else args.patches
    image, label = make_subject(shape)
    print(f"subject {shape} x4, tumour {int(np.count_nonzero(label))} voxels, patch {patch}, "
          f"{n} patches per visit")
    state = np.random.RandomState(0)
    rng = np.random.default_rng(0)

    # both sides honour the threshold (checked before timing)
    for _ in range(3):
        _, y = textbook_sub_volume(image, label, patch, random_state=state)
        assert y.sum() >= 0.04 * np.prod(patch) - 1
    sampler = PatchSampler(image, label, patch, max_background=0.96, standardize=True)
    for image_patch, target in medimg_visit(sampler, n, rng):
        assert image_patch.dtype == np.float32 and image_patch.shape == (*patch, 4)
        assert target.sum() >= 0.04 * np.prod(patch) - 1
    check = np.random.default_rng(0).integers(0, 4, (20, 20, 10)).astype(np.uint8)
    assert np.array_equal(one_hot_tumour_classes(check),
                          np.stack([check == k for k in (1, 2, 3)], axis=-1))
    print(f"allowed positions: {sampler.n_allowed} of "
          f"{np.prod([s - q + 1 for s, q in zip(shape, patch, strict=True)])}")

    def textbook():
        for _ in range(n):
            x, _targets = textbook_sub_volume(image, label, patch, random_state=state)
            textbook_standardize(x)

    def medimg_first_visit():
        fresh = PatchSampler(image, label, patch, max_background=0.96, standardize=True)
        for _ in medimg_visit(fresh, n, rng):
            pass

    def medimg_later_visit():
        for _ in medimg_visit(sampler, n, rng):
            pass

    size = "x".join(map(str, patch))
    emit(compare(f"patch sampling {size}, first visit", textbook, medimg_first_visit,
                 items=n, repeats=args.repeats,
                 note="per-subject work counted in every call"))
    emit(compare(f"patch sampling {size}, later epochs", textbook, medimg_later_visit,
                 items=n, repeats=args.repeats, note="sampler reused"))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        case, plan = cached_case(image, label, patch, folder)
        print(f"case cache: the subject standardised, stored and its allowed starts worked "
              f"out once in {time.perf_counter() - start:.2f} s (preprocessing)")

        def medimg_cache_first_visit():
            from medimg.tasks.segmentation import CaseReader

            reader = CaseReader([case], plan, max_background=0.96)  # stored starts read
            for k in range(n):
                _, label_patch = reader.sample(0, int(rng.integers(2**62)) + k)
                one_hot_tumour_classes(label_patch)
            reader.close()

        from medimg.tasks.segmentation import CaseReader

        check_reader = CaseReader([case], plan, max_background=0.96)
        for k in range(5):
            image_patch, label_patch = check_reader.sample(0, k)
            assert image_patch.shape == (*patch, 4)
            assert np.count_nonzero(label_patch) >= 0.04 * np.prod(patch) - 1
        emit(compare(f"patch sampling {size}, first visit from the case cache", textbook,
                     medimg_cache_first_visit, items=n, repeats=args.repeats,
                     note="a new reader per call; per-subject work stored at preprocessing"))
    sampling_only(image, label, patch, n, args.repeats)
    batch_memory(image, label, patch, n, args.repeats)


def cached_case(image, label, patch, folder):
    """The subject as the segmentation preprocessing stores it (standardised over the
    brain, contiguous), with the rule's allowed starts stored: ``(path, plan)``."""
    from medimg.datasets.cache import write_h5
    from medimg.patches import channel_statistics
    from medimg.tasks.segmentation import Plan, sampling_index

    mean, std = channel_statistics(image, "nonzero")
    standardised = ((image - mean) / std).astype(np.float32)
    path = f"{folder}/subject.h5"
    write_h5(path, {"image": standardised, "label": label}, {"case": "subject"},
             compression=None)
    plan = Plan(dataset={"name": "bench"}, dimensionality="3d", slice_axis=None,
                target_spacing=(1.0, 1.0, 1.0), crop_to_nonzero=True, use_nonzero_mask=True,
                normalization=[{"channel": str(c), "scheme": "zscore"} for c in range(4)],
                bias_correction=False, n4_shrink=4, n4_iterations=[10],
                class_values=[0, 1, 2, 3], outputs=["1", "2", "3"],
                target_table=np.eye(4)[:, 1:].tolist(), activation="sigmoid",
                regions_class_order=None, patch_shape=tuple(patch), depth=3, base_filters=8,
                batch_size=2)
    sampling_index(path, patch, 0.96)
    return path, plan


def background_share(label_patch) -> float:
    return float(np.mean(np.asarray(label_patch) == 0))


def sampling_only(image, label, patch, n, repeats, max_background=0.96):
    """Sampling alone, medimg vs the chapter's loop vs MONAI and TorchIO."""
    sampler = PatchSampler(image, label, patch, max_background=max_background)
    state = np.random.RandomState(1)
    rng = np.random.default_rng(1)

    def textbook():
        for _ in range(n):
            textbook_sub_volume(image, label, patch, random_state=state)

    def medimg():
        for _ in sampler.iter_patches(n, rng=rng):
            pass

    shares = [background_share(lab) <= max_background
              for _, lab in sampler.iter_patches(n, rng=rng)]
    peers = []
    version = peer_available("MONAI")
    if version is None:
        peers.append(not_installed("MONAI"))
    else:
        import torch
        from monai.transforms import RandCropByPosNegLabel

        torch.set_num_threads(2)
        image_t = torch.from_numpy(np.moveaxis(image, -1, 0).copy())
        label_t = torch.from_numpy(label[None].copy())
        crop = RandCropByPosNegLabel(spatial_size=patch, label=label_t, pos=1.0, neg=0.0,
                                     num_samples=n)
        crop.set_random_state(0)

        def monai():
            return crop(image_t, label=label_t), crop(label_t, label=label_t, randomize=False)

        _, label_patches = monai()
        ok = np.mean([background_share(p) <= max_background for p in label_patches])
        peers.append(Peer(version, monai, f"{ok:.0%} of patches obey the rule"))
    version = peer_available("TorchIO")
    if version is None:
        peers.append(not_installed("TorchIO"))
    else:
        import torch
        import torchio as tio

        subject = tio.Subject(
            image=tio.ScalarImage(tensor=torch.from_numpy(np.moveaxis(image, -1, 0).copy())),
            label=tio.LabelMap(tensor=torch.from_numpy(label[None].copy())))
        probabilities = {int(v): (0.0 if v == 0 else 1.0) for v in np.unique(label)}
        torchio_sampler = tio.LabelSampler(patch, label_name="label",
                                           label_probabilities=probabilities)

        def torchio():
            return list(torchio_sampler(subject, num_patches=n))

        ok = np.mean([background_share(p["label"].data) <= max_background for p in torchio()])
        peers.append(Peer(version, torchio, f"{ok:.0%} of patches obey the rule"))
    emit(compare(f"patch sampling {'x'.join(map(str, patch))}, sampling only", textbook, medimg,
                 items=n, repeats=repeats, peers=peers,
                 note=f"medimg: {np.mean(shares):.0%} of patches obey "
                      f"<= {max_background:.0%} background"))


def old_sample(sampler, n, rng):
    """PatchSampler.sample before issue 14: each patch copied, then np.stack."""
    pairs = list(sampler.iter_patches(n, rng=rng))
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def peak_mib(fn) -> float:
    tracemalloc.start()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return peak / 2**20


def batch_memory(image, label, patch, n, repeats):
    sampler = PatchSampler(image, label, patch, max_background=0.96, standardize=True)
    new = sampler.sample(n, rng=3)
    old = old_sample(sampler, n, rng=3)
    assert all(np.array_equal(a, b) for a, b in zip(new, old, strict=True))
    del new, old
    peaks = {"sample()": peak_mib(lambda: sampler.sample(n, rng=4)),
             "former sample()": peak_mib(lambda: old_sample(sampler, n, rng=4)),
             "sample_patches": peak_mib(lambda: sample_patches(image, label, patch, n,
                                                               max_background=0.96, rng=4))}
    batch_mib = n * np.prod(patch) * image.shape[-1] * 4 / 2**20
    row = compare(f"PatchSampler.sample {n}x{'x'.join(map(str, patch))}",
                  lambda: old_sample(sampler, n, 5), lambda: sampler.sample(n, rng=5),
                  items=n, repeats=repeats, note="textbook = former sample(), same patches")
    emit(row)
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        sample_patches(image, label, patch, n, max_background=0.96, rng=seed)
        times.append(time.perf_counter() - start)
    print(f"peak memory for {n} patches ({batch_mib:.0f} MiB of float32 patches): "
          + ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items())
          + f"; ms per patch: sample() {1e3 / row.medimg_items_per_s:.2f}, former sample() "
            f"{1e3 / row.textbook_items_per_s:.2f}, sample_patches (a list; the subject's "
            f"allowed positions worked out in each call) {1e3 * np.median(times) / n:.2f}")


if __name__ == "__main__":
    main()
