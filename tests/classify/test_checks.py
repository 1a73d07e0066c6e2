"""Never run a variant the machine has not checked: the card's check inputs, the load check, the fallback a
recipe may allow, the shipped variants' figures and inspect doctor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inspection.classify import Classifier, VariantCheckError
from inspection.classify.card import CardError, read_card, sha256_of
from inspection.classify.doctor import check_variants
from tests.conftest import REPO_ROOT, run_cli

pytest.importorskip("onnxruntime")
MODELS = REPO_ROOT / "models"
SHIPPED_ONNX_MODELS = sorted(p for p in MODELS.iterdir() if (p / "model.onnx").is_file())


def _copy(model: str, tmp_path: Path) -> Path:
    copy = tmp_path / model
    shutil.copytree(MODELS / model, copy, ignore=shutil.ignore_patterns("weights.pt", "*.png", "trt-cache"))
    return copy


def _edit_card(folder: Path, **changes: object) -> None:
    card = json.loads((folder / "model.json").read_text())
    card.update(changes)
    (folder / "model.json").write_text(json.dumps(card))


@pytest.mark.parametrize("model_dir", SHIPPED_ONNX_MODELS, ids=lambda p: p.name)
def test_every_shipped_variant_reproduces_its_check_outputs_here(model_dir: Path) -> None:
    card, _ = read_card(model_dir)
    assert card.checks is not None and card.checks.images >= 2 and card.checks.made_on
    for precision in ("fp32", "fp16", "int8"):
        if precision != "fp32" and getattr(card, precision) is None:
            continue
        report = Classifier(model_dir, precision=precision).check_report  # type: ignore[arg-type]
        assert report is not None and report["images"] == card.checks.images
        assert report["max_abs_diff"] <= card.checks.tolerance[precision].max_abs_diff
        assert report["argmax_agreement"] >= card.checks.tolerance[precision].min_argmax_agreement


def test_shipped_int8_variants_name_their_quantiser_and_the_cpu_that_measured_them() -> None:
    for name in ("die-patchnet-v1", "pcb-patchnet-l-v7"):
        card, _ = read_card(MODELS / name)
        assert (card.int8 is not None and "EPYC" in card.int8.measured_on) or "Xeon" in card.int8.measured_on
        assert card.int8.quantiser["per_channel"] is True
        assert card.int8.int8["accuracy"] >= card.int8.fp32["accuracy"] - 0.002
    # The die model's weights are 7-bit: no U8S8 saturation on CPUs without VNNI.
    assert read_card(MODELS / "die-patchnet-v1")[0].int8.quantiser["reduce_range"] is True  # type: ignore[union-attr]


def test_a_variant_that_disagrees_is_refused_naming_variant_device_and_disagreement(tmp_path: Path) -> None:
    """A machine whose INT8 kernels go wrong, faked by check outputs the variant cannot reproduce (the classes
    of half the inputs swapped: what a saturating CPU did to the old die model)."""
    copy = _copy("die-patchnet-v1", tmp_path)
    card, _ = read_card(copy)
    assert card.checks is not None
    with np.load(copy / card.checks.file) as arrays:
        inputs, outputs = arrays["inputs"], arrays["outputs"].copy()
    half = len(outputs) // 2
    outputs[:half] = np.roll(outputs[:half], 1, axis=1)
    with (copy / card.checks.file).open("wb") as file:
        np.savez_compressed(file, inputs=inputs, outputs=outputs)
    _edit_card(copy, checks={**card.checks.model_dump(), "sha256": sha256_of(copy / card.checks.file)})
    with pytest.raises(VariantCheckError) as refused:
        Classifier(copy, precision="int8")
    message = str(refused.value)
    assert "model-int8.onnx: int8 on CPUExecutionProvider" in message and "max |dp|" in message
    assert "argmax agreement" in message and "(tolerance 0.2)" in message and "refused" in message
    # The same class for FP32 on this CPU (it must reproduce what it computed) and FP16.
    for precision in ("fp32", "fp16"):
        with pytest.raises(VariantCheckError, match=f"{precision} on CPUExecutionProvider"):
            Classifier(copy, precision=precision)  # type: ignore[arg-type]
    images = tmp_path / "dies"
    run_cli("synth", "dies", str(images), "--per-class", "2", "--seed", "6")
    evaluation = run_cli("eval", str(copy), str(images), "--int8", check=False)  # evaluations load the same way
    assert evaluation.returncode == 2 and "does not reproduce FP32" in evaluation.stderr


def test_a_changed_or_missing_check_set_is_refused_and_a_variant_without_one_cannot_run(tmp_path: Path) -> None:
    copy = _copy("die-patchnet-v1", tmp_path)
    (copy / "checks.npz").write_bytes(b"not the check set")
    with pytest.raises(CardError, match=r"checks.npz: sha256 .* does not match the card's"):
        Classifier(copy, precision="int8")
    _edit_card(copy, checks=None)
    Classifier(copy)  # FP32 on the CPU is the reference itself
    with pytest.raises(VariantCheckError, match=r"int8 on CPUExecutionProvider cannot be checked .* --checks FOLDER"):
        Classifier(copy, precision="int8")


def test_inspect_export_checks_makes_a_check_set_from_real_images(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="exporting needs the [train] extra")
    copy = _copy("die-patchnet-v1", tmp_path)
    (copy / "checks.npz").unlink()
    _edit_card(copy, checks=None)
    images = tmp_path / "dies"
    run_cli("synth", "dies", str(images), "--per-class", "6", "--seed", "5")
    process = run_cli("export", str(copy), "--checks", str(images), timeout=300)
    assert "30 check inputs" in process.stderr or "check inputs from" in process.stderr
    card, _ = read_card(copy)
    assert card.checks is not None and card.checks.source == str(images) and card.checks.images >= 12
    with np.load(copy / "checks.npz") as arrays:
        assert arrays["inputs"].dtype == np.float16 and arrays["outputs"].shape == (card.checks.images, 6)
        labels = arrays["outputs"].argmax(1)
    assert len(set(labels.tolist())) == 6  # every class among the check inputs
    assert Classifier(copy, precision="int8").check_report["argmax_agreement"] == 1.0  # type: ignore[index]


def test_a_recipe_falls_back_to_fp32_only_when_it_says_so(tmp_path: Path) -> None:
    from inspection.chain.chain import build_chain
    from inspection.recipe import RecipeError, load_recipe

    copy = _copy("pcb-patchnet-l-v7", tmp_path)
    card, _ = read_card(copy)
    assert card.checks is not None
    # This machine's INT8 "disagrees": a tolerance no INT8 variant meets.
    tolerance = {**card.checks.model_dump()["tolerance"], "int8": {"max_abs_diff": 1e-9, "min_argmax_agreement": 1}}
    _edit_card(copy, checks={**card.checks.model_dump(), "tolerance": tolerance})
    bundled = (REPO_ROOT / "inspect" / "inspection" / "recipes" / "pcb-deeppcb.yaml").read_text()
    assert "precision: int8" in bundled
    recipe_file = tmp_path / "station.yaml"
    recipe_file.write_text(bundled.replace("models/pcb-patchnet-l-v7", str(copy)))
    with pytest.raises(RecipeError, match=r"int8 on CPUExecutionProvider .* does not reproduce FP32"):
        build_chain(load_recipe(recipe_file))
    recipe_file.write_text(bundled.replace("models/pcb-patchnet-l-v7", str(copy)).replace(
        "precision: int8", "precision: int8\n  fallback_to_fp32: true"))
    chain = build_chain(load_recipe(recipe_file))
    assert chain.classifier is not None and chain.classifier.precision == "fp32"
    assert chain.classifier.onnx_path.name == "model.onnx"


def test_doctor_loads_every_shipped_variant_and_reports_a_refused_one(tmp_path: Path) -> None:
    report = json.loads(run_cli("doctor", "--json").stdout)
    checked = {(Path(r["model"]).name, r["precision"], r["device"]) for r in report["variants"]}
    assert {("die-patchnet-v1", "int8", "cpu"), ("pcb-patchnet-l-v7", "fp16", "cpu"),
            ("wafermap-patchnet-v5", "fp32", "cpu")} <= checked
    assert all(r["ok"] for r in report["variants"]) and report["problems"] == []
    copy = _copy("die-patchnet-v1", tmp_path)
    _edit_card(copy, checks=None)
    rows = check_variants([copy])
    assert [r["ok"] for r in rows] == [True, False, False] and "cannot be checked" in rows[2]["error"]
