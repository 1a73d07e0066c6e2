"""A new camera onto the line and a model for it, as a line engineer does it from the README: teach the
station's recipe, cut its candidates into a folder to label, train a model for the recipe, run the line on it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from inspection.classify.card import DetectorSettings
from inspection.report.store import read_runs
from inspection.samples.lot import make_lot
from tests.conftest import results_json, run_cli

CAMERA = "sim:wafer?seed=3&defect_rate=0.9"
TINY = ("--epochs", "1", "--batch-size", "32", "--patience", "1")


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = tmp_path_factory.mktemp("station") / "line-7.yaml"
    process = run_cli("teach", "--camera", "sim:wafer?seed=3&defect_rate=0", "--recipe", "wafer-die", "--out",
                      str(recipe), "--frames", "3", "--check-frames", "4", timeout=300)
    assert "checked 4 more frame(s) of 512x512 px" in process.stderr and "alignment score median" in process.stderr
    assert f"run it: inspect run --recipe {recipe}" in process.stderr
    return recipe


def test_teach_writes_a_recipe_for_the_camera_with_its_golden_beside_it(station: Path) -> None:
    data = yaml.safe_load(station.read_text())
    assert data["name"] == "line-7" and data["camera"]["uri"] == "sim:wafer?seed=3&defect_rate=0"
    assert data["reference"]["golden"] == "line-7-golden.png" and (station.parent / "line-7-golden.png").is_file()
    assert data["classify"]["model"] == "wafer-line-patchnet-v1"  # found by name from anywhere
    assert data["classify"]["fail_classes"] == ["particle", "scratch"]  # the rest of the given recipe kept


def test_teach_on_whole_wafers_points_to_the_lot_recipe(tmp_path: Path) -> None:
    make_lot(tmp_path / "lot", wafers=2, seed=0)
    process = run_cli("teach", "--camera", f"folder:{tmp_path / 'lot'}", "--recipe", "wafer-die", "--out",
                      str(tmp_path / "w.yaml"), "--frames", "1", "--check-frames", "1", timeout=300)
    assert "look like whole wafers" in process.stderr and "--recipe wafer-lot" in process.stderr
    refused = run_cli("teach", "--camera", CAMERA, "--recipe", "wafer-lot", "--out", str(tmp_path / "x.yaml"),
                      check=False)
    assert refused.returncode == 2 and "inspect grade FOLDER --recipe wafer-lot" in refused.stderr
    not_yaml = run_cli("teach", "--camera", CAMERA, "--recipe", "wafer-die", "--out", str(tmp_path / "g.png"),
                       check=False)
    assert not_yaml.returncode == 2 and "is the station's new recipe (a .yaml file)" in not_yaml.stderr


def test_cut_crops_are_what_the_line_classifies_and_unsorted_ones_are_not_trained(station: Path,
                                                                                  tmp_path: Path) -> None:
    out = tmp_path / "to-label"
    process = run_cli("labels", "cut", "--recipe", str(station), "--camera", CAMERA, "--frames", "30", "--out",
                      str(out), "-q", timeout=300)
    assert f"inspect train {out} --for {station} --out MODEL" in process.stderr
    unsorted, good = sorted((out / "unsorted").glob("*.png")), sorted((out / "good").glob("*.png"))
    assert unsorted and len(good) == 30  # one box per frame where frame and golden agree
    with (out / "crops.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(unsorted) + len(good) and all((out / row["crop"]).is_file() for row in rows)
    detector = DetectorSettings.model_validate_json((out / "detector.json").read_text())
    card = json.loads((Path(__file__).parents[2] / "models" / "wafer-line-patchnet-v1" / "model.json").read_text())
    # the line's own candidates (the card read as the line reads it: fields it leaves out take their defaults)
    assert detector == DetectorSettings.model_validate(card["detector"])
    again = run_cli("labels", "cut", "--recipe", str(station), "--camera", CAMERA, "--frames", "30", "--out",
                    str(tmp_path / "again"), "-q", timeout=300)
    assert again.returncode == 0 and sorted(p.name for p in (tmp_path / "again" / "good").iterdir()) == \
        [p.name for p in good]  # the same frames and seed give the same folder
    refused = run_cli("train", str(out), "--for", str(station), "--out", str(tmp_path / "m"), check=False)
    assert refused.returncode == 2 and "not sorted yet" in refused.stderr and "Traceback" not in refused.stderr
    busy = run_cli("labels", "cut", "--recipe", str(station), "--camera", CAMERA, "--out", str(out), check=False)
    assert busy.returncode == 2 and "not empty" in busy.stderr


def test_a_model_trained_for_the_recipe_runs_on_its_line(station: Path, tmp_path: Path) -> None:
    crops, model, db = tmp_path / "crops", tmp_path / "line-7-v1", tmp_path / "line.db"
    run_cli("labels", "cut", "--recipe", str(station), "--camera", CAMERA, "--frames", "40", "--presort", "--out",
            str(crops), "-q", timeout=300)
    assert {p.name for p in crops.iterdir() if p.is_dir()} >= {"good", "particle", "scratch", "stain"}
    trained = run_cli("train", str(crops), "--for", str(station), "--out", str(model), *TINY, timeout=900)
    assert f"inspect run --recipe {station} --model {model}" in trained.stderr
    card = json.loads((model / "model.json").read_text())
    assert card["input"]["channels"] == 3 and card["input"]["height"] == 32 and card["detector"] is not None
    run_cli("run", "--recipe", str(station), "--model", str(model), "--frames", "6", "--db", str(db), "-q",
            cwd=tmp_path, timeout=300)
    [run] = read_runs(db)
    assert len(results_json(db)) == 6 and run["model_sha256"] == card["onnx_sha256"] and run["status"] == "completed"
    gray = run_cli("train", str(crops), "--for", str(station), "--colour", "gray", "--out", str(tmp_path / "g"),
                   check=False)
    assert gray.returncode == 2 and "leave out --colour gray" in gray.stderr
