"""Build the PCB candidate classifier's labelled folder from DeepPCB, with the pipeline's own candidates.

    python datasets/deeppcb_crops.py ../shared/data/deeppcb OUT [--test-groups 13000,44000 | --test-fraction F]
        [--moved-copies N]

For every pair of ``trainval.txt`` the template is registered onto the test board and the regions that leave
its tolerance band become candidates (the ``pcb-deeppcb`` recipe's chain, the line's code). A candidate whose
centre lies in an annotated box takes that box's type (open, short, mousebite, spur, copper, pin-hole), any
other candidate is a false alarm ("good"). Each crop is 3-channel: test, registered template, |difference|.
Whole board groups go to ``test`` so the model is measured on board designs it never saw (``--test-groups ''``:
none, for a final model trained on every group); ``--test-fraction F`` instead holds out F of every group's
pairs, unseen boards of designs it knows, as DeepPCB's own test split does. ``--moved-copies N`` adds,
for every training pair, N copies of its test board moved by a seeded random shift and turn (the same
``inspection.sim.frames.perturb`` that ``inspect pcb eval --shift-px --rotate-deg`` uses), so the classifier also
learns the resampled edges of a board that lies askew on the line.

Writes ``OUT/train/<class>/*.png``, ``OUT/test/<class>/*.png``, ``OUT/detector.json`` (the candidate settings
with the box growth fitted on the training groups: annotated side ~ a x candidate side + b, per type), and
``OUT/train.txt`` / ``OUT/test.txt`` (the pair lists of each split, for ``inspect pcb eval``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from pydantic import ValidationError
from tqdm import tqdm

from inspection.acquire.deeppcb import DEEPPCB_TYPES, PcbPair, read_pair_list
from inspection.align import AlignmentError
from inspection.chain.chain import PartChain, candidate_chain
from inspection.chain.pairs import CANDIDATE_SETTINGS, find_candidates, read_grey_frame
from inspection.classify.card import DetectorSettings
from inspection.classify.detect import iou_matrix
from inspection.evaluate.pairs import perturb
from inspection.measure import candidate_crops
from inspection.recipe import load_recipe
from inspection.report import save_png


def label_candidates(boxes: np.ndarray, truth_boxes: np.ndarray, truth_kinds: tuple[str, ...]) -> list[int | None]:
    """Per candidate, the index of the annotated box holding its centre (the best-overlapping one), or None."""
    centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = ((centre_x[:, None] >= truth_boxes[None, :, 0]) & (centre_x[:, None] <= truth_boxes[None, :, 2])
              & (centre_y[:, None] >= truth_boxes[None, :, 1]) & (centre_y[:, None] <= truth_boxes[None, :, 3]))
    overlaps = np.where(inside, iou_matrix(boxes, truth_boxes), -1.0)
    return [int(row.argmax()) if row.max() >= 0 else None for row in overlaps.reshape(len(boxes), -1)]


def fit_growth(sides: dict[str, list[tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """Least-squares (a, b) of annotated side = a x candidate side + b, per defect type."""
    growth = {}
    for kind in DEEPPCB_TYPES:
        pairs = np.array(sides[kind], float).reshape(-1, 2)
        if len(pairs) < 10:
            sys.exit(f"only {len(pairs)} matched candidates of type {kind}: too few to fit its box growth")
        design = np.c_[pairs[:, 0], np.ones(len(pairs))]
        scale, offset = np.linalg.lstsq(design, pairs[:, 1], rcond=None)[0]
        growth[kind] = (round(float(scale), 4), round(float(offset), 3))
    return growth


def held_out(pairs: list[PcbPair], *, test_groups: set[str], test_fraction: float, seed: int) -> list[bool]:
    """Per pair, whether it is a test pair: every pair of ``test_groups``, and a seeded ``test_fraction`` of
    each other group's pairs (rounded; at least one pair stays in training)."""
    rng = np.random.default_rng(seed)
    is_test = [pair.group in test_groups for pair in pairs]
    for group in sorted({pair.group for pair in pairs} - test_groups):
        members = [i for i, pair in enumerate(pairs) if pair.group == group]
        count = min(round(test_fraction * len(members)), len(members) - 1)
        for i in rng.choice(members, size=count, replace=False):
            is_test[i] = True
    return is_test


