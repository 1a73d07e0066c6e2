"""Evaluating a wafer-map pattern model on labelled maps."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from tqdm import tqdm

from inspection.classify import CardError
from inspection.classify.card import class_order
from inspection.evaluate.metrics import (
    baseline_comparison,
    classification_intervals,
    classification_report,
    confusion_matrix,
)
from inspection.wafermap.classify import WaferMapModel
from inspection.wafermap.formats import MapSet


def evaluate_maps(classifier: WaferMapModel, map_set: MapSet, *, batch_size: int = 256,
                  baseline: WaferMapModel | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion, in the card's class order,
    95% bootstrap intervals of accuracy, macro-F1 and each recall (``ci95``), and every misclassified map
    (index into ``map_set``, truth, prediction, confidence), most confident first.

    With ``baseline``, a second model classifies the same maps; ``baseline`` in the result holds its accuracy,
    macro-F1 and recalls, the difference (this model minus the baseline) and that difference's paired
    interval."""
    if map_set.labels is None:
        raise CardError("the map file carries no labels to evaluate against")
    names = list(classifier.class_names)
    unknown = {map_set.label_names[i] for i in np.unique(map_set.labels)} - set(names)
    if unknown:
        raise CardError(f"labels {', '.join(sorted(unknown))} are not among the model's classes")
    baseline_order = None if baseline is None else class_order(baseline.class_names, names)
    y_true = np.array([names.index(map_set.label_names[i]) for i in map_set.labels])
    probabilities, elapsed_s = _classified(classifier, map_set, batch_size=batch_size)
    y_pred = probabilities.argmax(axis=1)
    report = classification_report(confusion_matrix(y_true, y_pred, n_classes=len(names)), class_names=names)
    report["ci95"] = classification_intervals(y_true, y_pred, class_names=names)
    report["class_names"] = names
    report["maps_per_s"] = round(len(y_true) / elapsed_s, 1)
    if baseline is not None and baseline_order is not None:
        baseline_probabilities, baseline_elapsed_s = _classified(baseline, map_set, batch_size=batch_size)
        baseline_pred = baseline_order[baseline_probabilities.argmax(axis=1)]
        report["baseline"] = {**baseline_comparison(y_true, y_pred, baseline_pred, class_names=names),
                              "maps_per_s": round(len(y_true) / baseline_elapsed_s, 1)}
    # Most confident first: the errors most worth a second look at the label.
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    report["misclassified"] = [
        {"index": int(i), "truth": names[y_true[i]], "predicted": names[y_pred[i]],
         "confidence": round(float(confidence[i]), 4)}
        for i in wrong[np.argsort(-confidence[wrong], kind="stable")]]
    return report


def _classified(classifier: WaferMapModel, map_set: MapSet, *, batch_size: int) -> tuple[np.ndarray, float]:
    """Every map's class probabilities and the seconds they took."""
    started = time.perf_counter()
    batches = range(0, len(map_set.maps), batch_size)
    outputs = [classifier.probabilities(map_set.maps[start : start + batch_size], batch_size=batch_size)
               for start in tqdm(batches, total=len(batches), desc="classifying maps", disable=None)]
    return np.concatenate(outputs), time.perf_counter() - started
