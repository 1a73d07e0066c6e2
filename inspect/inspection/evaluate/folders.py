"""Evaluating a classifier on a labelled folder, with the line's own ONNX inference."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inspection.acquire import ImageReadError
from inspection.acquire.labelled import list_labelled_folder
from inspection.classify import Classifier, predict_files
from inspection.classify.card import class_order
from inspection.evaluate.metrics import (
    baseline_comparison,
    classification_intervals,
    classification_report,
    confusion_matrix,
    recall_overkill,
)

log = logging.getLogger("inspection.evaluate")


def evaluate_folder(classifier: Classifier, folder: str | Path, *, batch_size: int = 64,
                    baseline: Classifier | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class metrics, confusion, 95% bootstrap intervals (``ci95``) and (with a good
    class) recall/overkill on a folder.

    Runs the same ONNX inference as the line. Unreadable images are skipped and listed under ``skipped``.
    With ``baseline``, a second model of the same classes classifies the same images; ``baseline`` in the result
    holds its figures, the difference (this model minus the baseline) and that difference's paired interval.
    """
    names = tuple(classifier.class_names)
    baseline_order = None if baseline is None else class_order(baseline.class_names, names)
    data = list_labelled_folder(folder, class_names=names, min_classes=1)
    label_of = dict(zip(data.paths, data.labels.tolist(), strict=True))
    all_probabilities, paths, skipped = _folder_probabilities(classifier, data.paths, batch_size=batch_size)
    if not paths:
        raise ImageReadError(f"{folder}: no readable image")
    y_true = np.asarray([label_of[path] for path in paths])
    y_pred = all_probabilities.argmax(axis=1)
    report = classification_report(confusion_matrix(y_true, y_pred, n_classes=len(names)), class_names=names)
    report["ci95"] = classification_intervals(y_true, y_pred, class_names=names)
    report["class_names"] = classifier.class_names
    point = _operating_point(classifier, all_probabilities, y_true)
    if point is not None:
        report["operating_point"] = point
    if baseline is not None and baseline_order is not None:
        baseline_probabilities, _, baseline_skipped = _folder_probabilities(
            baseline, paths, batch_size=batch_size)
        if baseline_skipped:
            raise ImageReadError(f"the baseline could not read what the model read: {'; '.join(baseline_skipped)}")
        baseline_pred = baseline_order[baseline_probabilities.argmax(axis=1)]
        baseline_y_true = np.argsort(baseline_order)[y_true]  # the truth in the baseline's own class order
        report["baseline"] = {"model": str(baseline.onnx_path),
                              **baseline_comparison(y_true, y_pred, baseline_pred, class_names=names)}
        baseline_point = _operating_point(baseline, baseline_probabilities, baseline_y_true)
        if baseline_point is not None:
            report["baseline"]["operating_point"] = baseline_point
    report["skipped"] = skipped
    report["model"] = str(classifier.onnx_path)
    return report


def _folder_probabilities(classifier: Classifier, paths: Sequence[Path], *,
                          batch_size: int) -> tuple[np.ndarray, list[Path], list[str]]:
    """Class probabilities of the readable images among ``paths``, those images' paths, and why the others
    were skipped."""
    probabilities, read, skipped = [], [], []
    chunks = predict_files(classifier, paths, batch_size=batch_size)
    for chunk, outputs in tqdm(chunks, total=-(-len(paths) // batch_size), desc="evaluating", disable=None):
        for reason in chunk.skipped:
            log.warning("skipped %s", reason)
        skipped.extend(chunk.skipped)
        if outputs is not None:
            probabilities.append(outputs)
            read.extend(chunk.paths)
    n_classes = len(classifier.class_names)
    return (np.concatenate(probabilities) if probabilities else np.zeros((0, n_classes), np.float32)), read, skipped


def _operating_point(classifier: Classifier, probabilities: np.ndarray, y_true: np.ndarray) -> dict[str, Any] | None:
    """Defect recall and overkill at the card's defect-score threshold (None without a good class)."""
    thresholds = classifier.card.thresholds
    if thresholds.good_class is None or thresholds.defect_score is None:
        return None
    is_defect = y_true != classifier.card.good_index
    return {"defect_score_threshold": thresholds.defect_score,
            **recall_overkill(classifier.defect_scores(probabilities), is_defect, threshold=thresholds.defect_score)}
