"""The station recipe: validated once at start-up, then passed down to the stages as arguments.

One schema for every station. A recipe is a YAML file with a ``kind``:

- ``wafer-die``: a die-area camera over the wafer stage; each frame is compared with a golden image and every
  candidate region is named by the recipe's CNN;
- ``pcb``: a board camera; the board is registered onto its golden (one per product, or the template beside
  each test image), candidates come from the model card's detector settings and the CNN names them;
- ``wafer-lot``: offline grading of whole-wafer images: wafer edge and notch, die grid, the CNN on every die,
  the die map's pattern and the wafer's verdict.

Every kind shares ``preprocess``, ``pipeline`` and one ``classify`` section: the model, where and how it runs
(device, precision, batching) and the verdict rules by class. Unknown keys are rejected and every error names
the file, the path of the field, the value found and what was expected, so a typo on the line never silently
falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspection.model_paths import ModelNotFoundError, find_model
from inspection.types import (
    MAX_SIM_SIZE_PX,
    MIN_SIM_SIZE_PX,
    SIM_KINDS,
    WAFERMAP_PATTERNS,
    InspectionError,
    SimKind,
    control_character,
)

BUNDLED_RECIPES = ("wafer-die", "pcb-deeppcb", "pcb-anomaly", "wafer-lot")
RENAMED_BUNDLED = {"wafer": "wafer-die", "pcb": "pcb-deeppcb"}
"""Bundled recipe names of versions before 0.2, and what replaced them."""


class RecipeError(InspectionError, ValueError):
    """A recipe that cannot be used, with every problem found in it."""


_AREA_LIMIT_UM2 = 1e12
"""A square metre: no defect or rule on a wafer or board is larger."""
_Pixels = Annotated[int, Field(ge=0, le=1_000_000)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite

    @field_validator("*", mode="before")
    @classmethod
    def _no_yes_for_a_number(cls, value: Any, info: Any) -> Any:
        """YAML's true and false are not numbers (``workers: true`` was taken as 1 worker)."""
        annotation = cls.model_fields[info.field_name].annotation if info.field_name else None
        if isinstance(value, bool) and annotation in (int, float, int | None, float | None):
            raise ValueError(f"got {value}; expected a number")
        return value


class PreprocessSettings(_Section):
    bit_depth: int | None = Field(None, ge=1, le=16)
    """Significant bits of the camera's pixels; None takes what the camera reports."""
    denoise: Literal["none", "median", "gaussian"] = "none"
    denoise_kernel_px: int = Field(3, ge=3, le=31)
    clahe: bool = False
    clahe_clip_limit: float = Field(2.0, gt=0, le=1000)
    roi_xywh_px: tuple[_Pixels, _Pixels, _Pixels, _Pixels] | None = None
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


class BesideRule(_Section):
    """The golden of each frame is a file beside it: the frame's file name with ``test`` replaced by
    ``template`` (DeepPCB: ``00041000_test.jpg`` is judged against ``00041000_temp.jpg``)."""

    test: str = Field(..., min_length=1)
    template: str = Field(..., min_length=1)


class ReferenceSettings(_Section):
    golden: str | None = None
    """The defect-free reference: an image file (relative to the recipe) or a synthetic one, ``sim:wafer``."""
    beside: BesideRule | None = None
    """A golden per frame, read beside each frame's file (folder cameras)."""

    @model_validator(mode="after")
    def _one_reference(self) -> ReferenceSettings:
        if (self.golden is None) == (self.beside is None):
            raise ValueError("give exactly one of golden (one image for every frame) or beside (a golden per frame)")
        if self.golden is not None and self.golden.startswith("sim:"):
            synthetic_reference(self.golden)
        return self


