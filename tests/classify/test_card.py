"""A model card is outside data too: every field is checked, and the files it names stay inside its folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inspection.classify import Classifier
from inspection.classify.card import CardError
from tests.conftest import REPO_ROOT, run_cli

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
    ({"normalisation.std": [0.0]}, "greater than or equal to 0.001"),
    ({"normalisation.mean": [0.5, 0.5, 0.5]}, "normalisation.mean has 3 value"),
    ({"input.height": 10**9}, "less than or equal to 4096"),
    ({"class_names": ["good"]}, "two or more distinct names"),
    ({"normalisation.std": [1e-300]}, "greater than or equal to 0.001"),
    ({"thresholds.defect_score": 5}, "less than or equal to 1"),
    ({"thresholds.defect_score": -3}, "greater than or equal to 0"),
    ({"opset": -7}, "opset: Input should be greater than or equal to 7"),
    ({"parity.samples": -1}, "parity.samples: Input should be greater than or equal to 1"),
    ({"flops_per_image": -5}, "flops_per_image: Input should be greater than or equal to 1"),
    ({"onnx_sha256": "abc"}, "is not a SHA-256"),
    ({"torch_weights": "../weights.pt"}, "must be a file name inside the model folder"),
    ({"training.history": 10**40}, "an integer of 41 digits"),
    ({"onnx_file": "model.onnx\u0000.txt"}, r"onnx_file: control character U\+0000"),
    ({"class_names": ["good", "particle\n", "scratch", "stain"]}, r"class_names\[1\]: control character U\+000A"),
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
    assert model.model_version == int(name.rsplit("-v", 1)[1])  # the N of -vN, as models/README.md says
    assert json.loads(metadata["input"])["channel_order"] == classifier.card.input.channel_order
    assert len(classifier.card.input.channel_order or []) == classifier.card.input.channels
    assert json.loads(metadata["imgsz"]) == [classifier.card.input.height, classifier.card.input.width]
    assert {"stride", "author", "license", "version"} <= set(metadata) and "date" not in metadata  # same bytes


@pytest.mark.parametrize("path", sorted(MODEL.parent.glob("*/*.onnx")), ids=lambda path: f"{path.parent.name}/"
                         f"{path.name}")
def test_every_shipped_onnx_file_passes_the_onnx_checker_in_full(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)  # FP16 graphs once had unsorted nodes


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


def test_files_linked_from_outside_the_model_folder_are_refused_unread(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name in ("model.onnx", "model.json"):
        folder = Path(shutil.copytree(MODEL, tmp_path / f"linked-{name}"))
        (outside / name).write_bytes((folder / name).read_bytes())
        (folder / name).unlink()
        (folder / name).symlink_to(outside / name)
        with pytest.raises(CardError, match=f"{name}: .* is a link to .*elsewhere/{name}, outside the model folder"):
            Classifier(folder)
    within = Path(shutil.copytree(MODEL, tmp_path / "within"))  # a link inside the folder is the folder's file
    (within / "model.onnx").rename(within / "weights.onnx")
    (within / "model.onnx").symlink_to("weights.onnx")
    assert Classifier(within).class_names


def _card_for(folder: Path, graph: object, onnx: object) -> Path:
    from inspection.classify.card import sha256_of

    onnx.save_model(graph, str(folder / "model.onnx"))  # type: ignore[attr-defined]
    card = json.loads((folder / "model.json").read_text())
    card["onnx_sha256"] = sha256_of(folder / "model.onnx")
    card.pop("checks", None)
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def _graph(onnx: object, *, classes: int, output: str = "probabilities", input_type: int = 1) -> object:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((1, classes), np.float32), "w")
    nodes = ([helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT)] if input_type != 1 else
             [helper.make_node("Identity", ["images"], ["x"])])
    nodes += [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"]),
              helper.make_node("Softmax", ["logits"], [output], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", input_type, ["n", 1, 64, 64])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["n", classes])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(("make", "expected"), [
    ({"classes": 2}, r"output probabilities is batch x 2; the card expects 6 class probabilities"),
    ({"classes": 9}, r"output probabilities is batch x 9; the card expects 6 class probabilities"),
    ({"classes": 6, "output": "scores"}, r"outputs scores; the card names 'probabilities'"),
    ({"classes": 6, "input_type": 2}, r"input images is tensor\(uint8\); the card's contract is float32"),
])
def test_an_onnx_graph_that_is_not_the_cards_model_does_not_load(tmp_path: Path, make: dict, expected: str) -> None:
    onnx = pytest.importorskip("onnx")
    folder = _card_for(Path(shutil.copytree(MODEL, tmp_path / "model")), _graph(onnx, **make), onnx)
    with pytest.raises(CardError, match=expected):
        Classifier(folder)


def test_weights_kept_outside_the_onnx_file_are_refused(tmp_path: Path) -> None:
    """ONNX external data (a .bin beside the graph) is not covered by the card's hash: changed weights would
    load and change predictions."""
    onnx = pytest.importorskip("onnx")
    folder = Path(shutil.copytree(MODEL, tmp_path / "model"))
    model = _graph(onnx, classes=6)
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, location="w.bin",
                    size_threshold=0)
    _card_for(folder, onnx.load(str(folder / "model.onnx"), load_external_data=False), onnx)
    with pytest.raises(CardError, match=r"weights are partly in other files \(w.bin\)"):
        Classifier(folder)


def test_export_metadata_rewrites_an_older_models_files_and_their_hashes(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    folder = Path(shutil.copytree(MODEL, tmp_path / "old-v3"))
    for name in ("model.onnx", "model-fp16.onnx"):  # as an older version wrote them: no metadata, minute stamp
        model = onnx.load(str(folder / name))
        del model.metadata_props[:]
        model.model_version = 202611211234
        onnx.save(model, str(folder / name))
    from inspection.classify.card import sha256_of

    card = json.loads((folder / "model.json").read_text())
    del card["input"]["channel_order"]
    card["onnx_sha256"], card["fp16"]["sha256"] = sha256_of(folder / "model.onnx"), sha256_of(folder /
                                                                                              "model-fp16.onnx")
    (folder / "model.json").write_text(json.dumps(card))
    run_cli("export", str(folder), "--metadata", timeout=300)
    for precision in ("fp32", "fp16", "int8"):
        classifier = Classifier(folder, precision=precision)  # loads and reproduces its check inputs
        model = onnx.load(str(classifier.onnx_path))
        assert model.model_version == 3 and classifier.card.input.channel_order == ["grey level"]
