"""Defect review end to end: an operator reviews the rejected parts of a real line run in a real browser (Debian's
Chromium, headless, clicking through the pages), ``inspect labels export`` turns the reviews into a labelled
folder, and ``inspect train`` trains on it; and every refusal on the way (no token, a wrong one, malformed or
oversized requests, an export into a used folder)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.report import read_results
from inspection.report.lots import read_review_dies
from inspection.report.reviews import (
    ReviewError,
    UnknownResult,
    add_die_review,
    add_review,
    export_labels,
    read_reviews,
)
from tests.conftest import run_cli
from tests.serve.browser import Browser, find_chromium
from tests.serve.conftest import local_client, served

fastapi = pytest.importorskip("fastapi")


from inspection.serve import MAX_BODY_BYTES, create_app  # noqa: E402

TOKEN = "review-token-for-the-tests"


@pytest.fixture
def review_db(line_db: Path, tmp_path: Path) -> Path:
    """A copy of the line's database (its pictures and crops stay where the line saved them)."""
    return Path(shutil.copy(line_db, tmp_path / "line.db"))


def test_review_round_trip_in_a_real_browser(review_db: Path, tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no headless Chromium here (apt-get install chromium)")
    rejected = [row for row in read_results(review_db) if row["verdict"] != "pass"]
    detections = sum(len(row["detections"]) for row in rejected)
    assert len(rejected) >= 3 and all(row["crop_paths"] and len(row["crop_paths"]) == len(row["detections"])
                                      for row in rejected)
    with served(review_db, review_token=TOKEN) as url, Browser(chromium, profile=tmp_path / "profile") as browser:
        browser.open(f"{url}/")
        first = browser.wait_for("document.querySelector('#parts figure a') && "
                                 "document.querySelector('#parts figure a').href")
        # The station lists the newest rejected parts first; review starts at the run's first one.
        browser.open(f"{url}/results/{rejected[0]['id']}")
        assert first.startswith(f"{url}/results/")
        browser.evaluate("document.querySelector('button[data-index]').click()")  # no token yet
        assert "not saved (401)" in browser.wait_for("document.getElementById('message').textContent")
        browser.evaluate(f"document.getElementById('token').value = {json.dumps(TOKEN)};"
                         "document.getElementById('reviewer').value = 'night shift'")
        pages = 0
        while True:
            pages += 1
            if pages <= 2:  # the operator's verdict on the first two parts' first detections: false rejects
                browser.evaluate("document.getElementById('label-0').value = 'good'")
            browser.evaluate("document.getElementById('message').textContent = ''")
            browser.evaluate("[...document.querySelectorAll('button')].find(b => b.textContent === 'save all')"
                             ".click()")
            browser.wait_for("document.getElementById('message').textContent.startsWith('saved: detection ' + "
                             "(document.querySelectorAll('button[data-index]').length - 1))")
            if pages == 1:
                browser.screenshot(tmp_path / "review.png")
            following = browser.evaluate("[...document.querySelectorAll('a')].find(a => a.textContent === "
                                         "'next part that did not pass')?.href ?? ''")
            if not following:
                break
            browser.open(following)  # the token and the reviewer stay with the browser tab
    assert pages == len(rejected)
    reviews = read_reviews(review_db)
    assert len(reviews) == detections
    for part in rejected[:2]:
        assert reviews[part["id"], 0]["label"] == "good"
        assert reviews[part["id"], 0]["model_label"] == part["detections"][0]["kind"]
    assert {review["reviewer"] for review in reviews.values()} == {"night shift"}
    assert sum(review["label"] != review["model_label"] for review in reviews.values()) == 2
    assert (tmp_path / "review.png").stat().st_size > 20_000

    exported = tmp_path / "labelled"
    run_cli("labels", "export", "--db", str(review_db), "--out", str(exported))
    manifest = json.loads((exported / "labels.json").read_text())
    assert sum(manifest["counts"].values()) == detections and manifest["relabelled"] == 2
    assert manifest["counts"]["good"] == 2 and (exported / manifest["crops"][0]["file"]).is_file()
    model = tmp_path / "model"
    run_cli("train", str(exported), "--colour", "rgb", "--img-size", "32", "--epochs", "2", "--out", str(model),
            timeout=600)
    card = json.loads((model / "model.json").read_text())
    assert set(card["class_names"]) == set(manifest["counts"]) and card["input"]["channels"] == 3
    assert card["training"]["class_counts_train"]["good"] == card["training"]["class_counts_val"]["good"] == 1
    assert card["thresholds"]["good_class"] == "good" and card["thresholds"]["defect_score"] is not None


def test_review_requests_are_refused_with_their_reason(review_db: Path) -> None:
    result = next(row for row in read_results(review_db) if row["detections"])
    review = {"result_id": result["id"], "detection": 0, "label": "scratch", "reviewer": "ann"}
    with_token = {"Authorization": f"Bearer {TOKEN}"}
    client = local_client(create_app(review_db, review_token=TOKEN))
    assert client.post("/api/reviews", json=review).status_code == 401
    assert client.post("/api/reviews", json=review, headers={"Authorization": "Bearer wrong"}).status_code == 401
    read_only = local_client(create_app(review_db)).post("/api/reviews", json=review, headers=with_token)
    assert read_only.status_code == 403 and "review is off" in read_only.json()["detail"]
    refused = {
        "unknown result": ({**review, "result_id": 10**9}, 404),
        "no such detection": ({**review, "detection": 99}, 422),
        "path in the label": ({**review, "label": "../../etc"}, 422),
        "label of spaces": ({**review, "label": "a b"}, 422),
        "id as text": ({**review, "result_id": str(result["id"])}, 422),
        "unknown field": ({**review, "path": "/etc/passwd"}, 422),
        "no reviewer": ({key: value for key, value in review.items() if key != "reviewer"}, 422),
    }
    for name, (body, status) in refused.items():
        answer = client.post("/api/reviews", json=body, headers=with_token)
        assert answer.status_code == status, name
    assert f"has {len(result['detections'])} detection(s)" in client.post(
        "/api/reviews", json={**review, "detection": 99}, headers=with_token).json()["detail"]
    oversized = client.post("/api/reviews", content=b"{" + b" " * MAX_BODY_BYTES + b"}", headers=with_token)
    assert oversized.status_code == 413
    chunked = client.post("/api/reviews", content=iter([b"{"] + [b" " * 4096] * 8 + [b"}"]), headers=with_token)
    assert chunked.status_code == 413  # no Content-Length: refused as the body streams in
    assert client.get("/results/0").status_code == 422 and client.get("/results/999999").status_code == 404
    assert client.get(f"/crops/{result['id']}/99").status_code == 404
    assert client.get(f"/crops/{result['id']}/..%2f..%2fline.db").status_code in (404, 422)
    assert read_reviews(review_db) == {}  # nothing refused was stored
    stored = client.post("/api/reviews", json=review, headers=with_token).json()
    assert stored["label"] == "scratch" and stored["model_label"] == result["detections"][0]["kind"]
    page = client.get(f"/results/{result['id']}").text
    assert "scratch (ann)" in page and f"/crops/{result['id']}/0" in page
    strip = client.get(f"/crops/{result['id']}/0")
    assert strip.status_code == 200 and strip.content[:4] == b"\x89PNG"


def test_the_newest_review_counts_and_exports_refuse_what_they_cannot_do(review_db: Path, tmp_path: Path) -> None:
    result = next(row for row in read_results(review_db) if len(row["detections"]) >= 2)
    with pytest.raises(ReviewError, match="nothing reviewed with a crop to export"):
        export_labels(review_db, tmp_path / "empty")
    add_review(review_db, result["id"], 0, label="particle", reviewer="ann")
    add_review(review_db, result["id"], 0, label="good", reviewer="bob")
    add_review(review_db, result["id"], 1, label="stain", reviewer="ann")
    reviews = read_reviews(review_db)
    assert [reviews[result["id"], 0]["label"], reviews[result["id"], 0]["reviewer"]] == ["good", "bob"]
    with pytest.raises(UnknownResult, match="no result 123456"):
        add_review(review_db, 123456, 0, label="good", reviewer="ann")
    with pytest.raises(ReviewError, match=r"reviewer '<script>'"):
        add_review(review_db, result["id"], 0, label="good", reviewer="<script>")
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("an earlier export")
    with pytest.raises(ReviewError, match="exists and is not an empty folder"):
        export_labels(review_db, used)
    Path(result["crop_paths"][1]).rename(tmp_path / "moved.png")  # a crop gone since the review
    try:
        summary = export_labels(review_db, tmp_path / "out")
    finally:
        (tmp_path / "moved.png").rename(result["crop_paths"][1])
    assert summary["counts"] == {"good": 1} and summary["without_crop"] == 1 and summary["relabelled"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good", "labels.json"]
    listed = run_cli("labels", "list", "--db", str(review_db), "--format", "json").stdout.splitlines()
    assert [json.loads(line)["label"] for line in listed] == ["good", "stain"]
    refused = run_cli("labels", "export", "--db", str(review_db), "--out", str(used), check=False)
    assert refused.returncode == 2 and f"{used}: exists and is not an empty folder" in refused.stderr


def test_a_short_review_token_is_refused_at_start(review_db: Path) -> None:
    env = {**os.environ, "INSPECT_REVIEW_TOKEN": "secret"}
    refused = run_cli("serve", "--db", str(review_db), "--port", "1", env=env, check=False, timeout=60)
    assert refused.returncode == 2 and "INSPECT_REVIEW_TOKEN: the review token has 6 characters" in refused.stderr


def test_dies_of_a_graded_lot_are_reviewed_exported_and_trained_on(graded_lots: Path, tmp_path: Path) -> None:
    lots = Path(shutil.copytree(graded_lots, tmp_path / "lots"))
    db = lots / "lot-a" / "grade.sqlite"
    dies = read_review_dies(db)
    assert dies and {die["wafer_id"] for die in dies} == {"wafer-01", "wafer-02"}
    assert all(cv2.imdecode(np.frombuffer(die["input_png"], np.uint8), cv2.IMREAD_UNCHANGED).ndim == 3 for die in dies)
    client = local_client(create_app(tmp_path / "none.db", lots=lots, review_token=TOKEN))
    assert '<a href="/lot-review?lot=lot-a">review dies</a>' in client.get("/lots").text
    page = client.get("/lot-review", params={"lot": "lot-a"}).text
    assert page.count("<button data-index=") == len(dies) and f"{len(dies)} dies to review" in page
    first = dies[0]
    where = {"lot": "lot-a", "wafer": first["wafer"], "row": first["row"], "col": first["col"]}
    strip = client.get("/lot-dies", params=where)
    assert strip.status_code == 200 and strip.content[:4] == b"\x89PNG"
    with_token = {"Authorization": f"Bearer {TOKEN}"}
    for index, die in enumerate(dies):  # the operator's verdict: the first two of each wafer are false rejects
        label = "good" if sum(d["wafer"] == die["wafer"] for d in dies[:index]) < 2 else die["class"]
        answer = client.post("/api/die-reviews", json={"lot": "lot-a", "wafer": die["wafer"], "row": die["row"],
                                                       "col": die["col"], "label": label, "reviewer": "yield"},
                             headers=with_token)
        assert answer.status_code == 200 and answer.json()["model_label"] == die["class"]
    refused = {
        "no token": ({**where, "label": "good", "reviewer": "x"}, {}, 401),
        "a lot not listed": ({**where, "lot": "../lot-a", "label": "good", "reviewer": "x"}, with_token, 404),
        "a die not kept": ({**where, "row": 99_999, "label": "good", "reviewer": "x"}, with_token, 404),
        "a bad label": ({**where, "label": "Good!", "reviewer": "x"}, with_token, 422),
    }
    for name, (body, headers, status) in refused.items():
        assert client.post("/api/die-reviews", json=body, headers=headers).status_code == status, name
    assert "good (yield)" in client.get("/lot-review", params={"lot": "lot-a"}).text
    assert client.get("/lot-review", params={"lot": "lot-b"}).status_code == 404

    exported = tmp_path / "labelled"
    run_cli("labels", "export", "--db", str(db), "--out", str(exported))
    manifest = json.loads((exported / "labels.json").read_text())
    assert sum(manifest["counts"].values()) == len(dies) and manifest["counts"]["good"] == 4
    assert manifest["relabelled"] == sum(entry["model_label"] != "good" for entry in manifest["crops"]
                                         if entry["label"] == "good")
    crop = cv2.imread(str(exported / manifest["crops"][0]["file"]), cv2.IMREAD_UNCHANGED)
    assert crop.ndim == 3 and crop.shape[2] == 3  # die, median die, difference: what the die classifier takes
    refused_run = run_cli("labels", "export", "--db", str(db), "--out", str(tmp_path / "x"), "--run", "1",
                          check=False)
    assert refused_run.returncode == 2 and "a lot's grading database, which has no line runs" in refused_run.stderr
    model = tmp_path / "model"
    run_cli("train", str(exported), "--colour", "rgb", "--img-size", "32", "--epochs", "1", "--out", str(model),
            timeout=600)
    card = json.loads((model / "model.json").read_text())
    assert set(card["class_names"]) == set(manifest["counts"]) and card["thresholds"]["defect_score"] is not None


def test_die_reviews_of_wafers_whose_ids_differ_only_in_case_export_to_two_files(graded_lots: Path,
                                                                                  tmp_path: Path) -> None:
    """"W1" and "w1" are two wafers; on macOS or Windows their crops must still be two files."""
    db = Path(shutil.copy(graded_lots / "lot-a" / "grade.sqlite", tmp_path / "grade.sqlite"))
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE wafers SET wafer_id = CASE wafer_id WHEN 'wafer-01' THEN 'W1' ELSE 'w1' END")
        for wafer in (1, 2):  # one die of each wafer at the same place, as on two wafers of one product
            connection.execute("UPDATE review_dies SET row = -50, col = -50 WHERE wafer = ? AND (row, col) = "
                               "(SELECT row, col FROM review_dies WHERE wafer = ? LIMIT 1)", (wafer, wafer))
    for wafer in (1, 2):
        add_die_review(db, wafer=wafer, row=-50, col=-50, label="good", reviewer="yield")
    exported = tmp_path / "labelled"
    export_labels(db, exported)
    files = [entry["file"] for entry in json.loads((exported / "labels.json").read_text())["crops"]]
    assert len(files) == 2 and len({name.casefold() for name in files}) == 2
    assert all((exported / name).is_file() for name in files)
