"""Line-loop benchmark: end-to-end frames/s and latency of ``inspect run`` on synthetic frames.

Runs the real line loop (acquire -> preprocess -> align -> measure -> grade -> SQLite commit) on a
free-running ``sim:`` camera at several frame sizes, and records the numbers with the machine and date in
``benchmarks/results/``. A free-running source keeps the queue full, so latency here is the worst case:
queueing included. Usage: ``python benchmarks/bench_line.py [--frames N] [--sizes 512,1024,2048]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from inspection.acquire import open_camera
from inspection.bench import machine, save_record
from inspection.pipeline import Inspector, LineStats, run_line
from inspection.recipe import load_recipe
from inspection.report import ResultStore, read_results

RESULTS = Path(__file__).parent / "results"


def bench(kind: str, size_px: int, frames: int, workers: int) -> dict[str, object]:
    recipe = load_recipe(kind)
    recipe = recipe.model_copy(update={
        "reference": recipe.reference.model_copy(update={"golden": f"sim:{kind}?size={size_px}"}),
        "pipeline": recipe.pipeline.model_copy(update={"workers": workers}),
    })
    inspector = Inspector.from_recipe(recipe)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        store = ResultStore(db)
        run_id = store.start_run(camera="bench", recipe_name=recipe.name, recipe_sha256="", software_version="")
        started = time.perf_counter()

        def progress(stats: LineStats) -> None:
            if sys.stderr.isatty():
                print(f"\r  {kind} {size_px}px: {stats.committed}/{frames} frames", end="", file=sys.stderr, flush=True)

        stats = run_line(open_camera(f"sim:{kind}?size={size_px}&seed=3"), inspector, store, run_id=run_id,
                         recipe=recipe, stop=threading.Event(), max_frames=frames, on_status=progress)
        elapsed_s = time.perf_counter() - started
        store.close()
        rows = list(read_results(db))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    latency = np.array([r["latency_ms"] for r in rows])
    stages = {name: round(float(np.mean([r["stage_latency_ms"].get(name, 0.0) for r in rows])), 3)
              for name in ("preprocess", "align", "measure", "grade")}
    return {
        "kind": kind, "frame_px": f"{size_px}x{size_px}", "frames": stats.committed, "workers": workers,
        "fps": round(stats.committed / elapsed_s, 2),
        "latency_p50_ms": round(float(np.percentile(latency, 50)), 2),
        "latency_p99_ms": round(float(np.percentile(latency, 99)), 2),
        "mean_stage_ms": stages,
        "verdicts": dict(stats.verdicts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = [bench(kind, int(size), args.frames, args.workers)
            for kind in ("wafer", "pcb") for size in args.sizes.split(",")]
    record = {
        "benchmark": "line-loop",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {p: metadata.version(p) for p in ("wafer-inspect", "numpy", "opencv-python-headless")},
        "runs": runs,
    }
    path = save_record(record, args.out, name="line")
    for run in runs:
        print(f"{run['kind']:5} {run['frame_px']:>9}: {run['fps']:7.1f} fps  p50 {run['latency_p50_ms']:7.1f} ms"
              f"  p99 {run['latency_p99_ms']:7.1f} ms  stages {run['mean_stage_ms']}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
