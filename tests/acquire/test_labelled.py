from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.acquire.labelled import LabelledFolderError, list_labelled_folder, stratified_split


def image(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8), value, np.uint8))


def test_flat_layout_with_ignored_files(tmp_path: Path) -> None:
    for name in ("good", "scratch"):
        for i in range(3):
            image(tmp_path / name / f"{i}.png")
    (tmp_path / "good" / "notes.txt").write_text("x")
    data = list_labelled_folder(tmp_path)
    assert data.class_names == ("good", "scratch")
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert set(data.split) == {""}
    assert [p.name for p in data.ignored_files] == ["notes.txt"]
    assert data.class_counts() == {"good": 3, "scratch": 3}
    assert len(data.content_hash()) == 64


def test_split_layout(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for name in ("a", "b"):
            image(tmp_path / split / name / "x.png")
    data = list_labelled_folder(tmp_path)
    assert data.class_names == ("a", "b") and sorted(data.split.tolist()) == ["train", "train", "val", "val"]


def test_bad_folders(tmp_path: Path) -> None:
    image(tmp_path / "good" / "0.png")
    with pytest.raises(LabelledFolderError, match=r"found 1 class folder\(s\) \(good\); expected at least 2"):
        list_labelled_folder(tmp_path)
    (tmp_path / "scratch").mkdir()
    with pytest.raises(LabelledFolderError, match=r"scratch: class folder holds no image files"):
        list_labelled_folder(tmp_path)
    image(tmp_path / "scratch" / "0.png")
    with pytest.raises(LabelledFolderError, match=r"class folder\(s\) scratch are not among the model's classes"):
        list_labelled_folder(tmp_path, class_names=("good", "particle"))
    with pytest.raises(LabelledFolderError, match="no such folder"):
        list_labelled_folder(tmp_path / "missing")


def test_stratified_split_keeps_every_class_in_training() -> None:
    labels = np.array([0] * 10 + [1] * 3 + [2])
    is_val = stratified_split(labels, val_fraction=0.2, seed=1)
    assert is_val[labels == 0].sum() == 2 and is_val[labels == 1].sum() == 1 and not is_val[labels == 2].any()
    assert (is_val == stratified_split(labels, val_fraction=0.2, seed=1)).all()
