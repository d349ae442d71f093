"""Figures: slice views with the display conventions, overlays, error maps, galleries,
training curves, ROC / PR / calibration curves and bar plots with n and intervals.

Every function draws with matplotlib and returns the figure; none calls ``plt.show``.

Display conventions (one place: :func:`display_slice` and :func:`draw_slice`)
--------------------------------------------------------------------------------
* **Axial and coronal** slices are shown in radiological display: the patient's right
  on the viewer's left; anterior up (axial), superior up (coronal).
* **Sagittal** slices are shown with anterior on the viewer's LEFT and superior up.
* The four edges carry orientation letters (R/L, A/P, S/I) taken from the affine, so a
  volume stored in any orientation (RAS, LPS, PIR, ...) is displayed the same way:
  reorientation uses nibabel's orientation tools (flips and permutations, no
  interpolation), never an assumption that the array is RAS.
* Axes are in millimetres (pixel extent = shape x spacing, so anisotropic voxels keep
  their true aspect) or carry a millimetre scale bar; the figure states the display
  convention in a small caption (``fig.supxlabel``).
* Quantitative maps (HU, probabilities, bias fields, Grad-CAM) get a colour bar with
  their unit; every overlay gets a legend naming truth, prediction and labels (BraTS
  1 necrotic core, 2 oedema, 4 enhancing; VerSe levels by name in anatomical order);
  bar plots print n on each bar and, for means, a 95% bootstrap interval.

Array layouts: volumes are NIfTI voxel order ``(x, y, z)`` or ``(x, y, z, c)`` with a
4x4 voxel-to-world (RAS+ mm) affine, or a :class:`medimg.io.Volume`; 2-D slices are
``(rows, cols)`` with ``spacing = (row_mm, col_mm)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, InvalidImageError

__all__ = [
    "BRATS_LABEL_COLORS",
    "BRATS_LABEL_NAMES",
    "CONVENTION_TEXT",
    "DISPLAY_ORIENTATION",
    "ERROR_COLORS",
    "HU_REFERENCES",
    "PLANES",
    "VERTEBRA_NAMES",
    "VERTEBRA_ORDER",
    "DisplaySlice",
    "augmentation_panels",
    "calibration",
    "calibration_table",
    "case_gallery",
    "category_rates",
    "constant_slice_profile",
    "convention_caption",
    "dice_bars",
    "display_slice",
    "display_slice_2d",
    "distributions_by",
    "draw_slice",
    "error_map",
    "grad_cam_gallery",
    "grad_cam_overlay",
    "hu_histogram",
    "image_grid",
    "intensity_histogram",
    "n4_comparison",
    "orientation_check",
    "overlay",
    "overlay_grid",
    "plane_slice",
    "precision_recall",
    "prediction_slices",
    "roc_curves",
    "sagittal_overlays",
    "segmentation_slices",
    "sequence_histograms",
    "sequence_planes",
    "slice_view",
    "three_plane",
    "training_curves",
    "vertebra_labels",
    "window_views",
]

# ---------------------------------------------------------------------------------------
# Constants: planes, display orientation, label names and colours, HU references.
# ---------------------------------------------------------------------------------------

PLANES = ("axial", "coronal", "sagittal")

#: Per plane, the nibabel axis codes a volume is reoriented to before slicing:
#: (slice axis, direction the rows run top -> bottom, direction the columns run
#: left -> right). Axial: rows A->P, columns R->L (radiological); coronal: rows S->I,
#: columns R->L (radiological); sagittal: rows S->I, columns A->P (anterior on the left).
#: The slice axis points R/A/S, so a slice index counts as in a RAS+ array.
DISPLAY_ORIENTATION: dict[str, tuple[str, str, str]] = {
    "axial": ("S", "P", "L"),
    "coronal": ("A", "I", "L"),
    "sagittal": ("R", "I", "P"),
}

#: The display convention of each plane, as stated on the figures.
CONVENTION_TEXT: dict[str, str] = {
    "axial": "axial: radiological (patient's right on viewer's left, anterior up)",
    "coronal": "coronal: radiological (patient's right on viewer's left, superior up)",
    "sagittal": "sagittal: anterior on the left, superior up",
}

_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
_AXIS_OF = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
_PLANE_OF_AXIS = {0: "sagittal", 1: "coronal", 2: "axial"}

#: Colours of the BraTS labels (4 = enhancing; 3 is the same class in the HDF5 cache).
BRATS_LABEL_COLORS = {1: "#d62728", 2: "#2ca02c", 3: "#ffdd00", 4: "#ffdd00"}
BRATS_LABEL_NAMES = {1: "necrotic / non-enhancing core", 2: "oedema", 4: "enhancing tumour"}

#: VerSe label -> vertebra name (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 sacrum,
#: 27 coccyx, 28 T13). Kept equal to ``medimg.datasets.verse.VERTEBRA_NAMES`` (tested);
#: defined here because viz sits below the data-set modules and may not import them.
VERTEBRA_NAMES: dict[int, str] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{i + 7: f"T{i}" for i in range(1, 13)},
    **{i + 19: f"L{i}" for i in range(1, 7)},
    26: "S", 27: "Cocc", 28: "T13",
}
#: VerSe labels in anatomical order, head to tail (T13 between T12 and L1, L6 after L5).
VERTEBRA_ORDER: tuple[int, ...] = (*range(1, 20), 28, *range(20, 26), 26, 27)

#: Colours of the truth, the prediction and the two kinds of error.
ERROR_COLORS = {"truth": "#2ca02c", "prediction": "#d62728",
                "false positive": "#ff00ff", "false negative": "#00bfff",
                "true positive": "#ffffff"}

#: Reference Hounsfield units drawn on HU histograms: a value (line) or a (low, high)
#: range (shaded; ``None`` = open end).
HU_REFERENCES: dict[str, float | tuple[float | None, float | None]] = {
    "air": -1000.0,
    "fat": -100.0,
    "soft tissue": 40.0,
    "cancellous bone": (200.0, 400.0),
    "cortical bone": (1000.0, None),
}

_LETTER_STYLE = dict(color="#ffd700", fontsize=9, fontweight="bold")


# ---------------------------------------------------------------------------------------
# The orientation core: volume (any affine) or 2-D slice -> display array, extent in mm,
# edge letters; drawing with letters, millimetres, colour bar and convention caption.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisplaySlice:
    """A 2-D slice ready to draw with the display conventions.

    Attributes
    ----------
    array : numpy.ndarray
        ``(rows, cols)`` or ``(rows, cols, c)``; row 0 is the top of the display,
        column 0 its left (draw with ``origin="upper"``).
    spacing : (float, float)
        Pixel size ``(row_mm, col_mm)``.
    letters : (str, str, str, str) or None
        Orientation letters on the (top, bottom, left, right) edges; None when the
        orientation is unknown.
    plane : str or None
        ``"axial"``, ``"coronal"`` or ``"sagittal"`` (None if unknown).
    index : int or None
        Slice index along the plane's axis, counted as in the RAS+ (canonical) array:
        from the patient's left (sagittal), posterior (coronal), inferior (axial).
    position_mm : float or None
        World coordinate (RAS+ mm) of the slice along its axis (x for sagittal, y for
        coronal, z for axial).
    centre_mm : (float, float, float) or None
        World coordinates (RAS+ mm) of the slice's centre: cut another volume (on any
        grid) at the same place with ``display_slice(other, plane, point_mm=centre_mm)``.
    """

    array: np.ndarray
    spacing: tuple[float, float]
    letters: tuple[str, str, str, str] | None
    plane: str | None = None
    index: int | None = None
    position_mm: float | None = None
    centre_mm: tuple[float, float, float] | None = None

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(left, right, bottom, top)`` in mm for ``imshow(origin="upper")``: the
        image spans ``cols * col_mm`` by ``rows * row_mm`` from its top-left corner."""
        rows, cols = self.array.shape[:2]
        return (0.0, cols * self.spacing[1], rows * self.spacing[0], 0.0)

    @property
    def size_mm(self) -> tuple[float, float]:
        """``(height_mm, width_mm)`` of the displayed slice."""
        rows, cols = self.array.shape[:2]
        return (rows * self.spacing[0], cols * self.spacing[1])


def _check_plane(plane):
    if plane not in PLANES:
        raise ConfigError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    return plane


def _volume_array_affine(volume, affine=None):
    """(array, affine) of a Volume or an array (identity affine, RAS+ 1 mm, if None)."""
    if hasattr(volume, "affine") and hasattr(volume, "array"):
        array, vol_affine = np.asarray(volume.array), np.asarray(volume.affine, float)
        return array, (vol_affine if affine is None else np.asarray(affine, float))
    if hasattr(volume, "numpy"):
        volume = volume.numpy()
    array = np.asarray(volume)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    if array.ndim not in (3, 4):
        raise InvalidImageError(
            f"expected a volume of shape (x, y, z) or (x, y, z, c), got shape {array.shape}")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) \
            or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InvalidImageError(f"affine must be a finite, invertible 4x4 matrix, got "
                                f"shape {affine.shape}")
    return array, affine


