"""Detections from classified candidates on numpy arrays: box refinement, fragment merging, NMS, and the ranked
list of hypotheses behind them. Boxes are float arrays N x 4 of (x1, y1, x2, y2) in pixels. The metric that
scores them is in :mod:`inspection.evaluate.detection`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspection.classify.card import DetectorSettings
from inspection.types import Detection, Region


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


def overlaps_any(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Whether each box in ``boxes`` (N x 4) overlaps any box in ``others`` (M x 4, M may be 0): N bools."""
    return (iou_matrix(boxes, others) > 0).any(axis=1)


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


def as_hypotheses(detections: Sequence[Detection]) -> Hypotheses:
    """Detections as a ranked list: their reported boxes (the region's where none was grown), classes, scores."""
    boxes = np.array([d.box_xyxy_px or d.region.box_xyxy_px for d in detections], float).reshape(-1, 4)
    return Hypotheses(boxes, tuple(d.kind for d in detections), np.array([d.score for d in detections], float))


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
    reported = as_hypotheses(detections)
    reported_pairs = np.zeros(probabilities.shape, bool)  # (candidate, class) behind a detection
    reported_pairs[keep, best[keep]] = True
    hypotheses = ranked_hypotheses(reported, candidate_boxes, probabilities[:, defect_indices],
                                   reported_pairs[:, defect_indices], class_names=[names[i] for i in defect_indices],
                                   settings=settings, size=size)
    return NamedCandidates(detections, hypotheses)


def unexplained_anomalies(regions: Sequence[Region], probabilities: np.ndarray, detections: Sequence[Detection], *,
                          min_score: float) -> tuple[Detection, ...]:
    """The anomaly model's regions that the classifier could not name: reported as ``anomaly``.

    A region an anomaly model found (``anomaly_score`` set) becomes an ``anomaly`` detection when no class of the
    classifier, the good class included, reaches ``min_score`` for it (a defect unlike any the CNN was trained
    on) and no reported detection overlaps it. A region the classifier confidently calls good is a false alarm.

    Parameters
    ----------
    regions : sequence of Region
        The part's candidates, in the order of ``probabilities``' rows.
    probabilities : (N, classes) float array
        The classifier's probabilities for each candidate.
    detections : sequence of Detection
        What the classifier reported.
    min_score : float
        The probability a class needs to name a candidate.

    Returns
    -------
    tuple of Detection
        Kind ``anomaly``, score the region's ``anomaly_score``, box the region's.
    """
    boxes = np.array([region.box_xyxy_px for region in regions], float).reshape(-1, 4)
    unreported = ~overlaps_any(boxes, as_hypotheses(detections).boxes)
    return tuple(Detection("anomaly", region.anomaly_score, region, box_xyxy_px=tuple(map(float, box)))
                 for region, row, box, free in zip(regions, probabilities, boxes, unreported, strict=True)
                 if region.anomaly_score is not None and row.max() < min_score and free)


def join_anomalies(named: NamedCandidates, anomalous: NamedCandidates, anomaly_regions: Sequence[Region],
                   anomaly_probabilities: np.ndarray, *, min_score: float) -> NamedCandidates:
    """The golden difference's named candidates with what the anomaly model's own regions add.

    The difference's detections stand as they are (an anomaly region never merges with or suppresses them);
    a detection named from an anomaly region is added where it overlaps none of them, and an anomaly region
    that no class fits becomes an ``anomaly`` detection (:func:`unexplained_anomalies`). Added detections are
    appended to the ranked hypotheses too.

    Parameters
    ----------
    named : NamedCandidates
        :func:`name_candidates` of the difference's regions.
    anomalous : NamedCandidates
        :func:`name_candidates` of the anomaly model's regions (those overlapping no difference region).
    anomaly_regions : sequence of Region
        Those regions, in the order of ``anomaly_probabilities``' rows.
    anomaly_probabilities : (N, classes) float array
        The classifier's probabilities for them.
    min_score : float
        The probability a class needs to name a candidate.

    Returns
    -------
    NamedCandidates
    """
    clear = ~overlaps_any(as_hypotheses(anomalous.detections).boxes, as_hypotheses(named.detections).boxes)
    added = [detection for detection, keep in zip(anomalous.detections, clear, strict=True) if keep]
    added += unexplained_anomalies(anomaly_regions, anomaly_probabilities, (*named.detections, *added),
                                   min_score=min_score)
    if named.hypotheses is None or not added:
        return NamedCandidates((*named.detections, *added), named.hypotheses)
    extra = as_hypotheses(added)
    hypotheses = Hypotheses(np.concatenate([named.hypotheses.boxes.reshape(-1, 4), extra.boxes]),
                            (*named.hypotheses.kinds, *extra.kinds),
                            np.concatenate([named.hypotheses.scores, extra.scores]))
    return NamedCandidates((*named.detections, *added), hypotheses)
