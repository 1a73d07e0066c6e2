"""Wafer-map classification speed: maps per second, batched, with 1 and 2 worker processes.

    python benchmarks/bench_wafermap.py [MODEL_DIR ...] [--data MAPS.npz] [--maps 4500] [--repeats 3]

Times what a yield engineer's batch run does per map: the state-preserving resize, the model's features or
input picture, and the model (classical perceptron or ONNX CNN), with maps already in memory. The maps are
the labelled ones of ``--data`` (the WM-811K npz layout) or, without it, generated maps of all nine
patterns. Each configuration is warmed up, then timed ``--repeats`` times; the best run counts. The record,
with the machine and date, goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspection.classify.timing import machine
from inspection.report.records import save_record
from inspection.samples.wafermaps import render_wafer_map
from inspection.wafermap import PATTERNS, read_npz
from inspection.wafermap.classify import WaferMapModelPool

RESULTS = Path(__file__).parent / "results"
MODELS = Path(__file__).parents[1] / "models"
DEFAULT_MODELS = [MODELS / "wafermap-patchnet-v5"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--data", type=Path, help="labelled maps (WM-811K npz layout); default: generated maps")
    parser.add_argument("--maps", type=int, default=4500, help="how many maps are classified per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.data is not None:
        map_set = read_npz(args.data)
        maps, labels = map_set.maps[: args.maps], [map_set.label_names[i] for i in map_set.labels[: args.maps]]
        source = str(args.data)
    else:
        per_pattern = -(-args.maps // len(PATTERNS))
        maps = [render_wafer_map(p, i, seed=2026) for p in PATTERNS for i in range(per_pattern)]
        labels = [p for p in PATTERNS for _ in range(per_pattern)]
        source = f"generated, {per_pattern} per pattern, seed 2026"
    results = []
    runs = [(model, workers) for model in args.models for workers in args.workers]
    for model, workers in tqdm(runs, total=len(runs), desc="configurations"):
        with WaferMapModelPool(model, workers=workers) as pool:
            pool.probabilities(maps[:512])  # workers started, model loaded, caches warm
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                probabilities = pool.probabilities(maps, batch_size=512)
                seconds.append(time.perf_counter() - started)
        predicted = [pool.class_names[i] for i in probabilities.argmax(axis=1)]
        correct = np.mean([p == t for p, t in zip(predicted, labels, strict=True)])
        results.append({"model": model.name, "workers": workers, "maps": len(maps),
                         "best_s": round(min(seconds), 3), "maps_per_s": round(len(maps) / min(seconds), 1),
                         "accuracy": round(float(correct), 4)})
        print(json.dumps(results[-1]))
    record = {"benchmark": "wafer-map classification", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine(), "maps": source, "repeats": args.repeats, "results": results}
    path = save_record(record, args.out, name="wafermap")
    print(json.dumps(record, indent=2))
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
