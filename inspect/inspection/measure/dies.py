"""Dies of a whole-wafer image: wafer edge and notch, canonical turn, die grid, die crops, the wafer's median
die, and where a failed die's defect lies.

Plain functions on numpy arrays; the die classifier (``classify``) judges the crops these make.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from inspection.align.wafer import WaferFit, find_wafer
from inspection.measure.grid import Die, DieGrid, cell_origins_xy_px, die_crops, find_die_grid, grid_angle_deg
from inspection.recipe import WaferLayout
from inspection.types import InspectionError

LOCALISE_TOLERANCE_GREY = 25.0
"""A pixel of a failed die this far from the median die belongs to the defect."""


class WaferRejected(InspectionError, ValueError):
    """A frame that is not the recipe's product (wafer size, die grid); the wafer is failed-to-grade."""


def median_die(crops: np.ndarray, *, sample: int = 101) -> np.ndarray:
    """The wafer's own golden die: the pixel-wise median of evenly spaced dies. Defects sit at different places
    in different dies, so the median stays clean even on a wafer where most dies fail."""
    chosen = crops[np.linspace(0, len(crops) - 1, min(sample, len(crops))).round().astype(int)]
    return np.median(chosen, axis=0).astype(np.uint8)


def die_inputs(crops: np.ndarray, golden: np.ndarray) -> np.ndarray:
    """What the die classifier sees, N x h x w x 3 (stored and passed as BGR): the die, the wafer's median die
    and their absolute difference, so it judges a die against its own product and not only by its look."""
    difference = cv2.absdiff(crops, np.broadcast_to(golden, crops.shape))
    return np.stack([crops, np.broadcast_to(golden, crops.shape), difference], axis=-1)


@dataclass(frozen=True)
class DieLayout:
    """A wafer located and turned to canonical (notch down), with its die grid and same-sized die crops."""

    fit: WaferFit
    grid: DieGrid
    dies: list[Die]
    crops: np.ndarray
    """N x h x w uint8: each die inside its streets."""
    golden: np.ndarray
    """h x w uint8: the median die (:func:`median_die`)."""
    crop_origins_xy_px: np.ndarray
    """N x 2: top-left corner of each crop in the canonical (notch-down) frame, subpixel."""


