"""``inspect serve``: the station and its history in a browser, read from the results database, and defect review.

The pages read: the live station (frames/s, latency, verdict counts and the last parts that did not pass, with
their pictures), the run history and each run's results, each result with its detections and their crops, and
the lot reports ``inspect grade`` wrote (each lot's report page with its wafer maps, KLARF and bin maps, served
as files from the lots folder). Pictures and crops are served by result id from the paths the line stored
(``inspect run --save-ng``), never from a path in the URL.

The one kind of write is a review: an operator confirms or re-labels a detection (``POST /api/reviews``) or a die
of a graded lot (``POST /api/die-reviews``), which needs the review token the server was started with
(``INSPECT_REVIEW_TOKEN``); without one, review is off. Refused
requests are logged and answered with their reason; request bodies over 16 KiB are refused unread. It binds to
localhost unless told otherwise.
"""

from __future__ import annotations

import hmac
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import cv2
import numpy as np
from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from inspection.report import read_results, read_runs
from inspection.report.lots import LOT_DATABASE, read_review_dies, read_wafers
from inspection.report.reviews import (
    ReviewError,
    UnknownResult,
    add_die_review,
    add_review,
    read_die_reviews,
    read_reviews,
    review_labels,
)
from inspection.report.store import connect
from inspection.types import InspectionError

ResultId = Annotated[int, PathParameter(ge=1, le=2**62)]
__all__ = ["MAX_BODY_BYTES", "create_app", "lot_reports", "station_status"]

log = logging.getLogger("inspection.serve")
MAX_BODY_BYTES = 16 * 1024
"""The largest request body taken (a review is about 100 bytes); larger ones are refused unread."""
MIN_TOKEN_CHARS = 16

REJECTED = ("fail", "review", "error")
_STYLE = """<link rel="icon" href="data:,">
<style>body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}th{background:#eee}.pass{color:#080}.fail{color:#c00}
.review{color:#b60}.error{color:#808}.tiles{display:flex;gap:1.5em;margin:1em 0}.tile{font-size:28px}
.tile small{display:block;font-size:13px;color:#666}.parts{display:flex;flex-wrap:wrap;gap:10px}
.parts figure{margin:0;width:300px}.parts img{width:300px}figcaption{font-size:12px}
img.crop{image-rendering:pixelated;height:96px}img.picture{max-width:100%}</style>"""


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
<h2>Last parts that did not pass</h2><div class="parts" id="parts">PARTS</div>
<p><a href="/runs">run history</a> · <a href="/lots">lot reports</a></p>
<script>
function tile(id, value, label) { document.getElementById(id).innerHTML = value + '<small>' + label + '</small>'; }
function text(value) { const node = document.createElement('span'); node.textContent = value; return node.innerHTML; }
async function refresh() {
  try {
    const response = await fetch('/api/status');
    const status = await response.json();
    if (!response.ok) { document.getElementById('run').textContent = 'the station cannot read its results: ' +
      status.detail; return; }
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
      '<figure><a href="/results/' + part.id + '">' + (part.picture ? '<img src="/pictures/' + part.id + '">' : '') +
      '</a><figcaption class="' + part.verdict + '"><a href="/results/' + part.id + '">part ' + part.id +
      '</a> ' + part.verdict + ': ' + text(part.reason) + '</figcaption></figure>'
    ).join('');
  } catch (error) { document.getElementById('run').textContent = 'no answer from the station: ' + error; }
}
refresh(); setInterval(refresh, 500);
</script></body></html>"""


def _page(title: str, body: str) -> str:
    """A whole HTML page in the station's style."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>{_STYLE}</head><body>"
            f"{body}</body></html>")


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
    for name in _lot_names(lots):
        try:
            figures, problem = _lot_figures(lots / name / "lot.json"), None
        except (OSError, ValueError) as exc:  # a lot without its figures is still listed, with the reason
            figures, problem = {}, str(exc)
        found.append({"name": name, "figures": figures, "problem": problem})
    return found


MAX_LOT_JSON_BYTES = 20_000_000


def _lot_figures(path: Path) -> dict[str, Any]:
    """The figures of a lot's ``lot.json`` as ``inspect grade`` writes them (wafers, verdicts, mean yield), or a
    ValueError naming the field that is not (a file edited or written by something else)."""
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