def synthetic_reference(golden: str) -> tuple[SimKind, int]:
    """(kind, size in pixels) of a synthetic reference ``sim:wafer|pcb[?size=N]``."""
    kind, _, query = golden.removeprefix("sim:").partition("?")
    options = dict(parse_qsl(query))
    size = options.get("size", "512")
    if (kind not in SIM_KINDS or set(options) - {"size"} or not size.isdigit() or len(size) > 5
            or not MIN_SIM_SIZE_PX <= int(size) <= MAX_SIM_SIZE_PX):
        raise ValueError(f"a synthetic reference is sim:wafer or sim:pcb with an optional ?size=N, N within "
                         f"{MIN_SIM_SIZE_PX}..{MAX_SIM_SIZE_PX} px, got {golden!r}")
    return kind, int(size)  # type: ignore[return-value]


class AlignSettings(_Section):
    method: Literal["phase", "rigid", "none"] = "phase"
    """``phase``: subpixel translation by phase correlation; ``rigid``: rotation and translation (boards that
    sit turned); ``none``: the fixture holds the part in place."""
    max_shift_px: float = Field(20.0, gt=0, le=10_000)
    min_score: float = Field(0.2, ge=0, le=1)
    """Below this correlation the frame is not trusted and gets an error verdict."""
    phase_scale: float = Field(1.0, ge=0.125, le=1.0)
    """``phase``: correlate the frame and golden resized by this factor; 0.5 takes a fifth of the time at
    about 0.2 px instead of 0.1 px accuracy, which the tolerance band's ``band_px`` absorbs."""


class InspectSettings(_Section):
    """How candidates are found without a model card's detector settings (a ``wafer-die`` station)."""

    tolerance_grey: float = Field(30.0, gt=0, le=255)
    """Grey levels (8-bit scale) a pixel may leave the reference's local min/max band before it is a defect."""
    band_px: int = Field(1, ge=0, le=10)
    """Half-width of the local min/max band, absorbing residual misalignment and edge jitter."""
    min_area_px: int = Field(4, ge=1, le=100_000_000)
    """Connected regions smaller than this are sensor noise, not defects."""


class GradeSettings(_Section):
    """Verdicts by size, for a station that has no classifier yet (candidates are named by polarity)."""

    review_area_um2: float = Field(..., ge=0, le=_AREA_LIMIT_UM2)
    """Regions at least this large are reported as detections; a part with any goes to review at least."""
    fail_area_um2: float = Field(..., ge=0, le=_AREA_LIMIT_UM2)
    """A detection at least this large fails the part."""
    max_detections: int = Field(0, ge=0, le=1_000_000)
    """More detections than this fail the part whatever their size (0: only size decides)."""

    @model_validator(mode="after")
    def _ordered(self) -> GradeSettings:
        if self.fail_area_um2 < self.review_area_um2:
            raise ValueError(
                f"fail_area_um2 ({self.fail_area_um2}) must be >= review_area_um2 ({self.review_area_um2})"
            )
        return self


class ClassifySettings(_Section):
    """The defect CNN of the station and the verdict rules by class."""

    model: str
    """Model folder (model.onnx + model.json), relative to the recipe's folder, else the working directory."""
    device: Literal["auto", "cpu", "cuda", "trt"] = "cpu"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    """fp16 and int8 run the variants `inspect export --fp16|--int8` added to the model folder."""
    fallback_to_fp32: bool = False
    """When the variant does not reproduce the card's check outputs on this machine, run FP32 instead (said at
    start-up) rather than refuse to start."""
    cuda_graph: bool = False
    """On a GPU: replay each batch shape as a CUDA graph (fewer launches per batch; see the README, GPU stations)."""
    max_batch: int = Field(32, ge=1, le=4096)
    """The inference core runs a batch at this many candidates (from any frames) ..."""
    max_wait_ms: float = Field(2.0, ge=0, le=1000)
    """... or this long after the first candidate of the batch arrived, whichever comes first."""
    min_score: float | None = Field(None, ge=0, le=1)
    """A candidate is reported as its most likely defect class when that class's probability reaches this;
    None takes the card's. A ``pcb`` recipe may only raise the card's value (its detector was tuned with it)."""
    defect_score: float | None = Field(None, gt=0, lt=1)
    """``wafer-lot``: a die fails at this defect score (1 - p(good)); None takes the card's operating point."""
    fail_classes: tuple[str, ...] = ()
    """A detection of one of these classes fails the part."""
    review_classes: tuple[str, ...] = ()
    """A detection of one of these classes sends the part to review (when nothing fails it)."""
    min_area_um2: dict[str, Annotated[float, Field(ge=0, le=_AREA_LIMIT_UM2)]] = Field(default_factory=dict)
    """Per class: detections smaller than this (in square micrometres) do not count for the verdict."""

    @model_validator(mode="after")
    def _rules_consistent(self) -> ClassifySettings:
        both = sorted(set(self.fail_classes) & set(self.review_classes))
        if both:
            raise ValueError(f"classes {both} are in both fail_classes and review_classes")
        return self

    def rule_classes(self) -> list[str]:
        """Every class the rules name (checked against the model's classes at start-up)."""
        return sorted({*self.fail_classes, *self.review_classes, *self.min_area_um2})


