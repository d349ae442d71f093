"""Metrics and losses: Dice (hard and soft), soft-Dice loss, BraTS regions, Hausdorff 95,
and classification evaluation (AUC with a bootstrap interval, ROC)."""

from __future__ import annotations

import numpy as np

from ._backend import is_tensor, tensorflow
from .errors import InvalidImageError

__all__ = [
    "BRATS_REGIONS",
    "auc_by_group",
    "auc_with_ci",
    "brats_regions",
    "confusion_at",
    "custom_objects",
    "dice",
    "dice_metric",
    "hausdorff95",
    "mean_with_ci",
    "proportion_with_ci",
    "rank_auc",
    "region_dice",
    "roc_curve",
    "soft_dice_loss",
    "youden_threshold",
]


# ---------------------------------------------------------------------------------------
# Segmentation metrics: Dice, soft-Dice loss, Keras Dice metric, BraTS regions,
# Hausdorff 95. NumPy arrays and tf.Tensors; Keras parts use keras.ops, so they run on
# any Keras backend (TensorFlow here, JAX on a GPU).
# ---------------------------------------------------------------------------------------


#: BraTS evaluation regions and the labels they are made of (label 3 is the cache's code
#: for label 4, see :func:`brats_regions`).
BRATS_REGIONS: dict[str, tuple[int, ...]] = {
    "WT": (1, 2, 4),  # whole tumour
    "TC": (1, 4),  # tumour core
    "ET": (4,),  # enhancing tumour
}


def dice(y_true, y_pred, *, axis=None, smooth: float = 1e-5):
    """Dice coefficient ``(2 |T∩P| + s) / (|T| + |P| + s)`` of masks or probabilities.

    Hard Dice on binary masks, "soft" Dice on probabilities (the products and sums are
    the same formula). Two empty masks give 1.0 (the BraTS convention): nothing to find
    and nothing found is a perfect score, which the ``smooth`` term makes happen.

    What each input may hold depends on its dtype, and is checked:

    - ``bool``: a mask.
    - integer: a hard mask, values 0 and 1 only (a label map with other values is
      refused: compare one label at a time, ``label == k``, or use :func:`region_dice`).
    - floating point: probabilities in ``[0, 1]`` (binary 0.0/1.0 masks included); a
      value outside, NaN or inf is refused.

    Two masks are counted (exact). Otherwise the sums are dot products in float32
    (float64 when an input is float64), one cache-sized block at a time, accumulated in
    float64: no product array is built, a block's float32 sums of 0/1 values are exact
    integers, so binary float input gives exactly the result of the same masks as
    ``bool``, and probabilities agree with a float64 computation to about 1e-7.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray or tf.Tensor
        Same shape; binary masks (bool or 0/1) or probabilities in ``[0, 1]``. For one
        Dice per class, give one-hot / per-region arrays with classes on the last axis.
    axis : int or tuple of int, optional
        Axes summed over. ``None`` sums over all axes (one number). For one Dice per
        class of ``(N, x, y, z, C)`` arrays use ``axis=(0, 1, 2, 3)``; for one per
        sample and class use ``axis=(1, 2, 3)``.
    smooth : float
        Added to numerator and denominator; keeps empty/empty at 1.0.

    Returns
    -------
    float or numpy.ndarray or tf.Tensor
        The Dice over the remaining axes (float64 NumPy / float32 TF).

    Raises
    ------
    InvalidImageError
        The shapes differ; an integer input holds values other than 0 and 1; a float
        input holds values outside ``[0, 1]`` or NaN/inf. Tensors are checked when
        TensorFlow runs eagerly (inside ``tf.function`` the values are not known).

    Examples
    --------
    >>> t = np.zeros((4, 4, 2), bool); t[:2, :, 0] = True
    >>> dice(t, t, axis=(0, 1)).round(3)
    array([1., 1.])
    """
    if is_tensor(y_true) or is_tensor(y_pred):
        tf = tensorflow()
        t = tf.convert_to_tensor(y_true)
        p = tf.convert_to_tensor(y_pred)
        if t.shape.is_fully_defined() and p.shape.is_fully_defined() and t.shape != p.shape:
            raise InvalidImageError(
                f"dice: y_true has shape {tuple(t.shape)} but y_pred {tuple(p.shape)}")
        if tf.executing_eagerly():
            _check_dice_tensor(t, "y_true")
            _check_dice_tensor(p, "y_pred")
        t = tf.cast(t, tf.float32)
        p = tf.cast(p, tf.float32)
        intersection = tf.reduce_sum(t * p, axis=axis)
        total = tf.reduce_sum(t, axis=axis) + tf.reduce_sum(p, axis=axis)
        return (2.0 * intersection + smooth) / (total + smooth)
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape:
        raise InvalidImageError(f"dice: y_true has shape {t.shape} but y_pred {p.shape}")
    t = _check_dice_input(t, "y_true")
    p = _check_dice_input(p, "y_pred")
    if t.dtype == bool and p.dtype == bool:
        # counting is faster and exact for masks
        intersection, sum_true, sum_pred = _count_sums(t, p, axis)
        total = sum_true + sum_pred
    else:
        intersection, sum_true, sum_pred = _dot_sums(t, p, axis)
        total = sum_true + sum_pred
    return (2.0 * intersection + smooth) / (total + smooth)