def _lot_names(lots: Path) -> list[str]:
    """The lot reports' folders in ``lots``, relative to it ("." for ``lots`` itself), by name."""
    reports = sorted(lots.glob("report.html")) + sorted(lots.glob("*/report.html"))
    return [report.parent.relative_to(lots).as_posix() for report in reports]


class ReviewRequest(BaseModel):
    """``POST /api/reviews``: an operator's label for one detection."""

    model_config = ConfigDict(extra="forbid", strict=True)
    result_id: int = Field(ge=1, le=2**62)
    detection: int = Field(ge=0, le=10_000)
    label: str = Field(max_length=40)
    reviewer: str = Field(max_length=40)


class DieReviewRequest(BaseModel):
    """``POST /api/die-reviews``: an operator's label for one die a graded lot kept for review."""

    model_config = ConfigDict(extra="forbid", strict=True)
    lot: str = Field(max_length=200)
    wafer: int = Field(ge=1, le=2**62)
    row: int = Field(ge=-100_000, le=100_000)
    col: int = Field(ge=-100_000, le=100_000)
    label: str = Field(max_length=40)
    reviewer: str = Field(max_length=40)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The names a station answers to by default: its loopback addresses (``inspect serve --allow-host`` adds)."""


def _host_name(header: str) -> str:
    """The host of a Host header, without its port (``[::1]:8000`` gives ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class RequestGuard:
    """ASGI middleware: refuses request bodies over :data:`MAX_BODY_BYTES` (by their Content-Length, or as they
    stream in, unread past the limit) and logs every refused request with its client and status."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, hosts: Sequence[str] = LOOPBACK_HOSTS) -> None:
        self.app = app
        self.hosts = {host.lower() for host in hosts}

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in scope["path"][:300])
        where = f"{scope['method']} {path} from {(scope.get('client') or ('?',))[0]}"  # a %0A forges no log line

        refused: list[int] = []

        async def logged_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                refused.append(message["status"])
            elif message["type"] == "http.response.body" and refused:
                log.warning("refused %s: HTTP %d %s", where, refused.pop(), message.get("body", b"")[:300].decode(
                    "utf-8", "replace"))
            await send(message)

        host = _host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
        if host not in self.hosts:  # a page read through a name the attacker's DNS points here (DNS rebinding)
            await JSONResponse({"detail": f"Host {host[:60]!r} is not one this station answers to; start it with "
                                          "--allow-host NAME to add one"}, status_code=421)(scope, receive, logged_send)
            return
        too_large = JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            await too_large(scope, receive, logged_send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await too_large(scope, receive, logged_send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, logged_send)


def create_app(db: Path, *, lots: Path | None = None, review_token: str | None = None,
               hosts: Sequence[str] = LOOPBACK_HOSTS) -> FastAPI:
    """The web application over ``db`` and, when given, the lot reports in ``lots``.

    Parameters
    ----------
    db : Path
        The results database the line writes (it may not exist yet: the pages wait for it).
    lots : Path, optional
        A folder of lot reports (``inspect grade ... --out LOTS/NAME``), listed at ``/lots``.
    review_token : str, optional
        The token a review must bring (``Authorization: Bearer TOKEN``), at least 16 characters; None: review
        is off and everything is read-only.
    hosts : sequence of str
        The names and addresses requests may carry as their Host (others get HTTP 421).

    Returns
    -------
    FastAPI
        Pages ``/``, ``/runs``, ``/runs/{run_id}``, ``/results/{result_id}``, ``/lots`` and
        ``/lot-review?lot=NAME``; pictures ``/pictures/{result_id}``, crops ``/crops/{result_id}/{detection}`` and
        ``/lot-dies?lot=&wafer=&row=&col=``; the JSON API ``/api/status``, ``/api/runs``,
        ``/api/results/{result_id}``; and the writes, reviews: ``POST /api/reviews`` (a detection) and
        ``POST /api/die-reviews`` (a die of a graded lot).

    Raises
    ------
    ValueError
        A review token shorter than 16 characters.
    """
    if review_token is not None and len(review_token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the review token has {len(review_token)} characters; use at least {MIN_TOKEN_CHARS} "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    app = FastAPI(title="wafer-inspect station", docs_url=None, redoc_url=None)
    app.add_middleware(RequestGuard, hosts=hosts)

    @app.exception_handler(InspectionError)
    @app.exception_handler(sqlite3.DatabaseError)
    def stored_data_problem(request: Request, exc: Exception) -> Response:
        """A database or file that cannot be read as this software wrote it: a page (or JSON) that says which
        and why, with 503 (the data is unavailable, the station itself is fine)."""
        message = str(exc) if isinstance(exc, InspectionError) else f"{db}: damaged ({exc})"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=503)
        return HTMLResponse(_page("cannot show this page", "<h1>Stored data cannot be shown</h1><p class='error'>"
                                  f"{escape(message)}</p><p><a href='/'>station</a></p>"), status_code=503)

    def runs() -> list[dict[str, Any]]:
        return read_runs(db) if db.is_file() else []

    @app.get("/", response_class=HTMLResponse)
    def station() -> str:
        # The last parts are in the page itself (the script then keeps them current), so a page read without
        # scripts, or before they run, shows them.
        return _STATION_PAGE.replace("PARTS", "".join(_part_figure(part) for part in station_status(db)["rejected"]))

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
        header = ["run", "started", "finished", "status", "recipe", "camera", "verdicts"]
        return _page("runs", "<h1>Run history</h1>" + _table(rows, header) + "<p><a href='/'>station</a></p>")

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_results(run_id: int = PathParameter(..., ge=1, le=2**62)) -> str:
        if not any(run["run_id"] == run_id for run in runs()):
            raise HTTPException(404, f"no run {run_id} in {db.name}")
        rows = [[f'<a href="/results/{row["id"]}">part {row["id"]}</a>', str(row["frame_counter"]),
                 f'<span class="{escape(row["verdict"])}">{escape(row["verdict"])}</span>',
                 escape(row["reason"]), escape(", ".join(d["kind"] for d in row["detections"])),
                 f'{row["latency_ms"]:.1f}', f'<a href="/pictures/{row["id"]}">picture</a>' if row["image_path"]
                 else ""] for row in read_results(db, run_id=run_id, last=1000)]
        return _page(f"run {run_id}", f"<h1>Run {run_id}: its last {len(rows)} results</h1>"
                     + _table(rows, ["part", "frame", "verdict", "reason", "detections", "latency ms", ""])
                     + "<p><a href='/runs'>run history</a></p>")

    @app.get("/api/results/{result_id}")
    def api_result(result_id: ResultId) -> dict[str, Any]:
        row = _result(db, result_id)
        reviews = read_reviews(db, result_id=result_id)
        crops = row.pop("crop_paths") or []
        row["picture"] = f"/pictures/{result_id}" if row.pop("image_path") else None  # URLs, not server paths
        row["crops"] = [f"/crops/{result_id}/{index}" if crop else None for index, crop in enumerate(crops)]
        return {**row, "reviews": {str(index): reviews[result_id, index] for _, index in reviews}}

    @app.get("/results/{result_id}", response_class=HTMLResponse)
    def result_page(result_id: ResultId) -> str:
        row = _result(db, result_id)
        return _result_html(row, read_reviews(db, result_id=result_id), review_labels(db, run_id=row["run_id"]),
                            next_id=_next_to_review(db, row), review_on=review_token is not None)

    @app.get("/crops/{result_id}/{detection}")
    def crop(result_id: ResultId, detection: int = PathParameter(..., ge=0, le=10_000)) -> Response:
        paths = _result(db, result_id)["crop_paths"] or []
        if detection >= len(paths) or not paths[detection] or not Path(paths[detection]).is_file():
            raise HTTPException(404, f"result {result_id} has no stored crop for detection {detection}")
        crop = cv2.imread(paths[detection], cv2.IMREAD_UNCHANGED)
        return Response(_crop_strip(crop, what=Path(paths[detection]).name), media_type="image/png")

    def authorise(authorization: str | None) -> None:
        if review_token is None:
            raise HTTPException(403, "review is off: start inspect serve with INSPECT_REVIEW_TOKEN set")
        if authorization is None or not hmac.compare_digest(authorization.encode(), f"Bearer {review_token}".encode()):
            raise HTTPException(401, "a valid review token is needed (Authorization: Bearer TOKEN)")

    def lot_database(name: str) -> Path:
        """A listed lot's grading database (the name must be one /lots lists: never a path of the request's)."""
        if lots is None:
            raise HTTPException(404, "no lots folder is served (inspect serve --lots DIR)")
        if name not in _lot_names(lots) or not (lots / name / LOT_DATABASE).is_file():
            raise HTTPException(404, f"no graded lot {name!r} in the lots folder")
        return lots / name / LOT_DATABASE

    @app.get("/lot-review", response_class=HTMLResponse)
    def lot_review(lot: Annotated[str, Query(max_length=200)]) -> str:
        db = lot_database(lot)
        reviews = read_die_reviews(db)
        labels = {"good", *(review["label"] for review in reviews.values())}
        labels |= {name for wafer in read_wafers(db) for name in wafer["class_names"]}
        return _lot_review_html(lot, read_review_dies(db), reviews, sorted(labels), review_on=review_token is not None)

    @app.get("/lot-dies")
    def lot_die(lot: Annotated[str, Query(max_length=200)], wafer: Annotated[int, Query(ge=1, le=2**62)],
                row: Annotated[int, Query(ge=-100_000, le=100_000)],
                col: Annotated[int, Query(ge=-100_000, le=100_000)]) -> Response:
        found = read_review_dies(lot_database(lot), wafer, row_col=(row, col))
        if not found:
            raise HTTPException(404, f"wafer {wafer} of lot {lot} kept no die at row {row}, column {col} for review")
        crop = cv2.imdecode(np.frombuffer(found[0]["input_png"], np.uint8), cv2.IMREAD_UNCHANGED)
        return Response(_crop_strip(crop, what=f"die {row},{col}"), media_type="image/png")

    @app.post("/api/die-reviews")
    def post_die_review(review: DieReviewRequest, authorization: Annotated[str | None, Header()] = None
                        ) -> dict[str, Any]:
        authorise(authorization)
        try:
            stored = add_die_review(lot_database(review.lot), review.wafer, review.row, review.col, label=review.label,
                                    reviewer=review.reviewer)
        except UnknownResult as exc:
            raise HTTPException(404, str(exc)) from None
        except ReviewError as exc:
            raise HTTPException(422, str(exc)) from None
        log.info("review: lot %s wafer %d die %d,%d %s -> %s by %s", review.lot, review.wafer, review.row, review.col,
                 stored["model_label"], stored["label"], stored["reviewer"])
        return stored

    @app.post("/api/reviews")
    def post_review(review: ReviewRequest, authorization: Annotated[str | None, Header()] = None
                    ) -> dict[str, Any]:
        authorise(authorization)
        try:
            stored = add_review(db, review.result_id, review.detection, label=review.label, reviewer=review.reviewer)
        except UnknownResult as exc:
            raise HTTPException(404, str(exc)) from None
        except ReviewError as exc:
            raise HTTPException(422, str(exc)) from None
        log.info("review: result %d detection %d %s -> %s by %s", review.result_id, review.detection,
                 stored["model_label"], stored["label"], stored["reviewer"])
        return stored

    @app.get("/pictures/{result_id}")
    def picture(result_id: ResultId) -> FileResponse:
        path = _result(db, result_id)["image_path"]
        if not path or not Path(path).is_file():
            raise HTTPException(404, f"result {result_id} has no stored picture")
        return FileResponse(path)

    @app.get("/lots", response_class=HTMLResponse)
    def lots_page() -> str:
        if lots is None:
            raise HTTPException(404, "no lots folder is served (inspect serve --lots DIR)")
        rows = []
        for lot in lot_reports(lots):
            figures, name = lot["figures"], lot["name"]
            review = (f'<a href="/lot-review?lot={quote(name)}">review dies</a>'
                      if (lots / name / LOT_DATABASE).is_file() else "")
            link = f'<a href="/lot-files/{quote(name)}/report.html">{escape(name)}</a>'
            if lot["problem"] is not None:
                rows.append([link, "", f'<span class="error">{escape(lot["problem"])}</span>', "", review])
                continue
            rows.append([link, str(figures.get("wafers", "")),
                         " ".join(f"{escape(k)} {v}" for k, v in sorted(figures.get("verdicts", {}).items())),
                         "" if figures.get("mean_yield") is None else f"{figures['mean_yield']:.2%}", review])
        return _page("lots", "<h1>Lot reports</h1>" + _table(rows, ["lot", "wafers", "verdicts", "mean yield", ""])
                     + "<p><a href='/'>station</a></p>")

    if lots is not None:  # the reports' own files (StaticFiles refuses any path outside the folder)
        app.mount("/lot-files", StaticFiles(directory=lots, check_dir=True), name="lot-files")
    return app


def _part_figure(part: dict[str, Any]) -> str:
    """One of the station page's last parts that did not pass: its picture and caption (the script's markup)."""
    verdict, link = escape(part["verdict"]), f'/results/{part["id"]}'
    picture = f'<img src="/pictures/{part["id"]}">' if part["picture"] else ""
    return (f'<figure><a href="{link}">{picture}</a><figcaption class="{verdict}"><a href="{link}">part '
            f'{part["id"]}</a> {verdict}: {escape(part["reason"])}</figcaption></figure>')


def _result(db: Path, result_id: int) -> dict[str, Any]:
    """One stored result, or HTTP 404."""
    row = next(read_results(db, result_id=result_id), None) if db.is_file() else None
    if row is None:
        raise HTTPException(404, f"no result {result_id} in {db.name}")
    return row


def _next_to_review(db: Path, row: dict[str, Any]) -> int | None:
    """The id of the run's next result after ``row`` that did not pass, if any."""
    connection = connect(db, read_only=True)
    try:
        found = connection.execute("SELECT id FROM results WHERE run_id = ? AND id > ? AND verdict != 'pass' "
                                   "ORDER BY id LIMIT 1", (row["run_id"], row["id"])).fetchone()
    finally:
        connection.close()
    return None if found is None else int(found[0])