class AnomalyStageSettings(_Section):
    """An anomaly model trained on good parts only (``inspect train-anomaly``): its regions are candidates like
    the golden-template difference's, or, on a station without a golden, the detections themselves."""

    model: str
    """Model folder (model.onnx + model.json), found like classify.model."""
    device: Literal["auto", "cpu", "cuda", "trt"] = "cpu"
    threshold: float | None = Field(None, gt=0, lt=1)
    """Map score from which a cell is anomalous; None takes the card's (chosen on held-out good images). A
    recipe may only raise it."""
    max_batch: int = Field(8, ge=1, le=1024)
    """The inference core scores this many whole images (from any frames) in one batch ..."""
    max_wait_ms: float = Field(2.0, ge=0, le=1000)
    """... or the images that arrived this long after the first, whichever comes first."""


class TriggerSettings(_Section):
    """When the camera takes a picture."""

    mode: Literal["free-run", "software", "hardware"] = "free-run"
    """``free-run``: continuously; ``software``: when the line asks for a frame (it fires the camera's
    TriggerSoftware before each grab); ``hardware``: on an edge of ``line`` (a PLC or a light barrier)."""
    line: str = Field("Line1", min_length=1, max_length=32)
    """The input line of a hardware trigger (the camera's TriggerSource name)."""
    edge: Literal["rising", "falling"] = "rising"


class CameraSettings(_Section):
    """The station's camera and how it is set up, applied when the run opens it and read back into the run."""

    uri: str = Field(..., min_length=1)
    """The camera URI (README, "Camera URIs"); ``inspect run --camera`` replaces it and keeps the settings."""
    exposure_us: float | None = Field(None, gt=0, le=10_000_000)
    gain_db: float | None = Field(None, ge=0, le=60)
    trigger: TriggerSettings = TriggerSettings()
    pixel_format: str | None = Field(None, min_length=1, max_length=32)
    """A GenICam pixel format (Mono8 ... Mono16, RGB8, BGR8, Bayer{RG,GR,GB,BG}{8,10,12,16}); Bayer is
    demosaiced to BGR."""
    buffer: Literal["oldest-first", "newest-only"] = "oldest-first"
    """``oldest-first``: every triggered part, in order; ``newest-only``: the latest frame (monitoring)."""
    user_set: str | None = Field(None, min_length=1, max_length=32)
    """A user set stored in the camera (UserSetSelector value) loaded before the settings above."""
    feature_file: str | None = None
    """A pylon feature file (``.pfs``, saved from the vendor's viewer) loaded before the settings above;
    relative to the recipe's folder."""

    def requested(self) -> dict[str, Any]:
        """The settings a camera is asked to apply (the URI and defaults left out)."""
        return self.model_dump(exclude={"uri"}, exclude_defaults=True)


class PipelineSettings(_Section):
    queue_depth: int = Field(8, ge=1, le=1024)
    """Frames waiting between stages; when full, acquisition waits (backpressure) instead of memory growing."""
    workers: int = Field(2, ge=1, le=64)
    fetch_timeout_s: float = Field(2.0, gt=0, le=3600)
    """How long the line waits for a frame before it logs that none came (and waits on); a stop is seen within
    0.2 s whatever this is."""
    latency_budget_ms: float = Field(250.0, gt=0, le=3_600_000)
    """Frames whose acquire-to-commit latency exceeds this are counted as late."""


