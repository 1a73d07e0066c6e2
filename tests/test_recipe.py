from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from inspection.chain.chain import build_chain, build_wafer_chain
from inspection.recipe import BUNDLED_RECIPES, RecipeError, load_recipe
from inspection.types import InspectionError
from tests.conftest import REPO_ROOT

WAFER_DIE_HEAD = "name: a\nkind: wafer-die\npixel_size_um: 5\ngrade: {review_area_um2: 1, fail_area_um2: 2}\n"
GOOD = {
    "name": "line-3",
    "kind": "wafer-die",
    "pixel_size_um": 5.0,
    "reference": {"golden": "sim:wafer"},
    "grade": {"review_area_um2": 100, "fail_area_um2": 400},
}


def write(tmp_path: Path, data: object, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", BUNDLED_RECIPES)
def test_bundled_recipes_load_and_build_their_chain(name: str) -> None:
    recipe = load_recipe(name)
    assert name.startswith(recipe.kind) and len(recipe.sha256()) == 64
    with build_wafer_chain(recipe) if recipe.kind == "wafer-lot" else build_chain(recipe) as chain:
        assert chain.stage_names[0] == "preprocess"
        if recipe.classify is not None:
            assert chain.classifier is not None and chain.batcher is not None
        else:  # pcb-anomaly: the anomaly model alone, no golden
            assert recipe.anomaly is not None and chain.anomaly_batcher is not None
            assert chain.stage_names == ("preprocess", "anomaly", "classify", "grade")


def test_old_recipes_get_one_message_saying_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"kind 'wafer' was renamed 'wafer-die' in version 0\.2"):
        load_recipe(write(tmp_path, {**GOOD, "kind": "wafer"}))
    old_lot = {"name": "lot", "kind": "wafer-lot", "pixel_size_um": 150, "models": {"die": "d", "wafer_map": "m"}}
    with pytest.raises(RecipeError, match=r"now two sections: classify: \{model: <models.die>"):
        load_recipe(write(tmp_path, old_lot))
    with pytest.raises(RecipeError, match="the bundled recipe was renamed 'wafer-die'"):
        load_recipe("wafer")


def _chain_error(tmp_path: Path, classify: dict[str, object]) -> str:
    data = {**GOOD, "classify": {"model": str(REPO_ROOT / "models" / "wafer-line-patchnet-v1"), **classify}}
    with pytest.raises(InspectionError) as caught:
        build_chain(load_recipe(write(tmp_path, data)))
    return str(caught.value)


def test_a_chain_whose_model_does_not_fit_the_recipe_is_refused_naming_file_and_field(tmp_path: Path) -> None:
    message = _chain_error(tmp_path, {"fail_classes": ["particle", "crack"]})
    assert "recipe.yaml: classify rules name crack, which the model" in message
    assert "(its classes: good, particle, scratch, stain)" in message
    message = _chain_error(tmp_path, {"model": str(tmp_path / "gone")})
    assert "recipe.yaml: classify.model: " in message and "gone: no model there" in message
    message = _chain_error(tmp_path, {"model": "models/gone"})  # relative: every place looked in is named
    assert "recipe.yaml: classify.model: model 'models/gone' not found; looked in: " in message
    assert str(tmp_path / "models" / "gone") in message and "bundled_models/gone" in message
    message = _chain_error(tmp_path, {"model": str(REPO_ROOT / "models" / "die-patchnet-v1")})
    assert "takes 1-channel input; a wafer-die chain gives it 3-channel crops" in message
    tampered = tmp_path / "tampered"
    shutil.copytree(REPO_ROOT / "models" / "wafer-line-patchnet-v1", tampered)
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes() + b"\0")
    message = _chain_error(tmp_path, {"model": str(tampered)})
    assert "recipe.yaml: classify.model " in message and "does not match the card's" in message
    message = _chain_error(tmp_path, {"device": "cuda"})
    assert "--device cuda: ONNX Runtime here has no CUDAExecutionProvider (present: " in message


def test_sections_must_fit_the_kind(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="a pcb recipe needs classify"):
        load_recipe(write(tmp_path, {**GOOD, "kind": "pcb"}))
    with pytest.raises(RecipeError, match="a wafer-lot recipe needs classify, rules, wafer, wafermap"):
        load_recipe(write(tmp_path, {**GOOD, "kind": "wafer-lot", "grade": None, "reference": None}))
    with pytest.raises(RecipeError, match="classes \\['stain'\\] are in both fail_classes and review_classes"):
        load_recipe(write(tmp_path, {**GOOD, "classify": {"model": "m", "fail_classes": ["stain"],
                                                            "review_classes": ["stain"]}}))


def test_minimal_recipe_gets_documented_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, GOOD))
    assert recipe.align is None and recipe.pipeline.queue_depth == 8  # the chain registers by phase then
    assert recipe.source_path == str(tmp_path / "recipe.yaml")


def test_unknown_key_is_rejected_with_its_path_and_the_allowed_keys(tmp_path: Path) -> None:
    data = {**GOOD, "align": {"methd": "phase"}}
    with pytest.raises(RecipeError) as error:
        load_recipe(write(tmp_path, data))
    message = str(error.value)
    assert "recipe.yaml" in message and "align.methd: unknown key" in message
    assert "method, max_shift_px, min_score" in message


