"""Timing an inference call the same way for every runtime (the core, and PyTorch eager in ``train``), and the
machine it ran on (every benchmark record names it)."""

from __future__ import annotations

import functools
import os
import platform
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inspection.classify.card import read_card


def seeded_inputs(model_dir: Path, batch_size: int) -> np.ndarray:
    """The same seeded batch (batch_size x the card's input shape) for every runtime compared."""
    card, _ = read_card(model_dir)
    shape = (batch_size, card.input.channels, card.input.height, card.input.width)
    return np.random.default_rng(1234).standard_normal(shape, dtype=np.float32)


def time_calls(call: Callable[[], object], *, batch_size: int, seconds: float) -> dict[str, Any]:
    """Images/s, p50/p99 latency per call and peak RSS of ``call`` repeated for ``seconds`` after a warm-up."""
    for _ in range(8):  # warm-up: allocations, kernel selection, each lane's CUDA graph capture and first replay
        call()
    latencies = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(latencies) < 5:
        before = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    return {
        "batch_size": batch_size, "calls": len(latencies),
        "images_per_s": round(batch_size * len(latencies) / elapsed, 1),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 3),
        "latency_p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB: the kernel's high-water mark of its own address space
    (``VmHWM``). ``ru_maxrss`` is not that: Linux keeps it across exec, so a benchmark worker spawned by a
    parent that loaded torch would report the parent's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> dict[str, Any]:
    cpu, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}), "avx512": "avx512f" in flags, "avx2": "avx2" in flags}


@functools.cache
def cpu_description() -> str:
    """The CPU and the flags that change ONNX Runtime's kernels, in words: ``AMD EPYC (AVX-512, VNNI)``."""
    found = machine()
    flags = [name for name, key in (("AVX2", "avx2"), ("AVX-512", "avx512")) if found[key]]
    return f"{found['cpu']} ({', '.join([*flags[-1:], 'VNNI' if found['vnni'] else 'no VNNI'])})"


@functools.cache
def nvidia_gpus() -> list[dict[str, str]]:
    """The GPUs ``nvidia-smi`` lists (name, driver, memory); none where it is absent or finds no GPU."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    fields = ("name", "driver", "memory", "compute_capability")
    return [dict(zip(fields, (part.strip() for part in line.split(",")), strict=False))
            for line in listing.stdout.splitlines() if line.strip()]
