"""The line loop end to end, through the ``inspect`` command as an integrator runs it."""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspection.acquire import Camera, open_camera
from inspection.chain.chain import Failed, InspectedPart, PartChain, build_chain
from inspection.chain.line import run_line
from inspection.recipe import load_recipe
from inspection.report import ResultStore, read_events
from inspection.types import Frame
from tests.conftest import REPO_ROOT, results_json, run_cli

FAIL_CLASSES, REVIEW_CLASSES = {"particle", "scratch"}, {"stain"}  # the bundled wafer-die recipe's rules


def test_sim_wafer_run_names_each_defect_with_the_cnn_and_grades_by_class(tmp_path: Path) -> None:
    db, ng = tmp_path / "line.db", tmp_path / "ng"
    process = run_cli("run", "--camera", "sim:wafer?seed=4&defect_rate=0.4", "--frames", "30", "--db", str(db),
                      "--save-ng", str(ng))
    assert "wafer-line-patchnet-v1 fp32 on CPUExecutionProvider (checked here: max |dp|" in process.stderr
    assert "candidate(s) in" in process.stderr and "mean batch" in process.stderr
    rows = results_json(db)
    assert len(rows) == 30
    assert sorted(r["frame_counter"] for r in rows) == list(range(30))
    model_sha256 = json.loads((REPO_ROOT / "models" / "wafer-line-patchnet-v1" / "model.json").read_text())[
        "onnx_sha256"]
    right = defects = 0
    for row in rows:
        truth_kinds = {t["kind"] for t in row["truth"]}
        expected = "fail" if truth_kinds & FAIL_CLASSES else "review" if truth_kinds & REVIEW_CLASSES else "pass"
        assert row["verdict"] == expected, row
        assert {"preprocess", "align", "measure", "classify", "grade"} <= set(row["stage_latency_ms"])
        assert row["latency_ms"] > 0 and row["committed_at"] >= row["acquired_at"]
        assert row["model_sha256"] == model_sha256
        assert row["inference"]["candidates"] >= len(row["detections"])
        if row["inference"]["candidates"]:
            assert row["inference"]["batch_sizes"] and "batch_wait" in row["stage_latency_ms"]
        for truth in row["truth"]:
            defects += 1
            right += any(d["kind"] == truth["kind"] and _overlaps(d["box_xyxy_px"], truth["box_xyxy_px"])
                         for d in row["detections"])
        assert all(d["model_sha256"] == model_sha256 and d["score"] >= 0.5 for d in row["detections"])
    assert defects >= 10 and right >= defects - 1, (right, defects)
    rejected = [r for r in rows if r["verdict"] != "pass"]
    for row in rejected:
        picture = cv2.imread(row["image_path"])
        # The whole frame under a two-line bar: the verdict and source, then the reason (never drawn over the part).
        assert picture is not None and picture.shape[1:] == (512, 3) and 512 < picture.shape[0] <= 512 + 64
    assert all(r["image_path"] is None for r in rows if r["verdict"] == "pass")
    assert len(results_json(db, "--verdict", "fail")) == sum(r["verdict"] == "fail" for r in rows)

    table = list(csv.DictReader(io.StringIO(run_cli("results", "--db", str(db)).stdout)))
    assert len(table) == 30 and table[0]["verdict"] in ("pass", "fail", "review")


def _overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.camera
def test_genicam_run_with_a_taught_reference_finds_the_moving_square(tmp_path: Path, viky_cti: Path) -> None:
    uri = f"genicam:{viky_cti}?pixel_format=Mono8"
    golden = tmp_path / "golden.png"
    # The square moves 1 px a frame: over 45 frames no pixel is covered in most of them.
    taught = run_cli("teach", "--camera", uri, "--out", str(golden), "--frames", "45")
    assert "400x400 mono 8-bit, the median of 45 frames" in taught.stderr
    (tmp_path / "viky.yaml").write_text(
        "name: viky\nkind: wafer-die\npixel_size_um: 10\nreference: {golden: golden.png}\nalign: {method: none}\n"
        "grade: {review_area_um2: 500, fail_area_um2: 5000}\n"
    )
    db = tmp_path / "viky.db"
    run_cli("run", "--camera", uri, "--recipe", str(tmp_path / "viky.yaml"), "--frames", "30", "--db", str(db))
    rows = results_json(db)
    assert len(rows) == 30 and {r["source"] for r in rows} == {"genicam:VikyTL_DEV_red"}
    # Each frame of the virtual camera shows a black square that the taught (median) reference does not.
    for row in rows:
        assert row["verdict"] == "fail"
        assert any(d["kind"] == "dark" and d["max_abs_diff"] > 100 for d in row["detections"])