def test_wrong_value_names_field_value_and_expectation(tmp_path: Path) -> None:
    data = {**GOOD, "pixel_size_um": -2, "pipeline": {"workers": "many"}}
    with pytest.raises(RecipeError) as error:
        load_recipe(write(tmp_path, data))
    message = str(error.value)
    assert "2 problem(s)" in message
    assert "pixel_size_um: got -2; input should be greater than or equal to 0.01" in message
    assert "pipeline.workers: got 'many'; input should be a valid integer" in message


def test_missing_field_and_cross_field_rule(tmp_path: Path) -> None:
    data = {k: v for k, v in GOOD.items() if k != "kind"}
    data["grade"] = {"review_area_um2": 500, "fail_area_um2": 100}
    with pytest.raises(RecipeError) as error:
        load_recipe(write(tmp_path, data))
    assert "kind: required field is missing" in str(error.value)
    assert "fail_area_um2 (100.0) must be >= review_area_um2 (500.0)" in str(error.value)


def test_golden_image_path_is_relative_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "golden.png").write_bytes(b"")
    recipe = load_recipe(write(tmp_path, {**GOOD, "reference": {"golden": "golden.png"}}))
    assert recipe.reference.golden == str((tmp_path / "golden.png").resolve())
    with pytest.raises(RecipeError, match=r"reference.golden: got 'missing.png'; expected an image file"):
        load_recipe(write(tmp_path, {**GOOD, "reference": {"golden": "missing.png"}}))


def test_not_a_recipe(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not a bundled recipe"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="expected a mapping of recipe fields, got list"):
        load_recipe(write(tmp_path, [1, 2]))
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match=r"bad\.yaml: not valid YAML"):
        load_recipe(bad_yaml)


def test_a_recipe_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: Linie-3 Prüfplatz\nkind: wafer-die\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=rf"{path}: not UTF-8 text \(byte 16\)"):
        load_recipe(path)


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 values expanded
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\nname: *a8\n")
    with pytest.raises(RecipeError, match="expands to more than 100,000 values"):
        load_recipe(path)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(RecipeError, match="a recipe is at most 1,048,576"):
        load_recipe(huge)


@pytest.mark.parametrize(("section", "field", "value", "expected"), [
    (None, "pixel_size_um", "1e400", "finite number"),
    (None, "pixel_size_um", ".nan", "finite number"),
    (None, "pixel_size_um", "20000", "less than or equal to 10000"),
    ("pipeline", "fetch_timeout_s", ".inf", "finite number"),
    ("inspect", "min_area_px", "1.0e+12", "less than or equal to 100000000"),
    ("inspect", "min_area_px", "1.0e+35", "exceeded maximum size"),
    ("grade", "fail_area_um2", "1.0e+300", "less than or equal to 1000000000000"),
    ("preprocess", "roi_xywh_px", "[-5, 0, 10, 10]", "greater than or equal to 0"),
    (None, "pixel_size_um", "1e-300", "greater than or equal to 0.01"),
    ("pipeline", "workers", "true", "got True; expected a number"),
])
def test_numbers_no_station_can_mean_are_refused_at_load(tmp_path: Path, section: str | None, field: str,
                                                         value: str, expected: str) -> None:
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in GOOD.items()}
    (data if section is None else data.setdefault(section, {}))[field] = "VALUE"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data).replace("VALUE", value))  # the literal as a person would type it
    with pytest.raises(RecipeError, match=expected) as caught:
        load_recipe(path)
    assert field in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("name: a\nname: b\n", r"key 'name' is given twice \(lines 1 and 2\)"),
    ("name: a\nreference: {golden: \"x\\0y\"}\n", r"reference.golden: control character U\+0000"),
    ("name: a\ncamera: {uri: \"sim:wafer\", feature_file: \"a\\0b.pfs\"}\n", r"camera.feature_file: control"),
    ("name: a\nopcua: {endpoint: \"opc.tcp://h:4840\", certificate: \"c\\x07.pem\"}\n", r"opcua.certificate: contr"),
    ("name: a\nreference: {golden: \"sim:wafer?size=0\"}\n", r"N within 64..8192 px"),
    (WAFER_DIE_HEAD + "reference: {golden: " + "W" * 5000 + "}\n", r"reference.golden: 'WWW.*not a usable file name"),
    (WAFER_DIE_HEAD + "reference: {golden: sim:wafer}\ncamera: {uri: x, feature_file: " + "W" * 5000 + "}\n",
     r"camera.feature_file: 'W.*not a usable file"),
    ("name: a\x00b\n", r"recipe.yaml:1: control character U\+0000"),
    ("extra: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 20 levels deep"),
    ("extra: " + "[ " * 3000 + "] " * 3000 + "\n", "nested too deep for a recipe|nested more than 20"),
])
def test_recipe_text_that_no_person_wrote_is_refused_by_name(tmp_path: Path, text: str, expected: str | None) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(InspectionError, match=expected) as caught:
        load_recipe(path)
    assert "recipe.yaml" in str(caught.value)
