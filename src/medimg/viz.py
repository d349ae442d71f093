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


# ---------------------------------------------------------------------------------------
# Image grids with boxes and metadata EDA plots (issue 3, notebook 01).
# ---------------------------------------------------------------------------------------


def image_grid(images, *, titles=None, boxes=None, ncols=4, panel_size=3.0, cmap="gray",
               vmin=None, vmax=None, box_color="tab:red", suptitle=None):
    """Show 2-D images in a grid, optionally with boxes drawn on them.

    Parameters
    ----------
    images : sequence of array-like, each (rows, cols) or (rows, cols, 3)
    titles : sequence of str, optional
        One per image.
    boxes : sequence of sequences of (x, y, width, height), optional
        Per image, boxes in that image's pixel coordinates (RSNA convention:
        ``x``, ``y`` the top-left corner).
    ncols : int
        Panels per row.
    panel_size : float
        Inches per panel.
    cmap, vmin, vmax
        Passed to ``imshow`` (greyscale by default; ``vmin``/``vmax`` default to
        each image's range).
    box_color : str
    suptitle : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    images = list(images)
    if not images:
        raise ValueError("image_grid needs at least one image")
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows),
                             squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index >= len(images):
            continue
        ax.imshow(np.asarray(images[index]), cmap=cmap, vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(str(titles[index]), fontsize=9)
        for x, y, w, h in (boxes[index] if boxes is not None else []):
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=box_color, linewidth=1.5))
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def category_rates(table, columns, *, by="class", normalize=True, ncols=3, panel_size=3.6):
    """Stacked bars: how ``by`` (e.g. the class) splits within each category of each column.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per patient (or image).
    columns : sequence of str
        Categorical columns (view position, sex, age group ...).
    by : str
        The column whose mix is shown inside each bar.
    normalize : bool
        Show proportions (each bar sums to 1) rather than counts.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    columns = list(columns)
    ncols = max(1, min(ncols, len(columns)))
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows),
                             squeeze=False)
    for ax, column in zip(axes.ravel(), columns, strict=False):
        counts = pd.crosstab(table[column], table[by], normalize="index" if normalize else False)
        counts.plot(kind="bar", stacked=True, ax=ax, legend=False, colormap="viridis", width=0.8)
        ax.set_xlabel(column)
        ax.set_ylabel(f"share of {by}" if normalize else "count")
        ax.tick_params(axis="x", rotation=0)
    for ax in axes.ravel()[len(columns):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, 1.02), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def distributions_by(table, columns, *, by="class", ncols=3, panel_size=3.6, bins=25):
    """Histograms (densities) of numeric columns, one colour per value of ``by``.

    Parameters
    ----------
    table : pandas.DataFrame
    columns : sequence of str
        Numeric columns (age, pixel spacing, intensity statistics ...). Missing
        values are left out.
    by : str
        Grouping column (class, Target, view position).
    bins : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    columns = list(columns)
    ncols = max(1, min(ncols, len(columns)))
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows),
                             squeeze=False)
    from matplotlib.patches import Patch

    frame = table.copy()
    groups = (list(frame[by].cat.categories) if hasattr(frame[by], "cat")
              else sorted(frame[by].dropna().unique()))
    groups = [str(g) for g in groups if (frame[by].astype(str) == str(g)).any()]
    frame[by] = frame[by].astype(str)
    palette = dict(zip(groups, sns.color_palette(n_colors=len(groups)), strict=True))
    for ax, column in zip(axes.ravel(), columns, strict=False):
        data = frame[[column, by]].dropna()
        data[column] = data[column].astype(float)
        sns.histplot(data=data, x=column, hue=by, hue_order=groups, palette=palette,
                     stat="density", common_norm=False, element="step", bins=bins, ax=ax,
                     legend=False)
    for ax in axes.ravel()[len(columns):]:
        ax.axis("off")
    handles = [Patch(facecolor=palette[g], edgecolor=palette[g], alpha=0.5, label=g)
               for g in groups]
    fig.legend(handles=handles, loc="upper center", ncol=len(groups), frameon=False,
               bbox_to_anchor=(0.5, 1.02), fontsize=8, title=by, title_fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def intensity_histogram(values, *, spans=None, xlabel="intensity", bins=120, log=True,
                        figsize=(7.0, 2.8)):
    """Histogram of image intensities with shaded ranges (e.g. CT windows in HU).

    Parameters
    ----------
    values : array-like
        Any shape; flattened.
    spans : mapping of str to (center, width), optional
        Ranges to shade, labelled by their key (``{"lung": (-600, 1500)}``).
    xlabel : str
    bins : int
    log : bool
        Logarithmic counts (air and background otherwise dwarf everything).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=figsize)
    ax.hist(np.asarray(values, dtype=np.float64).ravel(), bins=bins, color="0.3")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, (center, width)) in enumerate((spans or {}).items()):
        ax.axvspan(center - width / 2, center + width / 2, alpha=0.15,
                   color=colours[(index + 1) % len(colours)], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pixels")
    if spans:
        ax.legend(fontsize=8)
    if log:
        ax.set_yscale("log")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# Training curves and 3-D segmentation slices (issue 6, notebook 04).
# ---------------------------------------------------------------------------------------


def training_curves(history, metrics=None, *, panel_size=3.4, title=None):
    """Training and validation curves, one panel per metric.

    Parameters
    ----------
    history : pandas.DataFrame, dict or keras History
        One row per epoch (e.g. from :func:`medimg.training.train`), columns such as
        ``loss``, ``val_loss``, ``dice_wt``, ``val_dice_wt``; an ``epoch`` column is
        used for the x axis when present.
    metrics : sequence of str, optional
        Metric names without the ``val_`` prefix (default: every training metric).
    panel_size : float
        Inches per panel.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    if hasattr(history, "history"):
        history = history.history
    table = pd.DataFrame(history)
    epochs = (table["epoch"].to_numpy() if "epoch" in table
              else np.arange(1, len(table) + 1))
    if metrics is None:
        metrics = [c for c in table.columns if not c.startswith("val_") and c != "epoch"
                   and c != "learning_rate"]
    metrics = list(metrics)
    fig, axes = plt.subplots(1, len(metrics), figsize=(panel_size * len(metrics), panel_size * 0.8),
                             squeeze=False)
    for ax, name in zip(axes[0], metrics, strict=True):
        if name in table:
            ax.plot(epochs, table[name], marker="o", ms=3, label="training")
        if f"val_{name}" in table:
            ax.plot(epochs, table[f"val_{name}"], marker="o", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def segmentation_slices(image, truth, prediction, *, slices=None, n_slices=3, axis=2,
                        channel_names=None, channel=0, panel_size=2.8, title=None):
    """Slices of a 3-D volume with the true and the predicted label maps.

    One row per slice: the image (one channel), the truth and the prediction as
    coloured labels on top of it (BraTS: 1 necrotic core, 2 oedema, 3 or 4
    enhancing), and both tumours outlined together (green truth, red prediction).

    Parameters
    ----------
    image : array-like, shape (x, y, z) or (x, y, z, c)
        The volume (e.g. the four MRI sequences).
    truth, prediction : array-like, shape (x, y, z), integer
        Label maps (0 = background).
    slices : sequence of int, optional
        Slice indices along ``axis``; default ``n_slices`` evenly spread over the
        slices where the truth (else the prediction) has tumour.
    axis : int
        Slicing axis (2: axial for RAS+ volumes).
    channel : int
        Channel shown; ``channel_names`` label it.
    panel_size : float
        Inches per panel.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    image = np.asarray(image)
    truth = np.asarray(truth)
    prediction = np.asarray(prediction)
    if image.ndim == 4:
        name = channel_names[channel] if channel_names else f"channel {channel}"
        image = image[..., channel]
    else:
        name = channel_names[0] if channel_names else "image"
    if slices is None:
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero((truth > 0).any(axis=other))
        if present.size == 0:
            present = np.flatnonzero((prediction > 0).any(axis=other))
        if present.size == 0:
            present = np.arange(image.shape[axis])
        slices = np.unique(np.linspace(present[0], present[-1], n_slices + 2)[1:-1].round()
                           .astype(int))
    colours = ListedColormap(["#000000", "#d62728", "#2ca02c", "#ffbf00", "#ffbf00"])

    def cut(array, index):
        return np.rot90(np.take(array, index, axis=axis))  # anterior up for axial RAS+

    fig, axes = plt.subplots(len(slices), 3, figsize=(3 * panel_size, len(slices) * panel_size),
                             squeeze=False)
    for row, index in enumerate(slices):
        background = cut(image, index)
        for col, (labels, label_name) in enumerate(((None, name), (truth, "truth"),
                                                    (prediction, "prediction"))):
            ax = axes[row][col]
            ax.imshow(background, cmap="gray", interpolation="nearest")
            if labels is not None:
                lab = cut(labels, index).astype(int)
                ax.imshow(np.ma.masked_equal(lab, 0), cmap=colours, vmin=0, vmax=4, alpha=0.5,
                          interpolation="nearest")
                if col == 2 and (cut(truth, index) > 0).any():
                    ax.contour(cut(truth, index) > 0, levels=[0.5], colors=["#2ca02c"],
                               linewidths=0.8)
            ax.set_title(f"{label_name}, slice {index}", fontsize=9)
            ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
