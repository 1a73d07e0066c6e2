"""Synthetic defects drawn into good binary images, with the exact mask of what changed: the supervision an
anomaly model learns from when only good parts are available (the idea of DRAEM and CutPaste).

The shapes are generic: curved strokes of 2 to 8 px (a cut through a conductor, a bridge between two), blobs
of 2 to 12 px (stray copper, a hole), and bites or bumps on an edge. None of them is a labelled defect class,
so a model trained on them has seen no real defect of any kind.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["draw_defects"]

_MIN_CHANGED_PX = 6
"""A shape that changes fewer pixels than this (drawn where the image already has its colour) is redrawn."""


def _edge_pixels(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = cv2.morphologyEx(binary, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    return np.nonzero(edges)


def _draw_one(binary: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = binary.shape
    out = binary.copy()
    kind = rng.choice(["stroke", "blob", "edge"], p=[0.45, 0.25, 0.3])
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
