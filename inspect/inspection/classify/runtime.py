"""ONNX Runtime sessions: execution providers chosen from what is present, session options, IO binding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from inspection.classify.card import CardError, check_onnx_metadata, read_card
from inspection.types import InspectionError

Device = Literal["auto", "cpu", "cuda", "trt"]
_PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_OPTIMISATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class DeviceError(InspectionError, RuntimeError):
    """The requested device has no ONNX Runtime provider here; the message lists those present."""


def providers_for(device: Device) -> list[str]:
    """ONNX Runtime's execution providers for ``device``, best first.

    Parameters
    ----------
    device : {"cpu", "cuda", "trt", "auto"}
        ``auto`` takes the best present: TensorRT, CUDA, then CPU.

    Returns
    -------
    list of str
        Provider names, ending with the CPU provider as the fallback for nodes the others cannot run.

    Raises
    ------
    DeviceError
        When the device's provider is not in this ONNX Runtime (the providers present are listed).
    """
    present = ort.get_available_providers()
    if device == "auto":
        return [p for p in _PROVIDERS["trt"] if p in present]
    wanted = _PROVIDERS[device][0]
    if wanted not in present:
        raise DeviceError(f"--device {device}: ONNX Runtime here has no {wanted} (present: {', '.join(present)}); "
                          "GPU stations install onnxruntime-gpu")
    return [p for p in _PROVIDERS[device] if p in present]


@dataclass(frozen=True)
class SessionSettings:
    intra_op_threads: int = 0
    """Threads inside one operator (0: ONNX Runtime's default, one per core)."""
    inter_op_threads: int = 0
    optimisation: Literal["disable", "basic", "extended", "all"] = "all"
    memory_arena: bool = True
    spinning: bool = True
    """Whether ONNX Runtime's idle threads spin waiting for the next call (fastest back-to-back calls); off where
    other threads (a line's inspection workers) need the cores between batches."""

    def options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.graph_optimization_level = _OPTIMISATION[self.optimisation]
        options.enable_cpu_mem_arena = self.memory_arena
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return options


class Classifier:
    """An exported model and its card, run on ONNX Runtime.

    On CUDA, ``predict`` binds its input and output through IO binding, so the batch crosses to the device
    once and the probabilities once, with no intermediate host copies.
    """

    def __init__(self, model_dir: str | Path, *, precision: Literal["fp32", "int8"] = "fp32",
                 device: Device = "cpu", settings: SessionSettings | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.card, self.onnx_path = read_card(self.model_dir, precision=precision)
        self.providers = providers_for(device)
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), (settings or SessionSettings()).options(),
                                                providers=self.providers)
        except Exception as exc:  # ONNX Runtime raises its own exception types for a broken graph
            raise CardError(f"{self.onnx_path}: ONNX Runtime cannot load it: {exc}") from None
        inputs = self.session.get_inputs()
        spec = self.card.input
        expected = [spec.channels, spec.height, spec.width]
        if len(inputs) != 1 or inputs[0].name != spec.name or list(inputs[0].shape[1:]) != expected:
            found = ", ".join(f"{i.name}{i.shape}" for i in inputs)
            raise CardError(f"{self.onnx_path}: input {found} does not match the card's "
                            f"{spec.name}[batch, {', '.join(map(str, expected))}]")
        if not isinstance(inputs[0].shape[0], str):
            raise CardError(f"{self.onnx_path}: batch axis is fixed at {inputs[0].shape[0]}; expected a dynamic one")
        check_onnx_metadata(self.card, self.session.get_modelmeta().custom_metadata_map, path=self.onnx_path)
        self.on_cuda = self.session.get_providers()[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")

    @property
    def class_names(self) -> list[str]:
        return self.card.class_names

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N x classes) of a prepared NCHW float32 batch."""
        if not self.on_cuda:
            return self.session.run([self.card.output_name], {self.card.input.name: batch})[0]
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.card.input.name, ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0))
        binding.bind_output(self.card.output_name, "cuda", 0)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def defect_scores(self, probabilities: np.ndarray) -> np.ndarray:
        """1 - p(good) per row; needs a card with a good class."""
        good = self.card.good_index
        if good is None:
            raise CardError(f"{self.model_dir}: the card names no good class, so there is no defect score")
        return 1.0 - probabilities[:, good]
