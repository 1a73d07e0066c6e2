"""Wafer-map and KLARF files from outside: a clean error naming the file for whatever they hold, never a traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from inspection.report.klarf import write_klarf
from inspection.report.maps import write_e142
from inspection.wafermap.formats import read_e142, read_npz
from inspection.wafermap.klarf import Klarf, KlarfError, read_klarf
from inspection.wafermap.maps import WaferMapError

GOOD_NPZ = {"flat": np.ones(6, np.uint8), "offsets": np.array([0, 6]), "shapes": np.array([[2, 3]])}


@pytest.mark.parametrize(("arrays", "expected"), [
    ({**GOOD_NPZ, "flat": np.array([1, "x", None], dtype=object)}, "pickles are refused"),
    ({**GOOD_NPZ, "shapes": np.array([[-2, -3]])}, "within 1..5000"),
    ({"flat": np.zeros(0, np.uint8), "offsets": np.array([0]), "shapes": np.zeros((0, 2), int)}, "at least one map"),
    ({**GOOD_NPZ, "flat": np.ones(6)}, "flat must be a 1-D integer array"),
    ({**GOOD_NPZ, "offsets": np.array([0, 7])}, "must rise from 0"),
    ({**GOOD_NPZ, "label": np.array(["Center"])}, "label must be a 1-D integer array"),
    ({**GOOD_NPZ, "flat": np.full(6, 7, np.uint8)}, "outside the encoding"),
])
def test_npz_that_is_not_a_map_set_is_named(tmp_path: Path, arrays: dict[str, np.ndarray], expected: str) -> None:
    path = tmp_path / "maps.npz"
    np.savez(path, **arrays)
    with pytest.raises(WaferMapError, match=expected) as caught:
        read_npz(path)
    assert str(path) in str(caught.value)


def test_truncated_npz_and_a_single_array_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "good.npz", **GOOD_NPZ)
    assert len(read_npz(tmp_path / "good.npz").maps) == 1
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(WaferMapError, match=r"cut\.npz: not a readable npz file"):
        read_npz(tmp_path / "cut.npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(WaferMapError, match="a single array, not an npz archive"):
        read_npz(tmp_path / "one.npz")


def test_e142_bins_outside_the_bin_table_and_bad_dimensions_are_refused(tmp_path: Path) -> None:
    path = write_e142(tmp_path / "w.xml", np.array([[0, 1, 2], [1, 2, 1]], np.uint8), substrate_id="W")
    text = path.read_text()
    assert "<BinCode>FF0102</BinCode>" in text
    unknown = tmp_path / "unknown.xml"
    unknown.write_text(text.replace("<BinCode>FF0102</BinCode>", "<BinCode>FF0177</BinCode>"))
    with pytest.raises(WaferMapError, match=r"bin '77' is not among the BinDefinitions"):
        read_e142(unknown)
    for size in ('X="-3"', 'X="1e9"', 'X="three"'):
        bad = tmp_path / "bad.xml"
        bad.write_text(text.replace('X="3"', size, 1))
        with pytest.raises(WaferMapError, match=r"expected whole numbers within 1\.\.5000"):
            read_e142(bad)


@pytest.mark.parametrize(("offset", "value", "what"), [
    (8, 1, "encrypted"), (10, 99, "compression method"), (6, 64, "zip file version")])
def test_npz_with_zip_features_no_npz_uses_is_named(tmp_path: Path, offset: int, value: int, what: str) -> None:
    """Flags of the archive's directory that zipfile refuses with its own exceptions (found by the fuzz suite)."""
    import struct

    path = tmp_path / "maps.npz"
    np.savez(path, **GOOD_NPZ)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first member's central-directory entry
    data[entry + offset : entry + offset + 2] = struct.pack("<H", value)
    path.write_bytes(bytes(data))
    with pytest.raises(WaferMapError, match=r"maps.npz: not a readable npz"):
        read_npz(path)


def _klarf(tmp_path: Path) -> Path:
    klarf = Klarf("LOT", "W1", 1, (8000.0, 8000.0), (0.0, 0.0), {0: "good", 1: "particle"}, [(0, 0), (1, 0)],
                  [{"DEFECTID": 1, "XREL": 10.0, "YREL": 20.0, "XINDEX": 1, "YINDEX": 0, "XSIZE": 5.0, "YSIZE": 5.0,
                    "DEFECTAREA": 25.0, "DSIZE": 5.0, "CLASSNUMBER": 1, "TEST": 1, "CLUSTERNUMBER": 0,
                    "ROUGHBINNUMBER": 1, "FINEBINNUMBER": 1, "REVIEWSAMPLE": 0, "IMAGECOUNT": 0}])
    return write_klarf(tmp_path / "w1.klarf", klarf, station="s", recipe="r", moment=datetime(2026, 12, 1, tzinfo=UTC),
                       version="1.2")


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("DiePitch 8000", "DiePitch 1e999", "finite number"),
    ("DiePitch 8000", "DiePitch -5", "expected two pitches"),
    ("SampleTestPlan 2\n1 0", "SampleTestPlan 2\n12345678901234567890123 0", "at most 9 digits"),
])
def test_klarf_numbers_no_wafer_can_have_are_refused(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = _klarf(tmp_path)
    text = path.read_text()
    assert old.split()[0] in text
    path.write_text(_replace_record(text, old, new))
    with pytest.raises(KlarfError, match=expected) as caught:
        read_klarf(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("record", "expected"), [("Slot", r"Slot '' is not a slot number"),
                                                  ("FileVersion", "FileVersion ; expected 1.x")])
def test_a_klarf_record_without_its_value_is_named(tmp_path: Path, record: str, expected: str) -> None:
    path = _klarf(tmp_path)
    text = path.read_text()
    start = text.index(record)
    path.write_text(text[:start] + record + text[text.index(";", start):])  # "Slot;"
    with pytest.raises(KlarfError, match=expected):
        read_klarf(path)


def _replace_record(text: str, old: str, new: str) -> str:
    keyword = old.split()[0]
    start = text.index(keyword)
    if keyword == "DiePitch":
        end = text.index(";", start)
        return text[:start] + new + " 8000.000000" + text[end:]
    plan_line = text.index("\n", start)  # SampleTestPlan N, then one line per die
    first_die_end = text.index("\n", plan_line + 1)
    return text[: plan_line + 1] + new.split("\n", 1)[1] + text[first_die_end:]


@pytest.mark.parametrize(("new", "expected"), [("{1e999, 8000000}", "finite number"),
                                               ("{-5, 8000000}", "expected two pitches")])
def test_nested_klarf_numbers_no_wafer_can_have_are_refused(tmp_path: Path, new: str, expected: str) -> None:
    path = _klarf(tmp_path)
    write_klarf(path, read_klarf(path), station="s", recipe="r", moment=datetime(2026, 12, 1, tzinfo=UTC))
    text = path.read_text()
    assert "Field DiePitch 2 {8000000, 8000000}" in text
    path.write_text(text.replace("Field DiePitch 2 {8000000, 8000000}", f"Field DiePitch 2 {new}"))
    with pytest.raises(KlarfError, match=expected):
        read_klarf(path)
