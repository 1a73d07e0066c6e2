"""Training curves as a picture with axes: losses on one shared scale, validation scores on 0..1."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np


def _pyplot() -> ModuleType:
    """matplotlib's pyplot on the file-only backend (a training run may have no display), imported when a
    picture is drawn rather than with the training code (0.6 s of every training command's start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_training_curves(history: Sequence[dict[str, Any]], path: str | Path, *, title: str,
                         best_epoch: int | None = None) -> Path:
    """Draw the per-epoch history of a training run and save it as a PNG.

    Parameters
    ----------
    history : sequence of dict
        One entry per epoch with ``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy`` and ``val_macro_f1``.
    path : str or Path
        The PNG to write.
    title : str
        The figure's title (the architecture, for instance).
    best_epoch : int, optional
        Marked with a dashed line on both panels: the epoch whose weights were kept.

    Returns
    -------
    Path
        ``path``.
    """
    epochs = [entry["epoch"] for entry in history]
    plt = _pyplot()
    figure, (losses, scores) = plt.subplots(1, 2, figsize=(9.0, 3.6), sharex=True, layout="constrained")
    losses.plot(epochs, [e["train_loss"] for e in history], marker="o", markersize=3, label="training")
    losses.plot(epochs, [e["val_loss"] for e in history], marker="o", markersize=3, label="validation")
    losses.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    scores.plot(epochs, [e["val_accuracy"] for e in history], marker="o", markersize=3, label="accuracy")
    scores.plot(epochs, [e["val_macro_f1"] for e in history], marker="o", markersize=3, label="macro-F1")
    scores.set(xlabel="epoch", ylabel="score", title="validation", ylim=(0.0, 1.0))
    for axes in (losses, scores):
        if best_epoch:
            axes.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def save_anomaly_curves(history: Sequence[dict[str, Any]], thresholds: np.ndarray, false_alarms: np.ndarray,
                        path: str | Path, *, title: str, chosen_threshold: float, target_false_alarms: float) -> Path:
    """Draw an anomaly model's training loss and its false alarms on held-out good images against the threshold.

    Parameters
    ----------
    history : sequence of dict
        ``step`` and ``loss`` (the mean over the steps since the previous entry).
    thresholds, false_alarms : (K,) float arrays
        Map thresholds and the regions per held-out good image at each.
    path : str or Path
        The PNG to write.
    title : str
        The figure's title.
    chosen_threshold, target_false_alarms : float
        The card's threshold and the false-alarm rate it was chosen for, marked on the right panel.

    Returns
    -------
    Path
        ``path``.
    """
    plt = _pyplot()
    figure, (losses, alarms) = plt.subplots(1, 2, figsize=(9.0, 3.6), layout="constrained")
    losses.plot([e["step"] for e in history], [e["loss"] for e in history])
    losses.set(xlabel="step", ylabel="weighted binary cross-entropy", title="training loss", yscale="log")
    alarms.plot(thresholds, false_alarms, marker="o", markersize=2)
    alarms.axvline(chosen_threshold, color="grey", linestyle="--", linewidth=1,
                   label=f"threshold {chosen_threshold:.3f}")
    alarms.axhline(target_false_alarms, color="tab:red", linestyle=":", linewidth=1,
                   label=f"target {target_false_alarms:g} per image")
    alarms.set(xlabel="map threshold", ylabel="false alarms per good image", title="held-out good images",
               yscale="symlog")
    for axes in (losses, alarms):
        axes.grid(alpha=0.3)
    alarms.legend(fontsize="small")
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
