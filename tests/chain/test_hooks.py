"""The line's result hooks and metrics: told of every commit, equal to the database after a run, and never
able to stall or stop the line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import cv2
import pytest
from prometheus_client import CollectorRegistry

from inspection.acquire import open_camera
from inspection.chain.chain import build_chain
from inspection.chain.hooks import HookDispatcher, HookError, LineEvent, load_hook
from inspection.chain.line import run_line
from inspection.chain.metrics import LineMetrics
from inspection.recipe import load_recipe
from inspection.report import ResultStore, read_events
from inspection.sim.frames import render_frame
from tests.conftest import REPO_ROOT, results_json


def _run(camera_uri: str, db: Path, hooks: HookDispatcher, *, frames: int | None = None) -> None:
    recipe = load_recipe("wafer-die")
    store = ResultStore(db)
    run_id = store.start_run(camera=camera_uri, recipe_name=recipe.name, recipe_sha256="", software_version="t")
    camera = open_camera(camera_uri)
    camera.open()
    with build_chain(recipe) as chain:
        run_line(camera, chain, store, run_id=run_id, stop=threading.Event(), max_frames=frames, hooks=hooks)
    store.close()
    hooks.close()


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_metrics_equal_the_database_after_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(24):
        cv2.imwrite(str(folder / f"f{index:02d}.png"), render_frame("wafer", index, seed=3, defect_rate=0.6)[0])
    (folder / "f99.png").write_bytes(b"\x89PNG cut short")
    metrics = LineMetrics()
    db = tmp_path / "line.db"
    _run(f"folder:{folder}", db, HookDispatcher([metrics]))
    rows = results_json(db)
    registry = metrics.registry
    assert _value(registry, "inspect_frames_total") == len(rows) == 24
    for verdict, count in Counter(r["verdict"] for r in rows).items():
        assert _value(registry, "inspect_verdicts_total", verdict=verdict) == count
    assert _value(registry, "inspect_errors_total") == sum(r["verdict"] == "error" for r in rows)
    assert _value(registry, "inspect_skipped_inputs_total") == len(read_events(db)) == 1
    assert _value(registry, "inspect_latency_seconds_count") == 24
    batches = sum(len((r["inference"] or {}).get("batch_sizes", [])) for r in rows)
    assert batches > 0 and _value(registry, "inspect_inference_batch_size_count") == batches
    assert _value(registry, "inspect_stage_latency_seconds_count", stage="align") == 24


def test_a_slow_or_failing_hook_never_stalls_the_line(tmp_path: Path) -> None:
    seen: list[LineEvent] = []

    def slow(event: LineEvent) -> None:
        time.sleep(0.5)
        seen.append(event)

    def broken(event: LineEvent) -> None:
        raise RuntimeError("a user's bug")

    dispatcher = HookDispatcher([slow, broken], capacity=2)
    started = time.perf_counter()
    _run("sim:wafer", tmp_path / "line.db", dispatcher, frames=40)
    elapsed_s = time.perf_counter() - started
    assert len(results_json(tmp_path / "line.db")) == 40
    # 40 parts at 0.5 s a hook call would take 20 s; the line did not wait, it dropped what the hooks missed
    assert elapsed_s < 15 and dispatcher.dropped > 0 and len(seen) + dispatcher.dropped == 40
    assert dispatcher.errors["test_a_slow_or_failing_hook_never_stalls_the_line.<locals>.broken"] == len(seen)
    assert [e.kind for e in seen] == ["result"] * len(seen) and all(e.row_id for e in seen)


def test_hooks_named_on_the_command_line_load_or_say_why_not() -> None:
    assert load_hook("inspection.chain.metrics:LineMetrics").__class__ is LineMetrics  # a class: instantiated
    for spec, expected in (("nomodule", "expected module:function"), ("no.such.module:f", "No module named"),
                           ("inspection.chain.hooks:missing", "has no attribute 'missing'"),
                           ("inspection.chain.hooks:ENTRY_POINT_GROUP", "is not callable")):
        with pytest.raises(HookError, match=expected):
            load_hook(spec)


def test_the_metrics_endpoint_serves_while_the_line_runs(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port free now (the run binds it a moment later)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = tmp_path / "line.db"
    process = subprocess.Popen([sys.executable, "-m", "inspection", "run", "--camera", "sim:wafer?fps=40", "--db",
                                str(db), "-q", "--metrics-port", str(port)], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page = ""
        deadline = time.monotonic() + 180  # start-up is slow on a busy machine
        while time.monotonic() < deadline and "inspect_frames_total 1" not in page.replace(".0", ""):
            time.sleep(0.3)
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
            frames = [line for line in page.splitlines() if line.startswith("inspect_frames_total ")]
            if frames and float(frames[0].split()[1]) >= 10:
                break
        assert 'inspect_verdicts_total{verdict="pass"}' in page and "inspect_latency_seconds_bucket" in page
        assert "process_resident_memory_bytes" in page and "python_info" in page  # as every exporter has
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0
