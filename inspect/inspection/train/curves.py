"""Training curves as a picture with axes: losses on one shared scale, validation scores on 0..1."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: a training run may have no display

import matplotlib.pyplot as plt


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
