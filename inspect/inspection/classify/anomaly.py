"""Anomaly models on ONNX Runtime (no torch): a score for every cell of an image from a model trained on good
images only, and the regions where it is high.

The exported graph takes the whole image (N x 1 x H x W, unit range) and returns its score map
(N x 1 x H/stride x W/stride, 0..1); binarisation and the gating of scores to where the image has structure are
inside the graph, so the line runs exactly what training checked. Its card (task ``anomaly``) carries the map
stride and the threshold chosen on held-out good images (:class:`~inspection.classify.card.AnomalySettings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from inspection.acquire.pixels import is_grey
from inspection.classify.card import AnomalySettings, CardError, ModelCard
from inspection.classify.prepare import normalise, to_unit
from inspection.classify.runtime import Classifier, Device, SessionSettings
from inspection.types import InspectionError, Layout, Region

__all__ = ["THRESHOLD_GRID", "AnomalyInputError", "AnomalyModel", "anomaly_regions"]

THRESHOLD_GRID = np.r_[np.arange(0.05, 0.99, 0.01), np.arange(0.99, 0.9995, 0.001)].round(4)
"""The map thresholds a card's threshold is chosen from and evaluations sweep: fine near 1, where a model's
scores on good images end."""


class AnomalyInputError(InspectionError, ValueError):
    """An image an anomaly model cannot judge as it was trained (size, colour); the message names it."""


class AnomalyModel:
    """An exported anomaly model and its card: score maps of whole images, batched.

    Parameters
    ----------
    model_dir : str or Path
        A folder written by ``inspect train-anomaly`` (``model.onnx`` and its card ``model.json``).
    device : {"cpu", "cuda", "trt", "auto"}
        Where ONNX Runtime runs the graph.
    settings : SessionSettings, optional
        Thread and optimisation settings of the session.
    """

    def __init__(self, model_dir: str | Path, *, device: Device = "cpu", settings: SessionSettings | None = None
                 ) -> None:
        self.runtime = Classifier(model_dir, device=device, settings=settings)
        if self.runtime.card.anomaly is None:
            raise CardError(f"{model_dir}: a {self.runtime.card.task} model, not an anomaly model (its card has no "
                            "anomaly section); anomaly models are written by `inspect train-anomaly`")

    @property
    def card(self) -> ModelCard:
        return self.runtime.card

    @property
    def settings(self) -> AnomalySettings:
        assert self.card.anomaly is not None  # checked at load
        return self.card.anomaly

    def prepare(self, image: np.ndarray, *, layout: Layout, bit_depth: int, source: str) -> np.ndarray:
        """One image as the graph's input (1 x H x W float32), refused when it is not what the model was trained
        on: another size (a score map's scale is the image's; nothing is resized), or colour.

        Parameters
        ----------
        image : (H, W) or (H, W, 3) array
            The image as read, any integer dtype of ``bit_depth`` bits.
        layout : {"mono", "rgb", "bgr"}
            The image's channel layout.
        bit_depth : int
            Significant bits per pixel (the unit range is 0 .. 2**bit_depth - 1).
        source : str
            Names the image in errors (a path, a camera frame).
        """
        spec = self.card.input
        height, width = image.shape[:2]
        if (height, width) != (spec.height, spec.width):
            raise AnomalyInputError(f"{source}: {width}x{height} px, but the anomaly model {self.runtime.model_dir} "
                                    f"was trained on {spec.width}x{spec.height} px images; its map's scale is the "
                                    "image's, so nothing is resized")
        if not is_grey(image):
            raise AnomalyInputError(f"{source}: a colour image (3 different channels), but the anomaly model "
                                    f"{self.runtime.model_dir} takes {spec.channels}-channel grey images")
        unit = to_unit(image, layout=layout, bit_depth=bit_depth, channels=spec.channels)
        return normalise(unit[None], normalisation=self.card.normalisation)[0]

    def score_maps(self, batch: np.ndarray) -> np.ndarray:
        """Score maps (N x 1 x H/stride x W/stride, 0..1) of a prepared batch (N x 1 x H x W)."""
        return self.runtime.predict(batch)


def anomaly_regions(score_map: np.ndarray, *, threshold: float, stride_px: int, image_shape: Sequence[int],
                    pixel_size_um: float) -> tuple[Region, ...]:
    """The regions of a score map at or above ``threshold``, in image pixels.

    Parameters
    ----------
    score_map : (h, w) float array
        One image's map, each cell covering ``stride_px`` x ``stride_px`` image pixels.
    threshold : float
        The score from which a cell is anomalous (the card's ``anomaly.threshold`` unless a recipe tightens it).
    stride_px : int
        Image pixels per map cell along each axis.
    image_shape : (H, W)
        The image's size in pixels; boxes are kept inside it.
    pixel_size_um : float
        The station's pixel size, for the regions' areas in um^2.

    Returns
    -------
    tuple of Region
        Touching anomalous cells (8-connected) as one region each, in scan order: its box (x1, y1, x2, y2) in
        image pixels, its area (cells x stride^2), centroid and the highest score inside (``anomaly_score``).
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(
        (score_map >= threshold).astype(np.uint8), connectivity=8)
    regions = []
    for label in range(1, count):
        left, top, cells_wide, cells_high, cells = (int(v) for v in stats[label])
        box = (left * stride_px, top * stride_px, min((left + cells_wide) * stride_px, width),
               min((top + cells_high) * stride_px, height))
        centre = tuple(float((c + 0.5) * stride_px) for c in centroids[label])
        area_px = cells * stride_px * stride_px
        regions.append(Region(label, area_px, area_px * pixel_size_um ** 2, box, (centre[0], centre[1]), 0.0, 0.0,
                              anomaly_score=float(score_map[labels == label].max())))
    return tuple(regions)
