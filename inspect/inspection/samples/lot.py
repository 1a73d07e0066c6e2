"""Generated wafer lots with known truth: whole-wafer frames, a die grid of one product, a spatial failure
pattern and a defect class in every failed die.

The die states come from the wafer-map generator (so a lot's pattern is one of the nine WM-811K patterns) and
the die pictures from the die generator's design and defect drawing, so the grading chain meets what its
classifiers were built for. Everything is deterministic in (seed, wafer index).

A lot folder holds ``wafer-NN.png`` frames, ``truth/wafer-NN.npz`` (die index, class per die, pattern) and
``lot.csv``, the manifest ``inspect grade`` reads (with the truth columns it compares against).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspection.acquire.lot import MANIFEST_COLUMNS, MANIFEST_NAME, WaferTruth
from inspection.measure.grid import DieGrid, cell_origins_xy_px, die_crops
from inspection.samples.wafermaps import render_wafer_map
from inspection.sim.frames import DIE_CLASSES, die_design, draw_die_defect, wafer_coverage
from inspection.wafermap.maps import FAILED, PATTERNS, die_map_of

DEFECT_CLASSES = DIE_CLASSES[1:]
_BACKGROUND, _STREET = 20.0, 60.0


@dataclass(frozen=True)
class LotSpec:
    """The product and the camera: what a lot recipe states about its wafers."""

    size_px: int = 2048
    pixel_size_um: float = 153.0
    diameter_mm: float = 300.0
    die_pitch_um: tuple[float, float] = (8000.0, 8000.0)
    street_um: float = 900.0
    edge_exclusion_mm: float = 3.0
    """Dies reaching into this rim band are not graded, so the wafer's pattern is drawn on the dies inside."""
    max_turn_deg: float = 3.0
    """The wafer lies on the stage turned by up to this much (the notch tells by how much)."""
    max_offset_px: float = 12.0

    @property
    def radius_px(self) -> float:
        return self.diameter_mm * 500.0 / self.pixel_size_um

    @property
    def pitch_px(self) -> tuple[float, float]:
        return (self.die_pitch_um[0] / self.pixel_size_um, self.die_pitch_um[1] / self.pixel_size_um)


