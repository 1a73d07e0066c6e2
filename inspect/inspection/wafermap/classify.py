"""Wafer-map pattern classification with an exported CNN (ONNX Runtime, no torch).

A map becomes the model's input by a state-preserving resize (majority vote) to the card's size and the
grey levels 0 / 127 / 254 for no die / good / failed, the same function at training and on the line.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np

from inspection.classify import CardError, Classifier
from inspection.classify.runtime import Device, SessionSettings
from inspection.types import Layout, PatternScore, WaferPattern
from inspection.wafermap.classical import ClassicalWaferMapModel
from inspection.wafermap.maps import PATTERNS, ROOT_CAUSES, failure_density, resize_map, yield_fraction
from inspection.workers import die_with_parent

TASK = "wafermap"
GREY_PER_STATE = 127


def map_image(die_map: np.ndarray, *, size: int, channels: int = 1) -> np.ndarray:
    """The 8-bit picture of a map that the CNN sees (and is trained on), in the frame layout ``map_layout`` names.

    One channel: the majority-vote map in grey levels. Three: the majority-vote map, the failure density per
    cell (which keeps thin scratches that the majority vote drops on large maps) and the wafer footprint.
    """
    states = resize_map(die_map, size=size, method="majority")
    majority = (states * GREY_PER_STATE).astype(np.uint8)
    if channels == 1:
        return majority
    density = np.rint(failure_density(die_map, size=size) * 254).astype(np.uint8)
    return np.stack([majority, density, (states > 0) * np.uint8(254)], axis=-1)


def map_layout(channels: int) -> Layout:
    """Three-channel map pictures are stored and read as BGR files, so they are declared BGR everywhere."""
    return "mono" if channels == 1 else "bgr"


class WaferMapClassifier:
    def __init__(self, model_dir: str | Path, *, threads: int = 0, device: Device = "cpu") -> None:
        self.classifier = Classifier(model_dir, device=device, settings=SessionSettings(intra_op_threads=threads))
        card = self.classifier.card
        if card.task != TASK or set(card.class_names) - set(PATTERNS):
            raise CardError(f"{model_dir}: a {card.task} model with classes {', '.join(card.class_names)}; expected "
                            f"a wafermap model (classes among {', '.join(PATTERNS)})")
        self.size = card.input.height
        self.channels = card.input.channels

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names

    def probabilities(self, maps: list[np.ndarray], *, batch_size: int = 256) -> np.ndarray:
        outputs = []
        for start in range(0, len(maps), batch_size):
            images = [(map_image(m, size=self.size, channels=self.channels), map_layout(self.channels), 8)
                      for m in maps[start : start + batch_size]]
            outputs.append(self.classifier.classify(images))
        return np.concatenate(outputs)



class WaferMapModel(Protocol):
    class_names: list[str]

    def probabilities(self, maps: list[np.ndarray], *, batch_size: int = 256) -> np.ndarray: ...


def load_wafermap_model(model_dir: str | Path, *, threads: int = 0, device: Device = "cpu") -> WaferMapModel:
    """The classical model if the folder holds ``classical.npz``, else the CNN (ONNX + card; ``threads`` per
    operator, 0 for one per core; run on ``device``)."""
    if (Path(model_dir) / ClassicalWaferMapModel.FILE).is_file():
        if device != "cpu":
            raise CardError(f"{model_dir}: a classical model, which runs in numpy on the CPU; --device {device} is "
                            "for the CNN models")
        return ClassicalWaferMapModel(model_dir)
    return WaferMapClassifier(model_dir, threads=threads, device=device)


_WORKER_MODEL: WaferMapModel | None = None


def _load_worker_model(model_dir: str, device: Device, parent_pid: int) -> None:
    global _WORKER_MODEL
    die_with_parent(parent_pid)  # a killed `inspect wafermap eval` left its workers alive, holding its pipe
    _WORKER_MODEL = load_wafermap_model(model_dir, threads=1, device=device)


def _worker_probabilities(maps: list[np.ndarray]) -> np.ndarray:
    assert _WORKER_MODEL is not None, "worker not initialised"
    return _WORKER_MODEL.probabilities(maps)


class WaferMapModelPool:
    """A wafer-map model in ``workers`` processes of one thread each, used like the model itself.

    Preparing a map (majority-vote resize, features) is Python work per map, so processes, not threads,
    use the cores. The workers load the model once; maps travel in chunks.
    """

    def __init__(self, model_dir: str | Path, *, workers: int, device: Device = "cpu") -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        # A wrong folder or device fails here, not in a worker.
        self.class_names = load_wafermap_model(model_dir, threads=1, device=device).class_names
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, initializer=_load_worker_model,
                                        initargs=(str(model_dir), device, os.getpid()))

    def probabilities(self, maps: list[np.ndarray], *, batch_size: int = 256) -> np.ndarray:
        """One share of ``maps`` per worker, in chunks of at most ``batch_size``."""
        chunk = max(1, min(batch_size, -(-len(maps) // self.workers)))
        parts = self.pool.map(_worker_probabilities, [maps[i : i + chunk] for i in range(0, len(maps), chunk)])
        return np.concatenate(list(parts)) if maps else np.zeros((0, len(self.class_names)), np.float32)

    def close(self) -> None:
        self.pool.shutdown()

    def __enter__(self) -> WaferMapModelPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def classify_maps(model: WaferMapModel, maps: list[np.ndarray]) -> list[WaferPattern]:
    """Per map: its pattern with the model's confidence, the top three, its yield and the pattern's likely cause."""
    results = []
    for die_map, row in zip(maps, model.probabilities(maps), strict=True):
        order = np.argsort(row)[::-1]
        pattern = model.class_names[order[0]]
        results.append(WaferPattern(
            pattern, round(float(row[order[0]]), 5),
            tuple(PatternScore(model.class_names[i], round(float(row[i]), 5)) for i in order[:3]),
            round(yield_fraction(die_map), 5), ROOT_CAUSES[pattern]))
    return results
