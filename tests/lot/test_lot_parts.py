"""The parts of lot grading on their own: manifests, the lot recipe, verdict rules, the generator, KLARF."""

from __future__ import annotations

import sqlite3
import string
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inspection.acquire.lot import LotInputError, read_lot
from inspection.grade import wafer_verdict
from inspection.measure.dies import locate_dies
from inspection.recipe import LotRules, RecipeError, load_recipe
from inspection.report.klarf import write_klarf
from inspection.report.lots import LotStore
from inspection.samples.lot import LotSpec, render_lot_wafer, truth_map
from inspection.types import MAX_STEM_CHARS, Verdict, file_stem, ids_of_stem, unique_on_any_file_system
from inspection.wafermap.klarf import Klarf, KlarfError, klarf_die_map, read_klarf


def test_a_folder_of_images_is_a_lot(tmp_path: Path) -> None:
    for name in ("b.png", "a.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    items = read_lot(tmp_path)
    assert [(i.wafer_id, i.slot, i.lot_id) for i in items] == [("a", 1, tmp_path.name), ("b", 2, tmp_path.name)]


@pytest.mark.parametrize(("text", "message"), [
    ("image,wafer\nw.png,1\n", "missing ['wafer_id'], unknown ['wafer']"),
    ("image,wafer_id,slot\nw.png,W1,first\n", "lot.csv:2: slot 'first' is not a whole number"),
    ("image,wafer_id\nw.png,W1\nx.png,W1\n", "lot.csv:3: wafer W1 of lot"),
    ("image,wafer_id\n,W1\n", "lot.csv:2: image must not be empty"),
    ("image,wafer_id\nw.png,\n", "lot.csv:2: wafer_id: empty"),
    ('image,wafer_id\nw.png,"W\n1"\n', "lot.csv:2: wafer_id 'W\\n1': control character U+000A at position 1"),
    ("image,wafer_id,lot_id\nw.png,W1,L\x001\n", "lot.csv:2: lot_id 'L\\x001': control character U+0000"),
    ("image,wafer_id\nw.png," + "W" * 201 + "\n", "lot.csv:2: wafer_id: 201 characters; expected at most 200"),
    ("image,wafer_id\n", "lists no wafers"),
    ('image,wafer_id\nw.png,"W""1"\n', "lot.csv:2: wafer_id 'W\"1': a double quote at position 1; KLARF cannot"),
    ("image,wafer_id,truth_pattern\nw.png,W1,{lo\n", "lot.csv:2: truth_pattern '{lo' is not a wafer-map pattern"),
])
def test_bad_manifests_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "lot.csv").write_text(text)
    with pytest.raises(LotInputError, match=None) as caught:
        read_lot(tmp_path / "lot.csv")
    assert message in str(caught.value)


def test_empty_folder_and_missing_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LotInputError, match="no images"):
        read_lot(tmp_path)
    with pytest.raises(LotInputError, match="no such folder"):
        read_lot(tmp_path / "missing")


