"""One chain of stages, built from a recipe: what every runner applies to each frame (wiring only).

The recipe's ``kind`` picks the stages; each stage is a thin adapter that calls its stage package's functions,
takes the typed records of the stages before it and returns its own:

- ``wafer-die`` and ``pcb`` (:class:`PartChain`): preprocess -> register to the golden (an
  :class:`~inspection.align.AlignedFrame`) -> candidate regions (golden-template difference) -> classify the
  candidates through the shared micro-batcher (or, without a classifier, name them by polarity) -> grade by class
  (or by size); the result is an :class:`InspectedPart`;
- ``wafer-lot`` (:class:`WaferChain`): preprocess -> locate the dies -> classify every die through the
  micro-batcher -> localise the defects -> die map and its :class:`~inspection.types.WaferPattern` -> grade the
  wafer; the result is an :class:`InspectedWafer`.

The line loop (:mod:`inspection.chain.line`), lot grading (:mod:`inspection.chain.lot`) and PCB pairs
(:mod:`inspection.chain.pairs`) only feed frames to a chain and store what comes out. A stage that fails ends
the part as :class:`Failed`, naming the stage; it never stops the runner.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import numpy as np

from inspection.acquire import read_beside, read_image
from inspection.align import AlignedFrame, PhaseReference, align_to_golden
from inspection.calibrate import load_flatfield
from inspection.classify import Classifier, MicroBatcher, SessionSettings, VariantCheckError
from inspection.classify.anomaly import AnomalyModel, anomaly_regions
from inspection.classify.card import CardError, DetectorSettings
from inspection.classify.detect import Hypotheses, NamedCandidates, join_anomalies, name_candidates, overlaps_any
from inspection.grade import class_verdict, polarity_detections, size_verdict, wafer_verdict
from inspection.measure import DifferenceSettings, candidate_crops, difference_regions
from inspection.measure.dies import DefectBoxes, DieLayout, defect_boxes_um, die_inputs, locate_dies
from inspection.model_paths import ModelNotFoundError, find_model
from inspection.preprocess import FlatField, preprocess_frame
from inspection.recipe import (
    AlignSettings,
    BesideRule,
    ClassifySettings,
    GradeSettings,
    InspectSettings,
    LotRules,
    Recipe,
    RecipeError,
    WaferLayout,
    synthetic_reference,
)
from inspection.types import Detection, Frame, FrameResult, InspectionError, Region, Verdict, WaferPattern
from inspection.wafermap.classify import WaferMapModel, classify_maps, load_wafermap_model
from inspection.wafermap.maps import die_map_of

log = logging.getLogger("inspection.chain")

CLASSICAL_MARGIN_PX = 1
"""Without a card's detector settings, candidates are sought this far inside the registered golden."""

Params = ParamSpec("Params")
Returned = TypeVar("Returned")


# --- what comes out of a chain ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Inference:
    """How the classifier judged a part's candidates (or a wafer's dies)."""

    model_sha256: str
    probabilities: np.ndarray
    """(N, classes): per candidate (or die), its class probabilities."""
    batch_sizes: tuple[int, ...]
    """The sizes of the inference batches they rode in, largest first."""
    batch_wait_ms: float
    """The longest wait of any of them in the micro-batcher before its batch ran."""

    def extras(self) -> dict[str, object]:
        """What the results store keeps of it."""
        return {"candidates": len(self.probabilities), "batch_sizes": list(self.batch_sizes),
                "batch_wait_ms": round(self.batch_wait_ms, 3)}


@dataclass(frozen=True)
class Failed:
    """A part a stage could not judge: stored with the stage's reason as an ``error`` verdict, never dropped."""

    frame: Frame
    stage: str
    reason: str
    """``stage: what went wrong``."""
    error: InspectionError | None
    """The error the user can act on; None for an internal error (logged with its traceback)."""
    latency_ms: Mapping[str, float]
    image: np.ndarray | None = None
    """The preprocessed image, when preprocessing succeeded (the picture an operator sees)."""
    shift_px: tuple[float, float] | None = None
    """The registration's shift, when it succeeded."""

    @property
    def verdict(self) -> Verdict:
        return Verdict.ERROR

    def result(self) -> FrameResult:
        """What the line stores for this part."""
        frame = self.frame
        return FrameResult(frame.source_id, frame.frame_counter, frame.timestamp_s, Verdict.ERROR, (),
                           self.latency_ms, reason=self.reason, path=frame.path, shift_px=self.shift_px,
                           truth=frame.truth)


