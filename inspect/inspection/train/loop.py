"""Training from a labelled folder: deterministic, class-balanced, early-stopped on validation macro-F1,
resumable, then exported to ONNX with its card."""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from inspection.acquire.labelled import LabelledImages, list_labelled_folder, stratified_split
from inspection.classify.card import DetectorSettings, InputSpec, ModelCard, Normalisation
from inspection.evaluate.metrics import classification_report, confusion_matrix
from inspection.train.choices import CLASS_WEIGHT_POWERS, CLASS_WEIGHTINGS
from inspection.train.data import AugmentedImages, augmentation, load_units
from inspection.train.export import export_model
from inspection.train.models import build_model
from inspection.types import InspectionError

log = logging.getLogger("inspection.train")


class TrainingError(InspectionError, ValueError):
    """Training cannot start or go on; the message says why."""


@dataclass(frozen=True)
class TrainConfig:
    folder: Path
    out: Path
    arch: str = "patchnet"
    img_size: int = 64
    colour: str = "gray"
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    device: str = "cpu"
    seed: int = 0
    weights: Path | None = None
    resume: bool = False
    patience: int = 6
    val_fraction: float = 0.2
    good_class: str | None = "good"
    """The defect-free class for the good/defect operating point; None: no operating point."""
    target_recall: float = 0.999
    flips: bool = True
    rot90: bool = True
    augment: str = "camera"
    """``camera`` for inspection images, ``states`` for images of discrete states (wafer maps)."""
    class_weighting: str = "inverse"
    """Loss weight per class: ``inverse`` (1/count), ``sqrt`` (1/sqrt(count): rare classes over-predicted less)
    or ``none``."""
    label_smoothing: float = 0.0
    """Share of each target spread over the other classes: softens labels that annotators disagree on."""
    ema_decay: float | None = None
    """Validate and export an exponential moving average of the weights (per step) instead of the raw weights."""
    task: str = "classification"
    command: str = ""


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _warmup_cosine(total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up over 20% of the steps, then cosine decay to 1%.

    A function of the step count alone, so a resumed run (even with more epochs) continues the schedule.
    """
    warmup = max(1, int(0.2 * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.04 + 0.96 * step / warmup
        done = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * done))

    return factor




def class_weights(counts: np.ndarray, weighting: str) -> np.ndarray:
    """Loss weight per class from the training counts, with mean weight 1 over the samples."""
    if weighting not in CLASS_WEIGHT_POWERS:
        raise TrainingError(f"class weighting {weighting!r}: expected one of {', '.join(CLASS_WEIGHTINGS)}")
    weights = counts.clip(min=1) ** -CLASS_WEIGHT_POWERS[weighting]
    return (weights * counts.sum() / (weights * counts).sum()).astype(np.float32)


def _update_average(averaged: nn.Module, model: nn.Module, decay: float) -> None:
    """One step of the weights' moving average, kept in ``averaged`` (a copy of ``model``); integer buffers
    (batch counts) are copied."""
    with torch.no_grad():
        average = averaged.state_dict()  # the module's own tensors: updating them in place updates the module
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                average[key].mul_(decay).add_(value, alpha=1.0 - decay)
            else:
                average[key].copy_(value)


def _split(data: LabelledImages, config: TrainConfig) -> tuple[LabelledImages, LabelledImages]:
    if (data.split == "train").any():
        train = data.subset(data.split == "train")
        if (data.split == "val").any():
            return train, data.subset(data.split == "val")
        is_val = stratified_split(train.labels, val_fraction=config.val_fraction, seed=config.seed)
        return train.subset(~is_val), train.subset(is_val)
    is_val = stratified_split(data.labels, val_fraction=config.val_fraction, seed=config.seed)
    return data.subset(~is_val), data.subset(is_val)


def loader_workers(device: str) -> int:
    """Processes that augment batches for the training loop: on a GPU enough that the CPU keeps up with it (one
    core left to drive the GPU), on a CPU none (the cores train)."""
    return 0 if device == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))


def _reseed_augmentation(_worker: int) -> None:
    """Each loader process draws its own augmentations: seeded from the loader's generator and its number, so a
    seed still gives the same run."""
    info = torch.utils.data.get_worker_info()
    if info is not None and info.dataset.augment is not None:  # type: ignore[attr-defined]
        info.dataset.augment.set_random_seed(info.seed % 2**32)  # type: ignore[attr-defined]


def mixed_precision(device: torch.device) -> torch.autocast:
    """bfloat16 autocast on a GPU (tensor cores; float32's range, so no loss scaling), off on a CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _evaluate(model: nn.Module, loader: torch.utils.data.DataLoader, loss_fn: nn.Module, device: torch.device,
              class_names: tuple[str, ...]) -> tuple[float, dict[str, Any]]:
    model.eval()
    losses, predictions, labels = [], [], []
    with torch.no_grad(), mixed_precision(device):
        for images, targets in loader:
            logits = model(images.to(device, non_blocking=True))
            losses.append(float(loss_fn(logits.float(), targets.to(device))) * len(targets))
            predictions.append(logits.argmax(1).cpu().numpy())
            labels.append(targets.numpy())
    y_true, y_pred = np.concatenate(labels), np.concatenate(predictions)
    report = classification_report(confusion_matrix(y_true, y_pred, n_classes=len(class_names)),
                                   class_names=class_names)
    return sum(losses) / len(y_true), report


@dataclass(frozen=True)
class Checkpoint:
    """What ``last.pt`` holds after every epoch, so a run resumes exactly where it stopped; ``best.pt`` is the
    same with the best epoch's weights as ``model`` (what :func:`~inspection.train.export.export_model` reads)."""

    model: dict[str, torch.Tensor]
    """The weights after this epoch."""
    best_model: dict[str, torch.Tensor]
    """The weights validated best so far (the moving average's, with EMA)."""
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    generator: torch.Tensor
    """The shuffling generator's state."""
    torch_rng: torch.Tensor
    epoch: int
    best_f1: float
    training: dict[str, Any]
    """The card's ``training`` record: data, counts, history, configuration, versions."""
    card: dict[str, Any]
    """The card's fields known before export: task, architecture, classes, input, normalisation."""
    data: dict[str, Any]
    """The validation images (root, paths, labels) the export evaluates on."""
    average: dict[str, torch.Tensor] | None = None
    """The weights' moving average (``--ema``)."""

    def save(self, path: Path) -> None:
        state = {name: getattr(self, name) for name in self.__dataclass_fields__}
        if self.average is None:
            del state["average"]
        torch.save(state, path)

    def save_best(self, path: Path) -> None:
        state = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in ("best_model",
                                                                                                  "average")}
        torch.save({**state, "model": self.best_model}, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(**{name: state.get(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class _Data:
    """The labelled folder split, read and normalised as training takes it."""

    data: LabelledImages
    data_hash: str
    """Of the folder's files: a resume refuses other data."""
    train_set: LabelledImages
    val_set: LabelledImages
    train_units: Any
    val_units: Any
    class_names: tuple[str, ...]
    good_class: str | None
    spec: InputSpec
    normalisation: Normalisation


@dataclass
class _Run:
    """The model, its optimiser and where training stands: what a checkpoint saves and a resume restores."""

    model: nn.Module
    averaged: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    generator: torch.Generator
    history: list[dict[str, float]] = field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = 0
    first_epoch: int = 1
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)

    def resume(self, checkpoint: Checkpoint) -> None:
        self.model.load_state_dict(checkpoint.model)
        if self.averaged is not None:
            self.averaged.load_state_dict(checkpoint.average or checkpoint.model)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.scheduler.load_state_dict(checkpoint.scheduler)
        self.generator.set_state(checkpoint.generator)
        torch.set_rng_state(checkpoint.torch_rng)
        self.history = checkpoint.training["history"]
        self.best_f1, self.best_epoch = checkpoint.best_f1, checkpoint.training["best_epoch"]
        self.best_weights = checkpoint.best_model
        self.first_epoch = checkpoint.epoch + 1


def _check(config: TrainConfig) -> None:
    """Refuse settings training cannot run with, naming the option."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: torch sees no CUDA device here; use --device cpu")
    if config.epochs < 1:
        raise TrainingError(f"--epochs must be at least 1, got {config.epochs}")
    if config.ema_decay is not None and not 0.0 < config.ema_decay < 1.0:
        raise TrainingError(f"--ema {config.ema_decay}: the decay must lie between 0 and 1 (e.g. 0.999)")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise TrainingError(f"--label-smoothing {config.label_smoothing}: expected a share in [0, 1) (e.g. 0.1)")
    if not 0.0 < config.val_fraction < 1.0:
        raise TrainingError(f"--val-fraction {config.val_fraction}: expected a share between 0 and 1 (e.g. 0.2)")
    if config.weights is not None and not config.weights.is_file():
        raise TrainingError(f"--weights {config.weights}: no such file")


def _read_data(config: TrainConfig) -> _Data:
    """The folder split into train and validation, read at the model's input size, with its normalisation."""
    data = list_labelled_folder(config.folder)
    train_set, val_set = _split(data, config)
    if len(val_set.paths) == 0:
        raise TrainingError(f"{config.folder}: too few images for a validation split (each class needs >= 2)")
    class_names = data.class_names
    good_class = config.good_class if config.good_class in class_names else None
    if good_class is None and config.good_class is not None:
        log.warning("no class named %r: the card gets no good/defect operating point", config.good_class)
    if good_class is not None:
        val_good = int((val_set.labels == class_names.index(good_class)).sum())
        if val_good == 0 or val_good == len(val_set.paths):
            counts = ", ".join(f"{name} {count}" for name, count in data.class_counts().items())
            raise TrainingError(f"{config.folder}: the validation split holds {val_good} {good_class!r} and "
                                f"{len(val_set.paths) - val_good} defect image(s); the good/defect operating point "
                                f"needs both, so {good_class!r} and a defect class each need at least 2 images "
                                f"(found {counts})")
    spec = InputSpec(channels=1 if config.colour == "gray" else 3, height=config.img_size, width=config.img_size)
    train_units = load_units(train_set, spec=spec, label="reading train")
    val_units = load_units(val_set, spec=spec, label="reading val")
    axes = tuple(range(train_units.units.ndim - 1)) if spec.channels == 3 else None
    mean = np.atleast_1d(train_units.units.mean(axis=axes)).astype(float).tolist()
    std = np.atleast_1d(train_units.units.std(axis=axes)).clip(min=1e-3).astype(float).tolist()
    missing = [class_names[i] for i in range(len(class_names)) if not (train_units.labels == i).any()]
    if missing:
        raise TrainingError(f"{config.folder}: no readable training image of class(es) {', '.join(missing)}")
    return _Data(data, data.content_hash(), train_set, val_set, train_units, val_units, tuple(class_names),
                 good_class, spec, Normalisation(mean=mean, std=std))


def _loaders(data: _Data, config: TrainConfig, generator: torch.Generator
             ) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """The augmented, shuffled training batches and the plain validation batches."""
    workers = loader_workers(config.device)
    # On a GPU: the images stay decoded in memory (read once above), loader processes augment the next batches
    # while the GPU trains on this one, and batches cross from pinned memory without blocking.
    on_gpu = {"num_workers": workers, "pin_memory": workers > 0, "persistent_workers": workers > 0,
              **({"prefetch_factor": 4, "worker_init_fn": _reseed_augmentation} if workers else {})}
    train_loader = torch.utils.data.DataLoader(
        AugmentedImages(data.train_units, normalisation=data.normalisation,
                        augment=augmentation(flips=config.flips, rot90=config.rot90, seed=config.seed,
                                             profile=config.augment)),
        batch_size=config.batch_size, shuffle=True, generator=generator, **on_gpu)
    val_loader = torch.utils.data.DataLoader(AugmentedImages(data.val_units, normalisation=data.normalisation,
                                                             augment=None), batch_size=256, shuffle=False, **on_gpu)
    return train_loader, val_loader


def _train_epoch(run: _Run, loader: torch.utils.data.DataLoader, loss_fn: nn.Module, device: torch.device, *,
                 config: TrainConfig, epoch: int) -> tuple[float, int, float]:
    """One pass over the training batches: the mean loss, the images seen and the seconds it took."""
    run.model.train()
    running, seen = torch.zeros((), device=device), 0  # summed on the device: no wait for the GPU per step
    started = time.perf_counter()
    for images, targets in tqdm(loader, total=len(loader), desc=f"epoch {epoch}/{config.epochs}", leave=False,
                                disable=None):
        run.optimizer.zero_grad(set_to_none=True)
        with mixed_precision(device):
            logits = run.model(images.to(device, non_blocking=True))
        loss = loss_fn(logits.float(), targets.to(device, non_blocking=True))
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        if run.averaged is not None and config.ema_decay is not None:
            _update_average(run.averaged, run.model, config.ema_decay)
        running += loss.detach() * len(targets)
        seen += len(targets)
    return float(running) / seen, seen, time.perf_counter() - started  # float() waits for the last step


def _checkpoint(run: _Run, data: _Data, config: TrainConfig, *, epoch: int) -> Checkpoint:
    """Where the run stands after ``epoch``, with the card's training record."""
    training = {
        "data_root": str(data.data.root), "data_hash": data.data_hash,
        "class_counts_train": data.train_set.class_counts(), "class_counts_val": data.val_set.class_counts(),
        "ignored_files": len(data.data.ignored_files),
        "skipped_unreadable": list(data.train_units.skipped + data.val_units.skipped), "epochs_run": epoch,
        "best_epoch": run.best_epoch, "history": run.history, "seed": config.seed, "device": config.device,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "command": config.command, "torch": str(torch.__version__), "torchvision": metadata.version("torchvision"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": sum(p.numel() for p in run.model.parameters()),
    }
    card = {"task": config.task, "arch": config.arch, "class_names": list(data.class_names),
            "input": data.spec.model_dump(), "normalisation": data.normalisation.model_dump(),
            "good_class": data.good_class, "target_recall": config.target_recall}
    validation = {"root": str(data.data.root), "val_paths": [str(p) for p in data.val_units.paths],
                  "val_labels": data.val_units.labels.tolist()}
    return Checkpoint(
        {k: v.cpu() for k, v in run.model.state_dict().items()}, run.best_weights, run.optimizer.state_dict(),
        run.scheduler.state_dict(), run.generator.get_state(), torch.get_rng_state(), epoch, run.best_f1, training,
        card, validation,
        None if run.averaged is None else {k: v.cpu() for k, v in run.averaged.state_dict().items()})


def train(config: TrainConfig, *, detector: DetectorSettings | None = None) -> ModelCard:
    """Train, keep the best epoch by validation macro-F1, export ``model.onnx`` + ``model.json`` into ``out``.

    ``detector``: the candidate settings the crops were cut with, into the card.
    """
    _check(config)
    _seed_everything(config.seed)
    device = torch.device(config.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input shapes: pick each layer's fastest kernel
    data = _read_data(config)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader, val_loader = _loaders(data, config, generator)
    counts = np.bincount(data.train_units.labels, minlength=len(data.class_names)).astype(np.float32)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(class_weights(counts, config.class_weighting)).to(device),
                                  label_smoothing=config.label_smoothing)
    try:
        model = build_model(config.arch, n_classes=len(data.class_names), in_channels=data.spec.channels,
                            weights=config.weights).to(device)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    run = _Run(model, copy.deepcopy(model) if config.ema_decay else None, optimizer,
               torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.epochs * len(train_loader))),
               generator)
    config.out.mkdir(parents=True, exist_ok=True)
    last_path = config.out / "last.pt"
    if config.resume:
        if not last_path.is_file():
            raise TrainingError(f"--resume: no checkpoint {last_path} to resume from")
        resumed = Checkpoint.load(last_path)
        if resumed.training["data_hash"] != data.data_hash:
            raise TrainingError(f"--resume: {config.folder} is not the data {last_path} was trained on (hash differs)")
        run.resume(resumed)
        log.warning("resuming %s at epoch %d (best so far: epoch %d, macro-F1 %.4f)", last_path, run.first_epoch,
                    run.best_epoch, run.best_f1)
    checkpoint = None
    for epoch in range(run.first_epoch, config.epochs + 1):
        if epoch - run.best_epoch > config.patience and run.best_epoch > 0:
            tqdm.write(f"early stop: no better validation macro-F1 for {config.patience} epochs", file=sys.stderr)
            break
        train_loss, seen, train_s = _train_epoch(run, train_loader, loss_fn, device, config=config, epoch=epoch)
        validated = run.model if run.averaged is None else run.averaged  # the average is validated and exported
        val_loss, report = _evaluate(validated, val_loader, loss_fn, device, data.class_names)
        run.history.append({"epoch": epoch, "train_loss": round(train_loss, 5), "val_loss": round(val_loss, 5),
                            "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"],
                            "train_s": round(train_s, 2)})
        tqdm.write(f"epoch {epoch}: train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                   f"val accuracy {report['accuracy']:.4f}  val macro-F1 {report['macro_f1']:.4f}  "
                   f"({seen / train_s:.0f} images/s)", file=sys.stderr)
        if report["macro_f1"] > run.best_f1:
            run.best_f1, run.best_epoch = report["macro_f1"], epoch
            run.best_weights = {k: v.cpu().clone() for k, v in validated.state_dict().items()}
        checkpoint = _checkpoint(run, data, config, epoch=epoch)
        checkpoint.save(last_path)  # it carries the best weights too, so a resumed run can export its best epoch
    if checkpoint is None:  # resumed after its last epoch: export what it holds
        checkpoint = Checkpoint.load(last_path)
    checkpoint.save_best(config.out / "best.pt")  # what export_model reads
    return export_model(config.out, detector=detector)
