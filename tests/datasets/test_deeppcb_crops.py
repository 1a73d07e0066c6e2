"""The PCB candidate-crop builder on real DeepPCB pairs in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from inspection.classify.card import DetectorSettings
from tests.conftest import REPO_ROOT

DEEPPCB = REPO_ROOT.parent / "shared" / "data" / "deeppcb"


def _pair_list(tmp_path: Path, *, group_20085: int, group_44000: int) -> tuple[list[str], Path]:
    """The first pairs of groups 20085 and 44000 from trainval.txt, and a pair list file naming them."""
    lines = (DEEPPCB / "trainval.txt").read_text().splitlines()
    chosen = [line for line in lines if line.startswith("group20085")][:group_20085] + [
        line for line in lines if line.startswith("group44000")][:group_44000]
    listing = tmp_path / "pairs.txt"
    listing.write_text("\n".join(chosen) + "\n")
    return chosen, listing


@pytest.mark.skipif(not (DEEPPCB / "trainval.txt").is_file(), reason=f"DeepPCB data not found at {DEEPPCB}")
def test_candidates_are_labelled_moved_copies_added_and_test_boards_kept_apart(tmp_path: Path) -> None:
    chosen, listing = _pair_list(tmp_path, group_20085=40, group_44000=10)
    out = tmp_path / "crops"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "datasets" / "deeppcb_crops.py"), str(DEEPPCB), str(out),
                           "--list", str(listing), "--test-groups", "44000", "--moved-copies", "1",
                           "--crop-context", "2", "--crop-min-side-px", "40", "--edge-zone-px", "1",
                           "--edge-open-px", "3", "--edge-keep-min-area-px", "5", "--edge-keep-max-side-px", "10"],
                          check=True, capture_output=True, text=True, timeout=300)
    classes = {"open", "short", "mousebite", "spur", "copper", "pin-hole", "good"}
    assert {p.name for p in (out / "train").iterdir()} == classes
    boards = {split: {p.name[:5] for p in (out / split).rglob("*.png")} for split in ("train", "test")}
    assert boards == {"train": {"20085"}, "test": {"44000"}}
    assert (out / "test.txt").read_text().splitlines() == chosen[40:]
    # Moved copies only of training boards; their defects are still found and labelled.
    assert not list((out / "test").rglob("*_moved*"))
    defects = [p for p in (out / "train").rglob("*.png") if p.parent.name != "good"]
    moved_defects = [p for p in defects if "_moved0_" in p.name]
    assert 0.9 < len(moved_defects) / (len(defects) - len(moved_defects)) < 1.1
    # The candidates cover nearly every annotated defect (the pipeline's recall ceiling).
    coverage = [float(line.rsplit("(", 1)[1].rstrip("%)")) for line in done.stdout.splitlines() if "cover" in line]
    assert len(coverage) == 2 and min(coverage) > 97.0, done.stdout
    settings = DetectorSettings.model_validate(json.loads((out / "detector.json").read_text()))
    assert set(settings.box_growth) == classes - {"good"}
    # The line makes and crops candidates as training did.
    assert (settings.crop_context, settings.crop_min_side_px) == (2.0, 40)
    assert (settings.edge_zone_px, settings.edge_open_px) == (1, 3)
    assert (settings.edge_keep_min_area_px, settings.edge_keep_max_side_px) == (5, 10)
    for scale, offset_px in settings.box_growth.values():
        assert 0.1 < scale < 2.5 and 5 < offset_px < 50  # annotators draw boxes with about 10 px of margin
    crop = cv2.imread(str(next((out / "train" / "open").glob("*.png"))), cv2.IMREAD_UNCHANGED)
    assert crop.ndim == 3 and crop.shape[2] == 3 and crop.shape[0] == crop.shape[1] >= 40


def test_candidate_and_crop_options_outside_the_card_bounds_are_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "datasets" / "deeppcb_crops.py"), str(DEEPPCB),
                           str(tmp_path / "crops"), "--crop-context", "0.5", "--crop-min-side-px", "4",
                           "--edge-zone-px", "-1", "--edge-keep-max-side-px", "-2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and not (tmp_path / "crops").exists()
    assert "--crop-context 0.5: Input should be greater than or equal to 1" in done.stderr
    assert "--crop-min-side-px 4: Input should be greater than or equal to 8" in done.stderr
    assert "--edge-zone-px -1: Input should be greater than or equal to 0" in done.stderr
    assert "--edge-keep-max-side-px -2: Input should be greater than or equal to 0" in done.stderr
    done = subprocess.run([sys.executable, str(REPO_ROOT / "datasets" / "deeppcb_crops.py"), str(DEEPPCB),
                           str(tmp_path / "crops"), "--edge-open-px", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and not (tmp_path / "crops").exists()
    assert "edge_open_px 1 is below open_px 2" in done.stderr


@pytest.mark.skipif(not (DEEPPCB / "trainval.txt").is_file(), reason=f"DeepPCB data not found at {DEEPPCB}")
def test_a_share_of_every_group_or_no_group_at_all_can_be_held_out(tmp_path: Path) -> None:
    chosen, listing = _pair_list(tmp_path, group_20085=10, group_44000=5)
    script = [sys.executable, str(REPO_ROOT / "datasets" / "deeppcb_crops.py"), str(DEEPPCB)]

    shared = tmp_path / "share"
    subprocess.run([*script, str(shared), "--list", str(listing), "--test-fraction", "0.2", "--seed", "3"],
                   check=True, capture_output=True, text=True, timeout=300)
    test_pairs = (shared / "test.txt").read_text().splitlines()
    train_pairs = (shared / "train.txt").read_text().splitlines()
    assert sorted(test_pairs + train_pairs) == sorted(chosen)
    # 20% of each group: 2 of group 20085's 10 pairs and 1 of group 44000's 5.
    assert sorted(line[:10] for line in test_pairs) == ["group20085", "group20085", "group44000"]
    fitted_on = json.loads((shared / "detector.json").read_text())["fitted_on"]
    assert fitted_on.endswith("80% of every group's pairs (seed 3)")

    everything = tmp_path / "all"
    subprocess.run([*script, str(everything), "--list", str(listing), "--test-groups", ""],
                   check=True, capture_output=True, text=True, timeout=300)
    assert not (everything / "test").exists() and not (everything / "test.txt").exists()
    assert (everything / "train.txt").read_text().splitlines() == chosen
    assert json.loads((everything / "detector.json").read_text())["fitted_on"].endswith("every group")

    for options, message in ((["--test-groups", "44000", "--test-fraction", "0.2"], "give one"),
                             (["--test-fraction", "1.5"], "--test-fraction 1.5: expected a share in [0, 1)")):
        done = subprocess.run([*script, str(tmp_path / "refused"), "--list", str(listing), *options],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and message in done.stderr and not (tmp_path / "refused").exists()
