"""The station recipe: validated once at start-up, then passed down to the stages as arguments.

A recipe is a YAML file. Unknown keys are rejected and every error names the file, the path of the field,
the value found and what was expected, so a typo on the line never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inspection.synthetic import SIM_KINDS, SimKind
from inspection.types import InspectionError

BUNDLED_RECIPES = ("wafer", "pcb")
BUNDLED_LOT_RECIPES = ("wafer-lot",)


class RecipeError(InspectionError, ValueError):
    """A recipe that cannot be used, with every problem found in it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Fingerprinted(_Section):
    def sha256(self) -> str:
        """Fingerprint of the validated content (stored with every run, so results name the exact recipe)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class PreprocessSettings(_Section):
    bit_depth: int | None = Field(None, ge=1, le=16)
    """Significant bits of the camera's pixels; None takes what the camera reports."""
    denoise: Literal["none", "median", "gaussian"] = "none"
    denoise_kernel_px: int = Field(3, ge=3, le=31)
    clahe: bool = False
    clahe_clip_limit: float = Field(2.0, gt=0)
    roi_xywh_px: tuple[int, int, int, int] | None = None
    """Region of interest (x, y, width, height) in pixels; None keeps the whole frame."""
    flatfield: str | None = None
    """Station folder (or its flatfield.npz) written by `inspect calibrate flatfield`; None: no correction."""

    @model_validator(mode="after")
    def _odd_kernel(self) -> PreprocessSettings:
        if self.denoise_kernel_px % 2 == 0:
            raise ValueError(f"denoise_kernel_px must be odd, got {self.denoise_kernel_px}")
        if self.roi_xywh_px is not None and min(self.roi_xywh_px[2:]) <= 0:
            raise ValueError(f"roi_xywh_px needs a positive width and height, got {self.roi_xywh_px}")
        return self


class ReferenceSettings(_Section):
    golden: str
    """The defect-free reference: an image file (relative to the recipe) or a synthetic one, ``sim:wafer``."""

    @model_validator(mode="after")
    def _known_synthetic(self) -> ReferenceSettings:
        if self.golden.startswith("sim:"):
            synthetic_reference(self.golden)
        return self


def synthetic_reference(golden: str) -> tuple[SimKind, int]:
    """(kind, size in pixels) of a synthetic reference ``sim:wafer|pcb[?size=N]``."""
    kind, _, query = golden.removeprefix("sim:").partition("?")
    options = dict(parse_qsl(query))
    if kind not in SIM_KINDS or set(options) - {"size"} or not options.get("size", "512").isdigit():
        raise ValueError(f"a synthetic reference is sim:wafer or sim:pcb with an optional ?size=N, got {golden!r}")
    return kind, int(options.get("size", 512))  # type: ignore[return-value]


class AlignSettings(_Section):
    method: Literal["phase", "none"] = "phase"
    """``phase``: subpixel translation by phase correlation; ``none``: the fixture holds the part in place."""
    max_shift_px: float = Field(20.0, gt=0)
    min_score: float = Field(0.2, ge=0, le=1)
    """Below this phase-correlation response the frame is not trusted and gets an error verdict."""


class InspectSettings(_Section):
    tolerance_grey: float = Field(30.0, gt=0)
    """Grey levels (8-bit scale) a pixel may leave the reference's local min/max band before it is a defect."""
    band_px: int = Field(1, ge=0, le=10)
    """Half-width of the local min/max band, absorbing residual misalignment and edge jitter."""
    min_area_px: int = Field(4, ge=1)
    """Connected regions smaller than this are sensor noise, not defects."""


class GradeSettings(_Section):
    review_area_um2: float = Field(..., ge=0)
    """Regions at least this large are reported as detections; a part with any goes to review at least."""
    fail_area_um2: float = Field(..., ge=0)
    """A detection at least this large fails the part."""
    max_detections: int = Field(0, ge=0)
    """More detections than this fail the part whatever their size (0: only size decides)."""

    @model_validator(mode="after")
    def _ordered(self) -> GradeSettings:
        if self.fail_area_um2 < self.review_area_um2:
            raise ValueError(
                f"fail_area_um2 ({self.fail_area_um2}) must be >= review_area_um2 ({self.review_area_um2})"
            )
        return self


class PipelineSettings(_Section):
    queue_depth: int = Field(8, ge=1, le=1024)
    """Frames waiting between stages; when full, acquisition waits (backpressure) instead of memory growing."""
    workers: int = Field(2, ge=1, le=64)
    fetch_timeout_s: float = Field(2.0, gt=0)
    latency_budget_ms: float = Field(250.0, gt=0)
    """Frames whose acquire-to-commit latency exceeds this are counted as late."""


class Recipe(_Fingerprinted):
    name: str = Field(..., min_length=1)
    kind: Literal["wafer", "pcb"]
    camera: str | None = None
    """The camera URI used when ``inspect run`` is given no ``--camera``."""
    pixel_size_um: float = Field(..., gt=0)
    preprocess: PreprocessSettings = PreprocessSettings()
    reference: ReferenceSettings
    align: AlignSettings = AlignSettings()
    inspect: InspectSettings = InspectSettings()
    grade: GradeSettings
    pipeline: PipelineSettings = PipelineSettings()
    source_path: str | None = Field(None, exclude=True)
    """The file the recipe was read from (set by :func:`load_recipe`)."""


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        parent: Any = model
        for part in error["loc"][:-1]:
            parent = parent.model_fields[str(part)].annotation
        allowed = ", ".join(name for name in parent.model_fields if name != "source_path")
        return f"{where}: unknown key; expected one of: {allowed}"
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: got {error['input']!r}; {message[0].lower()}{message[1:]}"


