"""Detections from classified candidates: box refinement, fragment merging, NMS, and the DeepPCB detection metric.

Boxes are float arrays N x 4 of (x1, y1, x2, y2) in pixels. The metric is the official DeepPCB one: a
detection matches an unmatched ground-truth box of the same class at IoU > 0.33, detections taken in
falling score order; average precision is the area under the all-points interpolated precision-recall curve
(the VOC 2010 rule), mAP its mean over classes. Like VOC and COCO, average precision is taken over the
detector's whole ranked list of hypotheses (``ranked_hypotheses``: every candidate's probability for every
defect class), so it measures the ranking at every threshold; precision, recall and F-score are those of
the detections reported at the operating threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspection.classify.card import DetectorSettings
from inspection.classify.metrics import bootstrap_intervals, compared
from inspection.types import Detection, Region

MATCH_IOU = 0.33


def iou_matrix(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of every box in ``boxes`` (N x 4) with every box in ``others`` (M x 4): N x M."""
    boxes, others = np.asarray(boxes, float).reshape(-1, 4), np.asarray(others, float).reshape(-1, 4)
    left = np.maximum(boxes[:, None, 0], others[None, :, 0])
    top = np.maximum(boxes[:, None, 1], others[None, :, 1])
    right = np.minimum(boxes[:, None, 2], others[None, :, 2])
    bottom = np.minimum(boxes[:, None, 3], others[None, :, 3])
    overlap = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_other = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area[:, None] + area_other[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def refine_boxes(boxes: np.ndarray, kinds: list[str], *, settings: DetectorSettings,
                 size: tuple[int, int]) -> np.ndarray:
    """Candidate boxes grown to the reported size of their class (``settings.box_growth``), kept in the image."""
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    growth = np.array([settings.box_growth[kind] for kind in kinds], float).reshape(-1, 2)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (growth[:, :1] * (boxes[:, 2:] - boxes[:, :2]) + growth[:, 1:]) / 2
    refined = np.concatenate([centre - half, centre + half], axis=1)
    refined[:, [0, 2]] = refined[:, [0, 2]].clip(0, size[1])
    refined[:, [1, 3]] = refined[:, [1, 3]].clip(0, size[0])
    return refined


def merge_fragments(boxes: np.ndarray, kinds: list[str], scores: np.ndarray, *, settings: DetectorSettings,
                    size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Join candidates of one class whose grown boxes overlap: the pieces of one broken defect.

    Returns, per group, the index of its best-scoring member and the box grown from the group's joint
    candidate box (float xyxy px).
    """
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    grown = refine_boxes(boxes, kinds, settings=settings, size=size)
    overlaps = iou_matrix(grown, grown)
    group_of = np.arange(len(boxes))
    for first in range(len(boxes)):  # union-find over same-class overlaps, small N
        for second in range(first + 1, len(boxes)):
            if kinds[first] == kinds[second] and overlaps[first, second] > 0:
                group_of[group_of == group_of[second]] = group_of[first]
    leaders, joined = [], []
    for group in np.unique(group_of):
        members = np.where(group_of == group)[0]
        leader = int(members[np.argmax(np.asarray(scores)[members])])
        span = boxes[members]
        joint = np.array([[span[:, 0].min(), span[:, 1].min(), span[:, 2].max(), span[:, 3].max()]])
        leaders.append(leader)
        joined.append(refine_boxes(joint, [kinds[leader]], settings=settings, size=size)[0])
    return np.array(leaders, dtype=int), np.array(joined, float).reshape(-1, 4)


def nms(boxes: np.ndarray, scores: np.ndarray, *, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, highest score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    overlaps = iou_matrix(boxes, boxes)
    kept: list[int] = []
    suppressed = np.zeros(len(order), bool)
    for index in order:
        if suppressed[index]:
            continue
        kept.append(int(index))
        suppressed |= overlaps[index] > iou_threshold
    return np.array(kept, dtype=int)


@dataclass(frozen=True)
class Hypotheses:
    """A detector's ranked list: every (box, class, score) it could report, for threshold-free AP."""

    boxes: np.ndarray
    kinds: tuple[str, ...]
    scores: np.ndarray


def ranked_hypotheses(detections: Hypotheses, candidate_boxes: np.ndarray, probabilities: np.ndarray,
                      reported: np.ndarray, *, class_names: list[str], settings: DetectorSettings,
                      size: tuple[int, int]) -> Hypotheses:
    """The reported detections plus every candidate's probability for each class it was not reported as.

    ``probabilities`` is candidates x ``class_names`` (the defect classes only); ``reported`` marks the
    (candidate, class) pairs already behind a reported detection, merged or suppressed. Each other pair becomes
    a hypothesis with its class's grown box; within a class, one that overlaps a higher-ranked hypothesis
    (IoU > ``settings.nms_iou``) is dropped. Reported detections rank before the rest, so the list always
    contains them.
    """
    candidate_index, class_index = np.nonzero(~reported)
    kinds = [class_names[k] for k in class_index]
    boxes = np.concatenate([detections.boxes.reshape(-1, 4),
                            refine_boxes(candidate_boxes[candidate_index], kinds, settings=settings, size=size)])
    kinds = [*detections.kinds, *kinds]
    scores = np.concatenate([detections.scores, probabilities[candidate_index, class_index]])
    priority = scores + np.repeat([1.0, 0.0], [len(detections.kinds), len(candidate_index)])
    # Boxes of different classes are moved apart so that one pass of NMS never lets them suppress each other.
    class_of = np.unique(np.array(kinds, dtype=object), return_inverse=True)[1]
    offset = (class_of * (2 + max(size)))[:, None].astype(float)
    kept = np.sort(nms(boxes + offset, priority, iou_threshold=settings.nms_iou))
    return Hypotheses(boxes[kept], tuple(kinds[i] for i in kept), scores[kept])


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


@dataclass(frozen=True)
class NamedCandidates:
    """What the classifier made of a frame's candidate regions."""

    detections: tuple[Detection, ...]
    """The reported defects, each with its grown box (``box_xyxy_px``) and the model's sha256."""
    hypotheses: Hypotheses | None
    """The ranked list behind them (every candidate's score for every defect class), when asked for."""


def name_candidates(regions: Sequence[Region], probabilities: np.ndarray, *, class_names: Sequence[str],
                    good_class: str, min_score: float, settings: DetectorSettings, size: tuple[int, int],
                    model_sha256: str, rank: bool = False) -> NamedCandidates:
    """Detections from candidate regions and their class probabilities (N x classes).

    A candidate is reported as its most likely defect class when that class's probability reaches
    ``min_score`` (the good class means "false alarm"); candidates of one class whose grown boxes overlap are
    joined (the pieces of one broken defect), boxes are grown to the class's reported size
    (``settings.box_growth``) and overlaps suppressed (``settings.nms_iou``). With ``rank``, the ranked
    hypotheses for threshold-free average precision come along.
    """
    names = list(class_names)
    good_index = names.index(good_class)
    defect_indices = [i for i in range(len(names)) if i != good_index]
    if not regions:
        empty = Hypotheses(np.zeros((0, 4)), (), np.zeros(0))
        return NamedCandidates((), empty if rank else None)
    candidate_boxes = np.array([region.box_xyxy_px for region in regions], float).reshape(-1, 4)
    defect_probabilities = probabilities.copy()
    defect_probabilities[:, good_index] = -1.0
    best = defect_probabilities.argmax(1)
    scores = defect_probabilities[np.arange(len(best)), best]
    keep = np.where(scores >= min_score)[0]
    kinds = [names[index] for index in best[keep]]
    leaders, boxes = merge_fragments(candidate_boxes[keep], kinds, scores[keep], settings=settings, size=size)
    kept = nms(boxes, scores[keep][leaders], iou_threshold=settings.nms_iou)
    detections = tuple(
        Detection(kinds[i], float(scores[keep][i]), regions[keep[i]], box_xyxy_px=tuple(float(v) for v in box),
                  model_sha256=model_sha256)
        for i, box in zip(leaders[kept], boxes[kept], strict=True))
    if not rank:
        return NamedCandidates(detections, None)
    reported = Hypotheses(boxes[kept], tuple(d.kind for d in detections),
                          np.array([d.score for d in detections], float))
    reported_pairs = np.zeros(probabilities.shape, bool)  # (candidate, class) behind a detection
    reported_pairs[keep, best[keep]] = True
    hypotheses = ranked_hypotheses(reported, candidate_boxes, probabilities[:, defect_indices],
                                   reported_pairs[:, defect_indices], class_names=[names[i] for i in defect_indices],
                                   settings=settings, size=size)
    return NamedCandidates(detections, hypotheses)
