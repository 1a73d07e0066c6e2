"""Classification metrics and the good/defect operating point, on numpy arrays (no framework)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


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
