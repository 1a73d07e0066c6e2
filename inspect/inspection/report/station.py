"""What the station's pages read: the newest run's figures and rejected parts, the next part to review, and the
lot reports ``inspect grade`` wrote (their folders and the figures of their ``lot.json``)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspection.report.store import connect, read_results, read_runs

REJECTED = ("fail", "review", "error")
"""The verdicts of parts an operator looks at."""
MAX_LOT_JSON_BYTES = 20_000_000


def station_status(db: Path, *, window: int = 200) -> dict[str, Any]:
    """What the station page shows, from the newest run of ``db``.

    Parameters
    ----------
    db : Path
        The results database (it may not exist yet).
    window : int
        The newest results that frames/s and latency are computed over.

    Returns
    -------
    dict
        The JSON of ``/api/status``: ``run`` (its columns and verdict counts; None before the first run),
        ``fps``, ``latency_p50_ms``, ``latency_p99_ms`` and ``rejected``: the last six parts that did not pass
        (id, frame counter, verdict, reason, detections, whether a picture exists).
    """
    runs = read_runs(db) if db.is_file() else []
    if not runs:
        return {"run": None, "fps": 0.0, "latency_p50_ms": None, "latency_p99_ms": None, "rejected": []}
    run = runs[0]
    recent = list(read_results(db, run_id=run["run_id"], last=window))
    fps = 0.0
    if len(recent) >= 2:
        span_s = (datetime.fromisoformat(recent[-1]["committed_at"])
                  - datetime.fromisoformat(recent[0]["committed_at"])).total_seconds()
        fps = (len(recent) - 1) / span_s if span_s > 0 else 0.0
    latencies = np.array([row["latency_ms"] for row in recent], float)
    rejected = [row for row in recent if row["verdict"] in REJECTED][-6:][::-1]
    return {
        "run": run, "fps": round(fps, 2),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
        "latency_p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else None,
        "rejected": [{"id": row["id"], "frame_counter": row["frame_counter"], "verdict": row["verdict"],
                      "reason": row["reason"], "detections": [d["kind"] for d in row["detections"]],
                      "picture": bool(row["image_path"])} for row in rejected],
    }


def next_rejected_id(db: Path, *, run_id: int, after_id: int) -> int | None:
    """The id of run ``run_id``'s first result after ``after_id`` that did not pass (None: there is none)."""
    connection = connect(db, read_only=True)
    try:
        found = connection.execute("SELECT id FROM results WHERE run_id = ? AND id > ? AND verdict != 'pass' "
                                   "ORDER BY id LIMIT 1", (run_id, after_id)).fetchone()
    finally:
        connection.close()
    return None if found is None else int(found[0])


def lot_names(lots: Path) -> list[str]:
    """The lot reports' folders in ``lots``, relative to it ("." for ``lots`` itself), by name."""
    reports = sorted(lots.glob("report.html")) + sorted(lots.glob("*/report.html"))
    return [report.parent.relative_to(lots).as_posix() for report in reports]


def lot_reports(lots: Path) -> list[dict[str, Any]]:
    """The lot reports in ``lots`` (a folder of ``inspect grade --out`` folders, or one of them), by name.

    Parameters
    ----------
    lots : Path
        The folder to list.

    Returns
    -------
    list of dict
        ``name`` (the folder, relative to ``lots``; "." for ``lots`` itself), ``figures`` (from its lot.json:
        wafers, verdicts, mean yield, patterns; empty when it cannot be read) and ``problem`` (why not, or None).
    """
    found = []
    for name in lot_names(lots):
        try:
            figures, problem = _lot_json_figures(lots / name / "lot.json"), None
        except (OSError, ValueError) as exc:  # a lot without its figures is still listed, with the reason
            figures, problem = {}, str(exc)
        found.append({"name": name, "figures": figures, "problem": problem})
    return found


def _lot_json_figures(path: Path) -> dict[str, Any]:
    """The figures of a lot's ``lot.json`` as ``inspect grade`` writes them (wafers, verdicts, mean yield).

    Raises
    ------
    ValueError
        Naming the field that is not as ``inspect grade`` writes it (a file edited or written by something else).
    """
    if path.stat().st_size > MAX_LOT_JSON_BYTES:
        raise ValueError(f"{path.name}: {path.stat().st_size:,} bytes; inspect grade writes at most a few MB")
    try:
        figures = json.loads(path.read_text(encoding="utf-8")).get("figures", {})
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, AttributeError):
        raise ValueError(f"{path.name}: not the JSON object inspect grade writes") from None
    if not isinstance(figures, dict):
        raise ValueError(f"{path.name}: figures is {figures!r:.40}, expected an object")
    checks = {"wafers": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
              "mean_yield": lambda v: v is None or (isinstance(v, float | int) and not isinstance(v, bool)
                                                      and 0 <= v <= 1),
              "verdicts": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(n, int)
                                                                  and not isinstance(n, bool) for k, n in v.items())}
    for field, fits in checks.items():
        if field in figures and not fits(figures[field]):
            raise ValueError(f"{path.name}: figures.{field} is {figures[field]!r:.40}, not what inspect grade writes")
    return figures