def _crop_strip(crop: np.ndarray | None, *, what: str, min_height_px: int = 96) -> bytes:
    """A classifier's input (image, golden or median die, |difference| as its three channels) as three grey
    tiles side by side, enlarged without smoothing to at least ``min_height_px``: what a person compares."""
    if crop is None:
        raise HTTPException(404, f"{what}: the stored crop cannot be read")
    tiles = [crop] if crop.ndim == 2 else [crop[..., channel] for channel in range(crop.shape[2])]
    gap = np.full((crop.shape[0], 2), 255, np.uint8)
    strip = np.hstack([part for tile in tiles for part in (tile, gap)][:-1])
    scale = max(1, -(-min_height_px // strip.shape[0]))
    strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return cv2.imencode(".png", strip)[1].tobytes()


_REVIEW_SCRIPT = """<script>
const token = document.getElementById('token'), reviewer = document.getElementById('reviewer');
token.value = sessionStorage.getItem('review-token') || '';
reviewer.value = localStorage.getItem('reviewer') || '';
async function review(index) {
  sessionStorage.setItem('review-token', token.value);
  localStorage.setItem('reviewer', reviewer.value);
  const button = document.querySelector('button[data-index="' + index + '"]');
  const request = Object.assign(JSON.parse(button.dataset.key), {
    label: document.getElementById('label-' + index).value.trim(), reviewer: reviewer.value.trim()});
  const answer = await fetch(button.dataset.url, {method: 'POST', headers: {'Content-Type': 'application/json',
    'Authorization': 'Bearer ' + token.value}, body: JSON.stringify(request)});
  const body = await answer.json();
  const message = document.getElementById('message');
  if (answer.ok) {
    const cell = document.getElementById('reviewed-' + index);
    cell.textContent = body.label + ' (' + body.reviewer + ')';
    cell.className = body.label === body.model_label ? 'pass' : 'review';
    message.textContent = 'saved: ' + button.dataset.name + ' is ' + body.label;
  } else {
    const detail = typeof body.detail === 'string' ? body.detail : body.detail.map(d => d.msg).join('; ');
    message.textContent = 'not saved (' + answer.status + '): ' + detail;
  }
  return answer.ok;
}
async function reviewAll() { for (const button of document.querySelectorAll('button[data-index]'))
  if (!await review(button.dataset.index)) break; }
</script>"""


def _review_cells(index: int, *, name: str, url: str, key: dict[str, Any], model_label: str,
                  reviewed: dict[str, Any] | None, review_on: bool) -> list[str]:
    """The "reviewed" and "label" cells of one reviewable item (a detection or a die)."""
    status = "not reviewed"
    if reviewed:
        agrees = "pass" if reviewed["label"] == reviewed["model_label"] else "review"
        status = f'<span class="{agrees}">{escape(reviewed["label"])} ({escape(reviewed["reviewer"])})</span>'
    current = reviewed["label"] if reviewed else model_label
    form = (f'<input id="label-{index}" list="labels" size="10" value="{escape(current)}"> '
            f'<button data-index="{index}" data-name="{escape(name)}" data-url="{url}" '
            f'data-key="{escape(json.dumps(key))}" onclick="review({index})">save</button>') if review_on else ""
    return [f'<span id="reviewed-{index}">{status}</span>', form]


def _review_tools(labels: list[str], *, review_on: bool, items: int) -> tuple[str, str]:
    """The token and reviewer fields with "save all", and the page's script (nothing to review: neither)."""
    if not items:
        return "", ""
    if not review_on:
        return "<p>Review is off (start inspect serve with INSPECT_REVIEW_TOKEN set to review).</p>", ""
    options = "".join(f'<option value="{escape(label)}">' for label in labels)
    return (f'<p>review token <input id="token" type="password" size="24"> reviewer <input id="reviewer" '
            f'size="12"> <button onclick="reviewAll()">save all</button> <span id="message"></span></p>'
            f'<datalist id="labels">{options}</datalist>'), _REVIEW_SCRIPT


def _result_html(row: dict[str, Any], reviews: dict[tuple[int, int], dict[str, Any]], labels: list[str], *,
                 next_id: int | None, review_on: bool) -> str:
    """A result's page: its picture and, per detection, the crop the classifier saw, the model's class, the
    current review and (with review on) the form to confirm or re-label it."""
    result_id, crops = row["id"], row["crop_paths"] or []
    rows = []
    for index, detection in enumerate(row["detections"]):
        crop = (f'<img class="crop" alt="crop {index}" src="/crops/{result_id}/{index}">'
                if index < len(crops) and crops[index] else "no crop saved")
        rows.append([str(index), crop, escape(detection["kind"]), f'{detection["score"]:.3f}',
                     f'{detection["area_um2"]:.0f}', *_review_cells(
                         index, name=f"detection {index}", url="/api/reviews",
                         key={"result_id": result_id, "detection": index}, model_label=detection["kind"],
                         reviewed=reviews.get((result_id, index)), review_on=review_on)])
    picture = f'<p><img class="picture" src="/pictures/{result_id}"></p>' if row["image_path"] else ""
    tools, script = _review_tools(labels, review_on=review_on, items=len(rows))
    following = f' · <a href="/results/{next_id}">next part that did not pass</a>' if next_id else ""
    verdict = escape(row["verdict"])
    return _page(f"result {result_id}",
                 f"<h1>Part {result_id}: <span class='{verdict}'>{verdict}</span></h1><p>{escape(row['reason'])}"
                 f"</p><p>run {row['run_id']} · {escape(row['source'])}, frame {row['frame_counter']} · "
                 f"{row['latency_ms']:.1f} ms from acquisition to result</p>"
                 f"{picture}{tools}"
                 + _table(rows, ["#", "crop (image | golden | difference)", "model says", "score", "area um2",
                                 "reviewed", "label" if review_on else ""])
                 + f"<p><a href='/runs/{row['run_id']}'>run {row['run_id']}</a>{following} · "
                 "<a href='/'>station</a></p>" + script)


def _lot_review_html(lot: str, dies: list[dict[str, Any]], reviews: dict[tuple[int, int, int], dict[str, Any]],
                     labels: list[str], *, review_on: bool) -> str:
    """A graded lot's dies kept for review (the worst defective dies of each wafer): per die its classifier input
    (die | median die | difference), the model's class and score, its review and the form."""
    rows = []
    for index, die in enumerate(dies):
        wafer, row, col = die["wafer"], die["row"], die["col"]
        where = f"lot={quote(lot)}&wafer={wafer}&row={row}&col={col}"
        rows.append([escape(die["wafer_id"]), f"{col}, {-row}", f'<img class="crop" alt="die {col},{-row}" '
                     f'src="/lot-dies?{escape(where)}">', escape(die["class"]), f'{die["defect_score"]:.3f}',
                     *_review_cells(index, name=f"die {die['wafer_id']} {col},{-row}", url="/api/die-reviews",
                                    key={"lot": lot, "wafer": wafer, "row": row, "col": col}, model_label=die["class"],
                                    reviewed=reviews.get((wafer, row, col)), review_on=review_on)])
    tools, script = _review_tools(labels, review_on=review_on, items=len(rows))
    return _page(f"review {lot}",
                 f"<h1>Lot {escape(lot)}: {len(rows)} dies to review</h1><p>The worst defective dies of each "
                 f"wafer, named by KLARF index (XINDEX, YINDEX).</p>{tools}"
                 + _table(rows, ["wafer", "die", "die | median die | difference", "model says", "defect score",
                                 "reviewed", "label" if review_on else ""])
                 + f"<p><a href='/lot-files/{escape(lot)}/report.html'>lot report</a> · <a href='/lots'>lots</a></p>"
                 + script)
