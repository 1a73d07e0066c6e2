"""The ``inspect`` command (also ``python -m inspection``)."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from types import FrameType

from inspection.acquire import SCHEMES, CameraError, ImageReadError, open_camera
from inspection.pipeline import Inspector, LineStats, run_line, teach_reference
from inspection.recipe import BUNDLED_RECIPES, RecipeError, load_recipe
from inspection.report import ResultStore, StoreError, read_results, save_png
from inspection.report.store import RESULT_COLUMNS
from inspection.types import Verdict

DEFAULT_DB = Path("results/inspect.db")
log = logging.getLogger("inspection")


def software_version() -> str:
    try:
        return metadata.version("wafer-inspect")
    except metadata.PackageNotFoundError:
        return "unknown"


class _StatusPrinter:
    """A live status line: rewritten in place on a terminal, one line every few seconds in a log."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._last_print = 0.0

    def __call__(self, stats: LineStats) -> None:
        if self.quiet:
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + stats.status_line())
            sys.stderr.flush()
        elif time.monotonic() - self._last_print >= 5.0:
            print(stats.status_line(), file=sys.stderr, flush=True)
            self._last_print = time.monotonic()


def _install_stop_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            print("\ninspect: second signal: aborting now (committed results are safe)", file=sys.stderr)
            os._exit(130)
        stop.set()
        print(f"\ninspect: {signal.Signals(signum).name}: finishing the frames in flight "
              "(signal again to abort)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def cmd_run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    uri = args.camera or recipe.camera
    if not uri:
        raise CameraError(f"recipe {recipe.name!r} names no camera; give --camera URI "
                          f"({', '.join(s + ':...' for s in SCHEMES)})")
    camera = open_camera(uri)
    inspector = Inspector.from_recipe(recipe)
    store = ResultStore(args.db)
    run_id = store.start_run(camera=uri, recipe_name=recipe.name, recipe_sha256=recipe.sha256(),
                             software_version=software_version())
    stop = threading.Event()
    _install_stop_handlers(stop)
    status = "failed"
    print(f"inspect: run {run_id}: camera {uri}, recipe {recipe.name} ({recipe.source_path}), results -> {args.db}",
          file=sys.stderr)
    try:
        stats = run_line(camera, inspector, store, run_id=run_id, recipe=recipe, stop=stop, max_frames=args.frames,
                         save_ng_dir=args.save_ng, on_status=_StatusPrinter(quiet=args.quiet))
        status = "stopped" if stop.is_set() else "completed"
    finally:
        store.finish_run(run_id, status=status)
        store.close()
    if not args.quiet and sys.stderr.isatty():
        sys.stderr.write("\n")
    print(stats.status_line(), file=sys.stderr)
    for skipped in stats.skipped:
        print(f"inspect: skipped {skipped.reason}", file=sys.stderr)
    print(f"inspect: run {run_id} {status}: {stats.committed} result(s) committed to {args.db}"
          + (f", pictures of non-passing parts in {args.save_ng}" if args.save_ng else ""), file=sys.stderr)
    return 0


def cmd_teach(args: argparse.Namespace) -> int:
    with open_camera(args.camera) as camera:
        golden = teach_reference(camera, frames=args.frames, timeout_s=args.timeout)
    image = golden.image if golden.layout != "rgb" else golden.image[:, :, ::-1]  # PNG files are BGR in OpenCV
    path = save_png(args.out, image)
    print(f"inspect: golden reference {path}: {golden.width_px}x{golden.height_px} {golden.layout} "
          f"{golden.bit_depth}-bit, the median of {args.frames} frames from {golden.source_id}", file=sys.stderr)
    hint = f"reference: {{golden: {path.name}}}"
    if golden.bit_depth not in (8, 16):
        hint += f" and preprocess: {{bit_depth: {golden.bit_depth}}}"
    print(f"inspect: use it in a recipe beside it: {hint}", file=sys.stderr)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    rows = read_results(args.db, verdict=args.verdict, since=args.since, run_id=args.run)
    out = sys.stdout
    if args.format == "json":
        for row in rows:
            out.write(json.dumps(row) + "\n")
        return 0
    writer = csv.writer(out)
    writer.writerow(RESULT_COLUMNS)
    for row in rows:
        writer.writerow([json.dumps(v) if isinstance(v, list | dict) else v for v in row.values()])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspect", description="wafer-inspect: wafer and PCB defect inspection.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wafer-inspect {software_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="inspect a camera stream on the line, committing each verdict to SQLite",
        description="Acquire -> preprocess -> align -> measure -> grade, one verdict per frame, each committed "
                    "to the results database before it counts. Ctrl-C or SIGTERM finish the frames in flight.",
    )
    run.add_argument("--camera", metavar="URI", help="folder:PATH[?watch=1], genicam:[PRODUCER.cti][?serial=S], "
                     "pylon:[SERIAL|emu], opencv:INDEX|URL, sim:wafer|pcb[?fps=F&seed=S&defect_rate=R] "
                     "(default: the recipe's camera)")
    run.add_argument("--recipe", default="wafer", metavar="FILE",
                     help=f"recipe YAML file or a bundled one ({', '.join(BUNDLED_RECIPES)}); default: wafer")
    run.add_argument("--frames", type=int, metavar="N", help="stop after N frames (default: until the source ends)")
    run.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results database (default: {DEFAULT_DB})")
    run.add_argument("--save-ng", type=Path, metavar="DIR", help="save pictures of non-passing parts here")
    run.add_argument("-q", "--quiet", action="store_true", help="no live status line")
    run.set_defaults(handler=cmd_run)

    teach = commands.add_parser(
        "teach", help="teach a golden reference image from a camera (median of good parts)",
        description="Grab N frames of defect-free parts and write their per-pixel median as the golden "
                    "reference a recipe compares against (pixels, layout and bit depth kept).",
    )
    teach.add_argument("--camera", required=True, metavar="URI", help="the station's camera URI")
    teach.add_argument("--out", required=True, type=Path, metavar="PNG", help="where to write the golden image")
    teach.add_argument("--frames", type=int, default=9, metavar="N", help="frames to take the median of (default 9)")
    teach.add_argument("--timeout", type=float, default=5.0, metavar="S", help="fetch timeout per frame (default 5 s)")
    teach.set_defaults(handler=cmd_teach)

    results = commands.add_parser("results", help="print stored results as CSV or JSON lines")
    results.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results database (default: {DEFAULT_DB})")
    results.add_argument("--format", choices=("csv", "json"), default="csv",
                         help="csv (one header row) or json (one object per line)")
    results.add_argument("--verdict", choices=[str(v) for v in Verdict], help="only results with this verdict")
    results.add_argument("--since", metavar="ISO", help="only results acquired at or after this time (UTC if naive)")
    results.add_argument("--run", type=int, metavar="ID", help="only results of this run")
    results.set_defaults(handler=cmd_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command in ("run", "teach") and args.frames is not None and args.frames < 1:
        print(f"inspect: error: --frames must be at least 1, got {args.frames}", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except (RecipeError, CameraError, StoreError, ImageReadError) as exc:
        print(f"inspect: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `inspect results | head` closed the pipe: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
