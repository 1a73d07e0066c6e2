"""``genicam:[PRODUCER.cti][?serial=S&pixel_format=F]``: any GenICam GenTL camera through harvesters.

With no producer given, the ``.cti`` files in the folders of ``GENICAM_GENTL64_PATH`` (the GenTL standard's
search path) are loaded. Needs the ``[camera]`` extra.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from inspection.acquire.base import Camera, CameraDisconnected, CameraError, FrameTimeout
from inspection.acquire.pixels import device_spelling, pixel_format, to_image
from inspection.acquire.setup import apply_settings
from inspection.types import Frame

GENTL_PATH_VARIABLE = "GENICAM_GENTL64_PATH"


def find_producers(search_path: str | None) -> list[Path]:
    """The ``.cti`` files in the folders of a GENICAM_GENTL64_PATH-style search path."""
    found: list[Path] = []
    for folder in (search_path or "").split(os.pathsep):
        if folder and Path(folder).is_dir():
            found.extend(sorted(Path(folder).glob("*.cti")))
    return found


def _shipped_producer_hint() -> str:
    try:
        import genicam
    except ImportError:
        return ""
    viky = Path(genicam.__file__).parent / "viky.cti"
    return f" (the genicam package ships a producer of virtual cameras: {viky})" if viky.is_file() else ""


class _HarvestersNodes:
    """harvesters' node map through :class:`inspection.acquire.setup.NodeAccess`."""

    def __init__(self, node_map: Any) -> None:
        self.node_map = node_map

    def has(self, name: str) -> bool:
        return hasattr(self.node_map, name)

    def get(self, name: str) -> Any:
        return getattr(self.node_map, name).value

    def set(self, name: str, value: Any) -> None:
        getattr(self.node_map, name).value = value

    def symbols(self, name: str) -> tuple[str, ...]:
        return tuple(getattr(self.node_map, name).symbolics)

    def execute(self, name: str) -> None:
        getattr(self.node_map, name).execute()

    def get_text(self, name: str) -> str:
        return str(getattr(self.node_map, name).to_string())

    def set_text(self, name: str, text: str) -> None:
        getattr(self.node_map, name).from_string(text)


class GenICamCamera(Camera):
    configurable = True

    def __init__(self, uri: str, producer: str, *, serial: str | None, pixel_format_name: str | None) -> None:
        self.uri = uri
        self.serial = serial
        self.pixel_format_name = pixel_format_name
        if producer:
            self.producers = [Path(producer)]
            if not self.producers[0].is_file():
                raise CameraError(f"{uri}: GenTL producer {producer} does not exist{_shipped_producer_hint()}")
        else:
            self.producers = find_producers(os.environ.get(GENTL_PATH_VARIABLE))
            if not self.producers:
                raise CameraError(
                    f"{uri}: no GenTL producer given and none found in {GENTL_PATH_VARIABLE}="
                    f"{os.environ.get(GENTL_PATH_VARIABLE, '(unset)')!r}; use genicam:/path/to/producer.cti"
                    f"{_shipped_producer_hint()}"
                )
        self._harvester: Any = None
        self._acquirer: Any = None
        self._software_trigger = False
        self._source_id = uri

    def open(self) -> None:
        try:
            from harvesters.core import Harvester
        except ImportError as exc:
            raise CameraError(f"{self.uri}: harvesters is not installed; pip install -e '.[camera]'") from exc
        self._harvester = Harvester()
        for producer in self.producers:
            self._harvester.add_file(str(producer), check_existence=True)
        self._harvester.update()
        devices = list(self._harvester.device_info_list)
        if not devices:
            self.close()
            raise CameraError(f"{self.uri}: producer(s) {', '.join(map(str, self.producers))} report no camera")
        found = [(str(d.serial_number), str(d.id_), str(d.model)) for d in devices]
        if self.serial is None:
            index = 0
        else:
            matches = [i for i, (serial, device_id, _) in enumerate(found) if self.serial in (serial, device_id)]
            if not matches:
                self.close()
                listing = "; ".join(f"serial {s} (id {i}, model {m})" for s, i, m in found)
                raise CameraError(f"{self.uri}: no camera with serial {self.serial!r}; found: {listing}")
            index = matches[0]
        self._source_id = f"genicam:{found[index][1]}"
        self._acquirer = self._harvester.create(index)
        try:
            if self.pixel_format_name:
                node = self._acquirer.remote_device.node_map.PixelFormat
                try:
                    node.value = device_spelling(self.pixel_format_name, tuple(node.symbolics))
                except ValueError as exc:
                    raise CameraError(f"{self.uri}: {exc}") from None
            if self.settings is not None:
                self.applied = apply_settings(self.settings, _HarvestersNodes(self._acquirer.remote_device.node_map),
                                              uri=self.uri, set_buffer=self._set_buffer)
        except CameraError:
            self.close()
            raise
        self._software_trigger = self.settings is not None and self.settings.trigger.mode == "software"
        self._acquirer.start()

    def _set_buffer(self, strategy: str) -> str:
        stream = self._acquirer.data_streams[0].node_map
        if not hasattr(stream, "StreamBufferHandlingMode"):
            if strategy == "oldest-first":
                return strategy  # the GenTL default
            raise CameraError(f"{self.uri}: the producer's stream has no StreamBufferHandlingMode node for "
                              f"buffer: {strategy}")
        stream.StreamBufferHandlingMode.value = "NewestOnly" if strategy == "newest-only" else "OldestFirst"
        return "newest-only" if stream.StreamBufferHandlingMode.value == "NewestOnly" else "oldest-first"

    def grab(self, *, timeout_s: float) -> Frame:
        from genicam.gentl import GenericException

        if self._acquirer is None:
            raise CameraDisconnected(f"{self.uri}: not open")
        try:
            if self._software_trigger:  # the line asks for this frame
                self._acquirer.remote_device.node_map.TriggerSoftware.execute()
            buffer = self._acquirer.try_fetch(timeout=timeout_s)
        except GenericException as exc:
            raise CameraDisconnected(f"{self.uri}: fetch failed: {exc}") from None
        if buffer is None:
            raise FrameTimeout(f"{self.uri}: no frame within {timeout_s} s")
        with buffer:  # leaving the block re-queues the buffer to the producer
            component = buffer.payload.components[0]
            try:
                fmt = pixel_format(component.data_format)
            except ValueError as exc:
                raise CameraError(f"{self.uri}: {exc}") from None
            image = to_image(component.data, width=component.width, height=component.height, fmt=fmt)
            return Frame(
                image, fmt.layout, fmt.bit_depth, self._source_id, int(buffer.frame_id), time.time(),
                device_timestamp=int(buffer.timestamp),
            )

    def close(self) -> None:
        if self._acquirer is not None:
            self._acquirer.stop()
            self._acquirer.destroy()
            self._acquirer = None
        if self._harvester is not None:
            self._harvester.reset()
            self._harvester = None
