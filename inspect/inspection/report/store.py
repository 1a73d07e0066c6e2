"""The results store: one embedded SQLite database per line or job.

WAL mode with synchronous=FULL and one transaction per part: a result counts only once it is committed,
so a crash, a kill or a power cut loses nothing that was reported, and readers (``inspect results``, a
dashboard) never block the line.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inspection.types import FrameResult, InspectionError

SCHEMA_VERSION = 5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    camera TEXT NOT NULL,
    recipe_name TEXT NOT NULL,
    recipe_sha256 TEXT NOT NULL,
    host TEXT NOT NULL,
    software_version TEXT NOT NULL,
    model_sha256 TEXT,
    reason TEXT,
    pid INTEGER,
    heartbeat_at TEXT
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    source TEXT NOT NULL,
    frame_counter INTEGER NOT NULL,
    path TEXT,
    acquired_at TEXT NOT NULL,
    committed_at TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    n_detections INTEGER NOT NULL,
    detections TEXT NOT NULL,
    stage_latency_ms TEXT NOT NULL,
    shift_px TEXT,
    truth TEXT,
    image_path TEXT,
    model_sha256 TEXT,
    inference TEXT,
    crop_paths TEXT
);
CREATE INDEX IF NOT EXISTS results_by_time ON results(acquired_at);
CREATE INDEX IF NOT EXISTS results_by_verdict ON results(verdict);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    result_id INTEGER NOT NULL REFERENCES results(id),
    detection INTEGER NOT NULL,
    label TEXT NOT NULL,
    model_label TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_by_result ON reviews(result_id, detection);
"""
_MIGRATIONS = {
    # from version: the statements that bring a database of that version to the next
    1: ("ALTER TABLE runs ADD COLUMN model_sha256 TEXT", "ALTER TABLE runs ADD COLUMN reason TEXT",
        "ALTER TABLE results ADD COLUMN model_sha256 TEXT", "ALTER TABLE results ADD COLUMN inference TEXT"),
    2: ("ALTER TABLE runs ADD COLUMN pid INTEGER",),
    3: ("ALTER TABLE results ADD COLUMN crop_paths TEXT",),  # the reviews table comes with the schema script
    4: ("ALTER TABLE runs ADD COLUMN heartbeat_at TEXT",),
}
"""Version 2 (0.2): the classifier on the line. Runs name their model and why they failed; results name the
model that classified their detections and how inference went (candidates, batch sizes, wait in the batcher).
Version 3: runs name the process that writes them, so a run whose process was killed is found and closed.
Version 4: defect review. Results keep the crops their detections were classified on (``crop_paths``, one per
detection) and ``reviews`` holds what an operator said about each detection (every review kept; the newest counts).
Version 5: a running run's process writes ``heartbeat_at`` every few seconds, so readers on any host can tell a
run whose process is gone before the next writer closes it.
"""
RESULT_COLUMNS = (
    "id", "run_id", "source", "frame_counter", "path", "acquired_at", "committed_at", "latency_ms", "verdict",
    "reason", "n_detections", "detections", "stage_latency_ms", "shift_px", "truth", "image_path", "model_sha256",
    "inference", "crop_paths",
)
_JSON_COLUMNS = ("detections", "stage_latency_ms", "shift_px", "truth", "inference", "crop_paths")


class StoreError(InspectionError, RuntimeError):
    """A database that cannot be used; the file is left as it was."""


def write_failure(path: Path, exc: sqlite3.Error) -> StoreError:
    """The one-line error for a database that cannot take a write (full disk, read-only file or folder, I/O)."""
    return StoreError(f"{path}: cannot write the results database ({exc}); check that its disk has space and that "
                      "the file and its folder are writable")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


HEARTBEAT_S = 5.0
"""How often a running run's process writes its heartbeat."""
SILENT_AFTER_S = 60.0
"""A run of another host with no heartbeat for this long is shown as ``unresponsive`` (a run of this host is
known at once, from its process)."""
END_RECORD_BYTES = 2048


def end_record_path(db: Path, run_id: int) -> Path:
    """The file beside ``db`` that holds a run's end when the database could not take it (a full disk): reserved
    when the run starts, so writing it later needs no new disk space; the next writer records it and removes it."""
    return db.with_name(f"{db.name}.run{run_id}.end")