@dataclass(frozen=True)
class Named:
    """A part's candidates as a classifier (or their polarity) named them."""

    detections: tuple[Detection, ...]
    hypotheses: Hypotheses | None = None
    """Every candidate's score for every class, ranked (PCB evaluation's average precision)."""
    inference: Inference | None = None
    """None: no classifier ran."""


@dataclass(frozen=True)
class InspectedPart:
    """A part judged against its golden (``wafer-die``, ``pcb``) or by the anomaly model alone."""

    frame: Frame
    image: np.ndarray
    """(H, W) uint8: the preprocessed image the stages judged."""
    aligned: AlignedFrame | None
    """The image registered to its golden; None for a chain without a golden (the anomaly model alone)."""
    regions: tuple[Region, ...]
    """The candidates (golden difference and anomaly regions)."""
    named: Named
    verdict: Verdict
    reason: str
    latency_ms: Mapping[str, float]
    anomaly_map: np.ndarray | None = None
    """The anomaly model's score map (h x w, one cell per ``map_stride_px`` square of the image); None: none ran."""

    @property
    def detections(self) -> tuple[Detection, ...]:
        return self.named.detections

    def result(self) -> FrameResult:
        """What the line stores for this part."""
        frame, inference = self.frame, self.named.inference
        return FrameResult(frame.source_id, frame.frame_counter, frame.timestamp_s, self.verdict, self.detections,
                           self.latency_ms, reason=self.reason, path=frame.path,
                           shift_px=None if self.aligned is None else self.aligned.fit.shift_px, truth=frame.truth,
                           model_sha256=None if inference is None else inference.model_sha256,
                           extras={} if inference is None else inference.extras())


@dataclass(frozen=True)
class DieJudgement:
    """Per die (N,): the classifier's verdict."""

    inference: Inference
    defect_scores: np.ndarray
    """1 - p(good)."""
    defective: np.ndarray
    """bool: the score reaches the recipe's (or card's) defect_score."""
    classes: np.ndarray
    """Index of the die's class: its most likely defect class when defective, else the good class."""


@dataclass(frozen=True)
class WaferGrade:
    yield_fraction: float
    defect_density_per_cm2: float
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class InspectedWafer:
    """A whole wafer graded (``wafer-lot``): its dies, their judgement, the die map and its pattern."""

    frame: Frame
    image: np.ndarray
    dies: DieLayout
    judged: DieJudgement
    defect_boxes: DefectBoxes
    die_map: np.ndarray
    """(rows, cols) int8: 0 no die, 1 good, 2 failed."""
    pattern: WaferPattern
    grade: WaferGrade
    latency_ms: Mapping[str, float]

    @property
    def verdict(self) -> Verdict:
        return self.grade.verdict


class _StageFailed(Exception):
    def __init__(self, stage: str, cause: Exception) -> None:
        super().__init__(stage)
        self.stage, self.cause = stage, cause


class _Timed:
    """Runs one part's stages, timing each; a stage's exception is raised again naming the stage."""

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.latency_ms: dict[str, float] = {}

    def __call__(self, stage: str, call: Callable[Params, Returned], *args: Params.args,
                 **kwargs: Params.kwargs) -> Returned:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        except Exception as exc:  # a part that cannot be judged is stored as an error, never dropped
            raise _StageFailed(stage, exc) from exc
        finally:
            self.latency_ms[stage] = (time.perf_counter() - started) * 1000.0

    def failed(self, failure: _StageFailed, *, image: np.ndarray | None = None,
               aligned: AlignedFrame | None = None) -> Failed:
        cause, frame = failure.cause, self.frame
        if not isinstance(cause, InspectionError):
            log.error("frame %s/%d: %s failed:\n%s", frame.source_id, frame.frame_counter, failure.stage,
                      "".join(traceback.format_exception(cause)))
        return Failed(frame, failure.stage, f"{failure.stage}: {cause}",
                      cause if isinstance(cause, InspectionError) else None, self.latency_ms, image,
                      None if aligned is None else aligned.fit.shift_px)


# --- the stages ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preprocess:
    recipe: Recipe
    flatfield: FlatField | None

    def __call__(self, frame: Frame) -> np.ndarray:
        """The 8-bit grey image (H x W) the stages judge."""
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

    def __call__(self, image: np.ndarray, frame: Frame, reference: Frame | None) -> AlignedFrame:
        if reference is None and self.beside is not None:
            reference = read_beside(frame, test=self.beside.test, template=self.beside.template)
        prepared = None
        if reference is not None:
            golden = self.preprocess(reference)
        elif self.golden is not None:
            golden, prepared = self.golden, self.prepared
        else:
            raise InspectionError("the recipe's golden comes from beside each frame, and this frame brought none")
        return align_to_golden(image, golden, settings=self.settings, margin_px=self.margin_px, prepared=prepared)