def _spacing_of(affine):
    return tuple(float(s) for s in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def _reorient(array, affine, codes):
    """Flip/permute ``array`` (first three axes) so its axes point to ``codes``."""
    from nibabel.orientations import (
        apply_orientation,
        axcodes2ornt,
        inv_ornt_aff,
        io_orientation,
        ornt_transform,
    )

    transform = ornt_transform(io_orientation(affine), axcodes2ornt(codes))
    moved = apply_orientation(array, transform)
    return moved, affine @ inv_ornt_aff(transform, array.shape[:3])


def _letters_from_codes(row_code, col_code):
    return (_OPPOSITE[row_code], row_code, _OPPOSITE[col_code], col_code)


def display_slice(volume, plane="axial", index=None, *, affine=None, point_mm=None,
                  reorient=True):
    """Cut one slice of a 3-D volume in the display convention.

    The volume is reoriented (flips and permutations from its affine, nibabel's
    ``io_orientation``; no interpolation) so that the slice has, for ``"axial"``,
    anterior at the top and the patient's right on the left; for ``"coronal"``,
    superior at the top and the patient's right on the left; for ``"sagittal"``,
    superior at the top and anterior on the LEFT. An RAS and an LPS file of the same
    anatomy therefore give the same display array and the same letters. Oblique
    affines are displayed on their closest orientation (as a viewer in voxel mode).

    Parameters
    ----------
    volume : medimg.io.Volume or array-like
        ``(x, y, z)`` or ``(x, y, z, c)`` voxels in NIfTI order. An array without
        ``affine`` is taken as RAS+ with 1 mm voxels.
    plane : {"axial", "coronal", "sagittal"}
    index : int, optional
        Slice index counted as in the RAS+ array (from the patient's left, posterior
        or inferior end). Default: ``point_mm`` if given, else the middle slice.
    affine : array-like, shape (4, 4), optional
        Voxel-to-world (RAS+ mm) matrix of an array (overrides a Volume's).
    point_mm : sequence of 3 float, optional
        A world point (RAS+ mm) the slice passes through (instead of ``index``).
    reorient : bool
        False cuts the array as stored (along the array axis closest to the plane's
        normal, rows and columns in array order) and only labels the edges: useful
        to show why reorientation matters.

    Returns
    -------
    DisplaySlice
        ``array`` ``(rows, cols[, c])``, ``spacing`` ``(row_mm, col_mm)``, ``letters``
        (top, bottom, left, right), ``plane``, ``index``, ``position_mm``.

    Raises
    ------
    ConfigError
        Unknown plane.
    InvalidImageError
        Not a 3-D/4-D array, a singular affine, or an index / point outside the volume.

    Examples
    --------
    >>> ds = display_slice(np.zeros((4, 5, 6)), "sagittal", affine=np.diag([1, 1, 2, 1]))
    >>> ds.letters, ds.array.shape, ds.extent
    (('S', 'I', 'A', 'P'), (6, 5), (0.0, 5.0, 12.0, 0.0))
    """
    import nibabel as nib

    _check_plane(plane)
    array, affine = _volume_array_affine(volume, affine)
    normal = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    if reorient:
        moved, moved_affine = _reorient(array, affine, DISPLAY_ORIENTATION[plane])
    else:
        codes = nib.aff2axcodes(affine)
        slice_axis = next(a for a, c in enumerate(codes) if _AXIS_OF[c] == normal)
        order = [slice_axis] + [a for a in range(3) if a != slice_axis]
        moved = np.moveaxis(array, order, [0, 1, 2])
        moved_affine = affine[:, [*order, 3]]
    n = moved.shape[0]
    if point_mm is not None:
        voxel = np.linalg.solve(moved_affine, [*(float(p) for p in point_mm), 1.0])
        index = int(np.rint(voxel[0]))
        if not 0 <= index < n:
            raise InvalidImageError(f"point {tuple(point_mm)} mm lies outside the volume "
                                    f"({plane} slice {index} of {n})")
    elif index is None:
        index = n // 2
    index = int(index)
    if not 0 <= index < n:
        raise InvalidImageError(f"{plane} slice index {index} is outside 0..{n - 1}")
    codes = nib.aff2axcodes(moved_affine)
    spacing = _spacing_of(moved_affine)
    centre = moved_affine @ [index, (moved.shape[1] - 1) / 2, (moved.shape[2] - 1) / 2, 1.0]
    return DisplaySlice(array=np.asarray(moved[index]), spacing=(spacing[1], spacing[2]),
                        letters=_letters_from_codes(codes[1], codes[2]), plane=plane,
                        index=index, position_mm=float(centre[normal]),
                        centre_mm=tuple(float(c) for c in centre[:3]))


def display_slice_2d(image, spacing=(1.0, 1.0), axcodes=None, *, reorient=True):
    """A 2-D slice already cut by a pipeline, in the display convention.

    Parameters
    ----------
    image : array-like, shape (rows, cols) or (rows, cols, c)
    spacing : (float, float)
        Pixel size ``(row_mm, col_mm)``.
    axcodes : (str, str), optional
        The anatomical direction the rows (top -> bottom) and the columns (left ->
        right) run to, in nibabel's convention, e.g. ``("I", "A")`` for a VerSe
        sagittal slice (``PLANE_ORIENTATIONS["sagittal"][1:]``), ``("I", "L")`` for a
        PA chest radiograph. None: orientation unknown (no letters, no reorientation).
    reorient : bool
        Flip/transpose to the plane's display convention (sagittal: anterior on the
        left; axial/coronal radiological). The plane is the one the two codes span.

    Returns
    -------
    DisplaySlice

    Raises
    ------
    InvalidImageError
        Wrong rank, non-positive spacing, or codes that are not two different axes.

    Examples
    --------
    >>> ds = display_slice_2d(np.zeros((4, 8)), (2.0, 1.0), ("I", "A"))
    >>> ds.letters, ds.array.shape, ds.plane
    (('S', 'I', 'A', 'P'), (4, 8), 'sagittal')
    """
    if hasattr(image, "numpy"):
        image = image.numpy()
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise InvalidImageError(f"expected a 2-D slice (rows, cols[, c]), got shape "
                                f"{array.shape}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 2 or min(spacing) <= 0:
        raise InvalidImageError(f"spacing must be two positive sizes in mm, got {spacing}")
    if axcodes is None:
        return DisplaySlice(array=array, spacing=spacing, letters=None)
    row_code, col_code = (str(c).upper() for c in axcodes)
    if row_code not in _AXIS_OF or col_code not in _AXIS_OF \
            or _AXIS_OF[row_code] == _AXIS_OF[col_code]:
        raise InvalidImageError(f"axcodes {tuple(axcodes)} must be two of R/L, A/P, S/I "
                                "on different axes (rows, columns)")
    normal = ({0, 1, 2} - {_AXIS_OF[row_code], _AXIS_OF[col_code]}).pop()
    plane = _PLANE_OF_AXIS[normal]
    if reorient:
        _, want_row, want_col = DISPLAY_ORIENTATION[plane]
        if _AXIS_OF[row_code] != _AXIS_OF[want_row]:
            array = np.swapaxes(array, 0, 1)
            spacing = (spacing[1], spacing[0])
            row_code, col_code = col_code, row_code
        if row_code != want_row:
            array, row_code = array[::-1], want_row
        if col_code != want_col:
            array, col_code = array[:, ::-1], want_col
    return DisplaySlice(array=np.ascontiguousarray(array), spacing=spacing,
                        letters=_letters_from_codes(row_code, col_code), plane=plane)


def _nice_length(width_mm):
    for length in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if length >= width_mm / 5:
            return length
    return 1000


def _scale_bar(ax, ds):
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = _nice_length(ds.size_mm[1])
    bar = AnchoredSizeBar(ax.transData, length, f"{length} mm", "lower right", pad=0.3,
                          color="white", frameon=False, size_vertical=ds.size_mm[0] / 80,
                          fontproperties={"size": 7})
    bar.set_gid("scale-bar")
    ax.add_artist(bar)


def _draw_letters(ax, letters):
    import matplotlib.patheffects as effects

    stroke = [effects.withStroke(linewidth=2, foreground="black")]
    positions = {"top": (0.5, 0.985, "center", "top"), "bottom": (0.5, 0.015, "center", "bottom"),
                 "left": (0.015, 0.5, "left", "center"), "right": (0.985, 0.5, "right", "center")}
    for edge, letter in zip(("top", "bottom", "left", "right"), letters, strict=True):
        x, y, ha, va = positions[edge]
        text = ax.text(x, y, letter, transform=ax.transAxes, ha=ha, va=va, path_effects=stroke,
                       **_LETTER_STYLE)
        text.set_gid(f"orientation-{edge}")


def convention_caption(planes):
    """The sentence that states the display convention of ``planes`` on a figure.

    Examples
    --------
    >>> convention_caption(["sagittal"])
    'Display: sagittal: anterior on the left, superior up. Edge letters: patient directions.'
    """
    planes = [p for p in PLANES if p in set(planes)]
    parts = []
    radiological = [p for p in ("axial", "coronal") if p in planes]
    if radiological:
        up = {"axial": "anterior up", "coronal": "superior up"}
        ups = ", ".join(up[p] if len(radiological) == 1 else f"{up[p]} ({p})"
                        for p in radiological)
        parts.append(f"{' and '.join(radiological)}: radiological (patient's right on the "
                     f"viewer's left), {ups}")
    if "sagittal" in planes:
        parts.append(CONVENTION_TEXT["sagittal"])
    return "Display: " + "; ".join(parts) + ". Edge letters: patient directions."


def _state_convention(fig, plane):
    """Add ``plane``'s display convention to the figure's caption (once per plane)."""
    import textwrap

    if plane is None:
        return
    planes = getattr(fig, "_medimg_planes", [])
    if plane in planes:
        return
    planes = [*planes, plane]
    fig._medimg_planes = planes
    text = textwrap.fill(convention_caption(planes),
                         width=max(45, int(fig.get_figwidth() * 17)))
    caption = fig.supxlabel(text, fontsize=7, color="0.3")
    caption.set_gid("display-convention")


def _window_limits(window, vmin, vmax):
    if window is not None:
        center, width = (float(v) for v in window)
        return center - width / 2, center + width / 2
    return vmin, vmax


def draw_slice(ds, ax=None, *, cmap="gray", vmin=None, vmax=None, window=None,
               colorbar=False, units=None, mm="axes", letters=True, title=None, alpha=1.0,
               norm=None, caption=True):
    """Draw a :class:`DisplaySlice` with the conventions.

    Parameters
    ----------
    ds : DisplaySlice
    ax : matplotlib.axes.Axes, optional
        New figure when None.
    cmap, vmin, vmax, norm, alpha
        As ``imshow``.
    window : (center, width), optional
        Display window in the image's units (wins over ``vmin``/``vmax``).
    colorbar : bool
        Add a colour bar labelled ``units`` (use it for quantitative maps).
    units : str, optional
        Unit of the values (``"HU"``, ``"probability"``, ...).
    mm : {"axes", "bar", None}
        Millimetre axes, a millimetre scale bar, or neither.
    letters : bool
        Orientation letters on the four edges (when ``ds.letters`` is known).
    title : str, optional
    caption : bool
        State the plane's display convention on the figure.

    Returns
    -------
    matplotlib.image.AxesImage
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    vmin, vmax = _window_limits(window, vmin, vmax)
    image = ax.imshow(ds.array, cmap=cmap, vmin=None if norm else vmin,
                      vmax=None if norm else vmax, norm=norm, extent=ds.extent, origin="upper",
                      aspect="equal", interpolation="nearest", alpha=alpha)
    if letters and ds.letters is not None:
        _draw_letters(ax, ds.letters)
    if mm == "axes":
        ax.tick_params(labelsize=6, length=2)
        ax.set_xlabel("mm", fontsize=7, labelpad=1)
        ax.set_ylabel("mm", fontsize=7, labelpad=1)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if mm == "bar":
            _scale_bar(ax, ds)
    if colorbar:
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label(units or "value", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=9)
    if caption and ds.letters is not None:
        _state_convention(ax.figure, ds.plane)
    return image


# ---------------------------------------------------------------------------------------
# Labels, masks, errors and legends on a drawn slice.
# ---------------------------------------------------------------------------------------


def _vertebra_colour(value):
    import matplotlib.pyplot as plt

    palette = plt.get_cmap("tab20").colors
    position = VERTEBRA_ORDER.index(value) if value in VERTEBRA_ORDER else value
    return palette[(2 * position + position // 10) % 20]


def _label_scheme(values, label_names=None):
    """(value -> legend name, value -> colour, values in legend order)."""
    import matplotlib.pyplot as plt

    values = sorted(int(v) for v in values if v)
    if label_names is None:
        label_names = "vertebrae" if values and max(values) > 4 else "brats"
    if label_names == "brats":
        names = {v: (f"{v} {BRATS_LABEL_NAMES[v]}" if v in BRATS_LABEL_NAMES else
                     f"3 {BRATS_LABEL_NAMES[4]} (label 4 in the files)" if v == 3 else f"label {v}")
                 for v in values}
        colours = {v: BRATS_LABEL_COLORS.get(v, "#1f77b4") for v in values}
        order = values
    elif label_names == "vertebrae":
        names = {v: VERTEBRA_NAMES.get(v, f"label {v}") for v in values}
        colours = {v: _vertebra_colour(v) for v in values}
        order = sorted(values, key=lambda v: (VERTEBRA_ORDER.index(v) if v in VERTEBRA_ORDER
                                              else len(VERTEBRA_ORDER) + v))
    elif isinstance(label_names, dict):
        names = {v: str(label_names.get(v, f"label {v}")) for v in values}
        palette = plt.get_cmap("tab10").colors
        colours = {v: palette[i % 10] for i, v in enumerate(values)}
        order = values
    else:
        raise ConfigError(f"label_names must be 'brats', 'vertebrae', a dict or None, got "
                          f"{label_names!r}")
    return names, colours, order


def _draw_label_map(ax, cut, extent, colours, alpha):
    from matplotlib.colors import ListedColormap

    cut = np.asarray(cut)
    values = [v for v in colours if np.any(cut == v)]
    if not values:
        return
    index = np.zeros(cut.shape, dtype=float)
    for n, v in enumerate(values, start=1):
        index[cut == v] = n
    ax.imshow(np.ma.masked_equal(index, 0), cmap=ListedColormap([colours[v] for v in values]),
              vmin=0.5, vmax=len(values) + 0.5, alpha=alpha, extent=extent, origin="upper",
              aspect="equal", interpolation="nearest")


def _draw_fill(ax, mask, extent, colour, alpha):
    from matplotlib.colors import ListedColormap

    mask = np.asarray(mask) > 0
    if mask.any():
        ax.imshow(np.ma.masked_equal(mask.astype(np.int8), 0), cmap=ListedColormap([colour]),
                  vmin=0, vmax=1, alpha=alpha, extent=extent, origin="upper", aspect="equal",
                  interpolation="nearest")


def _draw_outline(ax, mask, extent, colour, linewidth=1.0):
    mask = np.asarray(mask) > 0
    if mask.any() and not mask.all():
        ax.contour(mask, levels=[0.5], colors=[colour], linewidths=linewidth, extent=extent,
                   origin="upper")


def _foreground(labels, classes):
    labels = np.asarray(labels)
    if classes is None:
        return labels > 0
    return np.isin(labels, list(classes))


def _error_counts(truth, prediction, classes=None):
    t, p = _foreground(truth, classes), _foreground(prediction, classes)
    return {"true positive": t & p, "false positive": p & ~t, "false negative": t & ~p}


def _draw_errors(ax, truth, prediction, extent, classes=None, alpha=0.8):
    parts = _error_counts(truth, prediction, classes)
    _draw_fill(ax, parts["true positive"], extent, ERROR_COLORS["true positive"], 0.3)
    _draw_fill(ax, parts["false positive"], extent, ERROR_COLORS["false positive"], alpha)
    _draw_fill(ax, parts["false negative"], extent, ERROR_COLORS["false negative"], alpha)
    return {k: int(v.sum()) for k, v in parts.items()}


def _patch(colour, label, alpha=1.0, edge=None):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor=edge or colour, alpha=alpha, label=label)


def _error_handles(counts=None, pixel_mm2=None):
    handles = []
    for kind in ("false positive", "false negative", "true positive"):
        label = kind if kind != "true positive" else "agree (true positive)"
        if counts is not None:
            n = counts[kind]
            area = f", {n * pixel_mm2:.0f} mm²" if pixel_mm2 else ""
            label = f"{label}: {n} px{area}"
        handles.append(_patch(ERROR_COLORS[kind], label,
                              alpha=0.5 if kind == "true positive" else 1.0,
                              edge="0.5" if kind == "true positive" else None))
    return handles


def _legend_outside(ax, handles, title=None):
    legend = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       fontsize=7, frameon=False, title=title, title_fontsize=7,
                       borderaxespad=0.0)
    return legend


def _display_range(array, percentiles=(0.5, 99.5)):
    values = np.asarray(array, dtype=np.float64)
    values = values[np.isfinite(values)]
    nonzero = values[values != 0]
    values = nonzero if nonzero.size else values
    if not values.size:
        return 0.0, 1.0
    low, high = np.percentile(values, percentiles)
    return float(low), float(high if high > low else low + 1.0)


# ---------------------------------------------------------------------------------------
# Slice views of volumes.
# ---------------------------------------------------------------------------------------


def slice_view(volume, plane="axial", *, index=None, point_mm=None, affine=None, ax=None,
               label=None, label_names=None, truth=None, prediction=None, window=None,
               percentiles=(0.5, 99.5), cmap="gray", colorbar=False, units=None, alpha=0.45,
               mm="axes", reorient=True, title=None, legend=True):
    """One plane of a volume with letters, millimetres and optional overlays.

    Parameters
    ----------
    volume : medimg.io.Volume or array-like
        ``(x, y, z)`` (an array without ``affine``: RAS+, 1 mm).
    plane : {"axial", "coronal", "sagittal"}
    index, point_mm, affine, reorient
        See :func:`display_slice`.
    ax : matplotlib.axes.Axes, optional
    label : Volume or array-like, optional
        ``(x, y, z)`` label map on the same grid (or a Volume on its own grid), filled
        one colour per label with a legend.
    label_names : {"brats", "vertebrae"} or dict, optional
        Names of the labels (default: vertebrae when a label exceeds 4, else BraTS).
    truth, prediction : Volume or array-like, optional
        Binary masks: truth outlined (green), prediction filled (red).
    window : (center, width), optional
        Display window in the image's units; else ``percentiles`` of the non-zero voxels.
    cmap : str
    colorbar, units
        Colour bar and its unit (for quantitative maps: HU, probability, field).
    alpha : float
        Opacity of the overlays.
    mm : {"axes", "bar", None}
    title : str, optional
        Default: the plane, index and position in mm.
    legend : bool

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    array, affine = _volume_array_affine(volume, affine)
    if array.ndim != 3:
        raise InvalidImageError(f"slice_view needs an (x, y, z) volume, got shape {array.shape}")
    ds = display_slice(array, plane, index, affine=affine, point_mm=point_mm, reorient=reorient)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 4.2), layout="constrained")
    vmin, vmax = (None, None) if window is not None else _display_range(array, percentiles)
    if title is None:
        title = f"{plane} {ds.index} ({'xyz'[_normal(plane)]} = {ds.position_mm:.1f} mm)"
    draw_slice(ds, ax, cmap=cmap, vmin=vmin, vmax=vmax, window=window, colorbar=colorbar,
               units=units, mm=mm, title=title)
    handles = _overlay_on(ax, ds, affine, reorient, label=label, label_names=label_names,
                          truth=truth, prediction=prediction, alpha=alpha)
    if legend and handles:
        _legend_outside(ax, handles)
    return ax.figure


