"""The station's routes: pages rendered from the templates beside this module, pictures, the JSON API and the
reviews. Each route reads the station it serves (:class:`Station`) from the application; what it shows comes
from the report package's readers, never from SQL or files of its own."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from inspection.acquire import ImageReadError, read_image
from inspection.report import crop_strip_png, decode_stored_png, read_results, read_runs
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
from inspection.report.station import lot_names, lot_reports, next_rejected_id, station_status

log = logging.getLogger("inspection.serve")
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter()
ResultId = Annotated[int, PathParameter(ge=1, le=2**62)]
Coordinate = Annotated[int, Query(ge=-100_000, le=100_000)]


@dataclass(frozen=True)
class Station:
    """What one station serves: its results database, its lot reports and whether review is on."""

    db: Path
    """The results database the line writes (it may not exist yet: the pages wait for it)."""
    lots: Path | None = None
    """A folder of lot reports (``inspect grade ... --out LOTS/NAME``)."""
    review_token: str | None = None
    """The token a review must bring; None: review is off."""

    @property
    def review_on(self) -> bool:
        return self.review_token is not None

    def lot_database(self, name: str) -> Path:
        """A listed lot's grading database (the name must be one /lots lists: never a path of the request's)."""
        if self.lots is None:
            raise HTTPException(404, "no lots folder is served (inspect serve --lots DIR)")
        if name not in lot_names(self.lots) or not (self.lots / name / LOT_DATABASE).is_file():
            raise HTTPException(404, f"no graded lot {name!r} in the lots folder")
        return self.lots / name / LOT_DATABASE

    def result(self, result_id: int) -> dict[str, Any]:
        """One stored result, or HTTP 404."""
        row = next(read_results(self.db, result_id=result_id), None) if self.db.is_file() else None
        if row is None:
            raise HTTPException(404, f"no result {result_id} in {self.db.name}")
        return row

    def runs(self) -> list[dict[str, Any]]:
        return read_runs(self.db) if self.db.is_file() else []


def _station(request: Request) -> Station:
    return request.app.state.station  # type: ignore[no-any-return]


Served = Annotated[Station, Depends(_station)]


def page(request: Request, template: str, *, title: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page in the station's style from ``template``, its values escaped.

    Parameters
    ----------
    request : Request
        The request the page answers.
    template : str
        A file of ``serve/templates``.
    title : str
        The page's title.
    status_code : int, optional
        The HTTP status.
    **context
        The template's values.

    Returns
    -------
    HTMLResponse
    """
    return templates.TemplateResponse(request, template, {"title": title, **context}, status_code=status_code)


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


# --- pages --------------------------------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
def _station_page(request: Request, station: Served) -> HTMLResponse:
    return page(request, "station.html", title="wafer-inspect station",
                rejected=station_status(station.db)["rejected"])


@router.get("/runs", response_class=HTMLResponse)
def _history(request: Request, station: Served) -> HTMLResponse:
    return page(request, "runs.html", title="runs", runs=station.runs())


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def _run_results(request: Request, station: Served, run_id: Annotated[int, PathParameter(ge=1, le=2**62)]
                ) -> HTMLResponse:
    if not any(run["run_id"] == run_id for run in station.runs()):
        raise HTTPException(404, f"no run {run_id} in {station.db.name}")
    return page(request, "run.html", title=f"run {run_id}", run_id=run_id,
                results=list(read_results(station.db, run_id=run_id, last=1000)))


@router.get("/results/{result_id}", response_class=HTMLResponse)
def _result_page(request: Request, station: Served, result_id: ResultId) -> HTMLResponse:
    """A result's picture and, per detection, the crop the classifier saw, the model's class, the current
    review and (with review on) the form to confirm or re-label it."""
    row = station.result(result_id)
    return page(request, "result.html", title=f"result {result_id}", row=row, crops=row["crop_paths"] or [],
                reviews=read_reviews(station.db, result_id=result_id),
                labels=review_labels(station.db, run_id=row["run_id"]),
                next_id=next_rejected_id(station.db, run_id=row["run_id"], after_id=row["id"]),
                review_on=station.review_on)


@router.get("/lots", response_class=HTMLResponse)
def _lots_page(request: Request, station: Served) -> HTMLResponse:
    if station.lots is None:
        raise HTTPException(404, "no lots folder is served (inspect serve --lots DIR)")
    lots = [{**lot, "reviewable": (station.lots / lot["name"] / LOT_DATABASE).is_file()}
            for lot in lot_reports(station.lots)]
    return page(request, "lots.html", title="lots", lots=lots)


