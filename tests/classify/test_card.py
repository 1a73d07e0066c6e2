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
