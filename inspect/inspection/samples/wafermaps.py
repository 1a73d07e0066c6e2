"""Synthetic wafer maps of all nine WM-811K patterns: parametric, seeded, on wafers of any die count.

For augmentation and for a customer with no labelled maps yet. Map ``index`` of ``(pattern, seed)`` is
always the same; shapes and intensities vary from map to map as they do in a fab's data.

The parameters follow WM-811K's real maps rather than idealised drawings: every wafer carries a random
background of failed dies (none maps fail 3.5-23% of their dies there, median 15%), often with extra
failures on the outermost die ring; Random means 30-65% failed; an edge ring is one to three dies wide;
scratches are long, one die wide and often curved.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspection.wafermap.maps import FAILED, GOOD, NO_DIE, PATTERNS


def _polar(on_wafer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(x, y, radius, die width) per die position in units of the wafer radius, the wafer being the smallest
    circle around the dies of ``on_wafer`` (centred on them; non-square maps come from non-square dies)."""
    rows, cols = on_wafer.shape
    die_rows, die_cols = np.nonzero(on_wafer)
    centre_row, centre_col = die_rows.mean(), die_cols.mean()
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    # Scale rows and columns separately so a map of non-square dies is a circle again.
    reach_row = np.abs(die_rows - centre_row).max() + 0.5
    reach_col = np.abs(die_cols - centre_col).max() + 0.5
    x, y = (xx - centre_col) / reach_col, (yy - centre_row) / reach_row
    return x, y, np.hypot(x, y), 1.0 / min(reach_row, reach_col)


def _dies_from_rim(on_wafer: np.ndarray) -> np.ndarray:
    """Per position, its distance in dies to the nearest position without a die (1 for the outermost dies):
    the rim of a real die layout is a staircase, so "the outer ring" is counted in dies, not in radius."""
    padded = np.pad(on_wafer, 1).astype(np.uint8)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1].astype(np.float64)


def _angle_gap(angle: np.ndarray, centre: float) -> np.ndarray:
    return np.abs((angle - centre + np.pi) % (2 * np.pi) - np.pi)


def _soft_inside(distance: np.ndarray, softness: float) -> np.ndarray:
    """1 well inside (distance < 0), 0 well outside, a smooth edge ``softness`` wide: real clusters are fuzzy."""
    return 1.0 / (1.0 + np.exp(np.clip(distance / softness, -50, 50)))


