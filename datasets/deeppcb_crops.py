"""Build a labelled patch folder from DeepPCB: crops around each ground-truth defect plus defect-free crops.

    python datasets/deeppcb_crops.py ../shared/data/deeppcb OUT [--test-groups 13000,44000] [--seed 0]

writes ``OUT/train/<class>/*.png`` and ``OUT/test/<class>/*.png`` with the classes open, short, mousebite,
spur, copper, pin-hole and good. Whole board groups go to ``test`` so a model is measured on boards it
never saw (``inspect train OUT --out ...`` trains on ``train`` with a stratified validation split;
``inspect eval MODEL OUT/test`` measures it). Each defect crop is a square around its box with context
(side = 1.5 x the box's longer side, at least 32 px), taken from the board under test and converted to
grey (62 DeepPCB JPEGs are RGB with identical channels). Defect-free crops have the sizes of the defect
crops and touch no ground-truth box.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from inspection.acquire import read_image
from inspection.preprocess import to_gray
from inspection.progress import progress
from inspection.report import save_png

TYPES = {1: "open", 2: "short", 3: "mousebite", 4: "spur", 5: "copper", 6: "pin-hole"}
CONTEXT = 1.5
MIN_SIDE_PX = 32


def read_pairs(root: Path) -> list[tuple[str, Path, np.ndarray]]:
    """(group, test image, boxes N x 5 [x1 y1 x2 y2 type]) for each line of trainval.txt."""
    pairs = []
    for line in (root / "trainval.txt").read_text().split("\n"):
        if not line.strip():
            continue
        image_name, annotation_name = line.split()
        image = root / image_name.replace(".jpg", "_test.jpg")
        boxes = np.loadtxt(root / annotation_name, dtype=np.int64, ndmin=2)
        if boxes.shape[1] != 5:
            raise ValueError(
                f"{root / annotation_name}: expected 'x1 y1 x2 y2 type' lines, got {boxes.shape[1]} fields"
            )
        pairs.append((image_name.split("/")[0].removeprefix("group"), image, boxes))
    return pairs


def square(box: np.ndarray, *, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The context square around a box, shifted to lie inside the image."""
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    side = min(max(MIN_SIDE_PX, round(CONTEXT * max(x2 - x1, y2 - y1))), min(size))
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    left = min(max(0, cx - side // 2), size[1] - side)
    top = min(max(0, cy - side // 2), size[0] - side)
    return left, top, left + side, top + side


def defect_free_crops(boxes: np.ndarray, sides: list[int], *, size: tuple[int, int], count: int,
                      rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    crops: list[tuple[int, int, int, int]] = []
    for _ in range(50 * count):
        if len(crops) == count:
            break
        side = int(rng.choice(sides))
        left, top = int(rng.integers(0, size[1] - side)), int(rng.integers(0, size[0] - side))
        touches = ((boxes[:, 0] < left + side) & (boxes[:, 2] > left) & (boxes[:, 1] < top + side)
                   & (boxes[:, 3] > top)).any()
        if not touches:
            crops.append((left, top, left + side, top + side))
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the DeepPCB folder holding trainval.txt")
    parser.add_argument("out", type=Path)
    parser.add_argument("--test-groups", default="13000,44000", help="board groups held out as test")
    parser.add_argument("--good-per-image", type=int, default=3, help="defect-free crops per board")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    test_groups = set(args.test_groups.split(","))
    pairs = read_pairs(args.root)
    unknown = test_groups - {group for group, _, _ in pairs}
    if unknown:
        sys.exit(f"--test-groups: no such group(s) {', '.join(sorted(unknown))} in {args.root / 'trainval.txt'}")
    rng = np.random.default_rng(args.seed)
    counts: Counter[str] = Counter()
    for group, path, boxes in progress(pairs, total=len(pairs), label="cropping"):
        image, layout, _ = read_image(path)
        grey = to_gray(image, layout=layout)
        split = "test" if group in test_groups else "train"
        squares = [square(box, size=grey.shape) for box in boxes]
        for index, (box, (x0, y0, x1, y1)) in enumerate(zip(boxes, squares, strict=True)):
            kind = TYPES[int(box[4])]
            save_png(args.out / split / kind / f"{path.stem}_{index:02d}.png", grey[y0:y1, x0:x1])
            counts[f"{split}/{kind}"] += 1
        sides = [x1 - x0 for x0, _, x1, _ in squares]
        for index, (x0, y0, x1, y1) in enumerate(
                defect_free_crops(boxes, sides, size=grey.shape, count=args.good_per_image, rng=rng)):
            save_png(args.out / split / "good" / f"{path.stem}_{index:02d}.png", grey[y0:y1, x0:x1])
            counts[f"{split}/good"] += 1
    for key in sorted(counts):
        print(f"{key:<20} {counts[key]:>6}")


if __name__ == "__main__":
    main()
