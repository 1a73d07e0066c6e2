"""Split labelled wafer maps (WM-811K npz layout) into a training and a held-out test file, stratified by pattern.

    python datasets/wm811k_split.py ../shared/data/wm811k/wm811k_dev.npz OUT_DIR [--test 0.2] [--seed 0]

writes ``OUT_DIR/train.npz`` and ``OUT_DIR/test.npz``; the test maps are never seen by
``inspect wafermap train OUT_DIR/train.npz`` (which takes its own validation split from the training file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from inspection.acquire.labelled import stratified_split
from inspection.report.maps import write_npz
from inspection.wafermap import MapSet, read_npz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--test", type=float, default=0.2, help="share of each pattern held out (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = read_npz(args.data)
    if data.labels is None:
        raise SystemExit(f"{args.data}: no labels to stratify by")
    is_test = stratified_split(data.labels, val_fraction=args.test, seed=args.seed)
    for name, mask in (("train", ~is_test), ("test", is_test)):
        chosen = np.flatnonzero(mask)
        subset = MapSet([data.maps[i] for i in chosen], data.labels[chosen], data.label_names)
        path = write_npz(args.out / f"{name}.npz", subset)
        counts = np.bincount(subset.labels, minlength=len(data.label_names))
        print(f"{path}: {len(chosen)} maps (" + ", ".join(f"{n} {c}" for n, c in
                                                       zip(data.label_names, counts, strict=True)) + ")")


if __name__ == "__main__":
    main()
