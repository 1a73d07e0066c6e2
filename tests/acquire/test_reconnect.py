"""The acquisition loop: timeouts never hang, dropped cameras reconnect with back-off."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from inspection.acquire import Backoff, Camera, CameraDisconnected, CameraError, FrameTimeout, stream_frames
from inspection.acquire.base import STOP_POLL_S
from inspection.types import Frame


class FlakyCamera(Camera):
    """A camera that drops out after ``drop_after`` frames and refuses ``failed_reopens`` reconnects."""

    def __init__(self, *, drop_after: int, failed_reopens: int, timeouts: int = 0) -> None:
        self.uri = "test:flaky"
        self.drop_after, self.failed_reopens, self.timeouts = drop_after, failed_reopens, timeouts
        self.opens = 0
        self.counter = 0
        self.connected = False

    def open(self) -> None:
        self.opens += 1
        if self.opens > 1 and self.failed_reopens > 0:
            self.failed_reopens -= 1
            raise CameraError("device not found")
        self.connected = True

    def grab(self, *, timeout_s: float) -> Frame:
        if not self.connected:
            raise CameraDisconnected("not open")
        if self.timeouts:
            self.timeouts -= 1
            raise FrameTimeout("no trigger")
        if self.counter == self.drop_after:
            self.connected = False
            self.drop_after = -1
            raise CameraDisconnected("cable pulled")
        self.counter += 1
        return Frame(np.zeros((4, 4), np.uint8), "mono", 8, self.uri, self.counter, 0.0)

    def close(self) -> None:
        self.connected = False


def test_disconnect_reconnects_with_backoff_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    camera = FlakyCamera(drop_after=3, failed_reopens=2)
    camera.open()
    with caplog.at_level(logging.WARNING, logger="inspection.acquire"):
        frames = list(stream_frames(camera, timeout_s=0.1, stop=threading.Event(), max_frames=6,
                                    backoff=Backoff(initial_s=0.01, max_s=0.02)))
    assert [f.frame_counter for f in frames] == [1, 2, 3, 4, 5, 6]
    assert camera.opens == 4  # the first open, two refused reconnects, one that worked
    text = caplog.text
    assert "cable pulled" in text and "reconnect attempt 2 failed: device not found" in text
    assert "reconnected after 3 attempt(s)" in text


def test_gives_up_after_max_attempts(caplog: pytest.LogCaptureFixture) -> None:
    camera = FlakyCamera(drop_after=1, failed_reopens=10)
    camera.open()
    frames = list(stream_frames(camera, timeout_s=0.1, stop=threading.Event(),
                                backoff=Backoff(initial_s=0.01, max_attempts=3)))
    assert len(frames) == 1
    assert "giving up after 3 reconnect attempts" in caplog.text


def test_timeouts_are_logged_and_stop_is_honoured() -> None:
    camera = FlakyCamera(drop_after=-1, failed_reopens=0, timeouts=10**9)
    camera.open()
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert list(stream_frames(camera, timeout_s=0.05, stop=stop)) == []


class WaitingCamera(Camera):
    """A camera whose every grab waits out its timeout (no trigger comes); it records the timeouts it was given."""

    uri = "test:waiting"

    def __init__(self) -> None:
        self.asked_s: list[float] = []

    def open(self) -> None:
        pass

    def grab(self, *, timeout_s: float) -> Frame:
        self.asked_s.append(timeout_s)
        threading.Event().wait(timeout_s)
        raise FrameTimeout("no trigger")

    def close(self) -> None:
        pass


def test_a_long_fetch_timeout_never_delays_a_stop() -> None:
    camera, stop = WaitingCamera(), threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert list(stream_frames(camera, timeout_s=3600, stop=stop)) == []
    assert max(camera.asked_s) <= STOP_POLL_S  # each wait short enough for the stop to be seen


def test_a_camera_that_never_delivers_ends_a_bounded_wait_by_name() -> None:
    with pytest.raises(FrameTimeout, match=r"test:waiting: no frame within 0.5 s"):
        list(stream_frames(WaitingCamera(), timeout_s=0.5, stop=threading.Event(), give_up_after_s=0.5))
