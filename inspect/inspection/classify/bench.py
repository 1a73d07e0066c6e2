"""The inference core's benchmark (``inspect bench``): throughput and latency of ONNX Runtime against plain
PyTorch, on one machine, in one run.

Every configuration runs in a fresh process, so each one's peak resident memory is its own. Inputs are the
same seeded tensors for ONNX Runtime and torch. Efficiency compares the achieved FLOP rate with the
machine's own matrix-multiply rate measured in the same run (numpy float32 GEMM).
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inspection.classify import Classifier, MicroBatcher
from inspection.classify.card import read_card
from inspection.classify.runtime import Device
from inspection.classify.timing import machine, seeded_inputs, time_calls


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


def _core(model_dir: Path, device: Device, precision: str, batch_size: int, seconds: float) -> dict[str, Any]:
    classifier = Classifier(model_dir, device=device, precision=precision)  # type: ignore[arg-type]
    batch = seeded_inputs(model_dir, batch_size)
    return time_calls(lambda: classifier.predict(batch), batch_size=batch_size, seconds=seconds)


def _stream(model_dir: Path, device: Device, fps: float, max_batch: int, max_wait_ms: float,
            seconds: float) -> dict[str, Any]:
    """A camera at ``fps`` feeding the micro-batcher: latency from submit to result, against its bound."""
    classifier = Classifier(model_dir, device=device)
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
        "fps": fps, "frames": frames, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
        "mean_batch": round(batcher.stats.items / max(1, batcher.stats.batches), 2),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 3), "latency_p99_ms": round(p99_ms, 3),
        "batch_compute_p99_ms": compute["latency_p99_ms"], "bound_ms": round(bound_ms, 3),
        "within_bound": p99_ms <= bound_ms,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _isolated(function: Callable[..., dict[str, Any]], *args: object) -> dict[str, Any]:
    """Run one configuration in a fresh process, so its peak memory and warm caches are its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def run_bench(model_dir: Path, *, device: Device = "cpu", batch_sizes: tuple[int, ...] = (1, 8, 32, 128),
              seconds: float = 3.0, int8: bool = False, stream_fps: float = 200.0, stream_max_batch: int = 8,
              stream_max_wait_ms: float = 10.0,
              eager: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Benchmark a model folder; returns the record that ``inspect bench --json`` prints.

    ``eager`` measures PyTorch eager on the same weights and inputs (``inspection.train.eager.measure_eager``,
    passed in by the command line, which alone may load the training code).
    """
    card, _ = read_card(model_dir)
    jobs: list[tuple[str, Callable[..., dict[str, Any]], tuple[object, ...]]] = []
    for size in batch_sizes:
        jobs.append(("core", _core, (model_dir, device, "fp32", size, seconds)))
    if int8:
        jobs += [("core-int8", _core, (model_dir, device, "int8", size, seconds)) for size in batch_sizes]
    if eager is not None:
        jobs += [("torch-eager", eager, (model_dir, device, size, seconds)) for size in sorted({1, *batch_sizes})]
    rows = []
    peak = matmul_gflops()
    for name, function, args in tqdm(jobs, total=len(jobs), desc="benchmarking"):
        rows.append({"config": name, **_isolated(function, *args)})
    stream = _isolated(_stream, model_dir, device, stream_fps, stream_max_batch, stream_max_wait_ms,
                       max(seconds, 2.0))

    def best(name: str) -> dict[str, Any] | None:
        candidates = [r for r in rows if r["config"] == name]
        return max(candidates, key=lambda r: r["images_per_s"]) if candidates else None

    core = best("core")
    assert core is not None
    one_at_a_time = {r["config"]: r for r in rows if r["batch_size"] == 1}
    eager_single = one_at_a_time.get("torch-eager")
    flops = card.flops_per_image
    achieved = core["images_per_s"] * flops / 1e9 if flops else None
    int8_best = best("core-int8")
    return {
        "benchmark": "inference-core",
        "model": str(model_dir), "arch": card.arch, "input": card.input.model_dump(), "device": device,
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        "versions": {name: metadata.version(name) for name in ("wafer-inspect", "onnxruntime", "numpy")}
        | ({"torch": metadata.version("torch")} if eager is not None else {}),
        "seconds_per_config": seconds,
        "gflops_per_image": round(flops / 1e9, 4) if flops else None,
        "matmul_gflops": round(peak, 1),
        "achieved_gflops": round(achieved, 1) if achieved else None,
        "efficiency": round(achieved / peak, 3) if achieved else None,
        "best_core": core,
        "onnxruntime_one_at_a_time": one_at_a_time.get("core"),
        "torch_eager_one_at_a_time": eager_single,
        "speedup_vs_torch_eager": round(core["images_per_s"] / eager_single["images_per_s"], 2)
        if eager_single else None,
        "int8_speedup": round(int8_best["images_per_s"] / core["images_per_s"], 2) if int8_best else None,
        "stream": stream,
        "configs": rows,
    }
def format_table(record: dict[str, Any]) -> str:
    lines = [f"{record['model']} ({record['arch']}, {record['gflops_per_image']} GFLOP/image) on "
             f"{record['machine']['cpu']} x{record['machine']['cores']}, device {record['device']}",
             f"{'config':<14}{'batch':>6}{'images/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'peak RSS MB':>13}"]
    for row in record["configs"]:
        lines.append(f"{row['config']:<14}{row['batch_size']:>6}{row['images_per_s']:>11.1f}"
                     f"{row['latency_p50_ms']:>9.2f}{row['latency_p99_ms']:>9.2f}{row['peak_rss_mb']:>13.1f}")
    lines.append(f"matmul peak {record['matmul_gflops']} GFLOP/s; core achieves {record['achieved_gflops']} "
                 f"GFLOP/s: efficiency {record['efficiency']}")
    lines.append(f"speedup vs torch eager one-at-a-time: {record['speedup_vs_torch_eager']}"
                 + (f"; INT8 vs FP32: {record['int8_speedup']} (VNNI: {record['machine']['vnni']})"
                    if record["int8_speedup"] else ""))
    stream = record["stream"]
    lines.append(f"stream {stream['fps']:g} fps through the micro-batcher (max batch {stream['max_batch']}, "
                 f"max wait {stream['max_wait_ms']:g} ms): p50 {stream['latency_p50_ms']:.2f} ms, p99 "
                 f"{stream['latency_p99_ms']:.2f} ms, bound {stream['bound_ms']:.2f} ms, mean batch "
                 f"{stream['mean_batch']}: {'within' if stream['within_bound'] else 'OVER'} the bound")
    return "\n".join(lines)
