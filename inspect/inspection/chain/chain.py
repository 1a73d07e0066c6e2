"""One chain of stages, built from a recipe: what every runner applies to each frame (wiring only).

The recipe's ``kind`` picks the stages; each stage is a thin adapter that calls its stage package's functions
and puts the result on the :class:`Part`, the chain's working record for one frame:

- ``wafer-die`` and ``pcb``: preprocess -> register to the golden -> candidates (golden-template difference)
  -> classify the candidates through the shared micro-batcher (or, without a classifier, name them by
  polarity) -> grade by class (or by size);
- ``wafer-lot``: preprocess -> locate the dies -> classify every die through the micro-batcher -> localise
  the defects -> die map and its pattern -> grade the wafer.

The line loop (:mod:`inspection.chain.line`), lot grading (:mod:`inspection.chain.lot`) and PCB pairs
(:mod:`inspection.chain.pairs`) only feed frames to a :class:`Chain` and store what comes out. A stage that
fails ends the part with an ``error`` verdict naming the stage; it never stops the runner.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from inspection.acquire import read_beside, read_image
from inspection.align import PhaseReference, RigidFit, register, warp_reference
from inspection.calibrate import load_flatfield
from inspection.classify import Classifier, MicroBatcher, SessionSettings, VariantCheckError
from inspection.classify.anomaly import AnomalyModel, anomaly_regions
from inspection.classify.card import CardError, DetectorSettings, ModelCard
from inspection.classify.detect import Hypotheses, NamedCandidates, join_anomalies, name_candidates, overlaps_any
from inspection.classify.prepare import prepare_batch
from inspection.grade import class_verdict, polarity_detections, size_verdict, wafer_verdict
from inspection.measure import candidate_crops, difference_regions
from inspection.measure.dies import DieLayout, defect_boxes_um, die_inputs, locate_dies
from inspection.model_paths import ModelNotFoundError, find_model
from inspection.preprocess import FlatField, preprocess_frame
from inspection.recipe import (
    AlignSettings,
    BesideRule,
    GradeSettings,
    InspectSettings,
    Recipe,
    RecipeError,
    synthetic_reference,
)
from inspection.sim.frames import golden_image
from inspection.types import Detection, Frame, FrameResult, InspectionError, Region, Verdict
from inspection.wafermap.classify import WaferMapModel, classify_maps, load_wafermap_model
from inspection.wafermap.maps import die_map_of

log = logging.getLogger("inspection.chain")

CLASSICAL_MARGIN_PX = 1
"""Without a card's detector settings, candidates are sought this far inside the registered golden."""


@dataclass
class Part:
    """One frame on its way through the chain; each stage fills in its fields."""

    frame: Frame
    reference_frame: Frame | None = None
    """The frame's own golden (a template beside it); None: the recipe's golden."""
    image: np.ndarray | None = None
    """The preprocessed 8-bit grey image (H x W) the stages judge."""
    reference: np.ndarray | None = None
    """The golden drawn in the image's coordinates."""
    valid: np.ndarray | None = None
    """Pixels the registered golden covers (candidates are sought there only)."""
    fit: RigidFit | None = None
    anomaly_map: np.ndarray | None = None
    """The anomaly model's score map (h x w, one cell per ``map_stride_px`` square of the image)."""
    regions: tuple[Region, ...] = ()
    probabilities: np.ndarray | None = None
    """Candidates (or dies) x classes."""
    detections: tuple[Detection, ...] = ()
    hypotheses: Hypotheses | None = None
    batch_sizes: list[int] = field(default_factory=list)
    """The size of each inference batch this part's candidates rode in."""
    batch_wait_ms: float = 0.0
    """The longest wait of this part's candidates in the micro-batcher before their batch ran."""
    model_sha256: str | None = None
    """The classifier that judged the candidates (None: none ran)."""
    dies: DieLayout | None = None
    die_scores: np.ndarray | None = None
    """Per die: defect score, 1 - p(good)."""
    defective: np.ndarray | None = None
    die_classes: np.ndarray | None = None
    """Per die: index of its class (the good class for a passing die)."""
    defect_boxes_um: dict[str, np.ndarray] = field(default_factory=dict)
    die_map: np.ndarray | None = None
    pattern: dict[str, Any] | None = None
    yield_fraction: float | None = None
    defect_density_per_cm2: float | None = None
    verdict: Verdict = Verdict.ERROR
    reason: str = "not inspected"
    error: InspectionError | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)

    def result(self) -> FrameResult:
        """What the line stores for this part."""
        frame = self.frame
        shift = None if self.fit is None else self.fit.shift_px
        extras: dict[str, Any] = {}
        if self.probabilities is not None:
            extras = {"candidates": len(self.regions), "batch_sizes": self.batch_sizes,
                      "batch_wait_ms": round(self.batch_wait_ms, 3)}
        return FrameResult(frame.source_id, frame.frame_counter, frame.timestamp_s, self.verdict, self.detections,
                           self.latency_ms, reason=self.reason, path=frame.path, shift_px=shift, truth=frame.truth,
                           model_sha256=self.model_sha256, extras=extras)


