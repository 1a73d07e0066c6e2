"""Training data: a labelled folder read once, prepared by the deployment code, augmented by albumentations."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from inspection.acquire import ImageReadError, read_image
from inspection.acquire.labelled import LabelledImages
from inspection.classify.card import InputSpec, Normalisation
from inspection.classify.prepare import normalise, unit_image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would otherwise ask the network
import albumentations as A

log = logging.getLogger("inspection.train")


@dataclass(frozen=True)
class PreparedImages:
    """Images at the model's input size in unit range (N x H x W [x 3] float32) with their labels."""

    units: np.ndarray
    labels: np.ndarray
    paths: tuple[Path, ...]
    """The files behind ``units`` (unreadable ones left out)."""
    skipped: tuple[str, ...]


def load_units(data: LabelledImages, *, spec: InputSpec, label: str) -> PreparedImages:
    """Read and prepare every image once (unreadable ones are skipped and listed), as the line would."""
    units, labels, paths, skipped = [], [], [], []
    for path, image_label in tqdm(zip(data.paths, data.labels.tolist(), strict=True), total=len(data.paths),
                                      desc=label, disable=None):
        try:
            image, layout, bit_depth = read_image(path)
        except ImageReadError as exc:
            log.warning("skipped %s", exc)
            skipped.append(str(exc))
            continue
        units.append(unit_image(image, layout=layout, bit_depth=bit_depth, spec=spec))
        labels.append(image_label)
        paths.append(path)
    if not units:
        raise ImageReadError(f"{data.root}: none of its {len(data.paths)} image(s) could be read")
    return PreparedImages(np.stack(units), np.asarray(labels, np.int64), tuple(paths), tuple(skipped))


def augmentation(*, flips: bool, rot90: bool, seed: int, profile: str = "camera") -> A.Compose:
    """Variation the data really shows.

    ``camera``: placement, illumination, focus and sensor noise of inspection images. ``states``: for images
    of discrete states (wafer maps): flips, 90-degree turns and any rotation about the centre with
    nearest-neighbour sampling, so no new pixel values appear.
    """
    steps: list[A.BasicTransform] = []
    if flips:
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if rot90:
        steps.append(A.RandomRotate90(p=0.5))
    if profile == "states":
        steps.append(A.Rotate(limit=180, interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT,
                              fill=0, p=0.5))
        return A.Compose(steps, seed=seed)
    steps += [
        A.Affine(translate_percent=(-0.06, 0.06), rotate=(-6, 6), scale=(0.93, 1.07), border_mode=1, p=0.6),
        A.RandomBrightnessContrast(brightness_limit=0.12, contrast_limit=0.15, p=0.7),
        A.RandomGamma(gamma_limit=(85, 115), p=0.3),
        A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 0.9), p=0.2),
        A.GaussNoise(std_range=(0.003, 0.02), p=0.4),
    ]
    return A.Compose(steps, seed=seed)


class AugmentedImages(torch.utils.data.Dataset):
    def __init__(self, prepared: PreparedImages, *, normalisation: Normalisation, augment: A.Compose | None) -> None:
        self.prepared = prepared
        self.normalisation = normalisation
        self.augment = augment

    def __len__(self) -> int:
        return len(self.prepared.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        unit = self.prepared.units[index]
        if self.augment is not None:
            unit = np.clip(self.augment(image=unit)["image"], 0.0, 1.0)
        tensor = torch.from_numpy(normalise(unit[None], normalisation=self.normalisation)[0])
        return tensor, int(self.prepared.labels[index])
