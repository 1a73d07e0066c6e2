"""Training wafer-map pattern classifiers with the project's training code.

Maps are written as the 8-bit pictures the line's classifier builds (``map_image``), one folder per pattern,
and trained like any labelled folder, with state-preserving augmentation (flips, turns, nearest rotation).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inspection.acquire.labelled import stratified_split
from inspection.classify.card import ModelCard
from inspection.evaluate.metrics import classification_report, confusion_matrix
from inspection.report import save_png
from inspection.samples.wafermaps import render_wafer_map
from inspection.train.loop import TrainConfig, TrainingError, train
from inspection.wafermap import PATTERNS, MapSet
from inspection.wafermap.classical import FEATURE_VERSION, ClassicalWaferMapModel, feature_matrix, forward
from inspection.wafermap.classify import TASK, map_image


def labelled_maps(real: MapSet | None, *, synthetic_per_pattern: int,
                  seed: int) -> list[tuple[str, str, np.ndarray]]:
    """(pattern, name, map) for the real labelled maps and ``synthetic_per_pattern`` generated maps of each."""
    maps: list[tuple[str, str, np.ndarray]] = []
    if real is not None:
        if real.labels is None:
            raise TrainingError("the map file carries no labels to train on")
        maps += [(real.label_names[label], f"real_{i:06d}", m)
                 for i, (m, label) in enumerate(zip(real.maps, real.labels.tolist(), strict=True))]
    maps += [(pattern, f"synthetic_{i:06d}", render_wafer_map(pattern, i, seed=seed))
             for pattern in PATTERNS for i in range(synthetic_per_pattern)]
    if not maps:
        raise TrainingError("nothing to train on: give a labelled map file, --synthetic N, or both")
    return maps


def write_map_folder(folder: Path, maps: list[tuple[str, str, np.ndarray]], *, size: int, channels: int) -> None:
    """Draw the training maps into ``folder/<pattern>/<name>.png`` as the classifier will see them."""
    if folder.exists():
        shutil.rmtree(folder)
    for pattern, name, die_map in tqdm(maps, total=len(maps), desc="writing maps", disable=None):
        save_png(folder / pattern / f"{name}.png", map_image(die_map, size=size, channels=channels))


def train_wafermap(out: Path, *, real: MapSet | None, synthetic_per_pattern: int, img_size: int, epochs: int,
                   seed: int, arch: str, device: str, command: str, channels: int = 1,
                   class_weighting: str = "inverse", ema_decay: float | None = None,
                   label_smoothing: float = 0.0, val_fraction: float = 0.2, batch_size: int = 64) -> ModelCard:
    folder = out / "dataset"
    write_map_folder(folder, labelled_maps(real, synthetic_per_pattern=synthetic_per_pattern, seed=seed),
                     size=img_size, channels=channels)
    config = TrainConfig(folder=folder, out=out, arch=arch, img_size=img_size, epochs=epochs, seed=seed,
                         colour="gray" if channels == 1 else "rgb",
                         device=device, good_class=None, augment="states", task=TASK, command=command,
                         patience=max(4, epochs // 3), class_weighting=class_weighting, ema_decay=ema_decay,
                         label_smoothing=label_smoothing, val_fraction=val_fraction, batch_size=batch_size)
    return train(config)


def fit_classical(out: Path, *, real: MapSet | None, synthetic_per_pattern: int, seed: int, command: str,
                  hidden: int = 96, epochs: int = 80, batch_size: int = 256,
                  val_fraction: float = 0.2) -> dict[str, Any]:
    """Fit the classical model (features + two-layer perceptron, Adam, class-weighted) and write it to ``out``.

    The epoch with the best validation macro-F1 (a stratified ``val_fraction`` of the maps) is kept.
    """
    maps = labelled_maps(real, synthetic_per_pattern=synthetic_per_pattern, seed=seed)
    y = np.array([PATTERNS.index(pattern) for pattern, _, _ in maps])
    chunks = range(0, len(maps), 1024)
    x = np.concatenate([feature_matrix([m for _, _, m in maps[start : start + 1024]])
                        for start in tqdm(chunks, total=len(chunks), desc="features (1,024 maps a step)",
                                          disable=None)])
    is_val = stratified_split(y, val_fraction=val_fraction, seed=seed)
    mean, std = x[~is_val].mean(axis=0), x[~is_val].std(axis=0) + 1e-6
    x = (x - mean) / std
    rng = np.random.default_rng(seed)
    n_features, n_classes = x.shape[1], len(PATTERNS)
    weights = {"w1": rng.normal(0, np.sqrt(2 / n_features), (n_features, hidden)), "b1": np.zeros(hidden),
               "w2": rng.normal(0, np.sqrt(1 / hidden), (hidden, n_classes)), "b2": np.zeros(n_classes)}
    counts = np.bincount(y[~is_val], minlength=n_classes).clip(min=1)
    class_weight = (1 / np.sqrt(counts)) / (1 / np.sqrt(counts)).mean()
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in weights.items()}
    train_index = np.flatnonzero(~is_val)
    best: tuple[float, dict[str, np.ndarray], dict[str, Any]] = (-1.0, weights, {})
    step = 0
    for _ in tqdm(range(epochs), total=epochs, desc="fitting", disable=None):
        order = rng.permutation(train_index)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            xb, yb = x[batch], y[batch]
            hidden_out = np.maximum(0.0, xb @ weights["w1"] + weights["b1"])
            probabilities = forward(weights, xb)
            grad_logits = probabilities.copy()
            grad_logits[np.arange(len(yb)), yb] -= 1
            grad_logits *= class_weight[yb][:, None] / len(yb)
            grad_hidden = (grad_logits @ weights["w2"].T) * (hidden_out > 0)
            grads = {"w2": hidden_out.T @ grad_logits + 1e-4 * weights["w2"], "b2": grad_logits.sum(axis=0),
                     "w1": xb.T @ grad_hidden + 1e-4 * weights["w1"], "b1": grad_hidden.sum(axis=0)}
            step += 1
            for key, grad in grads.items():  # Adam
                m, v = moments[key]
                m[:] = 0.9 * m + 0.1 * grad
                v[:] = 0.999 * v + 0.001 * grad**2
                weights[key] = weights[key] - 3e-3 * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        predicted = forward(weights, x[is_val]).argmax(axis=1)
        report = classification_report(confusion_matrix(y[is_val], predicted, n_classes=n_classes),
                                       class_names=PATTERNS)
        if report["macro_f1"] > best[0]:
            best = (report["macro_f1"], {k: v.copy() for k, v in weights.items()}, report)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / ClassicalWaferMapModel.FILE, **best[1], mean=mean, std=std, class_names=np.array(PATTERNS),
             feature_version=FEATURE_VERSION)
    card = {"task": TASK, "kind": "classical", "model_file": ClassicalWaferMapModel.FILE,
            "class_names": list(PATTERNS), "features": int(n_features), "feature_version": FEATURE_VERSION,
            "hidden": hidden,
            "metrics": {"val": best[2]},
            "training": {"maps": len(maps), "real": 0 if real is None else len(real.maps),
                         "synthetic_per_pattern": synthetic_per_pattern, "seed": seed, "epochs": epochs,
                         "command": command}}
    (out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    return card
