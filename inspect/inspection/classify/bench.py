"""The inference core's benchmark (``inspect bench``): throughput and latency of ONNX Runtime against plain
PyTorch, on one device, in one run.

Every configuration runs in a fresh process, so each one's peak resident memory is its own. Inputs are the
same seeded tensors for ONNX Runtime and torch. Efficiency compares the achieved FLOP rate with the device's
own dense-math rate measured in the same run.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inspection.classify import Classifier, MicroBatcher
from inspection.classify.card import read_card
from inspection.classify.doctor import loaded_versions, onnxruntime_builds
from inspection.classify.runtime import Device, Precision, SessionSettings, onnxruntime
from inspection.classify.timing import machine, nvidia_gpus, peak_rss_mb, seeded_inputs, time_calls


def matmul_gflops(*, size: int = 2048, repeats: int = 5) -> float:
    """The best float32 GEMM rate numpy reaches here: the machine's practical peak for dense math."""
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size), np.float32), rng.random((size, size), np.float32)
    a @ b
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


def _core(model_dir: Path, device: Device, precision: Precision, batch_size: int, seconds: float,
          cuda_graph: bool = False) -> dict[str, Any]:
    classifier = Classifier(model_dir, device=device, precision=precision,
                            settings=SessionSettings(cuda_graph=cuda_graph))
    classifier.warm_up(batch_size)
    batch = seeded_inputs(model_dir, batch_size)
    return {**time_calls(lambda: classifier.predict(batch), batch_size=batch_size, seconds=seconds),
            "precision": precision, "providers": classifier.session.get_providers()[:1],
            "pinned_host_memory": classifier.pinned_host_memory}


def _stream(model_dir: Path, device: Device, precision: Precision, cuda_graph: bool, fps: float, max_batch: int,
            max_wait_ms: float, seconds: float) -> dict[str, Any]:
    """A camera at ``fps`` feeding the micro-batcher: latency from submit to result, against its bound."""
    classifier = Classifier(model_dir, device=device, precision=precision,
                            settings=SessionSettings(cuda_graph=cuda_graph))
    classifier.warm_up(max_batch)  # as the line's chain does when it starts
    full = seeded_inputs(model_dir, max_batch)
    compute = time_calls(lambda: classifier.predict(full), batch_size=max_batch, seconds=min(1.0, seconds))
    latencies: list[float] = []
    frames = int(fps * seconds)
    with MicroBatcher(classifier.predict, max_batch=max_batch, max_wait_ms=max_wait_ms) as batcher:
        started = time.perf_counter()
        for index in range(frames):
            due = started + index / fps
            time.sleep(max(0.0, due - time.perf_counter()))
            submitted = time.perf_counter()
            batcher.submit(full[index % max_batch]).add_done_callback(
                lambda _f, t=submitted: latencies.append(time.perf_counter() - t))
    bound_ms = max_wait_ms + compute["latency_p99_ms"]
    p99_ms = float(np.percentile(latencies, 99)) * 1000
    return {
        "fps": fps, "frames": frames, "precision": precision, "cuda_graph": cuda_graph, "max_batch": max_batch,
        "max_wait_ms": max_wait_ms, "mean_batch": round(batcher.stats.items / max(1, batcher.stats.batches), 2),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 3), "latency_p99_ms": round(p99_ms, 3),
        "batch_compute_p99_ms": compute["latency_p99_ms"], "bound_ms": round(bound_ms, 3),
        "within_bound": p99_ms <= bound_ms,
        "peak_rss_mb": peak_rss_mb(),
    }