def render_lot_wafer(spec: LotSpec, pattern: str, index: int, *, seed: int = 0,
                     defect_rate: float | None = None) -> tuple[np.ndarray, WaferTruth]:
    """Wafer ``index`` of lot ``seed``: an 8-bit frame and its truth. Failed dies follow ``pattern``; with
    ``defect_rate`` they are instead drawn independently with that probability (for training data)."""
    rng = np.random.default_rng([seed, index, 17])
    size, radius = spec.size_px, spec.radius_px
    pitch_x, pitch_y = spec.pitch_px
    street_px = spec.street_um / spec.pixel_size_um
    design = die_design(np.random.default_rng([seed, 3]), size_px=round(pitch_x - street_px))
    centre = (size / 2 + rng.uniform(-1, 1) * spec.max_offset_px, size / 2 + rng.uniform(-1, 1) * spec.max_offset_px)
    origin = (centre[0] - rng.uniform(0.2, 0.8) * pitch_x, centre[1] - rng.uniform(0.2, 0.8) * pitch_y)
    grid = DieGrid((pitch_x, pitch_y), origin, (0, 0))
    # Truth for every whole die; the recipe's edge exclusion decides which of them the grader reads.
    dies = die_crops(grid, centre_xy_px=centre, radius_px=radius)
    graded = die_crops(grid, centre_xy_px=centre, radius_px=radius,
                       edge_exclusion_px=spec.edge_exclusion_mm * 1000 / spec.pixel_size_um)
    middle = max(max(abs(d.row), abs(d.column)) for d in graded)
    span = 2 * middle + 1
    footprint = np.zeros((span, span), bool)
    footprint[[d.row + middle for d in graded], [d.column + middle for d in graded]] = True
    states = render_wafer_map(pattern, index, seed=seed, footprint=footprint)
    classes = np.zeros(len(dies), np.uint8)
    for i, die in enumerate(dies):
        r, c = die.row + middle, die.column + middle
        failed = (rng.uniform() < defect_rate if defect_rate is not None
                  else 0 <= r < span and 0 <= c < span and states[r, c] == FAILED)
        if failed:
            classes[i] = 1 + int(rng.integers(len(DEFECT_CLASSES)))

    canvas = np.full((size, size), _STREET, np.float32)
    clean = design.draw()
    side = design.size_px
    by_cell = {(d.row, d.column): k for k, d in enumerate(dies)}
    reach_x, reach_y = int(radius / pitch_x) + 2, int(radius / pitch_y) + 2
    for row in range(-reach_y, reach_y + 1):
        for col in range(-reach_x, reach_x + 1):
            # Lithography places every die exactly on the grid: draw it at its subpixel position.
            ((x, y),) = street_px / 2 + cell_origins_xy_px(grid, centre_xy_px=centre, rows=np.array([row]),
                                                          columns=np.array([col]))
            x0, y0 = int(np.floor(x)) - 1, int(np.floor(y)) - 1
            if x0 < 0 or y0 < 0 or x0 + side + 2 > size or y0 + side + 2 > size:
                continue
            die_image = clean * rng.uniform(0.96, 1.04)
            k = by_cell.get((row, col))
            if k is not None and classes[k]:
                draw_die_defect(die_image, design, DIE_CLASSES[classes[k]], rng)
            shift = np.float32([[1, 0, x - x0], [0, 1, y - y0]])
            canvas[y0 : y0 + side + 2, x0 : x0 + side + 2] = cv2.warpAffine(
                die_image, shift, (side + 2, side + 2), flags=cv2.INTER_LINEAR, borderValue=_STREET)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    on_wafer = wafer_coverage(xx, yy, centre_xy_px=centre, radius_px=radius, notch_angle_deg=270.0)
    canvas *= 1.0 - 0.06 * (np.hypot(xx - centre[0], yy - centre[1]) / radius) ** 2  # light falls off to the rim
    image = _BACKGROUND + (canvas - _BACKGROUND) * on_wafer
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    turn = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(-1, 1) * spec.max_turn_deg), 1.0)
    image = cv2.warpAffine(image, turn, (size, size), flags=cv2.INTER_LINEAR, borderValue=_BACKGROUND)
    image += rng.normal(0.0, 2.5, image.shape).astype(np.float32)
    truth = WaferTruth(pattern, np.array([d.row for d in dies], np.int16), np.array([d.column for d in dies], np.int16),
                       classes, DIE_CLASSES)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), truth


def save_truth(truth: WaferTruth, path: Path) -> Path:
    """Write ``truth`` as the file :func:`inspection.acquire.lot.read_truth` reads."""
    np.savez_compressed(path, pattern=truth.pattern, rows=truth.rows, cols=truth.cols, classes=truth.classes,
                        class_names=np.array(truth.class_names))
    return path


def truth_map(truth: WaferTruth) -> np.ndarray:
    """The truth as a WM-811K die map indexed from the lowest row and column."""
    return die_map_of(truth.rows, truth.cols, truth.classes > 0)


def lot_patterns(wafers: int) -> list[str]:
    """The patterns of a sample lot: every pattern in turn, so a lot of 25 holds each nine-pattern class."""
    return [PATTERNS[i % len(PATTERNS)] for i in range(wafers)]


def make_lot(folder: str | Path, *, wafers: int = 25, seed: int = 0, spec: LotSpec | None = None,
             lot_id: str | None = None) -> Path:
    """Write a lot of ``wafers`` frames with their truth and manifest into ``folder``; returns the manifest."""
    spec = spec or LotSpec()
    folder = Path(folder)
    (folder / "truth").mkdir(parents=True, exist_ok=True)
    lot_id = lot_id or f"LOT{seed:04d}"
    rows = []
    for index, pattern in enumerate(lot_patterns(wafers)):
        image, truth = render_lot_wafer(spec, pattern, index, seed=seed)
        name = f"wafer-{index + 1:02d}"
        if not cv2.imwrite(str(folder / f"{name}.png"), image):
            raise OSError(f"{folder / name}.png: could not be written")
        save_truth(truth, folder / "truth" / f"{name}.npz")
        rows.append((f"{name}.png", name, lot_id, index + 1, pattern, f"truth/{name}.npz"))
    manifest = folder / MANIFEST_NAME
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    return manifest