def _normal(plane):
    return {"sagittal": 0, "coronal": 1, "axial": 2}[plane]


def _unique_labels(labels):
    array = labels.array if hasattr(labels, "array") else labels
    return [int(v) for v in np.unique(np.asarray(array)) if v]


def _matching_cut(other, ds, affine, reorient=True):
    """The slice of ``other`` that matches ``ds``: a Volume is cut at the same world
    point (it may be stored in another orientation); an array is taken to share the
    image's grid (``affine``)."""
    if hasattr(other, "affine") and hasattr(other, "array"):
        cut = display_slice(other, ds.plane, point_mm=ds.centre_mm, reorient=reorient)
    else:
        cut = display_slice(other, ds.plane, ds.index, affine=affine, reorient=reorient)
    if cut.array.shape[:2] != ds.array.shape[:2]:
        raise InvalidImageError(f"{ds.plane} slice of the overlay {cut.array.shape[:2]} does "
                                f"not match the image's {ds.array.shape[:2]}: not on one grid")
    return cut.array


def _overlay_on(ax, ds, affine, reorient, *, label=None,
                label_names=None, truth=None, prediction=None, alpha=0.45):
    handles = []
    extent = ds.extent
    if label is not None:
        cut = _matching_cut(label, ds, affine, reorient)
        names, colours, order = _label_scheme(_unique_labels(label), label_names)
        _draw_label_map(ax, cut, extent, colours, alpha)
        handles += [_patch(colours[v], names[v]) for v in order if np.any(cut == v)]
    if truth is not None:
        _draw_outline(ax, _matching_cut(truth, ds, affine, reorient), extent,
                      ERROR_COLORS["truth"])
        handles.append(_patch("none", "truth (outline)", edge=ERROR_COLORS["truth"]))
    if prediction is not None:
        _draw_fill(ax, _matching_cut(prediction, ds, affine, reorient), extent,
                   ERROR_COLORS["prediction"], alpha)
        handles.append(_patch(ERROR_COLORS["prediction"], "prediction (fill)", alpha=alpha))
    return handles


def _finish(fig, handles=None, suptitle=None, ncol=None):
    """Figure-level legend above the panels (constrained layout), titled by
    ``suptitle``; a plain title when there is no legend."""
    if handles:
        legend = fig.legend(handles=handles, loc="outside upper center",
                            ncol=ncol or min(len(handles), 4), fontsize=7, frameon=False,
                            title=suptitle, title_fontsize=10)
        legend.set_gid("overlay-legend")
    elif suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def _constrained(nrows, ncols, width, height, **kwargs):
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False,
                        layout="constrained", **kwargs)


# ---------------------------------------------------------------------------------------
# 2-D overlays and error maps (slices already cut by a pipeline).
# ---------------------------------------------------------------------------------------


def _as_2d(x):
    if x is None:
        return None
    if hasattr(x, "numpy"):
        x = x.numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    return x


def _is_binary(labels):
    values = np.unique(np.asarray(labels.array if hasattr(labels, "array") else labels))
    return bool(np.all(np.isin(values, (0, 1))))


def overlay(image, truth=None, prediction=None, *, ax=None, window=None, labels=False,
            alpha=0.35, title=None, aspect=None, spacing=None, axcodes=None, reorient=True,
            label_names=None, legend=True, colorbar=False, units=None, mm="auto"):
    """Draw a 2-D image in grey with the true and predicted masks on top.

    The truth is outlined in green and the prediction filled in red (translucent),
    so agreement reads as red fill inside a green outline; misses are green outlines
    with no fill, false alarms red fill outside any outline (:func:`error_map` draws
    the two kinds of error explicitly). With ``labels=True`` the truth's labels are
    filled one colour per label, named in the legend.

    Parameters
    ----------
    image : array-like, shape (rows, cols) or (rows, cols, 1)
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
        Pixel aspect (row spacing / column spacing) when ``spacing`` is not known.
    spacing : (row_mm, col_mm), optional
        Pixel size: axes in millimetres with the true aspect.
    axcodes : (str, str), optional
        Directions the rows and columns run to (e.g. ``("I", "A")``): orientation
        letters on the edges and, with ``reorient``, the display convention
        (:func:`display_slice_2d`).
    reorient : bool
    label_names : {"brats", "vertebrae"} or dict, optional
        Names of the labels with ``labels=True`` (default: vertebrae when a label
        exceeds 4, else BraTS).
    legend : bool
        Legend naming truth, prediction and labels.
    colorbar, units
        Colour bar for the image's values (e.g. ``units="HU"``).
    mm : {"auto", "axes", "bar", None}
        Millimetre axes or scale bar; "auto": axes when ``spacing`` is given, else none.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 4.2), layout="constrained")
    if mm == "auto":
        mm = "axes" if spacing is not None else None
    if spacing is None:
        spacing = (float(aspect or 1.0), 1.0)

    def cut(x):
        return display_slice_2d(_as_2d(x), spacing, axcodes, reorient=reorient)

    ds = cut(np.asarray(_as_2d(image), dtype=np.float32))
    draw_slice(ds, ax, window=window, colorbar=colorbar, units=units, mm=mm, title=title)
    handles = []
    if truth is not None:
        truth_2d = cut(truth).array
        if labels and np.any(truth_2d):
            names, colours, order = _label_scheme(np.unique(truth_2d), label_names)
            _draw_label_map(ax, truth_2d, ds.extent, colours, min(1.0, alpha + 0.2))
            handles += [_patch(colours[v], names[v]) for v in order]
        _draw_outline(ax, truth_2d, ds.extent, ERROR_COLORS["truth"])
        handles.append(_patch("none", "truth (outline)", edge=ERROR_COLORS["truth"]))
    if prediction is not None:
        _draw_fill(ax, cut(prediction).array, ds.extent, ERROR_COLORS["prediction"], alpha)
        handles.append(_patch(ERROR_COLORS["prediction"], "prediction (fill)", alpha=alpha))
    if legend and handles:
        _legend_outside(ax, handles)
    return ax.figure


def error_map(image, truth, prediction, *, ax=None, spacing=None, axcodes=None, reorient=True,
              window=None, classes=None, title="errors", legend=True, mm="auto", alpha=0.8):
    """False positives and false negatives of a prediction on a 2-D slice.

    Agreement (true positive) is a faint white fill, false positives (predicted,
    not true) magenta, false negatives (true, missed) cyan; the legend counts the
    pixels of each (and their area in mm² when ``spacing`` is given).

    Parameters
    ----------
    image : array-like, shape (rows, cols)
    truth, prediction : array-like, shape (rows, cols)
        Masks or label maps.
    ax : matplotlib.axes.Axes, optional
    spacing, axcodes, reorient, mm
        As in :func:`overlay`.
    window : (center, width), optional
    classes : iterable of int, optional
        Labels counted as foreground (e.g. ``{1, 4}`` for the BraTS tumour core);
        default: every non-zero label.
    title : str
    legend : bool
    alpha : float
        Opacity of the error fills.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 4.2), layout="constrained")
    if mm == "auto":
        mm = "axes" if spacing is not None else None
    pixel_mm2 = None if spacing is None else float(np.prod(spacing))
    spacing = (1.0, 1.0) if spacing is None else spacing

    def cut(x):
        return display_slice_2d(_as_2d(x), spacing, axcodes, reorient=reorient)

    ds = cut(np.asarray(_as_2d(image), dtype=np.float32))
    truth_2d, prediction_2d = cut(truth).array, cut(prediction).array
    if truth_2d.shape != prediction_2d.shape or truth_2d.shape != ds.array.shape[:2]:
        raise InvalidImageError(f"image {ds.array.shape}, truth {truth_2d.shape} and "
                                f"prediction {prediction_2d.shape} must have one shape")
    draw_slice(ds, ax, window=window, mm=mm, title=title)
    counts = _draw_errors(ax, truth_2d, prediction_2d, ds.extent, classes, alpha)
    if legend:
        _legend_outside(ax, _error_handles(counts, pixel_mm2))
    return ax.figure


