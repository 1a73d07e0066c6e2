"""``sim:wafer|pcb[?fps=F&seed=S&defect_rate=R&size=N&bit_depth=B]``: synthetic frames with known defects.

Frames come from :mod:`inspection.sim.frames` and carry their ground truth. ``fps=0`` (the default) runs
free; a positive ``fps`` paces the stream like a camera at that rate. ``bit_depth`` above 8 delivers
uint16 pixels with that many significant bits, as a 10/12/16-bit camera would.
"""

from __future__ import annotations

import time

import numpy as np

from inspection.acquire.base import Camera, FrameTimeout
from inspection.sim.frames import SimKind, golden_image, render_frame
from inspection.types import Frame


class SimCamera(Camera):
    def __init__(self, uri: str, kind: SimKind, *, fps: float, seed: int, defect_rate: float, size_px: int,
                 bit_depth: int) -> None:
        self.uri = uri
        self.kind = kind
        self.fps = fps
        self.seed = seed
        self.defect_rate = defect_rate
        self.size_px = size_px
        self.bit_depth = bit_depth
        self._index = 0
        self._started_s = 0.0

    def open(self) -> None:
        self._started_s = time.monotonic()

    def grab(self, *, timeout_s: float) -> Frame:
        if self.fps > 0:
            wait_s = self._started_s + self._index / self.fps - time.monotonic()
            if wait_s > timeout_s:
                time.sleep(timeout_s)
                raise FrameTimeout(f"{self.uri}: next frame due in {wait_s:.2f} s")
            if wait_s > 0:
                time.sleep(wait_s)
        image, truth = render_frame(
            self.kind, self._index, seed=self.seed, size_px=self.size_px, defect_rate=self.defect_rate
        )
        if self.bit_depth > 8:
            image = image.astype("uint16") << (self.bit_depth - 8)
        frame = Frame(image, "mono", self.bit_depth, self.uri, self._index, time.time(), truth=truth)
        self._index += 1
        return frame

    def close(self) -> None:
        """Nothing to release: the generator holds no device."""


def golden_frame(kind: SimKind, *, size_px: int, source: str) -> Frame:
    """The defect-free frame a simulated station's parts are drawn on: the golden of a ``sim:`` recipe.

    Parameters
    ----------
    kind : {"wafer", "pcb"}
    size_px : int
        Its side.
    source : str
        The frame's source id (the recipe's ``reference.golden``).

    Returns
    -------
    Frame
        8-bit grey.
    """
    return Frame(np.array(golden_image(kind, size_px=size_px)), "mono", 8, source, 0, 0.0)