@pytest.mark.camera
def test_a_camera_whose_frames_do_not_fit_the_golden_is_refused_at_the_first_frame(tmp_path: Path,
                                                                                  pylon_emulator: None) -> None:
    db = tmp_path / "pylon.db"
    process = run_cli("run", "--camera", "pylon:emu", "--frames", "30", "--db", str(db), check=False)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert "wafer-die.yaml: reference.golden (sim:wafer) is 512x512 px but camera pylon:emu delivers 1024x1040 px" \
        in process.stderr and "inspect teach --camera 'pylon:emu'" in process.stderr
    assert results_json(db) == []
    with sqlite3.connect(db) as connection:
        status, reason = connection.execute("SELECT status, reason FROM runs").fetchone()
    assert status == "failed" and "1024x1040" in reason


def test_folder_with_a_corrupt_image_stores_the_others_and_names_it(tmp_path: Path) -> None:
    from inspection.sim.frames import render_frame

    folder = tmp_path / "lot"
    folder.mkdir()
    for index in range(6):
        cv2.imwrite(str(folder / f"wafer_{index:02d}.png"), render_frame("wafer", index, seed=9)[0])
    (folder / "wafer_03.png").write_bytes(b"\x89PNG truncated by a network copy")
    # 74 bytes whose header claims 60000 x 60000 px: refused before decoding, never the end of the line.
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (folder / "wafer_04.png").write_bytes(bomb + bytes(74 - len(bomb)))
    db = tmp_path / "lot.db"
    process = run_cli("run", "--camera", f"folder:{folder}", "--db", str(db))
    rows = results_json(db)
    assert len(rows) == 4
    assert not {"wafer_03.png", "wafer_04.png"} & {Path(r["path"]).name for r in rows}
    assert "skipped" in process.stderr and "wafer_03.png" in process.stderr and "Traceback" not in process.stderr
    events = read_events(db)
    assert [(e["kind"], Path(e["source"]).name) for e in events] == [("skipped", "wafer_03.png"),
                                                                    ("skipped", "wafer_04.png")]
    assert "60000 x 60000 px" in events[1]["detail"]


