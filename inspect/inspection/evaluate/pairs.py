"""The DeepPCB metric over template/test pairs: what a detector made of each pair, scored against its annotated
boxes, with 95% bootstrap intervals over the pairs and, for two detectors on the same pairs, the paired
difference. Running the detector is the pair runner's (:mod:`inspection.chain.pairs`); this scores it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from inspection.classify.detect import Hypotheses
from inspection.evaluate.detection import Outcomes, detection_intervals, match_detections, outcomes_report

HEADLINE = ("precision", "recall", "f_score", "map")


@dataclass(frozen=True)
class PairResult:
    """What a detector made of one board, beside its truth (a board that could not be inspected has no
    hypotheses, and the reason)."""

    name: str
    truth_boxes: np.ndarray
    """(M, 4) xyxy px, moved with the board when it was moved."""
    truth_kinds: tuple[str, ...]
    reported: Hypotheses | None = None
    """The reported detections (their grown boxes), ranked."""
    ranked: Hypotheses | None = None
    """Every candidate's score for every class (average precision)."""
    failure: str | None = None


def score_pairs(results: Sequence[PairResult], *, class_names: list[str],
                baseline: Sequence[PairResult] | None = None) -> dict[str, Any]:
    """The DeepPCB metric of a detector's results on boards (and, with ``baseline``, another's on the same).

    Parameters
    ----------
    results : sequence of PairResult
        One per board, in the same order as ``baseline``'s.
    class_names : list of str
        The defect classes.
    baseline : sequence of PairResult, optional
        Another detector's results on the same boards.

    Returns
    -------
    dict
        :func:`pairs_report`'s figures and ``failed`` (the boards that could not be inspected, with the reason);
        with ``baseline``, its ``failed`` too.
    """
    report = pairs_report(_outcomes(results), [r.truth_kinds for r in results], class_names=class_names,
                          baseline=None if baseline is None else _outcomes(baseline))
    report["failed"] = [f"{r.name}: {r.failure}" for r in results if r.failure is not None]
    if baseline is not None:
        report["baseline"]["failed"] = [f"{r.name}: {r.failure}" for r in baseline if r.failure is not None]
    return report


def _outcomes(results: Sequence[PairResult]) -> Outcomes:
    """Per board (so that intervals resample whole boards), each reported detection and each hypothesis matched
    against the truth."""
    empty = Hypotheses(np.zeros((0, 4)), (), np.zeros(0))
    reported = [matched(r.reported or empty, r.truth_boxes, r.truth_kinds) for r in results]
    ranked = [matched(r.ranked or empty, r.truth_boxes, r.truth_kinds) for r in results]
    return reported, ranked


def matched(hypotheses: Hypotheses, truth_boxes: np.ndarray,
            truth_kinds: tuple[str, ...]) -> list[tuple[str, float, bool]]:
    """(class, score, whether it matches a ground-truth box) of each hypothesis of one image."""
    hits = match_detections(hypotheses.boxes, list(hypotheses.kinds), hypotheses.scores, truth_boxes,
                            list(truth_kinds))
    return [(kind, float(score), bool(hit)) for kind, score, hit in zip(hypotheses.kinds, hypotheses.scores, hits,
                                                                        strict=True)]


def pairs_report(outcomes: Outcomes, truth: list[tuple[str, ...]], *, class_names: list[str],
                 baseline: Outcomes | None = None) -> dict[str, Any]:
    """Precision, recall, F-score (of the reported detections), mAP (over every hypothesis) and per-class AP,
    with their 95% bootstrap intervals over the pairs (``ci95``). With ``baseline``, another detector's
    outcomes on the same pairs: ``baseline`` holds its figures, the difference (this one minus the baseline)
    and that difference's paired interval (both scored on the same resamples)."""
    report = outcomes_report(outcomes, truth, class_names=class_names)
    result = {**report, "ci95": detection_intervals(outcomes, truth, class_names=class_names) if truth else {}}
    if baseline is not None:
        theirs = outcomes_report(baseline, truth, class_names=class_names)
        result["baseline"] = {
            **{name: theirs[name] for name in (*HEADLINE, "map_at_min_score", "per_class_ap")},
            "difference": {name: round(report[name] - theirs[name], 5) for name in HEADLINE},
            "difference_ci95": detection_intervals(outcomes, truth, class_names=class_names,
                                                   baseline=baseline) if truth else {},
        }
    return result


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
