"""Lot grading throughput in wafers per hour, and the lot's accuracy against its ground truth.

    python benchmarks/bench_grade.py [--wafers 45] [--seed 100] [--workers 1,2]

Generates a lot (2048 x 2048 frames, about 1,000 dies of 8 x 8 mm on a 300 mm wafer, every WM-811K pattern in
turn; seeds below 1000, so never the classifier's training wafers), then grades it with ``inspect grade``'s code
once per worker count into a fresh database: reading the PNG, wafer edge and notch, canonical turn, die grid,
die classifier, defect positions, pattern, verdict and the SQLite commit, all included; the reports are not.
The record, with the machine and date, goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from inspection.acquire.lot import read_lot
from inspection.chain.lot import run_lot
from inspection.classify.timing import machine
from inspection.recipe import load_recipe
from inspection.report.lot_report import lot_figures
from inspection.report.records import save_record
from inspection.samples.lot import make_lot

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wafers", type=int, default=45)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, e.g. 1,2")
    parser.add_argument("--recipe", default="wafer-lot")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    assert recipe.classify is not None and recipe.wafermap is not None
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        lot = Path(scratch) / "lot"
        make_lot(lot, wafers=args.wafers, seed=args.seed)
        items = read_lot(lot)
        for workers in (int(w) for w in args.workers.split(",")):
            db = Path(scratch) / f"grade-{workers}.sqlite"
            run = run_lot(items, recipe, db_path=db, workers=workers)
            figures = lot_figures(db)
            runs.append({"workers": workers, "wafers": run.graded_now, "elapsed_s": round(run.elapsed_s, 2),
                         "wafers_per_hour": round(run.graded_now / run.elapsed_s * 3600),
                         "die_truth": figures.get("die_truth"), "pattern_truth": figures.get("pattern_truth"),
                         "failed_to_grade": figures["failed_to_grade"]})
    record = {
        "benchmark": "inspect grade: wafers per hour", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "frame_px": 2048, "recipe": recipe.name, "die_model": recipe.classify.model,
        "wafer_map_model": recipe.wafermap.model, "lot_seed": args.seed, "runs": runs,
    }
    path = save_record(record, args.out, name="grade")
    print(json.dumps(record, indent=2))
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
