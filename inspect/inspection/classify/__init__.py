"""Defect classification on ONNX Runtime (no torch): model cards, input preparation, inference, batching."""

from __future__ import annotations

from inspection.classify.batching import MicroBatcher, predict_files
from inspection.classify.card import CardError, ModelCard
from inspection.classify.runtime import Classifier, DeviceError, SessionSettings, VariantCheckError, providers_for

__all__ = [
    "CardError", "Classifier", "DeviceError", "MicroBatcher", "ModelCard", "SessionSettings", "VariantCheckError",
    "predict_files", "providers_for",
]
