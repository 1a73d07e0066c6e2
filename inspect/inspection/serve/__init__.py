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

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from inspection.report.station import lot_reports, station_status
from inspection.serve.guard import LOOPBACK_HOSTS, MAX_BODY_BYTES, RequestGuard
from inspection.serve.routes import Station, page, router
from inspection.types import InspectionError

__all__ = ["LOOPBACK_HOSTS", "MAX_BODY_BYTES", "create_app", "lot_reports", "station_status"]

MIN_TOKEN_CHARS = 16


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
    app.state.station = Station(db, lots, review_token)
    app.add_middleware(RequestGuard, hosts=hosts)

    @app.exception_handler(InspectionError)
    @app.exception_handler(sqlite3.DatabaseError)
    def stored_data_problem(request: Request, exc: Exception) -> Response:
        """A database or file that cannot be read as this software wrote it: a page (or JSON) that says which
        and why, with 503 (the data is unavailable, the station itself is fine)."""
        message = str(exc) if isinstance(exc, InspectionError) else f"{db}: damaged ({exc})"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=503)
        answer: HTMLResponse = page(request, "error.html", title="cannot show this page", message=message,
                                    status_code=503)
        return answer

    app.include_router(router)
    if lots is not None:  # the reports' own files (StaticFiles refuses any path outside the folder)
        app.mount("/lot-files", StaticFiles(directory=lots, check_dir=True), name="lot-files")
    return app
