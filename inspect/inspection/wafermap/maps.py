"""Die-level wafer maps as numpy arrays, in the WM-811K encoding: 0 no die, 1 good die, 2 failed die.

Plain functions; every check names the map's source and what was wrong, so a bad file never reaches a
classifier as a silently different map.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from inspection.types import WAFERMAP_PATTERNS, InspectionError

NO_DIE, GOOD, FAILED = 0, 1, 2
PATTERNS = WAFERMAP_PATTERNS
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


MAX_MAP_SIDE = 5000
"""Dies a side of the largest map read: a 300 mm wafer of 0.06 mm dies."""


def check_map(die_map: np.ndarray, *, source: str) -> np.ndarray:
    """A die map checked: 2-D, holds dies, only the WM-811K states.

    Parameters
    ----------
    die_map : (rows, cols) ndarray
        0 no die, 1 good, 2 failed.
    source : str
        Where the map came from (a file and index), named in errors.

    Returns
    -------
    (rows, cols) uint8 ndarray

    Raises
    ------
    WaferMapError
        Naming ``source`` and the problem.
    """
    array = np.asarray(die_map)
    if array.ndim != 2:
        raise WaferMapError(f"{source}: a wafer map is a 2-D array of die states, got shape {array.shape}")
    if array.size == 0:
        raise WaferMapError(f"{source}: empty wafer map (shape {array.shape})")
    if max(array.shape) > MAX_MAP_SIDE:
        raise WaferMapError(f"{source}: a map of {array.shape[0]} x {array.shape[1]} dies; at most {MAX_MAP_SIDE} a "
                            "side")
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
    """Good dies over all dies.

    Parameters
    ----------
    die_map : (rows, cols) ndarray
        0 no die, 1 good, 2 failed.

    Returns
    -------
    float
        In [0, 1].
    """
    dies = np.count_nonzero(die_map)
    return float(np.count_nonzero(die_map == GOOD) / dies) if dies else 0.0


@lru_cache(maxsize=4096)
def _cell_index(rows: int, cols: int, size: int) -> np.ndarray:
    """Per source die (row-major), 3 x the index of the size x size cell it falls into; a lot's maps share
    a few shapes, so this is computed once per shape."""
    cell = (np.arange(rows) * size // rows)[:, None] * size + (np.arange(cols) * size // cols)[None, :]
    return (cell * 3).ravel()


@lru_cache(maxsize=4096)
def _nearest_index(rows: int, cols: int, size: int) -> np.ndarray:
    """Per cell of a size x size grid, the row-major index of the source die under its centre."""
    row_of = np.minimum(((np.arange(size) + 0.5) * rows / size).astype(int), rows - 1)
    col_of = np.minimum(((np.arange(size) + 0.5) * cols / size).astype(int), cols - 1)
    return (row_of[:, None] * cols + col_of[None, :]).ravel()


@lru_cache(maxsize=4096)
def _fallback(rows: int, cols: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The cells of a size x size grid that no source die falls into (upsampling), and the source die under
    each one's centre, both as row-major indices."""
    empty = np.flatnonzero(np.bincount(_cell_index(rows, cols, size) // 3, minlength=size * size) == 0)
    return empty, _nearest_index(rows, cols, size)[empty]


def _cell_counts(die_map: np.ndarray, *, size: int) -> np.ndarray:
    """counts[row, col, state]: how many source dies of each state fall into each cell of a size x size grid."""
    flat = _cell_index(*die_map.shape, size) + die_map.ravel()
    return np.bincount(flat, minlength=size * size * 3).reshape(size, size, 3)


def majority_maps(maps: list[np.ndarray], *, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The maps on a ``size`` x ``size`` grid by majority vote (``resize_map``'s ``majority``), as one N x size x
    size array, and the N x 3 die counts per state of the source maps."""
    cells = size * size * 3
    # One small bincount per map into a shared int32 block stays in cache; one bincount over the batch does not.
    counts = np.empty((len(maps), cells), np.int32)
    for index, die_map in enumerate(maps):
        counts[index] = _cell_counts(die_map, size=size).ravel()
    counts = counts.reshape(len(maps), size, size, 3)
    no_die, good, failed = counts[..., NO_DIE], counts[..., GOOD], counts[..., FAILED]
    # Ties go to the higher state (failed > good > no die), so defects are not thinned away.
    states = np.where((failed >= good) & (failed >= no_die), FAILED, np.where(good >= no_die, GOOD, NO_DIE))
    states = states.astype(np.uint8).reshape(len(maps), size * size)
    for index, die_map in enumerate(maps):
        empty, source = _fallback(*die_map.shape, size)
        states[index, empty] = die_map.ravel()[source]
    states = states.reshape(len(maps), size, size)
    return states, counts.sum(axis=(1, 2))


def resize_map(die_map: np.ndarray, *, size: int, method: str = "majority") -> np.ndarray:
    """The map on a ``size`` x ``size`` grid, keeping die states (no interpolated values).

    ``nearest`` samples the source die under each cell's centre. ``majority`` gives each cell the most
    frequent state of the source dies falling into it (failed wins a tie, so defects are not thinned away);
    cells that receive no source die (upsampling) fall back to nearest.

    Parameters
    ----------
    die_map : (rows, cols) uint8 ndarray
        0 no die, 1 good, 2 failed.
    size : int
        Cells per side of the output.
    method : {"majority", "nearest"}, optional

    Returns
    -------
    (size, size) uint8 ndarray
        States 0, 1, 2.
    """
    if method not in ("nearest", "majority"):
        raise ValueError(f"resize method {method!r}; expected nearest or majority")
    if method == "nearest":
        return die_map.ravel()[_nearest_index(*die_map.shape, size)].reshape(size, size).astype(np.uint8)
    return majority_maps([die_map], size=size)[0][0]


def failure_density(die_map: np.ndarray, *, size: int) -> np.ndarray:
    """Share of failed dies among the dies falling into each cell of a ``size`` x ``size`` grid.

    A density, not a state: beside a majority-vote map it keeps thin structures such as a one-die-wide
    scratch visible after a large reduction.

    Parameters
    ----------
    die_map : (rows, cols) uint8 ndarray
        0 no die, 1 good, 2 failed.
    size : int
        Cells per side of the output.

    Returns
    -------
    (size, size) float32 ndarray
        In [0, 1]; 0 where a cell holds no die.
    """
    counts = _cell_counts(die_map, size=size).astype(np.float64)
    failed, dies = counts[:, :, FAILED], counts[:, :, GOOD] + counts[:, :, FAILED]
    return np.divide(failed, dies, out=np.zeros_like(failed), where=dies > 0)
