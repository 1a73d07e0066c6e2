"""The per-product protocol of ``inspect eval-anomaly --per-product``: one anomaly model per DeepPCB group (a
product), made from the templates of half the group's pairs, judged on the defective boards of the other half.

This is how a line meets a new board design: no defective example, some good boards of that design, a model
trained from them (fine-tuned from the generic model) before the first shift ends. Wiring only: the split is
:func:`inspection.acquire.deeppcb.per_product_split`, training :func:`inspection.train.anomaly.train_anomaly`,
scoring the ``pcb-anomaly`` recipe's chain, the figures :func:`inspection.evaluate.anomaly.pooled_anomaly_report`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from inspection.acquire.deeppcb import PcbPair, per_product_split
from inspection.acquire.good import read_good_folder
from inspection.chain.chain import build_chain
from inspection.chain.pairs import draw_score_maps, score_anomaly_pairs
from inspection.classify.card import CardError, read_card
from inspection.evaluate.anomaly import pooled_anomaly_report
from inspection.recipe import AnomalyStageSettings, load_recipe
from inspection.train.anomaly import train_anomaly
from inspection.train.curves import save_per_product_figure

__all__ = ["evaluate_per_product"]

PICTURES_PER_PRODUCT = 4


def evaluate_per_product(pairs: list[PcbPair], out_dir: str | Path, *, init: str | Path | None, seed: int = 0,
                         max_good_images: int = 50, steps: int = 1000, false_alarms_per_image: float = 1.0,
                         target_false_alarms_per_image: float = 1.0, workers: int = 2, resamples: int = 1000,
                         device: str = "cpu") -> dict[str, Any]:
    """Train one anomaly model per group of ``pairs`` on its good boards and evaluate it on its test boards.

    Writes, under ``out_dir``: per group ``GROUP/good/`` (links to, or copies of, the good templates),
    ``GROUP/model/`` (the model, its card and ``training.png``, the threshold's picture) and ``GROUP/maps/`` (test
    boards with their score maps); ``per-product.png`` (recall per defect type and AUROC per group) and
    ``report.json``. A group's model already there, trained on the same images with the same settings, is reused,
    so an interrupted run resumes.

    Parameters
    ----------
    pairs : list of PcbPair
        The pairs of the groups to evaluate.
    out_dir : str or Path
        The folder to write.
    init : str or Path, optional
        The anomaly model every product's model is fine-tuned from (None: trained from scratch).
    seed : int
        Seeds the split and the training.
    max_good_images : int
        The most good images a product's model is trained from.
    steps : int
        Optimiser steps per product.
    false_alarms_per_image : float
        The card's threshold allows this many false alarms per held-out good image of the product.
    target_false_alarms_per_image : float
        The second operating point, on the test boards.
    workers : int
        Boards scored at once.
    resamples : int
        Bootstrap resamples of the intervals.
    device : {"cpu", "cuda"}
        Where the models train.

    Returns
    -------
    dict
        ``protocol`` (the settings), ``pooled`` and ``per_product`` (group -> figures, ``training`` and speed),
        as written to ``report.json``.
    """
    out_dir = Path(out_dir)
    split = per_product_split(pairs, seed=seed, max_good_images=max_good_images)
    products, training = [], {}
    for group, (good_pairs, test_pairs) in split.items():
        good_dir = _good_folder(out_dir / group / "good", good_pairs)
        model_dir = out_dir / group / "model"
        if not _trained_as_asked(model_dir, good_dir, init=init, seed=seed, steps=steps,
                                 false_alarms_per_image=false_alarms_per_image):
            train_anomaly(good_dir, model_dir, steps=steps, seed=seed, init=init, device=device,
                          false_alarms_per_image=false_alarms_per_image)
        recipe = load_recipe("pcb-anomaly").model_copy(update={"anomaly": AnomalyStageSettings(
            model=str(model_dir), device="cpu", max_batch=8)})
        with build_chain(recipe) as chain:
            boards, ms_per_image = score_anomaly_pairs(chain, test_pairs, workers=workers)
        draw_score_maps(out_dir / group / "maps", test_pairs[:PICTURES_PER_PRODUCT], boards)
        products.append(boards)
        card, _ = read_card(model_dir)
        assert card.anomaly is not None  # the chain loaded it as an anomaly model
        training[group] = {"ms_per_image": round(ms_per_image, 2), "model": str(model_dir),
                           "model_sha256": card.onnx_sha256, "training": {
                               "good_images": card.training["good_images"],
                               "fitted_images": card.training["fitted_images"],
                               "held_out_images": len(card.training["held_out_images"]),
                               "seconds": card.training["seconds"],
                               "val_false_alarms_per_image": card.anomaly.val_false_alarms_per_image}}
    report = pooled_anomaly_report(products, names=list(split), resamples=resamples,
                                   target_false_alarms_per_image=target_false_alarms_per_image)
    for group, figures in report["per_product"].items():
        figures.update(training[group])
    report = {"protocol": {"seed": seed, "max_good_images": max_good_images, "steps": steps,
                           "init": None if init is None else str(init),
                           "false_alarms_per_image": false_alarms_per_image}, **report}
    save_per_product_figure(report, out_dir / "per-product.png")
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _good_folder(folder: Path, good_pairs: list[PcbPair]) -> Path:
    """``folder`` holding exactly the good pairs' templates (links where the file system allows, else copies)."""
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for pair in good_pairs:
        target = folder / pair.template_path.name
        try:
            os.symlink(pair.template_path.resolve(), target)
        except OSError:  # no symbolic links here (Windows without the privilege)
            shutil.copyfile(pair.template_path, target)
    return folder


def _trained_as_asked(model_dir: Path, good_dir: Path, *, init: str | Path | None, seed: int, steps: int,
                      false_alarms_per_image: float) -> bool:
    """Whether ``model_dir`` holds a model trained on ``good_dir``'s images with these settings."""
    try:
        card, _ = read_card(model_dir)
    except (CardError, OSError):
        return False
    training, settings = card.training or {}, card.anomaly
    init_sha256 = None if init is None else read_card(init)[0].onnx_sha256
    return (settings is not None and settings.target_false_alarms_per_image == false_alarms_per_image
            and training.get("data_hash") == read_good_folder(good_dir).content_hash()
            and training.get("steps") == steps and training.get("seed") == seed
            and (training.get("init") or {}).get("onnx_sha256") == init_sha256)

