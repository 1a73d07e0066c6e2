"""Defect review: what an operator says about a detection or a die, and the labelled folder that makes it
training data.

A review confirms a class or names another (``good`` for a false reject). Detections of the line are reviewed in
the results database (``reviews``), dies of a graded lot in its grading database (``die_reviews``); every review
is kept and the newest counts. :func:`export_labels` writes each reviewed item's crop, the classifier's own input
(image, golden or median die, difference), into ``OUT/<label>/``, the folder layout ``inspect train`` reads.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inspection.report.lots import open_lot_database, read_review_dies
from inspection.report.store import StoreError, connect, open_for_writing, table_names, write_failure
from inspection.types import InspectionError, file_stem, unique_on_any_file_system

__all__ = ["LABEL_PATTERN", "ReviewError", "UnknownResult", "add_die_review", "add_review", "export_labels",
           "read_die_reviews", "read_reviews", "review_labels"]

LABEL_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
"""A class name: lower-case letters, digits, ``_`` and ``-``, at most 40 characters (it becomes a folder name)."""
REVIEWER_PATTERN = re.compile(r"[\w .@-]{1,40}")
REVIEW_COLUMNS = ("result_id", "detection", "label", "model_label", "reviewer", "at")
DIE_REVIEW_COLUMNS = ("wafer", "row", "col", "label", "model_label", "reviewer", "at")


class ReviewError(InspectionError, ValueError):
    """A review or an export that cannot be done as asked; nothing was written."""


class UnknownResult(ReviewError):
    """A review of a result the database does not hold."""


def add_review(db: str | Path, result_id: int, detection: int, *, label: str, reviewer: str) -> dict[str, Any]:
    """Record an operator's label for one detection of a stored result.

    Parameters
    ----------
    db : str or Path
        The results database (migrated to this software's schema if older).
    result_id : int
        The result's id (``results.id``).
    detection : int
        The detection's index in the result, from 0.
    label : str
        The class the operator gives it (:data:`LABEL_PATTERN`): the model's own to confirm it, another to
        re-label it, ``good`` for a false reject.
    reviewer : str
        Who reviewed it (letters, digits, spaces, ``.@-_``; at most 40 characters).

    Returns
    -------
    dict
        The stored review (:data:`REVIEW_COLUMNS`).

    Raises
    ------
    ReviewError
        A malformed label or reviewer, no such result, or no such detection in it.
    """
    _check_review(label, reviewer)
    path = Path(db)
    connection, _ = open_for_writing(path)
    try:
        with connection:
            row = connection.execute("SELECT detections FROM results WHERE id = ?", (result_id,)).fetchone()
            if row is None:
                raise UnknownResult(f"{path}: no result {result_id}")
            detections = json.loads(row[0])
            if not 0 <= detection < len(detections):
                span = f"0..{len(detections) - 1}" if detections else "none"
                raise ReviewError(f"result {result_id} has {len(detections)} detection(s) ({span}), not {detection}")
            review = {"result_id": result_id, "detection": detection, "label": label,
                      "model_label": detections[detection]["kind"], "reviewer": reviewer,
                      "at": datetime.now(UTC).isoformat(timespec="microseconds")}
            connection.execute(f"INSERT INTO reviews ({', '.join(REVIEW_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
                               tuple(review.values()))
        return review
    except sqlite3.Error as exc:
        raise write_failure(path, exc) from None
    finally:
        connection.close()


def _check_review(label: str, reviewer: str) -> None:
    if not LABEL_PATTERN.fullmatch(label):
        raise ReviewError(f"label {label!r}: expected lower-case letters, digits, '_' or '-' (at most 40, starting "
                          "with a letter or digit)")
    if not REVIEWER_PATTERN.fullmatch(reviewer):
        raise ReviewError(f"reviewer {reviewer!r}: expected 1 to 40 letters, digits, spaces or '.@-_'")


def add_die_review(lot_db: str | Path, wafer: int, row: int, col: int, *, label: str, reviewer: str
                   ) -> dict[str, Any]:
    """Record an operator's label for one die a lot's grading kept for review.

    Parameters
    ----------
    lot_db : str or Path
        The lot's grading database (``inspect grade --out DIR`` writes ``DIR/grade.sqlite``).
    wafer : int
        The wafer's id in it (``wafers.id``).
    row, col : int
        The die's grid row and column (as stored; the report names dies by KLARF index: XINDEX = col,
        YINDEX = -row).
    label, reviewer : str
        As for :func:`add_review`.

    Returns
    -------
    dict
        The stored review (:data:`DIE_REVIEW_COLUMNS`).

    Raises
    ------
    UnknownResult
        No such die among the wafer's dies kept for review.
    ReviewError
        A malformed label or reviewer.
    """
    _check_review(label, reviewer)
    path = Path(lot_db)
    connection = open_lot_database(path, read_only=False)
    try:
        with connection:
            found = connection.execute("SELECT class FROM review_dies WHERE wafer = ? AND row = ? AND col = ?",
                                       (wafer, row, col)).fetchone()
            if found is None:
                raise UnknownResult(f"{path}: wafer {wafer} kept no die at row {row}, column {col} for review")
            review = {"wafer": wafer, "row": row, "col": col, "label": label, "model_label": found[0],
                      "reviewer": reviewer, "at": datetime.now(UTC).isoformat(timespec="microseconds")}
            connection.execute(f"INSERT INTO die_reviews ({', '.join(DIE_REVIEW_COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(review))})", tuple(review.values()))
        return review
    except sqlite3.Error as exc:
        raise write_failure(path, exc) from None
    finally:
        connection.close()


def read_die_reviews(lot_db: str | Path) -> dict[tuple[int, int, int], dict[str, Any]]:
    """The newest review of each reviewed die: (wafer id, row, col) -> the review (:data:`DIE_REVIEW_COLUMNS`,
    plus ``lot_id`` and ``wafer_id``), in review order."""
    connection = open_lot_database(Path(lot_db), read_only=True)
    try:
        if "die_reviews" not in table_names(connection):
            return {}
        rows = connection.execute(f"SELECT {', '.join('v.' + c for c in DIE_REVIEW_COLUMNS)}, w.lot_id, w.wafer_id "
                                  "FROM die_reviews v JOIN wafers w ON w.id = v.wafer ORDER BY v.id")
        reviews = {}
        for values in rows:
            review = dict(zip((*DIE_REVIEW_COLUMNS, "lot_id", "wafer_id"), values, strict=True))
            reviews[review["wafer"], review["row"], review["col"]] = review
        return dict(sorted(reviews.items()))
    finally:
        connection.close()


def read_reviews(db: str | Path, *, result_id: int | None = None, run_id: int | None = None
                 ) -> dict[tuple[int, int], dict[str, Any]]:
    """The newest review of each reviewed detection.

    Parameters
    ----------
    db : str or Path
        The results database, opened read-only (one written before reviews existed has none).
    result_id, run_id : int, optional
        Only this result's, or this run's, reviews.

    Returns
    -------
    dict
        (result id, detection index) -> the review (:data:`REVIEW_COLUMNS`, plus the result's ``run_id``,
        ``model_sha256`` and ``crop_path``: the saved crop, None when the line saved none).
    """
    connection = connect(Path(db), read_only=True)
    try:
        if "reviews" not in table_names(connection):
            return {}
        clauses, parameters = [], []
        if result_id is not None:
            clauses.append("v.result_id = ?")
            parameters.append(result_id)
        if run_id is not None:
            clauses.append("r.run_id = ?")
            parameters.append(run_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = connection.execute(
            f"SELECT {', '.join('v.' + c for c in REVIEW_COLUMNS)}, r.run_id, r.model_sha256, r.crop_paths "
            f"FROM reviews v JOIN results r ON r.id = v.result_id{where} ORDER BY v.id", parameters)
        reviews: dict[tuple[int, int], dict[str, Any]] = {}
        for values in rows:
            review = dict(zip((*REVIEW_COLUMNS, "run_id", "model_sha256"), values[:-1], strict=True))
            crop_paths = json.loads(values[-1]) if values[-1] else []
            index = review["detection"]
            review["crop_path"] = crop_paths[index] if index < len(crop_paths) else None
            reviews[review["result_id"], index] = review  # a later review replaces an earlier one
        return dict(sorted(reviews.items()))
    finally:
        connection.close()


def review_labels(db: str | Path, *, run_id: int) -> list[str]:
    """The labels a reviewer is offered for a run: ``good``, the classes its detections were given and every
    label reviewed in ``db`` so far, sorted."""
    connection = connect(Path(db), read_only=True)
    try:
        kinds = {row[0] for row in connection.execute(
            "SELECT DISTINCT json_extract(d.value, '$.kind') FROM results, json_each(results.detections) AS d "
            "WHERE results.run_id = ?", (run_id,))}
        if "reviews" in table_names(connection):
            kinds |= {row[0] for row in connection.execute("SELECT DISTINCT label FROM reviews")}
    finally:
        connection.close()
    return sorted({"good", *(kind for kind in kinds if kind)})


def _is_lot_database(db: Path) -> bool:
    """Whether ``db`` is a lot's grading database (else it is read as the line's results database)."""
    if not db.is_file():
        return False
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return "wafers" in table_names(connection)
    except sqlite3.DatabaseError:
        return False  # left to the results reader, which names what is wrong with the file
    finally:
        connection.close()


def _reviewed_crops(db: Path, run_id: int | None) -> tuple[list[tuple[dict[str, Any], bytes | Path]], int]:
    """(manifest entry, crop as PNG bytes or file) of every reviewed item whose crop is at hand, and how many
    reviewed items have none."""
    if _is_lot_database(db):
        if run_id is not None:
            raise ReviewError(f"--run {run_id}: {db} is a lot's grading database, which has no line runs")
        pictures = {(die["wafer"], die["row"], die["col"]): die["input_png"] for die in read_review_dies(db)}
        reviewed = read_die_reviews(db)
        # Ids that differ only in letter case ("W1", "w1") would share a file on macOS or Windows.
        stems = unique_on_any_file_system([
            (f"{file_stem(r['lot_id'], r['wafer_id'])}_r{r['row']}_c{r['col']}",
             (r["lot_id"], r["wafer_id"], str(r["row"]), str(r["col"]))) for r in reviewed.values()])
        found = []
        for (key, review), stem in zip(reviewed.items(), stems, strict=True):
            found.append(({"file": f"{review['label']}/{stem}.png", **{k: review[k] for k in (
                "label", "model_label", "reviewer", "at", "lot_id", "wafer_id", "row", "col")}}, pictures[key]))
        return found, 0
    reviews = read_reviews(db, run_id=run_id)
    found = []
    for review in reviews.values():
        if review["crop_path"] and Path(review["crop_path"]).is_file():
            name = f"r{review['result_id']:08d}_d{review['detection']:02d}.png"
            found.append(({"file": f"{review['label']}/{name}", **{k: review[k] for k in (
                "label", "model_label", "reviewer", "at", "run_id", "result_id", "detection", "model_sha256")}},
                          Path(review["crop_path"])))
    return found, len(reviews) - len(found)


def export_labels(db: str | Path, out: str | Path, *, run_id: int | None = None) -> dict[str, Any]:
    """Write every reviewed item's crop into ``out/<label>/`` (the folder ``inspect train`` reads) and a
    ``labels.json`` that says where each came from.

    Parameters
    ----------
    db : str or Path
        The line's results database (reviewed detections) or a lot's grading database (reviewed dies), opened
        read-only.
    out : str or Path
        The folder to write; it must not exist or be empty (an earlier export is never mixed in).
    run_id : int, optional
        Only this line run's reviews.

    Returns
    -------
    dict
        ``counts`` ({label: crops written}), ``relabelled`` (reviews whose label differs from the model's) and
        ``without_crop`` (reviewed detections whose crop was not saved or is gone; not exported).

    Raises
    ------
    ReviewError
        ``out`` is not empty, or there is no reviewed item with a crop to export.
    """
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ReviewError(f"{target}: exists and is not an empty folder; export into a new folder")
    found, without_crop = _reviewed_crops(Path(db), run_id)
    if not found:
        scope = f"run {run_id} of " if run_id is not None else ""
        raise ReviewError(f"{scope}{db}: nothing reviewed with a crop to export ({without_crop} reviewed without "
                          "one); review rejected parts or dies in `inspect serve` (a line run needs --save-ng DIR)")
    counts: dict[str, int] = {}
    try:
        for entry, crop in found:
            (target / entry["label"]).mkdir(parents=True, exist_ok=True)
            if isinstance(crop, Path):
                shutil.copyfile(crop, target / entry["file"])
            else:
                (target / entry["file"]).write_bytes(crop)
            counts[entry["label"]] = counts.get(entry["label"], 0) + 1
        entries = [entry for entry, _ in found]
        summary = {"database": str(Path(db).resolve()), "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                   "counts": dict(sorted(counts.items())),
                   "relabelled": sum(entry["label"] != entry["model_label"] for entry in entries),
                   "without_crop": without_crop}
        (target / "labels.json").write_text(json.dumps({**summary, "crops": entries}, indent=2) + "\n",
                                            encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"{target}: cannot write the labelled folder ({exc.strerror or exc})") from None
    return summary