@dataclass(frozen=True)
class FindCandidates:
    """Where the image leaves the golden's tolerance band: the candidate regions."""

    settings: DifferenceSettings
    pixel_size_um: float

    def __call__(self, aligned: AlignedFrame) -> tuple[Region, ...]:
        return difference_regions(aligned.image, aligned.reference, valid=aligned.valid, settings=self.settings,
                                  pixel_size_um=self.pixel_size_um)


@dataclass(frozen=True)
class FindAnomalies:
    """The anomaly model scores the whole image through its own micro-batcher; its regions join the candidates
    (those overlapping a golden-difference candidate are not repeated)."""

    model: AnomalyModel
    batcher: MicroBatcher
    threshold: float
    pixel_size_um: float

    def __call__(self, image: np.ndarray, frame: Frame, candidates: tuple[Region, ...]
                 ) -> tuple[tuple[Region, ...], np.ndarray]:
        """The candidates with the anomaly regions added, and the score map."""
        prepared = self.model.prepare(image, layout="mono", bit_depth=8, source=frame.path or frame.source_id)
        (scored,) = self.batcher.run(prepared[None])
        score_map = scored.output[0]
        found = anomaly_regions(score_map, threshold=self.threshold, stride_px=self.model.settings.map_stride_px,
                                image_shape=image.shape, pixel_size_um=self.pixel_size_um)
        known = np.array([region.box_xyxy_px for region in candidates], float).reshape(-1, 4)
        repeated = overlaps_any(np.array([region.box_xyxy_px for region in found], float).reshape(-1, 4), known)
        return (*candidates, *(region for region, again in zip(found, repeated, strict=True) if not again)), score_map


def _batched(batcher: MicroBatcher, classifier: Classifier, crops: Sequence[np.ndarray] | np.ndarray
             ) -> Inference:
    """Class probabilities of 3-channel 8-bit crops, through the shared micro-batcher, with the sizes of the
    batches they rode in and their longest wait."""
    card = classifier.card
    if not len(crops):
        return Inference(card.onnx_sha256, np.zeros((0, len(card.class_names)), np.float32), (), 0.0)
    batched = batcher.run(classifier.prepare([(crop, "bgr", 8) for crop in crops]))
    return Inference(card.onnx_sha256, np.stack([b.output for b in batched]),
                     tuple(sorted({b.batch_size for b in batched}, reverse=True)), max(b.queued_ms for b in batched))


@dataclass(frozen=True)
class ClassifyCandidates:
    """The CNN names every candidate, through the micro-batcher shared by all of the chain's callers."""

    classifier: Classifier
    batcher: MicroBatcher
    detector: DetectorSettings
    """The candidates the model was trained on (its card's)."""
    good_class: str
    min_score: float
    rank: bool

    def __call__(self, aligned: AlignedFrame, regions: tuple[Region, ...]) -> Named:
        boxes = np.array([region.box_xyxy_px for region in regions], float).reshape(-1, 4)
        crops = [] if not regions else candidate_crops(aligned.image, aligned.reference, boxes,
                                                       context=self.detector.crop_context,
                                                       min_side_px=self.detector.crop_min_side_px)
        inference = _batched(self.batcher, self.classifier, crops)
        from_anomaly = np.array([region.anomaly_score is not None for region in regions], bool)
        anomalous = [region for region in regions if region.anomaly_score is not None]
        size = aligned.image.shape
        result = self._named([region for region in regions if region.anomaly_score is None],
                             inference.probabilities[~from_anomaly], size=size, rank=self.rank)
        if anomalous:
            result = join_anomalies(result, self._named(anomalous, inference.probabilities[from_anomaly], size=size,
                                                        rank=False),
                                    anomalous, inference.probabilities[from_anomaly], min_score=self.min_score)
        return Named(result.detections, result.hypotheses, inference)

    def _named(self, regions: Sequence[Region], probabilities: np.ndarray, *, size: tuple[int, ...],
               rank: bool) -> NamedCandidates:
        card = self.classifier.card
        return name_candidates(regions, probabilities, class_names=card.class_names, good_class=self.good_class,
                               min_score=self.min_score, settings=self.detector, size=(size[0], size[1]),
                               model_sha256=card.onnx_sha256, rank=rank)


