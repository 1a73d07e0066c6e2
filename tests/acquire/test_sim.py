from __future__ import annotations

import threading
import time

import numpy as np

from inspection.acquire import open_camera, stream_frames
from inspection.sim.frames import PCB_DEFECTS, WAFER_DEFECTS, render_frame


def grab(uri: str, n: int):
    with open_camera(uri) as camera:
        return list(stream_frames(camera, timeout_s=5, stop=threading.Event(), max_frames=n))


def test_deterministic_per_seed() -> None:
    a, b, c = grab("sim:wafer?seed=7", 3), grab("sim:wafer?seed=7", 3), grab("sim:wafer?seed=8", 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
        assert x.truth == y.truth
    assert not np.array_equal(a[0].image, c[0].image)


def test_defect_rate_and_truth() -> None:
    clean = grab("sim:pcb?defect_rate=0&size=256", 5)
    assert all(f.truth == () for f in clean)
    defective = grab("sim:pcb?defect_rate=1&size=256", 5)
    assert all(1 <= len(f.truth) <= 3 for f in defective)
    for frame in defective:
        for defect in frame.truth:
            x0, y0, x1, y1 = defect.box_xyxy_px
            assert defect.kind in PCB_DEFECTS and 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256


def test_every_wafer_defect_kind_changes_pixels_inside_its_box() -> None:
    seen = set()
    for index in range(40):
        image, truth = render_frame("wafer", index, seed=3, defect_rate=1.0, noise_sigma=0)
        clean, _ = render_frame("wafer", index, seed=3, defect_rate=0.0, noise_sigma=0)
        for defect in truth:
            x0, y0, x1, y1 = defect.box_xyxy_px
            seen.add(defect.kind)
            assert np.abs(image[y0:y1, x0:x1].astype(int) - clean[y0:y1, x0:x1]).max() >= 30
    assert seen == set(WAFER_DEFECTS)


def test_bit_depth_and_pacing() -> None:
    started = time.monotonic()
    frames = grab("sim:wafer?bit_depth=12&fps=20&size=128", 5)
    assert time.monotonic() - started >= 0.19  # 5 frames at 20 fps: 4 intervals of 50 ms
    assert frames[0].image.dtype == np.uint16 and frames[0].bit_depth == 12
    assert 255 < int(frames[0].image.max()) < 4096