def overlay_grid(images, truths=None, predictions=None, *, titles=None, spacing=None,
                 axcodes=None, window=None, labels=False, label_names=None, ncols=6,
                 panel_size=2.4, suptitle=None, alpha=0.35):
    """A batch of 2-D slices with their masks (e.g. one ``tf.data`` batch), one legend.

    Parameters
    ----------
    images : array-like, shape (N, rows, cols) or (N, rows, cols, 1), or a list
    truths, predictions : same layout, optional
    titles : sequence of str, optional
    spacing, axcodes, window, labels, label_names, alpha
        As in :func:`overlay` (shared by every panel).
    ncols : int
    panel_size : float
        Inches per panel.
    suptitle : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = [_as_2d(i) for i in images]
    if not images:
        raise InvalidImageError("overlay_grid needs at least one image")
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = _constrained(nrows, ncols, panel_size * ncols, panel_size * nrows + 0.5)
    handles = None
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.set_axis_off()
            continue
        overlay(images[i], None if truths is None else truths[i],
                None if predictions is None else predictions[i], ax=ax, window=window,
                labels=labels, label_names=label_names, spacing=spacing, axcodes=axcodes,
                mm="bar" if spacing is not None else None, legend=False, alpha=alpha,
                title=None if titles is None else str(titles[i]))
    shown = [_as_2d(t) for t in (truths if truths is not None else [])]
    handles = []
    if labels and shown:
        values = np.unique(np.concatenate([np.unique(t) for t in shown]))
        names, colours, order = _label_scheme(values, label_names)
        handles += [_patch(colours[v], names[v]) for v in order]
    if truths is not None:
        handles.append(_patch("none", "truth (outline)", edge=ERROR_COLORS["truth"]))
    if predictions is not None:
        handles.append(_patch(ERROR_COLORS["prediction"], "prediction (fill)", alpha=alpha))
    return _finish(fig, handles, suptitle, ncol=min(len(handles), 6) if handles else None)


# ---------------------------------------------------------------------------------------
# Views of 3-D volumes: three planes, sequences, label maps, predictions with errors.
# ---------------------------------------------------------------------------------------


def _default_point(array, label):
    """Label centroid when there is a label, else the centre of the foreground box."""
    if label is not None and np.any(label):
        return tuple(int(np.rint(c)) for c in np.argwhere(np.asarray(label) > 0).mean(axis=0))
    foreground = array != 0 if array.ndim == 3 else (array != 0).any(axis=-1)
    if foreground.any():
        hits = np.argwhere(foreground)
        return tuple(int(c) for c in (hits.min(axis=0) + hits.max(axis=0)) // 2)
    return tuple(s // 2 for s in array.shape[:3])


def plane_slice(array, plane, point):
    """The raw 2-D cut of an ``(x, y, z)`` RAS+ array, transposed for ``origin="lower"``.

    Kept for code that draws its own slices; figures use :func:`display_slice`, which
    applies the display convention from the affine (radiological axial/coronal,
    sagittal anterior on the left). Here, drawn with ``origin="lower"``, the axial and
    coronal planes show the patient's right on the right (neurological) and the
    sagittal plane anterior on the right.
    """
    i, j, k = point
    if plane == "sagittal":
        cut = array[i, :, :]
    elif plane == "coronal":
        cut = array[:, j, :]
    elif plane == "axial":
        cut = array[:, :, k]
    else:
        raise ConfigError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    return np.asarray(cut).T


def three_plane(volume, *, label=None, point=None, axes=None, title=None, alpha=0.45,
                percentiles=(0.5, 99.5), cmap="gray", affine=None, label_names=None,
                window=None, colorbar=False, units=None, mm="axes", legend=True):
    """Sagittal, coronal and axial slices through one point, with an optional label overlay.

    Display convention as :func:`display_slice` (letters on every edge, mm axes).

    Parameters
    ----------
    volume : medimg.io.Volume or numpy.ndarray
        ``(x, y, z)``; a Volume (or ``affine``) gives the orientation and spacing, an
        array alone is taken as RAS+ with 1 mm voxels.
    label : numpy.ndarray or Volume, optional
        ``(x, y, z)`` label map drawn in colour with a legend (BraTS names by
        default; see ``label_names``).
    point : (i, j, k), optional
        Voxel (in the given array's index order) the three planes pass through.
        Default: the label's centroid, else the centre of the non-zero region.
    axes : sequence of 3 matplotlib axes, optional
        Where to draw (a new 1x3 figure when None).
    title : str, optional
        Shown on the left of the first panel.
    alpha : float
        Label opacity.
    percentiles : (low, high)
        Display range from these percentiles of the non-zero voxels (unless ``window``).
    cmap : str
    affine : array-like (4, 4), optional
    label_names : {"brats", "vertebrae"} or dict, optional
    window : (center, width), optional
    colorbar, units
        A colour bar (on the last panel) for quantitative maps, with its unit.
    mm : {"axes", "bar", None}
    legend : bool
        Label legend beside the last panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    array, affine = _volume_array_affine(volume, affine)
    if array.ndim != 3:
        raise InvalidImageError(f"three_plane needs an (x, y, z) volume, got shape {array.shape}")
    label_array = None if label is None else np.asarray(getattr(label, "array", label))
    point = tuple(int(p) for p in (point or _default_point(array, label_array)))
    point_mm = (affine @ [*point, 1.0])[:3]
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(10.5, 3.6), layout="constrained")
    vmin, vmax = (None, None) if window is not None else _display_range(array, percentiles)
    handles = {}
    for n, (ax, plane) in enumerate(zip(axes, ("sagittal", "coronal", "axial"), strict=True)):
        ds = display_slice(array, plane, affine=affine, point_mm=point_mm)
        draw_slice(ds, ax, cmap=cmap, vmin=vmin, vmax=vmax, window=window, mm=mm,
                   colorbar=colorbar and n == 2, units=units,
                   title=f"{plane} ({'xyz'[_normal(plane)]} = {ds.position_mm:.1f} mm)")
        if label is not None:
            for h in _overlay_on(ax, ds, affine, True, label=label, label_names=label_names,
                                 alpha=alpha):
                handles[h.get_label()] = h
    if label is not None and legend and handles:
        names, _, order = _label_scheme(_unique_labels(label), label_names)
        ordered = [handles[names[v]] for v in order if names[v] in handles]
        _legend_outside(axes[-1], ordered)
    if title:
        axes[0].text(-0.3, 0.5, title, transform=axes[0].transAxes, rotation=90,
                     va="center", ha="right", fontsize=10)
    return axes[0].figure


def _per_row(value, n):
    if isinstance(value, list | tuple):
        if len(value) != n:
            raise ConfigError(f"expected {n} values (one per row), got {len(value)}")
        return list(value)
    return [value] * n


def sequence_planes(image, names, *, label=None, point=None, spacing=(1.0, 1.0, 1.0),
                    panel_size=2.6, alpha=0.45, affine=None, colorbar=False, units=None,
                    cmap="gray", label_names=None):
    """One row per MRI sequence (or map), three planes each, through the same point.

    Parameters
    ----------
    image : numpy.ndarray
        ``(x, y, z, c)`` stacked sequences.
    names : sequence of str
        One per channel (row titles).
    label : numpy.ndarray, optional
        ``(x, y, z)``; overlaid on an extra last row (on the first sequence), with a
        legend naming the labels.
    point : (i, j, k), optional
        Default: the label's centroid, else the centre of the brain.
    spacing : sequence of 3 float
        Voxel size in mm (used when ``affine`` is None: a RAS+ grid).
    affine : array-like (4, 4), optional
        Voxel-to-world matrix (orientation and spacing).
    colorbar : bool or sequence of bool
        Colour bar per row (e.g. ``[False, True, False]`` for a bias-field row).
    units : str or sequence of str, optional
        Unit of each row's colour bar.
    cmap : str or sequence of str
    label_names : {"brats", "vertebrae"} or dict, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    image = np.asarray(image)
    if image.ndim != 4:
        raise InvalidImageError(f"sequence_planes needs an (x, y, z, c) image, got shape "
                                f"{image.shape}")
    names = list(names)
    if len(names) != image.shape[-1]:
        raise InvalidImageError(f"{len(names)} names for {image.shape[-1]} channels")
    rows = len(names) + (label is not None)
    affine = np.diag([*spacing, 1.0]) if affine is None else np.asarray(affine, float)
    point = point or _default_point(image, label)
    fig, axes = _constrained(rows, 3, 3 * panel_size + 1.2, rows * panel_size + 0.6)
    colorbars, unit_list, cmaps = (_per_row(colorbar, len(names)), _per_row(units, len(names)),
                                   _per_row(cmap, len(names)))
    for row, name in enumerate(names):
        three_plane(image[..., row], affine=affine, point=point, axes=axes[row], title=name,
                    colorbar=bool(colorbars[row]), units=unit_list[row], cmap=cmaps[row],
                    mm="bar")
    handles = None
    if label is not None:
        three_plane(image[..., 0], affine=affine, label=label, point=point, axes=axes[-1],
                    title=f"{names[0]} + label", alpha=alpha, mm="bar", legend=False,
                    label_names=label_names)
        label_names_, colours, order = _label_scheme(_unique_labels(label), label_names)
        handles = [_patch(colours[v], label_names_[v]) for v in order]
    return _finish(fig, handles)


def _orientation_codes(affine):
    import nibabel as nib

    return nib.aff2axcodes(affine)


def _pick_slices(reference, n_slices):
    """Indices along axis 0 spread over the slices where ``reference`` is non-zero."""
    present = np.flatnonzero(np.asarray(reference).reshape(reference.shape[0], -1).any(axis=1))
    if present.size == 0:
        present = np.arange(reference.shape[0])
    return [int(i) for i in np.unique(np.linspace(present[0], present[-1], n_slices + 2)[1:-1]
                                      .round().astype(int))]


def prediction_slices(image, truth=None, prediction=None, *, plane="axial", indices=None,
                      n_slices=3, affine=None, channel=0, channel_names=None, window=None,
                      percentiles=(0.5, 99.5), units=None, errors=True, classes=None,
                      label_names=None, panel_size=2.8, title=None, mm="bar", alpha=0.5,
                      _titles=None):
    """Slices of a volume with truth, prediction and their errors: one row per slice,
    columns image | truth | prediction | errors.

    Label maps are filled one colour per label (BraTS 1 necrotic core, 2 oedema,
    4 enhancing; VerSe levels by name); a map holding only 0 and 1 is a binary mask
    (truth green, prediction red). The error panel shows false positives (magenta)
    and false negatives (cyan) of the foreground (``classes``), with their pixel
    counts. Display convention as :func:`display_slice`.

    Parameters
    ----------
    image : medimg.io.Volume or array-like
        ``(x, y, z)`` or ``(x, y, z, c)`` (``channel`` is shown).
    truth, prediction : Volume or array-like, shape (x, y, z), optional
        Label maps on the image's grid (a Volume may be stored in another
        orientation of the same grid).
    plane : {"axial", "coronal", "sagittal"}
    indices : sequence of int, optional
        Slice indices counted as in the RAS+ array (see :func:`display_slice`).
        Default: ``n_slices`` spread over the slices holding truth (else prediction).
    affine : array-like (4, 4), optional
        Of an array image (default: RAS+ 1 mm).
    channel : int
    channel_names : sequence of str, optional
    window : (center, width), optional
        Display window (e.g. bone ``(400, 1800)`` HU); else ``percentiles``.
    units : str, optional
        Unit of the image values: adds a colour bar (e.g. ``"HU"``).
    errors : bool
        Add the error column (needs truth and prediction).
    classes : iterable of int, optional
        Labels counted as foreground by the error map (default: any non-zero).
    label_names : {"brats", "vertebrae"} or dict, optional
    panel_size : float
    title : str, optional
    mm : {"axes", "bar", None}
    alpha : float

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_plane(plane)
    array, affine = _volume_array_affine(image, affine)
    if array.ndim == 4:
        name = channel_names[channel] if channel_names else f"channel {channel}"
        array = array[..., channel]
    else:
        name = channel_names[0] if channel_names else "image"
    points = None
    if indices is None:
        reference = next((r for r in (truth, prediction) if r is not None
                          and np.any(np.asarray(getattr(r, "array", r)))), None)
        if reference is not None:
            ref_array, ref_affine = _volume_array_affine(
                reference, None if hasattr(reference, "affine") else affine)
            moved, moved_affine = _reorient(ref_array, ref_affine, DISPLAY_ORIENTATION[plane])
            centre = [(s - 1) / 2 for s in moved.shape[1:3]]
            points = [(moved_affine @ [k, *centre, 1.0])[:3]
                      for k in _pick_slices(moved, n_slices)]
        else:
            moved, _ = _reorient(array, affine, DISPLAY_ORIENTATION[plane])
            indices = _pick_slices(np.ones(moved.shape[0]), n_slices)
    cuts = ([display_slice(array, plane, i, affine=affine) for i in indices] if points is None
            else [display_slice(array, plane, affine=affine, point_mm=p) for p in points])
    columns = [name]
    maps = {}
    for key, volume in (("truth", truth), ("prediction", prediction)):
        if volume is not None:
            columns.append(key)
            maps[key] = volume
    show_errors = errors and truth is not None and prediction is not None
    if show_errors:
        columns.append("errors")
    vmin, vmax = (None, None) if window is not None else _display_range(array, percentiles)
    # A map holding only 0/1 is a binary mask when the names are not given or when the
    # other map carries real labels (a spine mask beside per-vertebra truth).
    binary = {key: _is_binary(volume) for key, volume in maps.items()}
    has_labels = any(not b for b in binary.values())
    binary = {key: b and (label_names is None or has_labels) for key, b in binary.items()}
    all_values = sorted({v for key, m in maps.items() if not binary[key]
                         for v in _unique_labels(m)})
    schemes = {key: None if binary[key] else _label_scheme(all_values, label_names)
               for key in maps}
    fig, axes = _constrained(len(cuts), len(columns), panel_size * len(columns) + 0.8,
                             panel_size * len(cuts) + 0.8)
    for row, ds in enumerate(cuts):
        label = _titles[row] if _titles is not None else ds.index
        slices = {key: _matching_cut(volume, ds, affine) for key, volume in maps.items()}
        for col, column in enumerate(columns):
            ax = axes[row][col]
            where = (f" ({'xyz'[_normal(plane)]} = {ds.position_mm:.1f} mm)" if col == 0
                     else "")
            image = draw_slice(ds, ax, vmin=vmin, vmax=vmax, window=window, mm=mm,
                               title=f"{column}{where}, slice {label}")
            if units and row == 0 and col == 0:
                bar = fig.colorbar(image, ax=axes[:, 0].tolist(), location="left",
                                   fraction=0.05, pad=0.02)
                bar.set_label(f"{name} ({units})", fontsize=7)
                bar.ax.tick_params(labelsize=6)
            if column in slices:
                scheme = schemes[column]
                if scheme is None:
                    _draw_fill(ax, slices[column], ds.extent, ERROR_COLORS[column], alpha)
                else:
                    _draw_label_map(ax, slices[column], ds.extent, scheme[1], alpha)
            elif column == "errors":
                counts = _draw_errors(ax, slices["truth"], slices["prediction"], ds.extent,
                                      classes)
                ax.set_xlabel(f"FP {counts['false positive']} px · FN "
                              f"{counts['false negative']} px", fontsize=7)
    handles = []
    for key in maps:
        scheme = schemes[key]
        if scheme is None:
            handles.append(_patch(ERROR_COLORS[key], key, alpha=alpha))
        elif not any(h.get_label() == scheme[0][v] for h in handles for v in scheme[2]):
            names, colours, order = scheme
            handles += [_patch(colours[v], names[v], alpha=alpha) for v in order]
    if show_errors:
        handles += _error_handles()
    return _finish(fig, handles, title)