def _pattern_probability(pattern: str, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, radius: np.ndarray,
                         die_width: float, from_rim: np.ndarray) -> np.ndarray:
    """Failure probability of the pattern itself (0 where the pattern puts nothing)."""
    angle = np.arctan2(y, x)
    peak = rng.uniform(0.75, 1.0)
    if pattern == "Center":
        cx, cy = rng.normal(0, 0.05, 2)
        return peak * _soft_inside(np.hypot(x - cx, y - cy) - rng.uniform(0.1, 0.35), rng.uniform(0.02, 0.06))
    if pattern == "Donut":
        inner, width = rng.uniform(0.15, 0.5), rng.uniform(0.1, 0.3)
        band = _soft_inside(np.abs(radius - inner - width / 2) - width / 2, 0.03)
        if rng.uniform() < 0.3:  # an open ring
            band *= _angle_gap(angle, rng.uniform(-np.pi, np.pi)) > rng.uniform(0.3, 1.0)
        return peak * band
    if pattern == "Edge-Ring":
        ring = from_rim < rng.uniform(1.5, 3.5)  # the outermost one to three dies
        if rng.uniform() < 0.4:  # part of the rim spared
            ring &= _angle_gap(angle, rng.uniform(-np.pi, np.pi)) > rng.uniform(0.2, 1.2)
        return rng.uniform(0.7, 0.98) * ring
    if pattern == "Edge-Loc":
        half_width, depth = rng.uniform(0.25, 1.0), rng.uniform(2.0, 8.0) * die_width + rng.uniform(0, 0.15)
        distance = np.maximum(_angle_gap(angle, rng.uniform(-np.pi, np.pi)) - half_width,
                              (from_rim - 0.5) * die_width - depth)
        return peak * _soft_inside(distance, 0.04)
    if pattern == "Loc":
        probability = np.zeros_like(radius)
        for _ in range(1 if rng.uniform() < 0.7 else 2):
            r, a = rng.uniform(0.25, 0.75), rng.uniform(-np.pi, np.pi)
            sx, sy, turn = rng.uniform(0.08, 0.25), rng.uniform(0.08, 0.25), rng.uniform(0, np.pi)
            u = (x - r * np.cos(a)) * np.cos(turn) + (y - r * np.sin(a)) * np.sin(turn)
            v = -(x - r * np.cos(a)) * np.sin(turn) + (y - r * np.sin(a)) * np.cos(turn)
            probability = np.maximum(probability, peak * _soft_inside(np.hypot(u / sx, v / sy) - 1, 0.25))
        return probability
    if pattern == "Near-full":
        return np.full(radius.shape, rng.uniform(0.8, 1.0))
    if pattern == "Random":
        return np.full(radius.shape, rng.uniform(0.3, 0.65))
    if pattern == "Scratch":
        line = np.zeros(radius.shape, bool)
        for _ in range(1 if rng.uniform() < 0.7 else 2):
            theta, offset = rng.uniform(0, np.pi), rng.uniform(-0.6, 0.6)
            along = x * np.cos(theta) + y * np.sin(theta)
            bend = rng.uniform(-0.6, 0.6) * along**2  # scratches are often arcs
            across = -x * np.sin(theta) + y * np.cos(theta) - offset - bend
            start = rng.uniform(-1.0, 0.3)
            width = rng.uniform(0.5, 1.3) * die_width
            line |= (np.abs(across) < width) & (along > start) & (along < start + rng.uniform(0.5, 1.5))
        return rng.uniform(0.75, 1.0) * line
    return np.zeros_like(radius)  # none: background only


def render_wafer_map(pattern: str, index: int, *, seed: int = 0, dies: int | None = None,
                     footprint: np.ndarray | None = None) -> np.ndarray:
    """Map ``index`` of ``pattern`` (one of PATTERNS).

    On ``footprint`` (a boolean array of the product's die positions) when given, else on a round wafer
    ``dies`` x ``dies`` positions across, else on one 26..64 dies across with the row/column ratio of
    rectangular dies (0.8..1.25), as WM-811K's maps come.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {', '.join(PATTERNS)}")
    rng = np.random.default_rng([seed, PATTERNS.index(pattern), index])
    if footprint is None:
        if dies is not None:
            rows = cols = int(dies)
        else:
            rows = int(rng.integers(26, 65))
            cols = round(rows * rng.uniform(0.8, 1.25))
        if min(rows, cols) < 8:
            raise ValueError(f"a synthetic wafer needs at least 8 dies across, got {min(rows, cols)}")
        yy, xx = np.mgrid[0:rows, 0:cols]
        footprint = np.hypot((xx - (cols - 1) / 2) / (cols / 2), (yy - (rows - 1) / 2) / (rows / 2)) <= 1.0
    footprint = np.asarray(footprint, bool)
    if footprint.ndim != 2 or np.count_nonzero(footprint) < 2:
        raise ValueError(f"a footprint is a 2-D boolean die array with dies, got shape {footprint.shape}")
    x, y, radius, die_width = _polar(footprint)
    from_rim = _dies_from_rim(footprint)
    # A clear pattern stands out of a quieter background than a none map may have.
    background = np.full(radius.shape, rng.uniform(0.02, 0.2) if pattern == "none" else rng.uniform(0.01, 0.14))
    if rng.uniform() < 0.5:  # partial dies at the rim fail more often
        background[from_rim < 1.5] = rng.uniform(0.1, 0.4)
    probability = np.maximum(background, _pattern_probability(pattern, rng, x, y, radius, die_width, from_rim))
    die_map = np.where(rng.uniform(size=radius.shape) < probability, FAILED, GOOD).astype(np.uint8)
    die_map[~footprint] = NO_DIE
    return die_map