def _isolated(function: Callable[..., Any], *args: object) -> Any:
    """Run one configuration in a fresh process, so its peak memory and warm caches are its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


@dataclass(frozen=True)
class TorchSide:
    """PyTorch's side of the benchmark, from the training package (which alone may import torch):
    ``inspection.train.eager.measure_torch`` and ``matmul_peak_gflops``."""

    measure: Callable[..., dict[str, Any]]
    gpu_peak_gflops: Callable[[str, str], float]
    compile: bool = False
    """Also ``torch.compile`` at each batch size (minutes of compiling on a CPU)."""


def _best(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    candidates = [r for r in rows if all(r.get(key) == value for key, value in match.items())]
    return max(candidates, key=lambda r: r["images_per_s"]) if candidates else None


def _ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    return round(numerator["images_per_s"] / denominator["images_per_s"], 2) if numerator and denominator else None


def run_bench(model_dir: Path, *, device: Device = "cpu", batch_sizes: tuple[int, ...] = (1, 8, 32, 128),
              seconds: float = 3.0, precisions: tuple[Precision, ...] = ("fp32",), cuda_graph: bool = False,
              stream_fps: float = 200.0, stream_max_batch: int = 8, stream_max_wait_ms: float = 10.0,
              torch: TorchSide | None = None) -> dict[str, Any]:
    """Benchmark a model folder; returns the record that ``inspect bench --json`` prints.

    The core runs each of ``precisions`` at each batch size (and, with ``cuda_graph`` on a GPU, again with CUDA
    graphs); PyTorch runs FP32 (and FP16 on a GPU, when asked for) eager at batch 1 and each size, and compiled
    when ``torch.compile`` is asked for. The headline speedup is best against best: the core's fastest
    configuration against PyTorch's fastest batched one, on the same device in the same run; the one-at-a-time
    figures stand beside it. Efficiency compares each precision's best core rate with that device's own
    dense-math peak measured in the same run: numpy's float32 GEMM on a CPU, torch's GEMM in that precision on a
    GPU.
    """
    card, _ = read_card(model_dir)
    on_gpu = False
    for precision in precisions:  # a wrong folder, variant or device fails here, before any worker starts
        on_gpu = Classifier(model_dir, device=device, precision=precision).on_gpu
    jobs: list[tuple[str, Callable[..., dict[str, Any]], tuple[object, ...]]] = []
    for precision in precisions:
        jobs += [("core", _core, (model_dir, device, precision, size, seconds)) for size in batch_sizes]
        if cuda_graph and on_gpu and precision != "int8":
            jobs += [("core-graph", _core, (model_dir, device, precision, size, seconds, True))
                     for size in batch_sizes]
    if torch is not None:
        for precision in [p for p in precisions if p == "fp32" or (p == "fp16" and on_gpu)]:
            jobs += [("torch-eager", torch.measure, (model_dir, device, size, seconds, precision))
                     for size in sorted({1, *batch_sizes})]
            if torch.compile:
                jobs += [("torch-compile", torch.measure, (model_dir, device, size, seconds, precision, True))
                         for size in batch_sizes]
    rows, failed = [], []
    for name, function, args in tqdm(jobs, total=len(jobs), desc="benchmarking"):
        try:
            rows.append({"config": name, **_isolated(function, *args)})
        except Exception as exc:  # torch.compile needs a compiler and (on a GPU) Triton: recorded where it fails
            if name != "torch-compile":
                raise
            failed.append({"config": name, "batch_size": args[2], "precision": args[4],
                           "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
    best_core = _best([r for r in rows if r["config"].startswith("core")])
    assert best_core is not None
    stream = _isolated(_stream, model_dir, device, best_core["precision"], best_core["config"] == "core-graph",
                       stream_fps, stream_max_batch, stream_max_wait_ms, max(seconds, 2.0))

    peaks: dict[str, dict[str, Any]] = {}
    flops = card.flops_per_image
    cpu_peak = None if on_gpu else matmul_gflops()
    for precision in (p for p in precisions if p != "int8"):
        if cpu_peak is not None:
            peak, source = cpu_peak, "numpy float32 GEMM on the CPU"
        elif torch is not None:
            peak, source = _isolated(torch.gpu_peak_gflops, device, precision), f"torch GEMM {precision} on the GPU"
        else:
            continue  # no yardstick without torch on a GPU: efficiency is left out rather than guessed
        best = _best([r for r in rows if r["config"].startswith("core")], precision=precision)
        achieved = best["images_per_s"] * flops / 1e9 if best and flops else None
        peaks[precision] = {"peak_gflops": round(peak, 1), "peak_source": source,
                            "achieved_gflops": round(achieved, 1) if achieved else None,
                            "efficiency": round(achieved / peak, 3) if achieved else None}
    batched_torch = _best([r for r in rows if r["config"].startswith("torch") and r["batch_size"] > 1])
    core_single = _best(rows, config="core", precision="fp32", batch_size=1)
    eager_single = _best(rows, config="torch-eager", precision="fp32", batch_size=1)
    torch_versions = {r["torch_version"] for r in rows if "torch_version" in r}
    return {
        "benchmark": "inference-core",
        "model": str(model_dir), "arch": card.arch, "input": card.input.model_dump(), "device": device,
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine() | {"gpus": nvidia_gpus()},
        "versions": loaded_versions() | {"onnxruntime": onnxruntime().__version__,
                                         "onnxruntime_builds": onnxruntime_builds()}
        | ({"torch": torch_versions.pop()} if len(torch_versions) == 1 else {}),
        "seconds_per_config": seconds,
        "gflops_per_image": round(flops / 1e9, 4) if flops else None,
        "efficiency": peaks,
        "best_core": best_core,
        "best_torch_batched": batched_torch,
        "speedup_best_vs_best": _ratio(best_core, batched_torch),
        "speedup_vs_torch_compile": _ratio(best_core, _best(rows, config="torch-compile")),
        "one_at_a_time": {"core": core_single, "torch_eager": eager_single,
                          "speedup": _ratio(core_single, eager_single)},
        "fp16_speedup": _ratio(_best(rows, config="core", precision="fp16"), _best(rows, config="core",
                                                                                    precision="fp32")),
        "int8_speedup": _ratio(_best(rows, config="core", precision="int8"), _best(rows, config="core",
                                                                                    precision="fp32")),
        "cuda_graph_speedup": _ratio(_best(rows, config="core-graph", precision=best_core["precision"]),
                                     _best(rows, config="core", precision=best_core["precision"])),
        "stream": stream,
        "configs": rows,
        "failed_configs": failed,
    }


def format_table(record: dict[str, Any]) -> str:
    gpus = record["machine"].get("gpus") or []
    where = (gpus[0]["name"] if gpus and record["device"] != "cpu" else
             f"{record['machine']['cpu']} x{record['machine']['cores']}")
    lines = [f"{record['model']} ({record['arch']}, {record['gflops_per_image']} GFLOP/image) on {where}, device "
             f"{record['device']}",
             f"{'config':<15}{'precision':>10}{'batch':>6}{'images/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'peak RSS MB':>13}"]
    for row in record["configs"]:
        lines.append(f"{row['config']:<15}{row['precision']:>10}{row['batch_size']:>6}{row['images_per_s']:>12.1f}"
                     f"{row['latency_p50_ms']:>9.2f}{row['latency_p99_ms']:>9.2f}{row['peak_rss_mb']:>13.1f}")
    for precision, peak in record["efficiency"].items():
        lines.append(f"{precision}: peak {peak['peak_gflops']} GFLOP/s ({peak['peak_source']}); core achieves "
                     f"{peak['achieved_gflops']} GFLOP/s: efficiency {peak['efficiency']}")
    best, torch_best = record["best_core"], record["best_torch_batched"]
    lines.append(f"best core: {best['config']} {best['precision']} batch {best['batch_size']}, "
                 f"{best['images_per_s']:.0f} images/s"
                 + (f"; best batched PyTorch: {torch_best['config']} {torch_best['precision']} batch "
                    f"{torch_best['batch_size']}, {torch_best['images_per_s']:.0f} images/s: speedup "
                    f"{record['speedup_best_vs_best']}" if torch_best else "")
                 + (f"; vs torch.compile {record['speedup_vs_torch_compile']}"
                    if record["speedup_vs_torch_compile"] else ""))
    single = record["one_at_a_time"]
    if single["speedup"]:
        lines.append(f"one image at a time (FP32): core {single['core']['images_per_s']:.0f}, torch eager "
                     f"{single['torch_eager']['images_per_s']:.0f} images/s: speedup {single['speedup']}")
    for name in ("fp16", "int8", "cuda_graph"):
        if record[f"{name}_speedup"]:
            lines.append(f"{name.replace('_', ' ')} speedup over the same core without it: {record[f'{name}_speedup']}"
                         + (f" (VNNI: {record['machine']['vnni']})" if name == "int8" else ""))
    for failure in record["failed_configs"]:
        lines.append(f"{failure['config']} {failure['precision']} batch {failure['batch_size']} did not run: "
                     f"{failure['error']}")
    stream = record["stream"]
    lines.append(f"stream {stream['fps']:g} fps through the micro-batcher ({stream['precision']}, max batch "
                 f"{stream['max_batch']}, max wait {stream['max_wait_ms']:g} ms): p50 {stream['latency_p50_ms']:.2f} "
                 f"ms, p99 {stream['latency_p99_ms']:.2f} ms, bound {stream['bound_ms']:.2f} ms, mean batch "
                 f"{stream['mean_batch']}: {'within' if stream['within_bound'] else 'OVER'} the bound")
    return "\n".join(lines)