def segmentation_slices(image, truth, prediction=None, *, slices=None, n_slices=3, axis=2,
                        channel_names=None, channel=0, panel_size=2.8, title=None, affine=None,
                        errors=False, classes=None, label_names=None, window=None, units=None,
                        mm="bar"):
    """Slices of a 3-D volume with the true and the predicted label maps.

    One row per slice: the image (one channel), the truth and the prediction as
    coloured labels on top of it (BraTS: 1 necrotic core, 2 oedema, 3 or 4
    enhancing), named in a legend, and with ``errors=True`` a fourth column of false
    positives and false negatives (:func:`prediction_slices`).

    Parameters
    ----------
    image : array-like, shape (x, y, z) or (x, y, z, c)
        The volume (e.g. the four MRI sequences).
    truth, prediction : array-like, shape (x, y, z), integer
        Label maps (0 = background); ``prediction`` may be None (truth only).
    slices : sequence of int, optional
        Slice indices along ``axis`` of the given array; default ``n_slices`` evenly
        spread over the slices where the truth (else the prediction) has tumour.
    axis : int
        Slicing axis of the array (2: axial for RAS+ volumes); the plane follows from
        the affine.
    channel : int
        Channel shown; ``channel_names`` label it.
    panel_size : float
        Inches per panel.
    title : str, optional
    affine : array-like (4, 4), optional
        Voxel-to-world matrix (default RAS+, 1 mm).
    errors : bool
        Add the error column (image | truth | prediction | errors).
    classes, label_names, window, units, mm
        As in :func:`prediction_slices`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    array, affine = _volume_array_affine(image, affine)
    truth_array = np.asarray(truth)
    prediction_array = None if prediction is None else np.asarray(prediction)
    if slices is None:
        reference = truth_array if np.any(truth_array > 0) else prediction_array
        if reference is None or not np.any(reference > 0):
            reference = np.ones(array.shape[:3])
        slices = _pick_slices(np.moveaxis(reference > 0, axis, 0), n_slices)
    slices = [int(s) for s in slices]
    code = _orientation_codes(affine)[axis]
    plane = _PLANE_OF_AXIS[_AXIS_OF[code]]
    size = array.shape[axis]
    indices = [s if code in "RAS" else size - 1 - s for s in slices]
    return prediction_slices(array, truth_array, prediction_array, plane=plane,
                             indices=indices, affine=affine, channel=channel,
                             channel_names=channel_names, window=window, units=units,
                             errors=errors, classes=classes,
                             label_names=label_names,
                             panel_size=panel_size, title=title, mm=mm, _titles=slices)


def sagittal_overlays(ct, truth=None, prediction=None, *, indices=None, n_slices=3,
                      affine=None, window=(400.0, 1800.0), units="HU", errors=True,
                      classes=None, label_names="vertebrae", panel_size=3.0, title=None,
                      mm="bar"):
    """Sagittal slices of a CT with its truth, prediction and error map (spine).

    Anterior on the left, superior up, letters on the edges; the CT in a bone window
    with a colour bar in HU; per-vertebra truth labels named in anatomical order; a
    binary prediction (spine vs background) filled red; false positives / negatives.

    Parameters
    ----------
    ct : medimg.io.Volume or array-like, shape (x, y, z)
        HU; any stored orientation (a Volume from ``verse.load_scan`` or the file).
    truth, prediction : Volume or array-like, optional
        Vertebra labels / predicted mask (a Volume may be on the file's grid in
        another orientation: cut at the same world position).
    indices : sequence of int, optional
        Sagittal indices from the patient's left (RAS+ count).
    n_slices : int
        Default number of slices, spread over the truth's left-right extent.
    affine : array-like (4, 4), optional
    window : (center, width)
        Bone window in HU.
    units : str
    errors : bool
    classes : iterable of int, optional
        Labels counted as spine by the error map (default: any non-zero).
    label_names : {"vertebrae", "brats"} or dict
    panel_size : float
    title : str, optional
    mm : {"axes", "bar", None}

    Returns
    -------
    matplotlib.figure.Figure
    """
    return prediction_slices(ct, truth, prediction, plane="sagittal", indices=indices,
                             n_slices=n_slices, affine=affine, window=window, units=units,
                             errors=errors, classes=classes, label_names=label_names,
                             panel_size=panel_size, title=title, mm=mm,
                             channel_names=["CT"])


def vertebra_labels(ct, mask, *, plane="sagittal", index=None, point_mm=None, affine=None,
                    window=(400.0, 1800.0), ax=None, annotate=True, title=None, mm="axes",
                    alpha=0.5, colorbar=False):
    """Per-vertebra labels on a CT slice, named in anatomical order.

    Each vertebra is filled with its own colour and its level name (C1 ... C7,
    T1 ... T12, T13, L1 ... L6, S, Cocc) is written on it; the legend lists every
    level present in the mask in anatomical order (T13 between T12 and L1, L6 after
    L5: by anatomy, not by VerSe label number), marking those not in this slice.

    Parameters
    ----------
    ct : medimg.io.Volume or array-like, shape (x, y, z)
        HU, any stored orientation.
    mask : Volume or array-like, shape (x, y, z)
        VerSe labels (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 S, 27 Cocc,
        28 T13).
    plane : {"sagittal", "coronal", "axial"}
    index, point_mm : optional
        Slice (see :func:`display_slice`); default through the mask's centroid.
    affine : array-like (4, 4), optional
    window : (center, width)
    ax : matplotlib.axes.Axes, optional
    annotate : bool
        Write the level names on the vertebrae.
    title : str, optional
    mm : {"axes", "bar", None}
    alpha : float
    colorbar : bool
        Colour bar in HU.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.patheffects as effects
    import matplotlib.pyplot as plt

    array, affine = _volume_array_affine(ct, affine)
    mask_array, mask_affine = _volume_array_affine(mask, None if hasattr(mask, "affine")
                                                   else affine)
    if index is None and point_mm is None:
        hits = np.argwhere(mask_array > 0)
        centre = hits.mean(axis=0) if hits.size else (np.array(mask_array.shape) - 1) / 2
        point_mm = (mask_affine @ [*centre, 1.0])[:3]
    ds = display_slice(array, plane, index, affine=affine, point_mm=point_mm)
    cut = _matching_cut(mask, ds, affine)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 6.0), layout="constrained")
    draw_slice(ds, ax, window=window, mm=mm, colorbar=colorbar, units="HU",
               title=title or f"{plane} {ds.index} ({'xyz'[_normal(plane)]} = "
                              f"{ds.position_mm:.1f} mm)")
    present = _unique_labels(mask_array)
    names, colours, order = _label_scheme(present, "vertebrae")
    _draw_label_map(ax, cut, ds.extent, colours, alpha)
    stroke = [effects.withStroke(linewidth=2, foreground="black")]
    in_slice = {v for v in present if np.any(cut == v)}
    if annotate:
        for v in order:
            if v in in_slice:
                rows, cols = np.nonzero(cut == v)
                y = (rows.mean() + 0.5) * ds.spacing[0]
                x = (cols.mean() + 0.5) * ds.spacing[1]
                label = ax.text(x, y, names[v], color="white", fontsize=7, ha="center",
                                va="center", path_effects=stroke)
                label.set_gid(f"level-{names[v]}")
    handles = [_patch(colours[v], names[v] if v in in_slice else f"{names[v]} (not in slice)",
                      alpha=1.0 if v in in_slice else 0.35) for v in order]
    _legend_outside(ax, handles, title="levels")
    return ax.figure


def orientation_check(volumes, *, plane="sagittal", window=None, panel_size=3.0, units=None,
                      percentiles=(0.5, 99.5)):
    """Each volume as stored and as displayed: why reorientation matters.

    Top row: the array cut along its own axis closest to the plane's normal, rows and
    columns as stored (the letters, from the affine, show where the patient is);
    bottom row: the same volume in the display convention.

    Parameters
    ----------
    volumes : mapping of str to medimg.io.Volume
        E.g. scans read with ``read_nifti(path, canonical=False)``.
    plane : {"axial", "coronal", "sagittal"}
    window : (center, width), optional
    panel_size : float
    units : str, optional
        Colour bar unit (e.g. ``"HU"``) on the right column.
    percentiles : (low, high)

    Returns
    -------
    matplotlib.figure.Figure
    """
    volumes = dict(volumes)
    if not volumes:
        raise InvalidImageError("orientation_check needs at least one volume")
    fig, axes = _constrained(2, len(volumes), panel_size * len(volumes) + 0.6,
                             2 * panel_size + 0.6)
    for col, (name, volume) in enumerate(volumes.items()):
        array, affine = _volume_array_affine(volume)
        vmin, vmax = (None, None) if window is not None else _display_range(array, percentiles)
        codes = "".join(_orientation_codes(affine))
        for row, reorient in enumerate((False, True)):
            ds = display_slice(array, plane, affine=affine, reorient=reorient)
            if not reorient:
                ds = display_slice(array, plane, ds.index, affine=affine, reorient=False)
            label = (f"{name}: stored {codes}, array axis cut" if not reorient
                     else f"{name}: {plane} display")
            draw_slice(ds, axes[row][col], window=window, vmin=vmin, vmax=vmax, mm="bar",
                       colorbar=bool(units) and col == len(volumes) - 1, units=units,
                       title=label)
    return fig


def window_views(volume, windows, *, plane="sagittal", index=None, point_mm=None, affine=None,
                 units="HU", panel_size=3.2, title=None, mm="bar"):
    """One slice shown in several display windows, each with its colour bar.

    Parameters
    ----------
    volume : medimg.io.Volume or array-like, shape (x, y, z)
        CT in HU (any orientation).
    windows : mapping of str to (center, width)
        E.g. ``{"soft tissue": (40, 400), "bone": (400, 1800)}``.
    plane, index, point_mm, affine
        See :func:`display_slice`.
    units : str
    panel_size : float
    title : str, optional
    mm : {"axes", "bar", None}

    Returns
    -------
    matplotlib.figure.Figure
    """
    windows = dict(windows)
    if not windows:
        raise ConfigError("window_views needs at least one window")
    ds = display_slice(volume, plane, index, affine=affine, point_mm=point_mm)
    fig, axes = _constrained(1, len(windows), (panel_size + 0.7) * len(windows),
                             panel_size + 0.6)
    for ax, (name, (center, width)) in zip(axes[0], windows.items(), strict=True):
        draw_slice(ds, ax, window=(center, width), colorbar=True, units=units, mm=mm,
                   title=f"{name} ({center:g} / {width:g} {units})")
    return _finish(fig, None, title)


