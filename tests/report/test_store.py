from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inspection.report import ResultStore, StoreError, read_events, read_results, read_runs
from inspection.report import store as store_module
from inspection.report.store import SCHEMA_VERSION, end_record_path
from inspection.types import Defect, Detection, FrameResult, Region, Verdict


def result(counter: int, verdict: Verdict = Verdict.FAIL) -> FrameResult:
    region = Region(1, 20, 500.0, (1, 2, 6, 7), (3.5, 4.5), -35.0, 80.0)
    return FrameResult("sim:wafer", counter, 1_700_000_000.0 + counter, verdict, (Detection("dark", 0.3, region),),
                       {"preprocess": 0.5, "align": 3.25}, reason="rule", shift_px=(0.5, -1.25),
                       truth=(Defect("particle", (0, 1, 7, 8)),))


def test_round_trip_in_wal_mode(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.db")
    run = store.start_run(camera="sim:wafer", recipe_name="r", recipe_sha256="0" * 64, software_version="t")
    store.add_result(run, result(0))
    store.add_result(run, result(1, Verdict.PASS), image_path="x.png")
    store.add_event(run, kind="skipped", source="bad.png", detail="unreadable")
    store.finish_run(run, status="completed")
    store.close()
    with sqlite3.connect(tmp_path / "r.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = list(read_results(tmp_path / "r.db"))
    assert [r["frame_counter"] for r in rows] == [0, 1]
    first = rows[0]
    assert first["verdict"] == "fail" and first["acquired_at"] == "2023-11-14T22:13:20.000000+00:00"
    assert first["detections"][0]["area_um2"] == 500.0 and first["detections"][0]["kind"] == "dark"
    assert first["stage_latency_ms"] == {"preprocess": 0.5, "align": 3.25}
    assert first["shift_px"] == [0.5, -1.25] and first["truth"][0]["kind"] == "particle"
    assert [r["frame_counter"] for r in read_results(tmp_path / "r.db", verdict="pass")] == [1]
    assert [r["frame_counter"] for r in read_results(tmp_path / "r.db", since="2023-11-14T22:13:21")] == [1]
    assert read_events(tmp_path / "r.db")[0]["source"] == "bad.png"


def test_a_file_that_is_not_our_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.db"
    text_file.write_bytes(b"lot 17 notes: do not delete" * 100)
    before = text_file.read_bytes()
    with pytest.raises(StoreError, match=r"notes\.db: not a wafer-inspect results database"):
        ResultStore(text_file)
    assert text_file.read_bytes() == before

    other_app = tmp_path / "mes.db"
    with sqlite3.connect(other_app) as connection:
        connection.execute("CREATE TABLE lots (id INTEGER)")
    before = other_app.read_bytes()
    with pytest.raises(StoreError, match=r"an SQLite database of another application \(tables: lots\)"):
        ResultStore(other_app)
    assert other_app.read_bytes() == before


def test_reading_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no results database there"):
        list(read_results(tmp_path / "missing.db"))
    ResultStore(tmp_path / "r.db").close()
    with pytest.raises(StoreError, match=r"--since 'yesterday': expected an ISO-8601 date or time"):
        list(read_results(tmp_path / "r.db", since="yesterday"))


def test_existing_results_survive_reopening(tmp_path: Path) -> None:
    for _ in range(2):
        store = ResultStore(tmp_path / "r.db")
        run = store.start_run(camera="c", recipe_name="r", recipe_sha256="s", software_version="t")
        store.add_result(run, result(run))
        store.close()
    assert [r["run_id"] for r in read_results(tmp_path / "r.db")] == [1, 2]


def test_a_version_1_database_is_migrated_in_place_with_every_row_intact(tmp_path: Path) -> None:
    # Written by wafer-inspect 0.1 (`inspect run --camera 'sim:wafer?seed=4&defect_rate=0.5' --frames 6`).
    db = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "data" / "results-v1.db", db)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 1
        before = connection.execute("SELECT * FROM results ORDER BY id").fetchall()
        runs_before = connection.execute("SELECT * FROM runs").fetchall()
    store = ResultStore(db)
    assert store.migrated_from == 1
    store.close()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        after = connection.execute("SELECT * FROM results ORDER BY id").fetchall()
        runs_after = connection.execute("SELECT * FROM runs").fetchall()
    assert len(before) == 6 and [row[:16] for row in after] == before
    assert all(row[16:] == (None, None, None) for row in after)
    assert [row[:9] for row in runs_after] == runs_before
    rows = list(read_results(db))
    assert [r["verdict"] for r in rows] == [row[8] for row in before] and rows[0]["model_sha256"] is None
    # The migrated database takes new runs with the new columns.
    store = ResultStore(db)
    run_id = store.start_run(camera="c", recipe_name="r", recipe_sha256="s", software_version="0.2")
    store.set_run_model(run_id, model_sha256="ab")
    store.close()
    assert run_id == 2
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT model_sha256 FROM runs WHERE run_id = 2").fetchone() == ("ab",)


def test_a_newer_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    ResultStore(db).close()
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA user_version=99")
    before = db.read_bytes()
    with pytest.raises(StoreError, match=f"schema version 99 is newer than this software's {SCHEMA_VERSION}"):
        ResultStore(db)
    assert db.read_bytes() == before


def test_text_cells_that_would_start_a_formula_are_kept_as_text() -> None:
    from inspection.report.tables import spreadsheet_safe

    row = ["=1+1", "+A1", "-2+3", "@SUM(A1)", "\tx", "wafer-01", -0.5, 3, None, ""]
    assert spreadsheet_safe(row) == ["'=1+1", "'+A1", "'-2+3", "'@SUM(A1)", "'\tx", "wafer-01", -0.5, 3, None, ""]


def test_names_with_uri_characters_and_a_damaged_page_are_read_or_named(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    odd = tmp_path / "line #3?a=b%20.db"  # read through an SQLite URI: ? and # must stay part of the name
    store = ResultStore(odd)
    run = store.start_run(camera="sim:wafer", recipe_name="r", recipe_sha256="0" * 64, software_version="t")
    for index in range(400):
        store.add_result(run, result(index), image_path="x" * 200)
    store.finish_run(run, status="completed")
    store.close()
    assert len(list(read_results(odd))) == 400
    damaged = tmp_path / "damaged.db"
    data = bytearray(odd.read_bytes())
    page = 4096
    for start in range(page, len(data), page):  # every b-tree page's header but the schema's first page
        data[start : start + 12] = b"\xff" * 12
    damaged.write_bytes(bytes(data))
    process = run_cli("results", "--db", str(damaged), check=False)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert f"{damaged}: damaged (database disk image is malformed)" in process.stderr and ".recover" in process.stderr


def _in_a_process_that_dies(db: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` after opening ``db`` and starting run 1 (``store``, ``run``), then die by SIGKILL."""
    script = (f"import os, signal\nfrom inspection.report import ResultStore, StoreError\nfrom inspection.report.store "
              f"import *\nstore = ResultStore({str(db)!r})\nrun = store.start_run(camera='c', recipe_name='r', "
              f"recipe_sha256='s', software_version='t')\n{body}\nos.kill(os.getpid(), signal.SIGKILL)\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_readers_see_a_killed_run_ended_before_any_writer_opens_the_database(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _in_a_process_that_dies(db, "")
    [run] = read_runs(db)
    assert run["status"] == "interrupted" and "ended without finishing the run" in run["reason"]
    with sqlite3.connect(db) as connection:  # readers tell it; they do not write
        assert connection.execute("SELECT status FROM runs").fetchone() == ("running",)


def test_a_run_of_another_host_without_a_heartbeat_is_shown_unresponsive(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    ResultStore(db).close()
    now = datetime.now(UTC)
    with sqlite3.connect(db) as connection:
        for beat in (now - timedelta(minutes=10), now - timedelta(seconds=2)):
            connection.execute(
                "INSERT INTO runs (started_at, status, camera, recipe_name, recipe_sha256, host, software_version, pid,"
                " heartbeat_at) VALUES (?, 'running', 'c', 'r', 's', 'another-station', 't', 1, ?)",
                (beat.isoformat(), beat.isoformat()))
    recent, silent = read_runs(db)
    assert silent["status"] == "unresponsive" and "no heartbeat from another-station for 600 s" in silent["reason"]
    assert recent["status"] == "running"


def test_a_running_run_beats_its_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "HEARTBEAT_S", 0.02)
    store = ResultStore(tmp_path / "r.db")
    run = store.start_run(camera="c", recipe_name="r", recipe_sha256="s", software_version="t")

    def heartbeat() -> str:
        with sqlite3.connect(tmp_path / "r.db") as connection:
            return connection.execute("SELECT heartbeat_at FROM runs").fetchone()[0]

    first = heartbeat()
    deadline = time.monotonic() + 10
    while heartbeat() == first and time.monotonic() < deadline:
        time.sleep(0.02)
    assert heartbeat() > first
    store.finish_run(run, status="completed")
    store.close()


def test_a_run_end_the_database_cannot_take_is_kept_and_recorded_by_the_next_writer(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    body = """
class FullDisk:  # every write refused, as on a disk without a free block
    def __init__(self, connection): self.connection = connection
    def __enter__(self): return self
    def __exit__(self, *exc): return False
    def execute(self, *args): raise sqlite3.OperationalError("database or disk is full")
import sqlite3
store._connection = FullDisk(store._connection)
try:
    store.finish_run(run, status="failed", reason="cannot write the results database")
except StoreError as exc:
    print(exc)
"""
    process = _in_a_process_that_dies(db, body)
    assert "database or disk is full" in process.stdout and "r.db.run1.end" in process.stdout, process.stderr
    [run] = read_runs(db)
    assert run["status"] == "failed" and run["reason"].startswith("cannot write the results database (kept beside")
    store = ResultStore(db)
    assert store.closed_runs == [1] and not end_record_path(db, 1).exists()
    store.close()
    with sqlite3.connect(db) as connection:
        status, reason, finished = connection.execute("SELECT status, reason, finished_at FROM runs").fetchone()
    assert status == "failed" and "cannot write the results database" in reason and finished


def test_a_database_on_a_read_only_mount_is_read(tmp_path: Path) -> None:
    """A real read-only file system (a tmpfs remounted read-only in a private mount namespace): SQLite cannot make
    its lock files there, and the readers still read every row."""
    mount = tmp_path / "mount"
    mount.mkdir()
    db = mount / "line.db"
    script = (f"mount -t tmpfs -o size=4m tmpfs {mount} && {sys.executable} -m inspection run --frames 3 --db {db} -q"
              f" && mount -o remount,ro {mount} && {sys.executable} -m inspection results --db {db} --format json"
              f" && ! touch {mount}/writable")
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("no private mount namespace here (unshare -m needs root)")
    process = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    if "mount: " in process.stderr and "permission denied" in process.stderr.lower():
        pytest.skip("mounting is not permitted here")
    assert process.returncode == 0, process.stderr[-2000:]
    assert len(process.stdout.splitlines()) == 3 and "Traceback" not in process.stderr
