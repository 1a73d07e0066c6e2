"""Preprocessing and classical stages, one at a time: milliseconds per frame at several frame sizes.

    python benchmarks/bench_stages.py [--sizes 512,1024,2048] [--repeats 20]

Each stage runs on a synthetic wafer frame in this process (OpenCV's own threads included); the record, with
the machine and date, goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspection.align import estimate_shift, register, warp_reference
from inspection.classify.timing import machine
from inspection.grade import polarity_detections, size_verdict
from inspection.measure import deviation, regions, tolerance_band
from inspection.preprocess import denoise, equalize, to_uint8
from inspection.recipe import AlignSettings, GradeSettings
from inspection.report.records import save_record
from inspection.sim.frames import golden_image, render_frame

RESULTS = Path(__file__).parent / "results"


def timed(call: Callable[[], object], repeats: int) -> float:
    call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return round(float(np.median(samples)) * 1000, 3)


def stages_at(size_px: int, repeats: int) -> dict[str, float]:
    reference = np.asarray(golden_image("wafer", size_px=size_px))
    image, _ = render_frame("wafer", 0, seed=1, size_px=size_px, defect_rate=1.0)
    twelve_bit = image.astype(np.uint16) << 4
    fit = register(image, reference, settings=AlignSettings())
    drawn, _ = warp_reference(reference, fit, margin_px=1)
    band = tolerance_band(drawn, band_px=1, tolerance_grey=30)
    deviation_map = deviation(image, band)
    found = regions(deviation_map, min_area_px=4, pixel_size_um=5.0)
    grade = GradeSettings(review_area_um2=100, fail_area_um2=400)
    return {
        "to_uint8 (12-bit)": timed(lambda: to_uint8(twelve_bit, bit_depth=12), repeats),
        "denoise median 3": timed(lambda: denoise(image, method="median", kernel_px=3), repeats),
        "clahe": timed(lambda: equalize(image, clip_limit=2.0), repeats),
        "align: phase correlation": timed(lambda: estimate_shift(image, reference), repeats),
        "align: golden drawn in the frame": timed(lambda: warp_reference(reference, fit, margin_px=1), repeats),
        "measure: band": timed(lambda: tolerance_band(drawn, band_px=1, tolerance_grey=30), repeats),
        "measure: band deviation": timed(lambda: deviation(image, band), repeats),
        "measure: regions": timed(lambda: regions(deviation_map, min_area_px=4, pixel_size_um=5.0), repeats),
        "grade": timed(lambda: size_verdict(polarity_detections(found, settings=grade), settings=grade), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {f"{s}x{s}": stages_at(s, args.repeats) for s in tqdm(sizes, total=len(sizes), desc="stages")}
    record = {"benchmark": "stages", "unit": "ms per frame (median)", "date": datetime.now(UTC).isoformat(
        timespec="seconds"), "machine": machine(), "results": results}
    path = save_record(record, args.out, name="stages")
    names = list(next(iter(results.values())))
    print(f"{'stage (ms)':<26}" + "".join(f"{size:>12}" for size in results))
    for name in names:
        print(f"{name:<26}" + "".join(f"{results[size][name]:>12.3f}" for size in results))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