def _start_endless_run(db: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "inspection", "run", "--camera", "sim:wafer?fps=40", "--db", str(db)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rows(db: Path, count: int, *, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                    rows = connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                if rows >= count:
                    return rows
            except sqlite3.OperationalError:
                pass  # the schema is not created yet
        time.sleep(0.1)
    raise AssertionError(f"{db} did not reach {count} rows in {timeout_s} s")


def test_sigterm_drains_frames_in_flight_and_exits_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "term.db"
    process = _start_endless_run(db)
    _wait_for_rows(db, 10)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "SIGTERM: finishing the frames in flight" in stderr
    rows = results_json(db)
    assert f"run 1 stopped: {len(rows)} result(s) committed" in stderr
    assert sorted(r["frame_counter"] for r in rows) == list(range(len(rows))), "a frame in flight was lost"
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status, finished_at IS NOT NULL FROM runs").fetchone() == ("stopped", 1)


def test_sigterm_drains_at_once_while_the_camera_waits_for_a_frame(tmp_path: Path) -> None:
    """A watched folder with nothing in it and a fetch timeout of 600 s: the drain used to wait out the timeout."""
    recipe = yaml.safe_load((REPO_ROOT / "inspect" / "inspection" / "recipes" / "wafer-die.yaml").read_text())
    recipe["pipeline"]["fetch_timeout_s"] = 600
    recipe["classify"]["model"] = str(REPO_ROOT / recipe["classify"]["model"])
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "incoming").mkdir()
    db = tmp_path / "idle.db"
    command = [sys.executable, "-m", "inspection", "run", "--recipe", str(tmp_path / "recipe.yaml"), "--camera",
               f"folder:{tmp_path / 'incoming'}?watch=1", "--db", str(db), "-q"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    while "inspect: run 1:" not in (line := process.stderr.readline()):  # the line is running
        assert line, "the run ended before it started"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)  # far inside the 600 s the camera would have waited
    assert process.returncode == 0, stderr
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status FROM runs").fetchone() == ("stopped",)


def test_killed_process_loses_no_committed_row(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    process = _start_endless_run(db)
    seen = _wait_for_rows(db, 15)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("SELECT status FROM runs").fetchone()[0] == "running"  # it never finished
    rows = results_json(db)
    assert len(rows) >= seen
    assert all(r["verdict"] in ("pass", "fail", "review") and r["stage_latency_ms"] for r in rows)
    # The same database takes the next run, which closes the killed one as interrupted.
    run_cli("run", "--camera", "sim:wafer", "--frames", "3", "--db", str(db))
    assert len(results_json(db, "--run", "2")) == 3
    with sqlite3.connect(db) as connection:
        runs = connection.execute("SELECT run_id, status, reason FROM runs ORDER BY run_id").fetchall()
    assert [r[:2] for r in runs] == [(1, "interrupted"), (2, "completed")]
    assert f"pid {process.pid}" in runs[0][2] and "ended without finishing" in runs[0][2]


class CountingCamera(Camera):
    """A real sim camera that counts the frames it has handed out."""

    def __init__(self, uri: str) -> None:
        self.inner = open_camera(uri)
        self.uri = uri
        self.grabbed = 0

    def open(self) -> None:
        self.inner.open()

    def grab(self, *, timeout_s: float) -> Frame:
        frame = self.inner.grab(timeout_s=timeout_s)
        self.grabbed += 1
        return frame

    def close(self) -> None:
        self.inner.close()


class SlowChain(PartChain):
    """The bundled wafer-die chain, 20 ms slower per frame, counting the frames the camera is ahead of it."""

    def __init__(self, camera: CountingCamera) -> None:
        built = build_chain(load_recipe("wafer-die"))
        super().__init__(built.recipe, built.stages, classifier=built.classifier, batcher=built.batcher)
        self.camera = camera
        self.inspected = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()

    def __call__(self, frame: Frame, *, reference: Frame | None = None) -> InspectedPart | Failed:
        with self.lock:
            self.most_in_flight = max(self.most_in_flight, self.camera.grabbed - self.inspected)
        time.sleep(0.02)
        part = super().__call__(frame, reference=reference)
        with self.lock:
            self.inspected += 1
        return part


def test_a_slow_stage_makes_acquisition_wait_instead_of_queueing(tmp_path: Path) -> None:
    camera = CountingCamera("sim:wafer?defect_rate=0.3")
    chain = SlowChain(camera)
    settings = chain.recipe.pipeline
    store = ResultStore(tmp_path / "slow.db")
    run_id = store.start_run(camera=camera.uri, recipe_name=chain.recipe.name, recipe_sha256="", software_version="t")
    with chain:
        camera.open()
        stats = run_line(camera, chain, store, run_id=run_id, stop=threading.Event(), max_frames=80)
    store.close()
    assert stats.committed == 80 and camera.grabbed == 80
    assert stats.max_queue_depth <= settings.queue_depth
    # The free-running camera could deliver hundreds of frames meanwhile; the pipeline holds at most the
    # queue, the workers' frames and the one being handed over.
    assert chain.most_in_flight <= settings.queue_depth + settings.workers + 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--camera", "gige:10.0.0.5"], "unknown scheme 'gige'"),
        (["run", "--recipe", "nope.yaml"], "recipe 'nope.yaml': no such file, and not a bundled recipe"),
        (["run", "--frames", "0"], "argument --frames: expected a whole number within 1..1000000000000, got 0"),
        (["run", "--metrics-port", "99999"], "argument --metrics-port: expected a whole number within 1..65535"),
        (["teach", "--camera", "sim:wafer", "--out", "/proc/t.png", "--frames", "2"], "/proc/t.png"),
        (["synth", "lot", "/proc/lot", "--wafers", "100000000"], "--wafers: expected a whole number within 1..10000"),
        (["synth", "dies", "/proc/dies", "--per-class", "2"], "/proc/dies"),
        (["run", "--camera", "folder:/nonexistent"], "folder /nonexistent does not exist"),
        (["results", "--db", "/nonexistent/x.db"], "no results database there"),
    ],
)
def test_cli_errors_are_clear(args: list[str], message: str, tmp_path: Path) -> None:
    if args[0] == "run":
        args = [*args, "--db", str(tmp_path / "x.db")]
    # a wrong option is argparse's usage error (2); a path the system refuses is the command's error (2)
    process = run_cli(*args, check=False)
    assert process.returncode == 2, process.stderr
    assert message in process.stderr
    assert "Traceback" not in process.stderr