class Stage(Protocol):
    name: str

    def __call__(self, part: Part) -> None: ...


# --- the stages ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preprocess:
    recipe: Recipe
    flatfield: FlatField | None
    name: str = "preprocess"

    def __call__(self, part: Part) -> None:
        part.image = self.grey(part.frame)

    def grey(self, frame: Frame) -> np.ndarray:
        return preprocess_frame(frame, self.recipe.preprocess, flatfield=self.flatfield)


@dataclass(frozen=True)
class Register:
    """Register the image to its golden and draw the golden in the image's coordinates."""

    preprocess: Preprocess
    golden: np.ndarray | None
    """The recipe's golden, preprocessed; None when every frame brings its own."""
    settings: AlignSettings
    margin_px: int
    beside: BesideRule | None = None
    """Where a frame's own golden lies, when the caller does not bring it."""
    prepared: PhaseReference | None = None
    """The recipe's golden prepared for phase correlation once, for every frame."""
    name: str = "align"

    def __call__(self, part: Part) -> None:
        assert part.image is not None
        if part.reference_frame is None and self.beside is not None:
            part.reference_frame = read_beside(part.frame, test=self.beside.test, template=self.beside.template)
        prepared = None
        if part.reference_frame is not None:
            golden = self.preprocess.grey(part.reference_frame)
        elif self.golden is not None:
            golden, prepared = self.golden, self.prepared
        else:
            raise InspectionError("the recipe's golden comes from beside each frame, and this frame brought none")
        part.fit = register(part.image, golden, settings=self.settings, prepared=prepared)
        part.reference, part.valid = warp_reference(golden, part.fit, margin_px=self.margin_px)


@dataclass(frozen=True)
class FindCandidates:
    """Where the image leaves the golden's tolerance band: the candidate regions."""

    detector: DetectorSettings
    pixel_size_um: float
    name: str = "measure"

    def __call__(self, part: Part) -> None:
        assert part.image is not None and part.reference is not None and part.valid is not None
        d = self.detector
        part.regions = difference_regions(
            part.image, part.reference, valid=part.valid, band_px=d.band_px, tolerance_grey=d.tolerance_grey,
            open_px=d.open_px, close_px=d.close_px, min_area_px=d.min_area_px, pixel_size_um=self.pixel_size_um,
            edge_zone_px=d.edge_zone_px, edge_open_px=d.edge_open_px, edge_keep_min_area_px=d.edge_keep_min_area_px,
            edge_keep_max_side_px=d.edge_keep_max_side_px)


@dataclass(frozen=True)
class FindAnomalies:
    """The anomaly model scores the whole image through its own micro-batcher; its regions join the candidates
    (those overlapping a golden-difference candidate are not repeated)."""

    model: AnomalyModel
    batcher: MicroBatcher
    threshold: float
    pixel_size_um: float
    name: str = "anomaly"

    def __call__(self, part: Part) -> None:
        assert part.image is not None
        frame = part.frame
        prepared = self.model.prepare(part.image, layout="mono", bit_depth=8, source=frame.path or frame.source_id)
        (scored,) = self.batcher.run(prepared[None])
        part.anomaly_map = scored.output[0]
        found = anomaly_regions(part.anomaly_map, threshold=self.threshold, stride_px=self.model.settings.map_stride_px,
                                image_shape=part.image.shape, pixel_size_um=self.pixel_size_um)
        known = np.array([region.box_xyxy_px for region in part.regions], float).reshape(-1, 4)
        repeated = overlaps_any(np.array([region.box_xyxy_px for region in found], float).reshape(-1, 4), known)
        part.regions = (*part.regions, *(region for region, again in zip(found, repeated, strict=True) if not again))