@dataclass(frozen=True)
class NameByPolarity:
    """Without a classifier: candidates large enough to report, named dark or bright."""

    settings: GradeSettings

    def __call__(self, regions: tuple[Region, ...]) -> Named:
        return Named(polarity_detections(regions, settings=self.settings))


@dataclass(frozen=True)
class GradeByClass:
    rules: ClassifySettings

    def __call__(self, detections: tuple[Detection, ...]) -> tuple[Verdict, str]:
        return class_verdict(detections, rules=self.rules)


@dataclass(frozen=True)
class GradeBySize:
    settings: GradeSettings

    def __call__(self, detections: tuple[Detection, ...]) -> tuple[Verdict, str]:
        return size_verdict(detections, settings=self.settings)


@dataclass(frozen=True)
class LocateDies:
    wafer: WaferLayout
    pixel_size_um: float

    def __call__(self, image: np.ndarray, timings_ms: dict[str, float]) -> DieLayout:
        return locate_dies(image, wafer=self.wafer, pixel_size_um=self.pixel_size_um, timings_ms=timings_ms)


@dataclass(frozen=True)
class ClassifyDies:
    """The CNN judges every die (the die, the wafer's median die, their difference) through the batcher."""

    classifier: Classifier
    batcher: MicroBatcher
    defect_score: float
    good_index: int

    def __call__(self, dies: DieLayout) -> DieJudgement:
        inference = _batched(self.batcher, self.classifier, die_inputs(dies.crops, dies.golden))
        scores = self.classifier.defect_scores(inference.probabilities)
        defective = scores >= self.defect_score
        without_good = inference.probabilities.copy()
        without_good[:, self.good_index] = -1.0
        return DieJudgement(inference, scores, defective,
                            np.where(defective, np.argmax(without_good, axis=1), self.good_index))


@dataclass(frozen=True)
class LocaliseDefects:
    pixel_size_um: float

    def __call__(self, dies: DieLayout, defective: np.ndarray) -> DefectBoxes:
        return defect_boxes_um(dies.crops, dies.golden, defective, pixel_size_um=self.pixel_size_um)


@dataclass(frozen=True)
class ClassifyPattern:
    model: WaferMapModel

    def __call__(self, dies: DieLayout, defective: np.ndarray) -> tuple[np.ndarray, WaferPattern]:
        """The die map and its pattern."""
        rows = np.array([d.row for d in dies.dies], np.int32)
        cols = np.array([d.column for d in dies.dies], np.int32)
        die_map = die_map_of(rows, cols, defective)
        (pattern,) = classify_maps(self.model, [die_map])
        return die_map, pattern


@dataclass(frozen=True)
class GradeWafer:
    rules: LotRules
    die_pitch_um: tuple[float, float]

    def __call__(self, defective: np.ndarray, pattern: WaferPattern) -> WaferGrade:
        yield_fraction = float(1.0 - defective.mean())
        die_area_cm2 = self.die_pitch_um[0] * self.die_pitch_um[1] * 1e-8
        density = float(defective.sum() / (len(defective) * die_area_cm2))
        verdict, reason = wafer_verdict(yield_fraction=yield_fraction, defect_density_per_cm2=density,
                                        pattern=pattern.pattern, pattern_confidence=pattern.confidence,
                                        rules=self.rules)
        return WaferGrade(yield_fraction, density, verdict, reason)


# --- the chains ---------------------------------------------------------------------------------------------

class Chain:
    """What every chain has: its recipe, its models and their micro-batchers; close it (or use it as a context
    manager) to stop them.

    Every classifier call of every caller goes through one :class:`MicroBatcher`, so candidates of frames
    inspected at the same time share a batch.
    """

    def __init__(self, recipe: Recipe, *, classifier: Classifier | None = None, batcher: MicroBatcher | None = None,
                 anomaly_batcher: MicroBatcher | None = None) -> None:
        self.recipe = recipe
        self.classifier = classifier
        self.batcher = batcher
        self.anomaly_batcher = anomaly_batcher
        """The anomaly model's own batcher (whole images, not candidate crops)."""

    @property
    def model_sha256(self) -> str | None:
        return None if self.classifier is None else self.classifier.card.onnx_sha256

    def close(self) -> None:
        for batcher in (self.batcher, self.anomaly_batcher):
            if batcher is not None:
                batcher.close()

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class GoldenStages:
    """A part judged against its golden."""

    preprocess: Preprocess
    register: Register
    find: FindCandidates
    anomalies: FindAnomalies | None
    name: ClassifyCandidates | NameByPolarity
    grade: GradeByClass | GradeBySize


