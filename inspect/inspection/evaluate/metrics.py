"""Classification metrics, bootstrap confidence intervals and the good/defect operating point, on numpy arrays
(no framework)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

Model = TypeVar("Model")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_report(confusion: np.ndarray, *, class_names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over classes with support) and per-class precision/recall/F1/support."""
    true_positive = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    per_class = {}
    f1_scores = []
    for i, name in enumerate(class_names):
        precision = true_positive[i] / predicted[i] if predicted[i] else 0.0
        recall = true_positive[i] / support[i] if support[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5),
                           "support": int(support[i])}
        if support[i]:
            f1_scores.append(f1)
    total = int(confusion.sum())
    return {
        "accuracy": round(float(true_positive.sum() / total), 5) if total else 0.0,
        "macro_f1": round(float(np.mean(f1_scores)), 5) if f1_scores else 0.0,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "samples": total,
    }


def bootstrap_intervals(statistics: Callable[[np.ndarray], dict[str, float]], n_units: int, *,
                        resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, list[float] | None]:
    """Percentile-bootstrap interval ``[low, high]`` of each figure that ``statistics`` returns (None for a
    figure that is NaN, undefined, in every resample).

    ``statistics`` gets the unit indices of one resample: ``n_units`` drawn with replacement. Units are what
    was sampled independently (images, maps, board pairs), so that errors that come together, such as the
    detections in one image, are resampled together. Seeded: the same data gives the same intervals.
    """
    if n_units < 1:
        raise ValueError("a bootstrap interval needs at least one unit")
    generator = np.random.default_rng(seed)
    draws = [statistics(generator.integers(0, n_units, n_units)) for _ in range(resamples)]
    tail = (1.0 - level) / 2.0
    intervals: dict[str, list[float] | None] = {}
    for name in draws[0]:
        values = np.array([draw[name] for draw in draws], float)
        values = values[~np.isnan(values)]  # NaN: the figure is undefined in that resample
        bounds = np.quantile(values, [tail, 1.0 - tail]) if len(values) else None
        intervals[name] = None if bounds is None else [round(float(bound), 5) for bound in bounds]
    return intervals


def compared(figures: Callable[[Model, np.ndarray], dict[str, float]], model: Model,
             baseline: Model | None) -> Callable[[np.ndarray], dict[str, float]]:
    """The statistics to bootstrap: ``figures`` of ``model`` on a resample's units or, with a ``baseline``,
    the difference model minus baseline on the same units (a paired comparison)."""

    def statistics(units: np.ndarray) -> dict[str, float]:
        mine = figures(model, units)
        if baseline is None:
            return mine
        theirs = figures(baseline, units)
        return {name: mine[name] - theirs[name] for name in mine}

    return statistics


def classification_intervals(y_true: np.ndarray, y_pred: np.ndarray, *, class_names: list[str] | tuple[str, ...],
                             baseline_pred: np.ndarray | None = None) -> dict[str, Any]:
    """95% bootstrap intervals (samples resampled) of accuracy, macro-F1 and each class's recall, in the
    layout ``{"accuracy": [low, high], "macro_f1": [...], "recall": {name: [...]}}``.

    With ``baseline_pred``, another model's predictions for the same samples, the intervals are of the
    difference (this model minus the baseline), both scored on the same resamples: a paired comparison,
    much narrower than either model's own interval, that says whether one model is better on such data.
    """
    n_classes = len(class_names)

    def figures(predicted: np.ndarray, units: np.ndarray) -> dict[str, float]:
        confusion = confusion_matrix(y_true[units], predicted[units], n_classes=n_classes)
        report = classification_report(confusion, class_names=class_names)
        support = confusion.sum(axis=1)
        # A class missing from a resample has no recall there (NaN, left out), not a recall of 0.
        recall = np.divide(np.diag(confusion), support, out=np.full(n_classes, np.nan), where=support > 0)
        return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                **{f"recall/{name}": float(value) for name, value in zip(class_names, recall, strict=True)}}

    intervals = bootstrap_intervals(compared(figures, y_pred, baseline_pred), len(y_true))
    return {"accuracy": intervals["accuracy"], "macro_f1": intervals["macro_f1"],
            "recall": {name: intervals[f"recall/{name}"] for name in class_names}}


def baseline_comparison(y_true: np.ndarray, y_pred: np.ndarray, baseline_pred: np.ndarray, *,
                        class_names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A second model's accuracy, macro-F1 and recalls on the same samples (its predictions ``baseline_pred``,
    in the same class order), the difference (this model minus the baseline) and that difference's paired
    95% interval (``difference_ci95``)."""
    n_classes = len(class_names)
    mine, theirs = (classification_report(confusion_matrix(y_true, predicted, n_classes=n_classes),
                                          class_names=class_names) for predicted in (y_pred, baseline_pred))
    return {
        "accuracy": theirs["accuracy"], "macro_f1": theirs["macro_f1"],
        "recall": {name: row["recall"] for name, row in theirs["per_class"].items()},
        "difference": {"accuracy": round(mine["accuracy"] - theirs["accuracy"], 5),
                       "macro_f1": round(mine["macro_f1"] - theirs["macro_f1"], 5),
                       "recall": {name: round(mine["per_class"][name]["recall"] - row["recall"], 5)
                                  for name, row in theirs["per_class"].items()}},
        "difference_ci95": classification_intervals(y_true, y_pred, class_names=class_names,
                                                    baseline_pred=baseline_pred),
    }


def operating_point(defect_scores: np.ndarray, is_defect: np.ndarray, *, target_recall: float) -> dict[str, float]:
    """The highest defect-score threshold that still catches ``target_recall`` of the defects.

    Returns the threshold with the recall and the overkill (share of good parts rejected) it gives.
    """
    defects = np.sort(defect_scores[is_defect])[::-1]
    if len(defects) == 0 or not (~is_defect).any():
        raise ValueError("an operating point needs both good and defective samples")
    needed = min(len(defects), math.ceil(target_recall * len(defects) - 1e-9))
    threshold = float(defects[needed - 1])
    return {"threshold": threshold, **recall_overkill(defect_scores, is_defect, threshold=threshold)}


def recall_overkill(defect_scores: np.ndarray, is_defect: np.ndarray, *, threshold: float) -> dict[str, float]:
    rejected = defect_scores >= threshold
    return {
        "defect_recall": round(float(rejected[is_defect].mean()), 6) if is_defect.any() else float("nan"),
        "overkill": round(float(rejected[~is_defect].mean()), 6) if (~is_defect).any() else float("nan"),
        "defects": int(is_defect.sum()),
        "good": int((~is_defect).sum()),
    }
