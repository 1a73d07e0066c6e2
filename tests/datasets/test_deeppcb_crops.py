"""The DeepPCB patch builder on the real data in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tests.conftest import REPO_ROOT

DEEPPCB = REPO_ROOT.parent / "shared" / "data" / "deeppcb"


@pytest.mark.skipif(not (DEEPPCB / "trainval.txt").is_file(), reason=f"DeepPCB data not found at {DEEPPCB}")
def test_crops_every_box_and_keeps_test_boards_apart(tmp_path: Path) -> None:
    out = tmp_path / "crops"
    subprocess.run([sys.executable, str(REPO_ROOT / "datasets" / "deeppcb_crops.py"), str(DEEPPCB), str(out),
                    "--test-groups", "44000,50600"], check=True, capture_output=True, text=True, timeout=300)
    classes = {"open", "short", "mousebite", "spur", "copper", "pin-hole", "good"}
    assert {p.name for p in (out / "train").iterdir()} == classes
    assert {p.name for p in (out / "test").iterdir()} == classes
    defects = [p for split in ("train", "test") for c in classes - {"good"} for p in (out / split / c).glob("*.png")]
    boxes = sum(
        len([row for row in (DEEPPCB / line.split()[1]).read_text().splitlines() if row.strip()])
        for line in (DEEPPCB / "trainval.txt").read_text().splitlines() if line.strip()
    )
    assert boxes > 6800 and len(defects) == boxes  # every ground-truth box of the trainval split
    boards = {split: {p.name.split("_")[0][:5] for p in (out / split).rglob("*.png")} for split in ("train", "test")}
    assert boards["test"] == {"44000", "50600"} and not boards["train"] & boards["test"]
    crop = cv2.imread(str(defects[0]), cv2.IMREAD_UNCHANGED)
    assert crop.ndim == 2 and crop.shape[0] == crop.shape[1] >= 32