@dataclass(frozen=True)
class AnomalyStages:
    """A part judged by the anomaly model alone (no golden, so no CNN)."""

    preprocess: Preprocess
    anomalies: FindAnomalies
    name: NameByPolarity
    grade: GradeBySize


class PartChain(Chain):
    """The ``wafer-die`` and ``pcb`` chain: one part at a time, callable from several threads at once."""

    def __init__(self, recipe: Recipe, stages: GoldenStages | AnomalyStages, *,
                 classifier: Classifier | None = None, batcher: MicroBatcher | None = None,
                 anomaly_batcher: MicroBatcher | None = None) -> None:
        super().__init__(recipe, classifier=classifier, batcher=batcher, anomaly_batcher=anomaly_batcher)
        self.stages = stages

    @property
    def stage_names(self) -> tuple[str, ...]:
        if isinstance(self.stages, AnomalyStages):
            return ("preprocess", "anomaly", "classify", "grade")
        return ("preprocess", "align", "measure", *(("anomaly",) if self.stages.anomalies else ()), "classify",
                "grade")

    def __call__(self, frame: Frame, *, reference: Frame | None = None) -> InspectedPart | Failed:
        """Every stage on ``frame`` (against ``reference`` when it brings its own golden)."""
        timed, stages = _Timed(frame), self.stages
        image, aligned, anomaly_map = None, None, None
        try:
            image = timed("preprocess", stages.preprocess, frame)
            if isinstance(stages, AnomalyStages):
                regions, anomaly_map = timed("anomaly", stages.anomalies, image, frame, ())
                named = timed("classify", stages.name, regions)
            else:
                aligned = timed("align", stages.register, image, frame, reference)
                regions = timed("measure", stages.find, aligned)
                if stages.anomalies is not None:
                    regions, anomaly_map = timed("anomaly", stages.anomalies, image, frame, regions)
                if isinstance(stages.name, ClassifyCandidates):
                    named = timed("classify", stages.name, aligned, regions)
                else:
                    named = timed("classify", stages.name, regions)
            verdict, reason = timed("grade", stages.grade, named.detections)
        except _StageFailed as failure:
            return timed.failed(failure, image=image, aligned=aligned)
        if named.inference is not None and named.inference.batch_sizes:
            timed.latency_ms["batch_wait"] = named.inference.batch_wait_ms
        return InspectedPart(frame, image, aligned, regions, named, verdict, reason, timed.latency_ms, anomaly_map)

    def check_frame_size(self, frame: Frame, *, camera: str) -> None:
        """Refuse a camera whose frames do not fit the recipe's region of interest or golden (said once, at the
        first frame)."""
        recipe, stages = self.recipe, self.stages
        where = recipe.source_path or recipe.name
        roi = recipe.preprocess.roi_xywh_px
        if roi is not None and (roi[0] + roi[2] > frame.width_px or roi[1] + roi[3] > frame.height_px):
            raise RecipeError(f"{where}: preprocess.roi_xywh_px {roi} (x, y, width, height) reaches outside camera "
                              f"{camera}'s {frame.width_px}x{frame.height_px} px frames")
        height, width = stages.preprocess(frame).shape
        if stages.anomalies is not None and recipe.anomaly is not None:
            spec = stages.anomalies.model.card.input
            if (height, width) != (spec.height, spec.width):
                raise RecipeError(
                    f"{where}: anomaly.model ({recipe.anomaly.model}) was trained on {spec.width}x{spec.height} px "
                    f"images but camera {camera} delivers {width}x{height} px frames (after preprocessing); train "
                    "one on this camera's good parts: inspect train-anomaly GOOD_FOLDER --out MODEL")
        if isinstance(stages, AnomalyStages) or stages.register.golden is None or recipe.reference is None:
            return
        golden_height, golden_width = stages.register.golden.shape
        if (height, width) != (golden_height, golden_width):
            raise RecipeError(
                f"{where}: reference.golden ({recipe.reference.golden}) is {golden_width}x{golden_height} px but "
                f"camera {camera} delivers {width}x{height} px frames (after preprocessing); teach a golden from "
                f"this camera: inspect teach --camera '{camera}' --out golden.png")

    def detection_crops(self, part: InspectedPart) -> list[np.ndarray] | None:
        """The crops of ``part``'s detections as the classifier cuts them (image, golden, |difference|, with its
        card's context; a classifier-free chain's candidate settings otherwise): what an operator reviews and
        ``inspect labels export`` hands to ``inspect train``. None for a part without a golden or detections."""
        if part.aligned is None or not part.detections:
            return None
        name = self.stages.name
        detector = name.detector if isinstance(name, ClassifyCandidates) else classical_detector(self.recipe)
        boxes = np.array([detection.region.box_xyxy_px for detection in part.detections], float)
        return candidate_crops(part.aligned.image, part.aligned.reference, boxes, context=detector.crop_context,
                               min_side_px=detector.crop_min_side_px)

    def replace_with(self, other: PartChain) -> None:
        """Take ``other``'s recipe, stages and models, closing this chain's: a recipe selected between parts
        (nothing may be in flight). The caller keeps its pipeline settings (queue depth, workers)."""
        retired = (self.batcher, self.anomaly_batcher)
        self.recipe, self.stages, self.classifier = other.recipe, other.stages, other.classifier
        self.batcher, self.anomaly_batcher = other.batcher, other.anomaly_batcher
        for batcher in retired:
            if batcher is not None:
                batcher.close()

    def __enter__(self) -> PartChain:
        return self