def _dice_range_error(name: str, low: float, high: float, integer: bool) -> InvalidImageError:
    if integer:
        return InvalidImageError(
            f"dice: {name} is an integer array, read as a hard mask, but holds values from "
            f"{low:g} to {high:g}, not only 0 and 1; for a label map compare one label at a "
            "time (label == k), or use region_dice for BraTS labels")
    if not (np.isfinite(low) and np.isfinite(high)):
        return InvalidImageError(f"dice: {name} holds NaN or infinite values")
    return InvalidImageError(
        f"dice: {name} holds values from {low:g} to {high:g}; probabilities (and 0.0/1.0 "
        "masks) must lie in [0, 1]")


def _check_dice_input(x: np.ndarray, name: str) -> np.ndarray:
    """Validate one Dice input by its dtype; integer 0/1 masks come back as ``bool``.
    Float inputs are range-checked block by block in :func:`_dot_sums` (one pass)."""
    if x.dtype == bool or x.dtype.kind == "f":
        return x
    if x.dtype.kind in "iu":
        if x.size:
            low, high = x.min(), x.max()
            if low < 0 or high > 1:
                raise _dice_range_error(name, float(low), float(high), True)
        # 0/1 bytes are valid bools: a view, no copy
        return x.view(bool) if x.itemsize == 1 else x.astype(bool)
    raise InvalidImageError(f"dice: {name} has dtype {x.dtype}; expected bool, integer 0/1 "
                            "masks or floating-point probabilities")


def _check_dice_tensor(x, name: str) -> None:
    """The same rules for an eager tensor (two reductions on its device)."""
    tf = tensorflow()
    if x.dtype == tf.bool or tf.size(x) == 0:
        return
    if not (x.dtype.is_floating or x.dtype.is_integer):
        raise InvalidImageError(f"dice: {name} has dtype {x.dtype.name}; expected bool, "
                                "integer 0/1 masks or floating-point probabilities")
    low, high = float(tf.reduce_min(x)), float(tf.reduce_max(x))
    if not (0 <= low and high <= 1):  # NaN fails too
        raise _dice_range_error(name, low, high, x.dtype.is_integer)


#: float dtype -> (unsigned integer of its size, the bit pattern of 1.0)
_ONE_BITS = {np.dtype(np.float16): (np.uint16, 0x3C00),
             np.dtype(np.float32): (np.uint32, 0x3F800000),
             np.dtype(np.float64): (np.uint64, 0x3FF0000000000000)}

#: elements per block of the Dice dot products: small enough to stay in the CPU cache,
#: and far below 2**24, so float32 sums of 0/1 values within a block are exact
_DICE_BLOCK = 1 << 16


def _as_rows(t: np.ndarray, p: np.ndarray, axis) -> tuple:
    """Both arrays as ``(kept, reduced)`` rows (a copy only when the reduced axes are not
    already the last ones), and the shape of the kept axes."""
    ndim = t.ndim
    if axis is None:
        reduced = tuple(range(ndim))
    else:
        try:
            reduced = tuple(sorted({int(a) % ndim for a in np.atleast_1d(axis)}))
        except (TypeError, ValueError, ZeroDivisionError):
            raise InvalidImageError(f"dice: axis {axis!r} is not valid for {ndim}-D input") \
                from None
    kept = tuple(a for a in range(ndim) if a not in reduced)
    kept_shape = tuple(t.shape[a] for a in kept)
    rows = int(np.prod(kept_shape, dtype=np.int64))
    length = int(np.prod([t.shape[a] for a in reduced], dtype=np.int64))
    t2 = np.transpose(t, kept + reduced).reshape(rows, length)
    p2 = np.transpose(p, kept + reduced).reshape(rows, length)
    return t2, p2, kept_shape