def test_run_refuses_a_database_that_is_not_ours_and_leaves_it_alone(tmp_path: Path) -> None:
    precious = tmp_path / "mes.db"
    precious.write_bytes(b"MES export, do not touch\n" * 50)
    before = precious.read_bytes()
    process = run_cli("run", "--camera", "sim:wafer", "--frames", "2", "--db", str(precious), check=False)
    assert process.returncode == 2 and "not a wafer-inspect results database" in process.stderr
    assert precious.read_bytes() == before
    assert np.array_equal(np.frombuffer(precious.read_bytes(), np.uint8), np.frombuffer(before, np.uint8))


DEEPPCB = REPO_ROOT.parent / "shared" / "data" / "deeppcb"


@pytest.mark.skipif(not (DEEPPCB / "trainval.txt").is_file(), reason=f"no DeepPCB data at {DEEPPCB}")
def test_the_pcb_line_stores_what_pcb_eval_finds_on_the_same_real_boards(tmp_path: Path) -> None:
    from inspection.acquire.deeppcb import read_pair_list
    from inspection.chain.pairs import inspect_pair
    from inspection.evaluate.detection import match_detections

    lines = [line for line in (DEEPPCB / "trainval.txt").read_text().splitlines() if line.startswith("group44000")]
    lines = lines[:24]
    listing = tmp_path / "pairs.txt"
    listing.write_text("\n".join(lines) + "\n")
    pairs = read_pair_list(DEEPPCB, listing)
    folder = tmp_path / "boards"  # a line's folder: each board under test beside its golden template
    folder.mkdir()
    for pair in pairs:
        for source in (pair.test_path, pair.template_path):
            (folder / source.name).symlink_to(source)
    db = tmp_path / "pcb.db"
    process = run_cli("run", "--camera", f"folder:{folder}", "--recipe", "pcb-deeppcb", "--db", str(db))
    assert "glob=*_test*" in process.stderr
    assert "pcb-patchnet-l-v7 int8 on CPUExecutionProvider (checked here" in process.stderr
    rows = {Path(r["path"]).name: r for r in results_json(db)}
    assert len(rows) == len(pairs) == 24 and all(r["verdict"] != "error" for r in rows.values())

    # The same chain, pair by pair, as inspect pcb inspect runs it: the very same detections.
    with build_chain(load_recipe("pcb-deeppcb")) as chain:
        for pair in pairs[:6]:
            part = inspect_pair(chain, pair.test_path, pair.template_path)
            stored = rows[pair.test_path.name]["detections"]
            assert [(d["kind"], d["score"], d["reported_box_xyxy_px"]) for d in stored] == [
                (d.kind, round(d.score, 4), [round(v, 1) for v in d.box_xyxy_px or ()]) for d in part.detections]

    # inspect pcb eval on the same pairs: its precision, recall and F-score are those of the stored detections.
    report = json.loads(run_cli("pcb", "eval", str(DEEPPCB), "--list", str(listing), "--json").stdout)
    hits = detections = 0
    for pair in pairs:
        stored = rows[pair.test_path.name]["detections"]
        boxes = np.array([d["reported_box_xyxy_px"] for d in stored], float).reshape(-1, 4)
        matched = match_detections(boxes, [d["kind"] for d in stored], np.array([d["score"] for d in stored]),
                                   pair.boxes, list(pair.kinds))
        hits, detections = hits + int(matched.sum()), detections + len(stored)
    truth = sum(len(pair.kinds) for pair in pairs)
    assert report["detections"] == detections and report["pairs"] == 24
    assert report["precision"] == pytest.approx(hits / detections, abs=1e-4)
    assert report["recall"] == pytest.approx(hits / truth, abs=1e-4)
    assert report["f_score"] > 0.9


