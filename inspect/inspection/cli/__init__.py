"""The ``inspect`` command (also ``python -m inspection``): one module per command group."""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys

from inspection.cli import anomaly, bench, calibrate, doctor, grade, line, models, pcb, serve, synth, wafermap
from inspection.cli.common import CommandParser, software_version
from inspection.types import InspectionError


def build_parser() -> argparse.ArgumentParser:
    """The ``inspect`` command's parser, with every command group's sub-commands.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = CommandParser(
        prog="inspect", description="wafer-inspect: wafer and PCB defect inspection.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wafer-inspect {software_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (line, models, anomaly, synth, grade, bench, doctor, wafermap, calibrate, pcb, serve):
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``inspect`` command; errors the user can act on are printed in one line, without a traceback.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: the process's).

    Returns
    -------
    int
        The exit status: 0 done, 2 a usage or input error, 130 interrupted (or the command's own).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except InspectionError as exc:
        print(f"inspect: error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:  # a page damaged after the database opened (its header was fine)
        print(f"inspect: error: a database this command reads is damaged ({exc}); what it holds up to the damage "
              "can be recovered with: sqlite3 DB .recover | sqlite3 NEW.db", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what was committed stays; no traceback for a stop the user asked for
        print("inspect: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `inspect results | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file or folder the command was given that the system refuses (no such, read-only)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"inspect: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