def _batched(batcher: MicroBatcher, crops: Sequence[np.ndarray], *, card: ModelCard, part: Part) -> np.ndarray:
    """Class probabilities (N x classes) of 3-channel 8-bit crops, through the shared micro-batcher; the part
    keeps the sizes of the batches they rode in and their longest wait."""
    batched = batcher.run(prepare_batch([(crop, "bgr", 8) for crop in crops], card=card))
    part.batch_sizes = sorted({b.batch_size for b in batched}, reverse=True)
    part.batch_wait_ms = max(b.queued_ms for b in batched)
    return np.stack([b.output for b in batched])


@dataclass(frozen=True)
class ClassifyCandidates:
    """The CNN names every candidate, through the micro-batcher shared by all of the chain's callers."""

    classifier: Classifier
    batcher: MicroBatcher
    min_score: float
    rank: bool
    name: str = "classify"

    def __call__(self, part: Part) -> None:
        assert part.image is not None and part.reference is not None
        card = self.classifier.card
        assert card.detector is not None and card.thresholds.good_class is not None  # checked by build_chain
        part.model_sha256 = card.onnx_sha256
        if not part.regions:
            part.probabilities = np.zeros((0, len(card.class_names)), np.float32)
        else:
            boxes = np.array([region.box_xyxy_px for region in part.regions], float)
            crops = candidate_crops(part.image, part.reference, boxes, context=card.detector.crop_context,
                                    min_side_px=card.detector.crop_min_side_px)
            part.probabilities = _batched(self.batcher, crops, card=card, part=part)
        from_anomaly = np.array([region.anomaly_score is not None for region in part.regions], bool)
        anomalous = [region for region in part.regions if region.anomaly_score is not None]

        def named(regions: Sequence[Region], probabilities: np.ndarray, *, rank: bool) -> NamedCandidates:
            assert card.detector is not None and card.thresholds.good_class is not None and part.image is not None
            return name_candidates(regions, probabilities, class_names=card.class_names,
                                   good_class=card.thresholds.good_class, min_score=self.min_score,
                                   settings=card.detector, size=part.image.shape, model_sha256=card.onnx_sha256,
                                   rank=rank)

        result = named([region for region in part.regions if region.anomaly_score is None],
                       part.probabilities[~from_anomaly], rank=self.rank)
        if anomalous:
            result = join_anomalies(result, named(anomalous, part.probabilities[from_anomaly], rank=False), anomalous,
                                    part.probabilities[from_anomaly], min_score=self.min_score)
        part.detections, part.hypotheses = result.detections, result.hypotheses


@dataclass(frozen=True)
class NameByPolarity:
    """Without a classifier: candidates large enough to report, named dark or bright."""

    recipe: Recipe
    name: str = "classify"

    def __call__(self, part: Part) -> None:
        assert self.recipe.grade is not None
        part.detections = polarity_detections(part.regions, settings=self.recipe.grade)


@dataclass(frozen=True)
class GradePart:
    recipe: Recipe
    name: str = "grade"

    def __call__(self, part: Part) -> None:
        if self.recipe.classify is not None:
            part.verdict, part.reason = class_verdict(part.detections, rules=self.recipe.classify)
        else:
            assert self.recipe.grade is not None
            part.verdict, part.reason = size_verdict(part.detections, settings=self.recipe.grade)


@dataclass(frozen=True)
class LocateDies:
    recipe: Recipe
    name: str = "dies"

    def __call__(self, part: Part) -> None:
        assert part.image is not None and self.recipe.wafer is not None
        part.dies = locate_dies(part.image, wafer=self.recipe.wafer, pixel_size_um=self.recipe.pixel_size_um,
                                timings_ms=part.latency_ms)


