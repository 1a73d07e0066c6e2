"""Anomaly models from good images only (``inspect train-anomaly``): a small dilated CNN learns to segment
synthetic defects drawn into good images (:func:`inspection.sim.defects.draw_defects`), is exported to one ONNX
graph that binarises, scores and gates, and gets its threshold from held-out good images at a stated false-alarm
rate.

No labelled defect, no pretrained weights and no download: the supervision is the synthetic defects' masks
(the approach of DRAEM and CutPaste), so a defect type no one labelled is still a departure from what good
images look like. What was tried before this design (a PatchCore-style memory bank of patch features) and how it
compared is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from inspection.acquire.good import GoodImages, read_good_folder
from inspection.classify.anomaly import THRESHOLD_GRID, AnomalyModel
from inspection.classify.card import (
    AnomalySettings,
    InputSpec,
    ModelCard,
    Normalisation,
    Parity,
    Thresholds,
    read_card,
    sha256_of,
)
from inspection.evaluate import anomaly as anomaly_metrics
from inspection.sim.defects import draw_defects, roughen_edges
from inspection.train.curves import save_anomaly_curves
from inspection.train.export import (
    ANOMALY_CHECK_IMAGES,
    OPSET,
    PARITY_TOLERANCE,
    WEIGHTS_FILE,
    ExportError,
    count_flops,
    stamp_metadata,
    write_checks,
)
from inspection.types import InspectionError

__all__ = ["AnomalyNet", "train_anomaly"]

ARCH = "anomaly-dilated-s4"
MAP_STRIDE_PX = 4
BINARISE_AT = 0.5
CROP_PX = 160
"""Training crops: large enough for the widest receptive field (about 120 px), small enough for many a step."""
MIN_SIDE_PX = 32
MAX_EDGE_FLIP = 0.25
"""Training crops get ragged edges, each with a flip chance drawn from 0 to this (see ``roughen_edges``)."""


class TrainingDataError(InspectionError, ValueError):
    """Good images that cannot train an anomaly model (too few, too small); the message names the folder."""


def _block(inputs: int, outputs: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))


class AnomalyNet(nn.Module):
    """Binary image (N x 1 x H x W, values 0 and 1) -> defect logits on a grid of 4 x 4 px cells.

    Two stride-2 convolutions keep a pin-hole's few pixels visible; three dilated convolutions (2, 4, 8) at
    quarter resolution see about 120 px around each cell, enough to tell a cut conductor from its end at a pad.
    """

    def __init__(self, width: int = 48) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _block(1, 16, stride=2), _block(16, 32), _block(32, width, stride=2),
            _block(width, width, dilation=2), _block(width, width, dilation=4), _block(width, width, dilation=8),
            nn.Conv2d(width, 1, 1))

    def forward(self, binary: torch.Tensor) -> torch.Tensor:
        return self.body(binary * 2 - 1)


class _Exported(nn.Module):
    """The graph the line runs: binarise the unit-range image, score every cell, and keep scores only where
    the image has an edge (a defect in a bare board's scan always changes an edge; flat copper or flat
    substrate cannot hold one)."""

    def __init__(self, network: AnomalyNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        binary = (images > BINARISE_AT).to(images.dtype)
        scores = torch.sigmoid(self.network(binary))
        edges = F.max_pool2d(binary, 3, 1, 1) + F.max_pool2d(-binary, 3, 1, 1)
        return scores * F.max_pool2d(edges, MAP_STRIDE_PX, ceil_mode=True)


def _binary(good: GoodImages) -> list[np.ndarray]:
    level = BINARISE_AT * ((1 << good.bit_depth) - 1)
    return [(image > level).astype(np.uint8) for image in good.images]


def _training_batch(binaries: list[np.ndarray], *, crop_px: int, batch: int, rng: np.random.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops (flipped and turned), each with 0 to 3 synthetic defects and ragged edges around them (not
    defects: the targets leave them out); targets on the map's grid."""
    crops, masks = [], []
    for _ in range(batch):
        image = binaries[rng.integers(len(binaries))]
        top = int(rng.integers(0, image.shape[0] - crop_px + 1))
        left = int(rng.integers(0, image.shape[1] - crop_px + 1))
        crop = image[top : top + crop_px, left : left + crop_px]
        crop = crop[::-1] if rng.random() < 0.5 else crop
        crop = crop[:, ::-1] if rng.random() < 0.5 else crop
        crop = np.ascontiguousarray(crop.T if rng.random() < 0.5 else crop)
        drawn, changed = draw_defects(crop, int(rng.integers(0, 4)), rng=rng)
        crops.append(roughen_edges(drawn, flip_fraction=rng.uniform(0.0, MAX_EDGE_FLIP), rng=rng, keep=changed))
        masks.append(changed)
    images = torch.from_numpy(np.stack(crops)[:, None].astype(np.float32))
    targets = F.max_pool2d(torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)), MAP_STRIDE_PX,
                           ceil_mode=True)
    return images, targets


