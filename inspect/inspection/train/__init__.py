"""Training (torch, torchvision, albumentations): the only package that imports torch.

Install with ``pip install -e '.[train]'``. The line never imports this package's training code: it
runs the exported ONNX model through :mod:`inspection.classify`. Importing the package itself loads nothing
heavy (the command line reads :mod:`inspection.train.choices` from it); torch loads with the first use of
``train``, ``TrainConfig``, ``export_model``, ``quantize_int8``, ``convert_fp16``, ``add_checks`` or ``restamp``.
"""

from __future__ import annotations

import importlib
from typing import Any

from inspection.train.choices import ARCHITECTURES, CLASS_WEIGHTINGS

_LAZY = {"TrainConfig": "loop", "TrainingError": "loop", "train": "loop", "ExportError": "export",
         "export_model": "export", "quantize_int8": "export", "convert_fp16": "export",
         "add_checks": "export", "restamp": "export"}
__all__ = ["ARCHITECTURES", "CLASS_WEIGHTINGS", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'inspection.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"inspection.train.{_LAZY[name]}"), name)