def n4_comparison(before, corrected, field, *, planes=("axial", "coronal"), point_mm=None,
                  affine=None, mask=None, percentiles=(0.5, 99.5), units="a.u.",
                  panel_size=3.0, title=None, mm="bar"):
    """N4 bias-field correction: image before | estimated field | image after.

    Before and after share one grey scale (from the image before, inside ``mask``), so
    the flattening shows; the multiplicative field has a diverging colour map centred
    on 1 (no change) with its own colour bar. One row per plane.

    Parameters
    ----------
    before, corrected, field : medimg.io.Volume or array-like, shape (x, y, z)
        The image, the corrected image and the estimated field (``before =
        corrected x field``), on one grid.
    planes : sequence of {"axial", "coronal", "sagittal"}
    point_mm : sequence of 3 float, optional
        World point the planes pass through; default the mask's centroid.
    affine : array-like (4, 4), optional
    mask : array-like of bool, shape (x, y, z), optional
        Where the field is defined (the brain); outside it is left blank.
    percentiles : (low, high)
    units : str
        Unit of the image intensities (MRI: arbitrary units).
    panel_size : float
    title : str, optional
    mm : {"axes", "bar", None}

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    before_array, affine = _volume_array_affine(before, affine)
    after_array, _ = _volume_array_affine(corrected, affine)
    field_array = np.asarray(getattr(field, "array", field), dtype=np.float64)
    if not (before_array.shape == after_array.shape == field_array.shape):
        raise InvalidImageError(f"before {before_array.shape}, corrected {after_array.shape} "
                                f"and field {field_array.shape} must share one grid")
    mask_array = (np.ones(before_array.shape, bool) if mask is None
                  else np.asarray(getattr(mask, "array", mask)).astype(bool))
    if point_mm is None:
        centre = np.argwhere(mask_array).mean(axis=0) if mask_array.any() else \
            (np.array(before_array.shape) - 1) / 2
        point_mm = (affine @ [*centre, 1.0])[:3]
    low, high = np.percentile(before_array[mask_array], percentiles)
    field_shown = np.where(mask_array, field_array, np.nan)
    f_low, f_high = np.nanpercentile(field_shown, [0.5, 99.5])
    spread = max(abs(1 - f_low), abs(f_high - 1), 1e-3)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=1 - spread, vmax=1 + spread)
    field_cmap = plt.get_cmap("coolwarm").with_extremes(bad="black")
    planes = list(planes)
    fig, axes = _constrained(len(planes), 3, 3 * (panel_size + 0.7), panel_size * len(planes)
                             + 0.7)
    for row, plane in enumerate(planes):
        cuts = [display_slice(a, plane, affine=affine, point_mm=point_mm)
                for a in (before_array, field_shown, after_array)]
        draw_slice(cuts[0], axes[row][0], vmin=low, vmax=high, colorbar=True,
                   units=f"intensity ({units})", mm=mm, title=f"{plane}: before N4")
        draw_slice(cuts[1], axes[row][1], cmap=field_cmap, norm=norm, colorbar=True,
                   units="bias field (multiplicative, no unit)", mm=mm,
                   title=f"{plane}: estimated field")
        draw_slice(cuts[2], axes[row][2], vmin=low, vmax=high, colorbar=True,
                   units=f"intensity ({units})", mm=mm, title=f"{plane}: after N4")
    return _finish(fig, None, title)


def augmentation_panels(before, after, *, truths_before=None, truths_after=None, titles=None,
                        spacing=None, axcodes=None, panel_size=2.4, suptitle=None,
                        percentiles=(1.0, 99.0)):
    """Images before (top row) and after augmentation (bottom row).

    Each column shows one case on one grey scale, fixed from the original, so that
    intensity shifts and scalings show as brighter or darker panels; masks (if
    given) are outlined so that flips and rotations can be checked against the image.

    Parameters
    ----------
    before, after : array-like, shape (N, rows, cols[, 1]) or lists of 2-D arrays
        The originals and their augmented versions (for 3-D patches pass one slice).
    truths_before, truths_after : same layout, optional
        Masks transformed with the images.
    titles : sequence of str, optional
        One per column (e.g. the transform applied).
    spacing, axcodes
        As in :func:`overlay` (orientation letters and mm scale bar).
    panel_size : float
    suptitle : str, optional
    percentiles : (low, high)
        Grey range of each column, from the original.

    Returns
    -------
    matplotlib.figure.Figure
    """
    before = [_as_2d(b) for b in before]
    after = [_as_2d(a) for a in after]
    if not before or len(before) != len(after):
        raise InvalidImageError(f"augmentation_panels needs as many images after ({len(after)})"
                                f" as before ({len(before)}), at least one")
    n = len(before)
    fig, axes = _constrained(2, n, panel_size * n + 0.4, 2 * panel_size + 0.9)
    spacing_2d = (1.0, 1.0) if spacing is None else spacing
    for col in range(n):
        low, high = np.percentile(np.asarray(before[col], float), percentiles)
        for row, (images, truths) in enumerate(((before, truths_before),
                                                 (after, truths_after))):
            ds = display_slice_2d(images[col], spacing_2d, axcodes)
            ax = axes[row][col]
            draw_slice(ds, ax, vmin=low, vmax=high, mm="bar" if spacing is not None else None,
                       title=(str(titles[col]) if titles is not None and row == 0 else None))
            if truths is not None:
                _draw_outline(ax, display_slice_2d(_as_2d(truths[col]), spacing_2d,
                                                   axcodes).array, ds.extent,
                              ERROR_COLORS["truth"])
        axes[0][col].set_ylabel("original" if col == 0 else "", fontsize=8)
        axes[1][col].set_ylabel("augmented" if col == 0 else "", fontsize=8)
    handles = ([_patch("none", "mask (outline)", edge=ERROR_COLORS["truth"])]
               if truths_before is not None else None)
    return _finish(fig, handles, suptitle or "top: original · bottom: augmented · "
                   "each column on one grey scale (the original's)")


# ---------------------------------------------------------------------------------------
# Classification figures: Grad-CAM, case galleries.
# ---------------------------------------------------------------------------------------


def _outcome(truth, score, threshold):
    called = score >= threshold
    if truth:
        return "TP" if called else "FN"
    return "FP" if called else "TN"


_OUTCOME_COLORS = {"FP": ERROR_COLORS["false positive"], "FN": ERROR_COLORS["false negative"],
                   "TP": "#2ca02c", "TN": "0.5"}
_OUTCOME_NAMES = {"FP": "false positive", "FN": "false negative", "TP": "true positive",
                  "TN": "true negative"}


def _resize_to(heatmap, shape):
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != tuple(shape):
        from .spatial import resize

        heatmap = np.asarray(resize(heatmap, tuple(shape), interpolation="linear"))
    return heatmap


def grad_cam_overlay(image, heatmap, *, ax=None, alpha=0.45, cmap="jet", title=None,
                     spacing=None, axcodes=None, window=None, colorbar=True, mm="auto"):
    """A Grad-CAM heat map over its image, with a colour bar.

    Parameters
    ----------
    image : array-like, shape (rows, cols) or (rows, cols, 1)
    heatmap : array-like, shape (h, w)
        From :func:`medimg.models.grad_cam` (values in [0, 1], relative to the case's
        maximum); resized (bilinear) to the image when its shape differs.
    ax : matplotlib.axes.Axes, optional
    alpha : float
        Opacity of the heat map.
    cmap : str
    title : str, optional
    spacing, axcodes, mm
        As in :func:`overlay`.
    window : (center, width), optional
    colorbar : bool

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    image = _as_2d(image)
    heatmap = _resize_to(_as_2d(heatmap), image.shape[:2])
    if ax is None:
        _, ax = plt.subplots(figsize=(4.4, 4), layout="constrained")
    if mm == "auto":
        mm = "axes" if spacing is not None else None
    spacing = (1.0, 1.0) if spacing is None else spacing
    ds = display_slice_2d(image, spacing, axcodes)
    draw_slice(ds, ax, window=window, mm=mm, title=title)
    heat = display_slice_2d(heatmap, spacing, axcodes)
    shown = ax.imshow(heat.array, cmap=cmap, vmin=0.0, vmax=1.0, alpha=alpha, extent=ds.extent,
                      origin="upper", aspect="equal", interpolation="bilinear")
    if colorbar:
        bar = ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label("Grad-CAM (relative to the case's maximum)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    return ax.figure


def grad_cam_gallery(images, heatmaps, *, y_true=None, y_score=None, threshold=0.5, ids=None,
                     spacing=None, axcodes=None, panel_size=2.4, alpha=0.45, suptitle=None):
    """Several cases: image (top) and image with its Grad-CAM (bottom), one colour bar.

    Parameters
    ----------
    images : array-like, shape (N, rows, cols[, 1])
    heatmaps : array-like, shape (N, h, w)
        From :func:`medimg.models.grad_cam`.
    y_true : array-like of {0, 1}, shape (N,), optional
    y_score : array-like of float, shape (N,), optional
        With ``y_true``, titles give truth, score and outcome (TP/FP/FN/TN at
        ``threshold``).
    threshold : float
    ids : sequence of str, optional
    spacing, axcodes
        As in :func:`overlay`.
    panel_size : float
    alpha : float
    suptitle : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = [_as_2d(i) for i in images]
    heatmaps = [_as_2d(h) for h in heatmaps]
    if not images or len(images) != len(heatmaps):
        raise InvalidImageError(f"grad_cam_gallery needs one heat map per image, got "
                                f"{len(heatmaps)} for {len(images)}")
    n = len(images)
    fig, axes = _constrained(2, n, panel_size * n + 1.0, 2 * panel_size + 0.8)
    spacing_2d = (1.0, 1.0) if spacing is None else spacing
    mm = "bar" if spacing is not None else None
    shown = None
    for col in range(n):
        parts = []
        if y_score is not None:
            score = float(np.asarray(y_score)[col])
            if y_true is not None:
                truth = int(np.asarray(y_true)[col])
                parts.append(f"{_outcome(truth, score, threshold)} · truth {truth}")
            parts.append(f"score {score:.2f}")
        if ids is not None:
            parts.append(str(ids[col]))
        ds = display_slice_2d(images[col], spacing_2d, axcodes)
        draw_slice(ds, axes[0][col], mm=mm, title="\n".join(parts) or None)
        draw_slice(ds, axes[1][col], mm=mm)
        heat = display_slice_2d(_resize_to(heatmaps[col], images[col].shape[:2]), spacing_2d,
                                axcodes)
        shown = axes[1][col].imshow(heat.array, cmap="jet", vmin=0, vmax=1, alpha=alpha,
                                    extent=ds.extent, origin="upper", aspect="equal",
                                    interpolation="bilinear")
    bar = fig.colorbar(shown, ax=axes[:, -1].tolist(), fraction=0.05, pad=0.02)
    bar.set_label("Grad-CAM (relative to the case's maximum)", fontsize=7)
    return _finish(fig, None, suptitle)


_GALLERY_SELECTIONS = {"misclassified": {"FP", "FN"}, "correct": {"TP", "TN"},
                       "false_positive": {"FP"}, "false_negative": {"FN"},
                       "all": {"TP", "TN", "FP", "FN"}}


def case_gallery(images, y_true, y_score, *, threshold=0.5, which="misclassified", ids=None,
                 boxes=None, max_cases=12, ncols=6, panel_size=2.4, spacing=None, axcodes=None,
                 cmap="gray", vmin=None, vmax=None, suptitle=None):
    """A gallery of cases with their scores, e.g. the misclassified ones.

    Cases are called positive when ``score >= threshold``; each panel's title gives
    the outcome (FP, FN, TP, TN), the truth and the score, and its frame is coloured
    by outcome. Errors are shown most confident first (furthest from the threshold).

    Parameters
    ----------
    images : sequence of array-like, each (rows, cols[, 1])
    y_true : array-like of {0, 1}, shape (N,)
    y_score : array-like of float, shape (N,)
    threshold : float
        Chosen on validation data, not on the cases shown.
    which : {"misclassified", "correct", "false_positive", "false_negative", "all"}
    ids : sequence of str, optional
        Case identifiers (hashed patient IDs) shown under the score.
    boxes : sequence of sequences of (x, y, width, height), optional
        Per case, boxes in pixel coordinates (drawn when no ``spacing`` is given).
    max_cases : int
    ncols : int
    panel_size : float
    spacing, axcodes
        As in :func:`overlay` (images are shown as stored; letters from ``axcodes``).
    cmap, vmin, vmax
    suptitle : str, optional
        Default: how many cases of which kind, out of how many, at which threshold.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if which not in _GALLERY_SELECTIONS:
        raise ConfigError(f"which must be one of {', '.join(_GALLERY_SELECTIONS)}, got {which!r}")
    truth = np.asarray(y_true).astype(int).reshape(-1)
    score = np.asarray(y_score, dtype=float).reshape(-1)
    images = list(images)
    if not (len(images) == truth.size == score.size):
        raise InvalidImageError(f"{len(images)} images, {truth.size} truths and {score.size} "
                                "scores: one of each per case")
    outcomes = [_outcome(t, s, threshold) for t, s in zip(truth, score, strict=True)]
    chosen = [i for i, o in enumerate(outcomes) if o in _GALLERY_SELECTIONS[which]]
    chosen.sort(key=lambda i: -abs(score[i] - threshold))
    shown = chosen[:max_cases]
    heading = suptitle or (f"{len(shown)} of {len(chosen)} {which.replace('_', ' ')} cases "
                           f"(of {truth.size}; positive when score ≥ {threshold:.2f})")
    if not shown:
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"no {which.replace('_', ' ')} cases among {truth.size}",
                ha="center", va="center")
        return _finish(fig, None, heading)
    ncols = max(1, min(ncols, len(shown)))
    nrows = -(-len(shown) // ncols)
    fig, axes = _constrained(nrows, ncols, panel_size * ncols, panel_size * nrows + 0.9)
    spacing_2d = (1.0, 1.0) if spacing is None else spacing
    for k, ax in enumerate(axes.ravel()):
        if k >= len(shown):
            ax.set_axis_off()
            continue
        i = shown[k]
        ds = display_slice_2d(_as_2d(images[i]), spacing_2d, axcodes, reorient=False)
        draw_slice(ds, ax, cmap=cmap, vmin=vmin, vmax=vmax,
                   mm="bar" if spacing is not None else None)
        ax.set_title(f"{outcomes[i]} · truth {truth[i]} · score {score[i]:.2f}"
                     + (f"\n{ids[i]}" if ids is not None else ""), fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_edgecolor(_OUTCOME_COLORS[outcomes[i]])
            spine.set_linewidth(3)
        for x, y, w, h in (boxes[i] if boxes is not None else []):
            ax.add_patch(Rectangle((x * spacing_2d[1], y * spacing_2d[0]), w * spacing_2d[1],
                                   h * spacing_2d[0], fill=False, edgecolor="tab:orange",
                                   linewidth=1.2))
    kinds = [o for o in ("TP", "FN", "FP", "TN") if o in {outcomes[i] for i in shown}]
    handles = [_patch("none", f"{o}: {_OUTCOME_NAMES[o]}", edge=_OUTCOME_COLORS[o])
               for o in kinds]
    return _finish(fig, handles, heading)


# ---------------------------------------------------------------------------------------
# Image grids with boxes and metadata EDA plots (notebook 01).
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
               vmin=None, vmax=None, box_color="tab:red", suptitle=None, spacing=None,
               axcodes=None, colorbar=False, units=None):
    """Show 2-D images in a grid, optionally with boxes drawn on them.

    Images are shown as stored (a radiograph's own display orientation); with
    ``axcodes`` the edges carry orientation letters, with ``spacing`` a millimetre
    scale bar.

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
    spacing : (row_mm, col_mm) or sequence of them, optional
        Pixel size of every image (or one per image).
    axcodes : (str, str), optional
        Directions rows and columns run to, e.g. ``("I", "L")`` for a PA chest
        radiograph shown as stored.
    colorbar : bool or sequence of bool
        Colour bar per panel (quantitative images: HU, ...).
    units : str or sequence of str, optional
        Colour-bar units.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InvalidImageError
        No images.
    """
    from matplotlib.patches import Rectangle

    images = list(images)
    if not images:
        raise InvalidImageError("image_grid needs at least one image")
    n = len(images)
    spacings = (list(spacing) if spacing is not None and np.ndim(spacing) == 2
                else [spacing] * n)
    colorbars, unit_list = _per_row(colorbar, n), _per_row(units, n)
    fig, axes = _panel_grid(n, ncols, panel_size)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index >= n:
            continue
        if spacings[index] is None and axcodes is None and not colorbars[index]:
            ax.imshow(np.asarray(images[index]), cmap=cmap, vmin=vmin, vmax=vmax)
            scale = (1.0, 1.0)
        else:
            ax.axis("on")
            scale = (1.0, 1.0) if spacings[index] is None else tuple(spacings[index])
            ds = display_slice_2d(images[index], scale, axcodes, reorient=False)
            draw_slice(ds, ax, cmap=cmap, vmin=vmin, vmax=vmax, colorbar=bool(colorbars[index]),
                       units=unit_list[index], mm="bar" if spacings[index] is not None else None)
        if titles is not None:
            ax.set_title(str(titles[index]), fontsize=9)
        for x, y, w, h in (boxes[index] if boxes is not None else []):
            ax.add_patch(Rectangle((x * scale[1], y * scale[0]), w * scale[1], h * scale[0],
                                   fill=False, edgecolor=box_color, linewidth=1.5))
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def category_rates(table, columns, *, by="class", normalize=True, ncols=3, panel_size=3.6):
    """Stacked bars: how ``by`` (e.g. the class) splits within each category of each column.

    Each bar is labelled with its n (rows in that category).

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
        counts = pd.crosstab(table[column], table[by])
        shown = counts.div(counts.sum(axis=1), axis=0) if normalize else counts
        shown.plot(kind="bar", stacked=True, ax=ax, legend=False, colormap="viridis", width=0.8)
        totals = counts.sum(axis=1).to_numpy()
        tops = shown.sum(axis=1).to_numpy()
        for x, (n, top) in enumerate(zip(totals, tops, strict=True)):
            text = ax.text(x, top, f"n={int(n)}", ha="center", va="bottom", fontsize=7)
            text.set_gid("bar-n")
        ax.set_ylim(0, float(tops.max()) * 1.12 if tops.size else 1)
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

    The legend gives each group's n (rows in the table).

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
    from matplotlib.patches import Patch

    columns = list(columns)
    fig, axes = _panel_grid(len(columns), ncols, panel_size)
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
    sizes = frame[by].value_counts()
    handles = [Patch(facecolor=palette[g], edgecolor=palette[g], alpha=0.5,
                     label=f"{g} (n={int(sizes.get(g, 0))})") for g in groups]
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

    values = np.asarray(values, dtype=np.float64).ravel()
    fig, ax = plt.subplots(figsize=figsize)
    ax.hist(values, bins=bins, color="0.3")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, (center, width)) in enumerate((spans or {}).items()):
        ax.axvspan(center - width / 2, center + width / 2, alpha=0.15,
                   color=colours[(index + 1) % len(colours)], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"pixels (n = {values.size:,})")
    if spans:
        ax.legend(fontsize=8)
    if log:
        ax.set_yscale("log")
    fig.tight_layout()
    return fig


def hu_histogram(hu, *, mask=None, ax=None, bins=200, value_range=(-1100.0, 1600.0),
                 references=None, log=True, title=None):
    """Histogram of Hounsfield units with tissue reference values.

    Lines mark air (-1000 HU), fat (-100 HU) and soft tissue (~40 HU); shaded ranges
    cancellous bone (~200-400 HU) and cortical bone (> 1000 HU), as in
    :data:`HU_REFERENCES`; the legend names each with its value.

    Parameters
    ----------
    hu : array-like or medimg.io.Volume
        CT values in HU, any shape (flattened).
    mask : array-like of bool, optional
        Voxels to include (same shape).
    ax : matplotlib.axes.Axes, optional
    bins : int
    value_range : (float, float)
        HU range of the histogram; the count outside it is stated in the title.
    references : mapping, optional
        Name -> value or (low, high) (``None`` = open end); default
        :data:`HU_REFERENCES`.
    log : bool
        Logarithmic counts.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    values = np.asarray(getattr(hu, "array", hu), dtype=np.float64)
    if mask is not None:
        values = values[np.asarray(getattr(mask, "array", mask)).astype(bool)]
    values = values.ravel()
    values = values[np.isfinite(values)]
    low, high = (float(v) for v in value_range)
    outside = int(((values < low) | (values > high)).sum())
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 3.0), layout="constrained")
    ax.hist(values, bins=bins, range=(low, high), color="0.4", log=log)
    colours = plt.get_cmap("tab10").colors
    for i, (name, ref) in enumerate((HU_REFERENCES if references is None else references).items()):
        colour = colours[(i + 1) % 10]
        if isinstance(ref, tuple | list):
            start = low if ref[0] is None else float(ref[0])
            stop = high if ref[1] is None else float(ref[1])
            text = (f"> {ref[0]:g} HU" if ref[1] is None else
                    f"< {ref[1]:g} HU" if ref[0] is None else f"{ref[0]:g} to {ref[1]:g} HU")
            ax.axvspan(start, stop, color=colour, alpha=0.18, label=f"{name} ({text})")
        else:
            ax.axvline(float(ref), color=colour, ls="--", lw=1.2, label=f"{name} ({ref:g} HU)")
    ax.set_xlim(low, high)
    ax.set_xlabel("Hounsfield units (HU)")
    ax.set_ylabel("voxels (log scale)" if log else "voxels")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title or f"n = {values.size:,} voxels ({outside:,} outside "
                 f"{low:g} to {high:g} HU)", fontsize=9)
    return ax.figure


