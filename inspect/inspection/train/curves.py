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


def save_per_product_figure(report: dict[str, Any], path: str | Path) -> Path:
    """Draw the per-product protocol's figures: per product, the recall of each defect type at at most the target
    false alarms per board (with its 95% interval), and the image AUROC.

    Parameters
    ----------
    report : dict
        What :func:`inspection.train.per_product.evaluate_per_product` returns (``per_product`` with
        ``at_target``, ``image_auroc`` and their ``ci95``).
    path : str or Path
        The PNG to write.

    Returns
    -------
    Path
        ``path``.
    """
    products = report["per_product"]
    names = list(products)
    kinds = sorted({kind for figures in products.values() for kind in figures["defects"]})
    plt = _pyplot()
    figure, (recalls, aurocs) = plt.subplots(1, 2, figsize=(11.0, 3.8), width_ratios=(3, 1), layout="constrained")
    width = 0.8 / max(1, len(kinds))
    for k, kind in enumerate(kinds):
        values = np.array([products[n]["at_target"].get(f"recall_{kind}", np.nan) for n in names], float)
        intervals = [products[n].get("ci95", {}).get("at_target", {}).get(f"recall_{kind}") for n in names]
        recalls.bar(np.arange(len(names)) + (k - (len(kinds) - 1) / 2) * width, values, width,
                    yerr=_error_bars(values, intervals), capsize=1.5, label=kind)
    target = report["pooled"]["at_target"]["target_false_alarms_per_image"]
    lowest = min((products[n]["at_target"].get(f"recall_{kind}", 1.0) for n in names for kind in kinds), default=1.0)
    recalls.set(xticks=range(len(names)), xticklabels=names, xlabel="product (DeepPCB group)", ylabel="recall",
                ylim=(min(0.5, np.floor(np.nan_to_num(lowest, nan=1.0) * 10) / 10 - 0.1), 1.02),
                title=f"recall per defect type at <= {target:g} false alarms per board")
    recalls.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    recalls.legend(fontsize="x-small", ncols=len(kinds), loc="upper center", bbox_to_anchor=(0.5, -0.3))
    values = np.array([products[n]["image_auroc"] for n in names], float)
    intervals = [products[n].get("ci95", {}).get("image_auroc") for n in names]
    aurocs.bar(range(len(names)), values, yerr=_error_bars(values, intervals), capsize=2, color="tab:grey")
    aurocs.set(xticks=range(len(names)), xticklabels=names, xlabel="product", ylabel="image AUROC",
               ylim=(0.8, 1.005), title="defective vs good boards")
    aurocs.axhline(0.98, color="grey", linestyle=":", linewidth=1)
    for axes in (recalls, aurocs):
        axes.grid(alpha=0.3, axis="y")
        axes.tick_params(axis="x", labelrotation=45)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def _error_bars(values: np.ndarray, intervals: Sequence[Sequence[float] | None]) -> np.ndarray:
    """matplotlib's (2, N) error bars below and above ``values`` from [low, high] intervals (none: 0)."""
    bars = [(v - i[0], i[1] - v) if i else (0.0, 0.0) for v, i in zip(values, intervals, strict=True)]
    return np.nan_to_num(np.array(bars, float).reshape(-1, 2).T)
