"""PCB inspection against a golden template (wiring): register, difference, classify candidates, box, NMS.

The classical stages find where the board under test differs from its template; the CNN names each candidate
(open, short, mousebite, spur, copper, pin-hole) or rejects it as a false alarm ("good"); pieces of one broken
defect are joined, boxes grown to the annotators' size and overlaps suppressed. The model card's
``detector`` section holds the candidate settings the classifier was trained on and the box growth fitted
to the annotators' boxes, so training and the line make the same candidates.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from inspection.acquire import read_image
from inspection.acquire.deeppcb import DEEPPCB_TYPES, PcbPair
from inspection.align import RigidFit, register_rigid, warp_reference
from inspection.classify import Classifier, SessionSettings
from inspection.classify.card import CardError, DetectorSettings
from inspection.classify.detect import (
    Hypotheses,
    Outcomes,
    crop_squares,
    detection_intervals,
    match_detections,
    merge_fragments,
    nms,
    outcomes_report,
    ranked_hypotheses,
)
from inspection.classify.prepare import prepare_batch
from inspection.classify.runtime import Device
from inspection.measure import difference_regions
from inspection.preprocess import to_gray
from inspection.progress import progress
from inspection.types import Detection, InspectionError, Region

DEEPPCB_PIXEL_SIZE_UM = 1000 / 48
"""DeepPCB's line-scan CCD resolves about 48 px/mm."""

CANDIDATE_SETTINGS = DetectorSettings(
    band_px=1, tolerance_grey=30, open_px=2, close_px=7, min_area_px=4, edge_margin_px=10,
    edge_zone_px=2, edge_open_px=3, edge_keep_min_area_px=6, edge_keep_max_side_px=12, crop_context=1.5,
    crop_min_side_px=32,
    box_growth={kind: (1.0, 22.0) for kind in DEEPPCB_TYPES}, nms_iou=0.15, min_score=0.5,
    fitted_on="defaults before fitting",
)
"""The candidate stage a new PCB model is trained on (datasets/deeppcb_crops.py fits the box growth)."""


NO_HYPOTHESES = Hypotheses(np.zeros((0, 4)), (), np.zeros(0))


class PcbInputError(InspectionError, ValueError):
    """A template/test pair that cannot be inspected; the message says which image and why."""


@dataclass(frozen=True)
class Candidates:
    """Where the registered test image leaves its template's tolerance band."""

    image: np.ndarray
    reference: np.ndarray
    """The template drawn in the test image's coordinates."""
    regions: tuple[Region, ...]
    fit: RigidFit

    @property
    def boxes(self) -> np.ndarray:
        return np.array([region.box_xyxy_px for region in self.regions], float).reshape(-1, 4)


@dataclass(frozen=True)
class PcbResult:
    detections: tuple[Detection, ...]
    boxes: np.ndarray
    """N x 4 refined boxes (float xyxy px) of the detections, in the test image's coordinates."""
    fit: RigidFit
    candidates: int
    hypotheses: Hypotheses
    """The ranked list behind the detections: theirs and every candidate's other defect-class scores."""

    @property
    def reported(self) -> Hypotheses:
        """The detections as a ranked list."""
        return Hypotheses(self.boxes, tuple(d.kind for d in self.detections),
                          np.array([d.score for d in self.detections], float))


def grey_pair(test: np.ndarray, template: np.ndarray, *, test_name: str = "test",
              template_name: str = "template") -> tuple[np.ndarray, np.ndarray]:
    """Both images as 8-bit grey (DeepPCB stores some as RGB with equal channels), checked to be comparable."""
    greys = []
    for name, image in ((test_name, test), (template_name, template)):
        if image.size == 0:
            raise PcbInputError(f"{name}: empty image")
        grey = to_gray(image, layout="mono" if image.ndim == 2 else "bgr")
        if grey.dtype != np.uint8:
            raise PcbInputError(f"{name}: {grey.dtype} pixels; expected 8-bit board scans")
        greys.append(grey)
    if greys[0].shape != greys[1].shape:
        raise PcbInputError(f"{test_name} is {greys[0].shape[1]}x{greys[0].shape[0]} px but {template_name} is "
                            f"{greys[1].shape[1]}x{greys[1].shape[0]} px; a template must match its board")
    return greys[0], greys[1]


def find_candidates(test: np.ndarray, template: np.ndarray, *, settings: DetectorSettings) -> Candidates:
    """Register the template onto the grey test image and return the regions that differ."""
    fit = register_rigid(test, template)
    reference, covered = warp_reference(template, fit, margin_px=settings.edge_margin_px)
    found = difference_regions(test, reference, valid=covered, band_px=settings.band_px,
                               tolerance_grey=settings.tolerance_grey, open_px=settings.open_px,
                               close_px=settings.close_px, min_area_px=settings.min_area_px,
                               pixel_size_um=DEEPPCB_PIXEL_SIZE_UM, edge_zone_px=settings.edge_zone_px,
                               edge_open_px=settings.edge_open_px,
                               edge_keep_min_area_px=settings.edge_keep_min_area_px,
                               edge_keep_max_side_px=settings.edge_keep_max_side_px)
    return Candidates(test, reference, found, fit)


