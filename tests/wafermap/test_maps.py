from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.report.maps import write_e142, write_npz, write_sinf
from inspection.samples.wafermaps import render_wafer_map
from inspection.wafermap import (
    FAILED,
    GOOD,
    PATTERNS,
    ROOT_CAUSES,
    MapSet,
    WaferMapError,
    check_map,
    failure_density,
    read_e142,
    read_npz,
    read_sinf,
    resize_map,
    yield_fraction,
)
from inspection.wafermap.classical import feature_matrix, radon_profiles
from inspection.wafermap.maps import majority_maps
from tests.conftest import REPO_ROOT, run_cli

WM811K = REPO_ROOT.parent / "shared" / "data" / "wm811k" / "wm811k_dev.npz"
SMALL = np.array([[0, 1, 1, 0], [1, 2, 1, 1], [1, 1, 2, 1], [0, 1, 1, 0]], np.uint8)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((3, 3, 2), np.uint8), r"2-D array of die states, got shape \(3, 3, 2\)"),
        (np.zeros((0, 5), np.uint8), "empty wafer map"),
        (np.zeros((3, 3), np.uint8), "holds no die"),
        (np.array([[1, 3], [7, 2]]), r"values \[3, 7\] are outside the encoding"),
        (np.ones((2, 2), np.float32), "must be integers"),
    ],
)
def test_bad_maps_are_named(value: np.ndarray, message: str) -> None:
    with pytest.raises(WaferMapError, match=rf"lot7\.npz map 3: .*{message}"):
        check_map(value, source="lot7.npz map 3")


def test_one_die_map_and_yield() -> None:
    assert yield_fraction(check_map(np.array([[2]]), source="t")) == 0.0
    assert yield_fraction(SMALL) == 10 / 12


def test_resize_keeps_die_states() -> None:
    rng = np.random.default_rng(0)
    big = rng.choice([0, 1, 2], size=(90, 70), p=[0.2, 0.7, 0.1]).astype(np.uint8)
    for method in ("nearest", "majority"):
        for size in (16, 64, 128):
            out = resize_map(big, size=size, method=method)
            assert out.shape == (size, size) and set(np.unique(out)) <= {0, 1, 2}
    # A 2x2 block with two failed and two good dies goes to failed (ties keep the defect).
    block = np.array([[1, 2], [2, 1]], np.uint8)
    assert resize_map(block, size=1, method="majority")[0, 0] == FAILED
    assert resize_map(np.array([[1, 1], [1, 2]], np.uint8), size=1, method="majority")[0, 0] == GOOD
    np.testing.assert_array_equal(resize_map(SMALL, size=8, method="majority"),
                                  np.repeat(np.repeat(SMALL, 2, axis=0), 2, axis=1))


def test_batched_resize_and_features_match_one_map_at_a_time() -> None:
    """The batched majority vote and features give each map what it gets alone, whatever its neighbours'
    shapes (maps smaller and larger than the grid, a one-die map)."""
    maps = [SMALL, np.array([[2]], np.uint8), render_wafer_map("Scratch", 1, dies=45),
            render_wafer_map("Donut", 2, dies=20), render_wafer_map("Edge-Ring", 3, dies=90)]
    states, state_counts = majority_maps(maps, size=32)
    for die_map, resized, counts in zip(maps, states, state_counts, strict=True):
        np.testing.assert_array_equal(resized, resize_map(die_map, size=32, method="majority"))
        assert counts.tolist() == np.bincount(die_map.ravel(), minlength=3).tolist()
    batch = feature_matrix(maps)
    assert batch.shape == (5, 52) and np.isfinite(batch).all()
    for die_map, row in zip(maps, batch, strict=True):
        np.testing.assert_array_equal(row, feature_matrix([die_map])[0])


def test_radon_profile_of_a_line() -> None:
    """A horizontal line through the centre projects onto one position at 0 deg (all its cells) and onto
    one cell per position at 90 deg, so the mean profile peaks at the centre."""
    failed = np.zeros((1, 32, 32), bool)
    failed[0, 16, :] = True
    mean_profile, spread_profile = radon_profiles(failed.reshape(1, -1), dies=np.array([32]))
    assert mean_profile.shape == spread_profile.shape == (1, 16)
    assert mean_profile[0].argmax() in (7, 8) and spread_profile[0].max() > 0


