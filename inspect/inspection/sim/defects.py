"""Synthetic defects drawn into good binary images, with the exact mask of what changed: the supervision an
anomaly model learns from when only good parts are available (the idea of DRAEM and CutPaste).

The shapes are generic: curved strokes of 2 to 8 px (a cut through a conductor, a bridge between two), blobs
of 2 to 12 px (stray copper, a hole), bites or bumps on an edge, and stretches of a track (or of the gap between
two) turned to the other colour along the track. None of them is a labelled defect class,
so a model trained on them has seen no real defect of any kind.

:func:`roughen_edges` draws the opposite: a nuisance that is not a defect. Boards under test are scanned with
ragged edges (DeepPCB's test images have 2 to 25% more edge pixels than their templates of the same board), so
a model that saw only clean templates would flag the raggedness.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["draw_defects", "roughen_edges"]

_MIN_CHANGED_PX = 6
"""A shape that changes fewer pixels than this (drawn where the image already has its colour) is redrawn."""


def _edge_pixels(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = cv2.morphologyEx(binary, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    return np.nonzero(edges)


def _draw_one(binary: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = binary.shape
    out = binary.copy()
    kind = rng.choice(["stroke", "blob", "edge", "segment"], p=[0.4, 0.2, 0.25, 0.15])
    if kind == "segment":
        return _segment(binary, rng)
    if kind == "edge":
        rows, columns = _edge_pixels(binary)
        if len(rows) == 0:
            return out
        index = rng.integers(len(rows))
        y, x = int(rows[index]), int(columns[index])
    else:
        y, x = int(rng.integers(height)), int(rng.integers(width))
    # Mostly the opposite of the colour where the shape starts: a cut in copper, copper where there was none.
    colour = int(1 - binary[y, x]) if rng.random() < 0.85 else int(rng.integers(2))
    if kind == "stroke":
        corners = int(rng.integers(2, 5))
        step_px = rng.uniform(8, 45) / (corners - 1)
        points, heading = [(x, y)], rng.uniform(0, 2 * np.pi)
        for _ in range(corners - 1):
            heading += rng.normal(0, 0.8)
            points.append((int(points[-1][0] + step_px * np.cos(heading)),
                           int(points[-1][1] + step_px * np.sin(heading))))
        cv2.polylines(out, [np.array(points, np.int32)], False, colour, int(rng.integers(2, 9)))
        return out
    largest_px = 13 if kind == "blob" else 9
    axes = (int(rng.integers(2, largest_px)), int(rng.integers(2, largest_px)))
    if rng.random() < 0.5:
        cv2.ellipse(out, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    else:
        n_corners = int(rng.integers(3, 7))
        radii = rng.uniform(2, max(axes) + 1, n_corners)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n_corners))
        polygon = np.c_[x + radii * np.cos(angles), y + radii * np.sin(angles)].astype(np.int32)
        cv2.fillPoly(out, [polygon], colour)
    return out


_DIRECTIONS = [(np.cos(a), np.sin(a)) for a in np.arange(8) * np.pi / 8]


def _run_px(binary: np.ndarray, x: int, y: int, dx: float, dy: float, *, limit: int = 40) -> tuple[int, int]:
    """How many pixels of (x, y)'s colour follow it along (dx, dy), and along the opposite way, up to ``limit``."""
    height, width = binary.shape
    runs = []
    for sign in (1, -1):
        run = 0
        for step in range(1, limit):
            column, row = round(x + sign * step * dx), round(y + sign * step * dy)
            if not (0 <= row < height and 0 <= column < width) or binary[row, column] != binary[y, x]:
                break
            run += 1
        runs.append(run)
    return runs[0], runs[1]


def _segment(binary: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A piece of a conductor (or of a gap between two) 10 to 60 px long turned to the other colour along its own
    direction: a missing stretch of track, or a bridge filling a gap. Its ends look like ordinary track ends,
    so only the track's course around them tells it from the design."""
    out = binary.copy()
    y, x = int(rng.integers(binary.shape[0])), int(rng.integers(binary.shape[1]))
    runs = [_run_px(binary, x, y, dx, dy) for dx, dy in _DIRECTIONS]
    along = int(np.argmax([sum(run) for run in runs]))
    forward, backward = runs[(along + 4) % 8]  # across the track (or the gap): its width, and where its middle is
    if forward + backward + 1 > 24:
        return out  # a plane, not a track: redrawn
    dx, dy = _DIRECTIONS[(along + 4) % 8]
    x_mid, y_mid = x + (forward - backward) / 2 * dx, y + (forward - backward) / 2 * dy
    dx, dy = _DIRECTIONS[along]
    half_px = rng.uniform(5, 30)
    start = (round(x_mid - half_px * dx), round(y_mid - half_px * dy))
    end = (round(x_mid + half_px * dx), round(y_mid + half_px * dy))
    cv2.line(out, start, end, int(1 - binary[y, x]), forward + backward + 3)
    return out


def draw_defects(binary: np.ndarray, n_defects: int, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_defects`` random shapes into a binary image.

    Parameters
    ----------
    binary : (H, W) uint8 array
        A good image with values 0 and 1.
    n_defects : int
        How many shapes to draw (0 returns the image unchanged).
    rng : numpy.random.Generator
        The source of randomness (seed it for a reproducible set).

    Returns
    -------
    image : (H, W) uint8 array
        The image with the shapes drawn, values 0 and 1.
    changed : (H, W) bool array
        The pixels the shapes changed: the defect mask.
    """
    image, changed = binary.copy(), np.zeros(binary.shape, bool)
    for _ in range(n_defects):
        for _attempt in range(20):
            drawn = _draw_one(image, rng)
            difference = drawn != image
            if difference.sum() >= _MIN_CHANGED_PX:
                image, changed = drawn, changed | difference
                break
    return image, changed


def roughen_edges(binary: np.ndarray, *, flip_fraction: float, rng: np.random.Generator,
                  keep: np.ndarray | None = None) -> np.ndarray:
    """Flip a random share of the pixels along every edge of a binary image: the ragged edges of a real scan.

    Parameters
    ----------
    binary : (H, W) uint8 array
        Values 0 and 1.
    flip_fraction : float
        The chance that a pixel of the 2 px band along the edges flips (0 to 1).
    rng : numpy.random.Generator
        The source of randomness.
    keep : (H, W) bool array, optional
        Pixels left as they are (a drawn defect, whose mask must stay exact).

    Returns
    -------
    (H, W) uint8 array
        The roughened image, values 0 and 1.
    """
    band = cv2.morphologyEx(binary, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    flips = band & (rng.random(binary.shape) < flip_fraction)
    if keep is not None:
        flips &= ~keep
    return binary ^ flips.astype(binary.dtype)
