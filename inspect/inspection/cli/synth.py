"""``inspect synth dies|lot``: generated data with ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from inspection.cli.common import (
    MAX_SEED,
    UsageError,
    integer,
)
from inspection.report import save_png
from inspection.sim.frames import DIE_CLASSES, render_die


def _cmd_synth_lot(args: argparse.Namespace) -> int:
    from inspection.samples.lot import make_lot

    manifest = make_lot(args.out, wafers=args.wafers, seed=args.seed)
    print(f"inspect: {args.wafers} wafers (seed {args.seed}) with their truth in {args.out}; manifest {manifest}",
          file=sys.stderr)
    return 0


def _cmd_synth_dies(args: argparse.Namespace) -> int:
    classes = args.classes.split(",") if args.classes else list(DIE_CLASSES)
    unknown = sorted(set(classes) - set(DIE_CLASSES))
    if unknown:
        raise UsageError(f"--classes: unknown die class(es) {', '.join(unknown)}; expected {', '.join(DIE_CLASSES)}")
    jobs = [(kind, index) for kind in classes for index in range(args.per_class)]
    for kind, index in tqdm(jobs, total=len(jobs), desc="rendering dies", disable=None):
        image = render_die(kind, index, seed=args.seed, size_px=args.size)
        save_png(args.out / kind / f"{kind}_{index:05d}.png", image)
    print(f"inspect: {len(jobs)} die images ({args.per_class} per class, seed {args.seed}) in {args.out}",
          file=sys.stderr)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    synth = commands.add_parser("synth", help="render synthetic die images or a whole wafer lot with its truth")
    kinds = synth.add_subparsers(dest="synth_command", required=True, metavar="{dies,lot}")
    dies = kinds.add_parser("dies", help="a labelled folder of die images (OUT/<class>/*.png)")
    dies.add_argument("out", type=Path, help="output folder")
    dies.add_argument("--per-class", type=integer(1, 100_000), default=500, metavar="N", help="images per class")
    dies.add_argument("--size", type=integer(16, 1024), default=64, metavar="PX", help="die image size in pixels")
    dies.add_argument("--classes", metavar="A,B", help=f"a subset of {','.join(DIE_CLASSES)} (default: all)")
    dies.set_defaults(handler=_cmd_synth_dies)
    lot = kinds.add_parser("lot", help="2048x2048 wafer frames with about 1,000 dies, a spatial pattern per wafer, "
                           "truth files and the lot.csv manifest")
    lot.add_argument("out", type=Path, help="output folder")
    lot.add_argument("--wafers", type=integer(1, 10_000), default=25, metavar="N", help="wafers in the lot")
    for sub in (dies, lot):
        sub.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                         help="the stream; another seed gives other images (default 0)")
    lot.set_defaults(handler=_cmd_synth_lot)