@dataclass(frozen=True)
class WaferStages:
    preprocess: Preprocess
    locate: LocateDies
    classify: ClassifyDies
    localise: LocaliseDefects
    pattern: ClassifyPattern
    grade: GradeWafer


class WaferChain(Chain):
    """The ``wafer-lot`` chain: one whole-wafer image at a time."""

    stage_names = ("preprocess", "dies", "classify", "localise", "pattern", "grade")

    def __init__(self, recipe: Recipe, stages: WaferStages, *, classifier: Classifier,
                 batcher: MicroBatcher) -> None:
        super().__init__(recipe, classifier=classifier, batcher=batcher)
        self.stages = stages

    def __call__(self, frame: Frame) -> InspectedWafer | Failed:
        timed, stages = _Timed(frame), self.stages
        image = None
        try:
            image = timed("preprocess", stages.preprocess, frame)
            dies = timed("dies", stages.locate, image, timed.latency_ms)
            judged = timed("classify", stages.classify, dies)
            boxes = timed("localise", stages.localise, dies, judged.defective)
            die_map, pattern = timed("pattern", stages.pattern, dies, judged.defective)
            grade = timed("grade", stages.grade, judged.defective, pattern)
        except _StageFailed as failure:
            return timed.failed(failure, image=image)
        if judged.inference.batch_sizes:
            timed.latency_ms["batch_wait"] = judged.inference.batch_wait_ms
        return InspectedWafer(frame, image, dies, judged, boxes, die_map, pattern, grade, timed.latency_ms)

    def __enter__(self) -> WaferChain:
        return self


def classical_detector(recipe: Recipe) -> DetectorSettings:
    """Candidate settings of a station without a classifier: the recipe's ``inspect`` band, no morphology.

    Parameters
    ----------
    recipe : Recipe

    Returns
    -------
    DetectorSettings
    """
    inspect = recipe.inspect or InspectSettings()
    return DetectorSettings(band_px=inspect.band_px, tolerance_grey=inspect.tolerance_grey, open_px=0, close_px=0,
                            min_area_px=inspect.min_area_px, edge_margin_px=CLASSICAL_MARGIN_PX, crop_context=1.0,
                            crop_min_side_px=8, box_growth={}, nms_iou=1.0, min_score=0.0,
                            fitted_on="the recipe's inspect section")


def load_golden(recipe: Recipe, preprocess: Preprocess) -> np.ndarray | None:
    """The recipe's golden, preprocessed exactly as the frames will be.

    Parameters
    ----------
    recipe : Recipe
        Its ``reference.golden``: an image file or ``sim:KIND[:SIZE]``.
    preprocess : Preprocess
        The chain's preprocessing stage.

    Returns
    -------
    (H, W) uint8 ndarray or None
        None: the recipe has no golden, or every frame brings its own.

    Raises
    ------
    RecipeError
        When the recipe's region of interest reaches outside the golden.
    """
    golden = None if recipe.reference is None else recipe.reference.golden
    if golden is None:
        return None
    if golden.startswith("sim:"):
        from inspection.acquire.sim import golden_frame  # the generators load only for a simulated station

        kind, size_px = synthetic_reference(golden)
        frame = golden_frame(kind, size_px=size_px, source=golden)
    else:
        image, layout, bit_depth = read_image(golden)
        frame = Frame(image, layout, bit_depth, golden, 0, 0.0)
    roi = recipe.preprocess.roi_xywh_px
    if roi is not None and (roi[0] + roi[2] > frame.width_px or roi[1] + roi[3] > frame.height_px):
        raise RecipeError(f"{recipe.source_path or recipe.name}: preprocess.roi_xywh_px {roi} (x, y, width, height) "
                          f"reaches outside the golden's {frame.width_px}x{frame.height_px} px ({golden})")
    return preprocess(frame)


