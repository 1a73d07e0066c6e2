"""``inspect grade``: offline grading of wafer lots."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tqdm import tqdm

from inspection.chain.chain import build_wafer_chain
from inspection.cli.common import (
    UsageError,
    add_device_option,
    integer,
    model_folder,
    software_version,
)
from inspection.recipe import load_recipe
from inspection.report.klarf import KLARF_VERSIONS
from inspection.types import GradedWafer


def _cmd_grade(args: argparse.Namespace) -> int:
    from inspection.acquire.lot import read_lot
    from inspection.chain.lot import run_lot
    from inspection.report.lot_report import write_lot_outputs
    from inspection.report.lots import LOT_DATABASE

    recipe = load_recipe(args.recipe)
    if recipe.kind != "wafer-lot" or recipe.classify is None or recipe.wafermap is None:
        raise UsageError(f"recipe {recipe.name!r} is a {recipe.kind} recipe; inspect grade takes a wafer-lot recipe "
                         "(bundled: wafer-lot)")
    recipe = recipe.with_classify(model=None if args.model is None else str(args.model), device=args.device)
    if args.map_model is not None:
        wafermap = recipe.wafermap.model_copy(update={"model": str(args.map_model)})
        recipe = recipe.model_copy(update={"wafermap": wafermap})
    build_wafer_chain(recipe).close()  # a missing model or a rule it cannot meet fails here, before any worker starts
    items = read_lot(args.source)
    db_path = args.out / LOT_DATABASE

    def report(wafer: GradedWafer) -> None:
        if args.quiet:
            return
        if wafer.report is not None:
            pattern = wafer.report.pattern
            line = (f"{wafer.item.wafer_id}: {wafer.verdict} yield {wafer.report.yield_fraction:.1%} {pattern.pattern} "
                    f"({pattern.confidence:.2f}) - {wafer.reason}")
        else:
            line = f"{wafer.item.wafer_id}: failed to grade - {wafer.reason}"
        tqdm.write(line, file=sys.stderr)  # above the bar, which is redrawn below it

    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        run = run_lot(items, recipe, db_path=db_path, workers=args.workers, engine=args.engine,
                      ray_address=args.ray_address, software_version=software_version(), on_wafer=report, stop=stop)
    except KeyboardInterrupt:
        run = None
    if run is None or run.stopped:
        graded = f"{run.graded_now} wafer(s) graded now and committed" if run is not None else "committed wafers kept"
        print(f"inspect: interrupted; {graded} in {db_path}: run the same command again to grade the rest",
              file=sys.stderr)
        return 130
    outputs, figures = write_lot_outputs(db_path, args.out,
                                         title=f"Lot grading: {', '.join(sorted({i.lot_id for i in items}))}",
                                         recipe_name=recipe.name, station=args.station,
                                         klarf_version=args.klarf_version)
    wph = run.graded_now / run.elapsed_s * 3600 if run.graded_now else 0.0
    summary = {"graded_now": run.graded_now, "skipped_already_graded": run.skipped,
               "elapsed_s": round(run.elapsed_s, 2), "wafers_per_hour": round(wph), **figures, "database": str(db_path),
               "outputs": {k: str(v) for k, v in outputs.items()}}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    verdicts = ", ".join(f"{name} {count}" for name, count in sorted(figures["verdicts"].items()))
    truth = figures.get("die_truth")
    checked = (f"; against the truth files: die recall {truth['recall']:.2%}, overkill {truth['overkill']:.2%}"
               if truth else "")
    failed = f", {figures['failed_to_grade']} could not be graded" if figures["failed_to_grade"] else ""
    already = f" ({run.skipped} graded before)" if run.skipped else ""
    speed = f"; {wph:,.0f} wafers/h" if run.graded_now else ""
    print(f"inspect: {figures['wafers']} wafer(s){already}: {verdicts}{failed}; mean yield "
          f"{figures['mean_yield']:.1%}{checked}{speed}", file=sys.stderr)
    print(f"inspect: report {outputs['html']}, wafers.csv, lot.json, KLARF in {outputs['klarf']}, SINF, E142 and "
          f"map pictures in {outputs['maps']} (--json prints every figure)", file=sys.stderr)
    return 0


def _stop_on_signals(stop: threading.Event) -> None:
    """Ctrl-C or SIGTERM: stop grading, drop the wafers in hand and commit those already graded; a second
    signal aborts at once (every committed wafer stays, each is its own transaction)."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        tqdm.write(f"inspect: {signal.Signals(signum).name}: stopping; the wafers graded so far are committed "
                   "(signal again to abort)", file=sys.stderr)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    grade = commands.add_parser(
        "grade", help="grade a lot of wafer images offline: die maps, patterns, verdicts, KLARF, HTML report",
        description="Per wafer: preprocess, wafer edge and notch, die grid (checked against the recipe), die "
                    "classifier, die map, wafer-map pattern and root cause, verdict from the recipe's rules; each "
                    "wafer committed to OUT/grade.sqlite as it finishes (a re-run skips finished wafers). Then "
                    "OUT/report.html, wafers.csv, lot.json, klarf/*.klarf and maps/*.sinf|*.e142.xml|*.png.")
    grade.add_argument("source", type=Path, metavar="FOLDER|MANIFEST",
                       help="a folder of wafer images (or one holding lot.csv), or a manifest CSV with columns image, "
                            "wafer_id[, lot_id, slot, truth_pattern, truth_dies]")
    grade.add_argument("--recipe", default="wafer-lot",
                       help="wafer-lot recipe YAML or the bundled 'wafer-lot' (default)")
    add_device_option(grade)
    grade.add_argument("--out", type=Path, required=True, help="output folder (database and reports)")
    grade.add_argument("--workers", type=integer(1, 256), default=os.cpu_count() or 1, metavar="N",
                       help="wafers graded at once (processes, or Ray tasks; default: the CPU count)")
    grade.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: a process pool; ray: Ray tasks (local Ray unless --ray-address or RAY_ADDRESS)")
    grade.add_argument("--ray-address", metavar="ADDR", help="a Ray cluster to join, e.g. ray://head:10001")
    grade.add_argument("--model", type=model_folder, help="die classifier model folder (default: the recipe's)")
    grade.add_argument("--map-model", type=model_folder, help="wafer-map model folder (default: the recipe's)")
    grade.add_argument("--station", default="wafer-inspect", help="station name written into KLARF files")
    grade.add_argument("--klarf-version", choices=KLARF_VERSIONS, default="1.8",
                       help="KLARF 1.8 (nested records, nanometres) or 1.2 (flat records, micrometres) for readers "
                            "that take only the older layout")
    grade.add_argument("--quiet", action="store_true", help="no per-wafer lines")
    grade.add_argument("--json", action="store_true", help="print every figure of the lot as one JSON object")
    grade.set_defaults(handler=_cmd_grade)