def test_failure_density() -> None:
    die_map = np.array([[0, 0, 1, 2], [0, 0, 2, 2], [1, 1, 1, 1], [1, 1, 1, 2]], np.uint8)
    np.testing.assert_allclose(failure_density(die_map, size=2), [[0.0, 0.75], [0.0, 0.25]])


def test_npz_round_trip(tmp_path: Path) -> None:
    maps = [SMALL, render_wafer_map("Center", 0, dies=30)]
    path = write_npz(tmp_path / "lot.npz", MapSet(maps, np.array([8, 0]), PATTERNS))
    back = read_npz(path)
    assert [m.shape for m in back.maps] == [(4, 4), (30, 30)]
    np.testing.assert_array_equal(back.maps[1], maps[1])
    assert back.labels.tolist() == [8, 0] and back.label_names == PATTERNS


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", flat=np.array([1, 2, 5], np.uint8), offsets=np.array([0, 3]),
             shapes=np.array([[1, 3]]))
    with pytest.raises(WaferMapError, match=r"bad\.npz map 0: values \[5\] are outside the encoding"):
        read_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", flat=np.array([1, 2], np.uint8))
    with pytest.raises(WaferMapError, match="missing array"):
        read_npz(tmp_path / "short.npz")


def test_sinf_round_trip_and_row_count(tmp_path: Path) -> None:
    path = write_sinf(tmp_path / "w01.sinf", SMALL, wafer_id="W01", lot="LOT7")
    die_map, bins, header = read_sinf(path)
    np.testing.assert_array_equal(die_map, SMALL)
    assert header["WAFER"] == "W01" and bins[1, 1] == 2 and bins[0, 0] == -1
    lines = path.read_text().splitlines()
    (tmp_path / "cut.sinf").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(WaferMapError, match=r"cut\.sinf: ROWCT says 4 rows, the file has 3 RowData lines"):
        read_sinf(tmp_path / "cut.sinf")
    (tmp_path / "wide.sinf").write_text("\n".join([*lines[:-1], lines[-1] + " 01"]) + "\n")
    with pytest.raises(WaferMapError, match="RowData line 4 has 5 dies; COLCT says 4"):
        read_sinf(tmp_path / "wide.sinf")


def test_e142_round_trip_and_row_count(tmp_path: Path) -> None:
    die_map = render_wafer_map("Edge-Ring", 1, dies=20)
    path = write_e142(tmp_path / "w02.xml", die_map, substrate_id="W02", lot_id="LOT-7", slot=2)
    back, info = read_e142(path)
    np.testing.assert_array_equal(back, die_map)
    assert info == {"substrate_id": "W02", "lot_id": "LOT-7"} and "<SlotNumber>2</SlotNumber>" in path.read_text()
    text = path.read_text()
    cut = text.replace(text[text.index("<BinCode>"): text.index("</BinCode>") + len("</BinCode>")], "", 1)
    (tmp_path / "cut.xml").write_text(cut)
    with pytest.raises(WaferMapError, match=r"Dimension Y=20 but the BinCodeMap has 19 BinCode rows"):
        read_e142(tmp_path / "cut.xml")


def _density(die_map: np.ndarray, band: tuple[float, float]) -> float:
    size = die_map.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(xx - (size - 1) / 2, yy - (size - 1) / 2) / (size / 2)
    inside = (radius >= band[0]) & (radius < band[1]) & (die_map > 0)
    return float((die_map[inside] == FAILED).mean())


def test_synthetic_patterns_are_deterministic_and_shaped() -> None:
    for pattern in PATTERNS:
        a, b = render_wafer_map(pattern, 3, seed=1), render_wafer_map(pattern, 3, seed=1)
        np.testing.assert_array_equal(a, b)
        check_map(a, source=pattern)
        assert pattern in ROOT_CAUSES
    for index in range(10):
        centre = render_wafer_map("Center", index, dies=40)
        assert _density(centre, (0, 0.1)) > 0.5 and _density(centre, (0.6, 1.0)) < 0.25
        ring = render_wafer_map("Edge-Ring", index, dies=40)
        assert _density(ring, (0.93, 1.0)) > 0.5 and _density(ring, (0, 0.7)) < 0.15
        assert 1 - yield_fraction(render_wafer_map("Near-full", index)) > 0.6
        # WM-811K's none maps fail 3.5-23% of their dies, its Random maps 29-66% (5th-95th percentiles).
        assert 0.01 < 1 - yield_fraction(render_wafer_map("none", index)) < 0.3
        assert 0.25 < 1 - yield_fraction(render_wafer_map("Random", index)) < 0.7
    with pytest.raises(ValueError, match="unknown pattern"):
        render_wafer_map("Ring", 0)


