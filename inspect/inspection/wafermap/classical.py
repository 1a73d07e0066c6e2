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
from inspection.wafermap.maps import FAILED, resize_map

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
# position bin per angle, so a bincount replaces rotating the picture once per angle.
_theta = np.deg2rad(ANGLES_DEG)
_projection_bin = np.clip(np.floor(((_xx - _centre)[..., None] * np.cos(_theta) + (_yy - _centre)[..., None]
                                    * np.sin(_theta)) + GRID / 2), 0, GRID - 1).astype(np.int64)
_projection_index = (_projection_bin + GRID * np.arange(len(_theta))).reshape(GRID * GRID, len(_theta))


def radon_profiles(failed: np.ndarray, *, dies: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread over the angles of the Radon transform of a GRID x GRID failure mask, per position
    (PROFILE values each), normalised by the wafer's die count: rotation-invariant line and blob evidence."""
    cells = np.flatnonzero(failed.ravel())
    sinogram = np.bincount(_projection_index[cells].ravel(), minlength=GRID * len(_theta))
    sinogram = sinogram.reshape(len(_theta), GRID).T / max(1, dies)
    grid = np.linspace(0, GRID - 1, PROFILE)
    positions = np.arange(GRID)
    return np.interp(grid, positions, sinogram.mean(axis=1)), np.interp(grid, positions, sinogram.std(axis=1))


def features(die_map: np.ndarray) -> np.ndarray:
    """52 features: 13 region densities, 32 Radon-profile values, 5 geometry values, 2 global rates."""
    small = resize_map(die_map, size=GRID, method="majority")
    on, failed = small > 0, (small == FAILED)
    densities = (_region_matrix @ failed.ravel()) / np.maximum(1, _region_matrix @ on.ravel())
    profiles = radon_profiles(failed & (_radius <= 1), dies=int(on.sum()))
    cleaned = cv2.medianBlur(failed.astype(np.uint8) * 255, 3) > 0
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(cleaned.astype(np.uint8), connectivity=8)
    geometry = [0.0, 0.0, 0.0, 0.0, (count - 1) / 20.0]
    if count > 1:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = stats[largest, cv2.CC_STAT_AREA]
        moments = cv2.moments((labels == largest).astype(np.uint8), binaryImage=True)
        mu20, mu02, mu11 = moments["mu20"] / area, moments["mu02"] / area, moments["mu11"] / area
        spread = np.sqrt(max(0.0, (mu20 - mu02) ** 2 + 4 * mu11**2))
        major, minor = mu20 + mu02 + spread, mu20 + mu02 - spread
        cx, cy = centroids[largest]
        box = stats[largest, cv2.CC_STAT_WIDTH] * stats[largest, cv2.CC_STAT_HEIGHT]
        geometry = [area / max(1, on.sum()), float(np.hypot(cx - _centre, cy - _centre) / (GRID / 2)),
                    float(np.sqrt(1 - minor / major)) if major > 0 else 0.0, area / box, (count - 1) / 20.0]
    rates = [float(failed.sum() / max(1, on.sum())), float((die_map == FAILED).sum() / max(1, (die_map > 0).sum()))]
    return np.concatenate([densities, *profiles, geometry, rates]).astype(np.float32)


def feature_matrix(maps: list[np.ndarray]) -> np.ndarray:
    return np.stack([features(m) for m in maps])


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
