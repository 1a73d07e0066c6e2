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