def _count_sums(t: np.ndarray, p: np.ndarray, axis) -> tuple:
    """``|t & p|``, ``|t|`` and ``|p|`` of bool masks over ``axis`` (integers)."""
    if axis is None:
        return np.count_nonzero(t & p), np.count_nonzero(t), np.count_nonzero(p)
    t2, p2, kept_shape = _as_rows(t, p, axis)
    if len(t2) > 256:  # many short rows: NumPy's per-axis count
        sums = [np.count_nonzero(t2 & p2, axis=1), np.count_nonzero(t2, axis=1),
                np.count_nonzero(p2, axis=1)]
    else:  # a few long rows: the whole-array count (several times faster) row by row
        sums = [np.array([np.count_nonzero(a & b) for a, b in zip(t2, p2, strict=True)]),
                np.array([np.count_nonzero(a) for a in t2]),
                np.array([np.count_nonzero(b) for b in p2])]
    return tuple(s.reshape(kept_shape) for s in sums)


def _dot_sums(t: np.ndarray, p: np.ndarray, axis) -> tuple:
    """``sum(t * p)``, ``sum(t)`` and ``sum(p)`` over ``axis`` (float64), computed as
    float32 (float64 if an input is) dot products block by block; float inputs are
    checked to lie in [0, 1] on the way (each block is read while it is in cache)."""
    dtype = np.float64 if np.float64 in (t.dtype, p.dtype) else np.float32
    t2, p2, kept_shape = _as_rows(t, p, axis)
    rows, length = t2.shape
    checks = [(name, a) for name, a in (("y_true", t2), ("y_pred", p2)) if a.dtype.kind == "f"]
    sums = np.zeros((3, rows), np.float64)

    def blocks():
        """(row slice, column slice) blocks of about _DICE_BLOCK elements."""
        if length <= 4096 and rows > 1:  # many short rows: several rows per block
            step = max(1, _DICE_BLOCK // max(length, 1))
            for first in range(0, rows, step):
                yield slice(first, first + step), slice(None)
        else:
            for row in range(rows):
                for first in range(0, length, _DICE_BLOCK):
                    yield slice(row, row + 1), slice(first, first + _DICE_BLOCK)

    for row_slice, column_slice in blocks():
        for name, a in checks:
            block = a[row_slice, column_slice]
            if not block.size:
                continue
            # One pass: as unsigned integers, the bit patterns of +0.0 ... 1.0 are exactly
            # those up to 1.0's (a sign bit, NaN or inf is larger). -0.0 is the one valid
            # value it misses: the exact test decides then.
            bits = _ONE_BITS.get(block.dtype)
            if bits is not None and block.view(bits[0]).max() <= bits[1]:
                continue
            if not (block.min() >= 0 and block.max() <= 1):  # NaN fails
                finite = bool(np.all(np.isfinite(a)))
                raise _dice_range_error(name, float(a.min()) if finite else float("nan"),
                                        float(a.max()) if finite else float("nan"), False)
        tb = t2[row_slice, column_slice].astype(dtype, copy=False)
        pb = p2[row_slice, column_slice].astype(dtype, copy=False)
        if tb.shape[0] == 1:  # one row: BLAS dot products (sums too, against ones)
            ones = np.ones(tb.shape[1], dtype)
            sums[:, row_slice] += np.array([[tb[0] @ pb[0]], [tb[0] @ ones], [pb[0] @ ones]])
        else:
            sums[0, row_slice] += np.einsum("ij,ij->i", tb, pb)
            sums[1, row_slice] += tb.sum(axis=1)
            sums[2, row_slice] += pb.sum(axis=1)
    if not kept_shape:
        return sums[0, 0], sums[1, 0], sums[2, 0]
    return tuple(s.reshape(kept_shape) for s in sums)


def soft_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """Soft-Dice loss for Keras: ``1 - mean_c (2 Σ p t + s) / (Σ p² + Σ t² + s)``.

    The sums run over the batch and every spatial axis (one Dice per class for the
    whole batch, which stays well defined when a class is absent from one patch), and
    the mean over the classes on the last axis. Squared terms in the denominator (as in
    the V-Net paper and the chapter) give smoother gradients than plain sums.

    Use as ``model.compile(loss=soft_dice_loss)`` with sigmoid or softmax outputs and
    one-hot or region targets of the same shape ``(N, ..., C)``. Written with
    ``keras.ops``, so it runs on any Keras backend and under mixed precision (it
    computes in float32).

    Parameters
    ----------
    y_true : tensor, shape (N, ..., C)
        Targets in ``{0, 1}``.
    y_pred : tensor, shape (N, ..., C)
        Probabilities.
    smooth : float
        Smoothing term (1.0: a class absent from the batch and not predicted costs 0).

    Returns
    -------
    scalar tensor
        The loss, in ``[0, 1]``.
    """
    from keras import ops

    t = ops.cast(y_true, "float32")
    p = ops.cast(y_pred, "float32")
    axes = tuple(range(len(p.shape) - 1))
    numerator = 2.0 * ops.sum(t * p, axis=axes) + smooth
    denominator = ops.sum(p * p, axis=axes) + ops.sum(t * t, axis=axes) + smooth
    return 1.0 - ops.mean(numerator / denominator)


def _keras_dice_metric_class():
    """Build (once) the Keras Dice metric class; Keras is imported only when needed."""
    global _DiceMetric
    if _DiceMetric is not None:
        return _DiceMetric
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="medimg")
    class DiceMetric(keras.metrics.Metric):
        """Hard Dice accumulated over an epoch (sums of intersections and sizes per
        class, so it is the Dice of the whole epoch, not a mean of batch Dice)."""

        def __init__(self, threshold=0.5, class_index=None, smooth=1e-5, name="dice",
                     **kwargs):
            super().__init__(name=name, **kwargs)
            self.threshold = float(threshold)
            self.class_index = class_index
            self.smooth = float(smooth)
            self.intersection = self.add_variable(shape=(), initializer="zeros",
                                                  name="intersection")
            self.total = self.add_variable(shape=(), initializer="zeros", name="total")

        def update_state(self, y_true, y_pred, sample_weight=None):
            t = ops.cast(y_true, "float32")
            p = ops.cast(ops.cast(y_pred, "float32") > self.threshold, "float32")
            if self.class_index is not None:
                t = t[..., self.class_index]
                p = p[..., self.class_index]
            self.intersection.assign_add(ops.sum(t * p))
            self.total.assign_add(ops.sum(t) + ops.sum(p))

        def result(self):
            return (2.0 * self.intersection + self.smooth) / (self.total + self.smooth)

        def reset_state(self):
            self.intersection.assign(0.0)
            self.total.assign(0.0)

        def get_config(self):
            return {**super().get_config(), "threshold": self.threshold,
                    "class_index": self.class_index, "smooth": self.smooth}

    _DiceMetric = DiceMetric
    return DiceMetric


