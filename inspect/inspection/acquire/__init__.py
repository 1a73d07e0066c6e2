"""Acquisition: every source of frames behind one :class:`Camera` interface, opened from a URI.

- ``folder:PATH[?glob=PATTERN&watch=1&settle_s=S&bit_depth=B&max_pixels=N]``
- ``genicam:[PRODUCER.cti][?serial=S&pixel_format=F]``
- ``pylon:[SERIAL|emu][?pixel_format=F]``
- ``opencv:INDEX|URL[?latest=1&buffer=N]``
- ``sim:wafer|pcb[?fps=F&seed=S&defect_rate=R&size=N&bit_depth=B]``
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qsl

from inspection.acquire.base import (
    Backoff,
    Camera,
    CameraDisconnected,
    CameraError,
    FrameTimeout,
    SkippedInput,
    SourceExhausted,
    stream_frames,
)
from inspection.acquire.folder import ImageReadError, read_beside, read_image
from inspection.acquire.headers import MAX_IMAGE_PIXELS
from inspection.types import MAX_SIM_SIZE_PX, MIN_SIM_SIZE_PX, SIM_KINDS

__all__ = [
    "SCHEMES",
    "Backoff",
    "Camera",
    "CameraDisconnected",
    "CameraError",
    "FrameTimeout",
    "ImageReadError",
    "SkippedInput",
    "SourceExhausted",
    "open_camera",
    "read_beside",
    "read_image",
    "stream_frames",
]


MAX_URI_CHARS = 2048


def _options(uri: str, query: str, allowed: dict[str, Callable[[str], Any]]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            raise CameraError(f"{uri}: unknown option {key!r}; expected one of: {', '.join(allowed) or 'none'}")
        if key in options:
            raise CameraError(f"{uri}: option {key} is given twice; give it once")
        try:
            options[key] = allowed[key](raw)
        except ValueError:
            raise CameraError(f"{uri}: option {key}={raw!r} is not a valid {allowed[key].__name__}") from None
        if isinstance(options[key], float) and not math.isfinite(options[key]):
            raise CameraError(f"{uri}: option {key}={raw!r} must be a finite number")
    return options


def _flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_flag.__name__ = "flag (1/0)"


def _folder(uri: str, target: str, query: str) -> Camera:
    from inspection.acquire.folder import FolderCamera

    opts = _options(uri, query, {"glob": str, "watch": _flag, "settle_s": float, "bit_depth": int,
                                 "max_pixels": int})
    if not target:
        raise CameraError(f"{uri}: expected folder:PATH")
    if "glob" in opts:
        _check_glob(uri, opts["glob"])
    if opts.get("max_pixels", 1) < 1:
        raise CameraError(f"{uri}: max_pixels must be at least 1, got {opts['max_pixels']}")
    if not 0 <= opts.get("settle_s", 0.5) <= 3600:
        raise CameraError(f"{uri}: settle_s must be within 0..3600 seconds, got {opts['settle_s']}")
    if opts.get("bit_depth") is not None and not 9 <= opts["bit_depth"] <= 16:
        raise CameraError(f"{uri}: bit_depth states the significant bits of 16-bit files: 9..16, got "
                          f"{opts['bit_depth']}")
    return FolderCamera(uri, Path(target), watch=opts.get("watch", False), settle_s=opts.get("settle_s", 0.5),
                        bit_depth=opts.get("bit_depth"), glob=opts.get("glob", "*"),
                        max_pixels=opts.get("max_pixels", MAX_IMAGE_PIXELS))


def _check_glob(uri: str, pattern: str) -> None:
    """A glob that stays inside its folder and that pathlib can run: relative, no ``..``, ``**`` only as a
    whole part."""
    parts = PurePosixPath(pattern).parts
    if not pattern or len(pattern) > 200 or pattern.startswith(("/", "\\")) or ".." in parts or any(
            "**" in part and part != "**" for part in parts):
        raise CameraError(f"{uri}: glob={pattern[:60]!r}; expected a file-name pattern inside the folder, such as "
                          "*.png or lot7_*.tif (not empty, no leading /, no '..', ** only as a whole part)")


def _genicam(uri: str, target: str, query: str) -> Camera:
    from inspection.acquire.genicam import GenICamCamera

    opts = _options(uri, query, {"serial": str, "pixel_format": str})
    return GenICamCamera(uri, target, serial=opts.get("serial"), pixel_format_name=opts.get("pixel_format"))


def _pylon(uri: str, target: str, query: str) -> Camera:
    from inspection.acquire.pylon import PylonCamera

    opts = _options(uri, query, {"pixel_format": str})
    return PylonCamera(uri, target, pixel_format_name=opts.get("pixel_format"))


def _opencv(uri: str, target: str, query: str) -> Camera:
    from inspection.acquire.opencv import OpenCVCamera

    opts = _options(uri, query, {"latest": _flag, "buffer": int})
    if not target:
        raise CameraError(f"{uri}: expected opencv:INDEX (a device number) or opencv:URL (a stream or video file)")
    return OpenCVCamera(uri, target, latest=opts.get("latest", False), buffer=max(1, opts.get("buffer", 8)))


def _sim(uri: str, target: str, query: str) -> Camera:
    from inspection.acquire.sim import SimCamera

    if target not in SIM_KINDS:
        raise CameraError(f"{uri}: unknown synthetic source {target!r}; expected one of: {', '.join(SIM_KINDS)}")
    opts = _options(uri, query, {"fps": float, "seed": int, "defect_rate": float, "size": int, "bit_depth": int})
    if not 0 <= opts.get("seed", 0) < 2**32:
        raise CameraError(f"{uri}: seed must be within 0..4294967295, got {opts['seed']}")
    if not 0 <= opts.get("defect_rate", 0.3) <= 1:
        raise CameraError(f"{uri}: defect_rate must be within 0..1, got {opts['defect_rate']}")
    if opts.get("bit_depth", 8) not in (8, 10, 12, 14, 16):
        raise CameraError(f"{uri}: bit_depth must be 8, 10, 12, 14 or 16, got {opts['bit_depth']}")
    if not MIN_SIM_SIZE_PX <= opts.get("size", 512) <= MAX_SIM_SIZE_PX:
        raise CameraError(f"{uri}: size must be within {MIN_SIM_SIZE_PX}..{MAX_SIM_SIZE_PX} pixels, got "
                          f"{opts['size']}")
    if not 0 <= opts.get("fps", 0.0) <= 10_000:
        raise CameraError(f"{uri}: fps must be within 0..10000 (0: as fast as the line takes them), got {opts['fps']}")
    return SimCamera(uri, target, fps=opts.get("fps", 0.0), seed=opts.get("seed", 0),  # type: ignore[arg-type]
                     defect_rate=opts.get("defect_rate", 0.3), size_px=opts.get("size", 512),
                     bit_depth=opts.get("bit_depth", 8))


SCHEMES: dict[str, Callable[[str, str, str], Camera]] = {
    "folder": _folder,
    "genicam": _genicam,
    "pylon": _pylon,
    "opencv": _opencv,
    "sim": _sim,
}


def open_camera(uri: str) -> Camera:
    """The camera named by ``uri``, not yet opened: use it as a context manager.

    Parameters
    ----------
    uri : str
        ``folder:``, ``genicam:``, ``pylon:``, ``opencv:`` or ``sim:`` with its options (README, "Camera URIs").

    Returns
    -------
    Camera

    Raises
    ------
    CameraError
        Naming the URI and what was expected or found.
    """
    if len(uri) > MAX_URI_CHARS:
        raise CameraError(f"camera URI of {len(uri)} characters ({uri[:40]!r}...); at most {MAX_URI_CHARS}")
    if any(not char.isprintable() for char in uri):  # a NUL would end the path early in the OS
        raise CameraError(f"camera URI {uri[:60]!r}: holds a control character; expected printable text")
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme not in SCHEMES:
        stream = scheme.lower() in ("rtsp", "rtsps", "http", "https", "file") and sep
        hint = f" (a stream or video file: opencv:{uri})" if stream else (
            f" (an image folder: folder:{uri})" if not sep and Path(uri).is_dir() else "")
        raise CameraError(
            f"camera URI {uri!r}: unknown scheme {scheme if sep else '(none)'!r}; expected one of: "
            + ", ".join(f"{s}:..." for s in SCHEMES) + hint
        )
    target, _, query = rest.partition("?")
    return SCHEMES[scheme](uri, target, query)
