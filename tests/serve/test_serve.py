"""``inspect serve`` over a real line's database: the JSON status, the run history, pictures by id only, bad
requests refused, a new commit seen at once, and the station page in a real browser (Debian's Chromium,
headless), whose screenshot the README shows."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.serve.conftest import local_client, served

fastapi = pytest.importorskip("fastapi")


from inspection.serve import create_app  # noqa: E402


def test_status_history_and_pictures(line_db: Path) -> None:
    client = local_client(create_app(line_db))
    status = client.get("/api/status").json()
    counts = status["run"]["verdicts"]
    assert sum(counts.values()) == 40 and status["fps"] > 0 and status["latency_p99_ms"] >= status["latency_p50_ms"]
    assert status["rejected"] and all(part["verdict"] != "pass" for part in status["rejected"])
    picture = client.get(f"/pictures/{status['rejected'][0]['id']}")
    assert picture.status_code == 200 and picture.content[:4] == b"\x89PNG"
    history = client.get("/runs").text
    assert "wafer-aoi-station" in history and "/runs/1" in history
    assert client.get("/runs/1").text.count("<tr>") == 41
    assert client.get("/").status_code == 200 and "/api/status" in client.get("/").text


def test_bad_requests_are_refused_and_paths_never_come_from_the_url(line_db: Path) -> None:
    client = local_client(create_app(line_db))
    assert client.get("/pictures/abc").status_code == 422
    assert client.get("/pictures/-1").status_code == 422
    assert client.get("/pictures/999999").status_code == 404
    assert client.get("/pictures/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.get("/runs/77").status_code == 404
    assert client.post("/api/status", content=b"x" * 1_000_000).status_code == 413  # refused unread
    assert client.post("/api/status").status_code == 405
    assert local_client(create_app(line_db.parent / "none.db")).get("/api/status").json()["run"] is None


def test_a_new_commit_is_on_the_status_at_once(line_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    shutil.copy(line_db, db)
    client = local_client(create_app(db))
    before = client.get("/api/status").json()
    run_cli("run", "--recipe", "wafer-die", "--camera", "sim:wafer", "--frames", "1", "--db", str(db), "-q")
    seen = time.perf_counter()
    after = client.get("/api/status").json()
    assert after["run"]["run_id"] == before["run"]["run_id"] + 1 and sum(after["run"]["verdicts"].values()) == 1
    assert time.perf_counter() - seen < 1.0  # the page asks every 0.5 s: within 1 s of a commit


def test_station_page_in_a_real_browser(line_db: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no headless Chromium here (apt-get install chromium)")
    with served(line_db) as url:
        browse = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--virtual-time-budget=3000", "--window-size=1280,900"]
        dom = subprocess.run([*browse, "--dump-dom", f"{url}/"], capture_output=True, text=True,
                             timeout=120).stdout
        screenshot = tmp_path / "station.png"
        subprocess.run([*browse, f"--screenshot={screenshot}", f"{url}/"], capture_output=True, timeout=120)
    assert "run 1 (completed), recipe wafer-aoi-station" in dom  # filled in by the page's script
    assert '<img src="/pictures/' in dom
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000


def test_lot_reports_are_listed_and_served_from_their_folder(line_db: Path, graded_lots: Path) -> None:
    lots = graded_lots
    client = local_client(create_app(line_db, lots=lots))
    page = client.get("/lots").text
    assert 'href="/lot-files/lot-a/report.html"' in page and "<td>2</td>" in page
    report = client.get("/lot-files/lot-a/report.html")
    assert report.status_code == 200 and "<img class='map'" in report.text  # the wafer maps
    klarf = sorted((lots / "lot-a" / "klarf").iterdir())[0].name
    assert client.get(f"/lot-files/lot-a/klarf/{klarf}").text.startswith("Record FileRecord")
    assert client.get("/lot-files/../line.db").status_code == 404
    assert client.get("/lot-files/lot-a/%2e%2e/%2e%2e/line.db").status_code == 404
    assert local_client(create_app(line_db)).get("/lots").status_code == 404


def test_other_host_names_paths_and_forged_log_lines_are_refused(line_db: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """DNS rebinding reads pages through an attacker's name: its Host is not one the station answers to."""
    from fastapi.testclient import TestClient

    app = create_app(line_db)
    assert TestClient(app, base_url="http://attacker.example").get("/api/status").status_code == 421
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/api/status").status_code == 200
    assert TestClient(app, base_url="http://[::1]:8000").get("/api/status").status_code == 200
    named = create_app(line_db, hosts=("station-7.fab.example",))
    assert TestClient(named, base_url="http://station-7.fab.example").get("/api/status").status_code == 200
    client = local_client(app)
    result = client.get("/api/results/1").json()
    assert "image_path" not in result and "crop_paths" not in result and str(line_db.parent) not in str(result)
    assert result["picture"] in (None, "/pictures/1")
    caplog.clear()
    client.get("/no-such%0Arefused GET /forged from 10.0.0.1")
    assert not any("\nrefused" in record.getMessage() for record in caplog.records)
    assert any("\\x0a" in record.getMessage() for record in caplog.records)


def test_bad_stored_data_is_a_page_that_says_what_is_wrong(line_db: Path, tmp_path: Path) -> None:
    """A file that is not a database, a row another program changed, a lot.json with a string for a number:
    each used to be a bare 500 (and a station page that went blank)."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(bytes(range(256)) * 20)
    client = local_client(create_app(garbage))
    for url in ("/runs", "/runs/1", "/results/1"):
        page = client.get(url)
        assert page.status_code == 503 and "garbage.db: not a wafer-inspect results database" in page.text
    status = client.get("/api/status")
    assert status.status_code == 503 and "garbage.db" in status.json()["detail"]

    changed = tmp_path / "changed.db"
    shutil.copy(line_db, changed)
    with sqlite3.connect(changed) as connection:
        connection.execute("UPDATE results SET latency_ms = 'fast' WHERE id = 3")
    client = local_client(create_app(changed))
    assert client.get("/results/2").status_code == 200
    page = client.get("/results/3")
    assert page.status_code == 503 and "result 3: latency_ms is &#39;fast&#39;, expected int or float" in page.text

    lots = tmp_path / "lots"
    for name, figures in (("good", {"wafers": 2, "mean_yield": 0.5, "verdicts": {"pass": 2}}),
                          ("edited", {"wafers": 2, "mean_yield": "abc", "verdicts": {"pass": "<b>2</b>"}})):
        (lots / name).mkdir(parents=True)
        (lots / name / "report.html").write_text("<html></html>")
        (lots / name / "lot.json").write_text(json.dumps({"figures": figures}))
    page = local_client(create_app(line_db, lots=lots)).get("/lots")
    assert page.status_code == 200 and "50.00%" in page.text
    assert "figures.mean_yield is &#39;abc&#39;, not what inspect grade writes" in page.text
    assert "<b>2</b>" not in page.text
