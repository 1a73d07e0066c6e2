from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.acquire import open_camera, stream_frames


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A 20-frame MJPG video whose frame i has mean grey level 10*i."""
    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for i in range(20):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path


def test_video_file_delivers_every_frame_then_ends(video: Path) -> None:
    with open_camera(f"opencv:{video}") as camera:
        frames = list(stream_frames(camera, timeout_s=5, stop=threading.Event()))
    assert len(frames) == 20
    assert frames[0].layout == "bgr" and frames[0].image.shape == (48, 64, 3)
    means = [float(f.image.mean()) for f in frames]
    np.testing.assert_allclose(means, [10 * i for i in range(20)], atol=3)
    assert [f.frame_counter for f in frames] == list(range(20))


def test_latest_mode_keeps_only_the_newest_frame(video: Path) -> None:
    with open_camera(f"opencv:{video}?latest=1") as camera:
        time.sleep(1.0)  # a slow consumer: the reader thread has read the whole file meanwhile
        frames = list(stream_frames(camera, timeout_s=5, stop=threading.Event()))
    assert len(frames) <= 2, "latest=1 must drop stale frames instead of queueing them"
    assert all(f.image.mean() > 150 for f in frames)
