"""Labelled image folders: ``root/<class>/*`` or ``root/{train,val,test}/<class>/*`` (torchvision's ImageFolder).

Files whose suffix is not an image suffix are ignored and counted; unreadable images are found when read
(:func:`inspection.acquire.read_image`) and skipped by the caller with a report.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspection.acquire.folder import IMAGE_SUFFIXES
from inspection.types import InspectionError

SPLITS = ("train", "val", "test")
UNSORTED = "unsorted"
"""The folder of crops no one has sorted into classes yet (``inspect labels cut``): never a class."""


class LabelledFolderError(InspectionError, ValueError):
    """A labelled folder that cannot be used; the message names the folder and the problem."""


@dataclass(frozen=True)
class LabelledImages:
    """Image paths with integer labels into ``class_names``; ``split`` names each image's split."""

    root: Path
    class_names: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray
    split: np.ndarray
    """One of "train", "val", "test" per image, or "" where the folder has no split sub-folders."""
    ignored_files: tuple[Path, ...]

    def subset(self, mask: np.ndarray) -> LabelledImages:
        index = np.flatnonzero(mask)
        return LabelledImages(self.root, self.class_names, tuple(self.paths[i] for i in index), self.labels[index],
                              self.split[index], self.ignored_files)

    def class_counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}

    def content_hash(self) -> str:
        """sha256 over every image's relative path, class and bytes: identifies the training data."""
        digest = hashlib.sha256()
        for path, label in sorted(zip(self.paths, self.labels.tolist(), strict=True)):
            digest.update(f"{path.relative_to(self.root)}\0{self.class_names[label]}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_labelled_folder(root: str | Path, *, class_names: tuple[str, ...] | None = None,
                         min_classes: int = 2) -> LabelledImages:
    """The images below ``root`` with their labels.

    ``class_names`` fixes the label order (a model's classes); the folder may then hold a subset of them,
    but no class the model does not know. Without it, classes are the sorted folder names.
    """
    root = Path(root)
    if not root.is_dir():
        raise LabelledFolderError(f"{root}: no such folder")
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    sources = [(d.name, d) for d in split_dirs] if split_dirs else [("", root)]
    found: dict[str, list[tuple[Path, str]]] = {}
    ignored: list[Path] = []
    for split, folder in sources:
        for class_dir in _class_dirs(folder):
            images = []
            for path in sorted(class_dir.rglob("*")):
                if path.is_file():
                    (images if path.suffix.lower() in IMAGE_SUFFIXES else ignored).append(path)
            if not images:
                raise LabelledFolderError(f"{class_dir}: class folder holds no image files "
                                          f"({', '.join(IMAGE_SUFFIXES)}); remove it or add images")
            if class_dir.name == UNSORTED:
                raise LabelledFolderError(f"{class_dir}: {len(images)} crop(s) not sorted yet; move each into the "
                                          f"folder of its class beside it (good: no defect), then train")
            found.setdefault(class_dir.name, []).extend((p, split) for p in images)
    if class_names is None:
        class_names = tuple(sorted(found))
        if len(class_names) < min_classes:
            raise LabelledFolderError(
                f"{root}: found {len(class_names)} class folder(s) ({', '.join(class_names) or 'none'}); "
                f"expected at least {min_classes} (layout root/<class>/*.png or root/train|val|test/<class>/*.png)"
            )
    else:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise LabelledFolderError(f"{root}: class folder(s) {', '.join(unknown)} are not among the model's "
                                      f"classes ({', '.join(class_names)})")
        if not found:
            raise LabelledFolderError(f"{root}: no class folders with images")
    paths, labels, splits = [], [], []
    for label, name in enumerate(class_names):
        for path, split in found.get(name, []):
            paths.append(path)
            labels.append(label)
            splits.append(split)
    return LabelledImages(root, tuple(class_names), tuple(paths), np.array(labels, np.int64),
                          np.array(splits, dtype="<U5"), tuple(ignored))


def stratified_split(labels: np.ndarray, *, val_fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of the validation images: ``val_fraction`` of each class (at least one), by seed."""
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue  # a single image can only train
        count = min(len(members) - 1, max(1, round(val_fraction * len(members))))
        is_val[rng.choice(members, count, replace=False)] = True
    return is_val
