"""Training (torch, torchvision, albumentations): the only package that imports torch.

Install with ``pip install 'wafer-inspect[train]'``. The line never imports this package: it runs the
exported ONNX model through :mod:`inspection.classify`.
"""

from inspection.train.export import ExportError, export_model, quantize_int8
from inspection.train.loop import TrainConfig, TrainingError, train
from inspection.train.models import ARCHITECTURES

__all__ = ["ARCHITECTURES", "ExportError", "TrainConfig", "TrainingError", "export_model", "quantize_int8", "train"]
