"""The die grid of an axis-aligned wafer frame: street pitch and origin to subpixel, and the die crops.

Streets are darker than dies, so the mean grey of each column (row) over a square inside the wafer dips at
every street. The autocorrelation of that profile gives the rough pitch; each dip's centre is then the
centroid of its depth (unbiased for a symmetric street), and a straight-line fit of the dip centres against
their index gives pitch and origin, averaging the error of a single dip away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inspection.types import InspectionError


class GridError(InspectionError, ValueError):
    """No regular die grid where one was expected; the message says what was found."""


@dataclass(frozen=True)
class DieGrid:
    pitch_xy_px: tuple[float, float]
    origin_xy_px: tuple[float, float]
    """A street crossing (centre of both streets); the others lie at origin + (i, j) x pitch."""
    streets_xy: tuple[int, int]
    """How many streets each fit used."""


@dataclass(frozen=True)
class Die:
    row: int
    column: int
    """Index from the die whose cell holds the wafer centre (row grows downwards on screen)."""
    box_xyxy_px: tuple[int, int, int, int]
    centre_mm: tuple[float, float] | None
    """Die centre from the wafer centre in mm, x right and y up; None without a pixel size."""


def _dip_centres(depth: np.ndarray, *, origin: float, pitch: float, half_window: int) -> tuple[list[int], list[float]]:
    """(index, centroid) of each street dip found within +-half_window of origin + index x pitch."""
    indices, centres = [], []
    for index in range(-1, int(len(depth) / pitch) + 2):
        predicted = round(origin + index * pitch)
        low, high = predicted - half_window, predicted + half_window + 1
        if low < 0 or high > len(depth) or depth[low:high].sum() <= 0:
            continue
        weights = depth[low:high]
        indices.append(index)
        centres.append(float(np.sum(np.arange(low, high) * weights) / weights.sum()))
    return indices, centres


def _street_profile(block: np.ndarray, *, axis: int, percentile: float) -> np.ndarray:
    """The grey of each column (``axis=0``) or row (``axis=1``) of a block of the wafer, as streets see it.

    A street is dark across the whole block, a die's pads and blocks only in some of its rows: a high percentile
    across the block keeps the streets and drops the dies' content (a mean would keep both). The 75th keeps a
    street that slants a little across the block (a grid not yet turned straight); on a straight grid the 98th
    also drops a column of pads down most of a die's height, which at the 75th read as street and pulled the
    origin by up to 1.2 px.
    """
    return np.percentile(block, percentile, axis=axis)


def _street_positions(profile: np.ndarray, *, min_pitch_px: float, slanted: bool = False
                      ) -> tuple[float, float, int]:
    """(pitch, origin, streets) of the dips of a 1-D profile (the grey of the streets against the dies').

    The dips are measured against the dies' own level (a running median, smoothed), so an illumination gradient
    does not bury the streets on the dark side and bright die content does not make a die look like a dip; a
    street's centroid weighs the deeper half of its dip only. The pitch is the first strong peak of the dips'
    autocorrelation, refined to a fraction of a pixel (a pitch near x.5 px would otherwise be read 0.5 px off,
    and the double of a pitch can correlate better than the pitch itself), then fitted to every street's
    centroid. ``slanted``: a profile across which the streets may slant (a grid not yet turned straight), whose
    shallow, wide dips are measured against the profile's upper envelope and weighed down to 0.3 of the deepest.
    """
    envelope_px = max(16, len(profile) // 8)
    level = ndimage.maximum_filter1d(profile, size=envelope_px) if slanted else ndimage.median_filter(
        profile, size=envelope_px)
    envelope = ndimage.gaussian_filter1d(level, envelope_px / 4)
    depth = np.maximum(envelope - profile, 0.0)
    centred = depth - depth.mean()
    spectrum = np.fft.rfft(centred, n=2 * len(centred))
    autocorrelation = np.fft.irfft(spectrum * np.conj(spectrum))[: len(centred)]
    lag_start = int(np.ceil(min_pitch_px))
    lag_end = len(autocorrelation) // 3
    if lag_end < lag_start + 3:
        raise GridError(f"the profile ({len(profile)} px) is too short for a pitch of at least {min_pitch_px} px")
    lags = np.arange(lag_start, lag_end)
    values = autocorrelation[lag_start:lag_end]
    peaks = [i for i in range(1, len(values) - 1) if values[i] >= values[i - 1] and values[i] > values[i + 1]]
    if not peaks or values[max(peaks, key=lambda i: values[i])] <= 0.2 * autocorrelation[0]:
        raise GridError("no periodic street pattern (autocorrelation peak too weak)")
    strongest = max(values[i] for i in peaks)
    first = next(i for i in peaks if values[i] >= 0.6 * strongest)  # the pitch, not one of its multiples
    below, at, above = values[first - 1], values[first], values[first + 1]
    pitch = float(lags[first] + 0.5 * (below - above) / (below - 2 * at + above))  # parabola through the peak
    # Street centroids weigh only the street's own dip, not the dies' noise or content beside it.
    weights = np.maximum(depth - (0.3 if slanted else 0.5) * float(np.percentile(depth, 99)), 0.0)
    half_window = max(2, int(pitch // 4))
    origin = float(np.argmax(weights[: int(np.ceil(pitch)) + 1]))
    for _ in range(3):  # each pass searches around the fitted positions
        indices, centres = _dip_centres(weights, origin=origin, pitch=pitch, half_window=half_window)
        if len(centres) < 3:
            raise GridError(f"only {len(centres)} streets found; at least 3 are needed for a pitch")
        pitch, origin = (float(v) for v in np.polyfit(np.array(indices, float), np.array(centres), 1))
    return pitch, origin, len(centres)


def find_die_grid(image: np.ndarray, *, centre_xy_px: tuple[float, float], radius_px: float,
                  min_pitch_px: float = 8.0, straight: bool = False) -> DieGrid:
    """Street pitch and origin of an axis-aligned wafer (turn it to canonical first) inside its circle.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        The wafer, notch down, its grid axis-aligned.
    centre_xy_px : tuple of float
        The wafer's centre, (x, y) in pixels.
    radius_px : float
        The wafer's radius, in pixels.
    min_pitch_px : float, optional
        The smallest die pitch searched, in pixels.
    straight : bool, optional
        The grid's residual turn is already removed (:func:`grid_angle_deg`), so each street runs straight down
        the block: the streets are then told from die content that covers most of a die's height (a column of
        pads), which a grid still turned by a tenth of a degree would lose its slanting streets to.

    Returns
    -------
    DieGrid
        Pitch and origin in x and y, subpixel.

    Raises
    ------
    GridError
        When the frame shows no regular streets.
    """
    half = int(0.9 * radius_px / np.sqrt(2))
    cx, cy = round(centre_xy_px[0]), round(centre_xy_px[1])
    left, top = max(0, cx - half), max(0, cy - half)
    square = image[top : cy + half, left : cx + half].astype(np.float64)
    if min(square.shape) < 4 * min_pitch_px:
        raise GridError(f"the square inside the wafer is {square.shape[1]}x{square.shape[0]} px: too small for a "
                        f"die grid of pitch >= {min_pitch_px} px")
    percentile = 98.0 if straight else 75.0
    pitch_x, origin_x, streets_x = _street_positions(_street_profile(square, axis=0, percentile=percentile),
                                                     min_pitch_px=min_pitch_px, slanted=not straight)
    pitch_y, origin_y, streets_y = _street_positions(_street_profile(square, axis=1, percentile=percentile),
                                                     min_pitch_px=min_pitch_px, slanted=not straight)
    return DieGrid((pitch_x, pitch_y), (origin_x + left, origin_y + top), (streets_x, streets_y))


def centre_cell(grid: DieGrid, *, centre_xy_px: tuple[float, float]) -> tuple[int, int]:
    """The grid cell that holds the wafer centre; die indices are counted from it.

    Parameters
    ----------
    grid : DieGrid
    centre_xy_px : tuple of float
        The wafer's centre, (x, y) in pixels.

    Returns
    -------
    row, column : int
        Counted from the grid origin.
    """
    (pitch_x, pitch_y), (origin_x, origin_y) = grid.pitch_xy_px, grid.origin_xy_px
    return (int(np.floor((centre_xy_px[1] - origin_y) / pitch_y)),
            int(np.floor((centre_xy_px[0] - origin_x) / pitch_x)))


def cell_origins_xy_px(grid: DieGrid, *, centre_xy_px: tuple[float, float], rows: np.ndarray,
                       columns: np.ndarray) -> np.ndarray:
    """Top-left corners (the street crossings, subpixel) of the cells of given die indices.

    Parameters
    ----------
    grid : DieGrid
    centre_xy_px : tuple of float
        The wafer's centre, (x, y) in pixels.
    rows, columns : (N,) int ndarray
        Die indices, counted from the centre cell.

    Returns
    -------
    (N, 2) float ndarray
        (x, y) in pixels.
    """
    centre_row, centre_column = centre_cell(grid, centre_xy_px=centre_xy_px)
    (pitch_x, pitch_y), (origin_x, origin_y) = grid.pitch_xy_px, grid.origin_xy_px
    return np.column_stack([origin_x + (np.asarray(columns) + centre_column) * pitch_x,
                            origin_y + (np.asarray(rows) + centre_row) * pitch_y])


def die_crops(grid: DieGrid, *, centre_xy_px: tuple[float, float], radius_px: float, edge_exclusion_px: float = 0.0,
              pixel_size_um: float | None = None) -> list[Die]:
    """Every die cell that lies wholly inside the wafer (less the edge exclusion), with its index and position.

    Parameters
    ----------
    grid : DieGrid
    centre_xy_px : tuple of float
        The wafer's centre, (x, y) in pixels.
    radius_px : float
        The wafer's radius, in pixels.
    edge_exclusion_px : float, optional
        Dies reaching into this rim are left out.
    pixel_size_um : float, optional
        When given, each die's position from the wafer centre is also in millimetres.

    Returns
    -------
    list of Die
        Box in pixels, (row, column) index from the centre cell, position.
    """
    (pitch_x, pitch_y), (origin_x, origin_y) = grid.pitch_xy_px, grid.origin_xy_px
    cx, cy = centre_xy_px
    usable = radius_px - edge_exclusion_px
    centre_row, centre_column = centre_cell(grid, centre_xy_px=centre_xy_px)
    span_x, span_y = int(np.ceil(usable / pitch_x)) + 1, int(np.ceil(usable / pitch_y)) + 1
    dies = []
    for row in range(centre_row - span_y, centre_row + span_y + 1):
        for column in range(centre_column - span_x, centre_column + span_x + 1):
            x0, y0 = origin_x + column * pitch_x, origin_y + row * pitch_y
            corners = np.array([[x0, y0], [x0 + pitch_x, y0], [x0, y0 + pitch_y], [x0 + pitch_x, y0 + pitch_y]])
            if np.any(np.hypot(corners[:, 0] - cx, corners[:, 1] - cy) > usable):
                continue
            centre_mm = None
            if pixel_size_um is not None:
                centre_mm = ((x0 + pitch_x / 2 - cx) * pixel_size_um / 1000,
                             (cy - (y0 + pitch_y / 2)) * pixel_size_um / 1000)
            box = (int(np.ceil(x0)), int(np.ceil(y0)), int(np.floor(x0 + pitch_x)), int(np.floor(y0 + pitch_y)))
            dies.append(Die(row - centre_row, column - centre_column, box, centre_mm))
    return dies


def _band_origin(band: np.ndarray, *, pitch_px: float, min_pitch_px: float) -> float:
    """Street origin (modulo the pitch) of the street profile across a band.

    Raises GridError when the band's streets repeat at another pitch than the grid's: a grid turned too far for
    the grid's pitch to be trusted.
    """
    pitch, origin, _ = _street_positions(_street_profile(band, axis=0, percentile=75.0), min_pitch_px=min_pitch_px,
                                         slanted=True)
    if abs(pitch / pitch_px - 1) > 0.01:
        raise GridError(f"the die grid's turn is not measured: a band's streets repeat every {pitch:.2f} px, the "
                        f"grid's every {pitch_px:.2f} px; is the grid turned against the notch by more than a few "
                        "tenths of a degree?")
    return origin % pitch_px


def _band_shift(pixels: np.ndarray, centre: tuple[int, int], *, offset: int, half_band: int, reach: int,
                pitch_px: float, min_pitch_px: float) -> float:
    """How far the streets across ``pixels`` (columns) move between the bands ``offset`` rows above and below
    ``centre`` (column, row), modulo a pitch: in (-pitch/2, pitch/2]."""
    across, along = centre
    bands = [pixels[along + sign * offset - half_band : along + sign * offset + half_band,
                    across - reach : across + reach].astype(np.float64) for sign in (-1, 1)]
    first, second = (_band_origin(band, pitch_px=pitch_px, min_pitch_px=min_pitch_px) for band in bands)
    return (second - first + pitch_px / 2) % pitch_px - pitch_px / 2


GRID_AXES_AGREE_DEG = 0.05
"""The turns the vertical and the horizontal streets give must agree this well, or the grid's turn is refused."""


