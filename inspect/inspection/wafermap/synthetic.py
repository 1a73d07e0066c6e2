"""Synthetic wafer maps of all nine WM-811K patterns: parametric, seeded, on wafers of any die count.

For augmentation and for a customer with no labelled maps yet. Map ``index`` of ``(pattern, seed)`` is
always the same; shapes and intensities vary from map to map as they do in a fab's data.
"""

from __future__ import annotations

import numpy as np

from inspection.wafermap.maps import FAILED, GOOD, NO_DIE, PATTERNS


def _polar(dies: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(on-wafer mask, radius in units of the wafer radius, angle in radians) per die position."""
    centre = (dies - 1) / 2
    yy, xx = np.mgrid[0:dies, 0:dies].astype(np.float64)
    radius = np.hypot(xx - centre, yy - centre) / (dies / 2)
    return radius <= 1.0, radius, np.arctan2(yy - centre, xx - centre)


def _angle_gap(angle: np.ndarray, centre: float) -> np.ndarray:
    return np.abs((angle - centre + np.pi) % (2 * np.pi) - np.pi)


def render_wafer_map(pattern: str, index: int, *, seed: int = 0, dies: int | None = None) -> np.ndarray:
    """Map ``index`` of ``pattern`` (one of PATTERNS): ``dies`` x ``dies`` positions (random 26..64 if None)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {', '.join(PATTERNS)}")
    rng = np.random.default_rng([seed, PATTERNS.index(pattern), index])
    size = int(dies if dies is not None else rng.integers(26, 65))
    if size < 8:
        raise ValueError(f"a synthetic wafer needs at least 8 dies across, got {size}")
    on_wafer, radius, angle = _polar(size)
    probability = np.full(radius.shape, rng.uniform(0.005, 0.04))  # background random failures
    if pattern == "Center":
        probability[radius < rng.uniform(0.2, 0.4)] = rng.uniform(0.7, 0.95)
    elif pattern == "Donut":
        inner = rng.uniform(0.25, 0.45)
        probability[(radius > inner) & (radius < inner + rng.uniform(0.15, 0.3))] = rng.uniform(0.7, 0.95)
    elif pattern == "Edge-Ring":
        probability[radius > rng.uniform(0.82, 0.9)] = rng.uniform(0.75, 0.98)
    elif pattern == "Edge-Loc":
        sector = _angle_gap(angle, rng.uniform(-np.pi, np.pi)) < rng.uniform(0.3, 0.8)
        probability[sector & (radius > rng.uniform(0.7, 0.82))] = rng.uniform(0.7, 0.95)
    elif pattern == "Loc":
        r, a = rng.uniform(0.2, 0.6), rng.uniform(-np.pi, np.pi)
        cx, cy = r * np.cos(a), r * np.sin(a)
        spread = rng.uniform(0.1, 0.22)
        x, y = radius * np.cos(angle), radius * np.sin(angle)
        probability = np.maximum(probability, 0.9 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * spread**2)))
    elif pattern == "Near-full":
        probability[:] = rng.uniform(0.75, 0.97)
    elif pattern == "Random":
        probability[:] = rng.uniform(0.12, 0.35)
    elif pattern == "Scratch":
        x, y = radius * np.cos(angle), radius * np.sin(angle)
        theta, offset = rng.uniform(0, np.pi), rng.uniform(-0.5, 0.5)
        along = x * np.cos(theta) + y * np.sin(theta)
        bend = rng.uniform(-0.4, 0.4) * along**2  # scratches are often slightly curved
        across = -x * np.sin(theta) + y * np.cos(theta) - offset - bend
        start = rng.uniform(-0.9, 0.1)
        length = rng.uniform(0.5, 1.0)
        line = (np.abs(across) < rng.uniform(0.6, 1.2) / size) & (along > start) & (along < start + length)
        probability[line] = rng.uniform(0.8, 1.0)
    die_map = np.where(rng.uniform(size=radius.shape) < probability, FAILED, GOOD).astype(np.uint8)
    die_map[~on_wafer] = NO_DIE
    return die_map
