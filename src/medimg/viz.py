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
            from matplotlib.colors import ListedColormap

            ax.imshow(np.ma.masked_equal(prediction.astype(np.int8), 0),
                      cmap=ListedColormap(["#d62728"]), vmin=0, vmax=1, alpha=alpha,
                      aspect=aspect, interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax.figure


# ---------------------------------------------------------------------------------------
# Image grids with boxes and metadata EDA plots (issue 3, notebook 01).
# ---------------------------------------------------------------------------------------


def _panel_grid(n_panels, ncols, panel_size):
    """A figure with ``n_panels`` square panels in rows of at most ``ncols``.

    Returns the figure and a 2-D array of axes (``squeeze=False``); panels past
    ``n_panels`` are left for the caller to hide.
    """
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n_panels))
    nrows = -(-n_panels // ncols)
    return plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows),
                        squeeze=False)


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
    import numpy as np
    from matplotlib.patches import Rectangle

    images = list(images)
    if not images:
        raise ValueError("image_grid needs at least one image")
    fig, axes = _panel_grid(len(images), ncols, panel_size)
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
    import pandas as pd

    columns = list(columns)
    fig, axes = _panel_grid(len(columns), ncols, panel_size)
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
    import seaborn as sns

    columns = list(columns)
    fig, axes = _panel_grid(len(columns), ncols, panel_size)
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
# 3-D volumes (issue 4, notebook 02): three-plane views, label overlays, sequence
# histograms, constant-slice profiles. Volumes are (x, y, z[, c]) in RAS+ order.
# ---------------------------------------------------------------------------------------

#: Colours of the BraTS labels (4 = enhancing; 3 is the same class in the HDF5 cache).
BRATS_LABEL_COLORS = {1: "#d62728", 2: "#2ca02c", 3: "#ffdd00", 4: "#ffdd00"}
BRATS_LABEL_NAMES = {1: "necrotic / non-enhancing core", 2: "oedema", 4: "enhancing tumour"}
_PLANES = ("sagittal", "coronal", "axial")


def _volume_parts(volume):
    """(array, spacing) of a Volume or an array (1 mm spacing)."""
    import numpy as np

    if hasattr(volume, "affine") and hasattr(volume, "array"):
        return np.asarray(volume.array), tuple(volume.spacing)
    return np.asarray(volume), (1.0, 1.0, 1.0)


