"""The DeepPCB pair-list reader: layout, annotations, and errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.acquire.deeppcb import PairListError, read_pair_list


def _layout(root: Path, annotation: str) -> Path:
    (root / "group1" / "1").mkdir(parents=True)
    (root / "group1" / "1_not").mkdir()
    for suffix in ("test", "temp"):
        cv2.imwrite(str(root / "group1" / "1" / f"10000_{suffix}.jpg"), np.full((64, 64), 255, np.uint8))
    (root / "group1" / "1_not" / "10000.txt").write_text(annotation)
    listing = root / "list.txt"
    listing.write_text("group1/1/10000.jpg group1/1_not/10000.txt\n")
    return listing


def test_reads_pairs_and_boxes(tmp_path: Path) -> None:
    listing = _layout(tmp_path, "1 2 30 40 1\n5 5 20 20 6\n")
    [pair] = read_pair_list(tmp_path, listing)
    assert pair.group == "1" and pair.name == "group1/1/10000"
    assert pair.test_path.name == "10000_test.jpg" and pair.template_path.name == "10000_temp.jpg"
    assert pair.boxes.tolist() == [[1, 2, 30, 40], [5, 5, 20, 20]] and pair.kinds == ("open", "pin-hole")
    assert read_pair_list(tmp_path, "list.txt")[0].name == pair.name  # a list named relative to the root


@pytest.mark.parametrize(("annotation", "message"), [
    ("1 2 30 40\n", r"10000.txt:1: expected 'x1 y1 x2 y2 type'"),
    ("1 2 30 40 9\n", r"10000.txt:1: defect type 9 is not one of 1..6"),
    ("30 2 1 40 1\n", r"10000.txt:1: box \(30, 2, 1, 40\) is empty"),
])
def test_bad_annotations_name_file_and_line(tmp_path: Path, annotation: str, message: str) -> None:
    listing = _layout(tmp_path, annotation)
    with pytest.raises(PairListError, match=message):
        read_pair_list(tmp_path, listing)


def test_bad_lists_name_the_problem(tmp_path: Path) -> None:
    listing = _layout(tmp_path, "")
    (tmp_path / "group1" / "1" / "10000_temp.jpg").unlink()
    with pytest.raises(PairListError, match=r"list.txt:1: .*10000_temp.jpg does not exist"):
        read_pair_list(tmp_path, listing)
    listing.write_text("just-one-field\n")
    with pytest.raises(PairListError, match=r"list.txt:1: expected 'IMAGE.jpg ANNOTATION.txt'"):
        read_pair_list(tmp_path, listing)
    listing.write_text("\n")
    with pytest.raises(PairListError, match="the pair list is empty"):
        read_pair_list(tmp_path, listing)
    with pytest.raises(PairListError, match="cannot read the pair list"):
        read_pair_list(tmp_path, tmp_path / "missing.txt")
