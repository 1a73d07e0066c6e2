"""Benchmark records: JSON files that carry their machine and date, never overwritten."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def record_path(folder: Path, *, name: str, host: str) -> Path:
    """A new record's file, ``folder/<name>-<UTC date>-<host>.json``; a later run on the same day gets ``-2``,
    ``-3``, ... rather than replacing a record the README may quote. The file is made (empty), so the name is
    this run's."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{datetime.now(UTC):%Y%m%d}-{host}"
    path, run = folder / f"{stem}.json", 1
    while True:
        try:
            path.touch(exist_ok=False)
            return path
        except FileExistsError:
            run += 1
            path = folder / f"{stem}-{run}.json"


def write_record(record: dict[str, Any], path: Path) -> Path:
    """(Re)write a record atomically: a run stopped at any moment leaves its last complete version."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, path)
    return path


def save_record(record: dict[str, Any], folder: Path, *, name: str) -> Path:
    """Write a benchmark record as ``folder/<name>-<UTC date>-<host>.json`` (it carries its machine)."""
    return write_record(record, record_path(folder, name=name, host=record["machine"]["host"]))