def train_anomaly(good_folder: str | Path, out_dir: str | Path, *, steps: int = 4000, batch: int = 24,
                  held_out_fraction: float = 0.15, false_alarms_per_image: float = 1.0, seed: int = 0,
                  threads: int = 0, device: str = "cpu", init: str | Path | None = None,
                  learning_rate: float | None = None) -> ModelCard:
    """Train an anomaly model from a folder of good images and export it with its card.

    Parameters
    ----------
    good_folder : str or Path
        Good images only, one size, grey (see :func:`inspection.acquire.good.read_good_folder`).
    out_dir : str or Path
        The model folder to write: ``model.onnx``, ``model.json``, ``weights.pt`` and ``training.png``.
    steps : int
        Optimiser steps of ``batch`` crops each.
    batch : int
        Crops per step.
    held_out_fraction : float
        Share of the good images kept out of training to choose the threshold and check parity on (at least 1).
    false_alarms_per_image : float
        The threshold is the lowest whose regions on the held-out good images average at most this many.
    seed : int
        Seeds the split, the crops and the synthetic defects.
    threads : int
        torch's CPU threads (0: one per core).
    device : {"cpu", "cuda"}
        Where the network trains (a GPU in bfloat16); the export and its parity check run on the CPU.
    init : str or Path, optional
        An anomaly model folder whose weights the training starts from (a product's model fine-tuned from the
        generic one); None trains from scratch.
    learning_rate : float, optional
        The peak learning rate of the cosine schedule (None: 2e-3 from scratch, 5e-4 from ``init``).

    Returns
    -------
    ModelCard
        The card written beside the graph.

    Raises
    ------
    GoodFolderError, TrainingDataError
        For a folder that cannot train a model (empty, mixed sizes, colour, too few or too small images), or an
        ``init`` folder that is not an anomaly model with its torch weights.
    ExportError
        When ONNX Runtime does not reproduce the trained network within the parity tolerance.
    """
    good = read_good_folder(good_folder)
    _check_good(good, device=device)
    start, init_sha256 = _initial_weights(Path(init)) if init is not None else (None, None)
    height, width = good.size_hw
    if threads:
        torch.set_num_threads(threads)
    out_dir, rng = Path(out_dir), np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    order = rng.permutation(len(good.paths))
    held_out, fitted = np.split(order, [max(1, round(held_out_fraction * len(order)))])
    held_out, fitted, binaries = np.sort(held_out), np.sort(fitted), _binary(good)
    crop_px = min(CROP_PX, height, width) // MAP_STRIDE_PX * MAP_STRIDE_PX
    learning_rate = learning_rate or (5e-4 if start else 2e-3)
    started = time.perf_counter()
    network, history = _fit([binaries[i] for i in fitted], crop_px=crop_px, steps=steps, batch=batch, rng=rng,
                            device=device, start=start, learning_rate=learning_rate)
    training_s = time.perf_counter() - started
    torch.save(network.state_dict(), out_dir / WEIGHTS_FILE)
    exported = _Exported(network).eval()
    onnx_path = _export_graph(exported, out_dir, height=height, width=width)
    unit_scale = np.float32(1.0 / ((1 << good.bit_depth) - 1))
    held_out_units = [(good.images[i].astype(np.float32) * unit_scale)[None, None] for i in held_out]
    onnx_maps, parity = _parity(exported, onnx_path, held_out_units)
    false_alarms, chosen = _threshold(onnx_maps, image_shape=(height, width), target=false_alarms_per_image)
    training = {"method": "synthetic-defect segmentation (self-supervised on good images)",
                "good_folder": str(good.folder), "data_hash": good.content_hash(), "good_images": len(good.paths),
                "fitted_images": len(fitted), "held_out_images": [good.paths[i].name for i in held_out],
                "init": None if init is None else {"model": str(init), "onnx_sha256": init_sha256},
                "steps": steps, "batch": batch, "learning_rate": learning_rate, "crop_px": crop_px, "seed": seed,
                "seconds": round(training_s, 1),
                "torch": torch.__version__, "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "history": history}
    settings = AnomalySettings(
        map_stride_px=MAP_STRIDE_PX, binarise_at=BINARISE_AT, threshold=float(THRESHOLD_GRID[chosen]),
        target_false_alarms_per_image=false_alarms_per_image,
        val_false_alarms_per_image=round(float(false_alarms[chosen]), 4), val_images=len(held_out),
        val_folder=str(good.folder))
    card = _write_card(exported, onnx_path, good, training=training, settings=settings, parity=parity,
                       false_alarms=false_alarms)
    checked = np.concatenate(held_out_units[:ANOMALY_CHECK_IMAGES])
    write_checks(out_dir, checked, source=f"held-out good images of {good.folder}", count=len(checked))
    AnomalyModel(out_dir)  # the line's loader accepts it: sha256, input name and shape, metadata
    title = f"{ARCH}, {len(fitted)} good images" + (f", fine-tuned from {Path(init).name}" if init else "")
    save_anomaly_curves(history, THRESHOLD_GRID, false_alarms, out_dir / "training.png", title=title,
                        chosen_threshold=settings.threshold, target_false_alarms=false_alarms_per_image)
    return card


def _threshold(score_maps: list[np.ndarray], *, image_shape: tuple[int, int], target: float
               ) -> tuple[np.ndarray, int]:
    """False alarms per held-out good image at each threshold of ``THRESHOLD_GRID``, and the index of the lowest
    threshold within ``target`` (the highest when none is)."""
    false_alarms = np.array([anomaly_metrics.false_alarms_per_image(score_maps, threshold=float(t),
                                                                    stride_px=MAP_STRIDE_PX, image_shape=image_shape)
                             for t in THRESHOLD_GRID])
    within = np.nonzero(false_alarms <= target)[0]
    return false_alarms, int(within[0]) if len(within) else len(THRESHOLD_GRID) - 1


def _check_good(good: GoodImages, *, device: str) -> None:
    """Refuse a folder (or device) an anomaly model cannot be trained from, naming it."""
    height, width = good.size_hw
    if min(height, width) < MIN_SIDE_PX:
        raise TrainingDataError(f"{good.folder}: images of {width}x{height} px; an anomaly model needs at least "
                                f"{MIN_SIDE_PX} px a side")
    if len(good.paths) < 2:
        raise TrainingDataError(f"{good.folder}: {len(good.paths)} image; at least 2 are needed (one is held out "
                                "to choose the threshold)")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingDataError("--device cuda: torch sees no CUDA device here; use --device cpu")


def _initial_weights(model_dir: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The torch weights of an anomaly model folder to start from, checked against this architecture, and its
    graph's sha256."""
    card, _ = read_card(model_dir)
    if card.task != "anomaly" or card.arch != ARCH:
        raise TrainingDataError(f"{model_dir}: a {card.task} model ({card.arch}); --init takes an anomaly model of "
                                f"{ARCH}")
    if card.torch_weights is None or not (model_dir / card.torch_weights).is_file():
        raise TrainingDataError(f"{model_dir}: no torch weights beside the ONNX file ({WEIGHTS_FILE}); --init needs "
                                "them")
    return torch.load(model_dir / card.torch_weights, map_location="cpu", weights_only=True), card.onnx_sha256


def _fit(binaries: list[np.ndarray], *, crop_px: int, steps: int, batch: int, rng: np.random.Generator,
         device: str, start: dict[str, torch.Tensor] | None, learning_rate: float
         ) -> tuple[AnomalyNet, list[dict[str, float]]]:
    """The network trained to segment synthetic defects in crops of good images (on the CPU after), from
    ``start``'s weights where given, and its loss every 50 steps."""
    network = AnomalyNet()
    if start is not None:
        network.load_state_dict(start)
    network = network.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    pos_weight = torch.tensor(5.0, device=device)
    optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # cosine decay to zero over the run
        optimiser, lambda step: 0.5 * (1.0 + np.cos(np.pi * min(step / steps, 1.0))))
    history: list[dict[str, float]] = []
    losses: list[float] = []
    network.train()
    for step in tqdm(range(1, steps + 1), desc="training anomaly model", unit="step", disable=None):
        images, targets = _training_batch(binaries, crop_px=crop_px, batch=batch, rng=rng)
        with autocast:
            logits = network(images.to(device, non_blocking=True))
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets.to(device), pos_weight=pos_weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps:
            history.append({"step": step, "loss": float(np.mean(losses))})
            losses = []
    return network.cpu().eval(), history


def _export_graph(exported: nn.Module, out_dir: Path, *, height: int, width: int) -> Path:
    """The one ONNX graph (dynamic batch), written whole or not at all."""
    onnx_path, partial = out_dir / "model.onnx", out_dir / ".model.onnx.partial"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; parity checks its output
        torch.onnx.export(exported, (torch.zeros(1, 1, height, width),), str(partial), input_names=["images"],
                          output_names=["anomaly_map"], dynamic_axes={"images": {0: "batch"},
                                                                     "anomaly_map": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    os.replace(partial, onnx_path)
    return onnx_path


def _parity(exported: nn.Module, onnx_path: Path, units: list[np.ndarray]) -> tuple[list[np.ndarray], Parity]:
    """ONNX Runtime's score maps of the held-out images, checked against torch's."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_maps, max_abs_diff, agreement = [], 0.0, []
    for unit in tqdm(units, desc="parity and threshold", unit="image", disable=None):
        onnx_map = session.run(["anomaly_map"], {"images": unit})[0]
        with torch.no_grad():
            torch_map = exported(torch.from_numpy(unit)).numpy()
        max_abs_diff = max(max_abs_diff, float(np.abs(onnx_map - torch_map).max()))
        agreement.append(float(((onnx_map >= 0.5) == (torch_map >= 0.5)).mean()))
        onnx_maps.append(onnx_map[0, 0])
    if max_abs_diff > PARITY_TOLERANCE:
        raise ExportError(f"{onnx_path}: ONNX Runtime differs from torch on {len(units)} held-out images: max "
                          f"|d score| {max_abs_diff:.2e} (tolerance {PARITY_TOLERANCE:.0e})")
    return onnx_maps, Parity(samples=len(units), max_abs_diff=max_abs_diff,
                             argmax_agreement=float(np.mean(agreement)), tolerance=PARITY_TOLERANCE)


def _write_card(exported: nn.Module, onnx_path: Path, good: GoodImages, *, training: dict[str, Any],
                settings: AnomalySettings, parity: Parity, false_alarms: np.ndarray) -> ModelCard:
    """The card beside the graph, with the false alarms per held-out image at each threshold tried."""
    height, width = good.size_hw
    spec = InputSpec(name="images", channels=1, height=height, width=width)
    card = ModelCard(
        task="anomaly", arch=ARCH, class_names=["good", "anomaly"], input=spec,
        normalisation=Normalisation(mean=[0.0], std=[1.0]), output_name="anomaly_map",
        thresholds=Thresholds(good_class="good"), opset=OPSET, onnx_sha256=sha256_of(onnx_path), training=training,
        metrics={"val": {"false_alarms_per_image": {f"{t:.3f}": round(float(f), 4)
                                                    for t, f in zip(THRESHOLD_GRID, false_alarms, strict=True)}}},
        parity=parity, flops_per_image=count_flops(exported, spec), torch_weights=WEIGHTS_FILE, anomaly=settings)
    card.onnx_sha256 = stamp_metadata(onnx_path, card)
    card.write(onnx_path.parent)
    return card
