"""The one camera interface every source implements, and the acquisition loop around it.

A camera is opened from a URI (see :func:`inspection.acquire.open_camera`). ``grab`` waits at most its
timeout; the loop in :func:`stream_frames` turns timeouts into log lines (a missing trigger never hangs the
line), reconnects a camera that dropped out with exponential back-off, and ends when the source is exhausted
or the caller asks it to stop.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from inspection.recipe import CameraSettings
from inspection.types import Frame, InspectionError

log = logging.getLogger("inspection.acquire")


class CameraError(InspectionError, RuntimeError):
    """A camera that cannot be opened or used; the message says what was found instead."""


class FrameTimeout(CameraError):
    """No frame arrived within the fetch timeout (no trigger, or a slow exposure)."""


class CameraDisconnected(CameraError):
    """The device went away mid-stream; the acquisition loop reconnects."""


class SourceExhausted(CameraError):
    """A finite source (a folder without watch, a video file) has delivered all it has."""


@dataclass(frozen=True)
class SkippedInput:
    """An input the source could not use (an unreadable file): reported, never fatal."""

    source_id: str
    path: str
    reason: str


class Camera(ABC):
    """A source of frames. Use as a context manager, or call ``open``/``close``."""

    uri: str
    configurable = False
    """Whether the source has settings (exposure, gain, trigger, ...) that :meth:`set_up` can ask for."""
    settings: CameraSettings | None = None
    applied: dict[str, Any] | None = None
    """The settings as read back from the camera after it was opened with them."""

    def set_up(self, settings: CameraSettings) -> None:
        """Ask for ``settings`` to be applied (and read back into :attr:`applied`) when the camera is opened.

        Raises CameraError for a source that has no such settings (folders, video, the simulator), naming them.
        """
        requested = settings.requested()
        if requested and not self.configurable:
            raise CameraError(f"{self.uri}: {', '.join(requested)} cannot be set on this source; camera settings "
                              "apply to genicam: and pylon: cameras")
        self.settings = settings

    @abstractmethod
    def open(self) -> None:
        """Connect to the device and start acquisition; raises CameraError with what was found."""

    @abstractmethod
    def grab(self, *, timeout_s: float) -> Frame:
        """The next frame; raises FrameTimeout, CameraDisconnected or SourceExhausted."""

    @abstractmethod
    def close(self) -> None:
        """Stop acquisition and release the device; safe to call twice."""

    def take_skipped(self) -> list[SkippedInput]:
        """Inputs skipped since the last call (sources that can skip override this)."""
        return []

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class Backoff:
    """Reconnect delays: ``initial_s``, doubled each failure up to ``max_s``; ``max_attempts`` 0 = forever."""

    initial_s: float = 0.5
    max_s: float = 10.0
    max_attempts: int = 0

    def delays(self) -> Iterator[float]:
        delay, attempt = self.initial_s, 0
        while self.max_attempts == 0 or attempt < self.max_attempts:
            yield delay
            delay = min(delay * 2, self.max_s)
            attempt += 1


def _reconnect(camera: Camera, backoff: Backoff, stop: threading.Event) -> bool:
    camera.close()
    for attempt, delay in enumerate(backoff.delays(), start=1):
        log.warning("camera %s disconnected; reconnect attempt %d in %.1f s", camera.uri, attempt, delay)
        if stop.wait(delay):
            return False
        try:
            camera.open()
        except CameraError as exc:
            log.warning("camera %s: reconnect attempt %d failed: %s", camera.uri, attempt, exc)
            continue
        log.warning("camera %s reconnected after %d attempt(s)", camera.uri, attempt)
        return True
    log.error("camera %s: giving up after %d reconnect attempts", camera.uri, backoff.max_attempts)
    return False


STOP_POLL_S = 0.2
"""A wait for a frame is cut into grabs this long, so ``stop`` is seen within it whatever the fetch timeout."""


def stream_frames(camera: Camera, *, timeout_s: float, stop: threading.Event, max_frames: int | None = None,
                  backoff: Backoff | None = None, give_up_after_s: float | None = None,
                  on_skipped: Callable[[SkippedInput], None] | None = None,
                  on_reconnect: Callable[[], None] | None = None) -> Iterator[Frame]:
    """Frames from an opened camera until ``max_frames``, exhaustion, ``stop``, or a failed reconnect.

    A wait for a frame is logged every ``timeout_s`` and goes on; a camera that drops out is reopened with
    back-off. ``stop`` is seen within ``STOP_POLL_S`` even while the camera waits for a trigger.

    Parameters
    ----------
    camera : Camera
        Opened (inside its ``with``).
    timeout_s : float
        How long to wait for a frame before logging that none came, in seconds.
    stop : threading.Event
        Set to end the stream after the frame in hand.
    max_frames : int, optional
        Stop after this many frames.
    backoff : Backoff, optional
        Reconnect delays; default: exponential from 0.5 s.
    give_up_after_s : float, optional
        Raise FrameTimeout when no frame came for this long (default: wait as long as the line runs).
    on_skipped : callable, optional
        Called with each input the camera skipped (an unreadable file, say).
    on_reconnect : callable, optional
        Called after each successful reconnect.

    Yields
    ------
    Frame
    """
    backoff = backoff or Backoff()
    delivered = 0
    waited_s, next_log_s = 0.0, timeout_s
    while not stop.is_set() and (max_frames is None or delivered < max_frames):
        grab_s = min(timeout_s, STOP_POLL_S)
        try:
            frame = camera.grab(timeout_s=grab_s)
        except FrameTimeout:
            waited_s += grab_s
            if waited_s >= next_log_s - 1e-9:
                log.info("camera %s: no frame for %.1f s (waiting for a trigger?)", camera.uri, waited_s)
                next_log_s += timeout_s
            if give_up_after_s is not None and waited_s >= give_up_after_s - 1e-9:
                raise FrameTimeout(f"{camera.uri}: no frame within {give_up_after_s:g} s") from None
            continue
        except SourceExhausted:
            break
        except CameraDisconnected as exc:
            log.warning("camera %s: %s", camera.uri, exc)
            if not _reconnect(camera, backoff, stop):
                break
            if on_reconnect is not None:
                on_reconnect()
            continue
        finally:
            for skipped in camera.take_skipped():
                log.warning("skipped input: %s", skipped.reason)
                if on_skipped is not None:
                    on_skipped(skipped)
        waited_s, next_log_s = 0.0, timeout_s
        delivered += 1
        yield frame