def _classifier(recipe: Recipe, settings: ClassifySettings, *, threads: int) -> tuple[Classifier, str]:
    """The recipe's classifier and its good class, checked against what the recipe and its chain need."""
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
    good_class = card.thresholds.good_class
    if good_class is None:
        raise RecipeError(f"{where}: classify.model {settings.model}: its card names no good class; the chain "
                          "needs one (a false candidate, a passing die)")
    if card.input.channels != 3:
        raise RecipeError(f"{where}: classify.model {settings.model} takes {card.input.channels}-channel input; a "
                          f"{recipe.kind} chain gives it 3-channel crops (image, golden, difference)")
    return classifier, good_class


def _detector(recipe: Recipe, classifier: Classifier, settings: ClassifySettings) -> DetectorSettings:
    """The candidates a part chain's classifier was trained on (its card's detector section), checked."""
    where, detector = recipe.source_path or recipe.name, classifier.card.detector
    if detector is None:
        raise RecipeError(f"{where}: classify.model {settings.model}: its card has no detector section (the "
                          "candidates it was trained on); export it with `inspect export MODEL --detector JSON`")
    if settings.min_score is not None and settings.min_score < detector.min_score:
        raise RecipeError(f"{where}: classify.min_score {settings.min_score} is below the card's "
                          f"{detector.min_score}: a recipe may only tighten what the model was tuned for")
    return detector


def _anomaly_stage(recipe: Recipe, *, threads: int) -> FindAnomalies | None:
    """The recipe's anomaly model, checked, with its own micro-batcher (None: the recipe has none)."""
    settings = recipe.anomaly
    if settings is None:
        return None
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


def _preprocess(recipe: Recipe) -> Preprocess:
    flatfield = recipe.preprocess.flatfield
    return Preprocess(recipe, None if flatfield is None else load_flatfield(flatfield))


def _grade(recipe: Recipe) -> GradeByClass | GradeBySize:
    if recipe.classify is not None:
        return GradeByClass(recipe.classify)
    if recipe.grade is None:
        raise RecipeError(f"{recipe.source_path or recipe.name}: needs classify (verdicts by class) or grade "
                          "(verdicts by size)")
    return GradeBySize(recipe.grade)


def _polarity(recipe: Recipe) -> NameByPolarity:
    if recipe.grade is None:
        raise RecipeError(f"{recipe.source_path or recipe.name}: without a classifier, grade (verdicts by size) "
                          "is needed")
    return NameByPolarity(recipe.grade)


def candidate_chain(recipe: Recipe, candidates: DetectorSettings) -> PartChain:
    """``recipe``'s chain up to its candidates, made with ``candidates`` instead of its model card's.

    What a new model for the station is trained on (``inspect labels cut``): its parts carry the aligned frame and
    the candidate ``regions``; the candidates are named by polarity only.

    Parameters
    ----------
    recipe : Recipe
        A ``wafer-die`` or ``pcb`` recipe with a golden.
    candidates : DetectorSettings
        How the candidates are found and cropped.

    Returns
    -------
    PartChain
    """
    without_model = recipe.model_copy(update={"classify": None,
                                              "grade": GradeSettings(review_area_um2=0, fail_area_um2=0)})
    return build_chain(without_model, candidates=candidates)