def _run_failure(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, str]]]:
    db = tmp_path / "bad.db"
    process = run_cli("run", "--frames", "5", "--db", str(db), *args, check=False)
    assert "Traceback" not in process.stderr
    assert results_json(db) == []  # nothing but the failed run's record
    with sqlite3.connect(db) as connection:
        return process, connection.execute("SELECT status, reason FROM runs").fetchall()


def test_a_recipe_the_model_cannot_serve_fails_the_run_before_any_frame(tmp_path: Path) -> None:
    recipe = tmp_path / "station.yaml"
    model = REPO_ROOT / "models" / "wafer-line-patchnet-v1"
    recipe.write_text("name: s\nkind: wafer-die\npixel_size_um: 5\nreference: {golden: 'sim:wafer'}\n"
                      f"classify: {{model: {model}, fail_classes: [particle, crack]}}\n")
    process, runs = _run_failure(tmp_path, "--recipe", str(recipe), "--camera", "sim:wafer")
    assert process.returncode == 2 and "station.yaml: classify rules name crack" in process.stderr
    assert runs == [("failed", runs[0][1])] and "crack" in runs[0][1]
    process, runs = _run_failure(tmp_path, "--device", "cuda")
    assert process.returncode == 2 and "--device cuda: ONNX Runtime here has no CUDAExecutionProvider (present: " \
        in process.stderr and "CPUExecutionProvider" in process.stderr


def test_a_run_whose_every_frame_is_an_error_exits_non_zero(tmp_path: Path) -> None:
    folder = tmp_path / "noise"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):  # nothing like the wafer: registration refuses every frame
        cv2.imwrite(str(folder / f"{index}.png"), rng.integers(0, 256, (512, 512), dtype=np.uint8))
    db = tmp_path / "noise.db"
    process = run_cli("run", "--camera", f"folder:{folder}", "--db", str(db), check=False)
    assert process.returncode == 1 and "every one of the 3 frame(s) ended in error" in process.stderr
    rows = results_json(db)
    assert [r["verdict"] for r in rows] == ["error"] * 3 and all("no reliable match" in r["reason"] for r in rows)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status FROM runs").fetchone() == ("failed",)


def test_a_full_disk_stops_the_line_with_one_line_and_keeps_what_was_committed(tmp_path: Path) -> None:
    db = tmp_path / "line.db"

    def small_disk() -> None:  # writes past 400 kB fail, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    process = subprocess.run([sys.executable, "-m", "inspection", "run", "--camera", "sim:wafer?defect_rate=0.5",
                              "--frames", "5000", "--db", str(db), "-q"], preexec_fn=small_disk,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 2 and "Traceback" not in process.stderr, process.stderr[-3000:]
    [error] = [line for line in process.stderr.splitlines() if line.startswith("inspect: error:")]
    assert str(db) in error and "cannot write the results database" in error and "committed result(s)" in error
    rows = results_json(db)  # the file is whole and every committed part is in it
    assert 1 <= len(rows) < 5000 and len({r["frame_counter"] for r in rows}) == len(rows)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        [(status, reason)] = connection.execute("SELECT status, reason FROM runs").fetchall()
    assert status == "failed" and "cannot write the results database" in reason


