"""Alignment: bring a preprocessed frame into the reference's coordinates.

Phase correlation gives the subpixel translation of a frame against its golden reference (parts on a
fixture or stage move by a few pixels between shots). Rotation, pyramids and wafer edge/notch alignment
join this module with the classical-measurement work.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspection.recipe import AlignSettings
from inspection.types import AlignedFrame, Frame


class AlignmentError(ValueError):
    """The frame could not be registered to its reference; the message says why."""


def estimate_shift(image: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, response): where ``image`` sits relative to ``reference``, in pixels, and the peak's strength.

    The response is phase correlation's normalised peak in [0, 1]; low values mean no reliable match.
    """
    if image.shape != reference.shape:
        raise AlignmentError(f"frame is {image.shape[1]}x{image.shape[0]} px but the reference is "
                             f"{reference.shape[1]}x{reference.shape[0]} px")
    window = cv2.createHanningWindow((image.shape[1], image.shape[0]), cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(reference.astype(np.float32), image.astype(np.float32), window)
    return float(dx), float(dy), float(response)


def translate(image: np.ndarray, *, dx_px: float, dy_px: float) -> np.ndarray:
    """``image`` moved by (dx, dy) with bilinear interpolation; uncovered pixels are 0."""
    matrix = np.array([[1.0, 0.0, dx_px], [0.0, 1.0, dy_px]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def align(frame: Frame, image: np.ndarray, reference: np.ndarray, *, settings: AlignSettings) -> AlignedFrame:
    """Register the preprocessed ``image`` of ``frame`` onto ``reference``."""
    if settings.method == "none":
        if image.shape != reference.shape:
            raise AlignmentError(f"frame is {image.shape[1]}x{image.shape[0]} px but the reference is "
                                 f"{reference.shape[1]}x{reference.shape[0]} px")
        return AlignedFrame(frame, image, (0.0, 0.0), 0.0, 1.0)
    dx, dy, response = estimate_shift(image, reference)
    if response < settings.min_score:
        raise AlignmentError(f"no reliable match to the reference (phase-correlation response {response:.3f} "
                             f"< min_score {settings.min_score})")
    if max(abs(dx), abs(dy)) > settings.max_shift_px:
        raise AlignmentError(f"shift ({dx:.1f}, {dy:.1f}) px exceeds max_shift_px {settings.max_shift_px}")
    return AlignedFrame(frame, translate(image, dx_px=-dx, dy_px=-dy), (dx, dy), 0.0, min(1.0, response))
