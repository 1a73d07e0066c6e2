"""Anomaly-model metrics on score maps: image AUROC, per-defect recall at a false-alarm rate per image, and
pixel AUROC over annotated boxes, with bootstrap intervals over the images.

A defect counts as found when a region of the thresholded map overlaps its annotated box and the region's box
is at most ``MAX_REGION_TO_BOX_AREA`` times the annotated box's area (a region spread over the board localises
nothing); a region that finds no defect is a false alarm. Boxes stand in for masks where only boxes are
annotated (DeepPCB): the pixel AUROC counts every map cell inside a box as anomalous, so it understates a model
that marks the defect itself and not the annotator's margin around it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from inspection.classify.anomaly import THRESHOLD_GRID, anomaly_regions
from inspection.classify.detect import iou_matrix
from inspection.evaluate.metrics import bootstrap_intervals

__all__ = ["anomaly_report", "auroc", "false_alarms_per_image", "pro_auc"]

MAX_REGION_TO_BOX_AREA = 4.0


def auroc(scores: np.ndarray, is_positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative (ties count
    half), NaN without both kinds.

    Parameters
    ----------
    scores : (N,) float array
    is_positive : (N,) bool array

    Returns
    -------
    float
    """
    scores, is_positive = np.asarray(scores, float), np.asarray(is_positive, bool)
    positives, negatives = int(is_positive.sum()), int((~is_positive).sum())
    if not positives or not negatives:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), float)
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average_rank = first + (counts + 1) / 2.0  # ties share their mean rank (1-based)
    ranks[order] = np.repeat(average_rank, counts)
    return float((ranks[is_positive].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def pro_auc(box_scores: Sequence[np.ndarray], outside_scores: np.ndarray, *, max_fpr: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to ``max_fpr``, normalised to 0..1 (Bergmann et al., MVTec AD).

    For each threshold, the overlap is the mean over the annotated regions of the share of each region's cells at
    or above it (every region weighs the same, whatever its size), and the false-positive rate is the share of
    cells outside every region at or above it.

    Parameters
    ----------
    box_scores : sequence of (K_i,) float arrays
        The scores of each annotated region's cells.
    outside_scores : (M,) float array
        The scores of the cells outside every annotated region.
    max_fpr : float
        The false-positive rate up to which the curve is integrated.

    Returns
    -------
    float
        NaN without regions or outside cells.
    """
    if not len(box_scores) or not len(outside_scores):
        return float("nan")
    levels = np.unique(np.quantile(np.concatenate([*box_scores, outside_scores]), np.linspace(0, 1, 401)))
    outside = np.sort(outside_scores)
    fpr = 1.0 - np.searchsorted(outside, levels, side="left") / len(outside)
    overlap = np.mean([1.0 - np.searchsorted(np.sort(b), levels, side="left") / len(b) for b in box_scores], axis=0)
    order = np.argsort(fpr)
    fpr, overlap = np.r_[0.0, fpr[order]], np.r_[0.0, overlap[order]]
    keep = fpr <= max_fpr
    end = np.interp(max_fpr, fpr, overlap)
    curve_x, curve_y = np.r_[fpr[keep], max_fpr], np.r_[overlap[keep], end]
    return float(np.sum(np.diff(curve_x) * (curve_y[1:] + curve_y[:-1]) / 2.0) / max_fpr)


def _outcomes(score_map: np.ndarray, truth_boxes: np.ndarray, *, threshold: float, stride_px: int,
              image_shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Which annotated boxes a region overlaps, and how many regions overlap none."""
    regions = anomaly_regions(score_map, threshold=threshold, stride_px=stride_px, image_shape=image_shape,
                              pixel_size_um=1.0)
    boxes = np.array([region.box_xyxy_px for region in regions], float).reshape(-1, 4)
    if not len(truth_boxes):
        return np.zeros(0, bool), len(boxes)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    truth_area = (truth_boxes[:, 2] - truth_boxes[:, 0]) * (truth_boxes[:, 3] - truth_boxes[:, 1])
    finds = (iou_matrix(boxes, truth_boxes) > 0) & (area[:, None] <= MAX_REGION_TO_BOX_AREA * truth_area[None, :])
    return finds.any(0), int((~finds.any(1)).sum())


def false_alarms_per_image(good_maps: Sequence[np.ndarray], *, threshold: float, stride_px: int,
                           image_shape: tuple[int, int]) -> float:
    """Regions per good image at ``threshold`` (on a good image, every region is a false alarm).

    Parameters
    ----------
    good_maps : sequence of (h, w) float arrays
        Score maps of good images.
    threshold : float
        The map threshold.
    stride_px : int
        Image pixels per map cell.
    image_shape : (H, W)
        The images' size in pixels.

    Returns
    -------
    float
        NaN without maps.
    """
    if not len(good_maps):
        return float("nan")
    return float(np.mean([len(anomaly_regions(m, threshold=threshold, stride_px=stride_px, image_shape=image_shape,
                                              pixel_size_um=1.0)) for m in good_maps]))


def _figures(found: list[np.ndarray], false_alarms: np.ndarray, kinds: list[tuple[str, ...]], images: np.ndarray,
             *, kind_names: Sequence[str]) -> dict[str, float]:
    hits, totals = Counter(), Counter()
    for index in images:
        for kind, hit in zip(kinds[index], found[index], strict=True):
            totals[kind] += 1
            hits[kind] += int(hit)
    figures = {f"recall_{kind}": hits[kind] / totals[kind] if totals[kind] else float("nan") for kind in kind_names}
    figures["recall"] = sum(hits.values()) / max(1, sum(totals.values()))
    figures["false_alarms_per_image"] = float(false_alarms[images].mean())
    return figures


def anomaly_report(defect_maps: Sequence[np.ndarray], truth_boxes: Sequence[np.ndarray],
                   truth_kinds: Sequence[tuple[str, ...]], good_maps: Sequence[np.ndarray], *, stride_px: int,
                   image_shape: tuple[int, int], threshold: float, target_false_alarms_per_image: float = 1.0,
                   resamples: int = 1000) -> dict[str, Any]:
    """Everything ``inspect eval-anomaly`` reports about score maps of annotated defective images and of good
    images.

    Parameters
    ----------
    defect_maps : sequence of (h, w) float arrays
        Score maps of images with annotated defects.
    truth_boxes : sequence of (K, 4) float arrays
        Per defective image, its annotated boxes (x1, y1, x2, y2) in image pixels.
    truth_kinds : sequence of tuple of str
        Per defective image, the defect type of each box.
    good_maps : sequence of (h, w) float arrays
        Score maps of good images (for the image AUROC and the false alarms on good parts).
    stride_px : int
        Image pixels per map cell.
    image_shape : (H, W)
        The images' size in pixels.
    threshold : float
        The operating threshold (the card's).
    target_false_alarms_per_image : float
        The second operating point: the threshold of the highest recall whose false alarms per defective image
        are at most this (chosen on these very images: what a line tuning on its own boards would reach).
    resamples : int
        Bootstrap resamples over the defective images (0: no intervals).

    Returns
    -------
    dict
        ``image_auroc``, ``pixel_auroc_boxes``, ``pro_auc_boxes`` (to a false-positive rate of 0.3),
        ``at_card_threshold`` and ``at_target`` (per-defect recall,
        overall recall, false alarms per defective and per good image, the threshold), and ``ci95`` for the
        figures at both points.
    """
    kind_names = sorted({kind for kinds in truth_kinds for kind in kinds})
    kinds = [tuple(k) for k in truth_kinds]
    truth_boxes = [np.asarray(b, float).reshape(-1, 4) for b in truth_boxes]
    image_scores = np.r_[[m.max() for m in defect_maps], [m.max() for m in good_maps]]
    is_defective = np.r_[np.ones(len(defect_maps), bool), np.zeros(len(good_maps), bool)]
    cell_scores, cell_inside, box_scores = [], [], []
    for score_map, boxes in zip(defect_maps, truth_boxes, strict=True):
        inside = np.zeros(score_map.shape, bool)
        for x1, y1, x2, y2 in boxes:
            cells = (slice(int(y1) // stride_px, int(np.ceil(y2 / stride_px))),
                     slice(int(x1) // stride_px, int(np.ceil(x2 / stride_px))))
            inside[cells] = True
            box_scores.append(score_map[cells].ravel())
        cell_scores.append(score_map.ravel())
        cell_inside.append(inside.ravel())

    def defective(at: float) -> tuple[list[np.ndarray], np.ndarray]:
        """Per defective image: which boxes a region finds, and its false alarms."""
        outcomes = [_outcomes(m, b, threshold=at, stride_px=stride_px, image_shape=image_shape)
                    for m, b in zip(defect_maps, truth_boxes, strict=True)]
        return [found for found, _ in outcomes], np.array([alarms for _, alarms in outcomes], float)

    every = np.arange(len(defect_maps))
    report: dict[str, Any] = {
        "defective_images": len(defect_maps), "good_images": len(good_maps),
        "defects": dict(sorted(Counter(k for ks in kinds for k in ks).items())),
        "image_auroc": round(auroc(image_scores, is_defective), 5),
        "pixel_auroc_boxes": round(auroc(np.concatenate(cell_scores), np.concatenate(cell_inside)), 5),
        "pro_auc_boxes": round(pro_auc(box_scores, np.concatenate(cell_scores)[~np.concatenate(cell_inside)]), 5),
    }
    # The threshold of the highest recall among those meeting the target (regions merge and split as the
    # threshold moves, so neither count is monotonic in it: every candidate is tried).
    best = (-1.0, 1.0)
    for candidate in THRESHOLD_GRID:
        found, alarms = defective(float(candidate))
        if alarms.mean() <= target_false_alarms_per_image:
            best = max(best, (float(np.concatenate(found).mean()), float(candidate)))
    target_threshold = best[1]
    ci95: dict[str, Any] = {}
    for name, at in (("at_card_threshold", threshold), ("at_target", target_threshold)):
        found, alarms = defective(at)
        good_alarms = false_alarms_per_image(good_maps, threshold=at, stride_px=stride_px, image_shape=image_shape)
        figures = _figures(found, alarms, kinds, every, kind_names=kind_names)
        report[name] = {"threshold": round(at, 4), **{k: round(v, 4) for k, v in figures.items()},
                        "false_alarms_per_good_image": round(good_alarms, 4)}
        if resamples:
            ci95[name] = bootstrap_intervals(lambda images, f=found, a=alarms: _figures(f, a, kinds, images,
                                                                                        kind_names=kind_names),
                                             len(defect_maps), resamples=resamples)
    report["at_target"]["target_false_alarms_per_image"] = target_false_alarms_per_image
    if resamples:
        report["ci95"] = ci95
    return report
