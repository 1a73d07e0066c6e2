from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.samples.lot import LotSpec, make_lot, render_lot_wafer


@pytest.fixture(scope="session")
def graded_lot_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated lot of 4 wafers (Center, Donut, Edge-Loc, Edge-Ring) plus three bad inputs: an unreadable file,
    a frame with no wafer and a wafer of another product (die pitch 10 mm instead of 8 mm)."""
    folder = tmp_path_factory.mktemp("lot")
    make_lot(folder, wafers=4, seed=5, lot_id="LOT-T")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    cv2.imwrite(str(folder / "empty.png"), np.full((2048, 2048), 20, np.uint8))
    other, _ = render_lot_wafer(LotSpec(die_pitch_um=(10000.0, 10000.0)), "none", 0, seed=9)
    cv2.imwrite(str(folder / "other-product.png"), other)
    with (folder / "lot.csv").open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for slot, name in enumerate(("broken", "empty", "other-product"), 5):
            writer.writerow((f"{name}.png", name, "LOT-T", slot, "", ""))
    return folder


@pytest.fixture()
def lot_copy(graded_lot_source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(graded_lot_source, tmp_path / "lot"))
