"""``pylon:[SERIAL|emu][?pixel_format=F]``: Basler cameras through pypylon.

``pylon:emu`` opens pylon's camera emulator (setting ``PYLON_CAMEMU=1`` when it is unset), which needs no
hardware. ``pylon:`` alone opens the first camera found. Needs the ``[camera]`` extra.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from inspection.acquire.base import Camera, CameraDisconnected, CameraError, FrameTimeout
from inspection.acquire.pixels import device_spelling, pixel_format, to_image
from inspection.acquire.setup import apply_settings
from inspection.types import Frame

log = logging.getLogger("inspection.acquire")
EMULATOR_DEVICE_CLASS = "BaslerCamEmu"


class _PylonNodes:
    """pypylon's node map through :class:`inspection.acquire.setup.NodeAccess`."""

    def __init__(self, camera: Any) -> None:
        from pypylon import genicam

        self.node_map, self.genicam = camera.GetNodeMap(), genicam

    def _node(self, name: str) -> Any:
        return self.node_map.GetNode(name)

    def has(self, name: str) -> bool:
        try:
            return self.genicam.IsAvailable(self._node(name))
        except self.genicam.GenericException:
            return False

    def get(self, name: str) -> Any:
        return self._node(name).GetValue()

    def set(self, name: str, value: Any) -> None:
        self._node(name).SetValue(value)

    def symbols(self, name: str) -> tuple[str, ...]:
        return tuple(self._node(name).Symbolics)

    def get_text(self, name: str) -> str:
        return str(self._node(name).ToString())

    def set_text(self, name: str, text: str) -> None:
        self._node(name).FromString(text)

    def execute(self, name: str) -> None:
        self._node(name).Execute()


class PylonCamera(Camera):
    configurable = True

    def __init__(self, uri: str, serial: str, *, pixel_format_name: str | None) -> None:
        self.uri = uri
        self.serial = serial
        self.pixel_format_name = pixel_format_name
        self._camera: Any = None
        self._software_trigger = False
        self._format = pixel_format("Mono8")
        self._source_id = uri

    def open(self) -> None:
        if self.serial == "emu":
            os.environ.setdefault("PYLON_CAMEMU", "1")
        try:
            from pypylon import genicam, pylon
        except ImportError as exc:
            raise CameraError(f"{self.uri}: pypylon is not installed; pip install -e '.[camera]'") from exc
        factory = pylon.TlFactory.GetInstance()
        devices = list(factory.EnumerateDevices())
        found = [(d.GetSerialNumber(), d.GetModelName(), d.GetDeviceClass()) for d in devices]
        if self.serial == "emu":
            matches = [i for i, (_, _, cls) in enumerate(found) if cls == EMULATOR_DEVICE_CLASS]
        elif self.serial:
            matches = [i for i, (serial, _, _) in enumerate(found) if serial == self.serial]
        else:
            matches = list(range(len(found)))
        if not matches:
            listing = "; ".join(f"serial {s} ({m}, {c})" for s, m, c in found) or "no camera at all"
            wanted = {"emu": "emulated camera", "": "camera"}.get(self.serial, f"camera with serial {self.serial!r}")
            raise CameraError(f"{self.uri}: no {wanted}; found: {listing}")
        device = devices[matches[0]]
        self._source_id = f"pylon:{device.GetSerialNumber()}"
        try:
            self._camera = pylon.InstantCamera(factory.CreateDevice(device))
            self._camera.Open()
            node = self._camera.PixelFormat
            if self.pixel_format_name:
                node.Value = device_spelling(self.pixel_format_name, tuple(node.Symbolics))
            strategy = pylon.GrabStrategy_OneByOne
            if self.settings is not None:
                newest = self.settings.buffer == "newest-only"
                strategy = pylon.GrabStrategy_LatestImageOnly if newest else pylon.GrabStrategy_OneByOne
                node_map = self._camera.GetNodeMap()
                self.applied = apply_settings(  # the grab strategy below is the buffer; pylon loads its .pfs
                    self.settings, _PylonNodes(self._camera), uri=self.uri, set_buffer=lambda wanted: wanted,
                    load_feature_file=lambda path: pylon.FeaturePersistence.Load(path, node_map, True))
                self._software_trigger = self.settings.trigger.mode == "software"
            self._format = pixel_format(node.Value)
            self._camera.StartGrabbing(strategy)
        except ValueError as exc:
            self.close()
            raise CameraError(f"{self.uri}: {exc}") from None
        except CameraError:
            self.close()
            raise
        except genicam.GenericException as exc:
            self.close()
            raise CameraError(f"{self.uri}: cannot open {self._source_id}: {exc}") from None

    def grab(self, *, timeout_s: float) -> Frame:
        from pypylon import genicam, pylon

        if self._camera is None:
            raise CameraDisconnected(f"{self.uri}: not open")
        try:
            ready_ms = max(1, round(timeout_s * 1000))
            if self._software_trigger and self._camera.WaitForFrameTriggerReady(ready_ms, pylon.TimeoutHandling_Return):
                self._camera.ExecuteSoftwareTrigger()  # the line asks for this frame
            result = self._camera.RetrieveResult(max(1, round(timeout_s * 1000)), pylon.TimeoutHandling_Return)
        except genicam.GenericException as exc:
            raise CameraDisconnected(f"{self.uri}: grab failed: {exc}") from None
        if result is None or not result.IsValid():
            if self._camera.IsCameraDeviceRemoved():
                raise CameraDisconnected(f"{self.uri}: {self._source_id} was removed")
            raise FrameTimeout(f"{self.uri}: no frame within {timeout_s} s")
        try:
            if not result.GrabSucceeded():
                log.warning("%s: grab %d failed: %s", self.uri, result.ImageNumber, result.ErrorDescription)
                raise FrameTimeout(f"{self.uri}: grab failed")
            image = to_image(result.Array, width=result.Width, height=result.Height, fmt=self._format)
            return Frame(
                image, self._format.layout, self._format.bit_depth, self._source_id, int(result.ImageNumber),
                time.time(), device_timestamp=int(result.TimeStamp),
            )
        finally:
            result.Release()

    def close(self) -> None:
        if self._camera is not None:
            if self._camera.IsGrabbing():
                self._camera.StopGrabbing()
            self._camera.Close()
            self._camera = None
