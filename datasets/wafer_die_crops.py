"""Build the wafer-lot die classifier's labelled folder from generated wafers, cut by the grader's own code.

    python datasets/wafer_die_crops.py OUT [--wafers 18] [--seed 1000] [--defect-rate 0.3] [--good-per-wafer 350]

Each wafer is rendered by ``inspection.samples.lot`` with dies failing independently at ``--defect-rate`` (so
every defect class is plentiful), then located, turned notch-down and cut into dies by
``inspection.measure.dies.locate_dies`` with the bundled ``wafer-lot`` recipe, and made into the classifier's 3-channel
input by ``inspection.measure.dies.die_inputs`` (die, the wafer's median die, their difference): what the line will
classify. Each crop takes its die's truth class. Writes ``OUT/<class>/*.png`` (train with ``--colour rgb``).
Seeds from 1000 up are kept for training; sample lots and benchmarks use lower ones.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspection.measure.dies import die_inputs, locate_dies
from inspection.recipe import load_recipe
from inspection.report import save_png
from inspection.samples.lot import LotSpec, render_lot_wafer
from inspection.wafermap.maps import PATTERNS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--wafers", type=int, default=18)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--defect-rate", type=float, default=0.3)
    parser.add_argument("--good-per-wafer", type=int, default=350, help="good dies kept per wafer (a sample)")
    args = parser.parse_args(argv)
    recipe = load_recipe("wafer-lot")
    assert recipe.wafer is not None
    spec = LotSpec(pixel_size_um=recipe.pixel_size_um, diameter_mm=recipe.wafer.diameter_mm,
                   die_pitch_um=recipe.wafer.die_pitch_um, street_um=recipe.wafer.street_um,
                   edge_exclusion_mm=recipe.wafer.edge_exclusion_mm)
    counts: Counter[str] = Counter()
    for index in tqdm(range(args.wafers), total=args.wafers, desc="wafers"):
        seed = args.seed + index
        image, truth = render_lot_wafer(spec, PATTERNS[index % len(PATTERNS)], index, seed=seed,
                                        defect_rate=args.defect_rate)
        located = locate_dies(image, wafer=recipe.wafer, pixel_size_um=recipe.pixel_size_um)
        lookup = truth.class_by_cell()
        rng = np.random.default_rng(seed)
        good_kept = set(rng.permutation(len(located.dies))[: args.good_per_wafer].tolist())
        inputs = die_inputs(located.crops, located.golden)
        for i, (die, crop) in enumerate(zip(located.dies, inputs, strict=True)):
            name = lookup.get((die.row, die.column))
            if name is None:
                raise SystemExit(f"wafer {seed}: die ({die.row}, {die.column}) is not in the truth: grid mismatch")
            if name == "good" and i not in good_kept:
                continue
            (args.out / name).mkdir(parents=True, exist_ok=True)
            save_png(args.out / name / f"s{seed}-r{die.row}-c{die.column}.png", crop)
            counts[name] += 1
    print(dict(sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