def candidate_crops(candidates: Candidates, *, settings: DetectorSettings) -> list[np.ndarray]:
    """One 3-channel crop per candidate: (test, registered template, |difference|) in BGR order."""
    stacked = np.dstack([candidates.image, candidates.reference, cv2.absdiff(candidates.image, candidates.reference)])
    squares = crop_squares(candidates.boxes, size=candidates.image.shape, context=settings.crop_context,
                           min_side_px=settings.crop_min_side_px)
    return [stacked[y0:y1, x0:x1] for x0, y0, x1, y1 in squares]


class PcbInspector:
    """A PCB defect model (classifier + detector settings from its card) applied to template/test pairs."""

    def __init__(self, model_dir: str | Path, *, precision: Literal["fp32", "int8"] = "fp32", device: Device = "cpu",
                 settings: SessionSettings | None = None, min_score: float | None = None) -> None:
        self.classifier = Classifier(model_dir, precision=precision, device=device, settings=settings)
        card = self.classifier.card
        if card.detector is None or card.thresholds.good_class is None:
            raise CardError(f"{model_dir}: the card has no detector section or no good class; a PCB model is "
                            "exported with `inspect export MODEL --detector detector.json`")
        self.detector = card.detector
        self.min_score = self.detector.min_score if min_score is None else min_score
        self.good_index = card.class_names.index(card.thresholds.good_class)
        self.defect_indices = [i for i in range(len(card.class_names)) if i != self.good_index]
        self.defect_names = [card.class_names[i] for i in self.defect_indices]

    def inspect(self, test: np.ndarray, template: np.ndarray, *, test_name: str = "test",
                template_name: str = "template") -> PcbResult:
        grey_test, grey_template = grey_pair(test, template, test_name=test_name, template_name=template_name)
        candidates = find_candidates(grey_test, grey_template, settings=self.detector)
        if not candidates.regions:
            return PcbResult((), np.zeros((0, 4)), candidates.fit, 0, NO_HYPOTHESES)
        crops = candidate_crops(candidates, settings=self.detector)
        probabilities = self.classifier.predict(prepare_batch([(crop, "bgr", 8) for crop in crops],
                                                              card=self.classifier.card))
        defect_probabilities = probabilities.copy()
        defect_probabilities[:, self.good_index] = -1.0
        best = defect_probabilities.argmax(1)
        scores = defect_probabilities[np.arange(len(best)), best]
        keep = np.where(scores >= self.min_score)[0]
        kinds = [self.classifier.class_names[index] for index in best[keep]]
        leaders, boxes = merge_fragments(candidates.boxes[keep], kinds, scores[keep], settings=self.detector,
                                         size=grey_test.shape)
        kept = nms(boxes, scores[keep][leaders], iou_threshold=self.detector.nms_iou)
        detections = tuple(
            Detection(kinds[i], float(scores[keep][i]), candidates.regions[keep[i]]) for i in leaders[kept])
        result = PcbResult(detections, boxes[kept], candidates.fit, len(candidates.regions), NO_HYPOTHESES)
        reported_pairs = np.zeros(probabilities.shape, bool)  # (candidate, class) behind a detection
        reported_pairs[keep, best[keep]] = True
        hypotheses = ranked_hypotheses(
            result.reported, candidates.boxes, probabilities[:, self.defect_indices],
            reported_pairs[:, self.defect_indices], class_names=self.defect_names, settings=self.detector,
            size=grey_test.shape)
        return replace(result, hypotheses=hypotheses)


