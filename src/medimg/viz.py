"""Figures: image grids with boxes, three-plane views, overlays, montages, training curves.

Functions draw on matplotlib axes and return the figure; they never call ``plt.show``."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------
# Segmentation overlays (issue 7): image, truth and prediction on one slice.
# ---------------------------------------------------------------------------------------


def overlay(image, truth=None, prediction=None, *, ax=None, window=None, labels=False,
            alpha=0.35, title=None, aspect=None):
    """Draw a 2-D image in grey with the true and predicted masks on top.

    The truth is outlined in green and the prediction in red (filled, translucent),
    so agreement reads as red fill inside a green outline; misses are green outlines
    with no fill, false alarms red fill outside any outline. With ``labels=True``
    and label maps, the truth's labels are filled one colour per label instead.

    Parameters
    ----------
    image : array-like, shape (rows, cols)
        The slice (any intensities; e.g. HU or windowed values).
    truth, prediction : array-like, shape (rows, cols), optional
        Binary masks or label maps (non-zero = foreground).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (a new figure when None).
    window : (center, width), optional
        Display window in the image's units (e.g. ``(400, 1800)`` for bone in HU);
        the image's own range when None.
    labels : bool
        Fill the truth's labels with distinct colours (per-vertebra masks).
    alpha : float
        Opacity of the fills.
    title : str, optional
    aspect : float, optional
        Pixel aspect (row spacing / column spacing) for anisotropic slices.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    image = np.asarray(image, dtype=np.float32)
    vmin = vmax = None
    if window is not None:
        center, width = (float(v) for v in window)
        vmin, vmax = center - width / 2, center + width / 2
    ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect,
              interpolation="nearest")
    if truth is not None:
        truth = np.asarray(truth)
        if labels and truth.any():
            ax.imshow(np.ma.masked_equal(truth.astype(np.int32), 0), cmap="tab20",
                      vmin=0, vmax=28, alpha=alpha + 0.2, aspect=aspect,
                      interpolation="nearest")
        if truth.any():
            ax.contour(truth > 0, levels=[0.5], colors=["#2ca02c"], linewidths=1.0)
    if prediction is not None:
        prediction = np.asarray(prediction) > 0
        if prediction.any():
            ax.imshow(np.ma.masked_equal(prediction.astype(np.int8), 0), cmap="autumn",
                      vmin=0, vmax=1, alpha=alpha, aspect=aspect, interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax.figure