def grid_angle_deg(image: np.ndarray, *, centre_xy_px: tuple[float, float], radius_px: float, grid: DieGrid,
                   min_pitch_px: float = 8.0) -> float:
    """Residual turn of an almost axis-aligned die grid, from how far the streets move between two bands.

    A notch places the wafer to a fraction of a degree; the streets, a wafer wide, place it ten times better.
    Two bands far apart (0.7 of the radius) give the precision; the shift between them is known only up to a
    whole pitch, so two bands close together (0.2 of the radius), whose shift stays within half a pitch up to
    several degrees, say which pitch. The vertical and the horizontal streets must then agree.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        The wafer, turned to canonical by its notch.
    centre_xy_px : tuple of float
        The wafer's centre, (x, y) in pixels.
    radius_px : float
        The wafer's radius, in pixels.
    grid : DieGrid
        As :func:`find_die_grid` found it.
    min_pitch_px : float, optional
        The smallest die pitch searched, in pixels.

    Returns
    -------
    float
        Degrees in image coordinates (y down: a positive angle turns +x towards +y).

    Raises
    ------
    GridError
        When the two directions of streets disagree by more than ``GRID_AXES_AGREE_DEG``: a turn that is not
        measured rather than one measured wrong.
    """
    cx, cy = round(centre_xy_px[0]), round(centre_xy_px[1])
    reach = int(0.6 * radius_px)
    far, near = (int(0.35 * radius_px), int(0.12 * radius_px)), (int(0.1 * radius_px), int(0.05 * radius_px))
    angles = []
    for axis, pitch in ((0, grid.pitch_xy_px[0]), (1, grid.pitch_xy_px[1])):
        pixels = image if axis == 0 else image.T
        centre = (cx, cy) if axis == 0 else (cy, cx)
        near_shift, wrapped = (_band_shift(pixels, centre, offset=offset, half_band=half_band, reach=reach,
                                           pitch_px=pitch, min_pitch_px=min_pitch_px)
                               for offset, half_band in (near, far))
        expected = near_shift * far[0] / near[0]
        unwrapped = wrapped + pitch * round((expected - wrapped) / pitch)
        slope = np.degrees(np.arctan2(unwrapped, 2 * far[0]))
        angles.append(-slope if axis == 0 else slope)  # vertical streets lean against the turn, horizontal with it
    if abs(angles[0] - angles[1]) > GRID_AXES_AGREE_DEG:
        raise GridError(f"the die grid's turn is not measured: its vertical streets give {angles[0]:.3f} deg and its "
                        f"horizontal ones {angles[1]:.3f} deg (they must agree within {GRID_AXES_AGREE_DEG} deg); is "
                        "the grid turned against the notch by more than a few tenths of a degree?")
    return float(np.mean(angles))
