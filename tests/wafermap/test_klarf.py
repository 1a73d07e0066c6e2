"""KLARF 1.8 (nested) and 1.2 (flat): written, read back, and third-party files read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from inspection.report.klarf import write_klarf
from inspection.wafermap.klarf import Klarf, KlarfError, klarf_die_map, read_klarf

SAMPLES = Path(__file__).parent / "data" / "klarf-jklarfreader"
WAFER = Klarf("LOT-1", "W01", 3, (8000.0, 8000.0), (4000.0, 4000.0), {0: "Unclassified", 1: "particle", 2: "scratch"},
              [(0, 0), (1, 0), (0, -1)],
              [{"DEFECTID": 1, "XREL": 10.5, "YREL": 20.25, "XINDEX": 1, "YINDEX": 0, "XSIZE": 5.0, "YSIZE": 6.0,
                "DEFECTAREA": 30.0, "DSIZE": 5.5, "CLASSNUMBER": 2, "TEST": 1, "ROUGHBINNUMBER": 2, "IMAGECOUNT": 0}],
              {"TESTNO": 1, "NDEFECT": 1, "DEFDENSITY": 0.52, "NDIE": 3, "NDEFDIE": 1})


@pytest.mark.parametrize("version", ["1.8", "1.2"])
def test_both_versions_read_back_to_the_same_wafer_in_micrometres(tmp_path: Path, version: str) -> None:
    path = write_klarf(tmp_path / "w.klarf", WAFER, station="s1", recipe="wafer-lot",
                       moment=datetime(2026, 12, 1, 4, 5, tzinfo=UTC), version=version)  # type: ignore[arg-type]
    text = path.read_text()
    assert text.startswith('Record FileRecord "1.8"' if version == "1.8" else "FileVersion 1 2;")
    back = read_klarf(path)
    assert (back.lot_id, back.wafer_id, back.slot) == ("LOT-1", "W01", 3)
    assert back.die_pitch_um == (8000.0, 8000.0) and back.sample_centre_um == (4000.0, 4000.0)
    assert back.class_names == WAFER.class_names and back.tested_dies == WAFER.tested_dies
    assert back.defects[0]["XREL"] == pytest.approx(10.5) and back.defects[0]["DEFECTAREA"] == pytest.approx(30.0)
    assert back.summary["NDEFECT"] == 1 and back.summary["DEFDENSITY"] == pytest.approx(0.52)


@pytest.mark.parametrize("version", ["1.8", "1.2"])
@pytest.mark.parametrize("wafer_id", ["W1\\", "a\\\\b\\'", "W;1 {x}", "\u4e2d\U0001f600\u0301"])
def test_ids_read_back_as_written_in_both_versions(tmp_path: Path, version: str, wafer_id: str) -> None:
    """KLARF has no escape character: a trailing backslash once swallowed the closing quote (1.2)."""
    from dataclasses import replace

    path = write_klarf(tmp_path / "w.klarf", replace(WAFER, wafer_id=wafer_id, lot_id=wafer_id + "L"), station="s",
                       recipe="r", moment=datetime(2026, 12, 1, tzinfo=UTC), version=version)  # type: ignore[arg-type]
    back = read_klarf(path)
    assert (back.wafer_id, back.lot_id) == (wafer_id, wafer_id + "L")


@pytest.mark.parametrize(("name", "lot", "wafer", "slot", "pitch_um", "defects", "tested", "first_xrel_um"), [
    ("simple18.klarf", "aLot.String", "FirstWaferId", 25, (5744.15, 5410.203), 3, 9, 1254.96),
    ("klarfWithImagelist.klarf", "aLot", "aWafer", 3, (7270.96, 6559.46), 6, 1, 7243.34),
    ("simple12.klarf", "aLot", "aWafer", 1, (150000.0, 150000.0), 1, 1, 3500.123),
])
def test_third_party_files_of_both_versions_are_read(name: str, lot: str, wafer: str, slot: int,
                                                     pitch_um: tuple[float, float], defects: int, tested: int,
                                                     first_xrel_um: float) -> None:
    klarf = read_klarf(SAMPLES / name)
    assert (klarf.lot_id, klarf.wafer_id, klarf.slot) == (lot, wafer, slot)
    assert klarf.die_pitch_um == pytest.approx(pitch_um)
    assert len(klarf.defects) == defects and len(klarf.tested_dies) == tested
    assert klarf.defects[0]["XREL"] == pytest.approx(first_xrel_um)
    die_map, _ = klarf_die_map(klarf)
    assert die_map.size >= 1


def test_a_nested_file_cut_short_or_nested_without_end_is_named(tmp_path: Path) -> None:
    text = (SAMPLES / "simple18.klarf").read_text()
    cut = tmp_path / "cut.klarf"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(KlarfError, match=r"cut\.klarf: the file ends inside a record"):
        read_klarf(cut)
    deep = tmp_path / "deep.klarf"
    deep.write_text('Record FileRecord "1.8" ' + "{ Record R " * 5000 + "}" * 5001)
    with pytest.raises(KlarfError, match=r"deep\.klarf"):
        read_klarf(deep)
