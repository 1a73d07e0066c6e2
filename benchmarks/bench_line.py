"""Line-loop benchmark: ``inspect run`` end to end (camera -> chain with its CNN -> SQLite commit), frames/s,
latency and the classifier's batching, for the wafer-die station on its simulated camera and, when the DeepPCB
data is there, the PCB station on a folder of real boards.

    python benchmarks/bench_line.py [--frames 300] [--deeppcb ../shared/data/deeppcb] [--pcb-groups 44000]

Each run is the real ``run_line`` with the bundled recipe (``wafer-die``: 512 x 512 frames, 2 workers, the
CNN on every candidate through the shared micro-batcher; ``pcb-deeppcb``: 640 x 640 boards, each against the
template beside it, INT8). A free-running source keeps the queue full, so latency here is the worst case:
queueing included. The simulated camera renders its frames on the same cores. Numbers are recorded with the
machine and date in ``benchmarks/results/line-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from inspection.acquire import open_camera
from inspection.chain.chain import build_chain
from inspection.chain.line import run_line
from inspection.classify.detect import iou_matrix
from inspection.classify.timing import machine
from inspection.recipe import load_recipe
from inspection.report import ResultStore
from inspection.report.records import save_record

RESULTS = Path(__file__).parent / "results"


def bench(recipe_name: str, uri: str, frames: int | None) -> dict[str, object]:
    recipe = load_recipe(recipe_name)
    with tempfile.TemporaryDirectory() as folder, build_chain(recipe) as chain:
        db = Path(folder) / "bench.db"
        store = ResultStore(db)
        run_id = store.start_run(camera=uri, recipe_name=recipe.name, recipe_sha256="", software_version="")
        started = time.perf_counter()
        camera = open_camera(uri)
        camera.open()
        stats = run_line(camera, chain, store, run_id=run_id, stop=threading.Event(), max_frames=frames)
        elapsed_s = time.perf_counter() - started
        store.close()
        with sqlite3.connect(db) as connection:
            rows = connection.execute("SELECT latency_ms, stage_latency_ms, detections, truth FROM results").fetchall()
        batches = chain.batcher.stats if chain.batcher is not None else None
    latency = np.array([r[0] for r in rows])
    stages = [json.loads(r[1]) for r in rows]
    names = sorted({name for s in stages for name in s})
    mean_stage_ms = {name: round(float(np.mean([s.get(name, 0.0) for s in stages])), 3) for name in names}
    busy_ms = sum(v for k, v in mean_stage_ms.items() if k != "batch_wait")
    named = class_accuracy([(json.loads(r[2]), json.loads(r[3])) for r in rows if r[3] is not None])
    return {
        "recipe": recipe_name, "camera": uri, "frames": stats.committed, "workers": recipe.pipeline.workers,
        "fps": round(stats.committed / elapsed_s, 2),
        "latency_p50_ms": round(float(np.percentile(latency, 50)), 2),
        "latency_p99_ms": round(float(np.percentile(latency, 99)), 2),
        "mean_stage_ms": mean_stage_ms,
        "cnn_share_of_stage_time": round(mean_stage_ms.get("classify", 0.0) / busy_ms, 3) if busy_ms else None,
        "batches": None if batches is None else {
            "items": batches.items, "batches": batches.batches, "largest": batches.largest_batch,
            "mean": round(batches.items / max(1, batches.batches), 2)},
        "verdicts": dict(stats.verdicts),
        **({"injected_defects": named} if named["defects"] else {}),
    }


def class_accuracy(frames: list[tuple[list[dict], list[dict]]]) -> dict[str, object]:
    """Of the simulator's injected defects: how many a detection of the right class overlaps, how many one of
    another class, how many none; and the detections that overlap no defect."""
    right = wrong = missed = false_detections = 0
    confusion: dict[str, int] = {}
    for detections, truth in frames:
        boxes = np.array([d["box_xyxy_px"] for d in detections], float).reshape(-1, 4)
        truth_boxes = np.array([t["box_xyxy_px"] for t in truth], float).reshape(-1, 4)
        overlaps = iou_matrix(truth_boxes, boxes)
        for index, defect in enumerate(truth):
            if not len(boxes) or overlaps[index].max() == 0:
                missed += 1
                continue
            named = detections[int(overlaps[index].argmax())]["kind"]
            right, wrong = right + (named == defect["kind"]), wrong + (named != defect["kind"])
            key = f"{defect['kind']} -> {named}"
            confusion[key] = confusion.get(key, 0) + 1
        false_detections += int((overlaps.max(axis=0, initial=0) == 0).sum()) if len(boxes) else 0
    defects = right + wrong + missed
    return {"defects": defects, "right_class": right, "wrong_class": wrong, "missed": missed,
            "false_detections": false_detections, "class_accuracy": round(right / defects, 4) if defects else None,
            "confusion": confusion}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--deeppcb", type=Path, default=Path(__file__).parents[2] / "shared" / "data" / "deeppcb")
    parser.add_argument("--pcb-groups", default="44000,13000,20085,50600",
                        help="DeepPCB groups whose boards (and templates beside them) feed the PCB line, as one folder")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = [bench("wafer-die", "sim:wafer?seed=3&defect_rate=0.3", args.frames)]
    groups = [args.deeppcb / f"group{group}" / group for group in args.pcb_groups.split(",")]
    if all(folder.is_dir() for folder in groups):
        with tempfile.TemporaryDirectory() as boards:  # one line folder: each board beside its template
            for folder in groups:
                for image in folder.glob("*.jpg"):
                    (Path(boards) / image.name).symlink_to(image.resolve())
            runs.append(bench("pcb-deeppcb", f"folder:{boards}?glob=*_test*", None))
            runs[-1]["boards"] = f"DeepPCB groups {args.pcb_groups}"
    record = {
        "benchmark": "line-loop",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {p: metadata.version(p) for p in ("wafer-inspect", "numpy", "opencv-python-headless",
                                                      "onnxruntime")},
        "runs": runs,
    }
    path = save_record(record, args.out, name="line")
    for run in runs:
        print(f"{run['recipe']:12} {run['frames']:4} frames: {run['fps']:7.1f} fps  p50 {run['latency_p50_ms']:6.1f} ms"
              f"  p99 {run['latency_p99_ms']:6.1f} ms  CNN share {run['cnn_share_of_stage_time']}  "
              f"batches {run['batches']}  stages {run['mean_stage_ms']}"
              + (f"  injected defects {run['injected_defects']}" if "injected_defects" in run else ""))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