def test_a_picture_that_cannot_be_saved_never_costs_the_part_its_result(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    db = tmp_path / "line.db"
    process = run_cli("run", "--frames", "12", "--db", str(db), "--save-ng", str(blocker / "ng"), "-q")
    rows = results_json(db)
    assert len(rows) == 12 and any(r["verdict"] != "pass" for r in rows)
    assert all(r["image_path"] is None for r in rows)
    events = read_events(db)
    assert [e["kind"] for e in events] == ["picture-not-saved"]  # once, not once per part
    assert "could not be saved" in process.stderr and "Traceback" not in process.stderr


def test_a_database_where_nothing_can_be_written_is_named_with_the_cause(tmp_path: Path) -> None:
    process = run_cli("run", "--frames", "3", "--db", "/proc/wafer-inspect-test.db", check=False)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert "/proc/wafer-inspect-test.db: cannot open the wafer-inspect results database" in process.stderr
    assert "not a wafer-inspect" not in process.stderr


@pytest.mark.parametrize(("uri", "expected"), [
    ("folder:{tmp}/missing", "does not exist"),
    ("folder:{tmp}/a-file", "is a file"),
    ("opencv:{tmp}/missing.mp4", "cannot open stream"),
    ("opencv:99", "cannot open device index 99"),
    ("sim:wafer?fps=-1", "fps must be within"),
    ("sim:wafer?fps=nan", "must be a finite number"),
    ("sim:wafer?size=0", "size must be within"),
])
def test_a_wrong_camera_fails_before_the_database_is_touched(tmp_path: Path, uri: str, expected: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    db = tmp_path / "never.db"
    process = run_cli("run", "--camera", uri.format(tmp=tmp_path), "--frames", "2", "--db", str(db), check=False)
    assert process.returncode == 2 and expected in process.stderr and "Traceback" not in process.stderr
    assert not db.exists()


def test_a_region_of_interest_outside_the_golden_is_a_recipe_error(tmp_path: Path) -> None:
    recipe = tmp_path / "roi.yaml"
    recipe.write_text("name: roi\nkind: wafer-die\npixel_size_um: 5\nreference: {golden: 'sim:wafer'}\n"
                      "preprocess: {roi_xywh_px: [0, 0, 4000, 4000]}\n"
                      "grade: {review_area_um2: 100, fail_area_um2: 400}\n")
    process = run_cli("run", "--recipe", str(recipe), "--camera", "sim:wafer", "--frames", "2", "--db",
                      str(tmp_path / "r.db"), check=False)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert f"{recipe}: preprocess.roi_xywh_px (0, 0, 4000, 4000)" in process.stderr


@pytest.mark.camera
def test_a_recipe_sets_the_camera_up_and_the_run_keeps_what_the_camera_read_back(tmp_path: Path,
                                                                               pylon_emulator: None) -> None:
    golden = tmp_path / "golden.png"
    run_cli("teach", "--camera", "pylon:emu?pixel_format=Mono8", "--out", str(golden), "--frames", "3")
    (tmp_path / "station.yaml").write_text(
        "name: station\nkind: wafer-die\npixel_size_um: 10\nreference: {golden: golden.png}\nalign: {method: none}\n"
        "grade: {review_area_um2: 500, fail_area_um2: 5000}\n"
        "camera:\n  uri: pylon:emu\n  exposure_us: 4000\n  gain_db: 3\n  pixel_format: Mono8\n"
        "  trigger: {mode: software}\n  buffer: oldest-first\n"
    )
    db = tmp_path / "station.db"
    process = run_cli("run", "--recipe", str(tmp_path / "station.yaml"), "--frames", "4", "--db", str(db))
    assert "inspect: camera set up:" in process.stderr
    assert len(results_json(db)) == 4  # a software trigger per frame
    [event] = [e for e in read_events(db) if e["kind"] == "camera-settings"]
    applied = json.loads(event["detail"])
    assert applied["exposure_us"] == pytest.approx(4000) and applied["gain_db"] == pytest.approx(3, abs=0.05)
    assert applied["trigger"]["TriggerSource"] == "Software" and applied["pixel_format"] == "Mono8"


def test_sigterm_while_the_model_loads_marks_the_run(tmp_path: Path) -> None:
    """The run's row is written before the chain is built (model load and its check take a second or more): a
    SIGTERM then used to kill the process at once and leave the run "running"."""
    db = tmp_path / "early.db"
    process = _start_endless_run(db)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                if connection.execute("SELECT count(*) FROM runs").fetchone()[0]:
                    break
        except sqlite3.OperationalError:
            pass  # not created yet
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode in (0, 130) and "Traceback" not in stderr, stderr[-2000:]
    with sqlite3.connect(db) as connection:
        status, finished = connection.execute("SELECT status, finished_at IS NOT NULL FROM runs").fetchone()
    assert status == "stopped" and finished
