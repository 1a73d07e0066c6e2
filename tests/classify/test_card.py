"""A model card is outside data too: every field is checked, and the files it names stay inside its folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inspection.classify import Classifier
from inspection.classify.card import CardError
from tests.conftest import REPO_ROOT

MODEL = REPO_ROOT / "models" / "die-patchnet-v1"


def _tampered(tmp_path: Path, change: dict) -> Path:
    folder = Path(shutil.copytree(MODEL, tmp_path / "model"))
    card = json.loads((folder / "model.json").read_text())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        target = card
        for key in parents:
            target = target[key]
        target[last] = value
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.mark.parametrize(("change", "expected"), [
    ({"onnx_file": "../../../../etc/passwd"}, "must be a file name inside the model folder"),
    ({"onnx_file": "/etc/passwd"}, "must be a file name inside the model folder"),
    ({"int8.file": "../outside.onnx"}, "must be a file name inside the model folder"),
    ({"thresholds.good_class": "flawless"}, "good_class 'flawless' is not one of class_names"),
    ({"normalisation.std": [0.0]}, "greater than 0"),
    ({"normalisation.mean": [0.5, 0.5, 0.5]}, "normalisation.mean has 3 value"),
    ({"input.height": 10**9}, "less than or equal to 4096"),
    ({"class_names": ["good"]}, "two or more distinct names"),
])
def test_a_hostile_or_broken_card_is_refused_before_any_file_is_opened(tmp_path: Path, change: dict,
                                                                        expected: str) -> None:
    folder = _tampered(tmp_path, change)
    with pytest.raises(CardError, match=expected) as caught:
        Classifier(folder)
    assert "model.json" in str(caught.value)


@pytest.mark.parametrize("name", ["die-patchnet-v1", "pcb-patchnet-l-v7", "wafer-line-patchnet-v1",
                                  "wafermap-patchnet-v5"])
def test_a_shipped_onnx_file_carries_its_contract_for_tools_that_read_only_onnx(name: str) -> None:
    onnx = pytest.importorskip("onnx")
    classifier = Classifier(MODEL.parent / name)
    model = onnx.load(str(classifier.onnx_path))
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(metadata["class_names"]) == classifier.card.class_names
    assert json.loads(metadata["names"]) == {str(i): n for i, n in enumerate(classifier.card.class_names)}
    assert json.loads(metadata["input"])["height"] == classifier.card.input.height
    assert metadata["task"] == classifier.card.task and model.model_version >= 1
    assert "wafer-inspect" in model.doc_string and "model.json" in model.doc_string


def test_an_onnx_file_whose_metadata_says_another_model_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from inspection.classify.card import sha256_of

    folder = Path(shutil.copytree(MODEL, tmp_path / "model"))
    model = onnx.load(str(folder / "model.onnx"))
    for prop in model.metadata_props:
        if prop.key == "class_names":
            prop.value = json.dumps(["good", "crack"])
    onnx.save(model, str(folder / "model.onnx"))
    card = json.loads((folder / "model.json").read_text())
    card["onnx_sha256"] = sha256_of(folder / "model.onnx")  # a consistent sha256: only the metadata disagrees
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(CardError, match=r"its metadata says class_names = \["):
        Classifier(folder)