class OpcUaSettings(_Section):
    """The station's OPC UA server for the line (``inspect run --opcua`` overrides the endpoint)."""

    endpoint: str = Field(..., pattern=r"^opc\.tcp://[^/\s]+:\d{1,5}/?$")
    """``opc.tcp://HOST:PORT`` to listen on."""
    user: str | None = Field(None, min_length=1, max_length=64)
    """The user who may trigger, start and stop; the password comes from ``INSPECT_OPCUA_PASSWORD``."""
    certificate: str | None = None
    """The server's certificate (DER or PEM, relative to the recipe): with ``private_key`` the server also offers
    Basic256Sha256 endpoints (signed, and signed and encrypted)."""
    private_key: str | None = None
    """The server's private key (PEM, relative to the recipe)."""
    plaintext_passwords: bool = False
    """Let ``user``'s password cross the unencrypted endpoint (a closed network only); otherwise a user needs the
    server's certificate, and the server then offers only its signed-and-encrypted endpoint."""
    unencrypted_endpoint: bool = False
    """With a certificate, also offer the unencrypted endpoint (security None: anonymous reading for clients
    without certificates); by default a server with a certificate offers only signed-and-encrypted ones."""
    trusted_users: dict[Annotated[str, Field(min_length=1, max_length=64)], str] = Field(default_factory=dict)
    """User name -> the user's certificate (relative to the recipe): a session that proves it holds one of these
    (its X509 identity token, or the client certificate of a signed connection) may trigger, start and stop;
    another certificate only reads. Needs ``certificate``."""

    @field_validator("endpoint")
    @classmethod
    def _port_in_range(cls, endpoint: str) -> str:
        port = int(endpoint.rstrip("/").rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is not within 1..65535")
        return endpoint

    @model_validator(mode="after")
    def _security_complete(self) -> OpcUaSettings:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together (the server's own, for signed endpoints)")
        if self.trusted_users and self.certificate is None:
            raise ValueError("trusted_users need the server's certificate and private_key: a user's certificate "
                             "is only accepted over a signed connection")
        return self


class WaferLayout(_Section):
    """The product's wafer as the recipe states it; a frame that disagrees is not graded."""

    diameter_mm: float = Field(..., gt=0, le=1000)
    diameter_tolerance: float = Field(0.03, gt=0, lt=1)
    """Relative tolerance on the measured diameter."""
    die_pitch_um: tuple[Annotated[float, Field(gt=0, le=1_000_000)], Annotated[float, Field(gt=0, le=1_000_000)]]
    """Die pitch (x, y) in micrometres, street included."""
    pitch_tolerance: float = Field(0.02, gt=0, lt=1)
    street_um: float = Field(..., ge=0, le=1_000_000)
    edge_exclusion_mm: float = Field(3.0, ge=0, le=100)

    @model_validator(mode="after")
    def _positive_pitch(self) -> WaferLayout:
        if min(self.die_pitch_um) <= 0 or self.street_um >= min(self.die_pitch_um):
            raise ValueError(f"die_pitch_um {self.die_pitch_um} must be positive and wider than street_um "
                             f"{self.street_um}")
        return self


class WaferMapSettings(_Section):
    model: str
    """Wafer-map pattern model folder (relative to the recipe's folder, else the working directory)."""


class LotRules(_Section):
    """How a graded wafer gets its verdict; the first rule that fires decides."""

    yield_floor: float = Field(..., ge=0, le=1)
    """A wafer yielding less fails."""
    review_band: float = Field(0.0, ge=0, le=1)
    """A wafer within this much above the floor goes to review."""
    max_defect_density_per_cm2: float | None = Field(None, gt=0, le=1_000_000)
    forbidden_patterns: tuple[str, ...] = ()
    """Patterns that fail the wafer whatever its yield (a process excursion to stop)."""
    min_pattern_confidence: float = Field(0.5, ge=0, le=1)
    """A forbidden pattern below this confidence sends the wafer to review instead of failing it."""

    @model_validator(mode="after")
    def _known_patterns(self) -> LotRules:
        unknown = [p for p in self.forbidden_patterns if p not in WAFERMAP_PATTERNS]
        if unknown:
            raise ValueError(f"forbidden_patterns {unknown} are not patterns; expected some of "
                             f"{', '.join(WAFERMAP_PATTERNS)}")
        return self


_SECTIONS_OF_KIND: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required sections, allowed optional sections)
    "wafer-die": ({"reference"}, {"align", "inspect", "grade", "classify", "anomaly"}),
    "pcb": ({"reference", "classify"}, {"align", "anomaly"}),
    "wafer-lot": ({"wafer", "classify", "wafermap", "rules"}, set()),
}


