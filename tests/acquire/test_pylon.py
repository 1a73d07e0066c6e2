"""The pylon adapter against pypylon's camera emulator (PYLON_CAMEMU)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from inspection.acquire import CameraError, FrameTimeout, open_camera, stream_frames
from inspection.recipe import CameraSettings

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


def _recipe_camera(**settings: object) -> CameraSettings:
    return CameraSettings(uri="pylon:emu", **settings)  # type: ignore[arg-type]


def test_a_recipe_sets_exposure_gain_trigger_format_and_buffer_and_reads_them_back() -> None:
    camera = open_camera("pylon:emu")
    camera.set_up(_recipe_camera(exposure_us=5000, gain_db=6.0, pixel_format="BayerRG8", buffer="newest-only",
                                 trigger={"mode": "software"}))
    with camera:
        frames = list(stream_frames(camera, timeout_s=3, stop=threading.Event(), max_frames=3))
    applied = camera.applied
    assert applied is not None
    assert applied["exposure_us"] == pytest.approx(5000) and applied["gain_db"] == pytest.approx(6.0, abs=0.05)
    assert applied["pixel_format"] == "BayerRG8" and applied["buffer"] == "newest-only"
    assert applied["trigger"] == {"mode": "software", "TriggerMode": "On", "TriggerSource": "Software"}
    # one software trigger per grab delivered every frame; the Bayer mosaic arrives demosaiced
    assert len(frames) == 3 and frames[0].layout == "bgr" and frames[0].image.shape == (1040, 1024, 3)


def test_a_hardware_trigger_is_set_on_its_line_and_edge() -> None:
    camera = open_camera("pylon:emu")
    camera.set_up(_recipe_camera(trigger={"mode": "hardware", "line": "Line2", "edge": "falling"}))
    with camera:
        assert camera.applied is not None
        assert camera.applied["trigger"] == {"mode": "hardware", "TriggerMode": "On", "TriggerSource": "Line2",
                                             "TriggerActivation": "FallingEdge"}
        with pytest.raises(FrameTimeout):  # no edge on the emulator's line: a timeout, never a hang
            camera.grab(timeout_s=0.3)


def test_a_feature_file_from_the_vendor_viewer_is_loaded_before_the_recipe_values(tmp_path: Path) -> None:
    from pypylon import pylon

    camera = open_camera("pylon:emu")
    with camera:  # the station's set-up saved as the pylon Viewer saves it
        nodes = camera._camera.GetNodeMap()
        nodes.GetNode("ExposureTime").SetValue(2500.0)
        nodes.GetNode("Gain").SetValue(3.0)
        pylon.FeaturePersistence.Save(str(tmp_path / "station.pfs"), nodes)
    camera = open_camera("pylon:emu")
    camera.set_up(_recipe_camera(feature_file=str(tmp_path / "station.pfs"), gain_db=9.0))
    with camera:
        nodes = camera._camera.GetNodeMap()
        assert nodes.GetNode("ExposureTime").GetValue() == pytest.approx(2500.0)  # from the file
        assert camera.applied is not None and camera.applied["gain_db"] == pytest.approx(9.0, abs=0.05)
        stored = camera.applied["feature_file"]  # every node the file sets, as the camera holds it after all
        names = [line.split("\t")[0] for line in (tmp_path / "station.pfs").read_text().splitlines()
                 if line and not line.startswith("#")]
        assert stored["path"] == str(tmp_path / "station.pfs") and list(stored["nodes"]) == list(dict.fromkeys(names))
        assert float(stored["nodes"]["ExposureTime"]) == pytest.approx(2500.0)
        assert float(stored["nodes"]["Gain"]) == pytest.approx(9.0, abs=0.05)  # the recipe's value won


def test_a_feature_file_that_is_not_one_is_refused_by_line(tmp_path: Path) -> None:
    (tmp_path / "bad.pfs").write_text("# header\nExposureTime\t2500\nthis is not a node line\n")
    camera = open_camera("pylon:emu")
    camera.set_up(_recipe_camera(feature_file=str(tmp_path / "bad.pfs")))
    with pytest.raises(CameraError, match=r"bad.pfs:3: 'this is not a node line' is not 'NodeName<TAB>value'"):
        camera.open()


def test_a_value_the_camera_refuses_names_the_node() -> None:
    camera = open_camera("pylon:emu")
    camera.set_up(_recipe_camera(trigger={"mode": "hardware", "line": "Line9"}))
    with pytest.raises(CameraError, match=r"TriggerSource = 'Line9' refused"):
        camera.open()