def test_synthetic_patterns_follow_a_product_footprint() -> None:
    """On a product's own die layout (here a square-cornered grid inside a circle) the pattern is drawn
    on its dies only, and an edge ring lands on its outermost dies."""
    yy, xx = np.mgrid[0:31, 0:31]
    footprint = np.hypot(yy - 15, xx - 15) <= 14.2
    footprint[15, 0] = False
    for index in range(5):
        ring = render_wafer_map("Edge-Ring", index, footprint=footprint)
        np.testing.assert_array_equal(ring != 0, footprint)
        outermost = footprint & (np.hypot(yy - 15, xx - 15) > 13.2)
        assert (ring[outermost] == 2).mean() > 0.5 > 0.15 > (ring[np.hypot(yy - 15, xx - 15) < 9] == 2).mean()
    with pytest.raises(ValueError, match="footprint"):
        render_wafer_map("none", 0, footprint=np.ones(5, bool))


@pytest.mark.slow
@pytest.mark.skipif(not WM811K.is_file(), reason=f"WM-811K data not found at {WM811K}")
def test_reads_the_shared_wm811k_set_and_draws_a_map(tmp_path: Path) -> None:
    data = read_npz(WM811K)
    assert len(data.maps) == 49661 and data.label_names == PATTERNS
    process = run_cli("wafermap", "show", str(WM811K), "--index", "5", "--out", str(tmp_path / "m.png"))
    assert "labelled Loc" in process.stderr
    assert cv2.imread(str(tmp_path / "m.png")) is not None


def test_show_draws_sinf_and_names_bad_files(tmp_path: Path) -> None:
    write_sinf(tmp_path / "w.sinf", render_wafer_map("Scratch", 0, dies=30), wafer_id="W")
    run_cli("wafermap", "show", str(tmp_path / "w.sinf"), "--out", str(tmp_path / "w.png"))
    picture = cv2.imread(str(tmp_path / "w.png"))
    assert picture is not None and picture.shape[0] > 300
    (tmp_path / "bad.sinf").write_text("ROWCT:2\nCOLCT:2\nRowData:01 01\n")
    process = run_cli("wafermap", "show", str(tmp_path / "bad.sinf"), "--out", str(tmp_path / "b.png"), check=False)
    assert process.returncode == 2 and "ROWCT says 2 rows, the file has 1 RowData lines" in process.stderr


def test_e142_with_a_wafer_layout_and_a_child_device_layout_reads_the_device_grid(tmp_path: Path) -> None:
    die_map = np.array([[0, 1, 1, 0], [1, 2, 1, 1], [0, 1, 1, 0]], np.uint8)
    path = write_e142(tmp_path / "w.xml", die_map, substrate_id="W", die_size_mm=(8.0, 8.0), wafer_diameter_mm=300)
    text = path.read_text()
    assert '<Dimension X="1" Y="1" />' in text and '<Dimension X="4" Y="3" />' in text
    assert 'LayoutSpecifier="WaferLayout/Devices"' in text and 'Orientation="180"' in text
    assert np.array_equal(read_e142(path)[0], die_map)
    # A writer that names no layout path: the layout whose rows match the bin map's is the grid.
    bare = tmp_path / "bare.xml"
    bare.write_text(text.replace('LayoutSpecifier="WaferLayout/Devices"', 'LayoutSpecifier="WaferLayout"'))
    assert np.array_equal(read_e142(bare)[0], die_map)


def test_sinf_states_notch_down_and_the_die_size() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = write_sinf(Path(folder) / "w.sinf", np.ones((2, 3), np.uint8), wafer_id="W", die_size_mm=(8.0, 7.5))
        _, _, header = read_sinf(path)
    assert (header["FNLOC"], header["DUTMS"], header["XDIES"], header["YDIES"]) == ("180", "mm", "8.0000", "7.5000")
