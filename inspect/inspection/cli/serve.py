"""``inspect serve``: the station, its history and defect review in a browser; ``inspect labels``: the reviews,
and the labelled folder they make for ``inspect train``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from inspection.cli.common import UsageError, integer
from inspection.report.reviews import REVIEW_COLUMNS, export_labels, read_reviews

TOKEN_VARIABLE = "INSPECT_REVIEW_TOKEN"


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from inspection.serve import LOOPBACK_HOSTS, create_app
    except ImportError as exc:
        raise UsageError(f"inspect serve needs the [serve] extra (fastapi, uvicorn): pip install "
                         f"'wafer-inspect[serve]' ({exc})") from None
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


def cmd_labels_export(args: argparse.Namespace) -> int:
    summary = export_labels(args.db, args.out, run_id=args.run)
    counts = ", ".join(f"{label} {count}" for label, count in summary["counts"].items())
    print(f"inspect: {sum(summary['counts'].values())} reviewed crops -> {args.out} ({counts}); "
          f"{summary['relabelled']} re-labelled by the reviewer, {summary['without_crop']} reviewed without a saved "
          f"crop left out; train with: inspect train {args.out} --colour rgb --out MODEL", file=sys.stderr)
    return 0


def cmd_labels_list(args: argparse.Namespace) -> int:
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
    serve.set_defaults(handler=cmd_serve)

    labels = commands.add_parser("labels", help="reviewed detections: list them, or export them for inspect train")
    actions = labels.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write each reviewed detection's crop into OUT/<label>/ (the folder "
                                "inspect train reads) with labels.json saying where each came from")
    listing = actions.add_parser("list", help="print the current review of each reviewed detection")
    for parser in (export, listing):
        parser.add_argument("--db", type=Path, default=Path("results/inspect.db"), help="the results database")
        parser.add_argument("--run", type=integer(1, 2**62), metavar="ID", help="only this run's reviews")
    export.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    export.set_defaults(handler=cmd_labels_export)
    listing.add_argument("--format", choices=("csv", "json"), default="csv", help="CSV (default) or JSON lines")
    listing.set_defaults(handler=cmd_labels_list)