def test_lot_recipe_errors_name_the_field(tmp_path: Path) -> None:
    recipe = load_recipe("wafer-lot")
    assert recipe.wafer is not None and recipe.rules is not None
    assert recipe.wafer.die_pitch_um == (8000.0, 8000.0) and "Scratch" in recipe.rules.forbidden_patterns
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: wafer-lot\npixel_size_um: 150\nwafer: {diameter_mm: 300, die_pitch_um: [800, 800],"
                   " street_um: 900}\nclassify: {model: d}\nwafermap: {model: m}\nrules: {yield_floor: 0.8, "
                   "forbidden_patterns: [Swirl]}\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(bad)
    text = str(caught.value)
    assert "wafer:" in text and "wider than street_um" in text
    assert "rules.forbidden_patterns" in text or ("rules:" in text and "Swirl" in text)


def test_verdict_rules_in_order() -> None:
    rules = LotRules(yield_floor=0.8, review_band=0.05, max_defect_density_per_cm2=0.5,
                     forbidden_patterns=("Scratch",), min_pattern_confidence=0.6)

    def verdict(yield_fraction: float, density: float = 0.1, pattern: str = "none", confidence: float = 0.9) -> Verdict:
        return wafer_verdict(yield_fraction=yield_fraction, defect_density_per_cm2=density, pattern=pattern,
                             pattern_confidence=confidence, rules=rules)[0]

    assert verdict(0.95) == Verdict.PASS
    assert verdict(0.82) == Verdict.REVIEW
    assert verdict(0.79) == Verdict.FAIL
    assert verdict(0.95, density=0.6) == Verdict.FAIL
    assert verdict(0.99, pattern="Scratch") == Verdict.FAIL
    assert verdict(0.99, pattern="Scratch", confidence=0.4) == Verdict.REVIEW


def test_generated_wafer_is_deterministic_and_located_at_its_truth() -> None:
    spec = LotSpec()
    image, truth = render_lot_wafer(spec, "Edge-Ring", 2, seed=3)
    again, _ = render_lot_wafer(spec, "Edge-Ring", 2, seed=3)
    assert np.array_equal(image, again) and image.shape == (2048, 2048)
    die_map = truth_map(truth)
    assert min(die_map.shape) >= 35 and 950 <= (die_map > 0).sum() <= 1100
    recipe = load_recipe("wafer-lot")
    assert recipe.wafer is not None
    located = locate_dies(image, wafer=recipe.wafer, pixel_size_um=recipe.pixel_size_um)
    # Notch found and turned down: every located die carries a truth index (a 180-degree turn would not).
    truth_cells = set(zip(truth.rows.tolist(), truth.cols.tolist(), strict=True))
    assert all((d.row, d.column) in truth_cells for d in located.dies)
    assert located.grid.pitch_xy_px == pytest.approx(spec.pitch_px, abs=0.05)
    # Edge-Ring: the failing dies are the outer ones.
    rows, cols = truth.rows.astype(float), truth.cols.astype(float)
    radius = np.hypot(rows, cols)
    assert radius[truth.classes > 0].mean() > radius[truth.classes == 0].mean() + 3


def test_klarf_round_trip_and_die_map(tmp_path: Path) -> None:
    klarf = Klarf("LOT 7", "W-03", 3, (8000.0, 7500.0), (4000.0, 3750.0), {0: "good", 1: "particle"},
                  [(0, 0), (1, 0), (0, -1), (1, -1)],
                  [{"DEFECTID": 1, "XREL": 120.5, "YREL": 300.25, "XINDEX": 1, "YINDEX": -1, "XSIZE": 10.0,
                    "YSIZE": 12.0, "DEFECTAREA": 100.0, "DSIZE": 10.0, "CLASSNUMBER": 1, "TEST": 1,
                    "ROUGHBINNUMBER": 1, "IMAGECOUNT": 0}],
                  {"TESTNO": 1, "NDEFECT": 1, "DEFDENSITY": 0.5, "NDIE": 4, "NDEFDIE": 1})
    path = write_klarf(tmp_path / "w.klarf", klarf, station="AOI-1", recipe="r",
                       moment=datetime(2026, 11, 22, tzinfo=UTC))
    text = path.read_text()
    assert text.startswith('Record FileRecord "1.8"') and text.rstrip().endswith("EndOfFile;")
    back = read_klarf(path)
    assert (back.lot_id, back.wafer_id, back.slot, back.die_pitch_um) == ("LOT 7", "W-03", 3, (8000.0, 7500.0))
    assert back.class_names == klarf.class_names and back.tested_dies == klarf.tested_dies
    assert back.defects == [{k: float(v) for k, v in klarf.defects[0].items()}]
    assert back.summary["NDIE"] == 4
    die_map, origin = klarf_die_map(back)
    assert origin == (0, 0) and die_map.tolist() == [[1, 1], [1, 2]]


def test_broken_klarf_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.klarf"
    path.write_text("FileVersion 1 8;\nWaferID \"W\";\nDiePitch 1 1;\nDefectRecordSpec 2 DEFECTID XREL;\n"
                    "DefectList\n 1 2 3;\nEndOfFile;\n")
    with pytest.raises(KlarfError, match="DefectList has 3 values, not a multiple of 2"):
        read_klarf(path)
    path.write_text("FileVersion 2 0;\n")
    with pytest.raises(KlarfError, match="FileVersion 2 0"):
        read_klarf(path)


@given(st.lists(st.text(min_size=1, max_size=60), min_size=2, max_size=3),
       st.lists(st.text(min_size=1, max_size=60), min_size=2, max_size=3))
def test_ids_become_file_stems_that_no_other_ids_give_and_that_read_back(first: list[str], second: list[str]) -> None:
    one, other = file_stem(*first), file_stem(*second)
    for stem, ids in ((one, first), (other, second)):
        assert set(stem) <= set(string.ascii_letters + string.digits + "-._~") and not stem.startswith(".")
        assert len(stem) <= MAX_STEM_CHARS
        if "~~" not in stem:
            assert ids_of_stem(stem) == tuple(ids)
    assert (one == other) == (first == second)


def test_ids_that_differ_only_in_case_get_files_of_their_own_everywhere() -> None:
    pairs = [(file_stem("L", wafer), ("L", wafer)) for wafer in ("w1", "W1", "w2")]
    stems = unique_on_any_file_system(pairs)
    assert stems[0] == "L_w1" and stems[2] == "L_w2" and stems[1].startswith("L_W1~~")
    assert len({stem.casefold() for stem in stems}) == 3
    long = file_stem("L", "\u00e9" * 150)
    assert len(long) <= MAX_STEM_CHARS and "~~" in long and long != file_stem("L", "\u00e9" * 151)


def test_a_grading_run_whose_process_was_killed_is_marked_when_the_lot_is_next_opened(tmp_path: Path) -> None:
    db = tmp_path / "grade.sqlite"
    script = (f"import os, signal\nfrom inspection.report.lots import LotStore\nstore = LotStore({str(db)!r})\n"
              "store.start_run(recipe_name='r', recipe_sha256='s', engine='local', workers=2, software_version='t')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", script], timeout=60)
    with sqlite3.connect(db) as connection:  # a file of lot schema 2: grading runs without their process
        connection.execute("ALTER TABLE grade_runs DROP COLUMN pid")
        connection.execute("PRAGMA user_version = 2")
    LotStore(db).close()
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status FROM grade_runs").fetchall() == [("interrupted",)]
        assert "pid" in {row[1] for row in connection.execute("PRAGMA table_info(grade_runs)")}
