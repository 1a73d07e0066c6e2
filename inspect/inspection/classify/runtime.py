"""ONNX Runtime sessions: execution providers chosen from what is present, session options, and the GPU path
(device-resident IO binding per batch shape, CUDA graphs, TensorRT with its engine cache, pinned host memory)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import itertools
import json
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeVar

import numpy as np

from inspection.classify.card import (
    DEFAULT_CHECK_TOLERANCE,
    CardError,
    Normalisation,
    check_onnx_metadata,
    read_checks,
    read_model,
)
from inspection.classify.prepare import normalisation_constants, normalise, prepare_batch
from inspection.classify.timing import cpu_description, nvidia_gpus
from inspection.types import InspectionError, Layout

try:
    import onnxruntime as ort
except ImportError:  # neither build is installed: the commands that run no model still work, the others say why
    ort = None

Device = Literal["auto", "cpu", "cuda", "trt"]
Precision = Literal["fp32", "fp16", "int8"]
INSTALL_ADVICE = "pip install -e '.[cpu]', or -e '.[gpu]' on a CUDA station (README, GPU stations)"
_PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""On a GPU a batch is padded to the next of these sizes: a handful of shapes, each with its cuDNN algorithms
chosen once, its buffers bound once and (with CUDA graphs) its kernels captured once. A larger batch runs in
chunks of the largest."""
TRT_CACHE_FOLDER = "trt-cache"
WARM_UP_RUNS = 4

T = TypeVar("T")


class DeviceError(InspectionError, RuntimeError):
    """The requested device has no ONNX Runtime provider here; the message lists those present."""


class VariantCheckError(CardError):
    """A model variant or device that does not reproduce the card's check outputs on this machine (or cannot be
    checked: a card without a check set); the message names the variant, the device and the disagreement."""


def onnxruntime() -> ModuleType:
    """The imported ONNX Runtime module, or a DeviceError saying how to install one."""
    if ort is None:
        raise DeviceError(f"no ONNX Runtime is installed here: {INSTALL_ADVICE}")
    return ort


TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10")
"""What ONNX Runtime's TensorRT provider loads when a session starts (TensorRT 10); without them the provider is
listed but every session falls back to CUDA."""
TENSORRT_ADVICE = ("pip install -e '.[trt]' (TensorRT's runtime libraries as pip packages; README, GPU "
                   "stations)")


