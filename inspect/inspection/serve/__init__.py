"""``inspect serve``: the station and its history in a browser, read from the results database.

The pages only read: the live station (frames/s, latency, verdict counts and the last parts that did not pass,
with their pictures), the run history and each run's results, and the lot reports ``inspect grade`` wrote
(each lot's report page with its wafer maps, KLARF and bin maps, served as files from the lots folder).
Pictures are served by result id from the path the line stored (``inspect run --save-ng``), never from a path
in the URL. It binds to localhost unless told otherwise.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from fastapi import Path as PathParameter
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from inspection.report import read_results, read_runs
from inspection.report.store import connect

__all__ = ["create_app", "lot_reports", "station_status"]

REJECTED = ("fail", "review", "error")
_STYLE = """<style>body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}th{background:#eee}.pass{color:#080}.fail{color:#c00}
.review{color:#b60}.error{color:#808}.tiles{display:flex;gap:1.5em;margin:1em 0}.tile{font-size:28px}
.tile small{display:block;font-size:13px;color:#666}.parts{display:flex;flex-wrap:wrap;gap:10px}
.parts figure{margin:0;width:300px}.parts img{width:300px}figcaption{font-size:12px}</style>"""


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
        ``run`` (its columns and verdict counts; None before the first run), ``fps``, ``latency_p50_ms``,
        ``latency_p99_ms`` and ``rejected``: the last six parts that did not pass (id, frame counter, verdict,
        reason, detections, whether a picture exists).
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


_STATION_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>wafer-inspect station</title>
""" + _STYLE + """</head><body><h1>Station</h1><p id="run">waiting for the first run...</p>
<div class="tiles"><div class="tile" id="fps">-<small>frames/s</small></div>
<div class="tile" id="p50">-<small>latency p50 ms</small></div>
<div class="tile" id="p99">-<small>latency p99 ms</small></div>
<div class="tile pass" id="pass">0<small>pass</small></div><div class="tile fail" id="fail">0<small>fail</small></div>
<div class="tile review" id="review">0<small>review</small></div>
<div class="tile error" id="error">0<small>error</small></div></div>
<h2>Last parts that did not pass</h2><div class="parts" id="parts"></div>
<p><a href="/runs">run history</a> · <a href="/lots">lot reports</a></p>
<script>
function tile(id, value, label) { document.getElementById(id).innerHTML = value + '<small>' + label + '</small>'; }
function text(value) { const node = document.createElement('span'); node.textContent = value; return node.innerHTML; }
async function refresh() {
  try {
    const status = await (await fetch('/api/status')).json();
    if (status.run) {
      const run = status.run;
      document.getElementById('run').innerHTML = 'run ' + run.run_id + ' (' + text(run.status) + '), recipe ' +
        text(run.recipe_name) + ', camera ' + text(run.camera) + ', since ' + text(run.started_at);
      for (const verdict of ['pass', 'fail', 'review', 'error']) tile(verdict, run.verdicts[verdict] || 0, verdict);
    }
    tile('fps', status.fps.toFixed(1), 'frames/s');
    tile('p50', status.latency_p50_ms === null ? '-' : status.latency_p50_ms.toFixed(1), 'latency p50 ms');
    tile('p99', status.latency_p99_ms === null ? '-' : status.latency_p99_ms.toFixed(1), 'latency p99 ms');
    document.getElementById('parts').innerHTML = status.rejected.map(part =>
      '<figure>' + (part.picture ? '<img src="/pictures/' + part.id + '">' : '') + '<figcaption class="' +
      part.verdict + '">#' + part.frame_counter + ' ' + part.verdict + ': ' + text(part.reason) +
      '</figcaption></figure>'
    ).join('');
  } catch (error) { document.getElementById('run').textContent = 'no answer from the station: ' + error; }
}
refresh(); setInterval(refresh, 500);
</script></body></html>"""


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def lot_reports(lots: Path) -> list[dict[str, Any]]:
    """The lot reports in ``lots`` (a folder of ``inspect grade --out`` folders, or one of them), by name.

    Parameters
    ----------
    lots : Path
        The folder to list.

    Returns
    -------
    list of dict
        ``name`` (the folder, relative to ``lots``; "." for ``lots`` itself) and ``figures`` (from its lot.json:
        wafers, verdicts, mean yield, patterns; empty when it cannot be read).
    """
    found = []
    for report in sorted(lots.glob("report.html")) + sorted(lots.glob("*/report.html")):
        figures: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a lot without its figures is still listed
            figures = json.loads((report.parent / "lot.json").read_text(encoding="utf-8")).get("figures", {})
        found.append({"name": report.parent.relative_to(lots).as_posix(), "figures": figures})
    return found


def create_app(db: Path, *, lots: Path | None = None) -> FastAPI:
    """The web application over ``db`` and, when given, the lot reports in ``lots`` (read-only).

    Parameters
    ----------
    db : Path
        The results database the line writes (it may not exist yet: the pages wait for it).
    lots : Path, optional
        A folder of lot reports (``inspect grade ... --out LOTS/NAME``), listed at ``/lots``.

    Returns
    -------
    FastAPI
        Pages ``/``, ``/runs``, ``/runs/{run_id}``, pictures ``/pictures/{result_id}`` and the JSON API
        ``/api/status``, ``/api/runs``.
    """
    app = FastAPI(title="wafer-inspect station", docs_url=None, redoc_url=None)

    def runs() -> list[dict[str, Any]]:
        return read_runs(db) if db.is_file() else []

    @app.get("/", response_class=HTMLResponse)
    def station() -> str:
        return _STATION_PAGE

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        return station_status(db)

    @app.get("/api/runs")
    def api_runs() -> list[dict[str, Any]]:
        return runs()

    @app.get("/runs", response_class=HTMLResponse)
    def history() -> str:
        rows = [[f'<a href="/runs/{run["run_id"]}">{run["run_id"]}</a>', escape(run["started_at"]),
                 escape(run["finished_at"] or ""), escape(run["status"]), escape(run["recipe_name"]),
                 escape(run["camera"]), " ".join(f'<span class="{escape(k)}">{escape(k)} {v}</span>'
                                                 for k, v in sorted(run["verdicts"].items()))] for run in runs()]
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>runs</title>{_STYLE}</head><body>"
                "<h1>Run history</h1>" + _table(rows, ["run", "started", "finished", "status", "recipe", "camera",
                                                       "verdicts"]) + "<p><a href='/'>station</a></p></body></html>")

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_results(run_id: int = PathParameter(..., ge=1, le=2**62)) -> str:
        if not any(run["run_id"] == run_id for run in runs()):
            raise HTTPException(404, f"no run {run_id} in {db.name}")
        rows = [[str(row["frame_counter"]), f'<span class="{escape(row["verdict"])}">{escape(row["verdict"])}</span>',
                 escape(row["reason"]), escape(", ".join(d["kind"] for d in row["detections"])),
                 f'{row["latency_ms"]:.1f}', f'<a href="/pictures/{row["id"]}">picture</a>' if row["image_path"]
                 else ""] for row in read_results(db, run_id=run_id, last=1000)]
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>run {run_id}</title>{_STYLE}</head><body>"
                f"<h1>Run {run_id}: its last {len(rows)} results</h1>" + _table(
                    rows, ["frame", "verdict", "reason", "detections", "latency ms", ""])
                + "<p><a href='/runs'>run history</a></p></body></html>")

    @app.get("/pictures/{result_id}")
    def picture(result_id: int = PathParameter(..., ge=1, le=2**62)) -> FileResponse:
        path = _picture_path(db, result_id)
        if path is None:
            raise HTTPException(404, f"result {result_id} has no stored picture")
        return FileResponse(path)

    @app.get("/lots", response_class=HTMLResponse)
    def lots_page() -> str:
        if lots is None:
            raise HTTPException(404, "no lots folder is served (inspect serve --lots DIR)")
        rows = []
        for lot in lot_reports(lots):
            figures, name = lot["figures"], lot["name"]
            rows.append([f'<a href="/lot-files/{escape(name)}/report.html">{escape(name)}</a>',
                         str(figures.get("wafers", "")),
                         " ".join(f"{escape(k)} {v}" for k, v in sorted(figures.get("verdicts", {}).items())),
                         "" if figures.get("mean_yield") is None else f"{figures['mean_yield']:.2%}"])
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>lots</title>{_STYLE}</head><body>"
                "<h1>Lot reports</h1>" + _table(rows, ["lot", "wafers", "verdicts", "mean yield"])
                + "<p><a href='/'>station</a></p></body></html>")

    if lots is not None:  # the reports' own files (StaticFiles refuses any path outside the folder)
        app.mount("/lot-files", StaticFiles(directory=lots, check_dir=True), name="lot-files")
    return app


def _picture_path(db: Path, result_id: int) -> Path | None:
    """The picture the line stored for a result (by id: the URL never names a file)."""
    if not db.is_file():
        return None
    connection = connect(db, read_only=True)
    try:
        row = connection.execute("SELECT image_path FROM results WHERE id = ?", (result_id,)).fetchone()
    finally:
        connection.close()
    if row is None or not row[0] or not Path(row[0]).is_file():
        return None
    return Path(row[0])
