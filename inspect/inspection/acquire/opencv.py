"""``opencv:INDEX|URL[?latest=1&buffer=N]``: webcams, RTSP/HTTP streams and video files via cv2.VideoCapture.

A reader thread drains the device continuously. With ``latest=1`` it keeps only the newest frame (a live
view never lags behind the scene); otherwise it keeps up to ``buffer`` frames and then waits, so no frame
of a video file is lost.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspection.acquire.base import Camera, CameraDisconnected, CameraError, FrameTimeout, SourceExhausted
from inspection.types import Frame

_END = object()


class OpenCVCamera(Camera):
    def __init__(self, uri: str, target: str, *, latest: bool, buffer: int) -> None:
        self.uri = uri
        self.target: int | str = int(target) if target.isdigit() else target
        self.is_file = isinstance(self.target, str) and Path(self.target).is_file()
        self.latest = latest
        self._frames: queue.Queue[Any] = queue.Queue(maxsize=1 if latest else buffer)
        self._capture: cv2.VideoCapture | None = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._counter = 0

    def open(self) -> None:
        # OpenCV logs each back end it tries as a warning; a failure is said once, below, in our words.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            capture = cv2.VideoCapture(self.target)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not capture.isOpened():
            capture.release()
            what = "video file" if self.is_file else "device index" if isinstance(self.target, int) else "stream URL"
            raise CameraError(f"{self.uri}: OpenCV cannot open {what} {self.target!r}")
        self._capture = capture
        self._stop.clear()
        self._frames = queue.Queue(maxsize=self._frames.maxsize)
        self._reader = threading.Thread(target=self._read_loop, name=f"reader {self.uri}", daemon=True)
        self._reader.start()

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            if self.latest:
                with contextlib.suppress(queue.Empty):  # drop the stale frame so the newest always wins
                    self._frames.get_nowait()
            try:
                self._frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read_loop(self) -> None:
        assert self._capture is not None
        while not self._stop.is_set():
            ok, image = self._capture.read()
            if not ok:
                self._put(_END)
                return
            self._put((image, time.time()))

    def grab(self, *, timeout_s: float) -> Frame:
        try:
            item = self._frames.get(timeout=timeout_s)
        except queue.Empty:
            raise FrameTimeout(f"{self.uri}: no frame within {timeout_s} s") from None
        if item is _END:
            if self.is_file:
                raise SourceExhausted(f"{self.uri}: end of video after {self._counter} frame(s)")
            raise CameraDisconnected(f"{self.uri}: the stream stopped delivering frames")
        image, received_s = item
        layout = "mono" if image.ndim == 2 else "bgr"
        frame = Frame(np.ascontiguousarray(image), layout, 8, self.uri, self._counter, received_s)
        self._counter += 1
        return frame

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None
