"""``inspect serve``: the station, its history and defect review in a browser; ``inspect labels``: the reviews,
and the labelled folder they make for ``inspect train``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from inspection.acquire import open_camera
from inspection.cli.common import MAX_SEED, UsageError, integer, number
from inspection.cli.line import line_camera
from inspection.recipe import BUNDLED_RECIPES, load_recipe
from inspection.report.reviews import REVIEW_COLUMNS, export_labels, read_reviews

TOKEN_VARIABLE = "INSPECT_REVIEW_TOKEN"


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from inspection.serve import LOOPBACK_HOSTS, create_app
    except ImportError as exc:
        raise UsageError(f"inspect serve needs the [serve] extra (fastapi, uvicorn): pip install "
                         f"-e '.[serve]' ({exc})") from None
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must lie in 1..65535, got {args.port}")
    if args.lots is not None and not args.lots.is_dir():
        raise UsageError(f"--lots {args.lots}: not a folder (a folder of `inspect grade --out` folders)")
    token = os.environ.get(TOKEN_VARIABLE) or None
    try:
        hosts = (*LOOPBACK_HOSTS, *([args.host] if args.host not in ("0.0.0.0", "::") else []), *args.allow_host)
        app = create_app(args.db, lots=args.lots, review_token=token, hosts=hosts)
    except ValueError as exc:
        raise UsageError(f"{TOKEN_VARIABLE}: {exc}") from None
    access = "review with the token in $" + TOKEN_VARIABLE if token else f"read-only; set {TOKEN_VARIABLE} to review"
    print(f"inspect: serving {args.db} on http://{args.host}:{args.port}/ ({access}; Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _cmd_labels_export(args: argparse.Namespace) -> int:
    summary = export_labels(args.db, args.out, run_id=args.run)
    counts = ", ".join(f"{label} {count}" for label, count in summary["counts"].items())
    print(f"inspect: {sum(summary['counts'].values())} reviewed crops -> {args.out} ({counts}); "
          f"{summary['relabelled']} re-labelled by the reviewer, {summary['without_crop']} reviewed without a saved "
          f"crop left out; train with: inspect train {args.out} --colour rgb --out MODEL", file=sys.stderr)
    return 0


def _cmd_labels_cut(args: argparse.Namespace) -> int:
    from inspection.acquire.labelled import UNSORTED
    from inspection.chain.crops import cut_candidates

    recipe = load_recipe(args.recipe)
    if recipe.kind == "wafer-lot":
        raise UsageError(f"recipe {recipe.name!r} is a wafer-lot recipe: its dies are cut by `inspect grade`; "
                         "cut candidates with a wafer-die or pcb recipe")
    uri = line_camera(recipe, args.camera)
    with open_camera(uri) as camera:
        if recipe.camera is not None:
            camera.set_up(recipe.camera)
        summary = cut_candidates(camera, recipe, args.out, max_frames=args.frames, presort=args.presort,
                                 good_per_frame=args.good_per_frame, seed=args.seed, timeout_s=args.timeout,
                                 progress=not args.quiet)
    for skipped in summary.skipped:
        print(f"inspect: skipped {skipped.reason}", file=sys.stderr)
    for reason, count in summary.not_registered.most_common():
        print(f"inspect: {count} frame(s) not cut: {reason}", file=sys.stderr)
    folders = ", ".join(f"{folder} {count}" for folder, count in sorted(summary.crops.items())) or "none"
    print(f"inspect: {sum(summary.crops.values())} crops of {summary.frames} frame(s) -> {args.out} ({folders}; "
          f"{summary.agreeing} of them random boxes where frame and golden agree), cut as the line of recipe "
          f"{recipe.name!r} cuts them", file=sys.stderr)
    sort = ("check each class folder (a crop the model put in the wrong one goes to its class)" if args.presort
            else f"sort {args.out / UNSORTED} into {args.out}/<class>/ (good: a candidate that is no defect)")
    print(f"inspect: next: {sort}, then: inspect train {args.out} --for {args.recipe} --out MODEL", file=sys.stderr)
    return 0


def _cmd_labels_list(args: argparse.Namespace) -> int:
    reviews = read_reviews(args.db, run_id=args.run).values()
    columns = ("run_id", *REVIEW_COLUMNS, "crop_path")
    if args.format == "json":
        for review in reviews:
            print(json.dumps({column: review[column] for column in columns}))
        return 0
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([review[column] for column in columns] for review in reviews)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    serve = commands.add_parser("serve", help="the live station, the run history and defect review in a browser",
                                description=f"Serve the station page, the run history, each result with its "
                                f"detections, and the lot reports. Review (confirm or re-label a detection) needs "
                                f"the token in ${TOKEN_VARIABLE} (at least 16 characters); without it, read-only.")
    serve.add_argument("--db", type=Path, default=Path("results/inspect.db"), help="the results database")
    serve.add_argument("--lots", type=Path, metavar="DIR", help="also list the lot reports in this folder (each an "
                       "`inspect grade --out` folder) at /lots")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=integer(1, 65_535), default=8000, help="port to listen on")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="a name browsers reach the station by (its DNS name); requests whose Host is not "
                            "--host, a loopback address or one of these get HTTP 421 (repeatable)")
    serve.set_defaults(handler=_cmd_serve)

    labels = commands.add_parser("labels", help="reviewed detections: list them, or export them for inspect train")
    actions = labels.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export", help="write each reviewed detection's crop into OUT/<label>/ (the folder inspect train reads) "
        "with labels.json saying where each came from",
        description="Write the crop of every reviewed detection into "
                    "OUT/<label>/, the label being the reviewer's latest, with labels.json naming each crop's "
                    "result, detection, model label and reviewer. Train on it with inspect train OUT --for RECIPE.")
    listing = actions.add_parser(
        "list", help="print the current review of each reviewed detection",
        description="Print the latest review of each reviewed detection as CSV (or JSON lines): run, result, "
                    "detection, the model's label, the reviewer's label, reviewer, time and the crop's file.")
    for parser in (export, listing):
        parser.add_argument("--db", type=Path, default=Path("results/inspect.db"), help="the results database")
        parser.add_argument("--run", type=integer(1, 2**62), metavar="ID", help="only this run's reviews")
    export.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    export.set_defaults(handler=_cmd_labels_export)
    listing.add_argument("--format", choices=("csv", "json"), default="csv", help="CSV (default) or JSON lines")
    listing.set_defaults(handler=_cmd_labels_list)

    cut = actions.add_parser(
        "cut", help="cut a station's candidates from its frames into a folder to label, as its line cuts them",
        description="Run the recipe's chain up to its candidates on each frame and save every candidate as the "
                    "crop its classifier is given (image, golden, difference) into OUT/unsorted/ (with --presort: "
                    "OUT/<class the recipe's model names>/), with crops.csv (frame and box of each) and "
                    "detector.json. Sort them into class folders, then train with: inspect train OUT --for RECIPE.")
    cut.add_argument("--camera", metavar="URI", help="the frames, e.g. folder:PATH (default: the recipe's camera)")
    cut.add_argument("--recipe", default="wafer-die", metavar="FILE",
                     help=f"recipe YAML file or a bundled one ({', '.join(BUNDLED_RECIPES)}); default: wafer-die")
    cut.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    cut.add_argument("--frames", type=integer(1, 10**9), metavar="N", help="stop after N frames (default: all)")
    cut.add_argument("--presort", action="store_true",
                     help="put each crop in the folder of the class the recipe's model names, to be checked")
    cut.add_argument("--good-per-frame", type=integer(0, 1000), default=1, metavar="N",
                     help="also cut N random boxes per frame that touch no candidate into OUT/good/ (default 1)")
    cut.add_argument("--seed", type=integer(0, MAX_SEED), default=0, help="seeds those boxes (default 0)")
    cut.add_argument("--timeout", type=number(0.01, 3600), default=5.0, metavar="S",
                     help="stop when the camera delivers no frame for this long (default 5 s)")
    cut.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    cut.set_defaults(handler=_cmd_labels_cut)
