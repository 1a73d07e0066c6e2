"""The inference core's benchmark (``inspect bench``): throughput and latency of ONNX Runtime against plain
PyTorch, on one device, in one run.

Every configuration runs in a fresh process, so each one's peak resident memory is its own. Inputs are the
same seeded tensors for ONNX Runtime and torch. Efficiency compares the achieved FLOP rate with the device's
own dense-math rate measured in the same run.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inspection.classify import Classifier, MicroBatcher
from inspection.classify.batching import Batched
from inspection.classify.card import read_card
from inspection.classify.doctor import loaded_versions, onnxruntime_builds
from inspection.classify.runtime import (
    TUNINGS,
    Device,
    Precision,
    SessionSettings,
    onnxruntime,
    record_tuning,
)
from inspection.classify.timing import machine, nvidia_gpus, peak_rss_mb, seeded_inputs, time_calls

SMALL_BATCHES = (1, 2, 4, 8)
"""The batch buckets of a camera stream through the micro-batcher (at most 8 parts a batch)."""


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
          cuda_graph: bool = False, tuning: str | None = None) -> dict[str, Any]:
    """One core configuration. Only its own batch bucket is warmed up (by ``time_calls``): warming every smaller
    one, as a line does, would spend a 1,024 batch's minute on shapes it never runs. On a GPU, the same batch is
    also replayed without its host copies, so the share of each call spent moving data is measured beside it,
    and sent as uint8 pixels normalised on the device."""
    classifier = Classifier(model_dir, device=device, precision=precision,
                            settings=SessionSettings(cuda_graph=cuda_graph, tuning=tuning))
    batch = seeded_inputs(model_dir, batch_size)
    row = {**time_calls(lambda: classifier.predict(batch), batch_size=batch_size, seconds=seconds),
           "precision": precision, "providers": classifier.session.get_providers()[:1],
           "tuning": classifier.tuning.name, "tuning_source": classifier.tuning_source,
           "lanes": classifier.tuning.lanes if classifier.on_gpu else 1,
           "pinned_host_memory": classifier.pinned_host_memory}
    if classifier.on_gpu:
        resident = time_calls(lambda: classifier.replay(batch_size), batch_size=batch_size, seconds=seconds / 2)
        row["device_only_images_per_s"] = resident["images_per_s"]
        row["transfer_share"] = round(max(0.0, 1 - row["images_per_s"] / resident["images_per_s"]), 3)
        pixels = (np.clip(batch * 40 + 128, 0, 255)).astype(np.uint8)
        row["uint8_images_per_s"] = time_calls(lambda: classifier.predict_pixels(pixels, bit_depth=8),
                                               batch_size=batch_size, seconds=seconds / 2)["images_per_s"]
        # The micro-batcher's batches (1 to 8 rows in turn) after the line's warm-up: a setting fast at large
        # batches can be slow at small ones.
        classifier.warm_up(SMALL_BATCHES[-1])
        small = itertools.cycle([seeded_inputs(model_dir, size) for size in SMALL_BATCHES])
        row["small_batch_p99_ms"] = time_calls(lambda: classifier.predict(next(small)), batch_size=1,
                                               seconds=seconds / 2)["latency_p99_ms"]
    return row


def _stream(model_dir: Path, device: Device, precision: Precision, cuda_graph: bool, fps: float, max_batch: int,
            max_wait_ms: float, seconds: float) -> dict[str, Any]:
    """A camera at ``fps`` feeding the micro-batcher: latency from submit to result, against its bound."""
    started_up = time.perf_counter()
    classifier = Classifier(model_dir, device=device, precision=precision,
                            settings=SessionSettings(cuda_graph=cuda_graph))
    classifier.warm_up(max_batch)  # as the line's chain does when it starts
    start_up_s = time.perf_counter() - started_up
    full = seeded_inputs(model_dir, max_batch)
    compute = time_calls(lambda: classifier.predict(full), batch_size=max_batch, seconds=min(1.0, seconds))
    phases: list[tuple[float, float, float]] = []  # per item: in the batcher, its batch's compute, end to end
    frames = int(fps * seconds)

    def finished(future: Future[Batched], submitted: float) -> None:
        done = future.result()
        phases.append((done.queued_ms, done.compute_ms, (time.perf_counter() - submitted) * 1000))

    with MicroBatcher(classifier.predict, max_batch=max_batch, max_wait_ms=max_wait_ms) as batcher:
        started = time.perf_counter()
        for index in range(frames):
            due = started + index / fps
            time.sleep(max(0.0, due - time.perf_counter()))
            submitted = time.perf_counter()
            batcher.submit(full[index % max_batch]).add_done_callback(
                lambda future, t=submitted: finished(future, t))
    queued, computed, latencies = (np.array(values) for values in zip(*phases, strict=True))
    bound_ms = max_wait_ms + compute["latency_p99_ms"]
    p99_ms = float(np.percentile(latencies, 99))
    slowest = np.argsort(latencies)[-max(1, frames // 100):]  # the items that make the p99
    return {
        "fps": fps, "frames": frames, "precision": precision, "cuda_graph": cuda_graph, "max_batch": max_batch,
        "max_wait_ms": max_wait_ms, "mean_batch": round(batcher.stats.items / max(1, batcher.stats.batches), 2),
        "tuning": classifier.tuning.name, "start_up_s": round(start_up_s, 2),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)), 3), "latency_p99_ms": round(p99_ms, 3),
        "batch_compute_p99_ms": compute["latency_p99_ms"], "bound_ms": round(bound_ms, 3),
        "within_bound": p99_ms <= bound_ms,
        # Where the slowest 1% spent their time: waiting in the batcher, in their batch's predict, or after it
        # (the result's hand-over: the GIL, the callback).
        "slowest_percent_ms": {"in_batcher": round(float(queued[slowest].mean()), 3),
                               "compute": round(float(computed[slowest].mean()), 3),
                               "after_compute": round(float((latencies - queued - computed)[slowest].mean()), 3)},
        "peak_rss_mb": peak_rss_mb(),
    }


class ConfigTimeout(TimeoutError):
    """A configuration that ran past its time limit (its worker process is stopped)."""


def _isolated(function: Callable[..., Any], *args: object, limit_s: float) -> Any:
    """Run one configuration in a fresh process, so its peak memory and warm caches are its own, stopping it
    after ``limit_s`` seconds (start-up, warm-up and compiling included)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        try:
            return pool.apply_async(function, args).get(timeout=limit_s)
        except multiprocessing.TimeoutError:
            pool.terminate()
            raise ConfigTimeout(f"did not finish within {limit_s:g} s") from None


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
              torch: TorchSide | None = None, tune: bool = False, config_limit_s: float = 120.0,
              progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Benchmark a model folder; returns the record that ``inspect bench --json`` prints.

    The core runs each of ``precisions`` at each batch size (and, with ``cuda_graph`` on a GPU, again with CUDA
    graphs); PyTorch runs FP32 (and FP16 on a GPU, when asked for) eager at batch 1 and each size, and compiled
    at the largest size when ``torch.compile`` is asked for (its compile time recorded apart from its run). With
    ``tune``, the core first runs every candidate of its provider's ``TUNINGS`` per precision at the largest batch
    size, and the fastest is recorded for this machine (``record_tuning``), where the line's sessions find it; the
    later configurations run it. On a GPU the fastest is taken among the candidates whose small batches (1 to 8
    rows, the micro-batcher's) stay within twice the quickest candidate's p99: the line runs both. The headline
    speedup is best against best: the core's fastest configuration against PyTorch's fastest batched one, on the
    same device in the same run; the one-at-a-time figures stand beside it. Efficiency compares each precision's
    best core rate with that device's own dense-math peak measured in the same run: numpy's float32 GEMM on a CPU,
    torch's GEMM in that precision on a GPU. Every configuration runs in its own process, stopped after
    ``config_limit_s`` (recorded in ``failed_configs``, the run goes on); ``progress`` receives the record as it
    grows, after each one.
    """
    card, _ = read_card(model_dir)
    loaded: dict[Precision, Classifier] = {}
    for precision in precisions:  # a wrong folder, variant or device fails here, before any worker starts
        loaded[precision] = Classifier(model_dir, device=device, precision=precision)
    on_gpu = any(classifier.on_gpu for classifier in loaded.values())
    provider = next(iter(loaded.values())).providers[0]
    record: dict[str, Any] = {
        "benchmark": "inference-core", "status": "running",
        "model": str(model_dir), "arch": card.arch, "input": card.input.model_dump(), "device": device,
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine() | {"gpus": nvidia_gpus()},
        "versions": loaded_versions() | {"onnxruntime": onnxruntime().__version__,
                                         "onnxruntime_builds": onnxruntime_builds()},
        "seconds_per_config": seconds, "config_limit_s": config_limit_s,
        "gflops_per_image": round(card.flops_per_image / 1e9, 4) if card.flops_per_image else None,
        "tuning": {}, "configs": [], "failed_configs": [],
    }
    rows, failed = record["configs"], record["failed_configs"]

    def measure(name: str, function: Callable[..., dict[str, Any]], args: tuple[Any, ...], *, batch_size: int,
                precision: str) -> dict[str, Any] | None:
        """One configuration in its own process; a row for ``configs`` (the caller keeps it), or None with the
        failure recorded."""
        try:
            return {"config": name, **_isolated(function, *args, limit_s=config_limit_s)}
        except Exception as exc:  # a timeout, or no compiler for torch.compile: recorded, the run goes on
            failed.append({"config": name, "batch_size": batch_size, "precision": precision,
                           "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
            return None

    bar = tqdm(desc="benchmarking", total=0, disable=None)

    def each(name: str, function: Callable[..., dict[str, Any]], precision: str, sizes: Any, *extra: Any) -> None:
        """``function(model_dir, device, ...)`` at each batch size: the core's arguments (precision, size) or
        torch's (size, seconds, precision)."""
        sizes = list(sizes)
        bar.total += len(sizes)
        bar.refresh()
        for size in sizes:
            args = ((model_dir, device, precision, size, seconds, *extra) if name.startswith("core") else
                    (model_dir, device, size, seconds, precision, *extra))
            row = measure(name, function, args, batch_size=size, precision=precision)
            if row is not None:
                rows.append(row)
            if progress is not None:
                progress(record)
            bar.update()

    if tune:
        for precision, classifier in loaded.items():
            for tuning in TUNINGS.get(provider, ()):  # at the largest batch: the throughput the core is for
                each("core-tune", _core, precision, [max(batch_sizes)], False, tuning.name)
            tried = [r for r in rows if r["config"] == "core-tune" and r["precision"] == precision]
            if tried:
                quickest = min(r.get("small_batch_p99_ms", 0.0) for r in tried)
                winner = max([r for r in tried if r.get("small_batch_p99_ms", 0.0) <= 2 * quickest],
                             key=lambda r: r["images_per_s"])
                path = record_tuning(classifier.onnx_sha256, provider, winner["tuning"], measured={
                    "images_per_s": winner["images_per_s"], "batch_size": winner["batch_size"],
                    "date": record["date"], "tried": sorted({r["tuning"] for r in tried})})
                record["tuning"][precision] = {"winner": winner["tuning"], "images_per_s": winner["images_per_s"],
                                               "batch_size": winner["batch_size"], "recorded_in": str(path)}
    for precision in precisions:
        each("core", _core, precision, batch_sizes)
        if cuda_graph and on_gpu and precision != "int8":
            each("core-graph", _core, precision, batch_sizes, True)
    core_rows = [r for r in rows if r["config"] in ("core", "core-graph")]
    best_core = _best(core_rows)
    stream = None
    if best_core is not None:  # before torch, so that a run cut short by its caller still has it
        bar.total += 1
        stream = measure("stream", _stream, (model_dir, device, best_core["precision"],
                                             best_core["config"] == "core-graph", stream_fps, stream_max_batch,
                                             stream_max_wait_ms, max(seconds, 2.0)),
                         batch_size=stream_max_batch, precision=best_core["precision"])
        record["stream"] = stream
        bar.update()
    if torch is not None:
        torch_precisions = [p for p in precisions if p == "fp32" or (p == "fp16" and on_gpu)]
        for precision in torch_precisions:
            each("torch-eager", torch.measure, precision, sorted({1, *batch_sizes}))
        if torch.compile:  # compiling takes a minute per shape: the largest size, where it gains most, last
            for precision in torch_precisions:
                each("torch-compile", torch.measure, precision, [max(batch_sizes)], True)
    bar.close()

    peaks: dict[str, dict[str, Any]] = {}
    flops = card.flops_per_image
    cpu_peak = None if on_gpu else matmul_gflops()
    for precision in (p for p in precisions if p != "int8"):
        if cpu_peak is not None:
            peak, source = cpu_peak, "numpy float32 GEMM on the CPU"
        elif torch is not None:
            try:
                peak = _isolated(torch.gpu_peak_gflops, device, precision, limit_s=config_limit_s)
            except Exception:  # no yardstick: efficiency is left out rather than guessed
                continue
            source = f"torch GEMM {precision} on the GPU"
        else:
            continue
        best = _best(core_rows, precision=precision)
        achieved = best["images_per_s"] * flops / 1e9 if best and flops else None
        peaks[precision] = {"peak_gflops": round(peak, 1), "peak_source": source,
                            "achieved_gflops": round(achieved, 1) if achieved else None,
                            "efficiency": round(achieved / peak, 3) if achieved else None}
    batched_torch = _best([r for r in rows if r["config"].startswith("torch") and r["batch_size"] > 1])
    core_single = _best(rows, config="core", precision="fp32", batch_size=1)
    eager_single = _best(rows, config="torch-eager", precision="fp32", batch_size=1)
    torch_versions = {r["torch_version"] for r in rows if "torch_version" in r}
    if len(torch_versions) == 1:
        record["versions"]["torch"] = torch_versions.pop()
    record.update({
        "status": "complete" if best_core is not None else "no core configuration finished",
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
                                     _best(rows, config="core", precision=best_core["precision"]))
        if best_core else None,
        "stream": stream,
    })
    if progress is not None:
        progress(record)
    return record


