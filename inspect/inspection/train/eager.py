"""The exported model as plain PyTorch (eager, or through ``torch.compile``), and the device's dense-math peak, for
benchmarks against the ONNX Runtime core."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inspection.classify.card import CardError, read_card
from inspection.classify.timing import seeded_inputs, time_calls
from inspection.train.models import build_model


def load_eager(model_dir: Path, *, device: str = "cpu") -> nn.Module:
    """The card's network with its softmax, weights from the model folder, in eval mode on ``device``."""
    card, _ = read_card(model_dir)
    if card.torch_weights is None or not (model_dir / card.torch_weights).is_file():
        raise CardError(f"{model_dir}: no torch weights beside the ONNX file; re-export with `inspect export`")
    network = build_model(card.arch, n_classes=len(card.class_names), in_channels=card.input.channels)
    network.load_state_dict(torch.load(model_dir / card.torch_weights, map_location="cpu", weights_only=True))
    return nn.Sequential(network, nn.Softmax(dim=1)).eval().to(device)


def _torch_device(device: str) -> str:
    return "cuda" if device in ("cuda", "trt") else "cpu"


def measure_torch(model_dir: Path, device: str, batch_size: int, seconds: float, precision: str = "fp32",
                  compiled: bool = False) -> dict[str, Any]:
    """``inspect bench``'s PyTorch configurations: same weights, same seeded inputs as the core.

    FP32 on a GPU runs without TF32 (as the core's FP32 does); FP16 is the network in half precision. The input
    crosses to the device and the probabilities back in every call, as in the core. ``compiled`` runs the network
    through ``torch.compile`` (its compile time is left out, and recorded).
    """
    torch_device = _torch_device(device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    model = load_eager(model_dir, device=torch_device)
    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = model.to(dtype)
    compile_s = None
    if compiled:
        started = time.perf_counter()
        model = torch.compile(model)
        with torch.no_grad():
            model(torch.zeros(batch_size, *seeded_inputs(model_dir, 1).shape[1:], device=torch_device, dtype=dtype))
        compile_s = round(time.perf_counter() - started, 1)
    batch = torch.from_numpy(seeded_inputs(model_dir, batch_size))
    if torch_device == "cuda":
        batch = batch.pin_memory()

    def call() -> None:
        with torch.no_grad():
            model(batch.to(torch_device, non_blocking=True).to(dtype)).float().cpu()  # .cpu() waits for the device

    return {**time_calls(call, batch_size=batch_size, seconds=seconds), "precision": precision,
            "torch_version": torch.__version__, **({"compile_s": compile_s} if compiled else {})}


def matmul_peak_gflops(device: str, precision: str, *, size: int = 8192, repeats: int = 10) -> float:
    """The best dense matrix-multiply rate torch reaches on a GPU in ``precision`` (FP32 without TF32): the
    device's practical peak, the yardstick of the core's efficiency there."""
    torch_device = _torch_device(device)
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = torch.float16 if precision == "fp16" else torch.float32
    generator = torch.Generator(device=torch_device).manual_seed(0)
    a = torch.rand(size, size, device=torch_device, dtype=dtype, generator=generator)
    b = torch.rand(size, size, device=torch_device, dtype=dtype, generator=generator)
    a @ b
    best = 0.0
    for _ in range(repeats):
        if torch_device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if torch_device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best