def _default_point(array, label):
    """Label centroid when there is a label, else the centre of the foreground box."""
    import numpy as np

    if label is not None and np.any(label):
        return tuple(int(np.rint(c)) for c in np.argwhere(np.asarray(label) > 0).mean(axis=0))
    foreground = array != 0 if array.ndim == 3 else (array != 0).any(axis=-1)
    if foreground.any():
        hits = np.argwhere(foreground)
        return tuple(int(c) for c in (hits.min(axis=0) + hits.max(axis=0)) // 2)
    return tuple(s // 2 for s in array.shape[:3])


def plane_slice(array, plane, point):
    """One display-ready 2-D slice of an ``(x, y, z)`` RAS+ array.

    Returns the slice transposed so that, drawn with ``origin="lower"``, the axial
    plane shows the patient's right on the right and anterior up (neurological
    convention), the coronal plane right on the right and superior up, and the
    sagittal plane anterior on the right and superior up.
    """
    import numpy as np

    i, j, k = point
    if plane == "sagittal":
        cut = array[i, :, :]
    elif plane == "coronal":
        cut = array[:, j, :]
    elif plane == "axial":
        cut = array[:, :, k]
    else:
        raise ValueError(f"plane must be one of {_PLANES}, got {plane!r}")
    return np.asarray(cut).T


def _plane_aspect(plane, spacing):
    sx, sy, sz = spacing
    return {"sagittal": sz / sy, "coronal": sz / sx, "axial": sy / sx}[plane]


def _draw_labels(ax, cut, aspect, alpha):
    import numpy as np
    from matplotlib.colors import ListedColormap

    if cut is None or not np.any(cut):
        return
    values = sorted(int(v) for v in np.unique(cut) if v)
    colours = ListedColormap([BRATS_LABEL_COLORS.get(v, "#1f77b4") for v in values])
    index = np.zeros(cut.shape, dtype=float)
    for n, v in enumerate(values, start=1):
        index[cut == v] = n
    ax.imshow(np.ma.masked_equal(index, 0), cmap=colours, vmin=0.5, vmax=len(values) + 0.5,
              alpha=alpha, origin="lower", aspect=aspect, interpolation="nearest")


def three_plane(volume, *, label=None, point=None, axes=None, title=None, alpha=0.45,
                percentiles=(0.5, 99.5), cmap="gray"):
    """Sagittal, coronal and axial slices through one point, with an optional label overlay.

    Parameters
    ----------
    volume : medimg.io.Volume or numpy.ndarray
        ``(x, y, z)`` in RAS+ order (a Volume gives the spacing, so anisotropic
        voxels are drawn with the right aspect).
    label : numpy.ndarray, optional
        ``(x, y, z)`` label map drawn in colour (BraTS colours).
    point : (i, j, k), optional
        Voxel the three planes pass through. Default: the label's centroid, else
        the centre of the non-zero region.
    axes : sequence of 3 matplotlib axes, optional
        Where to draw (a new 1x3 figure when None).
    title : str, optional
        Shown on the left panel.
    alpha : float
        Label opacity.
    percentiles : (low, high)
        Display range from these intensity percentiles of the non-zero voxels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    array, spacing = _volume_parts(volume)
    if array.ndim != 3:
        raise ValueError(f"three_plane needs an (x, y, z) volume, got shape {array.shape}")
    point = tuple(int(p) for p in (point or _default_point(array, label)))
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    values = array[array != 0]
    low, high = (np.percentile(values, percentiles) if values.size else (0.0, 1.0))
    for ax, plane in zip(axes, _PLANES, strict=True):
        aspect = _plane_aspect(plane, spacing)
        ax.imshow(plane_slice(array, plane, point), cmap=cmap, vmin=low, vmax=high,
                  origin="lower", aspect=aspect, interpolation="nearest")
        if label is not None:
            _draw_labels(ax, plane_slice(np.asarray(label), plane, point), aspect, alpha)
        ax.set_title(f"{plane} ({'xyz'[_PLANES.index(plane)]}={point[_PLANES.index(plane)]})",
                     fontsize=9)
        ax.set_axis_off()
    if title:
        axes[0].text(-0.08, 0.5, title, transform=axes[0].transAxes, rotation=90,
                     va="center", ha="right", fontsize=10)
    return axes[0].figure


def sequence_planes(image, names, *, label=None, point=None, spacing=(1.0, 1.0, 1.0),
                    panel_size=2.6, alpha=0.45):
    """One row per MRI sequence, three planes each, through the same point.

    Parameters
    ----------
    image : numpy.ndarray
        ``(x, y, z, c)`` stacked sequences.
    names : sequence of str
        One per channel (row titles).
    label : numpy.ndarray, optional
        ``(x, y, z)``; overlaid on an extra last row (on the first sequence).
    point : (i, j, k), optional
        Default: the label's centroid, else the centre of the brain.
    spacing : sequence of 3 float
        Voxel size in mm (for the aspect of each plane).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from .io.volume import Volume

    image = np.asarray(image)
    names = list(names)
    rows = len(names) + (label is not None)
    point = point or _default_point(image, label)
    fig, axes = plt.subplots(rows, 3, figsize=(3 * panel_size, rows * panel_size),
                             squeeze=False)
    affine = np.diag([*spacing, 1.0])
    for row, name in enumerate(names):
        three_plane(Volume(image[..., row], affine), point=point, axes=axes[row], title=name)
    if label is not None:
        three_plane(Volume(image[..., 0], affine), label=label, point=point, axes=axes[-1],
                    title=f"{names[0]} + label", alpha=alpha)
        present = [v for v in (1, 2, 3, 4) if np.any(np.asarray(label) == v)]
        handles = [plt.Rectangle((0, 0), 1, 1, color=BRATS_LABEL_COLORS[v]) for v in present]
        fig.legend(handles, [BRATS_LABEL_NAMES.get(v if v != 3 else 4, str(v))
                             for v in present],
                   loc="lower center", ncol=len(present), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0.03, 0.04 if label is not None else 0, 1, 1))
    return fig


def sequence_histograms(image, names, *, mask=None, label=None, bins=100, panel_size=3.0):
    """Intensity histograms per sequence, brain voxels split into tumour and the rest.

    Parameters
    ----------
    image : numpy.ndarray
        ``(x, y, z, c)``.
    names : sequence of str
        Channel names.
    mask : numpy.ndarray of bool, optional
        ``(x, y, z)`` voxels to include (default: non-zero in any channel, i.e. the
        brain of skull-stripped data; the zero background would swamp the plot).
    label : numpy.ndarray, optional
        ``(x, y, z)``; tumour voxels (label > 0) get their own histogram.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    image = np.asarray(image)
    names = list(names)
    if mask is None:
        mask = (image != 0).any(axis=-1)
    fig, axes = plt.subplots(1, len(names), figsize=(panel_size * len(names), panel_size * 0.9),
                             squeeze=False)
    tumour = np.zeros(mask.shape, bool) if label is None else (np.asarray(label) > 0)
    for c, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        channel = image[..., c]
        healthy = channel[mask & ~tumour]
        edges = np.histogram_bin_edges(channel[mask], bins=bins)
        ax.hist(healthy, bins=edges, color="0.4", density=True, label="brain")
        if tumour.any():
            ax.hist(channel[mask & tumour], bins=edges, color="#d62728", alpha=0.6,
                    density=True, label="tumour")
        ax.set_title(name, fontsize=10)
        ax.set_yticks([])
        ax.set_xlabel("intensity")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def constant_slice_profile(image, *, channel_axis=-1, panel_size=3.0):
    """Per axis, how much each slice varies; constant slices (no information) shaded.

    Parameters
    ----------
    image : numpy.ndarray
        ``(x, y, z)`` or ``(x, y, z, c)`` (with ``channel_axis``).
    channel_axis : int or None
        Channel axis of a 4-D image.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from .spatial import constant_slices

    image = np.asarray(image)
    if image.ndim == 3:
        channel_axis = None
    fig, axes = plt.subplots(1, 3, figsize=(3 * panel_size, panel_size * 0.85))
    for axis, ax in enumerate(axes):
        other = tuple(a for a in range(image.ndim) if a != axis)
        spread = image.max(axis=other).astype(float) - image.min(axis=other).astype(float)
        constant = constant_slices(image, axis, channel_axis=channel_axis)
        ax.plot(np.arange(image.shape[axis]), spread, color="0.2", lw=1)
        for index in constant:
            ax.axvspan(index - 0.5, index + 0.5, color="#1f77b4", alpha=0.25, lw=0)
        ax.set_title(f"{'xyz'[axis]}: {len(constant)} of {image.shape[axis]} constant",
                     fontsize=9)
        ax.set_xlabel(f"slice index along {'xyz'[axis]}")
    axes[0].set_ylabel("max - min in the slice")
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