_DiceMetric = None


def dice_metric(name: str = "dice", *, class_index: int | None = None, threshold: float = 0.5,
                smooth: float = 1e-5):
    """A Keras metric: hard Dice of thresholded predictions, accumulated over an epoch.

    Parameters
    ----------
    name : str
        Shown in the training logs (``val_<name>``).
    class_index : int, optional
        Only this channel of the last axis (e.g. 0 for the whole tumour when the targets
        are BraTS regions); all channels pooled when None.
    threshold : float
        Probability above which a voxel counts as predicted.
    smooth : float
        As in :func:`dice`.

    Returns
    -------
    keras.metrics.Metric

    Examples
    --------
    >>> model.compile(loss=soft_dice_loss,                               # doctest: +SKIP
    ...               metrics=[dice_metric("dice_wt", class_index=0)])
    """
    return _keras_dice_metric_class()(threshold=threshold, class_index=class_index,
                                      smooth=smooth, name=name)


def custom_objects() -> dict:
    """Objects to pass to ``keras.models.load_model(..., custom_objects=...)`` for models
    compiled with this module's loss and metric."""
    return {"soft_dice_loss": soft_dice_loss, "DiceMetric": _keras_dice_metric_class()}


def brats_regions(label):
    """The three BraTS evaluation regions of a label map, stacked on a last axis.

    WT (whole tumour) = labels {1, 2, 4}, TC (tumour core) = {1, 4}, ET (enhancing
    tumour) = {4}. Label 3 (unused in BraTS; the preprocessing cache's code for 4, so
    that classes are 0..3) counts as 4, so cached labels and original labels both work.

    Parameters
    ----------
    label : numpy.ndarray or tf.Tensor, integer, any shape
        Label map with values in {0, 1, 2, 4} (or {0, 1, 2, 3}).

    Returns
    -------
    numpy.ndarray (bool) or tf.Tensor (float32), shape ``label.shape + (3,)``
        Channels in the order WT, TC, ET.
    """
    if is_tensor(label):
        tf = tensorflow()
        lab = tf.cast(label, tf.int32)
        et = tf.logical_or(tf.equal(lab, 4), tf.equal(lab, 3))
        tc = tf.logical_or(et, tf.equal(lab, 1))
        wt = tf.logical_or(tc, tf.equal(lab, 2))
        return tf.cast(tf.stack([wt, tc, et], axis=-1), tf.float32)
    lab = np.asarray(label)
    if lab.dtype.kind not in "iub":
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise InvalidImageError("brats_regions: label map must hold integers "
                                     f"(got {lab.dtype} with non-integer values)")
    et = (lab == 4) | (lab == 3)
    tc = et | (lab == 1)
    wt = tc | (lab == 2)
    return np.stack([wt, tc, et], axis=-1)


