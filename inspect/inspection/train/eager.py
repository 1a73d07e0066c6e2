"""The exported model as plain PyTorch eager, for benchmarks against the ONNX Runtime core."""

from __future__ import annotations

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


def measure_eager(model_dir: Path, device: str, batch_size: int, seconds: float) -> dict[str, Any]:
    """``inspect bench``'s PyTorch eager configuration: same weights, same seeded inputs as the core."""
    torch_device = "cuda" if device in ("cuda", "trt") else "cpu"
    model = load_eager(model_dir, device=torch_device)
    batch = torch.from_numpy(seeded_inputs(model_dir, batch_size))

    def call() -> None:
        with torch.no_grad():
            model(batch.to(torch_device)).cpu()  # .cpu() waits for the device, like the core's copy out

    return time_calls(call, batch_size=batch_size, seconds=seconds)
