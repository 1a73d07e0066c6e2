"""Die-level wafer maps as numpy arrays, in the WM-811K encoding: 0 no die, 1 good die, 2 failed die.

Plain functions; every check names the map's source and what was wrong, so a bad file never reaches a
classifier as a silently different map.
"""

from __future__ import annotations

import numpy as np

from inspection.types import InspectionError

NO_DIE, GOOD, FAILED = 0, 1, 2
PATTERNS = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none")
"""The WM-811K failure patterns, in the label order of the shared data set."""

ROOT_CAUSES = {
    "Center": "spin-speed variation in CMP, or non-uniform oxidation temperature",
    "Donut": "redeposited photoresist after develop",
    "Edge-Loc": "film deposition problems at the wafer edge",
    "Edge-Ring": "etch problems (edge etch rate)",
    "Loc": "uneven cleaning",
    "Near-full": "human error or a process step gone wrong on the whole wafer",
    "Random": "airborne particles (clean-room contamination)",
    "Scratch": "agglomerated particles in CMP, or wafer handling",
    "none": "no systematic pattern",
}


class WaferMapError(InspectionError, ValueError):
    """A wafer map that breaks the encoding or its file format; the message names the source."""


def check_map(die_map: np.ndarray, *, source: str) -> np.ndarray:
    """``die_map`` as a uint8 array after checking it is 2-D, holds dies, and uses only 0/1/2."""
    array = np.asarray(die_map)
    if array.ndim != 2:
        raise WaferMapError(f"{source}: a wafer map is a 2-D array of die states, got shape {array.shape}")
    if array.size == 0:
        raise WaferMapError(f"{source}: empty wafer map (shape {array.shape})")
    if array.dtype.kind not in "iu":
        raise WaferMapError(f"{source}: die states must be integers 0/1/2, got dtype {array.dtype}")
    bad = np.setdiff1d(np.unique(array), (NO_DIE, GOOD, FAILED))
    if bad.size:
        raise WaferMapError(f"{source}: values {bad[:10].tolist()} are outside the encoding "
                            "(0 no die, 1 good, 2 failed)")
    if not (array != NO_DIE).any():
        raise WaferMapError(f"{source}: the map holds no die")
    return array.astype(np.uint8, copy=False)


def die_map_of(rows: np.ndarray, cols: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """The die map of dies at grid indices ``rows``, ``cols`` (failed where ``failed``), with map[0, 0] at the
    lowest row and column."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    die_map = np.full((int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1), NO_DIE, np.uint8)
    die_map[rows - rows.min(), cols - cols.min()] = np.where(failed, FAILED, GOOD)
    return die_map


def yield_fraction(die_map: np.ndarray) -> float:
    """Good dies / all dies."""
    dies = np.count_nonzero(die_map)
    return float(np.count_nonzero(die_map == GOOD) / dies) if dies else 0.0


def _cell_counts(die_map: np.ndarray, *, size: int) -> np.ndarray:
    """counts[row, col, state]: how many source dies of each state fall into each cell of a size x size grid."""
    rows, cols = die_map.shape
    cell = (np.arange(rows) * size // rows)[:, None] * size + (np.arange(cols) * size // cols)[None, :]
    flat = (cell * 3 + die_map).ravel()
    return np.bincount(flat, minlength=size * size * 3).reshape(size, size, 3)


def resize_map(die_map: np.ndarray, *, size: int, method: str = "majority") -> np.ndarray:
    """The map on a ``size`` x ``size`` grid, keeping die states (no interpolated values).

    ``nearest`` samples the source die under each cell's centre. ``majority`` gives each cell the most
    frequent state of the source dies falling into it (failed wins a tie, so defects are not thinned away);
    cells that receive no source die (upsampling) fall back to nearest.
    """
    if method not in ("nearest", "majority"):
        raise ValueError(f"resize method {method!r}; expected nearest or majority")
    rows, cols = die_map.shape
    row_of = np.minimum(((np.arange(size) + 0.5) * rows / size).astype(int), rows - 1)
    col_of = np.minimum(((np.arange(size) + 0.5) * cols / size).astype(int), cols - 1)
    nearest = die_map[np.ix_(row_of, col_of)]
    if method == "nearest":
        return nearest.astype(np.uint8)
    counts = _cell_counts(die_map, size=size)
    # Ties go to the higher state (failed > good > no die): reverse the state axis before argmax.
    majority = (2 - np.argmax(counts[:, :, ::-1], axis=2)).astype(np.uint8)
    return np.where(counts.sum(axis=2) > 0, majority, nearest).astype(np.uint8)


def failure_density(die_map: np.ndarray, *, size: int) -> np.ndarray:
    """Share of failed dies among the dies falling into each cell of a ``size`` x ``size`` grid (0 where none).

    A density, not a state: beside a majority-vote map it keeps thin structures such as a one-die-wide
    scratch visible after a large reduction.
    """
    counts = _cell_counts(die_map, size=size).astype(np.float64)
    failed, dies = counts[:, :, FAILED], counts[:, :, GOOD] + counts[:, :, FAILED]
    return np.divide(failed, dies, out=np.zeros_like(failed), where=dies > 0)
