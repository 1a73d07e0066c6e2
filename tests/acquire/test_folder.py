from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.acquire import CameraError, FrameTimeout, SourceExhausted, open_camera, stream_frames


def test_reads_8_and_16_bit_files_of_every_format_in_name_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mono8 = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    mono16 = rng.integers(0, 4096, (40, 60), dtype=np.uint16)
    colour = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), mono8)
    cv2.imwrite(str(tmp_path / "b.tif"), mono16)
    cv2.imwrite(str(tmp_path / "c.bmp"), colour)
    cv2.imwrite(str(tmp_path / "d.jpg"), mono8)
    cv2.imwrite(str(tmp_path / "e.png"), mono16)
    (tmp_path / "notes.txt").write_text("not an image")

    with open_camera(f"folder:{tmp_path}?bit_depth=12") as camera:
        frames = list(stream_frames(camera, timeout_s=1, stop=threading.Event()))
    assert [Path(f.path).name for f in frames] == ["a.png", "b.tif", "c.bmp", "d.jpg", "e.png"]
    assert [f.frame_counter for f in frames] == [0, 1, 2, 3, 4]
    a, b, c, d, e = frames
    assert a.image.dtype == np.uint8 and a.layout == "mono" and a.bit_depth == 8
    np.testing.assert_array_equal(a.image, mono8)
    assert b.image.dtype == np.uint16 and b.bit_depth == 12
    np.testing.assert_array_equal(b.image, mono16)
    assert c.layout == "bgr" and c.image.shape == (40, 60, 3)
    np.testing.assert_array_equal(c.image, colour)
    assert d.image.shape == (40, 60) and np.abs(d.image.astype(int) - mono8).mean() < 40  # lossy JPEG
    np.testing.assert_array_equal(e.image, mono16)


def test_corrupt_file_is_skipped_and_reported(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((16, 16), i, np.uint8))
    (tmp_path / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    skipped = []
    with open_camera(f"folder:{tmp_path}") as camera:
        frames = list(stream_frames(camera, timeout_s=1, stop=threading.Event(), on_skipped=skipped.append))
    assert [Path(f.path).name for f in frames] == ["img0.png", "img2.png"]
    assert len(skipped) == 1 and skipped[0].path.endswith("img1.png")
    assert "not a decodable" in skipped[0].reason


def test_watch_takes_a_file_only_once_it_is_completely_written(tmp_path: Path) -> None:
    _, encoded = cv2.imencode(".png", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    payload = encoded.tobytes()
    target = tmp_path / "slow.png"

    def slow_writer() -> None:  # a camera PC copying over a slow network share
        with target.open("wb") as handle:
            for start in range(0, len(payload), 512):
                handle.write(payload[start : start + 512])
                handle.flush()
                time.sleep(0.05)

    camera = open_camera(f"folder:{tmp_path}?watch=1&settle_s=0.3")
    camera.open()
    writer = threading.Thread(target=slow_writer)
    writer.start()
    frame = None
    deadline = time.monotonic() + 20
    while frame is None and time.monotonic() < deadline:
        try:
            frame = camera.grab(timeout_s=0.2)
        except FrameTimeout:
            continue
    writer.join()
    assert frame is not None and frame.path == str(target)
    np.testing.assert_array_equal(frame.image, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    assert camera.take_skipped() == []
    with pytest.raises(FrameTimeout):
        camera.grab(timeout_s=0.2)  # nothing new: a timeout, never a hang
    camera.close()


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="does not exist"):
        open_camera(f"folder:{tmp_path / 'missing'}").open()
    with pytest.raises(CameraError, match=r"no image files .* add \?watch=1"):
        open_camera(f"folder:{tmp_path}").open()
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((8, 8), np.uint8))
    with open_camera(f"folder:{tmp_path}") as camera:
        camera.grab(timeout_s=1)
        with pytest.raises(SourceExhausted):
            camera.grab(timeout_s=1)