@dataclass(frozen=True)
class ClassifyDies:
    """The CNN judges every die (the die, the wafer's median die, their difference) through the batcher."""

    classifier: Classifier
    batcher: MicroBatcher
    defect_score: float
    name: str = "classify"

    def __call__(self, part: Part) -> None:
        assert part.dies is not None
        card = self.classifier.card
        part.model_sha256 = card.onnx_sha256
        good_index = card.good_index
        assert good_index is not None  # checked by build_chain
        probabilities = _batched(self.batcher, die_inputs(part.dies.crops, part.dies.golden), card=card, part=part)
        part.probabilities = probabilities
        part.die_scores = self.classifier.defect_scores(probabilities)
        part.defective = part.die_scores >= self.defect_score
        without_good = probabilities.copy()
        without_good[:, good_index] = -1.0
        part.die_classes = np.where(part.defective, np.argmax(without_good, axis=1), good_index)


@dataclass(frozen=True)
class LocaliseDefects:
    pixel_size_um: float
    name: str = "localise"

    def __call__(self, part: Part) -> None:
        assert part.dies is not None and part.defective is not None
        part.defect_boxes_um = defect_boxes_um(part.dies.crops, part.dies.golden, part.defective,
                                               pixel_size_um=self.pixel_size_um)


@dataclass(frozen=True)
class WaferPattern:
    model: WaferMapModel
    name: str = "pattern"

    def __call__(self, part: Part) -> None:
        assert part.dies is not None and part.defective is not None
        rows = np.array([d.row for d in part.dies.dies], np.int32)
        cols = np.array([d.column for d in part.dies.dies], np.int32)
        part.die_map = die_map_of(rows, cols, part.defective)
        (part.pattern,) = classify_maps(self.model, [part.die_map])


@dataclass(frozen=True)
class GradeWafer:
    recipe: Recipe
    name: str = "grade"

    def __call__(self, part: Part) -> None:
        assert part.defective is not None and part.pattern is not None and self.recipe.wafer is not None
        assert self.recipe.rules is not None
        pitch_x_um, pitch_y_um = self.recipe.wafer.die_pitch_um
        part.yield_fraction = float(1.0 - part.defective.mean())
        part.defect_density_per_cm2 = float(part.defective.sum() / (len(part.defective) * pitch_x_um * pitch_y_um
                                                                    * 1e-8))
        part.verdict, part.reason = wafer_verdict(
            yield_fraction=part.yield_fraction, defect_density_per_cm2=part.defect_density_per_cm2,
            pattern=part.pattern["pattern"], pattern_confidence=part.pattern["confidence"], rules=self.recipe.rules)


# --- the chain ----------------------------------------------------------------------------------------------