def write_crops(folder: Path, stem: str, test: np.ndarray, template: np.ndarray, pair: PcbPair,
                truth_boxes: np.ndarray, *, chain: PartChain, settings: DetectorSettings, counts: Counter[str],
                split: str,
                sides: dict[str, list[tuple[float, float]]] | None) -> list[int | None]:
    """Save the labelled candidate crops of one board as ``folder/<class>/<stem>_NN.png``; with ``sides``,
    collect (candidate side, annotated side) pairs for the box-growth fit. Returns each candidate's
    annotated box index (None for a false alarm)."""
    candidates = find_candidates(chain, test, template)
    aligned = candidates.aligned
    if aligned is None:
        raise ValueError(f"{stem}: the candidate chain registered no template")
    boxes = np.array([region.box_xyxy_px for region in candidates.regions], float).reshape(-1, 4)
    labels = label_candidates(boxes, truth_boxes, pair.kinds) if len(boxes) else []
    crops = candidate_crops(aligned.image, aligned.reference, boxes, context=settings.crop_context,
                            min_side_px=settings.crop_min_side_px)
    for index, (crop, truth) in enumerate(zip(crops, labels, strict=True)):
        kind = "good" if truth is None else pair.kinds[truth]
        save_png(folder / kind / f"{stem}_{index:02d}.png", crop)
        counts[f"{split}/{kind}"] += 1
        if truth is not None and sides is not None:
            width, height = boxes[index, 2] - boxes[index, 0], boxes[index, 3] - boxes[index, 1]
            truth_box = truth_boxes[truth]
            sides[kind] += [(width, truth_box[2] - truth_box[0]), (height, truth_box[3] - truth_box[1])]
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the DeepPCB folder holding trainval.txt")
    parser.add_argument("out", type=Path)
    parser.add_argument("--list", default="trainval.txt", help="pair list inside ROOT (default trainval.txt)")
    parser.add_argument("--test-groups", help="board groups held out as test (default 13000,44000); '' trains "
                        "on every group")
    parser.add_argument("--test-fraction", type=float,
                        help="instead of whole groups, hold out this share of every group's pairs (seeded by --seed): "
                             "unseen boards of known designs, as DeepPCB's own test split")
    parser.add_argument("--moved-copies", type=int, default=0, help="moved copies of each training board")
    parser.add_argument("--shift-px", type=float, default=20.0, help="largest shift of a moved copy")
    parser.add_argument("--rotate-deg", type=float, default=1.0, help="largest turn of a moved copy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the moved copies and of --test-fraction")
    parser.add_argument("--crop-context", type=float, default=CANDIDATE_SETTINGS.crop_context,
                        help="crop side as a multiple of the candidate's longer side "
                             f"(default {CANDIDATE_SETTINGS.crop_context})")
    parser.add_argument("--crop-min-side-px", type=int, default=CANDIDATE_SETTINGS.crop_min_side_px,
                        help=f"smallest crop side (default {CANDIDATE_SETTINGS.crop_min_side_px})")
    parser.add_argument("--edge-zone-px", type=int, default=CANDIDATE_SETTINGS.edge_zone_px,
                        help="width of the zone along the template's edges opened by --edge-open-px "
                             f"(default {CANDIDATE_SETTINGS.edge_zone_px}; 0: none)")
    parser.add_argument("--edge-open-px", type=int, default=CANDIDATE_SETTINGS.edge_open_px,
                        help=f"opening within the edge zone (default {CANDIDATE_SETTINGS.edge_open_px})")
    parser.add_argument("--edge-keep-min-area-px", type=int, default=CANDIDATE_SETTINGS.edge_keep_min_area_px,
                        help="smallest piece spared the edge zone's opening "
                             f"(default {CANDIDATE_SETTINGS.edge_keep_min_area_px})")
    parser.add_argument("--edge-keep-max-side-px", type=int, default=CANDIDATE_SETTINGS.edge_keep_max_side_px,
                        help="longest side of a piece spared the edge zone's opening "
                             f"(default {CANDIDATE_SETTINGS.edge_keep_max_side_px}; 0: none is spared)")
    parser.add_argument("--min-side-px", type=int, default=CANDIDATE_SETTINGS.min_side_px,
                        help="candidates narrower than this either way are dropped "
                             f"(default {CANDIDATE_SETTINGS.min_side_px}; 1: none is)")
    args = parser.parse_args()
    if args.moved_copies < 0:
        sys.exit(f"--moved-copies must be >= 0, got {args.moved_copies}")
    try:  # the card's own bounds (a crop must hold its candidate); model_copy would not check them
        settings = DetectorSettings.model_validate({**CANDIDATE_SETTINGS.model_dump(),
                                                    "crop_context": args.crop_context,
                                                    "crop_min_side_px": args.crop_min_side_px,
                                                    "edge_zone_px": args.edge_zone_px,
                                                    "edge_open_px": args.edge_open_px,
                                                    "edge_keep_min_area_px": args.edge_keep_min_area_px,
                                                    "edge_keep_max_side_px": args.edge_keep_max_side_px,
                                                    "min_side_px": args.min_side_px})
    except ValidationError as exc:
        problems = "; ".join(f"--{str(error['loc'][0]).replace('_', '-')} {error['input']}: {error['msg']}"
                             if error["loc"] else error["msg"] for error in exc.errors())
        sys.exit(problems)
    if args.test_fraction is not None:
        if args.test_groups is not None:
            sys.exit("--test-groups and --test-fraction: give one (whole groups or a share of every group)")
        if not 0.0 <= args.test_fraction < 1.0:
            sys.exit(f"--test-fraction {args.test_fraction}: expected a share in [0, 1) (e.g. 0.2)")
        test_groups: set[str] = set()
    else:
        test_groups = {group for group in (args.test_groups if args.test_groups is not None else "13000,44000")
                       .split(",") if group}
    chain = candidate_chain(load_recipe("pcb-deeppcb"), settings)  # the line's chain up to its candidates
    pairs = read_pair_list(args.root, args.list)
    unknown = test_groups - {pair.group for pair in pairs}
    if unknown:
        sys.exit(f"--test-groups: no such group(s) {', '.join(sorted(unknown))} in {args.root / args.list}")
    is_test = held_out(pairs, test_groups=test_groups, test_fraction=args.test_fraction or 0.0, seed=args.seed)
    counts: Counter[str] = Counter()
    matched: Counter[str] = Counter()
    sides: dict[str, list[tuple[float, float]]] = defaultdict(list)
    lists: dict[str, list[str]] = defaultdict(list)
    list_lines = [line for line in (args.root / args.list).read_text().splitlines() if line.strip()]
    rngs = iter(np.random.default_rng(args.seed).spawn(len(pairs) * args.moved_copies))
    for pair, line, test_pair in tqdm(zip(pairs, list_lines, is_test, strict=True), total=len(pairs),
                                          desc="candidates"):
        split = "test" if test_pair else "train"
        lists[split].append(line)
        test, template = read_grey_frame(pair.test_path, 0).image, read_grey_frame(pair.template_path, 0).image
        stem = Path(pair.name).name
        labels = write_crops(args.out / split, stem, test, template, pair, pair.boxes, chain=chain, settings=settings,
                             counts=counts, split=split, sides=sides if split == "train" else None)
        matched[split] += len({label for label in labels if label is not None})
        counts[f"{split}/annotated"] += len(pair.kinds)
        for copy in range(args.moved_copies if split == "train" else 0):
            moved, moved_boxes, _ = perturb(test, pair.boxes, rng=next(rngs), max_shift_px=args.shift_px,
                                            max_angle_deg=args.rotate_deg)
            try:
                write_crops(args.out / split, f"{stem}_moved{copy}", moved, template, pair, moved_boxes, chain=chain,
                            settings=settings, counts=counts, split=split, sides=None)
            except AlignmentError:
                # A nearly bare board pushed partly out of view may leave too little to register on.
                counts["train/moved copies not registered"] += 1
    settings = settings.model_copy(update={
        "box_growth": fit_growth(sides),
        "fitted_on": f"{args.root / args.list}: " + (
            f"{1 - args.test_fraction:.0%} of every group's pairs (seed {args.seed})" if args.test_fraction is not None
            else f"without groups {','.join(sorted(test_groups))}" if test_groups else "every group"),
    })
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detector.json").write_text(json.dumps(settings.model_dump(), indent=2) + "\n")
    for split, lines in lists.items():
        (args.out / f"{split}.txt").write_text("\n".join(lines) + "\n")
    for key in sorted(counts):
        print(f"{key:<20} {counts[key]:>6}")
    for split in sorted(matched):
        print(f"{split}: candidates cover {matched[split]} of {counts[f'{split}/annotated']} annotated defects "
              f"({matched[split] / counts[f'{split}/annotated']:.2%})")


if __name__ == "__main__":
    main()
