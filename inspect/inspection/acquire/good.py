"""A folder of good images only: what an anomaly model is trained from.

Every image must have the same size (an anomaly map's scale is the image's, so nothing is resized) and be grey
(a colour file whose three channels are equal, as some scanners write, counts as grey).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspection.acquire.folder import IMAGE_SUFFIXES, read_image
from inspection.acquire.pixels import is_grey
from inspection.types import InspectionError

__all__ = ["GoodFolderError", "GoodImages", "read_good_folder"]


class GoodFolderError(InspectionError, ValueError):
    """A good-image folder that cannot train an anomaly model; the message names the folder or file."""


@dataclass(frozen=True)
class GoodImages:
    folder: Path
    paths: tuple[Path, ...]
    images: tuple[np.ndarray, ...]
    """Grey, H x W, each of the folder's bit depth."""
    bit_depth: int

    @property
    def size_hw(self) -> tuple[int, int]:
        height, width = self.images[0].shape
        return height, width

    def content_hash(self) -> str:
        """sha256 over every image's relative path and bytes: identifies the training data."""
        digest = hashlib.sha256()
        for path in sorted(self.paths):
            digest.update(f"{path.relative_to(self.folder)}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()


def read_good_folder(folder: str | Path) -> GoodImages:
    """Read every image directly in ``folder`` (sorted by name; hidden files skipped).

    Parameters
    ----------
    folder : str or Path
        A folder of images of good parts, all the same size, grey.

    Returns
    -------
    GoodImages
        The paths, the grey images (dtype kept) and their bit depth.

    Raises
    ------
    GoodFolderError
        The folder is missing or holds no images; an image differs in size or bit depth from the first, or is
        colour. The message names the folder or the file and what was expected.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GoodFolderError(f"{folder}: not a folder of good images")
    paths = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise GoodFolderError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}); an anomaly model is trained from "
                              "a folder of good images")
    images, first_size, first_depth = [], None, None
    for path in paths:
        image, _layout, bit_depth = read_image(path)
        if not is_grey(image):
            raise GoodFolderError(f"{path}: a colour image (3 different channels); the anomaly model takes grey "
                                  "images: convert the folder to grey")
        if image.ndim == 3:
            image = np.ascontiguousarray(image[..., 0])
        if first_size is None:
            first_size, first_depth = image.shape, bit_depth
        elif image.shape != first_size or bit_depth != first_depth:
            raise GoodFolderError(
                f"{path}: {image.shape[1]}x{image.shape[0]} px, {bit_depth}-bit, but {paths[0].name} is "
                f"{first_size[1]}x{first_size[0]} px, {first_depth}-bit; every good image must have one size and "
                "bit depth (an anomaly map's scale is the image's, so nothing is resized)")
        images.append(image)
    assert first_depth is not None
    return GoodImages(folder, tuple(paths), tuple(images), first_depth)
