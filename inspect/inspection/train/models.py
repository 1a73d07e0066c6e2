"""Network architectures: torchvision's, trained from scratch, and a compact CNN for small patches."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from inspection.train.choices import ARCHITECTURES

# Output channels and convolutions per stage. The large variant spends its extra weights in the last two
# stages (14x14 and 7x7 at a 56 px input), where they cost little time: 4.3x the weights for 1.4x the time.
PATCHNET_STAGES = {
    "patchnet": ((16, 2), (32, 2), (64, 2), (128, 1)),
    "patchnet-l": ((16, 2), (32, 2), (96, 2), (192, 2)),
}


class PatchNet(nn.Module):
    """A compact CNN for small inspection patches (32-128 px): four conv stages, global pooling, one layer."""

    def __init__(self, n_classes: int, in_channels: int, *,
                 stages: tuple[tuple[int, int], ...] = PATCHNET_STAGES["patchnet"]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, (out, convolutions) in enumerate(stages):
            for _ in range(convolutions):
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                           nn.ReLU(inplace=True)]
                channels = out
            if stage < len(stages) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(channels, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _first_conv_to(model: nn.Module, in_channels: int) -> None:
    """Replace the first convolution of a torchvision model so it takes ``in_channels`` (1 for grey)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            replacement = nn.Conv2d(in_channels, module.out_channels, module.kernel_size, module.stride,
                                    module.padding, bias=module.bias is not None)
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], replacement)
            return


def build_model(arch: str, *, n_classes: int, in_channels: int, weights: Path | None = None) -> nn.Module:
    """A freshly initialised network; ``weights`` (a local state dict) initialises the layers whose shapes fit."""
    if arch in PATCHNET_STAGES:
        model: nn.Module = PatchNet(n_classes, in_channels, stages=PATCHNET_STAGES[arch])
    elif arch in ARCHITECTURES:
        import torchvision.models  # 2 s of import that the patchnets, the usual choice, do without

        model = getattr(torchvision.models, arch)(weights=None, num_classes=n_classes)
        if in_channels != 3:
            _first_conv_to(model, in_channels)
    else:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)  # never runs code from the file
        except Exception as exc:  # torch raises pickle, zip and runtime errors alike for a bad file
            raise ValueError(f"{weights}: not a torch state dict ({str(exc).splitlines()[0]})") from None
        state = state.get("model", state)
        own = model.state_dict()
        fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not fitting:
            raise ValueError(f"{weights}: no tensor fits the {arch} network (is it a state dict of this architecture?)")
        model.load_state_dict(fitting, strict=False)
    return model
