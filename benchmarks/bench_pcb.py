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
from tqdm import tqdm

from inspection.acquire.deeppcb import read_pair_list
from inspection.chain.chain import PartChain, build_chain
from inspection.chain.pairs import evaluate_pairs, read_grey_frame
from inspection.classify.timing import machine
from inspection.recipe import load_recipe
from inspection.report.records import save_record

RESULTS = Path(__file__).parent / "results"


def stage_times_ms(chain: PartChain, pairs: list) -> tuple[dict[str, float], float]:
    """Median milliseconds per pair of reading and of each stage of the chain (one caller at a time), and the
    mean number of candidates per pair."""
    samples: dict[str, list[float]] = {}
    candidate_counts = []
    for pair in tqdm(pairs, total=len(pairs), desc="stages"):
        started = time.perf_counter()
        test, template = read_grey_frame(pair.test_path, 0), read_grey_frame(pair.template_path, 0)
        samples.setdefault("read", []).append((time.perf_counter() - started) * 1000)
        part = chain(test, reference=template)
        candidate_counts.append(len(part.regions))
        for stage, milliseconds in part.latency_ms.items():
            samples.setdefault(stage, []).append(milliseconds)
    medians = {key: round(float(np.median(values)), 3) for key, values in samples.items()}
    return medians, round(float(np.mean(candidate_counts)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder the list's paths are relative to")
    parser.add_argument("--list", type=Path, required=True)
    parser.add_argument("--recipe", default="pcb-deeppcb")
    parser.add_argument("--model", type=Path, help="default: the recipe's")
    parser.add_argument("--int8", dest="precision", action="store_const", const="int8", default="fp32",
                        help="classify with the model's INT8 variant (default FP32)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    pairs = read_pair_list(args.root, args.list)
    recipe = load_recipe(args.recipe)
    recipe = recipe.with_classify(precision=args.precision, model=str(args.model) if args.model else None)
    assert recipe.classify is not None
    chain = build_chain(recipe, rank_hypotheses=True, threads=1)
    evaluate_pairs(chain, pairs[:10], workers=2)  # warm-up: page cache, ONNX Runtime arenas
    runs = {}
    for workers in (1, 2):
        report = evaluate_pairs(chain, pairs, workers=workers)
        runs[f"workers_{workers}"] = {key: report[key]
                                      for key in ("images_per_s", "f_score", "map", "map_at_min_score", "ci95")}
    stage_ms, candidates_per_pair = stage_times_ms(chain, pairs)
    chain.close()
    assert chain.classifier is not None
    record = {
        "benchmark": "pcb", "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        "model": recipe.classify.model, "onnx": str(chain.classifier.onnx_path), "list": str(args.list),
        "pairs": len(pairs), "runs": runs, "stage_ms_one_thread": stage_ms, "candidates_per_pair": candidates_per_pair,
    }
    path = save_record(record, args.out, name="pcb")
    print(json.dumps(record, indent=2))
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
