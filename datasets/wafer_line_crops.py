"""Build the wafer-die line classifier's labelled folder from simulated camera frames, cut by the line's own chain.

    python datasets/wafer_line_crops.py OUT [--frames 3000] [--seed 1000] [--defect-rate 0.9]

Each frame of the ``sim:wafer`` camera (seeds from 1000 up are kept for training; the bundled recipe's camera
and the tests use lower ones) goes through the bundled ``wafer-die`` recipe's chain up to its candidates:
preprocessing, registration to the golden, the golden-template difference with the detector settings below.
Each candidate is cut as the line cuts it (image, registered golden, |difference|; ``candidate_crops``) and
labelled with the class of the ground-truth defect its box overlaps most, or ``good`` (a false alarm) when it
overlaps none. The simulator's frames make almost no false alarms, so each frame also gives ``--good-per-frame``
``good`` crops at random boxes (4 to 24 px) that overlap no defect: what a candidate of pattern or noise looks
like when golden and image agree. Writes ``OUT/<class>/*.png`` and ``OUT/detector.json`` (train with
``--colour rgb``, then ``inspect export MODEL --detector OUT/detector.json``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspection.chain.chain import Failed, candidate_chain
from inspection.classify.card import DetectorSettings
from inspection.classify.detect import iou_matrix
from inspection.measure import background_boxes, candidate_crops
from inspection.recipe import load_recipe
from inspection.report import save_png
from inspection.sim.frames import WAFER_DEFECTS, render_frame
from inspection.types import Frame

DETECTOR = DetectorSettings(
    band_px=1, tolerance_grey=30, open_px=0, close_px=3, min_area_px=4, edge_margin_px=1, crop_context=1.5,
    crop_min_side_px=32, box_growth={kind: (1.0, 4.0) for kind in WAFER_DEFECTS}, nms_iou=0.3, min_score=0.5,
    fitted_on="sim:wafer frames, datasets/wafer_line_crops.py",
)
"""The candidates the wafer-die model is trained on (its card carries them to the line)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--defect-rate", type=float, default=0.9)
    parser.add_argument("--good-per-frame", type=int, default=1)
    args = parser.parse_args(argv)
    recipe = load_recipe("wafer-die")
    chain = candidate_chain(recipe, DETECTOR)  # without its classifier: that is what this folder trains
    counts: Counter[str] = Counter()
    for index in tqdm(range(args.frames), total=args.frames, desc="frames"):
        image, truth = render_frame("wafer", index, seed=args.seed, defect_rate=args.defect_rate)
        part = chain(Frame(image, "mono", 8, "sim:wafer", index, 0.0, truth=truth))
        if isinstance(part, Failed) or part.aligned is None:
            continue
        aligned = part.aligned
        truth_boxes = np.array([t.box_xyxy_px for t in truth], float).reshape(-1, 4)
        boxes = np.array([r.box_xyxy_px for r in part.regions], float).reshape(-1, 4)
        kinds = [truth[int(row.argmax())].kind if truth and row.max() > 0 else "good"
                 for row in iou_matrix(boxes, truth_boxes)]
        missing = max(0, args.good_per_frame - kinds.count("good"))
        agreeing = background_boxes(aligned.image.shape, truth_boxes, missing,
                                    rng=np.random.default_rng([args.seed, index]))
        boxes, kinds = np.concatenate([boxes, agreeing]), [*kinds, *["good"] * len(agreeing)]
        crops = candidate_crops(aligned.image, aligned.reference, boxes, context=DETECTOR.crop_context,
                                min_side_px=DETECTOR.crop_min_side_px)
        for number, (crop, kind) in enumerate(zip(crops, kinds, strict=True)):
            counts[kind] += 1
            save_png(args.out / kind / f"{args.seed}_{index:06d}_{number:02d}.png", crop)
    (args.out / "detector.json").write_text(DETECTOR.model_dump_json(indent=2) + "\n")
    print(f"{sum(counts.values())} candidates in {args.out}: {dict(sorted(counts.items()))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
