"""The pylon adapter against pypylon's camera emulator (PYLON_CAMEMU)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from inspection.acquire import CameraError, open_camera, stream_frames

pytestmark = pytest.mark.camera


@pytest.fixture(autouse=True)
def two_emulated_cameras(pylon_emulator: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYLON_CAMEMU", "2")


@pytest.mark.parametrize(
    ("pixel_format", "dtype", "layout", "bit_depth"),
    [
        ("Mono8", np.uint8, "mono", 8),
        ("Mono10", np.uint16, "mono", 10),
        ("Mono12", np.uint16, "mono", 12),
        ("Mono16", np.uint16, "mono", 16),
        ("RGB8", np.uint8, "rgb", 8),
        ("BGR8", np.uint8, "bgr", 8),
    ],
)
def test_pixel_formats_keep_dtype_layout_and_bit_depth(pixel_format: str, dtype: type, layout: str,
                                                       bit_depth: int) -> None:
    with open_camera(f"pylon:emu?pixel_format={pixel_format}") as camera:
        frames = list(stream_frames(camera, timeout_s=3, stop=threading.Event(), max_frames=3))
    frame = frames[-1]
    assert frame.image.dtype == dtype and frame.layout == layout and frame.bit_depth == bit_depth
    assert frame.image.shape[:2] == (1040, 1024)
    assert frame.image.ndim == (2 if layout == "mono" else 3)
    assert int(frame.image.max()) < 2**bit_depth
    if bit_depth > 8:
        assert int(frame.image.max()) > 255, "high-bit data must not be rescaled to 8 bits"
    assert [f.frame_counter for f in frames] == [1, 2, 3]


def test_serial_selects_the_camera() -> None:
    with open_camera("pylon:0815-0001") as camera:
        assert camera.grab(timeout_s=3).source_id == "pylon:0815-0001"


def test_unknown_serial_lists_the_cameras_found() -> None:
    with pytest.raises(CameraError) as error:
        open_camera("pylon:1234-5678").open()
    message = str(error.value)
    assert "no camera with serial '1234-5678'" in message
    assert "serial 0815-0000 (Emulation, BaslerCamEmu)" in message and "serial 0815-0001" in message
