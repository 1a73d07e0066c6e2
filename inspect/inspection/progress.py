"""A dependency-free progress bar for long work (training, grading, evaluation, benchmarks)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int, label: str, every_s: float = 10.0) -> Iterator[T]:
    """Yield ``items`` while drawing ``label [#####     ] n/total  rate/s`` on stderr.

    On a terminal the bar is redrawn in place; in a log, a line is written every ``every_s`` seconds.
    """
    tty = sys.stderr.isatty()
    started = last = time.monotonic()
    done = 0

    def draw(final: bool = False) -> None:
        elapsed = max(time.monotonic() - started, 1e-9)
        filled = int(30 * done / total) if total else 30
        line = f"{label} [{'#' * filled}{' ' * (30 - filled)}] {done}/{total}  {done / elapsed:.1f}/s"
        if tty:
            sys.stderr.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if (tty and now - last >= 0.1) or (not tty and now - last >= every_s):
            draw()
            last = now
    draw(final=True)
