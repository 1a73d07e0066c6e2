from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inspection.recipe import BUNDLED_RECIPES, RecipeError, load_recipe

GOOD = {
    "name": "line-3",
    "kind": "wafer",
    "pixel_size_um": 5.0,
    "reference": {"golden": "sim:wafer"},
    "grade": {"review_area_um2": 100, "fail_area_um2": 400},
}


def write(tmp_path: Path, data: object, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", BUNDLED_RECIPES)
def test_bundled_recipes_load(name: str) -> None:
    recipe = load_recipe(name)
    assert recipe.kind == name
    assert recipe.camera and recipe.camera.startswith(f"sim:{name}")
    assert len(recipe.sha256()) == 64


def test_minimal_recipe_gets_documented_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, GOOD))
    assert recipe.align.method == "phase" and recipe.pipeline.queue_depth == 8
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
    assert "pixel_size_um: got -2; input should be greater than 0" in message
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