def perturb(image: np.ndarray, boxes: np.ndarray, *, rng: np.random.Generator, max_shift_px: float,
            max_angle_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test image moved by a random rigid transform, its boxes moved along (the axis-aligned hull of the
    turned corners) and a mask of the boxes still at least half in view. Uncovered pixels are white."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-max_angle_deg, max_angle_deg)), 1.0)
    matrix[:, 2] += rng.uniform(-max_shift_px, max_shift_px, size=2)
    moved = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=255)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [0, 3]], boxes[:, [2, 3]]], axis=1)
    turned = corners @ matrix[:, :2].T + matrix[:, 2]
    hull = np.concatenate([turned.min(axis=1), turned.max(axis=1)], axis=1)
    clipped = hull.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    area = (hull[:, 2] - hull[:, 0]) * (hull[:, 3] - hull[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) >= 0.5 * area
    return moved, clipped, inside


def read_grey(path: Path) -> np.ndarray:
    """A board image as grey (DeepPCB stores some as RGB with equal channels), dtype kept."""
    image, layout, _ = read_image(path)
    return to_gray(image, layout=layout)


def evaluate_pairs(inspector: PcbInspector, pairs: list[PcbPair], *, workers: int = 2, max_shift_px: float = 0.0,
                   max_angle_deg: float = 0.0, seed: int = 0, baseline: PcbInspector | None = None) -> dict[str, Any]:
    """The DeepPCB metric over ``pairs`` (optionally with each test image moved by a seeded random rigid
    transform), its 95% bootstrap intervals over the pairs (``ci95``) and the end-to-end speed: image reading,
    registration, candidates, classification, NMS. Precision, recall and F-score count the reported
    detections; AP ranks every hypothesis.

    With ``baseline``, a second model inspects the same (equally moved) pairs; ``baseline`` in the result
    holds its figures, the difference (this model minus the baseline) and that difference's paired interval.
    """
    class_names = list(DEEPPCB_TYPES)
    outcomes, truth, failed, elapsed_s = _inspect_pairs(inspector, pairs, workers=workers, max_shift_px=max_shift_px,
                                                        max_angle_deg=max_angle_deg, seed=seed)
    report = outcomes_report(outcomes, truth, class_names=class_names)
    result = {**report, "ci95": detection_intervals(outcomes, truth, class_names=class_names) if pairs else {},
              "images_per_s": round(len(pairs) / elapsed_s, 2), "pairs": len(pairs), "workers": workers,
              "max_shift_px": max_shift_px, "max_angle_deg": max_angle_deg, "seed": seed, "failed": failed}
    if baseline is not None:
        baseline_outcomes, _, baseline_failed, baseline_elapsed_s = _inspect_pairs(
            baseline, pairs, workers=workers, max_shift_px=max_shift_px, max_angle_deg=max_angle_deg, seed=seed)
        baseline_report = outcomes_report(baseline_outcomes, truth, class_names=class_names)
        headline = ("precision", "recall", "f_score", "map")
        result["baseline"] = {
            **{name: baseline_report[name] for name in (*headline, "map_at_min_score", "per_class_ap")},
            "images_per_s": round(len(pairs) / baseline_elapsed_s, 2), "failed": baseline_failed,
            "difference": {name: round(report[name] - baseline_report[name], 5) for name in headline},
            "difference_ci95": detection_intervals(outcomes, truth, class_names=class_names,
                                                   baseline=baseline_outcomes) if pairs else {},
        }
    return result


def _inspect_pairs(inspector: PcbInspector, pairs: list[PcbPair], *, workers: int, max_shift_px: float,
                   max_angle_deg: float, seed: int) -> tuple[Outcomes, list[tuple[str, ...]], list[str], float]:
    """Per pair, what the model made of it (kept per pair so that intervals resample whole pairs), its
    ground-truth classes, the pairs that failed with their reasons, and the seconds it all took."""
    perturbations = np.random.default_rng(seed).spawn(len(pairs))

    def one(index: int) -> tuple[PcbPair, PcbResult | str, np.ndarray, tuple[str, ...]]:
        pair = pairs[index]
        test, template = read_grey(pair.test_path), read_grey(pair.template_path)
        truth_boxes, truth_kinds = pair.boxes, pair.kinds
        if max_shift_px or max_angle_deg:
            test, truth_boxes, inside = perturb(test, truth_boxes, rng=perturbations[index],
                                                max_shift_px=max_shift_px, max_angle_deg=max_angle_deg)
            truth_boxes = truth_boxes[inside]
            truth_kinds = tuple(kind for kind, keep in zip(truth_kinds, inside, strict=True) if keep)
        try:
            result: PcbResult | str = inspector.inspect(test, template, test_name=str(pair.test_path),
                                                        template_name=str(pair.template_path))
        except InspectionError as exc:
            result = str(exc)
        return pair, result, truth_boxes, truth_kinds

    detections: list[list[tuple[str, float, bool]]] = []
    ranked: list[list[tuple[str, float, bool]]] = []
    truth: list[tuple[str, ...]] = []
    failed: list[str] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for pair, result, truth_boxes, truth_kinds in progress(pool.map(one, range(len(pairs))), total=len(pairs),
                                                               label="inspecting pairs"):
            truth.append(truth_kinds)
            if isinstance(result, str):
                failed.append(f"{pair.name}: {result}")
                detections.append([])
                ranked.append([])
                continue
            detections.append(_matched(result.reported, truth_boxes, truth_kinds))
            ranked.append(_matched(result.hypotheses, truth_boxes, truth_kinds))
    return (detections, ranked), truth, failed, time.perf_counter() - started


def _matched(hypotheses: Hypotheses, truth_boxes: np.ndarray,
             truth_kinds: tuple[str, ...]) -> list[tuple[str, float, bool]]:
    """(class, score, whether it matches a ground-truth box) of each hypothesis of one image."""
    hits = match_detections(hypotheses.boxes, list(hypotheses.kinds), hypotheses.scores, truth_boxes,
                            list(truth_kinds))
    return [(kind, float(score), bool(hit)) for kind, score, hit in zip(hypotheses.kinds, hypotheses.scores, hits,
                                                                        strict=True)]