_Model = TypeVar("_Model", bound=BaseModel)


def _validate(data: Any, model: type[_Model], *, source: str) -> _Model:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: expected a mapping of recipe fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e, model) for e in exc.errors())
        raise RecipeError(f"{source}: invalid recipe ({exc.error_count()} problem(s)):\n  {problems}") from None


def parse_recipe(data: Any, *, source: str) -> Recipe:
    """Validate already-parsed recipe data; ``source`` names it in errors."""
    return _validate(data, Recipe, source=source)


def _read_yaml(name_or_path: str | Path, bundled: tuple[str, ...]) -> tuple[Any, Path]:
    path = Path(name_or_path)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    elif str(name_or_path) in bundled:
        resource = resources.files("inspection") / "recipes" / f"{name_or_path}.yaml"
        text = resource.read_text(encoding="utf-8")
        path = Path(str(resource))
    else:
        raise RecipeError(
            f"recipe {str(name_or_path)!r}: no such file, and not a bundled recipe "
            f"(bundled: {', '.join(bundled)})"
        )
    try:
        return yaml.safe_load(text), path
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load a recipe file, or one of the bundled recipes by name (``wafer``, ``pcb``).

    A relative ``reference.golden`` path is resolved against the recipe's folder.
    """
    data, path = _read_yaml(name_or_path, BUNDLED_RECIPES)
    recipe = parse_recipe(data, source=str(path))
    golden = recipe.reference.golden
    if not golden.startswith("sim:"):
        golden_path = (path.parent / golden).resolve()
        if not golden_path.is_file():
            raise RecipeError(
                f"{path}: reference.golden: got {golden!r}; expected an image file (looked for {golden_path})"
                " or a synthetic reference 'sim:wafer' / 'sim:pcb'"
            )
        recipe = recipe.model_copy(update={"reference": ReferenceSettings(golden=str(golden_path))})
    return recipe.model_copy(update={"source_path": str(path)})


class WaferLayout(_Section):
    """The product's wafer as the recipe states it; a frame that disagrees is not graded."""

    diameter_mm: float = Field(..., gt=0)
    diameter_tolerance: float = Field(0.03, gt=0, lt=1)
    """Relative tolerance on the measured diameter."""
    die_pitch_um: tuple[float, float]
    """Die pitch (x, y) in micrometres, street included."""
    pitch_tolerance: float = Field(0.02, gt=0, lt=1)
    street_um: float = Field(..., ge=0)
    edge_exclusion_mm: float = Field(3.0, ge=0)

    @model_validator(mode="after")
    def _positive_pitch(self) -> WaferLayout:
        if min(self.die_pitch_um) <= 0 or self.street_um >= min(self.die_pitch_um):
            raise ValueError(f"die_pitch_um {self.die_pitch_um} must be positive and wider than street_um "
                             f"{self.street_um}")
        return self


class LotModels(_Section):
    die: str
    """Die classifier model folder (relative to the recipe's folder, else to the working directory)."""
    wafer_map: str
    """Wafer-map pattern model folder."""
    batch_size: int = Field(256, ge=1, le=4096)
    die_defect_score: float | None = Field(None, gt=0, lt=1)
    """A die fails at this defect score (1 - p(good)); None takes the model card's operating point. Set it from
    a calibration lot (``inspect grade`` reports recall and overkill against truth at several scores)."""


class LotRules(_Section):
    """How a graded wafer gets its verdict; the first rule that fires decides."""

    yield_floor: float = Field(..., ge=0, le=1)
    """A wafer yielding less fails."""
    review_band: float = Field(0.0, ge=0, le=1)
    """A wafer within this much above the floor goes to review."""
    max_defect_density_per_cm2: float | None = Field(None, gt=0)
    forbidden_patterns: tuple[str, ...] = ()
    """Patterns that fail the wafer whatever its yield (a process excursion to stop)."""
    min_pattern_confidence: float = Field(0.5, ge=0, le=1)
    """A forbidden pattern below this confidence sends the wafer to review instead of failing it."""

    @model_validator(mode="after")
    def _known_patterns(self) -> LotRules:
        from inspection.wafermap.maps import PATTERNS  # the recipe module is loaded before the stages

        unknown = [p for p in self.forbidden_patterns if p not in PATTERNS]
        if unknown:
            raise ValueError(f"forbidden_patterns {unknown} are not patterns; expected some of {', '.join(PATTERNS)}")
        return self


class LotRecipe(_Fingerprinted):
    """Offline grading of wafer lots (``inspect grade``)."""

    name: str = Field(..., min_length=1)
    kind: Literal["wafer-lot"]
    pixel_size_um: float = Field(..., gt=0)
    preprocess: PreprocessSettings = PreprocessSettings()
    wafer: WaferLayout
    models: LotModels
    rules: LotRules
    source_path: str | None = Field(None, exclude=True)


def load_lot_recipe(name_or_path: str | Path) -> LotRecipe:
    """Load a lot recipe file or a bundled one (``wafer-lot``); model folders are resolved to paths that exist
    when they do, against the recipe's folder first and then the working directory."""
    data, path = _read_yaml(name_or_path, BUNDLED_LOT_RECIPES)
    recipe = _validate(data, LotRecipe, source=str(path))
    models = {}
    for field_name in ("die", "wafer_map"):
        given = Path(getattr(recipe.models, field_name))
        beside = path.parent / given
        models[field_name] = str(beside.resolve() if not given.is_absolute() and beside.is_dir() else given)
    return recipe.model_copy(update={"models": recipe.models.model_copy(update=models), "source_path": str(path)})