def region_dice(pred, truth, *, smooth: float = 1e-5) -> dict[str, float]:
    """Dice of the BraTS regions (WT, TC, ET) between two label maps.

    Parameters
    ----------
    pred, truth : numpy.ndarray, integer, same shape
        Predicted and true label maps: BraTS labels {0, 1, 2, 4}, or the preprocessing
        cache's {0, 1, 2, 3} (3 stands for 4, see :func:`brats_regions`).
    smooth : float
        As in :func:`dice`; a region absent from both gives 1.0 (BraTS convention).

    Returns
    -------
    dict
        ``{"WT": float, "TC": float, "ET": float}``.

    Raises
    ------
    InvalidImageError
        The shapes differ, or a map holds a value that is not a BraTS label (anything
        but 0, 1, 2, 4, and 3 as the cache's code for 4; both 3 and 4 in one map is
        ambiguous and refused too): such a voxel would silently count as background.
    """
    p = np.asarray(pred)
    t = np.asarray(truth)
    if p.shape != t.shape:
        raise InvalidImageError(f"region_dice: pred has shape {p.shape} but truth {t.shape}")
    _check_brats_labels(p, "pred")
    _check_brats_labels(t, "truth")
    scores = dice(brats_regions(t), brats_regions(p), axis=tuple(range(p.ndim)), smooth=smooth)
    return {name: float(score) for name, score in zip(BRATS_REGIONS, scores, strict=True)}


def _check_brats_labels(label: np.ndarray, name: str) -> None:
    """Refuse values that are not BraTS labels (0, 1, 2, 4, or the cache's 3 for 4)."""
    if label.dtype == bool:  # labels 0 and 1 only
        return
    if label.dtype.kind not in "iu":
        if label.dtype.kind != "f":
            raise InvalidImageError(f"region_dice: {name} has dtype {label.dtype}; expected "
                                    "integer BraTS labels {0, 1, 2, 4}")
        if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
            raise InvalidImageError(f"region_dice: {name} must hold integer labels "
                                    f"(got {label.dtype} with non-integer or NaN values)")
    if label.size == 0:
        return
    low, high = label.min(), label.max()
    if low < 0 or high > 4:
        bad = np.unique(label[(label < 0) | (label > 4)])[:5].tolist()
        raise InvalidImageError(f"region_dice: {name} holds label(s) {bad}; BraTS labels are "
                                "0, 1, 2 and 4 (3 is read as 4)")
    # values 0..4 now: one count per value (a bincount of bytes, no sort)
    counts = np.bincount(label.reshape(-1).astype(np.uint8, copy=False), minlength=5)
    if counts[3] and counts[4]:
        raise InvalidImageError(f"region_dice: {name} holds both label 3 and label 4; BraTS "
                                "labels are 0, 1, 2 and 4 (3 is accepted only as the cache's "
                                "code for 4, never beside it)")


def _surface(mask):
    from scipy import ndimage

    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1),
                                    border_value=0)
    return mask & ~eroded


