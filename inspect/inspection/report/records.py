"""Benchmark records: JSON files that carry their machine and date, never overwritten."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def save_record(record: dict[str, Any], folder: Path, *, name: str) -> Path:
    """Write a benchmark record as ``folder/<name>-<UTC date>-<host>.json`` (it carries its machine); a later
    run on the same day gets ``-2``, ``-3``, ... rather than replacing a record the README may quote."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{datetime.now(UTC):%Y%m%d}-{record['machine']['host']}"
    path, run = folder / f"{stem}.json", 1
    while path.exists():
        run += 1
        path = folder / f"{stem}-{run}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