class Chain:
    """The recipe's stages, applied to one frame at a time; callable from several threads at once.

    Every classifier call of every caller goes through one :class:`MicroBatcher`, so candidates of frames
    inspected at the same time share a batch. Close the chain (or use it as a context manager) to stop it.
    """

    def __init__(self, recipe: Recipe, stages: Sequence[Stage], *, classifier: Classifier | None = None,
                 batcher: MicroBatcher | None = None, anomaly_batcher: MicroBatcher | None = None) -> None:
        self.recipe = recipe
        self.stages = tuple(stages)
        self.classifier = classifier
        self.batcher = batcher
        self.anomaly_batcher = anomaly_batcher
        """The anomaly model's own batcher (whole images, not candidate crops)."""

    def __call__(self, frame: Frame, *, reference: Frame | None = None) -> Part:
        """Run every stage on ``frame`` (against ``reference`` when it brings its own golden)."""
        part = Part(frame, reference)
        for stage in self.stages:
            started = time.perf_counter()
            try:
                stage(part)
            except Exception as exc:  # a part that cannot be judged is stored as an error, never dropped
                if isinstance(exc, InspectionError):
                    part.error = exc
                else:
                    log.error("frame %s/%d: %s failed:\n%s", frame.source_id, frame.frame_counter, stage.name,
                              traceback.format_exc())
                part.verdict, part.reason = Verdict.ERROR, f"{stage.name}: {exc}"
                part.latency_ms[stage.name] = (time.perf_counter() - started) * 1000.0
                return part
            part.latency_ms[stage.name] = (time.perf_counter() - started) * 1000.0
        if part.batch_sizes:
            part.latency_ms["batch_wait"] = part.batch_wait_ms
        return part

    def check_frame_size(self, frame: Frame, *, camera: str) -> None:
        """Refuse a camera whose frames do not fit the recipe's region of interest or golden (said once, at the
        first frame)."""
        roi = self.recipe.preprocess.roi_xywh_px
        if roi is not None and (roi[0] + roi[2] > frame.width_px or roi[1] + roi[3] > frame.height_px):
            raise RecipeError(f"{self.recipe.source_path or self.recipe.name}: preprocess.roi_xywh_px {roi} "
                              f"(x, y, width, height) reaches outside camera {camera}'s {frame.width_px}x"
                              f"{frame.height_px} px frames")
        anomaly_stage = next((stage for stage in self.stages if isinstance(stage, FindAnomalies)), None)
        if anomaly_stage is not None:
            height, width = self.stages[0].grey(frame).shape  # type: ignore[attr-defined]
            spec = anomaly_stage.model.card.input
            if (height, width) != (spec.height, spec.width):
                assert self.recipe.anomaly is not None
                raise RecipeError(
                    f"{self.recipe.source_path or self.recipe.name}: anomaly.model ({self.recipe.anomaly.model}) "
                    f"was trained on {spec.width}x{spec.height} px images but camera {camera} delivers "
                    f"{width}x{height} px frames (after preprocessing); train one on this camera's good parts: "
                    "inspect train-anomaly GOOD_FOLDER --out MODEL")
        register_stage = next((stage for stage in self.stages if isinstance(stage, Register)), None)
        if register_stage is None or register_stage.golden is None:
            return
        height, width = register_stage.preprocess.grey(frame).shape
        golden_height, golden_width = register_stage.golden.shape
        if (height, width) != (golden_height, golden_width):
            assert self.recipe.reference is not None
            raise RecipeError(
                f"{self.recipe.source_path or self.recipe.name}: reference.golden "
                f"({self.recipe.reference.golden}) is {golden_width}x{golden_height} px but camera {camera} "
                f"delivers {width}x{height} px frames (after preprocessing); teach a golden from this camera: "
                f"inspect teach --camera '{camera}' --out golden.png")

    @property
    def model_sha256(self) -> str | None:
        return None if self.classifier is None else self.classifier.card.onnx_sha256

    def detection_crops(self, part: Part) -> list[np.ndarray] | None:
        """The crops of ``part``'s detections as the classifier cuts them (image, golden, |difference|, with its
        card's context; a classifier-free chain's candidate settings otherwise): what an operator reviews and
        ``inspect labels export`` hands to ``inspect train``. None for a part without a golden or detections."""
        if part.image is None or part.reference is None or not part.detections:
            return None
        card = None if self.classifier is None else self.classifier.card
        detector = card.detector if card is not None and card.detector is not None else classical_detector(self.recipe)
        boxes = np.array([detection.region.box_xyxy_px for detection in part.detections], float)
        return candidate_crops(part.image, part.reference, boxes, context=detector.crop_context,
                               min_side_px=detector.crop_min_side_px)

    def replace_with(self, other: Chain) -> None:
        """Take ``other``'s recipe, stages and models, closing this chain's: a recipe selected between parts
        (nothing may be in flight). The caller keeps its pipeline settings (queue depth, workers)."""
        retired = (self.batcher, self.anomaly_batcher)
        self.recipe, self.stages, self.classifier = other.recipe, other.stages, other.classifier
        self.batcher, self.anomaly_batcher = other.batcher, other.anomaly_batcher
        for batcher in retired:
            if batcher is not None:
                batcher.close()

    def close(self) -> None:
        for batcher in (self.batcher, self.anomaly_batcher):
            if batcher is not None:
                batcher.close()

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def classical_detector(recipe: Recipe) -> DetectorSettings:
    """Candidate settings of a station without a classifier: the recipe's ``inspect`` band, no morphology."""
    inspect = recipe.inspect or InspectSettings()
    return DetectorSettings(band_px=inspect.band_px, tolerance_grey=inspect.tolerance_grey, open_px=0, close_px=0,
                            min_area_px=inspect.min_area_px, edge_margin_px=CLASSICAL_MARGIN_PX, crop_context=1.0,
                            crop_min_side_px=8, box_growth={}, nms_iou=1.0, min_score=0.0,
                            fitted_on="the recipe's inspect section")


