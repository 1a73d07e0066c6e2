from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.acquire import CameraError, FrameTimeout, SourceExhausted, open_camera, stream_frames
from inspection.acquire.headers import image_size_px


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


def test_a_writer_that_pauses_longer_than_settle_s_does_not_lose_its_part(tmp_path: Path) -> None:
    _, encoded = cv2.imencode(".png", np.full((32, 32), 77, np.uint8))
    payload = encoded.tobytes()
    target = tmp_path / "paused.png"
    target.write_bytes(payload[: len(payload) // 2])  # half written, then the writer stalls past settle_s
    camera = open_camera(f"folder:{tmp_path}?watch=1&settle_s=0.1")
    camera.open()

    def grab_until(seconds: float) -> object:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                return camera.grab(timeout_s=0.1)
            except FrameTimeout:
                continue
        return None

    assert grab_until(1.0) is None  # the half file is skipped, not delivered
    [skipped] = camera.take_skipped()
    assert skipped.path == str(target) and "read again if the file changes" in skipped.reason
    assert grab_until(0.5) is None and camera.take_skipped() == []  # unchanged: not read over and over
    target.write_bytes(payload)  # the writer finishes
    frame = grab_until(5.0)
    assert frame is not None and frame.path == str(target) and (frame.image == 77).all()
    camera.close()


def test_a_header_that_claims_an_absurd_size_is_skipped_before_decoding(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16), np.uint8))
    (tmp_path / "b.png").write_bytes(_png_header(60000, 60000))
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((16, 16), np.uint8))
    cv2.imwrite(str(tmp_path / "d.png"), np.zeros((64, 64), np.uint8))
    skipped = []
    with open_camera(f"folder:{tmp_path}?max_pixels=1024") as camera:
        frames = list(stream_frames(camera, timeout_s=1, stop=threading.Event(), on_skipped=skipped.append))
    assert [Path(f.path).name for f in frames] == ["a.png", "c.png"]
    assert [Path(s.path).name for s in skipped] == ["b.png", "d.png"]
    assert "states 60000 x 60000 px, more than the 1,024 px allowed" in skipped[0].reason
    assert "states 64 x 64 px" in skipped[1].reason


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_image_size_is_read_from_the_header(suffix: str) -> None:
    for image in (np.zeros((37, 53), np.uint8), np.zeros((37, 53, 3), np.uint8)):
        _, encoded = cv2.imencode(suffix, image)
        assert image_size_px(encoded.tobytes()) == (53, 37)
    assert image_size_px(b"\x89PNG\r\n\x1a\n") is None and image_size_px(b"GIF89a....") is None


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"IDAT"


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


def test_a_fifo_named_like_an_image_is_refused_at_once_wherever_an_image_is_read(tmp_path: Path) -> None:
    """A lot folder or a training folder holding a FIFO used to block its reader forever."""
    import os

    from inspection.acquire import ImageReadError, read_image

    fifo = tmp_path / "wafer-99.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match=r"wafer-99.png: cannot be read: not a regular file \(a FIFO"):
        read_image(fifo)
    with pytest.raises(ImageReadError, match=r"cannot be read: (Is a directory|not a regular file)"):
        read_image(tmp_path)
