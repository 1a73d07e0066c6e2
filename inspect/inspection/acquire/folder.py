"""``folder:PATH[?glob=PATTERN&watch=1&settle_s=0.5&bit_depth=N&max_pixels=N]``: image files in name order (those
whose name matches ``glob``, default all), optionally watched for new ones.

In watch mode a file is taken only once its size and modification time have stayed the same for
``settle_s`` seconds, so a file still being written (by a camera PC copying over the network, say) is never
read half-finished. A file that cannot be decoded (or whose header states more than ``max_pixels``) is
reported and skipped; it never stops the line. In watch mode a skipped file is read again once it changes:
a writer that paused longer than ``settle_s`` does not lose its part.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import cv2
import numpy as np

from inspection.acquire.base import Camera, CameraError, FrameTimeout, SkippedInput, SourceExhausted
from inspection.acquire.headers import MAX_IMAGE_PIXELS, image_size_px
from inspection.types import Frame, InspectionError, Layout

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
_POLL_S = 0.05


class ImageReadError(InspectionError, ValueError):
    """A file that is not a readable 8/16-bit image."""


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file. A FIFO, device or folder is refused at once (an OSError) instead of being read:
    a FIFO named like an image would block its reader forever."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or folder)", str(path))
        with os.fdopen(os.dup(descriptor), "rb") as handle:
            return handle.read()
    finally:
        os.close(descriptor)


def read_image(path: str | Path, *, bit_depth: int | None = None,
               max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, Layout, int]:
    """Decode an image file, keeping its dtype (8 or 16 bit).

    Colour files come back as BGR (OpenCV's order) and say so; a fourth (alpha) channel is dropped.

    Parameters
    ----------
    path : str or Path
        A PNG, TIFF, BMP or JPEG file.
    bit_depth : int, optional
        The significant bits of 16-bit files (e.g. 12 for a 12-bit camera's PNGs); 8-bit files are always
        8-bit.
    max_pixels : int, optional
        A file whose header states more pixels is refused before it is decoded.

    Returns
    -------
    pixels : (H, W) or (H, W, 3) ndarray
        uint8 or uint16.
    layout : {"mono", "bgr"}
    bit_depth : int

    Raises
    ------
    ImageReadError
        Naming the file and what was wrong (unreadable, too large, not an image, pixel type, channels, bit
        depth).
    """
    path = Path(path)
    try:
        encoded = np.frombuffer(read_regular_file(path), np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    size = image_size_px(encoded[:65536].tobytes())
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageReadError(f"{path}: its header states {size[0]} x {size[1]} px, more than the {max_pixels:,} px "
                             "allowed (max_pixels)")
    try:
        image = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
    except cv2.error as exc:  # OpenCV's own limits and decoder failures, as assertions
        raise ImageReadError(f"{path}: cannot be decoded: {str(exc).strip().splitlines()[-1]}") from None
    if image is None:
        raise ImageReadError(f"{path}: not a decodable PNG/TIFF/BMP/JPEG image ({encoded.size} bytes)")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: pixel type {image.dtype} is not supported; expected 8 or 16-bit integers")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    layout: Layout = "mono"
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):
            raise ImageReadError(f"{path}: {image.shape[2]} channels; expected 1, 3 or 4")
        image, layout = np.ascontiguousarray(image[:, :, :3]), "bgr"
    if image.dtype == np.uint8:
        return image, layout, 8
    if bit_depth is not None and not 9 <= bit_depth <= 16:
        raise ImageReadError(f"{path}: bit_depth {bit_depth} does not fit 16-bit pixels (expected 9..16)")
    return image, layout, bit_depth or 16


class FolderCamera(Camera):
    def __init__(self, uri: str, folder: Path, *, watch: bool, settle_s: float, bit_depth: int | None,
                 glob: str = "*", max_pixels: int = MAX_IMAGE_PIXELS) -> None:
        self.uri = uri
        self.folder = folder
        self.glob = glob
        self.watch = watch
        self.settle_s = settle_s
        self.bit_depth = bit_depth
        self.max_pixels = max_pixels
        self._seen: set[Path] = set()
        self._failed: dict[Path, tuple[int, int]] = {}
        """Files skipped in watch mode, with their (size, mtime) then: read again once that changes."""
        self._pending: list[Path] = []
        self._signatures: dict[Path, tuple[int, int]] = {}
        self._skipped: list[SkippedInput] = []
        self._counter = 0

    def open(self) -> None:
        if self.folder.is_file():
            raise CameraError(f"{self.uri}: {self.folder} is a file; a folder camera reads the image files of a folder")
        if not self.folder.is_dir():
            raise CameraError(f"{self.uri}: folder {self.folder} does not exist")
        if not self.watch:
            self._pending = sorted(self._candidates())
            if not self._pending:
                raise CameraError(
                    f"{self.uri}: no image files ({', '.join(IMAGE_SUFFIXES)}) matching {self.glob!r} in "
                    f"{self.folder}; "
                    "add ?watch=1 to wait for new ones"
                )

    def _candidates(self) -> list[Path]:
        """Image files not taken yet. Anything else under an image's name (a FIFO, which would block its reader
        forever, a device, a folder) is skipped once as an event."""
        found = []
        for path in self.folder.glob(self.glob):
            if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith(".") or path in self._seen:
                continue
            try:
                regular = stat.S_ISREG(path.stat().st_mode)
            except OSError:  # gone meanwhile, or a dangling link
                continue
            if not regular:
                self._seen.add(path)
                self._skipped.append(SkippedInput(self.uri, str(path), f"{path}: not a regular file (a FIFO, device "
                                                                       "or folder)"))
                continue
            found.append(path)
        return found

    def _settled(self) -> list[Path]:
        """New files that are complete: not empty, unchanged since the previous poll and untouched for settle_s."""
        ready = []
        for path in self._candidates():
            try:
                status = path.stat()
            except FileNotFoundError:
                continue
            signature = (status.st_size, status.st_mtime_ns)
            if self._failed.get(path) == signature:
                continue
            unchanged = self._signatures.get(path) == signature
            self._signatures[path] = signature
            if unchanged and status.st_size > 0 and time.time() - status.st_mtime >= self.settle_s:
                ready.append(path)
        return sorted(ready)

    def grab(self, *, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._pending and self.watch:
                self._pending = self._settled()
            if not self._pending:
                if not self.watch:
                    raise SourceExhausted(f"{self.uri}: all {self._counter} image(s) delivered")
                if time.monotonic() >= deadline:
                    raise FrameTimeout(f"{self.uri}: no new complete file within {timeout_s} s")
                time.sleep(_POLL_S)
                continue
            path = self._pending.pop(0)
            signature = self._signatures.pop(path, None)
            try:
                image, layout, bits = read_image(path, bit_depth=self.bit_depth, max_pixels=self.max_pixels)
            except ImageReadError as exc:
                retry = self.watch and signature is not None
                self._skipped.append(SkippedInput(self.uri, str(path), str(exc) + (
                    "; read again if the file changes" if retry else "")))
                if retry:
                    self._failed[path] = signature
                else:
                    self._seen.add(path)
                continue
            self._seen.add(path)
            self._failed.pop(path, None)
            frame = Frame(image, layout, bits, self.uri, self._counter, time.time(), path=str(path))
            self._counter += 1
            return frame

    def take_skipped(self) -> list[SkippedInput]:
        skipped, self._skipped = self._skipped, []
        return skipped

    def close(self) -> None:
        self._pending = []


def read_beside(frame: Frame, *, test: str, template: str) -> Frame:
    """The golden of a frame read from a file: the file beside it with ``test`` in its name replaced by ``template``.

    ``00041000_test.jpg`` -> ``00041000_temp.jpg``, read as a frame of the same source.

    Parameters
    ----------
    frame : Frame
        A frame of a file source (``frame.path`` set).
    test, template : str
        The parts of the file names that differ (the recipe's ``reference.beside``).

    Returns
    -------
    Frame

    Raises
    ------
    ImageReadError
        When the frame has no file, its name lacks ``test``, or the template cannot be read.
    """
    if frame.path is None:
        raise ImageReadError(f"frame {frame.frame_counter} of {frame.source_id} has no file, so no golden beside it "
                             "(reference.beside needs a folder camera)")
    path = Path(frame.path)
    if test not in path.name:
        raise ImageReadError(f"{path}: its name has no {test!r} to replace by {template!r} (reference.beside)")
    golden = path.with_name(path.name.replace(test, template))
    image, layout, bits = read_image(golden)
    return Frame(image, layout, bits, frame.source_id, frame.frame_counter, frame.timestamp_s, path=str(golden))