def hausdorff95(a, b, spacing=None) -> float:
    """95th-percentile Hausdorff distance between the surfaces of two masks, in mm.

    The larger of the two directed 95th percentiles of surface-to-surface distances
    (the BraTS and MONAI definition), with distances from exact Euclidean distance
    transforms on the voxel grid scaled by ``spacing``.

    Edge cases, explicitly: both masks empty gives 0.0; exactly one empty gives
    ``inf`` (no surface to measure to).

    Parameters
    ----------
    a, b : numpy.ndarray, bool or 0/1, same shape (2-D or 3-D)
        The masks.
    spacing : sequence of float, optional
        Voxel size in mm per axis (default 1 mm).

    Returns
    -------
    float
        Distance in mm.

    Raises
    ------
    InvalidImageError
        Shapes differ, or ``spacing`` has the wrong length or a value that is not a
        finite positive number of millimetres.
    """
    from scipy import ndimage

    a = np.asarray(a).astype(bool, copy=False)
    b = np.asarray(b).astype(bool, copy=False)
    if a.shape != b.shape:
        raise InvalidImageError(f"hausdorff95: masks have shapes {a.shape} and {b.shape}")
    try:
        spacing = (1.0,) * a.ndim if spacing is None else tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise InvalidImageError(
            f"hausdorff95: spacing must be a sequence of numbers (mm), got {spacing!r}") \
            from None
    if len(spacing) != a.ndim:
        raise InvalidImageError(
            f"hausdorff95: spacing has {len(spacing)} values for a {a.ndim}-D mask")
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InvalidImageError(
            f"hausdorff95: spacing must be finite and positive (mm per voxel), got {spacing}")
    has_a, has_b = a.any(), b.any()
    if not has_a and not has_b:
        return 0.0
    if not has_a or not has_b:
        return float("inf")
    # distances only matter near the two masks: work in their joint bounding box (+1 so
    # that the border is background and surfaces are closed)
    both = a | b
    box = []
    for axis in range(a.ndim):
        other = tuple(i for i in range(a.ndim) if i != axis)
        idx = np.flatnonzero(both.any(axis=other))
        box.append(slice(max(idx[0] - 1, 0), idx[-1] + 2))
    a, b = np.pad(a[tuple(box)], 1), np.pad(b[tuple(box)], 1)
    surf_a, surf_b = _surface(a), _surface(b)
    dist_to_b = ndimage.distance_transform_edt(~surf_b, sampling=spacing)
    dist_to_a = ndimage.distance_transform_edt(~surf_a, sampling=spacing)
    return float(max(np.percentile(dist_to_b[surf_a], 95), np.percentile(dist_to_a[surf_b], 95)))


# ---------------------------------------------------------------------------------------
# Classification evaluation: AUC with a bootstrap interval, ROC curve,
# confusion matrix at a threshold, AUC per group (e.g. view position). scikit-learn for
# the curves; the bootstrap uses the rank (Mann-Whitney) form of the AUC, vectorised.
# ---------------------------------------------------------------------------------------


