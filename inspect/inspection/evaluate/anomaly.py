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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspection.classify.anomaly import THRESHOLD_GRID, anomaly_regions
from inspection.classify.detect import iou_matrix
from inspection.evaluate.metrics import bootstrap_intervals

__all__ = ["ScoredBoards", "anomaly_report", "auroc", "false_alarms_per_image", "pooled_anomaly_report", "pro_auc"]

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
    levels = _pro_levels([*box_scores, outside_scores])
    overlaps = np.array([_at_or_above(b, levels) / len(b) for b in box_scores])
    return _pro_area(overlaps, _at_or_above(outside_scores, levels) / len(outside_scores), max_fpr=max_fpr)


def _pro_levels(scores: Sequence[np.ndarray]) -> np.ndarray:
    """The thresholds a PRO curve is drawn at: 401 quantiles of every score (fewer where they tie)."""
    return np.unique(np.quantile(np.concatenate(scores), np.linspace(0, 1, 401)))


def _at_or_above(scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """How many of ``scores`` are at or above each of the ascending ``levels``."""
    return len(scores) - np.searchsorted(np.sort(scores), levels, side="left")


def _pro_area(overlaps: np.ndarray, fpr: np.ndarray, *, max_fpr: float) -> float:
    """The normalised area under the mean of ``overlaps`` (regions x levels) against ``fpr`` (levels)."""
    overlap = overlaps.mean(axis=0)
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


@dataclass(frozen=True)
class ScoredBoards:
    """One anomaly model's score maps of annotated defective boards and of good boards (one product).

    Attributes
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
        The operating threshold (the model card's).
    """

    defect_maps: Sequence[np.ndarray]
    truth_boxes: Sequence[np.ndarray]
    truth_kinds: Sequence[tuple[str, ...]]
    good_maps: Sequence[np.ndarray]
    stride_px: int
    image_shape: tuple[int, int]
    threshold: float


POINTS = ("at_card_threshold", "at_target")


@dataclass
class _Units:
    """Per image (defective first, then good, product after product), what every figure is computed from, so
    that a bootstrap resample recomputes them all from the images it drew."""

    product: list[int] = field(default_factory=list)
    defective: list[bool] = field(default_factory=list)
    image_score: list[float] = field(default_factory=list)
    kinds: list[tuple[str, ...]] = field(default_factory=list)
    found: dict[str, list[np.ndarray]] = field(default_factory=lambda: {point: [] for point in POINTS})
    alarms: dict[str, list[int]] = field(default_factory=lambda: {point: [] for point in POINTS})
    box_overlaps: list[np.ndarray] = field(default_factory=list)
    """Per image, (boxes x levels): the share of each box's cells at or above each PRO level of its product."""
    outside_above: list[np.ndarray] = field(default_factory=list)
    """Per image, (levels,): its cells outside every box at or above each level (zeros for a good image)."""
    outside_cells: list[int] = field(default_factory=list)

    def add(self, product: int, boards: ScoredBoards, thresholds: dict[str, float]) -> None:
        """Append one product's images, scored at its ``thresholds`` (one per point)."""
        boxes = [np.asarray(b, float).reshape(-1, 4) for b in boards.truth_boxes]
        inside = [_inside(m, b, stride_px=boards.stride_px) for m, b in zip(boards.defect_maps, boxes, strict=True)]
        box_cells = [m[cells].ravel() for m, cell_boxes in zip(boards.defect_maps, inside, strict=True)
                     for cells in cell_boxes[1]]
        outside = [m[~mask] for m, (mask, _) in zip(boards.defect_maps, inside, strict=True)]
        levels = _pro_levels([*box_cells, *outside]) if box_cells else np.zeros(1)
        shape, stride = boards.image_shape, boards.stride_px
        for index, (score_map, truth) in enumerate(zip([*boards.defect_maps, *boards.good_maps],
                                                       [*boxes, *[np.zeros((0, 4))] * len(boards.good_maps)],
                                                       strict=True)):
            is_defective = index < len(boards.defect_maps)
            self.product.append(product)
            self.defective.append(is_defective)
            self.image_score.append(float(score_map.max()))
            self.kinds.append(tuple(boards.truth_kinds[index]) if is_defective else ())
            for point in POINTS:
                found, alarms = _outcomes(score_map, truth, threshold=thresholds[point], stride_px=stride,
                                          image_shape=shape)
                self.found[point].append(found)
                self.alarms[point].append(alarms)
            mask, cell_boxes = inside[index] if is_defective else (np.zeros(score_map.shape, bool), [])
            self.box_overlaps.append(np.array([_at_or_above(score_map[cells].ravel(), levels)
                                               / score_map[cells].size for cells in cell_boxes]
                                              ).reshape(-1, len(levels)))
            self.outside_above.append(_at_or_above(score_map[~mask], levels) if is_defective
                                      else np.zeros(len(levels), int))
            self.outside_cells.append(int((~mask).sum()) if is_defective else 0)

    def figures(self, units: np.ndarray, *, kind_names: Sequence[str], max_fpr: float = 0.3) -> dict[str, float]:
        """Every figure of the images ``units`` (indices, repeats allowed), flat: ``<point>.<figure>``, and
        ``image_auroc`` and ``pro_auc_boxes`` as the mean over the products present."""
        every_defective, image_score = np.array(self.defective), np.array(self.image_score)
        defective = every_defective[units]
        figures: dict[str, float] = {}
        for point in POINTS:
            hits, totals = Counter(), Counter()
            for index in units[defective]:
                for kind, hit in zip(self.kinds[index], self.found[point][index], strict=True):
                    totals[kind] += 1
                    hits[kind] += int(hit)
            for kind in kind_names:
                figures[f"{point}.recall_{kind}"] = hits[kind] / totals[kind] if totals[kind] else float("nan")
            figures[f"{point}.recall"] = sum(hits.values()) / sum(totals.values()) if totals else float("nan")
            alarms = np.array(self.alarms[point], float)[units]
            figures[f"{point}.false_alarms_per_image"] = float(alarms[defective].mean()) if defective.any() \
                else float("nan")
            figures[f"{point}.false_alarms_per_good_image"] = float(alarms[~defective].mean()) \
                if (~defective).any() else float("nan")
        products = np.array(self.product)[units]
        aurocs, pros = [], []
        for product in np.unique(products):
            mine = units[products == product]
            aurocs.append(auroc(image_score[mine], every_defective[mine]))
            overlaps = [self.box_overlaps[i] for i in mine if len(self.box_overlaps[i])]
            cells = sum(self.outside_cells[i] for i in mine)
            pros.append(_pro_area(np.concatenate(overlaps), np.sum([self.outside_above[i] for i in mine], axis=0)
                                  / cells, max_fpr=max_fpr) if overlaps and cells else float("nan"))
        figures["image_auroc"] = float(np.mean(aurocs)) if aurocs else float("nan")
        figures["pro_auc_boxes"] = float(np.mean(pros)) if pros else float("nan")
        return figures


def _inside(score_map: np.ndarray, boxes: np.ndarray, *, stride_px: int
            ) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """The map cells inside any annotated box, and each box's cells."""
    inside = np.zeros(score_map.shape, bool)
    cell_boxes = []
    for x1, y1, x2, y2 in boxes:
        cells = (slice(int(y1) // stride_px, int(np.ceil(y2 / stride_px))),
                 slice(int(x1) // stride_px, int(np.ceil(x2 / stride_px))))
        inside[cells] = True
        cell_boxes.append(cells)
    return inside, cell_boxes


def _target_threshold(boards: ScoredBoards, *, target_false_alarms_per_image: float) -> float:
    """The threshold of the highest recall among those with at most the target false alarms per defective image
    (chosen on these very images: what a line tuning on its own boards would reach). Regions merge and split as
    the threshold moves, so neither count is monotonic in it: every threshold of the grid is tried."""
    boxes = [np.asarray(b, float).reshape(-1, 4) for b in boards.truth_boxes]
    best = (-1.0, 1.0)
    for candidate in THRESHOLD_GRID:
        outcomes = [_outcomes(m, b, threshold=float(candidate), stride_px=boards.stride_px,
                              image_shape=boards.image_shape) for m, b in zip(boards.defect_maps, boxes, strict=True)]
        if np.mean([alarms for _, alarms in outcomes]) <= target_false_alarms_per_image:
            best = max(best, (float(np.concatenate([found for found, _ in outcomes]).mean()), float(candidate)))
    return best[1]


def _nested(figures: dict[str, Any]) -> dict[str, Any]:
    """``{"at_target.recall": x}`` -> ``{"at_target": {"recall": x}}`` (figures without a point stay flat)."""
    nested: dict[str, Any] = {}
    for name, value in figures.items():
        point, _, figure = name.rpartition(".")
        (nested.setdefault(point, {}) if point else nested)[figure] = value
    return nested


def _report(units: _Units, indices: np.ndarray, *, kind_names: Sequence[str], resamples: int) -> dict[str, Any]:
    """The figures of the images ``indices``, with bootstrap intervals over them."""
    figures = units.figures(indices, kind_names=kind_names)
    report = _nested({name: round(value, 5) for name, value in figures.items()})
    kinds = [kind for i in indices for kind in units.kinds[i]]
    report = {"defective_images": int(np.array(units.defective)[indices].sum()),
              "good_images": int((~np.array(units.defective)[indices]).sum()),
              "defects": dict(sorted(Counter(kinds).items())), **report}
    if resamples:
        report["ci95"] = _nested(bootstrap_intervals(
            lambda drawn: units.figures(indices[drawn], kind_names=kind_names), len(indices), resamples=resamples))
    return report


def anomaly_report(defect_maps: Sequence[np.ndarray], truth_boxes: Sequence[np.ndarray],
                   truth_kinds: Sequence[tuple[str, ...]], good_maps: Sequence[np.ndarray], *, stride_px: int,
                   image_shape: tuple[int, int], threshold: float, target_false_alarms_per_image: float = 1.0,
                   resamples: int = 1000) -> dict[str, Any]:
    """Everything ``inspect eval-anomaly`` reports about one model's score maps of annotated defective images and
    of good images.

    Parameters
    ----------
    defect_maps, truth_boxes, truth_kinds, good_maps, stride_px, image_shape, threshold
        As the fields of :class:`ScoredBoards`.
    target_false_alarms_per_image : float
        The second operating point: the threshold of the highest recall whose false alarms per defective image
        are at most this (chosen on these very images: what a line tuning on its own boards would reach).
    resamples : int
        Bootstrap resamples over the images, defective and good (0: no intervals).

    Returns
    -------
    dict
        ``image_auroc``, ``pixel_auroc_boxes``, ``pro_auc_boxes`` (to a false-positive rate of 0.3),
        ``at_card_threshold`` and ``at_target`` (per-defect recall, overall recall, false alarms per defective and
        per good image, the threshold), and ``ci95`` for all but the pixel AUROC.
    """
    boards = ScoredBoards(defect_maps, truth_boxes, truth_kinds, good_maps, stride_px, image_shape, threshold)
    return pooled_anomaly_report([boards], target_false_alarms_per_image=target_false_alarms_per_image,
                                 resamples=resamples)["pooled"]


def pooled_anomaly_report(products: Sequence[ScoredBoards], *, names: Sequence[str] | None = None,
                          target_false_alarms_per_image: float = 1.0, resamples: int = 1000) -> dict[str, Any]:
    """The figures of several anomaly models, one per product, each on its own product's boards: per product and
    pooled.

    Each model runs at its own operating points (its card's threshold, and the threshold that meets
    ``target_false_alarms_per_image`` on its product's defective boards). Pooled, the recall and false alarms
    count every board at its own model's point, and the image AUROC and PRO are the mean of the products'
    (scores of different models are not on one scale); the pooled intervals resample the boards of every product.

    Parameters
    ----------
    products : sequence of ScoredBoards
        One model's maps of one product's boards each.
    names : sequence of str, optional
        The products' names, keys of ``per_product`` (default: "0", "1", ...).
    target_false_alarms_per_image : float
        False alarms per defective board at the second operating point.
    resamples : int
        Bootstrap resamples (0: no intervals).

    Returns
    -------
    dict
        ``pooled`` and ``per_product`` (name -> report), each as :func:`anomaly_report`'s, plus the pixel AUROC
        over the boxes per product.
    """
    names = list(names) if names is not None else [str(i) for i in range(len(products))]
    units, thresholds = _Units(), []
    for index, boards in enumerate(products):
        at = {"at_card_threshold": boards.threshold,
              "at_target": _target_threshold(boards, target_false_alarms_per_image=target_false_alarms_per_image)}
        units.add(index, boards, at)
        thresholds.append(at)
    kind_names = sorted({kind for kinds in units.kinds for kind in kinds})
    every = np.arange(len(units.product))
    per_product: dict[str, Any] = {}
    for index, (name, boards) in enumerate(zip(names, products, strict=True)):
        report = _report(units, every[np.array(units.product) == index], kind_names=kind_names, resamples=resamples)
        report["pixel_auroc_boxes"] = round(_pixel_auroc(boards), 5)
        for point in POINTS:
            report[point]["threshold"] = round(thresholds[index][point], 4)
        report["at_target"]["target_false_alarms_per_image"] = target_false_alarms_per_image
        per_product[name] = report
    pooled = _report(units, every, kind_names=kind_names, resamples=resamples)
    pooled["pixel_auroc_boxes"] = round(float(np.mean([r["pixel_auroc_boxes"] for r in per_product.values()])), 5)
    if len(products) == 1:  # one model: its thresholds are the report's
        for point in POINTS:
            pooled[point]["threshold"] = round(thresholds[0][point], 4)
    pooled["at_target"]["target_false_alarms_per_image"] = target_false_alarms_per_image
    return {"pooled": pooled, "per_product": per_product}


def _pixel_auroc(boards: ScoredBoards) -> float:
    """AUROC of the defective maps' cells, those inside an annotated box as positives."""
    scores, positive = [], []
    for score_map, boxes in zip(boards.defect_maps, boards.truth_boxes, strict=True):
        mask, _ = _inside(score_map, np.asarray(boxes, float).reshape(-1, 4), stride_px=boards.stride_px)
        scores.append(score_map.ravel())
        positive.append(mask.ravel())
    return auroc(np.concatenate(scores), np.concatenate(positive)) if scores else float("nan")
