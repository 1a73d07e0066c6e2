"""From a 2048 x 2048 wafer frame to its die crops: milliseconds per stage and in total.

    python benchmarks/bench_wafer.py [--repeats 10]

Stages: wafer edge and notch (find_wafer), turn to the canonical orientation (warpAffine), die grid
(find_die_grid), die boxes and crops. Rendered frames of known geometry, one thread of work (OpenCV's own
threads included). The record, with the machine and date, goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspection.align.wafer import find_wafer
from inspection.classify.timing import machine
from inspection.measure.grid import die_crops, find_die_grid
from inspection.report.records import save_record
from inspection.sim.frames import WaferGeometry, render_wafer_geometry

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    size = 2048
    samples: dict[str, list[float]] = {"find_wafer": [], "canonical_turn": [], "die_grid": [], "die_crops": [],
                                       "total": []}
    dies = 0
    for repeat in tqdm(range(args.repeats), total=args.repeats, desc="frames"):
        geometry = WaferGeometry((1024.0 + repeat, 1020.0), 960.0, 271.5, (58.3, 61.7), (12.0, 9.0), 4.0)
        image, _ = render_wafer_geometry(geometry, size_px=size, seed=repeat)
        started = time.perf_counter()
        fit = find_wafer(image)
        edge_at = time.perf_counter()
        canonical = cv2.warpAffine(image, fit.to_canonical(size_px=(size, size)), (size, size), flags=cv2.INTER_LINEAR)
        turned_at = time.perf_counter()
        grid = find_die_grid(canonical, centre_xy_px=(size / 2, size / 2), radius_px=fit.radius_px)
        grid_at = time.perf_counter()
        found = die_crops(grid, centre_xy_px=(size / 2, size / 2), radius_px=fit.radius_px, pixel_size_um=150.0)
        crops = [canonical[y0:y1, x0:x1] for x0, y0, x1, y1 in (d.box_xyxy_px for d in found)]
        done_at = time.perf_counter()
        dies = len(crops)
        for key, seconds in zip(samples, (edge_at - started, turned_at - edge_at, grid_at - turned_at,
                                          done_at - grid_at, done_at - started), strict=True):
            samples[key].append(seconds * 1000)
    record = {
        "benchmark": "wafer frame to die crops", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "frame_px": size, "dies_per_frame": dies, "repeats": args.repeats,
        "median_ms": {key: round(float(np.median(values)), 2) for key, values in samples.items()},
    }
    path = save_record(record, args.out, name="wafer")
    print(json.dumps(record, indent=2))
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