def _reserve_end_record(db: Path, run_id: int) -> None:
    # Without it, a run the database cannot end is still found interrupted.
    with contextlib.suppress(OSError), end_record_path(db, run_id).open("wb") as handle:
        handle.write(b" " * END_RECORD_BYTES)
        handle.flush()
        os.fsync(handle.fileno())


def _write_end_record(db: Path, run_id: int, *, status: str, reason: str | None, finished_at: str) -> bool:
    """Overwrite the reserved end record in place; True if it holds the run's end now."""
    record = json.dumps({"status": status, "reason": reason, "finished_at": finished_at}).encode()
    if len(record) > END_RECORD_BYTES:
        record = json.dumps({"status": status, "reason": (reason or "")[:END_RECORD_BYTES // 2],
                             "finished_at": finished_at}, ensure_ascii=True).encode()[:END_RECORD_BYTES]
    try:
        with end_record_path(db, run_id).open("r+b") as handle:
            handle.write(record.ljust(END_RECORD_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        return False
    return True


def _read_end_record(db: Path, run_id: int) -> dict[str, Any] | None:
    """A run's end kept beside the database, or None (no record, or only the reserved blank)."""
    try:
        text = end_record_path(db, run_id).read_bytes()[:END_RECORD_BYTES].strip()
        record = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        return None
    return record


class _Heartbeat:
    """Writes a running run's ``heartbeat_at`` every ``HEARTBEAT_S`` from its own thread and connection, so the
    run looks alive to readers exactly as long as its process is (a failed beat, on a full disk, is skipped)."""

    def __init__(self, path: Path, run_id: int) -> None:
        self._path, self._run_id = path, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-run{run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            connection = sqlite3.connect(self._path, timeout=HEARTBEAT_S)
        except sqlite3.Error:
            return
        try:
            while not self._stop.wait(HEARTBEAT_S):
                with contextlib.suppress(sqlite3.Error), connection:
                    connection.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (_now(), self._run_id))
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="microseconds")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def table_names(connection: sqlite3.Connection) -> set[str]:
    """The tables of an open SQLite database."""
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def damaged(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    """The one-line error for a database whose pages cannot be read (damaged after it opened)."""
    return StoreError(f"{path}: damaged ({exc}); what it holds up to the damage can be recovered with: sqlite3 "
                      f"{path} .recover | sqlite3 NEW.db")


class _NamingCursor(sqlite3.Cursor):
    """A read-only cursor whose damaged-page errors name the database file (a damaged page is met while rows are
    fetched, far from where the file was opened)."""

    path: Path

    def _named(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except sqlite3.OperationalError:  # locked, busy, cannot open: not damage
            raise
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc) from None

    def execute(self, sql: str, parameters: Any = (), /) -> _NamingCursor:
        return self._named(lambda: super(_NamingCursor, self).execute(sql, parameters))  # type: ignore[no-any-return]

    def __next__(self) -> Any:
        return self._named(lambda: super(_NamingCursor, self).__next__())

    def fetchone(self) -> Any:
        return self._named(lambda: super(_NamingCursor, self).fetchone())

    def fetchall(self) -> list[Any]:
        return self._named(lambda: super(_NamingCursor, self).fetchall())  # type: ignore[no-any-return]


class _ReadConnection(sqlite3.Connection):
    """A read-only connection whose queries go through :class:`_NamingCursor`."""

    path: Path | None = None
    """Set once the file is known to be a database: until then its errors say what else it is."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if self.path is None:
            return super().execute(sql, parameters)
        cursor = self.cursor(_NamingCursor)
        cursor.path = self.path
        return cursor.execute(sql, parameters)


def connect(path: Path, *, read_only: bool, table: str = "results", schema_version: int = SCHEMA_VERSION,
            what: str = "wafer-inspect results database") -> sqlite3.Connection:
    """An SQLite connection after checking the file is ours: ``table`` present (or no tables yet), schema not
    newer than this software's."""
    if read_only and not path.is_file():
        raise StoreError(f"{path}: no {what.removeprefix('wafer-inspect ')} there")
    if not read_only and path.exists() and not path.is_file():
        raise StoreError(f"{path}: exists and is not a file")
    try:
        if read_only:
            address = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"  # a ? or # in a name stays a name
            if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
                # A read-only mount: SQLite cannot make its lock files there, and no writer can be at work either.
                address += "&immutable=1"
            connection = sqlite3.connect(address, uri=True, timeout=10, factory=_ReadConnection)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, timeout=10, check_same_thread=False)
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = table_names(connection)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create its folder ({exc.strerror or exc})") from None
    except sqlite3.OperationalError as exc:  # cannot open or read: permissions, a read-only or full disk, I/O
        raise StoreError(f"{path}: cannot open the {what} ({exc}); check the path, its permissions and its "
                         "disk") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a {what} ({exc})") from None
    if version > schema_version:
        connection.close()
        raise StoreError(f"{path}: schema version {version} is newer than this software's {schema_version}")
    if tables and table not in tables:
        connection.close()
        raise StoreError(f"{path}: an SQLite database of another application (tables: {', '.join(sorted(tables))})")
    if isinstance(connection, _ReadConnection):
        connection.path = path
    return connection


def create_schema(connection: sqlite3.Connection, *, schema: str, version: int, path: Path) -> None:
    """Durable settings (WAL, synchronous=FULL) and the tables, in one transaction; a database that cannot take
    them (a read-only file, a full disk) is closed and reported as StoreError."""
    try:
        with connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.executescript(schema)
            connection.execute(f"PRAGMA user_version={version}")
    except sqlite3.Error as exc:
        connection.close()
        raise write_failure(path, exc) from None


def migrate(connection: sqlite3.Connection, *, path: Path) -> int:
    """Bring a results database of an earlier schema version to this software's, in place and in one transaction
    (every row kept; a failure leaves the file as it was). Returns the version found."""
    found = connection.execute("PRAGMA user_version").fetchone()[0]
    tables = table_names(connection)
    if "results" not in tables or found >= SCHEMA_VERSION:
        return found
    try:
        connection.execute("BEGIN IMMEDIATE")
        for version in range(found, SCHEMA_VERSION):
            for statement in _MIGRATIONS[version]:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        connection.execute("ROLLBACK")
        raise StoreError(f"{path}: cannot migrate the results database from schema version {found} to "
                         f"{SCHEMA_VERSION} ({exc}); it was left as it was") from None
    return found


def open_for_writing(path: Path) -> tuple[sqlite3.Connection, int]:
    """A writable connection to the results database at ``path`` (created if missing), migrated to this
    software's schema; returns it and the schema version found."""
    connection = connect(path, read_only=False)
    try:
        connection.isolation_level = None  # explicit transactions: the migration's, then one per write
        migrated_from = migrate(connection, path=path)
        connection.isolation_level = ""
    except sqlite3.Error as exc:
        connection.close()
        raise write_failure(path, exc) from None
    create_schema(connection, schema=_SCHEMA, version=SCHEMA_VERSION, path=path)
    return connection, migrated_from


def select_columns(connection: sqlite3.Connection, table: str, columns: Sequence[str]) -> str:
    """``columns`` for a SELECT from ``table``, NULL for those an older schema lacks (a database written by an
    earlier version is read as it is; only a writer migrates it)."""
    present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
    return ", ".join(column if column in present else f"NULL AS {column}" for column in columns)


class ResultStore:
    """Writes runs, results and events. Use from one thread (the line loop's writer).

    A database of an earlier schema version is migrated in place on opening; a newer one is refused.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._connection, self.migrated_from = open_for_writing(self.path)
        self._heartbeats: dict[int, _Heartbeat] = {}
        self.closed_runs = self._close_abandoned_runs()

    def _close_abandoned_runs(self) -> list[int]:
        """Close the runs of this host left ``running`` by a process that no longer exists: with the end its
        process kept beside the database when the database could not take it (a full disk), else ``interrupted``
        (killed, crashed, power cut). A run's status then says what happened to it. Returns their ids."""
        rows = self._connection.execute("SELECT run_id, pid FROM runs WHERE status = 'running' AND host = ?",
                                        (platform.node(),)).fetchall()
        abandoned = [(run_id, pid) for run_id, pid in rows if pid is None or not process_alive(pid)]
        for run_id, pid in abandoned:
            status, reason, finished_at = _abandoned_end(self.path, run_id, pid)
            self._commit("UPDATE runs SET status = ?, reason = ?, finished_at = ? WHERE run_id = ?",
                         (status, reason, finished_at, run_id))
            end_record_path(self.path, run_id).unlink(missing_ok=True)
        return [run_id for run_id, _ in abandoned]

    def _commit(self, statement: str, parameters: tuple[Any, ...]) -> int:
        """Run one statement in its own transaction; a database that cannot take it raises StoreError (the
        transaction is rolled back, so the file holds every earlier commit and nothing half-written)."""
        try:
            with self._connection:
                return int(self._connection.execute(statement, parameters).lastrowid or 0)
        except sqlite3.Error as exc:
            raise write_failure(self.path, exc) from None

    def start_run(self, *, camera: str, recipe_name: str, recipe_sha256: str, software_version: str) -> int:
        """A new run (status ``running``, its heartbeat started) and its id; its model is named once loaded
        (:meth:`set_run_model`)."""
        now = _now()
        run_id = self._commit(
            "INSERT INTO runs (started_at, status, camera, recipe_name, recipe_sha256, host, software_version, pid,"
            " heartbeat_at) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
            (now, camera, recipe_name, recipe_sha256, platform.node(), software_version, os.getpid(), now),
        )
        _reserve_end_record(self.path, run_id)
        self._heartbeats[run_id] = _Heartbeat(self.path, run_id)
        return run_id

    def set_run_model(self, run_id: int, *, model_sha256: str | None) -> None:
        self._commit("UPDATE runs SET model_sha256 = ? WHERE run_id = ?", (model_sha256, run_id))

    def finish_run(self, run_id: int, *, status: str, reason: str | None = None) -> None:
        """End a run with its status and reason. A database that cannot take it (a full disk) gets it later: the
        end is kept in the run's reserved end record, which readers show and the next writer records; the
        StoreError raised then says so."""
        heartbeat = self._heartbeats.pop(run_id, None)
        if heartbeat is not None:
            heartbeat.stop()
        finished_at = _now()
        statement = "UPDATE runs SET finished_at = ?, status = ?, reason = ? WHERE run_id = ?"
        parameters = (finished_at, status, reason, run_id)
        try:
            try:
                self._commit(statement, parameters)
            except StoreError:
                # A database that refused a result (its disk full) often takes the run's end once its write-ahead
                # log is emptied into the file: the run then says why it ended instead of being found "interrupted".
                with contextlib.suppress(sqlite3.Error):
                    self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._commit(statement, parameters)
        except StoreError as exc:
            if not _write_end_record(self.path, run_id, status=status, reason=reason, finished_at=finished_at):
                raise
            raise StoreError(f"{exc}; the run's end is kept in {end_record_path(self.path, run_id)}, which readers "
                             "show and the next `inspect run` on this database records") from None
        end_record_path(self.path, run_id).unlink(missing_ok=True)

    def add_result(self, run_id: int, result: FrameResult, *, image_path: str | None = None,
                   crop_paths: Sequence[str | None] | None = None) -> int:
        """Commit one part's result (its own transaction) and return its row id; ``crop_paths`` names, per
        detection, the file of the crop the classifier saw (None where none was saved)."""
        committed_s = datetime.now(UTC).timestamp()
        row = (
            run_id, result.source_id, result.frame_counter, result.path, iso_utc(result.acquired_at_s),
            iso_utc(committed_s), round((committed_s - result.acquired_at_s) * 1000.0, 3), str(result.verdict),
            result.reason, len(result.detections), json.dumps([d.to_dict() for d in result.detections]),
            json.dumps({k: round(v, 3) for k, v in result.stage_latency_ms.items()}),
            json.dumps([round(v, 3) for v in result.shift_px]) if result.shift_px is not None else None,
            json.dumps([t.to_dict() for t in result.truth]) if result.truth is not None else None,
            image_path, result.model_sha256,
            json.dumps(result.extras) if result.extras else None,
            None if crop_paths is None else json.dumps(list(crop_paths)),
        )
        return self._commit(
            f"INSERT INTO results ({', '.join(RESULT_COLUMNS[1:])}) VALUES ({', '.join('?' * len(row))})", row)

    def add_event(self, run_id: int, *, kind: str, source: str, detail: str) -> None:
        self._commit("INSERT INTO events (run_id, at, kind, source, detail) VALUES (?, ?, ?, ?, ?)",
                     (run_id, _now(), kind, source, detail))

    def close(self) -> None:
        for heartbeat in self._heartbeats.values():
            heartbeat.stop()
        self._heartbeats.clear()
        self._connection.close()


def _abandoned_end(db: Path, run_id: int, pid: int | None) -> tuple[str, str, str | None]:
    """(status, reason, finished_at) of a run whose process is gone without ending it in the database."""
    record = _read_end_record(db, run_id)
    if record is not None:
        return (record["status"], f"{record.get('reason') or ''} (kept beside the database by its process, "
                "which could not write it there)".lstrip(), record.get("finished_at"))
    process = "its process" if pid is None else f"its process (pid {pid})"
    return "interrupted", f"{process} ended without finishing the run: killed, crashed or the power failed", None


def _run_as_seen(db: Path, run: dict[str, Any], *, now_s: float) -> dict[str, Any]:
    """A stored run as a reader should show it: a ``running`` run whose process is gone (this host) is shown with
    the end its process kept beside the database, else ``interrupted``; one of another host that sent no heartbeat
    for ``SILENT_AFTER_S`` is shown ``unresponsive``. The database is not changed (readers do not write)."""
    if run["status"] != "running":
        return run
    pid, heartbeat = run["pid"], run["heartbeat_at"]
    if run["host"] == platform.node() and (not isinstance(pid, int) or not process_alive(pid)):
        status, reason, finished_at = _abandoned_end(db, run["run_id"], pid if isinstance(pid, int) else None)
        return {**run, "status": status, "reason": reason, "finished_at": finished_at}
    if isinstance(heartbeat, str) and run["host"] != platform.node():
        try:
            silent_s = now_s - datetime.fromisoformat(heartbeat).timestamp()
        except ValueError:  # not written by this software
            return run
        if silent_s > SILENT_AFTER_S:
            return {**run, "status": "unresponsive",
                    "reason": f"no heartbeat from {run['host']} for {silent_s:.0f} s: its process is stopped or gone"}
    return run


def read_results(path: str | Path, *, verdict: str | None = None, since: str | None = None,
                 run_id: int | None = None, result_id: int | None = None, last: int | None = None
                 ) -> Iterator[dict[str, Any]]:
    """Stored results in commit order, JSON columns decoded.

    Parameters
    ----------
    path : str or Path
        The results database, opened read-only.
    verdict : {"pass", "fail", "review", "error"}, optional
        Only results with this verdict.
    since : str, optional
        Only results acquired at or after this ISO-8601 time (UTC if no zone is given).
    run_id : int, optional
        Only this run's results.
    result_id : int, optional
        Only the result with this id.
    last : int, optional
        Only the newest ``last`` of those (still yielded in commit order).

    Yields
    ------
    dict
        One stored result: its columns, detections and stage timings decoded from JSON.
    """
    connection = connect(Path(path), read_only=True)
    clauses, params = [], []
    if verdict is not None:
        clauses.append("verdict = ?")
        params.append(verdict)
    if since is not None:
        clauses.append("acquired_at >= ?")
        params.append(_normalise_time(since))
    if run_id is not None:
        clauses.append("run_id = ?")
        params.append(str(run_id))
    if result_id is not None:
        clauses.append("id = ?")
        params.append(str(result_id))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    try:
        columns = select_columns(connection, "results", RESULT_COLUMNS)
        query = f"SELECT {columns} FROM results{where} ORDER BY id"
        if last is not None:
            query = f"SELECT * FROM (SELECT {columns} FROM results{where} ORDER BY id DESC LIMIT ?) ORDER BY id"
            params.append(str(int(last)))
        cursor = connection.execute(query, params)
        for values in cursor:
            yield _checked(Path(path), "result", dict(zip(RESULT_COLUMNS, values, strict=True)), _RESULT_TYPES)
    finally:
        connection.close()


_TEXT, _NUMBER, _INTEGER = (str,), (int, float), (int,)
_RESULT_TYPES: dict[str, tuple[type, ...]] = {
    "id": _INTEGER, "run_id": _INTEGER, "source": _TEXT, "frame_counter": _INTEGER, "path": (str, type(None)),
    "acquired_at": _TEXT, "committed_at": _TEXT, "latency_ms": _NUMBER, "verdict": _TEXT, "reason": _TEXT,
    "n_detections": _INTEGER, "detections": (list,), "stage_latency_ms": (dict,), "shift_px": (list, type(None)),
    "truth": (list, type(None)), "image_path": (str, type(None)), "model_sha256": (str, type(None)),
    "inference": (dict, type(None)), "crop_paths": (list, type(None)),
}
_RUN_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": _INTEGER, "started_at": _TEXT, "finished_at": (str, type(None)), "status": _TEXT, "camera": _TEXT,
    "recipe_name": _TEXT, "recipe_sha256": _TEXT, "host": _TEXT, "software_version": _TEXT,
    "model_sha256": (str, type(None)), "reason": (str, type(None)), "pid": (int, type(None)),
    "heartbeat_at": (str, type(None)),
}


def _checked(path: Path, what: str, row: dict[str, Any], types: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """A stored row with its JSON columns decoded, or a StoreError naming the row, the column and the value that
    this software did not write (a database edited or damaged by something else): readers such as ``inspect
    serve`` then say what is wrong instead of failing somewhere in a page."""
    key = row.get("id", row.get("run_id"))
    for column, expected in types.items():
        value = row.get(column)
        if column in _JSON_COLUMNS and isinstance(value, str):
            try:
                value = row[column] = json.loads(value)
            except ValueError:
                raise StoreError(f"{path}: {what} {key}: {column} is not JSON ({value[:60]!r}); the database was "
                                 "changed by something other than wafer-inspect") from None
        if column in row and (not isinstance(value, expected) or isinstance(value, bool)):
            names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in expected)
            raise StoreError(f"{path}: {what} {key}: {column} is {value!r:.60}, expected {names}; the database was "
                             "changed by something other than wafer-inspect")
    for column in ("acquired_at", "committed_at", "started_at"):
        if column in row:
            try:
                datetime.fromisoformat(row[column])
            except ValueError:
                raise StoreError(f"{path}: {what} {key}: {column} is {row[column]!r:.60}, expected an ISO-8601 time; "
                                 "the database was changed by something other than wafer-inspect") from None
    if what == "result" and not all(isinstance(d, dict) and isinstance(d.get("kind"), str)
                                    for d in row["detections"]):
        raise StoreError(f"{path}: result {key}: detections are not the records wafer-inspect writes")
    return row


RUN_COLUMNS = ("run_id", "started_at", "finished_at", "status", "camera", "recipe_name", "recipe_sha256", "host",
               "software_version", "model_sha256", "reason")


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    """Every run, newest first, with its result counts by verdict.

    Parameters
    ----------
    path : str or Path
        The results database, opened read-only.

    Returns
    -------
    list of dict
        The run's columns (``RUN_COLUMNS``) and ``verdicts``: {verdict: count}. A run stored as ``running`` whose
        process is gone is shown as it ended (``interrupted``, or the end its process kept beside the database);
        one of another host without a heartbeat for ``SILENT_AFTER_S`` as ``unresponsive``.
    """
    connection = connect(Path(path), read_only=True)
    try:
        now_s = time.time()
        columns = select_columns(connection, "runs", (*RUN_COLUMNS, "pid", "heartbeat_at"))
        runs = [_run_as_seen(Path(path), _checked(Path(path), "run", dict(zip((*RUN_COLUMNS, "pid", "heartbeat_at"),
                                                                               values, strict=True)), _RUN_TYPES),
                             now_s=now_s)
                for values in connection.execute(f"SELECT {columns} FROM runs ORDER BY run_id DESC")]
        for run in runs:
            run.pop("pid", None)
            run.pop("heartbeat_at", None)
        counts: dict[int, dict[str, int]] = {}
        for run_id, verdict, count in connection.execute(
                "SELECT run_id, verdict, COUNT(*) FROM results GROUP BY run_id, verdict"):
            counts.setdefault(run_id, {})[str(verdict)] = count
        for run in runs:
            run["verdicts"] = counts.get(run["run_id"], {})
        return runs
    finally:
        connection.close()


def read_events(path: str | Path, *, run_id: int | None = None) -> list[dict[str, Any]]:
    """Stored events (skipped inputs and the like), in the order they were stored.

    Parameters
    ----------
    path : str or Path
        The results database, opened read-only.
    run_id : int, optional
        Only this run's events.

    Returns
    -------
    list of dict
        ``run_id``, ``at`` (ISO-8601 UTC), ``kind``, ``source`` and ``detail``.
    """
    connection = connect(Path(path), read_only=True)
    try:
        query = "SELECT run_id, at, kind, source, detail FROM events"
        rows = connection.execute(query + " WHERE run_id = ?" if run_id else query, (run_id,) if run_id else ())
        return [dict(zip(("run_id", "at", "kind", "source", "detail"), r, strict=True)) for r in rows]
    finally:
        connection.close()


def _normalise_time(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise StoreError(f"--since {text!r}: expected an ISO-8601 date or time, e.g. 2026-11-21T08:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
