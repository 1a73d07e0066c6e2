"""The fast classical wafer-map classifier: region densities, Radon-profile and geometry features in the
manner of Wu et al. (IEEE TSM 2015), and a small multilayer perceptron on them, all in numpy.

The model is one ``classical.npz`` (weights, feature standardisation, class names) beside a ``model.json``
naming it; fitting lives in ``inspection.train.wafermaps``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np

from inspection.classify import CardError
from inspection.wafermap.maps import FAILED, GOOD, majority_maps

FEATURE_VERSION = 2
"""Bumped whenever ``features`` changes meaning; a model fitted on other features is refused."""
GRID = 32
RINGS = (0.0, 0.25, 0.5, 0.7, 0.85, 1.01)
ANGLES_DEG = np.arange(0, 180, 15)
PROFILE = 16
_centre = (GRID - 1) / 2
_yy, _xx = np.mgrid[0:GRID, 0:GRID]
_radius = np.hypot(_xx - _centre, _yy - _centre) / (GRID / 2)
_sector = ((np.arctan2(_yy - _centre, _xx - _centre) + np.pi) / (2 * np.pi) * 8).astype(int) % 8
_regions = [(_radius >= lo) & (_radius < hi) for lo, hi in itertools.pairwise(RINGS)]
_regions += [(_radius >= 0.7) & (_sector == s) for s in range(8)]
_region_matrix = np.stack(_regions).reshape(len(_regions), -1).astype(np.float32)
# The Radon transform of a die map is the projection of its failed cells: each cell centre falls into one
# position bin per angle, so one matrix product (cells x (angle, position) bins) projects a whole batch.
_theta = np.deg2rad(ANGLES_DEG)
_projection_bin = np.clip(np.floor(((_xx - _centre)[..., None] * np.cos(_theta) + (_yy - _centre)[..., None]
                                    * np.sin(_theta)) + GRID / 2), 0, GRID - 1).astype(np.int64)
_projection_matrix = np.zeros((GRID * GRID, len(_theta) * GRID), np.float32)
_projection_matrix[np.arange(GRID * GRID)[:, None],
                   (_projection_bin + GRID * np.arange(len(_theta))).reshape(GRID * GRID, len(_theta))] = 1.0
_inside = (_radius <= 1).ravel()
# Linear interpolation of a GRID-long profile at PROFILE evenly spaced positions, as a matrix.
_profile_at = np.linspace(0, GRID - 1, PROFILE)
_profile_matrix = np.maximum(0.0, 1 - np.abs(np.arange(GRID)[:, None] - _profile_at[None, :]))


def radon_profiles(failed: np.ndarray, *, dies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread over the angles of the Radon transform of N x GRID*GRID failure masks, per position
    (N x PROFILE values each), normalised by each wafer's die count: rotation-invariant line and blob evidence."""
    sinogram = (failed.astype(np.float32) @ _projection_matrix).reshape(len(failed), len(_theta), GRID)
    sinogram = sinogram / np.maximum(1, dies)[:, None, None].astype(np.float64)
    return sinogram.mean(axis=1) @ _profile_matrix, sinogram.std(axis=1) @ _profile_matrix


def _geometry(failed: np.ndarray, dies: int) -> list[float]:
    """Of the largest failure cluster (after a 3x3 median): its share of the dies, distance from the centre,
    eccentricity and fill of its box; and the number of clusters / 20."""
    cleaned = cv2.medianBlur(failed.astype(np.uint8) * 255, 3) > 0
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(cleaned.astype(np.uint8), connectivity=8)
    if count == 1:
        return [0.0, 0.0, 0.0, 0.0, 0.0]
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = stats[largest, cv2.CC_STAT_AREA]
    moments = cv2.moments((labels == largest).astype(np.uint8), binaryImage=True)
    mu20, mu02, mu11 = moments["mu20"] / area, moments["mu02"] / area, moments["mu11"] / area
    spread = np.sqrt(max(0.0, (mu20 - mu02) ** 2 + 4 * mu11**2))
    major, minor = mu20 + mu02 + spread, mu20 + mu02 - spread
    cx, cy = centroids[largest]
    box = stats[largest, cv2.CC_STAT_WIDTH] * stats[largest, cv2.CC_STAT_HEIGHT]
    return [area / max(1, dies), float(np.hypot(cx - _centre, cy - _centre) / (GRID / 2)),
            float(np.sqrt(1 - minor / major)) if major > 0 else 0.0, area / box, (count - 1) / 20.0]


def feature_matrix(maps: list[np.ndarray]) -> np.ndarray:
    """N x 52 features: 13 region densities, 32 Radon-profile values, 5 geometry values, 2 global rates.

    Batched: the majority-vote resize, densities and Radon profiles are array operations over all maps; only
    the cluster geometry is computed map by map.
    """
    small, state_counts = majority_maps(maps, size=GRID)
    small = small.reshape(len(maps), GRID * GRID)
    on, failed = small > 0, small == FAILED
    dies = on.sum(axis=1)
    densities = (failed @ _region_matrix.T) / np.maximum(1, on @ _region_matrix.T)
    mean_profile, spread_profile = radon_profiles(failed & _inside, dies=dies)
    geometry = [_geometry(f.reshape(GRID, GRID), d) for f, d in zip(failed, dies, strict=True)]
    source_dies = np.maximum(1, state_counts[:, GOOD] + state_counts[:, FAILED])
    rates = np.stack([failed.sum(axis=1) / np.maximum(1, dies), state_counts[:, FAILED] / source_dies], axis=1)
    return np.concatenate([densities, mean_profile, spread_profile, np.array(geometry).reshape(-1, 5), rates],
                          axis=1).astype(np.float32)


def forward(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Class probabilities of standardised features through the two-layer perceptron."""
    hidden = np.maximum(0.0, x @ weights["w1"] + weights["b1"])
    logits = hidden @ weights["w2"] + weights["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


class ClassicalWaferMapModel:
    FILE = "classical.npz"

    def __init__(self, model_dir: str | Path) -> None:
        path = Path(model_dir) / self.FILE
        if not path.is_file():
            raise CardError(f"{model_dir}: no {self.FILE}; train one with `inspect wafermap train --classical`")
        data = np.load(path, allow_pickle=False)
        version = int(data["feature_version"]) if "feature_version" in data else 1
        if version != FEATURE_VERSION:
            raise CardError(f"{path}: fitted on wafer-map features version {version}, this release computes "
                            f"version {FEATURE_VERSION}; refit it with `inspect wafermap train --classical`")
        self.weights = {k: data[k] for k in ("w1", "b1", "w2", "b2", "mean", "std")}
        self.class_names = [str(n) for n in data["class_names"]]

    def probabilities(self, maps: list[np.ndarray], *, batch_size: int = 256) -> np.ndarray:
        x = (feature_matrix(maps) - self.weights["mean"]) / self.weights["std"]
        return forward(self.weights, x)
