from __future__ import annotations

from dataclasses import replace

import numpy as np

from inspection.align import register, warp_reference
from inspection.measure import DifferenceSettings, deviation, difference_regions, regions, tolerance_band
from inspection.recipe import AlignSettings, InspectSettings
from inspection.sim.frames import golden_image, render_frame


def test_regions_have_calibrated_features() -> None:
    deviation_map = np.zeros((50, 50), np.float32)
    deviation_map[10:20, 5:9] = 40.0  # 40 px, bright
    deviation_map[30, 30] = -50.0  # 1 px: below min_area
    found = regions(deviation_map, min_area_px=2, pixel_size_um=2.5)
    assert len(found) == 1
    region = found[0]
    assert region.area_px == 40 and region.area_um2 == 250.0
    assert region.box_xyxy_px == (5, 10, 9, 20)
    assert region.centroid_xy_px == (6.5, 14.5)
    assert region.mean_diff == 40.0 and region.max_abs_diff == 40.0


def test_band_tolerates_the_reference_and_flags_departures() -> None:
    reference = np.asarray(golden_image("pcb", size_px=128))
    band = tolerance_band(reference, band_px=1, tolerance_grey=20)
    assert not deviation(reference, band).any()
    darker = np.clip(reference.astype(np.int16) - 30, 0, 255).astype(np.uint8)
    flat = (band.upper - band.lower == 40) & (reference > 60)  # away from edges the band is just the tolerance
    assert flat.sum() > 1000
    np.testing.assert_allclose(deviation(darker, band)[flat], -10.0)


def test_edge_zone_drops_a_jittered_edge_but_keeps_the_defect_on_it() -> None:
    # A track whose left edge sits 3 px further left on the board than on the template (scan-to-scan jitter,
    # 2 px beyond the band), with a 6 x 8 px bite out of that edge: the strip must not swallow the bite.
    template = np.zeros((120, 120), np.uint8)
    template[:, 40:80] = 255
    board = template.copy()
    board[:, 37:40] = 255
    board[56:64, 40:46] = 0
    plain = DifferenceSettings(band_px=1, tolerance_grey=30, open_px=2, close_px=7, min_area_px=4)
    valid = np.ones_like(board, bool)
    [strip] = difference_regions(board, template, valid=valid, settings=plain, pixel_size_um=1.0)
    assert strip.box_xyxy_px[3] - strip.box_xyxy_px[1] == 120  # without the edge zone: one region, edge long
    for keep in ({}, {"edge_keep_min_area_px": 6, "edge_keep_max_side_px": 12}):  # the strip is not compact
        zoned = replace(plain, edge_zone_px=2, edge_open_px=3, **keep)
        [bite] = difference_regions(board, template, valid=valid, settings=zoned, pixel_size_um=1.0)
        x0, y0, x1, y1 = bite.box_xyxy_px
        assert x0 >= 40 and x1 <= 47 and y0 >= 54 and y1 <= 66, bite.box_xyxy_px


def test_a_shallow_bite_on_an_edge_is_spared_the_edge_zone_opening_when_compact() -> None:
    # A 3 px deep, 8 px long bite out of a track's edge leaves a 2 px wide deviation inside the edge zone: the
    # zone's 3 px opening removes it unless compact pieces are spared; a long one stays removed.
    template = np.zeros((120, 120), np.uint8)
    template[:, 40:80] = 255
    options = dict(valid=np.ones_like(template, bool), pixel_size_um=1.0)
    zoned = DifferenceSettings(band_px=1, tolerance_grey=30, open_px=2, close_px=7, min_area_px=4, edge_zone_px=4,
                               edge_open_px=3)
    spared = replace(zoned, edge_keep_min_area_px=6, edge_keep_max_side_px=12)
    board = template.copy()
    board[56:64, 40:43] = 0
    assert difference_regions(board, template, settings=zoned, **options) == ()
    [bite] = difference_regions(board, template, settings=spared, **options)
    x0, y0, x1, y1 = bite.box_xyxy_px
    assert x0 >= 40 and x1 <= 45 and y0 >= 55 and y1 <= 65, bite.box_xyxy_px
    long_board = template.copy()
    long_board[30:90, 40:43] = 0
    assert difference_regions(long_board, template, settings=spared, **options) == ()


def _inspect(kind: str, index: int, *, seed: int) -> tuple[set, list]:
    golden = np.asarray(golden_image(kind))
    settings = InspectSettings()
    image, truth = render_frame(kind, index, seed=seed, defect_rate=0.5)
    reference, valid = warp_reference(golden, register(image, golden, settings=AlignSettings()), margin_px=1)
    found = difference_regions(image, reference, valid=valid, pixel_size_um=5.0, settings=DifferenceSettings(
        band_px=settings.band_px, tolerance_grey=settings.tolerance_grey, min_area_px=settings.min_area_px))
    return truth, list(found)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_every_injected_defect_is_found_and_clean_frames_are_clean() -> None:
    missed, false_alarms, defects = [], [], 0
    for kind in ("wafer", "pcb"):
        for index in range(30):
            truth, found = _inspect(kind, index, seed=5)
            defects += len(truth)
            for defect in truth:
                if not any(_overlaps(defect.box_xyxy_px, r.box_xyxy_px) for r in found):
                    missed.append((kind, index, defect))
            false_alarms += [r for r in found if not any(_overlaps(d.box_xyxy_px, r.box_xyxy_px) for d in truth)]
    assert defects > 20
    assert not missed, missed
    assert not false_alarms, false_alarms


def test_regions_narrower_than_min_side_are_dropped() -> None:
    deviation_map = np.zeros((60, 60), np.int16)
    deviation_map[10:12, 5:45] = 80  # a 2 px strip, as a conductor's edge leaves it
    deviation_map[30:36, 20:26] = -90  # a 6 x 6 px defect
    deviation_map[50:51, 50:53] = 60  # 3 x 1 px
    everything = regions(deviation_map, min_area_px=1, pixel_size_um=1.0)
    assert sorted(r.box_xyxy_px for r in everything) == [(5, 10, 45, 12), (20, 30, 26, 36), (50, 50, 53, 51)]
    [kept] = regions(deviation_map, min_area_px=1, pixel_size_um=1.0, min_side_px=3)
    assert kept.box_xyxy_px == (20, 30, 26, 36) and kept.mean_diff == -90