def sequence_histograms(image, names, *, mask=None, label=None, bins=100, panel_size=3.0,
                        units="a.u."):
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
    units : str
        Intensity unit on the x axis (MRI: arbitrary units).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

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
        ax.hist(healthy, bins=edges, color="0.4", density=True,
                label=f"brain (n = {healthy.size:,})")
        if tumour.any():
            ax.hist(channel[mask & tumour], bins=edges, color="#d62728", alpha=0.6,
                    density=True, label=f"tumour (n = {int((mask & tumour).sum()):,})")
        ax.set_title(name, fontsize=10)
        ax.set_yticks([])
        ax.set_xlabel(f"intensity ({units})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def constant_slice_profile(image, *, channel_axis=-1, panel_size=3.0, affine=None):
    """Per axis, how much each slice varies; constant slices (no information) shaded.

    Parameters
    ----------
    image : numpy.ndarray
        ``(x, y, z)`` or ``(x, y, z, c)`` (with ``channel_axis``).
    channel_axis : int or None
        Channel axis of a 4-D image.
    affine : array-like (4, 4), optional
        With it, each axis is named by its anatomical direction and a second axis
        gives the slice position in mm.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from .spatial import constant_slices

    image = np.asarray(image)
    if image.ndim == 3:
        channel_axis = None
    codes = spacing = None
    if affine is not None:
        affine = np.asarray(affine, float)
        codes, spacing = _orientation_codes(affine), _spacing_of(affine)
    fig, axes = plt.subplots(1, 3, figsize=(3 * panel_size, panel_size * 0.95))
    for axis, ax in enumerate(axes):
        other = tuple(a for a in range(image.ndim) if a != axis)
        spread = image.max(axis=other).astype(float) - image.min(axis=other).astype(float)
        constant = constant_slices(image, axis, channel_axis=channel_axis)
        ax.plot(np.arange(image.shape[axis]), spread, color="0.2", lw=1)
        for index in constant:
            ax.axvspan(index - 0.5, index + 0.5, color="#1f77b4", alpha=0.25, lw=0)
        ax.set_title(f"{'xyz'[axis]}: {len(constant)} of {image.shape[axis]} constant",
                     fontsize=9)
        if codes is None:
            ax.set_xlabel(f"slice index along {'xyz'[axis]}")
        else:
            ax.set_xlabel(f"slice index ({_OPPOSITE[codes[axis]]} → {codes[axis]})", fontsize=8)
            step = spacing[axis]
            top = ax.secondary_xaxis("top", functions=(lambda i, s=step: i * s,
                                                       lambda m, s=step: m / s))
            top.set_xlabel("mm from the first slice", fontsize=7)
            top.tick_params(labelsize=6)
    axes[0].set_ylabel("max - min in the slice")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# Training curves; ROC, precision-recall and calibration; Dice bars with intervals.
# ---------------------------------------------------------------------------------------


def training_curves(history, metrics=None, *, panel_size=3.4, title=None, best_epoch=None):
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
    best_epoch : int, optional
        Epoch kept by model selection (on validation data), marked by a dotted line;
        default ``history.attrs["best_epoch"]`` when present.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    attrs = getattr(history, "attrs", {}) or {}
    if hasattr(history, "history"):
        history = history.history
    table = pd.DataFrame(history)
    if best_epoch is None:
        best_epoch = attrs.get("best_epoch")
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
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.4", ls=":", lw=1, label=f"kept epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _binary_inputs(y_true, y_score):
    """(truth int8, score float64) as 1-D arrays, checked: same length, 0/1 labels,
    finite scores."""
    truth = np.asarray(y_true.numpy() if hasattr(y_true, "numpy") else y_true).reshape(-1)
    score = np.asarray(y_score.numpy() if hasattr(y_score, "numpy") else y_score,
                       dtype=np.float64).reshape(-1)
    if truth.shape != score.shape or truth.size == 0:
        raise InvalidImageError(f"y_true has {truth.size} values and y_score {score.size}: "
                                "need one score per case, at least one case")
    if not np.all(np.isin(truth, (0, 1))):
        raise InvalidImageError("y_true must hold only 0 and 1")
    if not np.all(np.isfinite(score)):
        raise InvalidImageError("y_score holds non-finite values (NaN or inf)")
    return truth.astype(np.int8), score


def _bootstrap(statistic, truth, score, n_bootstrap, confidence, rng, need_both=True):
    """Percentile interval of ``statistic(truth, score)`` over case resamples."""
    values = []
    n = truth.size
    for _ in range(int(n_bootstrap)):
        idx = rng.integers(0, n, n)
        t = truth[idx]
        if need_both and (t.min() == t.max()):
            continue
        values.append(statistic(t, score[idx]))
    if not values:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def _interval_text(value, low, high, confidence):
    if not np.isfinite(low):
        return f"{value:.3f} (no interval)"
    return f"{value:.3f} ({confidence:.0%} CI {low:.3f}-{high:.3f})"


def roc_curves(y_true, y_score, *, baselines=None, ax=None, n_bootstrap=1000, confidence=0.95,
               seed=0, label="model", title=None, operating_point=None):
    """ROC curve with its AUC and bootstrap interval, baselines on the same cases.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n,)
    y_score : array-like of float, shape (n,)
    baselines : mapping of str to array-like of float, optional
        Scores of baseline methods for the same cases (e.g. a metadata-only logistic
        regression), drawn dashed with their own AUC and interval.
    ax : matplotlib.axes.Axes, optional
    n_bootstrap, confidence, seed
        Interval settings (:func:`medimg.metrics.auc_with_ci`, resampling cases).
    label : str
        Legend name of the model.
    title : str, optional
        Default: "ROC" with n and the number of positives.
    operating_point : float, optional
        A threshold (chosen on validation data) marked on the curve with its
        sensitivity and specificity.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from . import metrics

    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 4.4), layout="constrained")
    curves = {label: y_score, **dict(baselines or {})}
    for i, (name, scores) in enumerate(curves.items()):
        auc = metrics.auc_with_ci(y_true, scores, n_bootstrap=n_bootstrap, confidence=confidence,
                                  seed=seed)
        roc = metrics.roc_curve(y_true, scores)
        ax.plot(roc.fpr, roc.tpr, lw=2 if i == 0 else 1.4, ls="-" if i == 0 else "--",
                label=f"{name}: AUC " + _interval_text(auc["auc"], auc["low"], auc["high"],
                                                       confidence))
    ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1, label="chance: AUC 0.5")
    if operating_point is not None:
        table = metrics.confusion_at(y_true, y_score, threshold=operating_point)
        sens, spec = table.attrs["sensitivity"], table.attrs["specificity"]
        ax.plot([1 - spec], [sens], "o", color="black", ms=5,
                label=f"threshold {operating_point:.2f}: sensitivity {sens:.2f}, "
                      f"specificity {spec:.2f}")
    n, n_pos = int(np.size(y_true)), int(np.sum(y_true))
    ax.set(xlabel="false positive rate (1 - specificity)",
           ylabel="true positive rate (sensitivity)", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax.set_title(f"{title or 'ROC'}: n = {n} ({n_pos} positive)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_aspect("equal")
    return ax.figure


def precision_recall(y_true, y_score, *, baselines=None, ax=None, n_bootstrap=1000,
                     confidence=0.95, seed=0, label="model", title=None):
    """Precision-recall curve with the average precision and its bootstrap interval.

    The no-skill level (the prevalence) is drawn as a horizontal line; baselines on
    the same cases are dashed.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n,)
    y_score : array-like of float, shape (n,)
    baselines : mapping of str to array-like of float, optional
    ax : matplotlib.axes.Axes, optional
    n_bootstrap, confidence, seed
        Percentile bootstrap over cases (resamples without a positive are skipped).
    label : str
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve


    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 4.4), layout="constrained")
    curves = {label: y_score, **dict(baselines or {})}
    truth = None
    for i, (name, scores) in enumerate(curves.items()):
        truth, score = _binary_inputs(y_true, scores)
        if truth.sum() == 0:
            raise InvalidImageError("precision-recall needs at least one positive case")
        precision, recall, _ = precision_recall_curve(truth, score)
        ap = float(average_precision_score(truth, score))
        low, high = _bootstrap(average_precision_score, truth, score, n_bootstrap, confidence,
                               np.random.default_rng(seed))
        ax.step(recall, precision, where="post", lw=2 if i == 0 else 1.4,
                ls="-" if i == 0 else "--",
                label=f"{name}: AP " + _interval_text(ap, low, high, confidence))
    prevalence = float(truth.mean())
    ax.axhline(prevalence, ls=":", color="0.5", lw=1,
               label=f"no skill: prevalence {prevalence:.2f}")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (positive predictive value)",
           xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax.set_title(f"{title or 'Precision-recall'}: n = {truth.size} ({int(truth.sum())} "
                 "positive)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return ax.figure


def calibration_table(y_true, y_score, *, n_bins=10, strategy="uniform", confidence=0.95):
    """Reliability-diagram numbers: per score bin the count, mean score, observed rate.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n,)
    y_score : array-like of float in [0, 1], shape (n,)
        Predicted probabilities.
    n_bins : int
    strategy : {"uniform", "quantile"}
        Equal-width bins on [0, 1], or bins holding equal numbers of cases.
    confidence : float
        Coverage of the Wilson interval of each bin's observed rate.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``low``, ``high`` (bin edges), ``n``,
        ``n_positive``, ``mean_score``, ``observed``, ``observed_low``,
        ``observed_high``.
    """
    import pandas as pd


    truth, score = _binary_inputs(y_true, y_score)
    if score.min() < 0 or score.max() > 1:
        raise InvalidImageError("calibration needs probabilities in [0, 1], got scores in "
                                f"{score.min():.3g}..{score.max():.3g}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(score, np.linspace(0, 1, int(n_bins) + 1)))
        edges[0], edges[-1] = 0.0, 1.0
    else:
        raise ConfigError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    which = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        inside = which == b
        n = int(inside.sum())
        if not n:
            continue
        k = int(truth[inside].sum())
        interval = _statistics().proportion_with_ci(k, n, confidence=confidence)
        low, high = interval["low"], interval["high"]
        low, high = min(low, k / n), max(high, k / n)  # rounding at k = 0 or k = n
        rows.append({"low": edges[b], "high": edges[b + 1], "n": n, "n_positive": k,
                     "mean_score": float(score[inside].mean()), "observed": k / n,
                     "observed_low": low, "observed_high": high})
    return pd.DataFrame(rows)


def calibration(y_true, y_score, *, n_bins=10, strategy="uniform", axes=None, label="model",
                confidence=0.95, title=None):
    """Calibration (reliability) curve with the number of cases per bin.

    Top: the observed rate of positives against the mean predicted probability in
    each bin, with Wilson intervals, and the diagonal of perfect calibration; the
    legend gives the Brier score and n. Bottom: cases per bin, each bar labelled
    with its n.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n,)
    y_score : array-like of float in [0, 1], shape (n,)
    n_bins : int
    strategy : {"uniform", "quantile"}
    axes : (Axes, Axes), optional
        Curve and count axes (a new figure when None).
    label : str
    confidence : float
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt


    table = calibration_table(y_true, y_score, n_bins=n_bins, strategy=strategy,
                              confidence=confidence)
    truth, score = _binary_inputs(y_true, y_score)
    brier = float(np.mean((score - truth) ** 2))
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(4.6, 5.6), sharex=True, layout="constrained",
                               gridspec_kw={"height_ratios": [3, 1.2]})
    curve_ax, count_ax = axes
    curve_ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1, label="perfect calibration")
    errors = np.clip(np.vstack([table.observed - table.observed_low,
                                table.observed_high - table.observed]), 0, None)
    curve_ax.errorbar(table.mean_score, table.observed, yerr=errors, marker="o", ms=4, capsize=2,
                      label=f"{label}: Brier {brier:.3f}, n = {truth.size} "
                            f"({confidence:.0%} Wilson intervals)")
    curve_ax.set(ylabel="observed rate of positives", xlim=(0, 1), ylim=(-0.02, 1.02))
    curve_ax.set_title(title or f"Calibration: {len(table)} bins ({strategy})", fontsize=9)
    curve_ax.legend(fontsize=7, loc="upper left")
    widths = (table.high - table.low).to_numpy()
    count_ax.bar(table.low, table.n, width=widths * 0.9, align="edge", color="0.55")
    for low, width, n in zip(table.low, widths, table.n, strict=True):
        text = count_ax.text(low + width / 2, n, str(int(n)), ha="center", va="bottom",
                             fontsize=7)
        text.set_gid("bin-n")
    count_ax.set(xlabel="predicted probability", ylabel="cases per bin", xlim=(0, 1),
                 ylim=(0, max(table.n.max() * 1.3, 1)))
    return curve_ax.figure


