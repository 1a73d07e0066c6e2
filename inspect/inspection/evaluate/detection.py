"""The DeepPCB detection metric: matching detections to annotated boxes, precision, recall, F-score, average
precision over a ranked list, and their bootstrap intervals over images.

A detection matches an unmatched ground-truth box of the same class at IoU > 0.33, detections taken in falling
score order; average precision is the area under the all-points interpolated precision-recall curve (the VOC
2010 rule), mAP its mean over classes. Like VOC and COCO, average precision is taken over the detector's whole
ranked list of hypotheses, so it measures the ranking at every threshold; precision, recall and F-score are
those of the detections reported at the operating threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inspection.classify.detect import iou_matrix
from inspection.evaluate.metrics import bootstrap_intervals, compared

MATCH_IOU = 0.33


def match_detections(boxes: np.ndarray, kinds: list[str], scores: np.ndarray, truth_boxes: np.ndarray,
                     truth_kinds: list[str]) -> np.ndarray:
    """Per detection, whether it is a true positive under the DeepPCB rule (one image)."""
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    hit = np.zeros(len(boxes), bool)
    taken = np.zeros(len(truth_kinds), bool)
    overlaps = iou_matrix(boxes, truth_boxes)
    same_kind = np.array([[kind == truth for truth in truth_kinds] for kind in kinds], bool).reshape(overlaps.shape)
    for index in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(same_kind[index] & ~taken, overlaps[index], 0.0)
        if candidates.size and candidates.max() > MATCH_IOU:
            best = int(candidates.argmax())
            taken[best] = True
            hit[index] = True
    return hit


def average_precision(scores: np.ndarray, hits: np.ndarray, *, n_truth: int) -> float:
    """Area under the all-points interpolated precision-recall curve of one class."""
    if n_truth == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    true_positives = np.cumsum(hits[order])
    recall = np.concatenate([[0.0], true_positives / n_truth, [true_positives[-1] / n_truth if len(order) else 0.0]])
    precision = np.concatenate([[1.0], true_positives / np.arange(1, len(order) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def detection_report(detections: list[tuple[str, float, bool]], truth_counts: dict[str, int],
                     *, class_names: list[str], ranked: list[tuple[str, float, bool]] | None = None) -> dict[str, Any]:
    """Precision, recall and F-score from (class, score, matched) of every reported detection; mAP and
    per-class AP from the same of every ranked hypothesis (``ranked``, by default the detections).

    ``map_at_min_score`` is the mAP of the reported detections alone: the precision-recall curve cut off
    at the operating threshold.
    """
    true_positives = sum(hit for _, _, hit in detections)
    n_truth = sum(truth_counts.values())
    precision = true_positives / len(detections) if detections else 0.0
    recall = true_positives / n_truth if n_truth else 0.0
    f_score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    ranked = detections if ranked is None else ranked
    reported_ap = _per_class_ap(detections, truth_counts, class_names=class_names)
    per_class_ap = reported_ap if ranked is detections else _per_class_ap(ranked, truth_counts,
                                                                          class_names=class_names)
    return {
        "precision": round(precision, 5), "recall": round(recall, 5), "f_score": round(f_score, 5),
        "map": _mean_ap(per_class_ap), "per_class_ap": per_class_ap, "map_at_min_score": _mean_ap(reported_ap),
        "detections": len(detections), "hypotheses": len(ranked),
        "true_positives": int(true_positives), "ground_truth": n_truth,
    }


Outcomes = tuple[list[list[tuple[str, float, bool]]], list[list[tuple[str, float, bool]]]]
"""One model's (reported detections, ranked hypotheses) per image, each as ``detection_report`` takes them."""


def outcomes_report(outcomes: Outcomes, truth_kinds: list[tuple[str, ...]], *, class_names: list[str],
                    images: np.ndarray | None = None) -> dict[str, Any]:
    """``detection_report`` of one model's outcomes over ``images`` (indices, which may repeat; default all),
    with ``truth_kinds`` the ground-truth classes of each image."""
    detections, ranked = outcomes
    images = np.arange(len(truth_kinds)) if images is None else images
    truth_counts = dict.fromkeys(class_names, 0)
    for image in images:
        for kind in truth_kinds[image]:
            truth_counts[kind] += 1
    return detection_report([hit for image in images for hit in detections[image]], truth_counts,
                            class_names=class_names, ranked=[hit for image in images for hit in ranked[image]])


def detection_intervals(outcomes: Outcomes, truth_kinds: list[tuple[str, ...]], *, class_names: list[str],
                        baseline: Outcomes | None = None) -> dict[str, list[float] | None]:
    """95% bootstrap intervals of precision, recall, F-score and mAP, resampling whole images (per image its
    ground-truth classes in ``truth_kinds``). With ``baseline``, another model's outcomes on the same images,
    the intervals are of the difference, this model minus the baseline, on the same resamples (paired)."""

    def figures(model: Outcomes, images: np.ndarray) -> dict[str, float]:
        report = outcomes_report(model, truth_kinds, class_names=class_names, images=images)
        return {name: report[name] for name in ("precision", "recall", "f_score", "map")}

    return bootstrap_intervals(compared(figures, outcomes, baseline), len(truth_kinds))


def _per_class_ap(ranked: list[tuple[str, float, bool]], truth_counts: dict[str, int],
                  *, class_names: list[str]) -> dict[str, float]:
    per_class_ap = {}
    for name in class_names:
        mine = [(score, hit) for kind, score, hit in ranked if kind == name]
        scores = np.array([score for score, _ in mine], float)
        hits = np.array([hit for _, hit in mine], bool)
        per_class_ap[name] = round(average_precision(scores, hits, n_truth=truth_counts.get(name, 0)), 5)
    return per_class_ap


def _mean_ap(per_class_ap: dict[str, float]) -> float:
    valid = [ap for ap in per_class_ap.values() if not np.isnan(ap)]
    return round(float(np.mean(valid)), 5) if valid else 0.0
