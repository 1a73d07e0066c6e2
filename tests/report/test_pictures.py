"""Pictures a person looks at: wafer maps and sheets of them."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.report import draw_confusion, draw_detections, draw_wafer_map, tile_pictures
from inspection.types import Verdict


def test_a_narrow_map_keeps_its_whole_title() -> None:
    die_map = np.ones((60, 8), np.uint8)
    long_title = "test.npz #7461  Scratch (1.00)  yield 92.6% of 1187 dies, a title wider than the map"
    picture = draw_wafer_map(die_map, title=long_title, cell_px=4)
    short = draw_wafer_map(die_map, title="Loc", cell_px=4)
    assert picture.shape[1] > short.shape[1] >= 360
    # The last columns carry title ink, not just the white margin.
    assert (picture[:26, -40:-4] < 128).any()


def test_tile_pictures_places_every_picture_in_a_cell_as_large_as_the_largest() -> None:
    small = np.zeros((10, 20, 3), np.uint8)
    large = np.full((30, 40, 3), 7, np.uint8)
    sheet = tile_pictures([small, large, small], columns=2)
    assert sheet.shape == (60, 80, 3)
    assert (sheet[:10, :20] == 0).all() and (sheet[:30, 40:80] == 7).all() and (sheet[30:40, :20] == 0).all()
    assert (sheet[40:, :] == 255).all() and (sheet[30:, 40:] == 255).all()
    with pytest.raises(ValueError, match="no pictures"):
        tile_pictures([], columns=2)


def test_confusion_names_every_class_in_full_and_greys_out_zeros() -> None:
    names = ("Center", "Edge-Ring", "a class name far longer than seven letters")
    confusion = np.array([[5, 0, 1], [0, 7, 0], [2, 0, 9]])
    picture = draw_confusion(confusion, class_names=names, title="truth vs graded")
    short = draw_confusion(confusion, class_names=("a", "b", "c"), title="truth vs graded")
    # Room for the whole longest name on both axes: wider (row names) and taller (upright column names).
    assert picture.shape[0] > short.shape[0] + 200 and picture.shape[1] > short.shape[1] + 200


def test_a_not_good_picture_carries_the_reason_under_its_title() -> None:
    image = np.full((120, 200), 90, np.uint8)
    plain = draw_detections(image, (), verdict=Verdict.ERROR, title="cam0 #7")
    explained = draw_detections(image, (), verdict=Verdict.ERROR, title="cam0 #7",
                                reason="register: the frame is 120x200 px, the golden 240x400 px")
    bar = plain.shape[0] - 120  # one line of text, in proportion to the frame
    assert bar >= 12 and explained.shape[0] == plain.shape[0] + bar
    # The frame itself is not covered by the bars, and the second bar holds the reason's light ink.
    assert (explained[-120:] == 90).all() and (explained[bar : 2 * bar] > 200).any()


def test_labels_grow_with_the_frame_so_a_thumbnail_stays_readable() -> None:
    from inspection.types import Detection, Region

    def ink_rows(size: int) -> int:
        image = np.zeros((size, size), np.uint8)
        box = (size // 2, size // 2, size // 2 + 10, size // 2 + 10)
        region = Region(1, 100, 100.0, box, (size / 2 + 5, size / 2 + 5), 40.0, 40.0)
        picture = draw_detections(image, (Detection("particle", 0.9, region),), verdict=Verdict.FAIL, title="t")
        frame = picture[picture.shape[0] - size:, :, 2]  # red ink of the fail colour, frame only
        rows = np.nonzero((frame > 100).any(axis=1))[0]
        return int(rows.max() - rows.min())

    assert ink_rows(2048) >= 2.5 * ink_rows(512) and ink_rows(512) >= 30  # letters scale with the frame