def _statistics():
    """The statistics room (intervals live in :mod:`medimg.metrics`, one home)."""
    from . import metrics

    return metrics


def _mean_interval(values, n_bootstrap, confidence, rng):
    """A bootstrap interval of the mean (:func:`medimg.metrics.mean_with_ci`) seeded from
    the figure's generator, so one figure's bars are reproducible together."""
    result = _statistics().mean_with_ci(values, n_bootstrap=int(n_bootstrap),
                                        confidence=confidence,
                                        seed=int(rng.integers(0, 2**31 - 1)))
    return result["low"], result["high"]


def dice_bars(scores, *, ax=None, order=None, n_bootstrap=2000, confidence=0.95, seed=0,
              ylabel="Dice", title=None, ylim=(0.0, 1.15)):
    """Mean Dice per region or class with its n and a bootstrap interval over subjects.

    Parameters
    ----------
    scores : pandas.DataFrame, mapping of str to array-like, or mapping of str to DataFrame
        Per-subject scores: one row per subject (scan, patient), one column per region
        or class (WT/TC/ET, vertebra names); NaN where a subject has no value (e.g. a
        region absent from both truth and prediction when the caller excludes empty
        cases). A mapping of method name to such a table draws grouped bars (model
        beside its baseline).
    ax : matplotlib.axes.Axes, optional
    order : sequence of str, optional
        Column order; default anatomical order for vertebra names, else as given.
    n_bootstrap, confidence, seed
        Percentile bootstrap of the mean over subjects (no interval below 2 values).
    ylabel : str
    title : str, optional
    ylim : (float, float)

    Returns
    -------
    matplotlib.figure.Figure
        Each bar carries its mean and n as text; error bars span the interval.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    if isinstance(scores, pd.DataFrame):
        methods = {None: scores}
    elif scores and all(isinstance(v, pd.DataFrame) for v in dict(scores).values()):
        methods = dict(scores)
    else:
        methods = {None: pd.DataFrame({k: pd.Series(np.asarray(v, float))
                                       for k, v in dict(scores).items()})}
    columns = list(dict.fromkeys(c for t in methods.values() for c in t.columns))
    if order is None:
        by_name = {name: v for v, name in VERTEBRA_NAMES.items()}
        if columns and all(c in by_name for c in columns):
            columns.sort(key=lambda c: VERTEBRA_ORDER.index(by_name[c]))
    else:
        columns = list(order)
    if not columns:
        raise InvalidImageError("dice_bars needs at least one column of scores")
    if ax is None:
        width_in = max(4.0, 0.55 * len(columns) * len(methods) + 1.5)
        _, ax = plt.subplots(figsize=(width_in, 3.6), layout="constrained")
    rng = np.random.default_rng(seed)
    n_methods = len(methods)
    width = 0.8 / n_methods
    x = np.arange(len(columns))
    colours = plt.get_cmap("tab10").colors
    for m, (method, table) in enumerate(methods.items()):
        means, lows, highs, ns = [], [], [], []
        for column in columns:
            values = (table[column].dropna().to_numpy(float) if column in table
                      else np.array([]))
            ns.append(values.size)
            means.append(values.mean() if values.size else np.nan)
            low, high = _mean_interval(values, n_bootstrap, confidence, rng)
            lows.append(low)
            highs.append(high)
        means, lows, highs = map(np.asarray, (means, lows, highs))
        positions = x - 0.4 + width * (m + 0.5)
        # Clipped at 0: with very few subjects a quantile can sit a rounding error
        # inside the mean.
        yerr = np.clip(np.vstack([np.nan_to_num(means - lows), np.nan_to_num(highs - means)]),
                       0, None)
        label = None if method is None else str(method)
        ax.bar(positions, np.nan_to_num(means), width=width * 0.92, color=colours[m % 10],
               label=label, yerr=yerr, capsize=3, error_kw={"lw": 1})
        for pos, mean, high, n in zip(positions, means, highs, ns, strict=True):
            top = high if np.isfinite(high) else (mean if np.isfinite(mean) else 0)
            text = ax.text(pos, top + 0.01, ("" if not np.isfinite(mean) else f"{mean:.2f}\n")
                           + f"n={n}", ha="center", va="bottom", fontsize=6)
            text.set_gid("bar-n")
    ax.set_xticks(x, [str(c) for c in columns], fontsize=8,
                  rotation=45 if len(columns) > 8 else 0)
    ax.set_ylim(*ylim)
    ax.set_ylabel(f"mean {ylabel} ({confidence:.0%} bootstrap CI)")
    ax.set_title(title or f"{ylabel} per class: mean over subjects", fontsize=9)
    if n_methods > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return ax.figure