class Recipe(_Section):
    name: str = Field(..., min_length=1, max_length=200)
    kind: Literal["wafer-die", "pcb", "wafer-lot"]
    camera: CameraSettings | None = None
    """The station's camera: a URI, or a section with the URI and its set-up (exposure, gain, trigger, pixel
    format, buffer strategy, user set or feature file)."""

    @field_validator("camera", mode="before")
    @classmethod
    def _camera_uri(cls, value: Any) -> Any:
        return {"uri": value} if isinstance(value, str) else value
    pixel_size_um: float = Field(..., ge=0.01, le=10_000)  # 1e-300 stored every area as 0
    preprocess: PreprocessSettings = PreprocessSettings()
    reference: ReferenceSettings | None = None
    align: AlignSettings | None = None
    inspect: InspectSettings | None = None
    grade: GradeSettings | None = None
    classify: ClassifySettings | None = None
    anomaly: AnomalyStageSettings | None = None
    wafer: WaferLayout | None = None
    wafermap: WaferMapSettings | None = None
    rules: LotRules | None = None
    pipeline: PipelineSettings = PipelineSettings()
    opcua: OpcUaSettings | None = None
    source_path: str | None = Field(None, exclude=True)
    """The file the recipe was read from (set by :func:`load_recipe`)."""

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "wafer":
            raise ValueError("kind 'wafer' was renamed 'wafer-die' in version 0.2: change kind to wafer-die (a "
                             "classify: section puts a CNN on the line; without one, grade: rules judge by size)")
        if isinstance(data, dict) and "models" in data:
            raise ValueError("the 'models' section of version 0.1 lot recipes is now two sections: "
                             "classify: {model: <models.die>, max_batch: <models.batch_size>, defect_score: "
                             "<models.die_defect_score>} and wafermap: {model: <models.wafer_map>}")
        return data

    @model_validator(mode="after")
    def _sections_fit_the_kind(self) -> Recipe:
        required, optional = _SECTIONS_OF_KIND[self.kind]
        if self.anomaly is not None and self.reference is None and self.kind != "wafer-lot":
            # No golden: the anomaly model finds the defects alone, the CNN (which compares with a golden)
            # has nothing to compare with, and the verdict is by size.
            required, optional = {"anomaly", "grade"}, set()
        given = {name for name in ("reference", "align", "inspect", "grade", "classify", "anomaly", "wafer",
                                   "wafermap", "rules")
                 if getattr(self, name) is not None}
        missing, foreign = sorted(required - given), sorted(given - required - optional)
        problems = []
        if missing:
            problems.append(f"a {self.kind} recipe needs {', '.join(missing)}")
        if foreign and "anomaly" in required:
            problems.append(f"a {self.kind} recipe without reference (the anomaly model alone finds the defects, "
                            f"grade judges them by size) takes no {', '.join(foreign)} section; the CNN and "
                            "alignment need a golden")
        elif foreign:
            problems.append(f"a {self.kind} recipe takes no {', '.join(foreign)} section")
        if self.kind == "wafer-die" and self.classify is None and self.grade is None:
            problems.append("a wafer-die recipe needs classify (the CNN names each candidate) or grade (verdicts "
                            "by size, without a CNN)")
        if self.classify is not None:
            if self.kind == "wafer-lot" and (self.classify.min_score is not None or self.classify.rule_classes()):
                problems.append("classify: a wafer-lot recipe fails dies by defect_score; its wafers by rules:")
            if self.kind != "wafer-lot" and self.classify.defect_score is not None:
                problems.append("classify.defect_score is for wafer-lot recipes; candidates use min_score")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def with_classify(self, **changes: Any) -> Recipe:
        """This recipe with some ``classify`` settings replaced (a None leaves one as it is): a command line's
        ``--model``, ``--device``, ``--int8`` ... A recipe without a classifier comes back as it is."""
        given = {name: value for name, value in changes.items() if value is not None}
        if self.classify is None or not given:
            return self
        return self.model_copy(update={"classify": self.classify.model_copy(update=given)})

    def sha256(self) -> str:
        """Fingerprint of the validated content (stored with every run, so results name the exact recipe)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        parent: Any = model
        for part in error["loc"][:-1]:
            annotation = parent.model_fields[str(part)].annotation
            parent = next(a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None))
        allowed = ", ".join(name for name in parent.model_fields if name != "source_path")
        return f"{where}: unknown key; expected one of: {allowed}"
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    if error["loc"] == ():
        return message
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


_MAX_RECIPE_BYTES = 1 << 20
_MAX_RECIPE_VALUES = 100_000
"""A recipe is a page of settings: a larger file, or one whose aliases expand to more values (a "billion
laughs"), is refused before anything walks it."""


def _check_expansion(data: Any, *, path: Path) -> None:
    """Count the values of ``data`` as a walk would meet them (aliases expanded), stopping at the limit; refuse
    text with a control character (a YAML escape such as ``"\\0"`` gets past the file's own check)."""
    stack, seen = [data], 0
    while stack:
        value = stack.pop()
        seen += 1
        if seen > _MAX_RECIPE_VALUES:
            raise RecipeError(f"{path}: expands to more than {_MAX_RECIPE_VALUES:,} values (YAML aliases?); a "
                              "recipe is a page of settings")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    if (found := control_character(data)) is not None:
        where, text, char = found
        raise RecipeError(f"{path}: {where}: control character U+{ord(char):04X} in {text!r}; recipe values are "
                          "printable text")


def read_recipe_yaml(name_or_path: str | Path) -> tuple[Any, Path]:
    """A recipe file's (or a bundled recipe's) YAML as data, not yet validated, and where it was read: what
    ``inspect teach`` makes a station's recipe from. Raises RecipeError for text no person wrote."""
    path = Path(name_or_path)
    if path.is_file():
        if path.stat().st_size > _MAX_RECIPE_BYTES:
            raise RecipeError(f"{path}: {path.stat().st_size:,} bytes; a recipe is at most {_MAX_RECIPE_BYTES:,}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start}); save the recipe as UTF-8") from None
        except OSError as exc:
            raise RecipeError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    elif str(name_or_path) in BUNDLED_RECIPES:
        resource = resources.files("inspection") / "recipes" / f"{name_or_path}.yaml"
        text = resource.read_text(encoding="utf-8")
        path = Path(str(resource))
    elif str(name_or_path) in RENAMED_BUNDLED:
        raise RecipeError(f"recipe {str(name_or_path)!r}: the bundled recipe was renamed "
                          f"{RENAMED_BUNDLED[str(name_or_path)]!r} in version 0.2")
    else:
        raise RecipeError(
            f"recipe {str(name_or_path)!r}: no such file, and not a bundled recipe "
            f"(bundled: {', '.join(BUNDLED_RECIPES)})"
        )
    for number, line in enumerate(text.splitlines(), 1):
        bad = next((char for char in line if not char.isprintable() and char != "\t"), None)
        if bad is not None:  # a NUL in a path ends it early in the OS; a control character in a name forges logs
            raise RecipeError(f"{path}:{number}: control character U+{ord(bad):04X}; a recipe is printable text")
    nesting = max((len(match) for match in re.findall(r"[\[{]+", text)), default=0)
    if nesting > _MAX_RECIPE_DEPTH or _indent_depth(text) > _MAX_RECIPE_DEPTH:
        raise RecipeError(f"{path}: nested more than {_MAX_RECIPE_DEPTH} levels deep; a recipe is a few sections "
                          "of settings")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader that refuses repeated keys
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{path}: nested too deep for a recipe") from None
    _check_expansion(data, path=path)
    return data, path


_MAX_RECIPE_DEPTH = 20


def _indent_depth(text: str) -> int:
    """How many distinct indentation levels a block of YAML reaches: its nesting depth."""
    return len({len(line) - len(line.lstrip(" ")) for line in text.splitlines() if line.strip()})


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (PyYAML keeps the last silently: a
    recipe edited by hand would run a setting nobody sees)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _model_folder(path: Path, field: str, given: str) -> str:
    """A model named by a recipe, from the model search path (the recipe's folder first)."""
    try:
        return str(find_model(given, recipe_folder=path.parent))
    except ModelNotFoundError as exc:
        raise RecipeError(f"{path}: {field}: {exc}") from None


def _recipe_file(path: Path, field: str, name: str, *, expected: str = "an existing file") -> Path:
    """The file ``field`` of the recipe at ``path`` names, resolved against the recipe's folder, or a RecipeError
    naming the field (a missing file, or a name the file system refuses, such as one too long)."""
    try:
        found = (path.parent / name).resolve()
        if found.is_file():
            return found
    except OSError as exc:
        raise RecipeError(f"{path}: {field}: {name[:80]!r}: not a usable file name ({exc.strerror or exc})") from None
    raise RecipeError(f"{path}: {field}: got {name!r}; expected {expected} (looked for {found})")


def _opcua_files(path: Path, settings: OpcUaSettings) -> OpcUaSettings:
    """The OPC UA section with its certificate and key files resolved against the recipe's folder (each must
    exist)."""

    update: dict[str, Any] = {name: str(_recipe_file(path, f"opcua.{name}", getattr(settings, name)))
                              for name in ("certificate", "private_key") if getattr(settings, name) is not None}
    update["trusted_users"] = {user: str(_recipe_file(path, f"opcua.trusted_users.{user}", file))
                               for user, file in settings.trusted_users.items()}
    return settings.model_copy(update=update)


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load a recipe file, or one of the bundled recipes by name (``wafer-die``, ``pcb-deeppcb``, ``pcb-anomaly``,
    ``wafer-lot``).

    A relative ``reference.golden`` image is resolved against the recipe's folder (and must exist); model
    folders against the recipe's folder when they are there, else the working directory.
    """
    data, path = read_recipe_yaml(name_or_path)
    recipe = parse_recipe(data, source=str(path))
    update: dict[str, Any] = {"source_path": str(path)}
    golden = recipe.reference.golden if recipe.reference is not None else None
    if recipe.reference is not None and golden is not None and not golden.startswith("sim:"):
        golden_path = _recipe_file(path, "reference.golden", golden, expected="an image file or a synthetic "
                                   "reference 'sim:wafer' / 'sim:pcb'")
        update["reference"] = recipe.reference.model_copy(update={"golden": str(golden_path)})
    if recipe.camera is not None and recipe.camera.feature_file:
        feature_file = _recipe_file(path, "camera.feature_file", recipe.camera.feature_file)
        update["camera"] = recipe.camera.model_copy(update={"feature_file": str(feature_file)})
    if recipe.opcua is not None:
        update["opcua"] = _opcua_files(path, recipe.opcua)
    if recipe.classify is not None:
        update["classify"] = recipe.classify.model_copy(
            update={"model": _model_folder(path, "classify.model", recipe.classify.model)})
    if recipe.wafermap is not None:
        update["wafermap"] = recipe.wafermap.model_copy(
            update={"model": _model_folder(path, "wafermap.model", recipe.wafermap.model)})
    return recipe.model_copy(update=update)
