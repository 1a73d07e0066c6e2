from __future__ import annotations

import pytest

from inspection.acquire import CameraError, open_camera


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("webcam0", r"unknown scheme '\(none\)'; expected one of: folder:\.\.\., genicam:\.\.\., pylon:\.\.\."),
        ("usb:3", r"unknown scheme 'usb'"),
        ("sim:die", r"unknown synthetic source 'die'; expected one of: wafer, pcb"),
        ("sim:wafer?fps=fast", r"option fps='fast' is not a valid float"),
        ("sim:wafer?speed=3", r"unknown option 'speed'; expected one of: fps, seed, defect_rate, size, bit_depth"),
        ("sim:wafer?defect_rate=2", r"defect_rate must be within 0..1"),
        ("folder:/tmp?watch=maybe", r"option watch='maybe' is not a valid flag"),
        ("folder:", r"expected folder:PATH"),
        ("opencv:", r"expected opencv:INDEX"),
        ("genicam:/nowhere/producer.cti", r"GenTL producer /nowhere/producer.cti does not exist"),
        ("sim:wafer?seed=-1", r"seed must be within 0..4294967295, got -1"),
        ("folder:/tmp?watch=1&watch=0", r"option watch is given twice"),
        ("folder:/tmp?glob=", r"glob=''; expected a file-name pattern inside the folder"),
        ("folder:/tmp?glob=/etc/*", r"glob='/etc/\*'"),
        ("folder:/tmp?glob=../../../etc/host*", r"no '\.\.'"),
        ("folder:/tmp?glob=a**b", r"\*\* only as a whole part"),
        ("folder:/tmp/" + "x" * 5000, r"camera URI of 5012 characters"),
        ("folder:/tmp/a\x00b", r"holds a control character"),
    ],
)
def test_bad_uris_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(CameraError, match=message):
        open_camera(uri).open()


def test_genicam_without_producer_searches_the_standard_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(tmp_path))
    with pytest.raises(CameraError, match=r"none found in GENICAM_GENTL64_PATH="):
        open_camera("genicam:")


def test_opencv_unopenable_target() -> None:
    with pytest.raises(CameraError, match=r"OpenCV cannot open stream URL '/no/such/video.avi'"):
        open_camera("opencv:/no/such/video.avi").open()


def test_a_fifo_under_an_image_name_is_skipped_not_waited_on(tmp_path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: the line would hang forever."""
    import os

    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "f000.png"), np.zeros((16, 16), np.uint8))
    os.mkfifo(tmp_path / "f001x.png")
    with open_camera(f"folder:{tmp_path}") as camera:
        frame = camera.grab(timeout_s=1.0)
        assert frame.path is not None and frame.path.endswith("f000.png")
        [skipped] = camera.take_skipped()
        assert skipped.path.endswith("f001x.png") and "not a regular file" in skipped.reason