def build_chain(recipe: Recipe, *, rank_hypotheses: bool = False, threads: int = 0,
                candidates: DetectorSettings | None = None) -> PartChain:
    """The part chain of a ``wafer-die`` or ``pcb`` recipe with its models loaded and checked.

    A command line's ``--device`` and the like come in through :meth:`Recipe.with_classify`.

    Parameters
    ----------
    recipe : Recipe
    rank_hypotheses : bool, optional
        Keep every candidate's score for every class (for average precision).
    threads : int, optional
        ONNX Runtime's threads per operator (0: one per core).
    candidates : DetectorSettings, optional
        Replaces a classifier-free recipe's candidate settings (the candidates a model is about to be trained on).

    Returns
    -------
    PartChain

    Raises
    ------
    RecipeError
        Naming the recipe's file and field: a wafer-lot recipe, a missing model, rules naming classes the model
        does not have, or a model that does not fit the chain.
    """
    where = recipe.source_path or recipe.name
    if recipe.kind == "wafer-lot":
        raise RecipeError(f"{where}: a wafer-lot recipe grades whole wafers: inspect grade FOLDER --recipe ...")
    preprocess, anomalies = _preprocess(recipe), _anomaly_stage(recipe, threads=threads)
    anomaly_batcher = None if anomalies is None else anomalies.batcher
    if anomalies is not None and recipe.reference is None:  # no golden: the anomaly model alone
        polarity = _polarity(recipe)
        alone = AnomalyStages(preprocess, anomalies, polarity, GradeBySize(polarity.settings))
        return PartChain(recipe, alone, anomaly_batcher=anomaly_batcher)
    if recipe.reference is None:
        raise RecipeError(f"{where}: a {recipe.kind} recipe needs reference (its golden) or anomaly")
    classifier, batcher, name = None, None, None
    if recipe.classify is not None:
        classifier, good_class = _classifier(recipe, recipe.classify, threads=threads)
        detector = _detector(recipe, classifier, recipe.classify)
        batcher = MicroBatcher(classifier.predict, max_batch=recipe.classify.max_batch,
                               max_wait_ms=recipe.classify.max_wait_ms)
        min_score = detector.min_score if recipe.classify.min_score is None else recipe.classify.min_score
        name = ClassifyCandidates(classifier, batcher, detector, good_class, min_score, rank_hypotheses)
    else:
        detector = candidates or classical_detector(recipe)
    golden, align = load_golden(recipe, preprocess), recipe.align or AlignSettings()
    prepared = (PhaseReference(golden, scale=align.phase_scale) if golden is not None and align.method == "phase"
                else None)
    register = Register(preprocess, golden, align, margin_px=detector.edge_margin_px, beside=recipe.reference.beside,
                        prepared=prepared)
    stages = GoldenStages(preprocess, register, FindCandidates(detector.difference, recipe.pixel_size_um), anomalies,
                          name or _polarity(recipe), _grade(recipe))
    return PartChain(recipe, stages, classifier=classifier, batcher=batcher, anomaly_batcher=anomaly_batcher)


def build_wafer_chain(recipe: Recipe, *, threads: int = 0) -> WaferChain:
    """The chain of a ``wafer-lot`` recipe with its die classifier and wafer-map model loaded and checked.

    Parameters
    ----------
    recipe : Recipe
    threads : int, optional
        ONNX Runtime's threads per operator (0: one per core).

    Returns
    -------
    WaferChain

    Raises
    ------
    RecipeError
        Naming the recipe's file and field: another kind of recipe, a missing model, or a die model without an
        operating point.
    """
    where = recipe.source_path or recipe.name
    classify, wafer, wafermap, rules = recipe.classify, recipe.wafer, recipe.wafermap, recipe.rules
    if recipe.kind != "wafer-lot" or classify is None or wafer is None or wafermap is None or rules is None:
        raise RecipeError(f"{where}: a {recipe.kind} recipe; grading whole wafers takes a wafer-lot recipe (with "
                          "classify, wafer, wafermap and rules)")
    classifier, _ = _classifier(recipe, classify, threads=threads)
    threshold = classify.defect_score or classifier.card.thresholds.defect_score
    good_index = classifier.card.good_index
    if threshold is None or good_index is None:
        raise RecipeError(f"{where}: classify.defect_score is not set and the card of {classify.model} has no "
                          "operating point")
    try:
        map_model = find_model(wafermap.model)
    except ModelNotFoundError as exc:
        raise RecipeError(f"{where}: wafermap.model: {exc}") from None
    batcher = MicroBatcher(classifier.predict, max_batch=classify.max_batch, max_wait_ms=classify.max_wait_ms)
    stages = WaferStages(_preprocess(recipe), LocateDies(wafer, recipe.pixel_size_um),
                         ClassifyDies(classifier, batcher, threshold, good_index),
                         LocaliseDefects(recipe.pixel_size_um),
                         ClassifyPattern(load_wafermap_model(map_model, threads=threads)),
                         GradeWafer(rules, wafer.die_pitch_um))
    return WaferChain(recipe, stages, classifier=classifier, batcher=batcher)
