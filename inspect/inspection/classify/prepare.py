"""Model inputs exactly as the card says: colour, bit-depth scaling, resize, normalisation.

Training (``inspection.train``) calls the same functions, with augmentation between ``to_unit`` and
``normalise``, so what the network sees on the line is what it saw in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from inspection.classify.card import InputSpec, ModelCard, Normalisation
from inspection.preprocess import to_gray
from inspection.types import Layout


def to_unit(image: np.ndarray, *, layout: Layout, bit_depth: int, channels: int) -> np.ndarray:
    """HxW (1 channel) or HxWx3 RGB float32 in [0, 1], scaled by the stated bit depth."""
    if channels == 1:
        pixels = to_gray(image, layout=layout)
    elif layout == "mono":
        pixels = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    else:
        pixels = image if layout == "rgb" else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return pixels.astype(np.float32) * np.float32(1.0 / ((1 << bit_depth) - 1))


def resize(image: np.ndarray, *, spec: InputSpec) -> np.ndarray:
    size = (spec.width, spec.height)
    if image.shape[1::-1] == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def normalisation_constants(normalisation: Normalisation) -> tuple[np.ndarray, np.ndarray]:
    """The card's per-channel mean and 1 / std as float32 arrays of shape (C,): what ``normalise`` subtracts and
    multiplies by (the GPU core's pre-step binds the same values)."""
    return np.asarray(normalisation.mean, np.float32), 1.0 / np.asarray(normalisation.std, np.float32)


def normalise(batch: np.ndarray, *, normalisation: Normalisation) -> np.ndarray:
    """NHWC or NHW unit-range batch -> NCHW float32 normalised by the card's mean and std (vectorised)."""
    if batch.ndim == 3:
        batch = batch[..., None]
    mean, inv_std = normalisation_constants(normalisation)
    return np.ascontiguousarray(((batch - mean) * inv_std).transpose(0, 3, 1, 2), dtype=np.float32)


def unit_image(image: np.ndarray, *, layout: Layout, bit_depth: int, spec: InputSpec) -> np.ndarray:
    """One image in the model's colour and size, unit range, before normalisation (where training augments)."""
    return resize(to_unit(image, layout=layout, bit_depth=bit_depth, channels=spec.channels), spec=spec)


def prepare_batch(images: Sequence[tuple[np.ndarray, Layout, int]], *, card: ModelCard) -> np.ndarray:
    """(image, layout, bit depth) triples -> the NCHW float32 batch the ONNX model takes."""
    units = [unit_image(image, layout=layout, bit_depth=bits, spec=card.input) for image, layout, bits in images]
    return normalise(np.stack(units), normalisation=card.normalisation)