def _binary_scores(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(y_true.numpy() if is_tensor(y_true) else y_true).reshape(-1)
    score = np.asarray(y_score.numpy() if is_tensor(y_score) else y_score,
                       dtype=np.float64).reshape(-1)
    if truth.shape != score.shape:
        raise InvalidImageError(f"y_true has {truth.size} values but y_score has {score.size}")
    if truth.size == 0:
        raise InvalidImageError("no samples to evaluate (y_true is empty)")
    if not np.all(np.isin(truth, (0, 1))):
        bad = np.unique(truth[~np.isin(truth, (0, 1))])[:5]
        raise InvalidImageError(f"y_true must hold only 0 and 1, found {bad.tolist()}")
    if not np.all(np.isfinite(score)):
        raise InvalidImageError(f"y_score holds {int((~np.isfinite(score)).sum())} "
                                "non-finite values (NaN or inf)")
    return truth.astype(np.int8), score


def rank_auc(truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUC of every row of ``(b, n)`` arrays (Mann-Whitney U with tied ranks averaged);
    NaN for rows holding one class only. Vectorised over rows: what a bootstrap needs.

    Parameters
    ----------
    truth : numpy.ndarray of {0, 1}, shape (b, n) or (n,)
    score : numpy.ndarray of float, same shape

    Returns
    -------
    numpy.ndarray, shape (b,) (a 0-d array for 1-D input)
    """
    from scipy.stats import rankdata

    ranks = rankdata(score, axis=-1)
    n_pos = truth.sum(axis=-1).astype(np.float64)
    n_neg = truth.shape[-1] - n_pos
    u = (ranks * truth).sum(axis=-1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def auc_with_ci(y_true, y_score, *, n_bootstrap: int = 1000, confidence: float = 0.95,
                seed: int | None = None, rng: np.random.Generator | None = None
                ) -> dict[str, float]:
    """Area under the ROC curve with a percentile bootstrap confidence interval.

    Cases are resampled with replacement ``n_bootstrap`` times; resamples that hold
    one class only (AUC undefined) are skipped, and the number used is returned. The
    interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles
    of the resampled AUCs. Resample at the level of independent units: one score
    per patient (the RSNA tables have one image per patient).

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n,)
    y_score : array-like of float, shape (n,)
        Higher means more likely positive (probabilities or logits).
    n_bootstrap : int
        Resamples (0 skips the interval: ``low``/``high`` are NaN).
    confidence : float
        Coverage of the interval, in (0, 1).
    seed, rng :
        Randomness of the resampling (``rng`` wins).

    Returns
    -------
    dict
        ``auc`` (scikit-learn's ``roc_auc_score``), ``low``, ``high``, ``n``,
        ``n_positive``, ``n_bootstrap`` (resamples used).

    Raises
    ------
    InvalidImageError
        Lengths differ, labels other than 0/1, non-finite scores, or one class only
        (the AUC is undefined).

    Examples
    --------
    >>> r = auc_with_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_bootstrap=200, seed=0)
    >>> r["auc"]
    0.75
    """
    from sklearn.metrics import roc_auc_score

    truth, score = _binary_scores(y_true, y_score)
    n_pos = int(truth.sum())
    if n_pos in (0, truth.size):
        raise InvalidImageError(f"AUC is undefined: all {truth.size} cases are "
                                f"{'positive' if n_pos else 'negative'}")
    if not 0 < confidence < 1:
        raise InvalidImageError(f"confidence must be in (0, 1), got {confidence!r}")
    auc = float(roc_auc_score(truth, score))
    low = high = float("nan")
    used = 0
    if n_bootstrap > 0:
        generator = rng if rng is not None else np.random.default_rng(seed)
        aucs = []
        # Chunks bound memory: (chunk, n) index arrays.
        chunk = max(1, min(n_bootstrap, 2_000_000 // truth.size))
        for start in range(0, n_bootstrap, chunk):
            size = min(chunk, n_bootstrap - start)
            idx = generator.integers(0, truth.size, size=(size, truth.size))
            aucs.append(rank_auc(truth[idx], score[idx]))
        values = np.concatenate(aucs)
        values = values[np.isfinite(values)]
        used = int(values.size)
        if used:
            alpha = (1.0 - confidence) / 2.0
            low, high = (float(q) for q in np.quantile(values, [alpha, 1.0 - alpha]))
    return {"auc": auc, "low": low, "high": high, "n": int(truth.size), "n_positive": n_pos,
            "n_bootstrap": used}


def roc_curve(y_true, y_score):
    """ROC curve points (scikit-learn), as a table ready to plot.

    Returns
    -------
    pandas.DataFrame
        Columns ``fpr``, ``tpr``, ``threshold`` (the first threshold is ``inf``:
        nothing called positive).
    """
    import pandas as pd
    from sklearn.metrics import roc_curve as sk_roc_curve

    truth, score = _binary_scores(y_true, y_score)
    fpr, tpr, thresholds = sk_roc_curve(truth, score)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thresholds})


def youden_threshold(y_true, y_score) -> float:
    """The score threshold maximising Youden's J (sensitivity + specificity - 1).

    Choose it on validation data and apply it to the test set: a threshold picked
    on the test set flatters the test figures. Probabilities of a model trained on
    imbalanced classes (23% positives in RSNA) often sit below 0.5 even when the
    ranking (AUC) is good, so 0.5 is rarely the right operating point.

    Returns
    -------
    float
        A threshold to use as ``score >= threshold``.

    Examples
    --------
    >>> youden_threshold([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    0.3
    """
    table = roc_curve(y_true, y_score)
    finite = table[np.isfinite(table["threshold"])]
    j = (finite["tpr"] - finite["fpr"]).to_numpy()
    return float(finite["threshold"].to_numpy()[int(np.argmax(j))])


def confusion_at(y_true, y_score, threshold: float = 0.5):
    """Confusion matrix when scores ``>= threshold`` are called positive.

    Returns
    -------
    pandas.DataFrame
        2x2 counts, rows ``truth`` 0/1, columns ``predicted`` 0/1. ``.attrs`` holds
        ``threshold``, ``sensitivity``, ``specificity``, ``ppv``, ``npv`` and
        ``accuracy`` (NaN where a denominator is zero).

    Examples
    --------
    >>> cm = confusion_at([0, 0, 1, 1], [0.2, 0.7, 0.6, 0.9], threshold=0.5)
    >>> cm.values.tolist(), cm.attrs["sensitivity"], cm.attrs["specificity"]
    ([[1, 1], [0, 2]], 1.0, 0.5)
    """
    import pandas as pd
    from sklearn.metrics import confusion_matrix

    truth, score = _binary_scores(y_true, y_score)
    predicted = (score >= threshold).astype(np.int8)
    counts = confusion_matrix(truth, predicted, labels=[0, 1])
    table = pd.DataFrame(counts, index=pd.Index([0, 1], name="truth"),
                         columns=pd.Index([0, 1], name="predicted"))
    (tn, fp), (fn, tp) = counts

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    table.attrs.update(threshold=float(threshold), sensitivity=ratio(tp, tp + fn),
                       specificity=ratio(tn, tn + fp), ppv=ratio(tp, tp + fp),
                       npv=ratio(tn, tn + fn), accuracy=ratio(tp + tn, counts.sum()))
    return table


def auc_by_group(y_true, y_score, groups, *, n_bootstrap: int = 1000,
                 confidence: float = 0.95, seed: int | None = None):
    """AUC with its bootstrap interval within each group (e.g. AP and PA views).

    Groups holding one class only get ``auc`` NaN (undefined) rather than an error,
    so a table over many groups is always complete; missing group labels form a
    group named ``"missing"``.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``group``, ``n``, ``n_positive``, ``auc``, ``low``, ``high``.
    """
    import pandas as pd

    truth, score = _binary_scores(y_true, y_score)
    labels = pd.Series(np.asarray(groups, dtype=object).reshape(-1))
    if labels.size != truth.size:
        raise InvalidImageError(f"groups has {labels.size} values but y_true has {truth.size}")
    labels = labels.where(labels.notna(), "missing").astype(str)
    rows = []
    for i, name in enumerate(sorted(labels.unique())):
        mask = (labels == name).to_numpy()
        t, s = truth[mask], score[mask]
        row = {"group": name, "n": int(mask.sum()), "n_positive": int(t.sum()),
               "auc": float("nan"), "low": float("nan"), "high": float("nan")}
        if 0 < t.sum() < t.size:
            r = auc_with_ci(t, s, n_bootstrap=n_bootstrap, confidence=confidence,
                            seed=None if seed is None else seed + i)
            row.update(auc=r["auc"], low=r["low"], high=r["high"])
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Intervals: one home for the statistics every chapter reports.
# ---------------------------------------------------------------------------------------


def mean_with_ci(values, *, n_bootstrap: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> dict[str, float]:
    """Mean of ``values`` with a percentile-bootstrap interval (NaN and None dropped).

    Resample the independent units (subjects, patients, scans): one value each.

    Parameters
    ----------
    values : array-like of float
    n_bootstrap : int
        Resamples.
    confidence : float
        Coverage of the interval, in (0, 1).
    seed : int
        Randomness of the resampling.

    Returns
    -------
    dict
        ``mean``, ``low``, ``high``, ``n``. With fewer than two values the interval is
        NaN (nothing to resample).

    Examples
    --------
    >>> mean_with_ci([0.8, 0.9])["n"]
    2
    """
    x = np.asarray([v for v in np.ravel(np.asarray(values, dtype=object))
                    if v is not None and np.isfinite(float(v))], dtype=np.float64)
    if x.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    if x.size < 2 or n_bootstrap < 1:
        return {"mean": float(x.mean()), "low": float("nan"), "high": float("nan"),
                "n": int(x.size)}
    if not 0 < confidence < 1:
        raise InvalidImageError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(int(n_bootstrap), x.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"mean": float(x.mean()), "low": float(low), "high": float(high), "n": int(x.size)}


def proportion_with_ci(k: int, n: int, *, confidence: float = 0.95) -> dict[str, float]:
    """A proportion ``k / n`` with its Wilson score interval (sensitivity, a rate).

    Returns
    -------
    dict
        ``rate``, ``low``, ``high``, ``n``; NaN when ``n`` is 0.

    Examples
    --------
    >>> round(proportion_with_ci(8, 10)["low"], 3)
    0.49
    """
    if n == 0:
        return {"rate": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    if not 0 <= k <= n:
        raise InvalidImageError(f"proportion: k={k} is not between 0 and n={n}")
    from scipy.stats import binomtest

    interval = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence,
                                                       method="wilson")
    return {"rate": k / n, "low": float(interval.low), "high": float(interval.high),
            "n": int(n)}
