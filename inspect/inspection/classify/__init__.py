"""Defect classification on ONNX Runtime (no torch): model cards, input preparation, inference, evaluation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from inspection.acquire import ImageReadError, read_image
from inspection.acquire.labelled import list_labelled_folder
from inspection.classify.card import CardError, ModelCard, read_card
from inspection.classify.metrics import classification_report, confusion_matrix, recall_overkill
from inspection.classify.prepare import prepare_batch
from inspection.progress import progress
from inspection.types import Layout

__all__ = ["CardError", "Classifier", "ModelCard", "evaluate_folder"]
log = logging.getLogger("inspection.classify")


class Classifier:
    """An exported model and its card, run on ONNX Runtime."""

    def __init__(self, model_dir: str | Path, *, precision: Literal["fp32", "int8"] = "fp32",
                 providers: Sequence[str] = ("CPUExecutionProvider",), intra_op_threads: int = 0) -> None:
        self.model_dir = Path(model_dir)
        self.card, self.onnx_path = read_card(self.model_dir, precision=precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), options, providers=list(providers))
        except Exception as exc:  # ONNX Runtime raises its own exception types for a broken graph
            raise CardError(f"{self.onnx_path}: ONNX Runtime cannot load it: {exc}") from None
        inputs = self.session.get_inputs()
        spec = self.card.input
        expected = [spec.channels, spec.height, spec.width]
        if len(inputs) != 1 or inputs[0].name != spec.name or list(inputs[0].shape[1:]) != expected:
            found = ", ".join(f"{i.name}{i.shape}" for i in inputs)
            raise CardError(f"{self.onnx_path}: input {found} does not match the card's "
                            f"{spec.name}[batch, {', '.join(map(str, expected))}]")
        if not isinstance(inputs[0].shape[0], str):
            raise CardError(f"{self.onnx_path}: batch axis is fixed at {inputs[0].shape[0]}; expected a dynamic one")

    @property
    def class_names(self) -> list[str]:
        return self.card.class_names

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N x classes) of a prepared NCHW batch."""
        return self.session.run([self.card.output_name], {self.card.input.name: batch})[0]

    def predict_images(self, images: Sequence[tuple[np.ndarray, Layout, int]]) -> np.ndarray:
        return self.predict(prepare_batch(images, card=self.card))

    def defect_scores(self, probabilities: np.ndarray) -> np.ndarray:
        """1 - p(good) per row; needs a card with a good class."""
        good = self.card.good_index
        if good is None:
            raise CardError(f"{self.model_dir}: the card names no good class, so there is no defect score")
        return 1.0 - probabilities[:, good]


def evaluate_folder(classifier: Classifier, folder: str | Path, *, batch_size: int = 64) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class metrics, confusion and (with a good class) recall/overkill on a folder.

    Runs the same ONNX inference as the line. Unreadable images are skipped and listed under ``skipped``.
    """
    data = list_labelled_folder(folder, class_names=tuple(classifier.class_names), min_classes=1)
    probabilities, labels, skipped = [], [], []
    batch: list[tuple[np.ndarray, Layout, int]] = []
    batch_labels: list[int] = []

    def flush() -> None:
        if batch:
            probabilities.append(classifier.predict_images(batch))
            labels.extend(batch_labels)
            batch.clear()
            batch_labels.clear()

    for path, label in progress(zip(data.paths, data.labels.tolist(), strict=True), total=len(data.paths),
                                label="evaluating"):
        try:
            batch.append(read_image(path))
            batch_labels.append(label)
        except ImageReadError as exc:
            log.warning("skipped %s", exc)
            skipped.append(str(exc))
        if len(batch) == batch_size:
            flush()
    flush()
    if not labels:
        raise ImageReadError(f"{folder}: no readable image")
    all_probabilities = np.concatenate(probabilities)
    y_true = np.asarray(labels)
    y_pred = all_probabilities.argmax(axis=1)
    report = classification_report(confusion_matrix(y_true, y_pred, n_classes=len(classifier.class_names)),
                                   class_names=classifier.class_names)
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
