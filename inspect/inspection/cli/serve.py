"""``inspect serve``: the station page and the run history in a browser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inspection.cli.common import UsageError


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from inspection.serve import create_app
    except ImportError as exc:
        raise UsageError(f"inspect serve needs the [serve] extra (fastapi, uvicorn): pip install "
                         f"'wafer-inspect[serve]' ({exc})") from None
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must lie in 1..65535, got {args.port}")
    print(f"inspect: serving {args.db} on http://{args.host}:{args.port}/ (read-only; Ctrl-C stops)", file=sys.stderr)
    if args.lots is not None and not args.lots.is_dir():
        raise UsageError(f"--lots {args.lots}: not a folder (a folder of `inspect grade --out` folders)")
    uvicorn.run(create_app(args.db, lots=args.lots), host=args.host, port=args.port, log_level="warning")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="the live station and the run history in a browser (read-only)")
    serve.add_argument("--db", type=Path, default=Path("results/inspect.db"), help="the results database")
    serve.add_argument("--lots", type=Path, metavar="DIR", help="also list the lot reports in this folder (each an "
                       "`inspect grade --out` folder) at /lots")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.set_defaults(handler=cmd_serve)