@functools.cache
def tensorrt_libraries() -> str | None:
    """Where TensorRT's libraries were found and loaded: the system's library path, or the ``tensorrt_libs``
    folder that NVIDIA's ``tensorrt-cu13-libs`` wheel installs (loaded by full path, so that ONNX Runtime's
    provider finds them by name already in the process); None where they are absent."""
    with contextlib.suppress(OSError):
        ctypes.CDLL(TENSORRT_LIBRARIES[0], mode=ctypes.RTLD_GLOBAL)
        return "the system's library path"
    spec = importlib.util.find_spec("tensorrt_libs")
    folder = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
    if folder is None or not (folder / TENSORRT_LIBRARIES[0]).is_file():
        return None
    try:
        for name in TENSORRT_LIBRARIES:
            if (folder / name).is_file():
                ctypes.CDLL(str(folder / name), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None
    return str(folder)


def providers_for(device: Device) -> list[str]:
    """ONNX Runtime's execution providers for ``device``, best first.

    Parameters
    ----------
    device : {"cpu", "cuda", "trt", "auto"}
        ``auto`` takes the best present: TensorRT (where its libraries are installed too), CUDA, then CPU.

    Returns
    -------
    list of str
        Provider names, ending with the CPU provider as the fallback for nodes the others cannot run.

    Raises
    ------
    DeviceError
        When the device's provider is not in this ONNX Runtime (the providers present are listed), or is listed
        without the libraries it needs (TensorRT).
    """
    present = onnxruntime().get_available_providers()
    if "TensorrtExecutionProvider" in present and device in ("trt", "auto") and tensorrt_libraries() is None:
        if device == "trt":
            raise DeviceError(f"--device trt: ONNX Runtime lists TensorrtExecutionProvider but TensorRT's "
                              f"{TENSORRT_LIBRARIES[0]} is not installed: {TENSORRT_ADVICE}")
        present = [p for p in present if p != "TensorrtExecutionProvider"]
    if device == "auto":
        return [p for p in _PROVIDERS["trt"] if p in present]
    wanted = _PROVIDERS[device][0]
    if wanted not in present:
        raise DeviceError(f"--device {device}: ONNX Runtime here has no {wanted} (present: {', '.join(present)}); "
                          "a GPU station installs the GPU build instead of the CPU one: pip uninstall -y onnxruntime "
                          "&& pip install -e '.[gpu]' (README, GPU stations)")
    return [p for p in _PROVIDERS[device] if p in present]


@dataclass(frozen=True)
class Tuning:
    """One way of running a model on its provider: what ``inspect bench --tune`` compares on the machine at hand,
    and what a session is built with."""

    name: str
    cuda_options: tuple[tuple[str, str], ...] = ()
    """CUDA provider options (cuDNN's algorithm search, the convolutions' layout)."""
    optimisation: Literal["disable", "basic", "extended", "all"] = "all"
    """ONNX Runtime's graph optimisation level; on a CPU, ``all`` adds the blocked NCHWc layout."""
    lanes: int = 1
    """On a GPU, how many sessions of the model take a large batch's chunks side by side, each on its own CUDA
    stream, so that one chunk's host copies overlap another's kernels (on a CPU the cores are already shared by
    one session's threads: always 1)."""


_HEURISTIC_NHWC = (("cudnn_conv_algo_search", "HEURISTIC"), ("prefer_nhwc", "1"))
_HEURISTIC_NCHW = (("cudnn_conv_algo_search", "HEURISTIC"), ("prefer_nhwc", "0"))
TUNINGS: dict[str, tuple[Tuning, ...]] = {
    "CUDAExecutionProvider": (
        Tuning("heuristic-nhwc", _HEURISTIC_NHWC),
        Tuning("heuristic-nchw", _HEURISTIC_NCHW),
        Tuning("heuristic-nchw-2lanes", _HEURISTIC_NCHW, lanes=2),
        Tuning("heuristic-nhwc-4lanes", _HEURISTIC_NHWC, lanes=4),
    ),
    "CPUExecutionProvider": (Tuning("nchwc", optimisation="all"), Tuning("nchw", optimisation="extended")),
    "TensorrtExecutionProvider": (Tuning("tensorrt"),),
}
"""The candidates per provider. The TensorRT provider tunes its own engine (its timing cache). On the H200
(2026-12-04, die and PCB classifiers) cuDNN's exhaustive search lost to its heuristic by 1.3-4.4x at every batch
size, and 2 NHWC lanes lost to 4 (FP16) and to 2 NCHW lanes (FP32): none of them is a candidate."""
DEFAULT_TUNING: dict[tuple[str, str], str] = {
    ("CUDAExecutionProvider", "fp16"): "heuristic-nhwc-4lanes",
    ("CUDAExecutionProvider", "fp32"): "heuristic-nchw-2lanes",
}
"""Where nothing was measured on this machine: the winners of ``inspect bench --tune`` on an H200 (2026-12-04,
die and PCB classifiers, two runs). cuDNN's heuristic beat its exhaustive search by 1.3-4.4x; NHWC doubled FP16
(tensor cores take NHWC) while halving FP32; four lanes took FP16 from 203,000 to 289,000 images/s (die, batch
4,096) and from 81,000 to 172,000 (PCB, 1,024). Anything else: the provider's first candidate."""


def tuning_cache_path() -> Path:
    """The file ``inspect bench --tune`` records each machine's winners in: ``$WAFER_INSPECT_TUNING`` or
    ``tuning.json`` in the user's cache folder."""
    if os.environ.get("WAFER_INSPECT_TUNING"):
        return Path(os.environ["WAFER_INSPECT_TUNING"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wafer-inspect" / "tuning.json"


def tuning_key(onnx_sha256: str, provider: str) -> str:
    """What a measured winner holds for: this ONNX file, on this provider, on this device (the GPU's or CPU's
    name), with this ONNX Runtime."""
    gpus = nvidia_gpus()
    where = gpus[0]["name"] if provider != "CPUExecutionProvider" and gpus else cpu_description()
    return f"{onnx_sha256[:16]} {provider} {where} onnxruntime {onnxruntime().__version__}"


def read_tuning_cache() -> dict[str, Any]:
    """The recorded winners (an unreadable cache counts as empty: it is a cache, measured again by --tune)."""
    try:
        cache = json.loads(tuning_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def record_tuning(onnx_sha256: str, provider: str, winner: str, *, measured: dict[str, Any]) -> Path:
    """Record ``winner`` as the tuning of this ONNX file on this provider and device (atomically)."""
    path = tuning_cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    cache = read_tuning_cache()
    cache[tuning_key(onnx_sha256, provider)] = {"tuning": winner, **measured}
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)
    return path


def resolve_tuning(provider: str, precision: str, onnx_sha256: str, *, requested: str | None = None
                   ) -> tuple[Tuning, str]:
    """The tuning a session runs with, and where it came from: the one asked for, else the winner measured on
    this machine (``inspect bench --tune``), else the default for the provider and precision."""
    candidates = {tuning.name: tuning for tuning in TUNINGS.get(provider, (Tuning("default"),))}
    if requested is not None:
        if requested not in candidates:
            raise DeviceError(f"tuning {requested!r} is not one of {provider}'s: {', '.join(candidates)}")
        return candidates[requested], "asked for"
    measured = read_tuning_cache().get(tuning_key(onnx_sha256, provider), {}).get("tuning")
    if measured in candidates:
        return candidates[measured], f"measured here ({tuning_cache_path()})"
    default = DEFAULT_TUNING.get((provider, precision), next(iter(candidates)))
    return candidates[default], "default"


@dataclass(frozen=True)
class SessionSettings:
    intra_op_threads: int = 0
    """Threads inside one operator (0: ONNX Runtime's default, one per core)."""
    inter_op_threads: int = 0
    optimisation: Literal["disable", "basic", "extended", "all"] | None = None
    """None: the tuning's (``resolve_tuning``)."""
    memory_arena: bool = True
    spinning: bool = True
    """Whether ONNX Runtime's idle threads spin waiting for the next call (fastest back-to-back calls); off where
    other threads (a line's inspection workers) need the cores between batches."""
    cuda_graph: bool = False
    """On the CUDA provider: capture each batch bucket's kernels as a CUDA graph on its first calls and replay it
    after, one launch instead of one per kernel (ONNX Runtime allows it when every node runs on the GPU; the
    TensorRT provider runs without)."""
    tuning: str | None = None
    """A candidate of ``TUNINGS`` by name; None: the winner measured on this machine, else the default."""

    def options(self, tuning: Tuning) -> Any:
        levels = onnxruntime().GraphOptimizationLevel
        options = onnxruntime().SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.graph_optimization_level = {
            "disable": levels.ORT_DISABLE_ALL, "basic": levels.ORT_ENABLE_BASIC,
            "extended": levels.ORT_ENABLE_EXTENDED, "all": levels.ORT_ENABLE_ALL}[
            self.optimisation or tuning.optimisation]
        options.enable_cpu_mem_arena = self.memory_arena
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return options


def engine_cache_folder(model_dir: Path, onnx_sha256: str) -> Path:
    """Where TensorRT keeps the engines it builds for a model: ``trt-cache/`` in the model's folder, or, where
    that folder is read-only (a model installed with the package), a folder named after the ONNX file's hash
    in the user's cache."""
    beside = model_dir / TRT_CACHE_FOLDER
    with contextlib.suppress(OSError):
        beside.mkdir(exist_ok=True)
    if beside.is_dir() and os.access(beside, os.W_OK):
        return beside
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wafer-inspect" / "trt" / (
        f"{model_dir.name}-{onnx_sha256[:12]}")
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _provider_options(provider: str, *, precision: Precision, cuda_graph: bool, input_name: str,
                      input_shape: list[int], cache: Path | None, tuning: Tuning) -> dict[str, str]:
    if provider == "CUDAExecutionProvider":
        # FP32 stays FP32: TF32 tensor cores would round the convolutions' inputs to 10 mantissa bits.
        return {"device_id": "0", "use_tf32": "0", "enable_cuda_graph": "1" if cuda_graph else "0",
                **dict(tuning.cuda_options)}
    if provider == "TensorrtExecutionProvider":
        assert cache is not None
        return {"device_id": "0", "trt_fp16_enable": "1" if precision == "fp16" else "0",
                "trt_engine_cache_enable": "1", "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": "1", "trt_timing_cache_path": str(cache),
                # No CUDA graphs here: the TensorRT provider captures one graph, not one per batch size.
                # One engine for every batch of 1 to the largest bucket (a dynamic batch axis needs a profile).
                **{f"trt_profile_{name}_shapes": f"{input_name}:" + "x".join(map(str, [batch, *input_shape]))
                   for name, batch in (("min", 1), ("opt", 256), ("max", BATCH_BUCKETS[-1]))}}
    return {}


@functools.cache
def _cuda_runtime() -> ctypes.CDLL | None:
    """The CUDA runtime ONNX Runtime loaded (found by its soname), or None where there is none."""
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so", "cudart64_13.dll", "cudart64_12.dll"):
        try:
            runtime = ctypes.CDLL(name)
        except OSError:
            continue
        runtime.cudaHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
        runtime.cudaFreeHost.argtypes = [ctypes.c_void_p]
        return runtime
    return None


def _pinned_array(shape: tuple[int, ...], dtype: type[np.generic] = np.float32) -> tuple[np.ndarray, bool]:
    """An array of ``shape`` and ``dtype``, and whether it is page-locked: memory from the CUDA runtime's
    ``cudaHostAlloc``, so a batch crosses to the GPU by DMA instead of through a staging copy; plain memory where
    no CUDA runtime can be found."""
    runtime = _cuda_runtime()
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if runtime is not None:
        pointer = ctypes.c_void_p()
        if runtime.cudaHostAlloc(ctypes.byref(pointer), size, 0) == 0 and pointer.value:
            buffer = (ctypes.c_uint8 * size).from_address(pointer.value)
            array = np.frombuffer(buffer, dtype).reshape(shape)
            weakref.finalize(array, runtime.cudaFreeHost, pointer)
            return array, True
    return np.empty(shape, dtype), False


NORMALISE_GRAPH = Path(__file__).with_name("normalise_u8.onnx")
"""The pre-step that turns uint8 pixels into the network's input on the device (made by
``inspection.train.export.normalise_graph``)."""


@dataclass
class _Slot:
    """One batch bucket's device buffers, bound once: the network's input and output, the host buffer a batch is
    copied from, and (made on the first uint8 batch) the pixels' own device buffer and the pre-step's binding."""

    inputs: Any
    outputs: Any
    binding: Any
    host: np.ndarray
    options: Any
    pixels: tuple[Any, Any, np.ndarray] | None = None
    runs: int = 0
    """Runs so far: with CUDA graphs, the first ``WARM_UP_RUNS`` include the capture."""


class _BoundBatches:
    """The GPU path of ``Classifier.predict``: per batch bucket, an input and an output tensor that live on the
    device and stay bound (IO binding), filled from a host buffer of the same shape; with CUDA graphs, each
    bucket is its own graph (``gpu_graph_id``). uint8 batches cross as uint8 and are normalised on the device by
    a second session (``NORMALISE_GRAPH``) whose output is the network's bound input."""

    def __init__(self, session: Any, *, input_name: str, output_name: str, input_shape: tuple[int, ...],
                 cuda_graph: bool, device: str = "cuda", providers: list[Any] | None = None,
                 normalisation: Normalisation | None = None) -> None:
        self.session, self.input_name, self.output_name, self.device = session, input_name, output_name, device
        self.input_shape, self.cuda_graph = input_shape, cuda_graph
        self.providers, self.normalisation = providers or ["CPUExecutionProvider"], normalisation
        self.lock = threading.RLock()  # one batch at a time through the shared buffers (``_Lanes`` holds it too)
        # One row's output shape (classes, or an anomaly model's score map), from one plain call.
        probe, uncaptured = np.zeros((1, *input_shape), np.float32), onnxruntime().RunOptions()
        uncaptured.add_run_config_entry("gpu_graph_id", "-1")  # -1: no CUDA graph for this call
        self.output_shape: tuple[int, ...] = session.run([output_name], {input_name: probe}, uncaptured)[0].shape[1:]
        self.slots: dict[int, _Slot] = {}
        self.floor = 1
        """Rows every batch is padded to at least (``_Lanes.warm_up``)."""
        self.pinned = False
        self._pre_step: tuple[Any, dict[str, Any]] | None = None

    def _slot(self, size: int) -> _Slot:
        if size not in self.slots:
            runtime = onnxruntime()
            tensor = runtime.OrtValue.ortvalue_from_shape_and_type
            inputs = tensor((size, *self.input_shape), np.float32, self.device, 0)
            outputs = tensor((size, *self.output_shape), np.float32, self.device, 0)
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(self.input_name, inputs)
            binding.bind_ortvalue_output(self.output_name, outputs)
            options = runtime.RunOptions()
            if self.cuda_graph:
                options.add_run_config_entry("gpu_graph_id", str(BATCH_BUCKETS.index(size) + 1))
            host, self.pinned = (_pinned_array((size, *self.input_shape)) if self.device == "cuda" else
                                 (np.empty((size, *self.input_shape), np.float32), False))
            self.slots[size] = _Slot(inputs, outputs, binding, host, options)
        return self.slots[size]

    def _pixels(self, size: int, slot: _Slot) -> tuple[Any, Any, np.ndarray]:
        """The bucket's uint8 device buffer, its pre-step binding (output: the network's bound input) and host
        buffer, made on first use."""
        if slot.pixels is None:
            runtime = onnxruntime()
            if self._pre_step is None:
                assert self.normalisation is not None
                session = runtime.InferenceSession(str(NORMALISE_GRAPH), providers=self.providers)
                mean, inv_std = normalisation_constants(self.normalisation)
                constants = {name: runtime.OrtValue.ortvalue_from_numpy(value.reshape(1, -1, 1, 1), self.device, 0)
                             for name, value in (("mean", mean), ("inv_std", inv_std))}
                self._pre_step = session, constants
            session, constants = self._pre_step
            pixels = runtime.OrtValue.ortvalue_from_shape_and_type((size, *self.input_shape), np.uint8,
                                                                   self.device, 0)
            binding = session.io_binding()
            binding.bind_ortvalue_input("pixels", pixels)
            for name, value in constants.items():
                binding.bind_ortvalue_input(name, value)
            binding.bind_ortvalue_output("images", slot.inputs)
            host = (_pinned_array((size, *self.input_shape), np.uint8)[0] if self.device == "cuda" else
                    np.empty((size, *self.input_shape), np.uint8))
            slot.pixels = (pixels, binding, host)
        return slot.pixels

    def bucket(self, count: int) -> int:
        """The bucket a batch of ``count`` rows runs at: the smallest that holds it, and at least ``floor``."""
        return next(bucket for bucket in BATCH_BUCKETS if bucket >= max(min(count, BATCH_BUCKETS[-1]), self.floor))

    def run(self, batch: np.ndarray, *, unit_scale: float | None = None) -> np.ndarray:
        """Outputs of a float32 batch, or of a uint8 one (``unit_scale``: 1 / (2**bit_depth - 1))."""
        largest = BATCH_BUCKETS[-1]
        if len(batch) > largest:
            return np.concatenate([self.run(batch[start : start + largest], unit_scale=unit_scale)
                                   for start in range(0, len(batch), largest)])
        count = len(batch)
        size = self.bucket(count)
        with self.lock:
            slot = self._slot(size)
            if unit_scale is None:
                slot.host[:count] = batch
                slot.host[count:] = 0.0  # padding rows: computed, never returned
                slot.inputs.update_inplace(slot.host)
            else:
                pixels, binding, host = self._pixels(size, slot)
                host[:count] = batch
                host[count:] = 0
                pixels.update_inplace(host)
                binding.bind_cpu_input("unit_scale", np.array([unit_scale], np.float32))
                self._pre_step[0].run_with_iobinding(binding)  # type: ignore[index]
            self.session.run_with_iobinding(slot.binding, slot.options)
            slot.runs += 1
            # A copy: on the CPU numpy() is a view of the bound buffer, which the next batch overwrites.
            return np.array(slot.outputs.numpy()[:count])

    def replay(self, count: int) -> None:
        """Run the bucket of ``count`` rows on what its buffers hold, with no host copy either way: the device's
        share of a call."""
        with self.lock:
            slot = self._slot(self.bucket(count))
            self.session.run_with_iobinding(slot.binding, slot.options)
            slot.runs += 1
            slot.binding.synchronize_outputs()

    def settled(self, count: int) -> bool:
        """Whether the bucket of ``count`` rows is past its capture (always, without CUDA graphs)."""
        if not self.cuda_graph:
            return True
        slot = self.slots.get(self.bucket(count))
        return slot is not None and slot.runs >= WARM_UP_RUNS


class _Lanes:
    """The GPU path: one or more sessions of the model (``Tuning.lanes``), each run only from its own thread.

    A batch of ``SPLIT_FROM`` rows or more is cut into one chunk per lane (at most the largest bucket each), run
    side by side (ONNX Runtime releases the GIL while it runs, and each session has its own CUDA stream); a
    smaller batch goes to the next lane in turn. A lane's own thread matters on CUDA: ONNX Runtime keeps cuDNN
    and cuBLAS handles per thread and creates them on a thread's first run, which fails inside a CUDA graph's
    capture (seen on the H200 when chunks moved between pool threads: "operation not permitted when stream is
    capturing"); and a capture holds every lane, since another lane's copy to the device would break it too.
    """

    SPLIT_FROM = 64
    """Below this, a batch's compute is a few kernel launches, less than handing chunks to threads costs."""

    def __init__(self, lanes: list[_BoundBatches]) -> None:
        self.lanes = lanes
        self.threads = [ThreadPoolExecutor(1, thread_name_prefix=f"lane{index}") for index in range(len(lanes))]
        self._turn = itertools.cycle(range(len(lanes)))

    @property
    def pinned(self) -> bool:
        return all(lane.pinned for lane in self.lanes)

    def _split(self, count: int) -> bool:
        return len(self.lanes) > 1 and count >= self.SPLIT_FROM

    def _chunk(self, count: int) -> int:
        return min(BATCH_BUCKETS[-1], -(-count // (len(self.lanes) if self._split(count) else 1)))

    def _on(self, index: int, count: int, call: Callable[[], T]) -> Future[T]:
        """``call`` (a run of ``count`` rows) on lane ``index``'s thread."""
        lane = self.lanes[index]

        def held() -> T:
            if len(self.lanes) == 1 or lane.settled(count):
                return call()
            with contextlib.ExitStack() as stack:
                for each in self.lanes:  # always in this order: two captures never hold each other's locks
                    stack.enter_context(each.lock)
                return call()

        return self.threads[index].submit(held)

    def run(self, batch: np.ndarray, *, unit_scale: float | None = None) -> np.ndarray:
        if not self._split(len(batch)):
            index = next(self._turn)
            return self._on(index, len(batch), functools.partial(self.lanes[index].run, batch,
                                                                 unit_scale=unit_scale)).result()
        chunk = self._chunk(len(batch))
        futures = [self._on(index % len(self.lanes), len(piece),
                            functools.partial(self.lanes[index % len(self.lanes)].run, piece, unit_scale=unit_scale))
                   for index, piece in enumerate(batch[start : start + chunk]
                                                 for start in range(0, len(batch), chunk))]
        return np.concatenate([future.result() for future in futures])

    def replay(self, count: int) -> None:
        """A batch of ``count`` rows cut as ``run`` would cut it, each chunk run on what its bucket's buffers
        hold."""
        chunk = self._chunk(count)
        chunks = -(-count // chunk)
        first = next(self._turn)
        indices = [(first + index) % len(self.lanes) if self._split(count) else first for index in range(chunks)]
        for future in [self._on(index, chunk, functools.partial(self.lanes[index].replay, chunk))
                       for index in indices]:
            future.result()

    def warm_up(self, max_batch: int) -> None:
        """From now on run every batch of up to ``max_batch`` rows at that one bucket (``floor``), and run it
        ``WARM_UP_RUNS`` times on each lane first. One shape, because ONNX Runtime's CUDA convolutions re-plan
        whenever a session's input shape changes: on the H200, batches alternating between 1 and 8 rows took
        20-60 ms at p99 against 0.5 ms at one shape."""
        for index, lane in enumerate(self.lanes):
            lane.floor = lane.bucket(max_batch)
            batch = np.zeros((lane.floor, *lane.input_shape), np.float32)
            for _ in range(WARM_UP_RUNS):
                self._on(index, lane.floor, functools.partial(lane.run, batch)).result()


class Classifier:
    """An exported model and its card, run on ONNX Runtime.

    On a GPU, ``predict`` pads the batch to its bucket (``BATCH_BUCKETS``) and runs it through device tensors
    bound once per bucket, so a stream of varying batch sizes meets a few fixed shapes; ``warm_up`` runs each
    bucket before the first real batch, so no part waits for cuDNN's algorithm search or a graph capture.
    """

    def __init__(self, model_dir: str | Path, *, precision: Precision = "fp32", device: Device = "cpu",
                 settings: SessionSettings | None = None, check: bool = True) -> None:
        runtime = onnxruntime()
        self.precision = precision
        settings = settings or SessionSettings()
        self.model_dir = Path(model_dir)
        # The bytes whose hash was checked are the bytes run: no file swapped in between, no weights from beside it.
        self.card, self.onnx_path, model_bytes = read_model(self.model_dir, precision=precision)
        self.providers = providers_for(device)
        spec = self.card.input
        expected = [spec.channels, spec.height, spec.width]
        cache = (engine_cache_folder(self.model_dir, self.card.onnx_sha256)
                 if "TensorrtExecutionProvider" in self.providers else None)
        self.onnx_sha256 = self.card.variant(precision)[1]  # type: ignore[index]  # read_model checked the file
        self.tuning, self.tuning_source = resolve_tuning(self.providers[0], precision, self.onnx_sha256,
                                                         requested=settings.tuning)
        configured = [(provider, _provider_options(
            provider, precision=precision, cuda_graph=settings.cuda_graph, input_name=spec.name,
            input_shape=expected, cache=cache,
            tuning=self.tuning if provider == self.providers[0] else resolve_tuning(provider, precision,
                                                                                      self.onnx_sha256)[0]))
            for provider in self.providers]
        try:
            self.session = runtime.InferenceSession(model_bytes, settings.options(self.tuning), providers=configured)
            lanes = [self.session]
            if self.session.get_providers()[0] in GPU_PROVIDERS:  # a CPU session's threads share the cores already
                lanes += [runtime.InferenceSession(model_bytes, settings.options(self.tuning), providers=configured)
                          for _ in range(self.tuning.lanes - 1)]
        except Exception as exc:  # ONNX Runtime raises its own exception types for a broken graph
            how = " with CUDA graphs (every node must run on the GPU; classify.cuda_graph: false)" * (
                settings.cuda_graph and self.providers[0] == "CUDAExecutionProvider")
            raise CardError(f"{self.onnx_path}: ONNX Runtime cannot load it{how}: {exc}") from None
        active = self.session.get_providers()[0]
        if device in ("cuda", "trt") and active != self.providers[0]:
            raise DeviceError(f"--device {device}: ONNX Runtime has {self.providers[0]} but could not start it and "
                              f"fell back to {active} (CUDA or cuDNN libraries missing?): run `inspect doctor`")
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != spec.name or list(inputs[0].shape[1:]) != expected:
            found = ", ".join(f"{i.name}{i.shape}" for i in inputs)
            raise CardError(f"{self.onnx_path}: input {found} does not match the card's "
                            f"{spec.name}[batch, {', '.join(map(str, expected))}]")
        if not isinstance(inputs[0].shape[0], str):
            raise CardError(f"{self.onnx_path}: batch axis is fixed at {inputs[0].shape[0]}; expected a dynamic one")
        if inputs[0].type != "tensor(float)":
            raise CardError(f"{self.onnx_path}: input {spec.name} is {inputs[0].type}; the card's contract is "
                            "float32 (tensor(float))")
        self._check_output()
        check_onnx_metadata(self.card, self.session.get_modelmeta().custom_metadata_map, path=self.onnx_path)
        self.on_gpu = active in GPU_PROVIDERS
        self._bound = _Lanes([_BoundBatches(
            session, input_name=spec.name, output_name=self.card.output_name, input_shape=tuple(expected),
            cuda_graph=settings.cuda_graph and active == "CUDAExecutionProvider",
            providers=[(name, {**options, "enable_cuda_graph": "0"}) if name == "CUDAExecutionProvider" else
                       (name, options) for name, options in configured if name != "TensorrtExecutionProvider"],
            normalisation=self.card.normalisation) for session in lanes]) if self.on_gpu else None
        self.check_report = self.check() if check else None

    def _check_output(self) -> None:
        """Refuse a graph whose output is not the card's: its name, float32, and one probability per class
        (a classifier: N x classes) or one score map (an anomaly model: N x 1 x h x w). A dimension the graph
        leaves open is measured on one input of zeros."""
        outputs = {output.name: output for output in self.session.get_outputs()}
        output = outputs.get(self.card.output_name)
        if output is None:
            raise CardError(f"{self.onnx_path}: outputs {', '.join(outputs)}; the card names "
                            f"{self.card.output_name!r}: the ONNX file and model.json are of different models")
        if output.type != "tensor(float)":
            raise CardError(f"{self.onnx_path}: output {output.name} is {output.type}; expected float32")
        anomaly = self.card.task == "anomaly"
        expected = (1,) if anomaly else (len(self.card.class_names),)
        shape = list(output.shape[1:])
        if any(not isinstance(size, int) for size in shape[: len(expected)]):
            spec = self.card.input
            probe = np.zeros((1, spec.channels, spec.height, spec.width), np.float32)
            shape = list(self.session.run([output.name], {spec.name: probe})[0].shape[1:])
        if len(shape) != (3 if anomaly else 1) or tuple(shape[: len(expected)]) != expected:
            what = ("a score map of 1 x h x w" if anomaly else
                    f"{expected[0]} class probabilities ({', '.join(self.card.class_names)})")
            raise CardError(f"{self.onnx_path}: output {output.name} is batch x {' x '.join(map(str, shape))}; "
                            f"the card expects {what}")

    @property
    def variant(self) -> str:
        """The precision and the provider it runs on, as messages name it: ``int8 on CPUExecutionProvider``."""
        return f"{self.precision} on {self.session.get_providers()[0]}"

    def check(self) -> dict[str, Any] | None:
        """Run the card's check inputs and compare the outputs with FP32's (``ModelCard.checks``).

        Returns
        -------
        dict or None
            ``images``, ``max_abs_diff``, ``argmax_agreement``, ``tolerance`` and ``machine``; None for FP32 on the
            CPU of a card without a check set (the reference itself: nothing to compare with).

        Raises
        ------
        VariantCheckError
            When the outputs leave the card's tolerance for this precision, or a variant or device has no check
            set to be checked against.
        """
        checks = self.card.checks
        where = cpu_description() if not self.on_gpu else self.session.get_providers()[0]
        if checks is None:
            if self.precision == "fp32" and not self.on_gpu:
                return None
            raise VariantCheckError(
                f"{self.onnx_path}: {self.variant} cannot be checked on this machine ({where}): the card has no "
                f"check set; add one with `inspect export {self.model_dir} --checks FOLDER` (real images)")
        inputs, expected = read_checks(self.model_dir, checks)
        found = np.concatenate([self.predict(inputs[start : start + 64]) for start in range(0, len(inputs), 64)])
        tolerance = checks.tolerance.get(self.precision, DEFAULT_CHECK_TOLERANCE[self.precision])
        max_abs_diff = float(np.abs(found - expected).max())
        agreement = (float((found.argmax(1) == expected.argmax(1)).mean()) if expected.ndim == 2 else 1.0)
        report = {"images": len(inputs), "max_abs_diff": max_abs_diff, "argmax_agreement": agreement,
                  "tolerance": tolerance.model_dump(), "machine": where, "variant": self.variant}
        if max_abs_diff > tolerance.max_abs_diff or agreement < tolerance.min_argmax_agreement:
            raise VariantCheckError(
                f"{self.onnx_path}: {self.variant} on this machine ({where}) does not reproduce FP32 on the card's "
                f"{len(inputs)} check inputs: max |dp| {max_abs_diff:.3g} (tolerance {tolerance.max_abs_diff:g}), "
                f"argmax agreement {agreement:.1%} (required {tolerance.min_argmax_agreement:.0%}); refused. Run "
                "FP32 (classify.precision: fp32, or classify.fallback_to_fp32: true), or re-make the variant "
                "(`inspect export MODEL --int8|--fp16`)")
        return report

    @property
    def class_names(self) -> list[str]:
        return self.card.class_names

    @property
    def pinned_host_memory(self) -> bool:
        """Whether batches cross to the GPU from page-locked memory (False on a CPU, or with no CUDA runtime)."""
        return self._bound is not None and self._bound.pinned

    def prepare(self, images: Sequence[tuple[np.ndarray, Layout, int]]) -> np.ndarray:
        """Images as this model takes them: resized, in its channels and normalised as its card says (the same
        function at training and on the line).

        Parameters
        ----------
        images : sequence of (ndarray, layout, bit depth)
            (H, W) or (H, W, 3) images as read, with their channel layout and significant bits.

        Returns
        -------
        (N, C, H, W) float32 ndarray
        """
        return prepare_batch(images, card=self.card)

    def classify(self, images: Sequence[tuple[np.ndarray, Layout, int]]) -> np.ndarray:
        """Class probabilities (N x classes) of images as read: :meth:`prepare`, then :meth:`predict`."""
        return self.predict(self.prepare(images))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N x classes) of a prepared NCHW float32 batch."""
        if self._bound is not None:
            return self._bound.run(batch)
        return self.session.run([self.card.output_name], {self.card.input.name: batch})[0]

    def predict_pixels(self, pixels: np.ndarray, *, bit_depth: int = 8) -> np.ndarray:
        """Outputs of uint8 pixels already at the model's input size (N x C x H x W, unit range 0 ..
        2**bit_depth - 1): on a GPU they cross as uint8, a quarter of a float32 batch's bytes, and are normalised
        on the device; on a CPU here. Either way the network sees what ``prepare.normalise`` gives.

        Raises
        ------
        ValueError
            For another dtype or shape (the message names both).
        """
        spec = self.card.input
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (spec.channels, spec.height,
                                                                               spec.width):
            raise ValueError(f"predict_pixels takes uint8 N x {spec.channels} x {spec.height} x {spec.width}, got "
                             f"{pixels.dtype} {pixels.shape}")
        unit_scale = np.float32(1.0 / ((1 << bit_depth) - 1))
        if self._bound is not None:
            return self._bound.run(pixels, unit_scale=float(unit_scale))
        units = pixels.transpose(0, 2, 3, 1).astype(np.float32) * unit_scale
        return self.predict(normalise(units, normalisation=self.card.normalisation))

    def replay(self, size: int) -> None:
        """On a GPU: one call of a batch bucket on what its device buffers hold, no host copies (the bench's
        device-only time)."""
        if self._bound is None:
            raise DeviceError("replay runs a GPU's bound buffers; this model runs on the CPU")
        self._bound.replay(size)

    def warm_up(self, max_batch: int) -> None:
        """On a GPU, make every batch of up to ``max_batch`` rows (a line's micro-batches) run at that one batch
        bucket, and run it before the first real batch, so that its cuDNN plans, buffers and CUDA graph capture
        happen here rather than under a part's latency. One shape: ONNX Runtime's CUDA convolutions re-plan at
        every change of input shape (on an H200: p99 20-60 ms for batches alternating between 1 and 8 rows,
        0.5 ms at one shape), and padding 1 row to 8 costs microseconds. Each lane runs it ``WARM_UP_RUNS``
        times: ONNX Runtime captures a graph after its first regular runs (with two, the capture fell on the
        stream's first batches: a p99 of 369 ms). A CPU has nothing to plan or capture: it returns at once."""
        if not self.on_gpu:
            return
        self._bound.warm_up(max_batch)  # type: ignore[union-attr]  # on_gpu: bound

    def defect_scores(self, probabilities: np.ndarray) -> np.ndarray:
        """1 - p(good) per row; needs a card with a good class."""
        good = self.card.good_index
        if good is None:
            raise CardError(f"{self.model_dir}: the card names no good class, so there is no defect score")
        return 1.0 - probabilities[:, good]
