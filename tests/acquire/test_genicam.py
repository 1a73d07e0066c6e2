"""The genicam adapter against the virtual cameras of the GenTL producer shipped in the genicam package."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest

from inspection.acquire import CameraError, open_camera, stream_frames
from inspection.recipe import CameraSettings

pytestmark = pytest.mark.camera


def test_streams_rgb_frames_with_counters(viky_cti: Path) -> None:
    with open_camera(f"genicam:{viky_cti}") as camera:
        frames = list(stream_frames(camera, timeout_s=3, stop=threading.Event(), max_frames=5))
    assert len(frames) == 5
    first = frames[0]
    assert first.source_id == "genicam:VikyTL_DEV_red"
    assert first.layout == "rgb" and first.image.shape == (400, 400, 3) and first.image.dtype == np.uint8
    assert first.bit_depth == 8
    counters = [f.frame_counter for f in frames]
    assert counters == sorted(counters) and len(set(counters)) == 5
    assert all(not np.shares_memory(a.image, b.image) for a, b in itertools.pairwise(frames))


def test_serial_and_pixel_format_are_applied(viky_cti: Path) -> None:
    with open_camera(f"genicam:{viky_cti}?serial=2&pixel_format=Mono8") as camera:
        frame = camera.grab(timeout_s=3)
    assert frame.source_id == "genicam:VikyTL_DEV_blue"
    assert frame.layout == "mono" and frame.image.shape == (400, 400)
    assert frame.image.min() == 0 and frame.image.max() == 255  # the virtual camera's moving black square


def test_producer_found_through_the_standard_search_path(viky_cti: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(viky_cti.parent))
    with open_camera("genicam:") as camera:
        assert camera.grab(timeout_s=3).image.shape[:2] == (400, 400)


def test_unknown_serial_lists_the_cameras_found(viky_cti: Path) -> None:
    with pytest.raises(CameraError) as error:
        open_camera(f"genicam:{viky_cti}?serial=XYZ").open()
    message = str(error.value)
    assert "no camera with serial 'XYZ'" in message
    assert "serial 0 (id VikyTL_DEV_red" in message and "serial 2 (id VikyTL_DEV_blue" in message


def test_unsupported_pixel_format_lists_what_the_device_offers(viky_cti: Path) -> None:
    offered = r"pixel format 'Mono12' is not offered by the device; it offers RGBa8, Mono8"
    with pytest.raises(CameraError, match=offered):
        open_camera(f"genicam:{viky_cti}?pixel_format=Mono12").open()


def test_a_recipe_sets_the_virtual_cameras_format_and_buffer_and_names_a_node_it_lacks(viky_cti: Path) -> None:
    camera = open_camera(f"genicam:{viky_cti}")
    camera.set_up(CameraSettings(uri=f"genicam:{viky_cti}", pixel_format="Mono8", buffer="newest-only"))
    with camera:
        frames = list(stream_frames(camera, timeout_s=3, stop=threading.Event(), max_frames=2))
    assert camera.applied == {"pixel_format": "Mono8", "buffer": "newest-only"}
    assert frames[0].layout == "mono"
    camera = open_camera(f"genicam:{viky_cti}")
    camera.set_up(CameraSettings(uri=f"genicam:{viky_cti}", exposure_us=5000))
    with pytest.raises(CameraError, match="the camera has no ExposureTime or ExposureTimeAbs node"):
        camera.open()


def test_a_feature_file_is_applied_to_a_genicam_camera_and_read_back(viky_cti: Path, tmp_path: Path) -> None:
    features = tmp_path / "station.txt"  # GenApi's feature-bag text, as pylon's .pfs files are
    features.write_text("# saved by the vendor's tool\nWidth\t320\nHeight\t240\nAcquisitionFrameRate\t12\n")
    camera = open_camera(f"genicam:{viky_cti}")
    camera.set_up(CameraSettings(uri=f"genicam:{viky_cti}", feature_file=str(features), pixel_format="Mono8"))
    with camera:
        [frame] = list(stream_frames(camera, timeout_s=3, stop=threading.Event(), max_frames=1))
    assert frame.image.shape[:2] == (240, 320)
    assert camera.applied is not None and camera.applied["feature_file"]["path"] == str(features)
    read_back = camera.applied["feature_file"]["nodes"]
    assert list(read_back) == ["Width", "Height", "AcquisitionFrameRate"]
    assert (read_back["Width"], read_back["Height"]) == ("320", "240")
    assert float(read_back["AcquisitionFrameRate"]) == 12
    features.write_text("NoSuchNode\t1\n")
    camera = open_camera(f"genicam:{viky_cti}")
    camera.set_up(CameraSettings(uri=f"genicam:{viky_cti}", feature_file=str(features)))
    with pytest.raises(CameraError, match=r"station.txt: the camera has no NoSuchNode node"):
        camera.open()


def test_a_source_without_settings_refuses_them_by_name() -> None:
    camera = open_camera("sim:wafer")
    with pytest.raises(CameraError, match=r"sim:wafer: exposure_us, gain_db cannot be set on this source"):
        camera.set_up(CameraSettings(uri="sim:wafer", exposure_us=100, gain_db=1))
    camera.set_up(CameraSettings(uri="sim:wafer"))  # nothing asked: fine
