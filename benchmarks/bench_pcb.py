"""PCB inspection end to end on DeepPCB pairs: pairs/s with 1 and 2 workers and milliseconds per stage.

    python benchmarks/bench_pcb.py ../shared/data/deeppcb --list LIST [--model models/pcb-patchnet-l-v7] [--int8]

End to end means what `inspect pcb eval` times: both JPEGs read, registration, candidates, crops, ONNX
classification, box growth and NMS (ONNX Runtime one thread per worker). The stage split runs one worker on
the same pairs and counts the candidates each pair hands the classifier. ``--int8`` classifies with the model's
INT8 variant. Each run keeps its F-score and mAP with their 95% bootstrap intervals over the pairs (``ci95``).
The record, with the machine and date, goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from inspection.acquire.deeppcb import read_pair_list
from inspection.bench import machine, save_record
from inspection.classify import SessionSettings
from inspection.classify.prepare import prepare_batch
from inspection.pcb import PcbInspector, candidate_crops, evaluate_pairs, find_candidates, grey_pair, read_grey
from inspection.progress import progress

RESULTS = Path(__file__).parent / "results"


def stage_times_ms(inspector: PcbInspector, pairs: list) -> tuple[dict[str, float], float]:
    """Median milliseconds per pair of each stage, one thread, and the mean number of candidates per pair."""
    samples: dict[str, list[float]] = {"read": [], "register_and_candidates": [], "crops": [], "classify": []}
    candidate_counts = []
    for pair in progress(pairs, total=len(pairs), label="stages"):
        started = time.perf_counter()
        test, template = grey_pair(read_grey(pair.test_path), read_grey(pair.template_path))
        read_at = time.perf_counter()
        candidates = find_candidates(test, template, settings=inspector.detector)
        found_at = time.perf_counter()
        crops = candidate_crops(candidates, settings=inspector.detector)
        candidate_counts.append(len(crops))
        cropped_at = time.perf_counter()
        if crops:
            inspector.classifier.predict(prepare_batch([(c, "bgr", 8) for c in crops], card=inspector.classifier.card))
        done_at = time.perf_counter()
        for key, seconds in zip(samples, (read_at - started, found_at - read_at, cropped_at - found_at,
                                          done_at - cropped_at), strict=True):
            samples[key].append(seconds * 1000)
    medians = {key: round(float(np.median(values)), 3) for key, values in samples.items()}
    return medians, round(float(np.mean(candidate_counts)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder the list's paths are relative to")
    parser.add_argument("--list", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=Path("models/pcb-patchnet-l-v7"))
    parser.add_argument("--int8", dest="precision", action="store_const", const="int8", default="fp32",
                        help="classify with the model's INT8 variant")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    pairs = read_pair_list(args.root, args.list)
    inspector = PcbInspector(args.model, precision=args.precision,
                             settings=SessionSettings(intra_op_threads=1))
    evaluate_pairs(inspector, pairs[:10], workers=2)  # warm-up: page cache, ONNX Runtime arenas
    runs = {}
    for workers in (1, 2):
        report = evaluate_pairs(inspector, pairs, workers=workers)
        runs[f"workers_{workers}"] = {key: report[key]
                                      for key in ("images_per_s", "f_score", "map", "map_at_min_score", "ci95")}
    stage_ms, candidates_per_pair = stage_times_ms(inspector, pairs)
    record = {
        "benchmark": "pcb", "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        "model": str(args.model), "onnx": str(inspector.classifier.onnx_path), "list": str(args.list),
        "pairs": len(pairs), "runs": runs, "stage_ms_one_thread": stage_ms, "candidates_per_pair": candidates_per_pair,
    }
    path = save_record(record, args.out, name="pcb")
    print(json.dumps(record, indent=2))
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
