"""The lot grading database: one SQLite file per grading job, one transaction per wafer.

A wafer's row, its dies and its thumbnails are committed together, so a crash or a kill never leaves half a
wafer; ``(lot_id, wafer_id)`` is unique, so a re-run sees which wafers are finished and skips them.
"""

from __future__ import annotations

import io
import json
import os
import platform
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspection.report.store import (
    StoreError,
    connect,
    create_schema,
    process_alive,
    table_names,
    write_failure,
)
from inspection.types import GradedWafer, WaferReport

LOT_SCHEMA_VERSION = 3
LOT_DATABASE = "grade.sqlite"
"""The grading database's name in each ``inspect grade --out`` folder."""
_WHAT = "wafer-inspect lot grading database"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS grade_runs (
    run_id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    recipe_name TEXT NOT NULL,
    recipe_sha256 TEXT NOT NULL,
    engine TEXT NOT NULL,
    workers INTEGER NOT NULL,
    host TEXT NOT NULL,
    software_version TEXT NOT NULL,
    pid INTEGER
);
CREATE TABLE IF NOT EXISTS wafers (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES grade_runs(run_id),
    lot_id TEXT NOT NULL,
    wafer_id TEXT NOT NULL,
    slot INTEGER NOT NULL,
    image_path TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    verdict TEXT NOT NULL,
    pattern TEXT,
    pattern_confidence REAL,
    root_cause TEXT,
    yield_fraction REAL,
    defect_density_per_cm2 REAL,
    n_dies INTEGER,
    n_defective INTEGER,
    die_map BLOB,
    map_origin_row INTEGER,
    map_origin_col INTEGER,
    geometry TEXT NOT NULL,
    timings_ms TEXT NOT NULL,
    class_names TEXT NOT NULL,
    truth_pattern TEXT,
    graded_at TEXT NOT NULL,
    UNIQUE (lot_id, wafer_id)
);
CREATE TABLE IF NOT EXISTS dies (
    wafer INTEGER NOT NULL REFERENCES wafers(id),
    row INTEGER NOT NULL,
    col INTEGER NOT NULL,
    x_mm REAL NOT NULL,
    y_mm REAL NOT NULL,
    class TEXT NOT NULL,
    defect_score REAL NOT NULL,
    defective INTEGER NOT NULL,
    x_rel_um REAL NOT NULL,
    y_rel_um REAL NOT NULL,
    x_size_um REAL NOT NULL,
    y_size_um REAL NOT NULL,
    area_um2 REAL NOT NULL,
    truth_class TEXT,
    PRIMARY KEY (wafer, row, col)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS thumbnails (
    wafer INTEGER NOT NULL REFERENCES wafers(id),
    row INTEGER NOT NULL,
    col INTEGER NOT NULL,
    class TEXT NOT NULL,
    defect_score REAL NOT NULL,
    png BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS review_dies (
    wafer INTEGER NOT NULL REFERENCES wafers(id),
    row INTEGER NOT NULL,
    col INTEGER NOT NULL,
    class TEXT NOT NULL,
    defect_score REAL NOT NULL,
    input_png BLOB NOT NULL,
    PRIMARY KEY (wafer, row, col)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS die_reviews (
    id INTEGER PRIMARY KEY,
    wafer INTEGER NOT NULL REFERENCES wafers(id),
    row INTEGER NOT NULL,
    col INTEGER NOT NULL,
    label TEXT NOT NULL,
    model_label TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL
);
"""
"""Version 2: defect review. ``review_dies`` keeps the classifier's input (die, median die, difference) of each
wafer's worst defective dies, ``die_reviews`` what an operator said of them (every review kept; the newest counts).
A version 1 file takes the new tables when it is next written. Version 3: grading runs name their process, so a run
whose process was killed is found and marked ``interrupted`` when the lot is next graded."""
WAFER_COLUMNS = ("id", "run_id", "lot_id", "wafer_id", "slot", "image_path", "status", "reason", "verdict", "pattern",
                 "pattern_confidence", "root_cause", "yield_fraction", "defect_density_per_cm2", "n_dies",
                 "n_defective", "die_map", "map_origin_row", "map_origin_col", "geometry", "timings_ms",
                 "class_names", "truth_pattern", "graded_at")
DIE_COLUMNS = ("row", "col", "x_mm", "y_mm", "class", "defect_score", "defective", "x_rel_um", "y_rel_um",
               "x_size_um", "y_size_um", "area_um2", "truth_class")


def _report_columns(report: WaferReport | None) -> tuple[Any, ...]:
    """The wafers table's columns from pattern to geometry (NULL for a wafer that failed)."""
    if report is None:
        return (None,) * 8 + (0, 0, "{}")
    pattern = report.pattern
    return (pattern.pattern, pattern.confidence, pattern.root_cause, report.yield_fraction,
            report.defect_density_per_cm2, len(report.dies), int(report.dies.defective.sum()), _npy(report.die_map),
            *report.map_origin_row_col, json.dumps(report.geometry.to_dict()))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class LotStore:
    """Writes grading runs and graded wafers. Only the driver process writes; workers return results to it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._connection = open_lot_database(self.path, read_only=False)
        self._close_abandoned_runs()

    def _close_abandoned_runs(self) -> None:
        """Mark ``interrupted`` this host's grading runs left ``running`` by a process that is gone (killed)."""
        rows = self._connection.execute("SELECT run_id, pid FROM grade_runs WHERE status = 'running' AND host = ?",
                                        (platform.node(),)).fetchall()
        abandoned = [(run_id,) for run_id, pid in rows if pid is None or not process_alive(pid)]
        try:
            with self._connection:
                self._connection.executemany("UPDATE grade_runs SET status = 'interrupted' WHERE run_id = ?", abandoned)
        except sqlite3.Error as exc:
            raise write_failure(self.path, exc) from None

    def finished(self) -> set[tuple[str, str]]:
        """(lot_id, wafer_id) of every wafer already stored, graded or failed-to-grade."""
        return {(lot, wafer) for lot, wafer in self._connection.execute("SELECT lot_id, wafer_id FROM wafers")}

    def start_run(self, *, recipe_name: str, recipe_sha256: str, engine: str, workers: int,
                  software_version: str) -> int:
        try:
            with self._connection:
                cursor = self._connection.execute(
                    "INSERT INTO grade_runs (started_at, status, recipe_name, recipe_sha256, engine, workers, host,"
                    " software_version, pid) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                    (_now(), recipe_name, recipe_sha256, engine, workers, platform.node(), software_version,
                     os.getpid()))
        except sqlite3.Error as exc:
            raise write_failure(self.path, exc) from None
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, *, status: str) -> None:
        try:
            with self._connection:
                self._connection.execute("UPDATE grade_runs SET finished_at = ?, status = ? WHERE run_id = ?",
                                         (_now(), status, run_id))
        except sqlite3.Error as exc:
            raise write_failure(self.path, exc) from None

    def add_wafer(self, run_id: int, wafer: GradedWafer) -> int:
        """Commit one wafer with its dies and thumbnails in one transaction; returns its row id."""
        item, report = wafer.item, wafer.report
        row = (
            run_id, item.lot_id, item.wafer_id, item.slot, item.image_path, wafer.status, wafer.reason,
            str(wafer.verdict), *_report_columns(report),
            json.dumps({k: round(v, 2) for k, v in wafer.timings_ms.items()}),
            json.dumps([] if report is None else list(report.class_names)), item.truth_pattern, _now(),
        )
        try:
            return self._insert_wafer(row, report)
        except sqlite3.Error as exc:  # rolled back: the file holds every earlier wafer and nothing half-written
            raise write_failure(self.path, exc) from None

    def _insert_wafer(self, row: tuple[Any, ...], report: WaferReport | None) -> int:
        with self._connection:
            cursor = self._connection.execute(
                f"INSERT INTO wafers ({', '.join(WAFER_COLUMNS[1:])}) VALUES ({', '.join('?' * len(row))})", row)
            wafer_pk = int(cursor.lastrowid or 0)
            if report is None:
                return wafer_pk
            dies, names = report.dies, report.class_names
            truth = [names[t] if t >= 0 else None for t in dies.truth_class]
            self._connection.executemany(
                f"INSERT INTO dies (wafer, {', '.join(DIE_COLUMNS)}) VALUES ({', '.join('?' * 14)})",
                zip([wafer_pk] * len(dies), dies.row.tolist(), dies.col.tolist(), dies.x_mm.tolist(),
                    dies.y_mm.tolist(), [names[c] for c in dies.class_index], dies.defect_score.tolist(),
                    dies.defective.astype(int).tolist(), dies.x_rel_um.tolist(), dies.y_rel_um.tolist(),
                    dies.x_size_um.tolist(), dies.y_size_um.tolist(), dies.area_um2.tolist(), truth, strict=True))
            for table, pictures in (("thumbnails (wafer, row, col, class, defect_score, png)", report.thumbnails),
                                    ("review_dies (wafer, row, col, class, defect_score, input_png)",
                                     report.review_dies)):
                self._connection.executemany(
                    f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
                    [(wafer_pk, p.row, p.col, p.class_name, p.defect_score, p.png) for p in pictures])
        return wafer_pk

    def close(self) -> None:
        self._connection.close()


def open_lot_database(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection to a lot grading database after checking it is one; a writable one gets this software's
    tables (a version 1 file gains those of review)."""
    connection = connect(path, read_only=read_only, table="wafers", schema_version=LOT_SCHEMA_VERSION, what=_WHAT)
    if not read_only:
        tables = table_names(connection)
        if "grade_runs" in tables and "pid" not in {row[1] for row in connection.execute(
                "PRAGMA table_info(grade_runs)")}:  # a version 1 or 2 file: the column comes before the schema
            try:
                with connection:
                    connection.execute("ALTER TABLE grade_runs ADD COLUMN pid INTEGER")
            except sqlite3.Error as exc:
                connection.close()
                raise write_failure(path, exc) from None
        create_schema(connection, schema=_SCHEMA, version=LOT_SCHEMA_VERSION, path=path)
    return connection


def _reader(path: str | Path) -> sqlite3.Connection:
    return open_lot_database(Path(path), read_only=True)


def read_wafers(path: str | Path) -> list[dict[str, Any]]:
    """Every stored wafer in lot and slot order, JSON decoded, die map as an array."""
    connection = _reader(path)
    try:
        rows = connection.execute(f"SELECT {', '.join(WAFER_COLUMNS)} FROM wafers ORDER BY lot_id, slot, wafer_id")
        wafers = []
        for values in rows:
            wafer = dict(zip(WAFER_COLUMNS, values, strict=True))
            for column in ("geometry", "timings_ms", "class_names"):
                wafer[column] = json.loads(wafer[column])
            if wafer["die_map"] is not None:
                wafer["die_map"] = np.load(io.BytesIO(wafer["die_map"]), allow_pickle=False)
            wafers.append(wafer)
        return wafers
    finally:
        connection.close()


def read_dies(path: str | Path, wafer_pk: int) -> list[dict[str, Any]]:
    connection = _reader(path)
    try:
        rows = connection.execute(f"SELECT {', '.join(DIE_COLUMNS)} FROM dies WHERE wafer = ? ORDER BY row, col",
                                  (wafer_pk,))
        return [dict(zip(DIE_COLUMNS, values, strict=True)) for values in rows]
    finally:
        connection.close()


def read_die_truth(path: str | Path) -> list[tuple[str, float, bool]]:
    """(truth class, defect score, rejected) of every stored die whose truth is known, in one query."""
    connection = _reader(path)
    try:
        rows = connection.execute("SELECT truth_class, defect_score, defective FROM dies WHERE truth_class IS NOT NULL")
        return [(truth, score, bool(rejected)) for truth, score, rejected in rows]
    finally:
        connection.close()


def read_thumbnails(path: str | Path, wafer_pk: int) -> list[dict[str, Any]]:
    connection = _reader(path)
    try:
        rows = connection.execute("SELECT row, col, class, defect_score, png FROM thumbnails WHERE wafer = ? "
                                  "ORDER BY defect_score DESC", (wafer_pk,))
        return [dict(zip(("row", "col", "class", "defect_score", "png"), values, strict=True)) for values in rows]
    finally:
        connection.close()


def read_review_dies(path: str | Path, wafer_pk: int | None = None, *, row_col: tuple[int, int] | None = None
                     ) -> list[dict[str, Any]]:
    """The dies kept for review (worst first within each wafer), with the classifier's input as a PNG.

    Parameters
    ----------
    path : str or Path
        The lot grading database (one written before review existed has none).
    wafer_pk : int, optional
        Only this wafer's (its ``wafers.id``).
    row_col : tuple of int, optional
        Only the die at this grid row and column.

    Returns
    -------
    list of dict
        ``wafer`` (id), ``lot_id``, ``wafer_id``, ``row``, ``col``, ``class``, ``defect_score`` and ``input_png``
        (3 channels: the die, the wafer's median die, their difference).
    """
    connection = _reader(path)
    try:
        if "review_dies" not in table_names(connection):
            return []
        clauses, parameters = [], []
        if wafer_pk is not None:
            clauses.append("d.wafer = ?")
            parameters.append(wafer_pk)
        if row_col is not None:
            clauses.append("d.row = ? AND d.col = ?")
            parameters += row_col
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = connection.execute(
            "SELECT d.wafer, w.lot_id, w.wafer_id, d.row, d.col, d.class, d.defect_score, d.input_png "
            f"FROM review_dies d JOIN wafers w ON w.id = d.wafer{where} ORDER BY w.lot_id, w.slot, d.defect_score DESC",
            parameters)
        return [dict(zip(REVIEW_DIE_COLUMNS, values, strict=True)) for values in rows]
    finally:
        connection.close()


REVIEW_DIE_COLUMNS = ("wafer", "lot_id", "wafer_id", "row", "col", "class", "defect_score", "input_png")

__all__ = ["LOT_DATABASE", "LotStore", "StoreError", "open_lot_database", "read_die_truth", "read_dies",
           "read_review_dies", "read_thumbnails", "read_wafers"]