@router.get("/lot-review", response_class=HTMLResponse)
def _lot_review(request: Request, station: Served, lot: Annotated[str, Query(max_length=200)]) -> HTMLResponse:
    """A graded lot's dies kept for review (the worst defective dies of each wafer): per die its classifier input
    (die | median die | difference), the model's class and score, its review and the form."""
    db = station.lot_database(lot)
    reviews = read_die_reviews(db)
    labels = {"good", *(review["label"] for review in reviews.values())}
    labels |= {name for wafer in read_wafers(db) for name in wafer["class_names"]}
    return page(request, "lot_review.html", title=f"review {lot}", lot=lot, dies=read_review_dies(db),
                reviews=reviews, labels=sorted(labels), review_on=station.review_on)


# --- pictures -----------------------------------------------------------------------------------------------

@router.get("/pictures/{result_id}")
def _picture(station: Served, result_id: ResultId) -> FileResponse:
    path = station.result(result_id)["image_path"]
    if not path or not Path(path).is_file():
        raise HTTPException(404, f"result {result_id} has no stored picture")
    return FileResponse(path)


@router.get("/crops/{result_id}/{detection}")
def _crop(station: Served, result_id: ResultId, detection: Annotated[int, PathParameter(ge=0, le=10_000)]
         ) -> Response:
    paths = station.result(result_id)["crop_paths"] or []
    if detection >= len(paths) or not paths[detection] or not Path(paths[detection]).is_file():
        raise HTTPException(404, f"result {result_id} has no stored crop for detection {detection}")
    try:
        image, _, _ = read_image(paths[detection])
    except ImageReadError:
        raise HTTPException(404, f"{Path(paths[detection]).name}: the stored crop cannot be read") from None
    return Response(crop_strip_png(image), media_type="image/png")


@router.get("/lot-dies")
def _lot_die(station: Served, lot: Annotated[str, Query(max_length=200)],
            wafer: Annotated[int, Query(ge=1, le=2**62)], row: Coordinate, col: Coordinate) -> Response:
    found = read_review_dies(station.lot_database(lot), wafer, row_col=(row, col))
    if not found:
        raise HTTPException(404, f"wafer {wafer} of lot {lot} kept no die at row {row}, column {col} for review")
    image = decode_stored_png(found[0]["input_png"])
    if image is None:
        raise HTTPException(404, f"die {row},{col}: the stored crop cannot be read")
    return Response(crop_strip_png(image), media_type="image/png")


# --- the JSON API and the reviews ---------------------------------------------------------------------------

@router.get("/api/status")
def _status(station: Served) -> dict[str, Any]:
    return station_status(station.db)


@router.get("/api/runs")
def _api_runs(station: Served) -> list[dict[str, Any]]:
    return station.runs()


@router.get("/api/results/{result_id}")
def _api_result(station: Served, result_id: ResultId) -> dict[str, Any]:
    row = station.result(result_id)
    reviews = read_reviews(station.db, result_id=result_id)
    crops = row.pop("crop_paths") or []
    row["picture"] = f"/pictures/{result_id}" if row.pop("image_path") else None  # URLs, not server paths
    row["crops"] = [f"/crops/{result_id}/{index}" if crop else None for index, crop in enumerate(crops)]
    return {**row, "reviews": {str(index): reviews[result_id, index] for _, index in reviews}}


def _authorise(station: Station, authorization: str | None) -> None:
    if station.review_token is None:
        raise HTTPException(403, "review is off: start inspect serve with INSPECT_REVIEW_TOKEN set")
    expected = f"Bearer {station.review_token}".encode()
    if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
        raise HTTPException(401, "a valid review token is needed (Authorization: Bearer TOKEN)")


@router.post("/api/reviews")
def _post_review(station: Served, review: ReviewRequest, authorization: Annotated[str | None, Header()] = None
                ) -> dict[str, Any]:
    _authorise(station, authorization)
    try:
        stored = add_review(station.db, review.result_id, review.detection, label=review.label,
                            reviewer=review.reviewer)
    except UnknownResult as exc:
        raise HTTPException(404, str(exc)) from None
    except ReviewError as exc:
        raise HTTPException(422, str(exc)) from None
    log.info("review: result %d detection %d %s -> %s by %s", review.result_id, review.detection,
             stored["model_label"], stored["label"], stored["reviewer"])
    return stored


@router.post("/api/die-reviews")
def _post_die_review(station: Served, review: DieReviewRequest,
                    authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    _authorise(station, authorization)
    try:
        stored = add_die_review(station.lot_database(review.lot), review.wafer, review.row, review.col,
                                label=review.label, reviewer=review.reviewer)
    except UnknownResult as exc:
        raise HTTPException(404, str(exc)) from None
    except ReviewError as exc:
        raise HTTPException(422, str(exc)) from None
    log.info("review: lot %s wafer %d die %d,%d %s -> %s by %s", review.lot, review.wafer, review.row, review.col,
             stored["model_label"], stored["label"], stored["reviewer"])
    return stored
