"""``inspect calibrate camera|flatfield``: station calibration."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from inspection.cli.common import (
    UsageError,
    integer,
    number,
)


def _glob(pattern: str, *, option: str) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(pattern))
    if not paths:
        raise UsageError(f"{option} {pattern!r}: no files match")
    return paths


def _board(text: str) -> tuple[int, int]:
    try:
        columns, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS of inner corners, e.g. 9x6; got {text!r}") from None
    if columns < 2 or rows < 2:
        raise argparse.ArgumentTypeError(f"a board needs at least 2x2 inner corners; got {text!r}")
    return columns, rows


def _cmd_calibrate_camera(args: argparse.Namespace) -> int:
    from inspection.calibrate import calibrate_camera, write_calibration

    calibration = calibrate_camera(_glob(args.images, option="--images"), inner_corners=args.board,
                                   square_mm=args.square_mm, station=args.station, min_boards=args.min_boards,
                                   max_rms_px=args.max_rms, bit_depth=args.bit_depth)
    path = write_calibration(calibration, args.root)
    matrix = calibration.camera_matrix
    print(f"{path}: {len(calibration.per_image_rms_px)} boards ({len(calibration.rejected)} rejected), RMS "
          f"{calibration.rms_px:.4f} px, focal length {matrix[0, 0]:.2f} x {matrix[1, 1]:.2f} px, principal point "
          f"({matrix[0, 2]:.2f}, {matrix[1, 2]:.2f}), {calibration.um_per_px:.3f} um/px at the working plane, edge "
          f"blur sigma {calibration.blur_sigma_px:.3f} px")
    for name, reason in calibration.rejected.items():
        print(f"  rejected {name}: {reason}", file=sys.stderr)
    return 0


def _cmd_calibrate_flatfield(args: argparse.Namespace) -> int:
    from inspection.calibrate import make_flatfield

    path = make_flatfield(_glob(args.dark, option="--dark"), _glob(args.flat, option="--flat"), station=args.station,
                          root=args.root)
    print(f"{path}: dark and flat frames; name it in a recipe as preprocess.flatfield: {path.parent}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    calibrate = commands.add_parser("calibrate", help="station calibration: camera intrinsics, dark/flat frames")
    calibrate_commands = calibrate.add_subparsers(dest="calibrate_command", required=True, metavar="COMMAND")
    camera = calibrate_commands.add_parser("camera", help="intrinsics and distortion from checkerboard views")
    camera.add_argument("--images", required=True, metavar="GLOB", help="checkerboard images (quote the pattern)")
    camera.add_argument("--board", type=_board, required=True, metavar="COLSxROWS", help="inner corners, e.g. 9x6")
    camera.add_argument("--square-mm", type=number(0.001, 10_000), required=True,
                        help="side of one square in millimetres")
    camera.add_argument("--min-boards", type=integer(1, 10_000), default=5,
                        help="refuse with fewer boards found (default 5)")
    camera.add_argument("--max-rms", type=number(0.001, 100), default=0.5,
                        help="refuse above this RMS in px (default 0.5)")
    camera.add_argument("--bit-depth", type=integer(8, 16), metavar="BITS",
                        help="significant bits of 16-bit views, e.g. 12 for a Mono12 camera's PNGs (default: from "
                             "each view's brightest pixel)")
    camera.set_defaults(handler=_cmd_calibrate_camera)
    flatfield = calibrate_commands.add_parser("flatfield", help="mean dark and flat frames for flat-field correction")
    flatfield.add_argument("--dark", required=True, metavar="GLOB", help="frames with the light off or lens capped")
    flatfield.add_argument("--flat", required=True, metavar="GLOB", help="frames of a uniform bright target")
    flatfield.set_defaults(handler=_cmd_calibrate_flatfield)
    for sub in (camera, flatfield):
        sub.add_argument("--station", required=True, help="station name: results go to ROOT/STATION/")
        sub.add_argument("--root", type=Path, default=Path("calibration"), help="calibration folder (default "
                         "calibration)")
