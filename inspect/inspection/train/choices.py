"""What training can be asked for, without torch: the command line lists these without loading the training code."""

from __future__ import annotations

ARCHITECTURES = ("patchnet", "patchnet-l", "resnet18", "mobilenet_v3_small", "efficientnet_b0")
"""The networks :func:`inspection.train.models.build_model` builds."""
CLASS_WEIGHT_POWERS = {"inverse": 1.0, "sqrt": 0.5, "none": 0.0}
"""Each class weighting of the loss as the power of 1/count."""
CLASS_WEIGHTINGS = tuple(CLASS_WEIGHT_POWERS)