def locate_dies(image: np.ndarray, *, wafer: WaferLayout, pixel_size_um: float,
                timings_ms: dict[str, float] | None = None) -> DieLayout:
    """Find the wafer, turn it notch-down, fit its die grid and cut the dies; raises WaferRejected when the
    wafer's size or die pitch is not the recipe's, AlignmentError / GridError when there is none."""
    timings_ms = {} if timings_ms is None else timings_ms
    layout, pixel_um = wafer, pixel_size_um
    started = time.perf_counter()
    fit = find_wafer(image, pixel_size_um=pixel_um)
    diameter_mm = 2 * fit.radius_px * pixel_um / 1000
    if abs(diameter_mm / layout.diameter_mm - 1) > layout.diameter_tolerance:
        raise WaferRejected(f"wafer diameter {diameter_mm:.1f} mm; the recipe's product is {layout.diameter_mm:g} mm "
                            f"(+-{layout.diameter_tolerance:.0%})")
    timings_ms["wafer"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    size = (image.shape[1], image.shape[0])
    centre = (size[0] / 2, size[1] / 2)
    min_pitch_px = 0.5 * min(layout.die_pitch_um) / pixel_um

    def turned(fit: WaferFit, *, straight: bool) -> tuple[np.ndarray, DieGrid]:
        canonical = cv2.warpAffine(image, fit.to_canonical(size_px=size), size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
        return canonical, find_die_grid(canonical, centre_xy_px=centre, radius_px=fit.radius_px,
                                        min_pitch_px=min_pitch_px, straight=straight)

    canonical, grid = turned(fit, straight=False)
    # The notch sets the turn to a few hundredths of a degree, a pixel at the wafer's rim; the streets set it
    # ten times better, so the dies at the rim line up with the median die too.
    residual_deg = grid_angle_deg(canonical, centre_xy_px=centre, radius_px=fit.radius_px, grid=grid,
                                  min_pitch_px=min_pitch_px)
    fit = replace(fit, notch_angle_deg=(fit.notch_angle_deg - residual_deg) % 360.0)
    canonical, grid = turned(fit, straight=True)
    timings_ms["canonical"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    found_um = (grid.pitch_xy_px[0] * pixel_um, grid.pitch_xy_px[1] * pixel_um)
    if any(abs(f / e - 1) > layout.pitch_tolerance for f, e in zip(found_um, layout.die_pitch_um, strict=True)):
        raise WaferRejected(f"die pitch {found_um[0]:.0f} x {found_um[1]:.0f} um does not match the recipe's "
                            f"die_pitch_um {layout.die_pitch_um[0]:g} x {layout.die_pitch_um[1]:g} "
                            f"(+-{layout.pitch_tolerance:.0%})")
    dies = die_crops(grid, centre_xy_px=centre, radius_px=fit.radius_px,
                     edge_exclusion_px=layout.edge_exclusion_mm * 1000 / pixel_um, pixel_size_um=pixel_um)
    if not dies:
        raise WaferRejected("no whole die inside the wafer's usable area")
    timings_ms["grid"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    inset_px = layout.street_um / pixel_um / 2
    width, height = int(grid.pitch_xy_px[0] - 2 * inset_px), int(grid.pitch_xy_px[1] - 2 * inset_px)
    origins = inset_px + cell_origins_xy_px(grid, centre_xy_px=centre, rows=np.array([d.row for d in dies]),
                                            columns=np.array([d.column for d in dies]))
    # Cut every die at its subpixel grid position (a few remaps of stacked dies), so each lines up with the
    # median die to a small fraction of a pixel and the difference shows defects, not pattern edges.
    xs = np.broadcast_to((origins[:, 0, None, None] + np.arange(width)[None, None, :]).astype(np.float32),
                         (len(origins), height, width))
    ys = np.broadcast_to((origins[:, 1, None, None] + np.arange(height)[None, :, None]).astype(np.float32),
                         (len(origins), height, width))
    per_call = max(1, 30000 // height)  # OpenCV's remap takes maps of fewer than 32,767 rows
    crops = np.concatenate([
        cv2.remap(canonical, xs[i : i + per_call].reshape(-1, width), ys[i : i + per_call].reshape(-1, width),
                  cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, height, width)
        for i in range(0, len(origins), per_call)])
    golden = median_die(crops)
    timings_ms["crops"] = (time.perf_counter() - started) * 1000
    return DieLayout(fit, grid, dies, crops, golden, origins)


@dataclass(frozen=True)
class DefectBoxes:
    """Per die (N,), where its defect lies as KLARF wants it: the centre from the die's lower-left corner, the
    size and the area, in micrometres (0 for a die that passed)."""

    x_rel_um: np.ndarray
    y_rel_um: np.ndarray
    x_size_um: np.ndarray
    y_size_um: np.ndarray
    area_um2: np.ndarray


def defect_boxes_um(crops: np.ndarray, golden: np.ndarray, defective: np.ndarray, *,
                    pixel_size_um: float) -> DefectBoxes:
    """Where the defect lies in each failed die: the largest region that differs from the wafer's median die.
    A failed die with no such region reports its whole area.

    Parameters
    ----------
    crops : (N, h, w) uint8 ndarray
        The dies.
    golden : (h, w) uint8 ndarray
        The wafer's median die.
    defective : (N,) bool ndarray
        The dies to localise (the others report 0).
    pixel_size_um : float
        Micrometres per pixel.

    Returns
    -------
    DefectBoxes
    """
    n, height, width = crops.shape
    boxes = DefectBoxes(*(np.zeros(n) for _ in range(5)))
    reference = golden.astype(np.float32)
    for i in np.flatnonzero(defective):
        difference = cv2.GaussianBlur(np.abs(crops[i].astype(np.float32) - reference), (3, 3), 0)
        mask = (difference > LOCALISE_TOLERANCE_GREY).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count > 1:
            largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            x, y, w, h, area = (int(v) for v in stats[largest])
        else:
            x, y, w, h, area = 0, 0, width, height, width * height
        boxes.x_rel_um[i] = (x + w / 2) * pixel_size_um
        boxes.y_rel_um[i] = (height - (y + h / 2)) * pixel_size_um
        boxes.x_size_um[i], boxes.y_size_um[i] = w * pixel_size_um, h * pixel_size_um
        boxes.area_um2[i] = area * pixel_size_um**2
    return boxes