def load_golden(recipe: Recipe, stage: Preprocess) -> np.ndarray | None:
    """The recipe's golden, preprocessed exactly as the frames will be (None for a golden per frame)."""
    assert recipe.reference is not None
    golden = recipe.reference.golden
    if golden is None:
        return None
    if golden.startswith("sim:"):
        kind, size_px = synthetic_reference(golden)
        frame = Frame(np.array(golden_image(kind, size_px=size_px)), "mono", 8, golden, 0, 0.0)
    else:
        image, layout, bit_depth = read_image(golden)
        frame = Frame(image, layout, bit_depth, golden, 0, 0.0)
    roi = recipe.preprocess.roi_xywh_px
    if roi is not None and (roi[0] + roi[2] > frame.width_px or roi[1] + roi[3] > frame.height_px):
        raise RecipeError(f"{recipe.source_path or recipe.name}: preprocess.roi_xywh_px {roi} (x, y, width, height) "
                          f"reaches outside the golden's {frame.width_px}x{frame.height_px} px ({golden})")
    return stage.grey(frame)


def _classifier(recipe: Recipe, *, threads: int) -> Classifier:
    """The recipe's classifier, checked against what the recipe and its chain need from it."""
    settings = recipe.classify
    assert settings is not None
    where = recipe.source_path or recipe.name
    try:
        model = find_model(settings.model)
    except ModelNotFoundError as exc:
        raise RecipeError(f"{where}: classify.model: {exc}") from None
    session = SessionSettings(intra_op_threads=threads, spinning=False, cuda_graph=settings.cuda_graph)
    try:
        try:
            classifier = Classifier(model, precision=settings.precision, device=settings.device, settings=session)
        except VariantCheckError as exc:
            if not settings.fallback_to_fp32 or settings.precision == "fp32":
                raise
            log.warning("%s: classify.fallback_to_fp32: running FP32 instead: %s", where, exc)
            classifier = Classifier(model, device=settings.device, settings=session)
        classifier.warm_up(settings.max_batch)
    except CardError as exc:  # a card that is invalid or does not match its ONNX file: name the recipe too
        raise RecipeError(f"{where}: classify.model {settings.model}: {exc}") from None
    card, names = classifier.card, classifier.class_names
    reported = [*names, "anomaly"] if recipe.anomaly is not None else names
    unknown = [name for name in settings.rule_classes() if name not in reported]
    if unknown:
        raise RecipeError(f"{where}: classify rules name {', '.join(unknown)}, which the model {settings.model} "
                          f"does not have (its classes: {', '.join(names)})")
    if card.thresholds.good_class is None:
        raise RecipeError(f"{where}: classify.model {settings.model}: its card names no good class; the chain "
                          "needs one (a false candidate, a passing die)")
    if card.input.channels != 3:
        raise RecipeError(f"{where}: classify.model {settings.model} takes {card.input.channels}-channel input; a "
                          f"{recipe.kind} chain gives it 3-channel crops (image, golden, difference)")
    if recipe.kind != "wafer-lot":
        if card.detector is None:
            raise RecipeError(f"{where}: classify.model {settings.model}: its card has no detector section (the "
                              "candidates it was trained on); export it with `inspect export MODEL --detector JSON`")
        if settings.min_score is not None and settings.min_score < card.detector.min_score:
            raise RecipeError(f"{where}: classify.min_score {settings.min_score} is below the card's "
                              f"{card.detector.min_score}: a recipe may only tighten what the model was tuned for")
    return classifier


def _anomaly_stage(recipe: Recipe, *, threads: int) -> FindAnomalies:
    """The recipe's anomaly model, checked, with its own micro-batcher."""
    settings = recipe.anomaly
    assert settings is not None
    where = recipe.source_path or recipe.name
    try:
        model = AnomalyModel(find_model(settings.model), device=settings.device,
                             settings=SessionSettings(intra_op_threads=threads, spinning=False))
    except (ModelNotFoundError, CardError) as exc:
        raise RecipeError(f"{where}: anomaly.model {settings.model}: {exc}") from None
    model.runtime.warm_up(settings.max_batch)
    card_threshold = model.settings.threshold
    if settings.threshold is not None and settings.threshold < card_threshold:
        raise RecipeError(f"{where}: anomaly.threshold {settings.threshold} is below the card's {card_threshold} "
                          "(chosen on held-out good images for its false-alarm rate): a recipe may only raise it")
    batcher = MicroBatcher(model.score_maps, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)
    return FindAnomalies(model, batcher, settings.threshold or card_threshold, recipe.pixel_size_um)


