"""Wafer-map pattern classification with an exported CNN (ONNX Runtime, no torch).

A map becomes the model's input by a state-preserving resize (majority vote) to the card's size and the
grey levels 0 / 127 / 254 for no die / good / failed, the same function at training and on the line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspection.classify import CardError, Classifier
from inspection.classify.metrics import classification_report, confusion_matrix
from inspection.classify.prepare import prepare_batch
from inspection.progress import progress
from inspection.wafermap.classical import ClassicalWaferMapModel
from inspection.wafermap.formats import MapSet
from inspection.wafermap.maps import PATTERNS, ROOT_CAUSES, resize_map, yield_fraction

TASK = "wafermap"
GREY_PER_STATE = 127


def map_image(die_map: np.ndarray, *, size: int) -> np.ndarray:
    """The 8-bit picture of a map that the CNN sees (and is trained on)."""
    return (resize_map(die_map, size=size, method="majority") * GREY_PER_STATE).astype(np.uint8)


class WaferMapClassifier:
    def __init__(self, model_dir: str | Path) -> None:
        self.classifier = Classifier(model_dir)
        card = self.classifier.card
        if card.task != TASK or set(card.class_names) - set(PATTERNS):
            raise CardError(f"{model_dir}: a {card.task} model with classes {', '.join(card.class_names)}; expected "
                            f"a wafermap model (classes among {', '.join(PATTERNS)})")
        self.size = card.input.height

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names

    def probabilities(self, maps: list[np.ndarray], *, batch_size: int = 256) -> np.ndarray:
        outputs = []
        for start in range(0, len(maps), batch_size):
            images = [(map_image(m, size=self.size), "mono", 8) for m in maps[start : start + batch_size]]
            outputs.append(self.classifier.predict(prepare_batch(images, card=self.classifier.card)))  # type: ignore[arg-type]
        return np.concatenate(outputs)



class WaferMapModel(Protocol):
    class_names: list[str]

    def probabilities(self, maps: list[np.ndarray], *, batch_size: int = 256) -> np.ndarray: ...


def load_wafermap_model(model_dir: str | Path) -> WaferMapModel:
    """The classical model if the folder holds ``classical.npz``, else the CNN (ONNX + card)."""
    if (Path(model_dir) / ClassicalWaferMapModel.FILE).is_file():
        return ClassicalWaferMapModel(model_dir)
    return WaferMapClassifier(model_dir)


def classify_maps(model: WaferMapModel, maps: list[np.ndarray]) -> list[dict[str, Any]]:
    """Per map: pattern, confidence, top-3, yield and the root-cause hint of the pattern."""
    results = []
    for die_map, row in zip(maps, model.probabilities(maps), strict=True):
        order = np.argsort(row)[::-1]
        pattern = model.class_names[order[0]]
        results.append({
            "pattern": pattern, "confidence": round(float(row[order[0]]), 5),
            "top3": [{"pattern": model.class_names[i], "probability": round(float(row[i]), 5)} for i in order[:3]],
            "yield": round(yield_fraction(die_map), 5), "root_cause": ROOT_CAUSES[pattern],
        })
    return results


def evaluate_maps(classifier: WaferMapModel, map_set: MapSet, *, batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion, in the card's class order."""
    if map_set.labels is None:
        raise CardError("the map file carries no labels to evaluate against")
    names = list(classifier.class_names)
    unknown = {map_set.label_names[i] for i in np.unique(map_set.labels)} - set(names)
    if unknown:
        raise CardError(f"labels {', '.join(sorted(unknown))} are not among the model's classes")
    y_true = np.array([names.index(map_set.label_names[i]) for i in map_set.labels])
    started = time.perf_counter()
    batches = range(0, len(map_set.maps), batch_size)
    outputs = [classifier.probabilities(map_set.maps[start : start + batch_size], batch_size=batch_size)
               for start in progress(batches, total=len(batches), label="classifying maps")]
    elapsed = time.perf_counter() - started
    y_pred = np.concatenate(outputs).argmax(axis=1)
    report = classification_report(confusion_matrix(y_true, y_pred, n_classes=len(names)), class_names=names)
    report["class_names"] = names
    report["maps_per_s"] = round(len(y_true) / elapsed, 1)
    return report
