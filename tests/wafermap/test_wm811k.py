"""WM-811K as published (LSWMD.pkl, a pickled pandas frame): converted by the data set's own split, and a pickle
that names anything but a frame of arrays refused before it is loaded."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from inspection.wafermap import read_map_file, read_npz
from inspection.wafermap.maps import PATTERNS, WaferMapError
from inspection.wafermap.wm811k import read_lswmd
from tests.conftest import REPO_ROOT, run_cli

pandas = pytest.importorskip("pandas")
WM811K = REPO_ROOT.parent / "shared" / "data" / "wm811k" / "wm811k_dev.npz"


def _cell(text: str | None) -> np.ndarray:
    """A label cell as LSWMD.pkl holds it: a 1 x 1 array of the text, or an empty array."""
    return np.array([[text]], dtype=object) if text is not None else np.zeros((1, 0))


def _frame(maps: list[np.ndarray], labels: list[str | None], splits: list[str | None]) -> pandas.DataFrame:
    return pandas.DataFrame({
        "waferMap": maps, "dieSize": [float(m.size) for m in maps], "lotName": [f"lot{i // 25 + 1}" for i in
                                                                                   range(len(maps))],
        "waferIndex": [float(i % 25 + 1) for i in range(len(maps))],
        "trianTestLabel": [_cell(s) for s in splits], "failureType": [_cell(label) for label in labels]})


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_frame_of_the_published_layout_converts_by_its_own_split(tmp_path: Path, protocol: int) -> None:
    rng = np.random.default_rng(protocol)
    maps = [rng.integers(0, 3, size=(int(rng.integers(5, 30)), int(rng.integers(5, 30))), dtype=np.uint8)
            for _ in range(60)]
    labels = [PATTERNS[i % len(PATTERNS)] if i % 3 else None for i in range(60)]
    splits = [("Training" if i % 2 else "Test") if label else None for i, label in enumerate(labels)]
    source = tmp_path / "LSWMD.pkl"
    source.write_bytes(pickle.dumps(_frame(maps, labels, splits), protocol=protocol))
    run_cli("wafermap", "convert", str(source), "--out", str(tmp_path / "wm"), "-q")
    for name, wanted in (("train", "Training"), ("test", "Test")):
        rows = [i for i in range(60) if labels[i] and splits[i] == wanted]
        converted = read_npz(tmp_path / "wm" / f"{name}.npz")
        assert [converted.label_names[k] for k in converted.labels] == [labels[i] for i in rows]  # type: ignore[union-attr]
        assert all(np.array_equal(a, maps[i]) for a, i in zip(converted.maps, rows, strict=True))
    unlabelled = read_npz(tmp_path / "wm" / "unlabelled.npz")
    assert unlabelled.labels is None and len(unlabelled.maps) == labels.count(None)
    with np.load(tmp_path / "wm" / "train.npz") as stored:
        assert stored["lot_name"][0] == "lot1" and stored["wafer_index"][0] == 2


@pytest.mark.skipif(not WM811K.is_file(), reason="../shared/data/wm811k is not here")
def test_real_maps_round_trip_through_the_published_layout(tmp_path: Path) -> None:
    real = read_npz(WM811K)
    chosen = range(0, len(real.maps), 97)  # 512 real maps of every size
    labels = [real.label_names[int(real.labels[i])] for i in chosen]  # type: ignore[index]
    source = tmp_path / "LSWMD.pkl"
    _frame([real.maps[i] for i in chosen], labels, ["Test"] * len(labels)).to_pickle(source)
    back = read_lswmd(source, progress=False)
    assert back.labels == labels and all(np.array_equal(a, real.maps[i]) for a, i in zip(back.maps, chosen,
                                                                                         strict=True))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize(("content", "expected"), [
    ("payload", r"names posix\.system, which is not part of a pandas frame of wafer maps; it is refused unloaded"),
    ("dict", "holds a dict, not a pandas frame of wafer maps"),
    ("columns", "no column failureType, trianTestLabel; WM-811K's frame has"),
    ("label", r"row 1: failureType 'Crack' is not a WM-811K pattern"),
    ("map", r"row 0: waferMap is str, not a 2-D numeric array"),
    ("truncated", "not a readable pickle of a pandas frame"),
])
def test_any_other_pickle_is_refused_by_name(tmp_path: Path, content: str, expected: str) -> None:
    marker, source = tmp_path / "ran", tmp_path / "LSWMD.pkl"
    good = _frame([np.ones((3, 3), np.uint8)] * 2, ["none", "none"], ["Test", "Test"])
    data = {
        "payload": lambda: pickle.dumps([_Payload(marker)]),
        "dict": lambda: pickle.dumps({"waferMap": []}),
        "columns": lambda: pickle.dumps(good[["waferMap"]]),
        "label": lambda: pickle.dumps(_frame([np.ones((3, 3), np.uint8)] * 2, ["none", "Crack"], ["Test"] * 2)),
        "map": lambda: pickle.dumps(good.assign(waferMap=["x", "y"])),
        "truncated": lambda: pickle.dumps(good)[:200],
    }[content]()
    source.write_bytes(data)
    with pytest.raises(WaferMapError, match=expected):
        read_lswmd(source, progress=False)
    assert not marker.exists()  # the payload never ran
    refused = run_cli("wafermap", "convert", str(source), "--out", str(tmp_path / "wm"), check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and not marker.exists()


def test_a_pickle_given_as_a_map_points_to_convert(tmp_path: Path) -> None:
    source = tmp_path / "LSWMD.pkl"
    source.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(WaferMapError, match=r"inspect wafermap convert .*LSWMD.pkl --out DIR"):
        read_map_file(source)