def format_table(record: dict[str, Any]) -> str:
    gpus = record["machine"].get("gpus") or []
    where = (gpus[0]["name"] if gpus and record["device"] != "cpu" else
             f"{record['machine']['cpu']} x{record['machine']['cores']}")
    lines = [f"{record['model']} ({record['arch']}, {record['gflops_per_image']} GFLOP/image) on {where}, device "
             f"{record['device']}",
             f"{'config':<15}{'precision':>10}{'tuning':>17}{'batch':>6}{'images/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'peak RSS MB':>13}{'transfer':>10}"]
    for row in record["configs"]:
        transfer = f"{row['transfer_share']:.0%}" if "transfer_share" in row else ""
        lines.append(f"{row['config']:<15}{row['precision']:>10}{row.get('tuning', ''):>17}{row['batch_size']:>6}"
                     f"{row['images_per_s']:>12.1f}{row['latency_p50_ms']:>9.2f}{row['latency_p99_ms']:>9.2f}"
                     f"{row['peak_rss_mb']:>13.1f}{transfer:>10}")
    for precision, tuned in record["tuning"].items():
        lines.append(f"tuned {precision}: {tuned['winner']} ({tuned['images_per_s']:.0f} images/s at batch "
                     f"{tuned['batch_size']}), recorded in {tuned['recorded_in']}")
    for precision, peak in record.get("efficiency", {}).items():
        lines.append(f"{precision}: peak {peak['peak_gflops']} GFLOP/s ({peak['peak_source']}); core achieves "
                     f"{peak['achieved_gflops']} GFLOP/s: efficiency {peak['efficiency']}")
    best, torch_best = record.get("best_core"), record.get("best_torch_batched")
    if best:
        lines.append(f"best core: {best['config']} {best['precision']} batch {best['batch_size']}, "
                     f"{best['images_per_s']:.0f} images/s"
                     + (f"; best batched PyTorch: {torch_best['config']} {torch_best['precision']} batch "
                        f"{torch_best['batch_size']}, {torch_best['images_per_s']:.0f} images/s: speedup "
                        f"{record['speedup_best_vs_best']}" if torch_best else "")
                     + (f"; vs torch.compile {record['speedup_vs_torch_compile']}"
                        if record["speedup_vs_torch_compile"] else ""))
    single = record.get("one_at_a_time", {})
    if single.get("speedup"):
        lines.append(f"one image at a time (FP32): core {single['core']['images_per_s']:.0f}, torch eager "
                     f"{single['torch_eager']['images_per_s']:.0f} images/s: speedup {single['speedup']}")
    for name in ("fp16", "int8", "cuda_graph"):
        if record.get(f"{name}_speedup"):
            lines.append(f"{name.replace('_', ' ')} speedup over the same core without it: {record[f'{name}_speedup']}"
                         + (f" (VNNI: {record['machine']['vnni']})" if name == "int8" else ""))
    for failure in record["failed_configs"]:
        lines.append(f"{failure['config']} {failure['precision']} batch {failure['batch_size']} did not run: "
                     f"{failure['error']}")
    stream = record.get("stream")
    if stream:
        slowest = stream["slowest_percent_ms"]
        lines.append(f"stream {stream['fps']:g} fps through the micro-batcher ({stream['precision']}, max batch "
                     f"{stream['max_batch']}, max wait {stream['max_wait_ms']:g} ms): p50 "
                     f"{stream['latency_p50_ms']:.2f} ms, p99 {stream['latency_p99_ms']:.2f} ms, bound "
                     f"{stream['bound_ms']:.2f} ms, mean batch {stream['mean_batch']}: "
                     f"{'within' if stream['within_bound'] else 'OVER'} the bound; the slowest 1% spent "
                     f"{slowest['in_batcher']:.2f} ms in the batcher, {slowest['compute']:.2f} ms computing, "
                     f"{slowest['after_compute']:.2f} ms after")
    return "\n".join(lines)