def candidate_chain(recipe: Recipe, candidates: DetectorSettings) -> Chain:
    """``recipe``'s chain up to its candidates, made with ``candidates`` instead of its model card's: what a
    new model for the station is trained on (``datasets/*_crops.py``). Its parts carry ``image``,
    ``reference`` and ``regions``."""
    without_model = recipe.model_copy(update={"classify": None,
                                              "grade": GradeSettings(review_area_um2=0, fail_area_um2=0)})
    return build_chain(without_model, candidates=candidates)


def build_chain(recipe: Recipe, *, rank_hypotheses: bool = False, threads: int = 0,
                candidates: DetectorSettings | None = None) -> Chain:
    """The chain of ``recipe``'s kind with its models loaded and checked (a command line's ``--device`` and the
    like come in through :meth:`Recipe.with_classify`).

    ``rank_hypotheses`` keeps every candidate's score for every class (for average precision); ``threads``
    bounds ONNX Runtime's threads per operator (0: one per core); ``candidates`` replaces a classifier-free
    recipe's candidate settings (the candidates a model is about to be trained on). Raises RecipeError (naming
    the recipe's file and field) for a missing model, rules naming classes the model does not have, or a model
    that does not fit the chain.
    """
    flatfield = None if recipe.preprocess.flatfield is None else load_flatfield(recipe.preprocess.flatfield)
    prepare = Preprocess(recipe, flatfield)
    classify = recipe.classify
    classifier = None if classify is None else _classifier(recipe, threads=threads)
    batcher = None if classify is None or classifier is None else MicroBatcher(
        classifier.predict, max_batch=classify.max_batch, max_wait_ms=classify.max_wait_ms)
    stages: list[Stage] = [prepare]
    anomalies = None if recipe.anomaly is None else _anomaly_stage(recipe, threads=threads)
    anomaly_batcher = None if anomalies is None else anomalies.batcher
    if anomalies is not None and recipe.reference is None:  # no golden: the anomaly model alone
        stages += [anomalies, NameByPolarity(recipe), GradePart(recipe)]
        return Chain(recipe, stages, anomaly_batcher=anomaly_batcher)
    if recipe.kind == "wafer-lot":
        assert classifier is not None and batcher is not None and recipe.wafermap is not None
        threshold = classify.defect_score if classify is not None and classify.defect_score else None
        threshold = threshold or classifier.card.thresholds.defect_score
        if threshold is None:
            raise RecipeError(f"{recipe.source_path}: classify.defect_score is not set and the card of "
                              f"{classify and classify.model} has no operating point")
        try:
            map_model = find_model(recipe.wafermap.model)
        except ModelNotFoundError as exc:
            raise RecipeError(f"{recipe.source_path}: wafermap.model: {exc}") from None
        stages += [LocateDies(recipe), ClassifyDies(classifier, batcher, threshold),
                   LocaliseDefects(recipe.pixel_size_um),
                   WaferPattern(load_wafermap_model(map_model, threads=threads)), GradeWafer(recipe)]
        return Chain(recipe, stages, classifier=classifier, batcher=batcher)
    detector = (candidates or classical_detector(recipe)) if classifier is None else classifier.card.detector
    assert detector is not None
    assert recipe.reference is not None
    golden, align = load_golden(recipe, prepare), recipe.align or AlignSettings()
    prepared = (PhaseReference(golden, scale=align.phase_scale) if golden is not None and align.method == "phase"
                else None)
    stages += [Register(prepare, golden, align, margin_px=detector.edge_margin_px, beside=recipe.reference.beside,
                        prepared=prepared),
               FindCandidates(detector, recipe.pixel_size_um)]
    if anomalies is not None:
        stages.append(anomalies)
    if classifier is not None and batcher is not None and classify is not None:
        min_score = detector.min_score if classify.min_score is None else classify.min_score
        stages.append(ClassifyCandidates(classifier, batcher, min_score, rank_hypotheses))
    else:
        stages.append(NameByPolarity(recipe))
    stages.append(GradePart(recipe))
    return Chain(recipe, stages, classifier=classifier, batcher=batcher, anomaly_batcher=anomaly_batcher)
