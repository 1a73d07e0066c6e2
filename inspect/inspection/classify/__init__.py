"""Defect classification on ONNX Runtime (no torch): model cards, input preparation, inference, evaluation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from inspection.acquire import ImageReadError
from inspection.acquire.labelled import list_labelled_folder
from inspection.classify.batching import MicroBatcher, predict_files
from inspection.classify.card import CardError, ModelCard
from inspection.classify.metrics import (
    classification_intervals,
    classification_report,
    confusion_matrix,
    recall_overkill,
)
from inspection.classify.runtime import Classifier, DeviceError, SessionSettings, providers_for
from inspection.progress import progress

__all__ = [
    "CardError", "Classifier", "DeviceError", "MicroBatcher", "ModelCard", "SessionSettings", "evaluate_folder",
    "predict_files", "providers_for",
]
log = logging.getLogger("inspection.classify")


def evaluate_folder(classifier: Classifier, folder: str | Path, *, batch_size: int = 64) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class metrics, confusion, 95% bootstrap intervals (``ci95``) and (with a good
    class) recall/overkill on a folder.

    Runs the same ONNX inference as the line. Unreadable images are skipped and listed under ``skipped``.
    """
    data = list_labelled_folder(folder, class_names=tuple(classifier.class_names), min_classes=1)
    label_of = dict(zip(data.paths, data.labels.tolist(), strict=True))
    probabilities, labels, skipped = [], [], []
    chunks = predict_files(classifier.predict, data.paths, card=classifier.card, batch_size=batch_size)
    for chunk, outputs in progress(chunks, total=-(-len(data.paths) // batch_size), label="evaluating"):
        for reason in chunk.skipped:
            log.warning("skipped %s", reason)
        skipped.extend(chunk.skipped)
        if outputs is not None:
            probabilities.append(outputs)
            labels.extend(label_of[path] for path in chunk.paths)
    if not labels:
        raise ImageReadError(f"{folder}: no readable image")
    all_probabilities = np.concatenate(probabilities)
    y_true = np.asarray(labels)
    y_pred = all_probabilities.argmax(axis=1)
    report = classification_report(confusion_matrix(y_true, y_pred, n_classes=len(classifier.class_names)),
                                   class_names=classifier.class_names)
    report["ci95"] = classification_intervals(y_true, y_pred, class_names=classifier.class_names)
    report["class_names"] = classifier.class_names
    thresholds = classifier.card.thresholds
    if thresholds.good_class is not None and thresholds.defect_score is not None:
        is_defect = y_true != classifier.card.good_index
        report["operating_point"] = {
            "defect_score_threshold": thresholds.defect_score,
            **recall_overkill(classifier.defect_scores(all_probabilities), is_defect,
                              threshold=thresholds.defect_score),
        }
    report["skipped"] = skipped
    report["model"] = str(classifier.onnx_path)
    return report
