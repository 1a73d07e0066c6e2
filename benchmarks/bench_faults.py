"""Faults and hostile inputs against the real commands: nothing committed is lost, no process is orphaned, no
command prints a traceback.

    python benchmarks/bench_faults.py [--kill-trials 50] [--grade-trials 6] [--hostile 400] [--seed 0]

- SIGKILL trials of ``inspect run`` (simulated camera) at a random moment: committed rows before the kill
  against rows after it, and the database's integrity check; the next open closes the killed run.
- SIGKILL and SIGTERM trials of ``inspect grade --workers 2``: wafers committed before against after, and the
  pool workers still alive 5 s after their parent died (orphans).
- Drain trials: SIGTERM to ``inspect run``; it must exit 0 with its run ``stopped`` and the frames in flight
  committed.
- Start-up trials: SIGTERM to ``inspect run`` while it loads its model; the run must end marked, not ``running``.
- Idle drain trials: SIGTERM to a line waiting on an empty watched folder with a 600 s fetch timeout.
- Grade interrupt trials: Ctrl-C to ``inspect grade --workers 2`` after 0-3 wafers; every wafer reported is
  committed, the exit is prompt and no worker survives. Wafer-map evaluation pools killed by SIGKILL and SIGTERM.
- Environmental faults: a disk that fills up (a file-size limit), a picture folder that cannot be written, a
  database where nothing can be written, a database with a damaged page, a FIFO among a folder camera's images;
  each must end with one line and no traceback (the FIFO skipped as an event).
- Hostile inputs: seeded mutations of a recipe, a lot manifest, npz/SINF/E142/KLARF files, image headers, camera
  URIs and model cards, and structure-aware ones (fields that lie about sizes and digit counts, nesting thousands
  deep, control characters behind YAML and JSON escapes, Unicode and colliding ids), through the parsers the
  commands use (a named error or a valid result; anything else is a crash), and a share of the mutated recipes
  and manifests through the command line itself, where ids must give one set of files each.

The record, with the machine and date, goes to ``benchmarks/results/faults-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from inspection.acquire import open_camera, read_image
from inspection.acquire.lot import read_lot
from inspection.classify.card import read_card
from inspection.classify.timing import machine
from inspection.recipe import load_recipe
from inspection.report import read_runs
from inspection.report.klarf import write_klarf
from inspection.report.maps import write_e142, write_npz, write_sinf
from inspection.report.records import save_record
from inspection.samples.lot import make_lot
from inspection.sim.frames import render_frame
from inspection.types import InspectionError
from inspection.wafermap.formats import read_e142, read_npz, read_sinf
from inspection.wafermap.klarf import Klarf, klarf_die_map, read_klarf

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
INSPECT = [sys.executable, "-m", "inspection"]


def _count(db: Path, table: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return 0


def _integrity(db: Path) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_run_trials(trials: int, rng: random.Random, work: Path) -> dict[str, Any]:
    lost, corrupt, not_closed, shown_running, committed = 0, 0, 0, 0, []
    for trial in tqdm(range(trials), desc="kill inspect run"):
        db = work / f"kill-{trial}.db"
        process = subprocess.Popen([*INSPECT, "run", "--camera", "sim:wafer?fps=60", "--db", str(db), "-q"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 4.0))
        before = _count(db, "results")
        process.send_signal(signal.SIGKILL)
        process.wait()
        after = _count(db, "results")
        lost += max(0, before - after)
        corrupt += db.exists() and not _integrity(db)
        committed.append(after)
        with contextlib.suppress(InspectionError):  # no run row yet: killed before the database was made
            shown_running += any(run["status"] == "running" for run in read_runs(db))
        if trial % 10 == 0 and db.exists():  # the next run closes the killed one
            subprocess.run([*INSPECT, "run", "--frames", "2", "--db", str(db), "-q"], cwd=ROOT, capture_output=True)
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                status = connection.execute("SELECT status FROM runs WHERE run_id = 1").fetchone()
            not_closed += status is not None and status[0] != "interrupted"
    return {"trials": trials, "committed_rows_lost": lost, "databases_failing_integrity_check": corrupt,
            "killed_runs_not_closed_on_next_open": not_closed, "killed_runs_shown_running_to_readers": shown_running,
            "rows_committed_per_trial": {"min": min(committed), "max": max(committed)}}


def kill_grade_trials(trials: int, rng: random.Random, work: Path) -> dict[str, Any]:
    lot = work / "lot"
    make_lot(lot, wafers=8, seed=7)
    lost, orphans, by_signal = 0, 0, Counter()
    for trial in tqdm(range(trials), desc="kill inspect grade"):
        out = work / f"grade-{trial}"
        sig = (signal.SIGKILL, signal.SIGTERM)[trial % 2]
        process = subprocess.Popen([*INSPECT, "grade", str(lot), "--out", str(out), "--workers", "2", "--quiet"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline and process.poll() is None:
            workers = _children(process.pid)
            time.sleep(0.05)
        time.sleep(rng.uniform(1.0, 6.0))
        before = _count(out / "grade.sqlite", "wafers")
        process.send_signal(sig)
        process.wait()
        time.sleep(5.0)
        orphans += sum(_alive(pid) for pid in workers)
        for pid in workers:  # leave nothing behind for the next trial, whatever was measured
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        lost += max(0, before - _count(out / "grade.sqlite", "wafers"))
        by_signal[signal.Signals(sig).name] += 1
    return {"trials": trials, "signals": dict(by_signal), "committed_wafers_lost": lost, "orphan_processes": orphans}


def drain_trials(trials: int, rng: random.Random, work: Path) -> dict[str, Any]:
    clean, outcomes = 0, []
    for trial in tqdm(range(trials), desc="drain inspect run"):
        db = work / f"drain-{trial}.db"
        process = subprocess.Popen([*INSPECT, "run", "--camera", "sim:wafer?fps=60", "--db", str(db), "-q"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(2.0, 4.0))
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            status = connection.execute("SELECT status FROM runs").fetchone()[0]
        ok = process.returncode == 0 and status == "stopped" and "Traceback" not in stderr
        clean += ok
        drain_s = round(time.monotonic() - stopped_at, 2)
        outcomes.append({"exit": process.returncode, "status": status, "drain_s": drain_s})
    return {"trials": trials, "drained_cleanly": clean,
            "drain_s_max": max(o["drain_s"] for o in outcomes), "failures": [o for o in outcomes if o["exit"] != 0]}


def _run_row_exists(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return bool(connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    except sqlite3.Error:
        return False


def startup_sigterm_trials(trials: int, rng: random.Random, work: Path) -> dict[str, Any]:
    """SIGTERM between the run's row and the line's start (model load and check)."""
    outcomes = []
    for trial in tqdm(range(trials), desc="SIGTERM while starting"):
        db = work / f"start-{trial}.db"
        process = subprocess.Popen([*INSPECT, "run", "--camera", "sim:wafer?fps=60", "--db", str(db), "-q"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not _run_row_exists(db) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.6))
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            status = connection.execute("SELECT status FROM runs").fetchone()[0]
        outcomes.append({"exit": process.returncode, "status": status, "traceback": "Traceback" in stderr,
                         "exit_s": round(time.monotonic() - stopped_at, 2)})
    return {"trials": trials, "left_running": sum(o["status"] == "running" for o in outcomes),
            "tracebacks": sum(o["traceback"] for o in outcomes), "exit_s_max": max(o["exit_s"] for o in outcomes),
            "statuses": dict(Counter(o["status"] for o in outcomes))}


def idle_drain_trials(trials: int, rng: random.Random, work: Path) -> dict[str, Any]:
    """SIGTERM to a line whose camera waits (an empty watched folder) with a 600 s fetch timeout."""
    recipe = load_recipe("wafer-die")
    pipeline = recipe.pipeline.model_copy(update={"fetch_timeout_s": 600.0})
    recipe_file = work / "idle.yaml"
    data = recipe.model_dump(mode="json", exclude={"source_path"}, exclude_none=True)
    data["pipeline"] = pipeline.model_dump(mode="json")
    recipe_file.write_text(json.dumps(data))  # JSON is YAML
    incoming = work / "incoming"
    incoming.mkdir(exist_ok=True)
    drains = []
    for trial in tqdm(range(trials), desc="drain a waiting line"):
        db = work / f"idle-{trial}.db"
        process = subprocess.Popen([*INSPECT, "run", "--recipe", str(recipe_file), "--camera",
                                    f"folder:{incoming}?watch=1", "--db", str(db), "-q"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        while (line := process.stderr.readline()) and "inspect: run 1:" not in line:
            pass
        time.sleep(rng.uniform(0.2, 1.5))
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=700)
        drains.append({"exit": process.returncode, "drain_s": round(time.monotonic() - stopped_at, 2)})
    return {"trials": trials, "fetch_timeout_s": 600, "drain_s_max": max(d["drain_s"] for d in drains),
            "failures": [d for d in drains if d["exit"] != 0]}


def grade_interrupt_trials(trials: int, rng: random.Random, work: Path) -> dict[str, Any]:
    """Ctrl-C to a pool grade after a few wafers: those reported are committed, the rest are left, no orphan."""
    lot = work / "lot"
    outcomes = []
    for trial in tqdm(range(trials), desc="Ctrl-C inspect grade"):
        out = work / f"interrupt-{trial}"
        process = subprocess.Popen([*INSPECT, "grade", str(lot), "--out", str(out), "--workers", "2"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        workers: set[int] = set()
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline and process.poll() is None:
            workers = _children(process.pid)
            time.sleep(0.05)
        wanted, reported = rng.randint(0, 3), []
        while len(reported) < wanted and (line := process.stderr.readline()):
            reported += [line.split(":")[0]] if line.startswith("wafer-") else []
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=120)
        exit_s = round(time.monotonic() - stopped_at, 2)
        reported += [line.split(":")[0] for line in rest.splitlines() if line.startswith("wafer-")]
        time.sleep(1.0)
        orphans = sum(_alive(pid) for pid in workers)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        committed = _count(out / "grade.sqlite", "wafers")
        outcomes.append({"reported": len(reported), "committed": committed, "exit_s": exit_s, "orphans": orphans,
                         "traceback": "Traceback" in rest})
    return {"trials": trials, "reported_not_committed": sum(max(0, o["reported"] - o["committed"]) for o in outcomes),
            "orphan_processes": sum(o["orphans"] for o in outcomes), "exit_s_max": max(o["exit_s"] for o in outcomes),
            "tracebacks": sum(o["traceback"] for o in outcomes)}


def wafermap_pool_kill_trials(work: Path) -> dict[str, Any]:
    """``inspect wafermap eval --workers 2`` killed mid-evaluation: its workers must not outlive it."""
    from inspection.wafermap import PATTERNS, MapSet

    rng = np.random.default_rng(0)
    disc = np.hypot(*np.mgrid[-20:20, -20:20]) < 19
    maps = [np.where(disc, rng.integers(1, 3, disc.shape), 0).astype(np.uint8) for _ in range(20_000)]
    data = write_npz(work / "many.npz", MapSet(maps, np.zeros(len(maps), np.int64), PATTERNS))
    orphans = Counter()
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        process = subprocess.Popen([*INSPECT, "wafermap", "eval", str(data), "--workers", "2"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        workers: set[int] = set()
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline and process.poll() is None:
            workers = _children(process.pid)
            time.sleep(0.05)
        process.send_signal(sig)
        process.wait(timeout=60)
        time.sleep(5.0)
        orphans[signal.Signals(sig).name] = sum(_alive(pid) for pid in workers)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return {"signals": list(orphans), "orphan_processes": dict(orphans)}


def environment_faults(work: Path) -> dict[str, Any]:
    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    blocker = work / "a-file"
    blocker.write_text("not a folder")
    damaged = work / "damaged.db"
    subprocess.run([*INSPECT, "run", "--frames", "40", "--db", str(damaged), "-q"], cwd=ROOT, capture_output=True)
    size = damaged.stat().st_size
    with damaged.open("r+b") as handle:  # the middle third overwritten, as by a failing disk
        handle.seek(size // 3 // 4096 * 4096)
        handle.write(bytes(range(256)) * (size // 3 // 256))
    fifo_folder = work / "with-fifo"
    fifo_folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(fifo_folder / f"f{index:03d}.png"), render_frame("wafer", index, seed=9)[0])
    os.mkfifo(fifo_folder / "f001x.png")
    cases = {
        "disk fills up": ([*INSPECT, "run", "--camera", "sim:wafer?defect_rate=0.5", "--frames", "5000", "--db",
                           str(work / "full.db"), "-q"], small_disk),
        "picture folder cannot be written": ([*INSPECT, "run", "--frames", "20", "--db", str(work / "ng.db"),
                                              "--save-ng", str(blocker / "ng"), "-q"], None),
        "database where nothing can be written": ([*INSPECT, "run", "--frames", "2", "--db",
                                                   "/proc/wafer-inspect-fault.db", "-q"], None),
        "lot output where nothing can be written": ([*INSPECT, "grade", str(work / "lot"), "--out",
                                                     "/proc/wafer-inspect-fault", "--quiet"], None),
        "database with a damaged page": ([*INSPECT, "results", "--db", str(damaged)], None),
        "a FIFO among a folder camera's images": ([*INSPECT, "run", "--camera", f"folder:{fifo_folder}", "--db",
                                                   str(work / "fifo.db"), "-q"], None),
    }
    results = {}
    for name, (command, before) in tqdm(cases.items(), desc="environment faults"):
        try:
            process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, preexec_fn=before,
                                     timeout=120)
        except subprocess.TimeoutExpired:
            results[name] = {"exit": None, "hung": True}
            continue
        errors = [line for line in process.stderr.splitlines() if line.startswith(("inspect: error:",
                                                                                   "inspect: skipped"))]
        results[name] = {"exit": process.returncode, "traceback": "Traceback" in process.stderr,
                         "message": errors[0][:300] if errors else None}
    return results


# --- hostile inputs -------------------------------------------------------------------------------------------

def _mutate(base: bytes, rng: random.Random) -> bytes:
    data = bytearray(base)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(data) + 1)
        insert = bytes(rng.randrange(256) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.3:  # a token a person or a broken writer might put there
            insert = rng.choice([b"1e400", b"-1", b".nan", b"99999999999999999999999", b"\x00", b"\xff\xfe", b"&a",
                                 b"*a", b"../../etc/passwd", b"=HYPERLINK(", b"\n", b";", b"{", b"<!ENTITY"])
        data[at : at + rng.randint(0, 16)] = insert
    return bytes(data)


def _valid_inputs(work: Path) -> dict[str, bytes]:
    die_map = np.array([[0, 1, 1, 0], [1, 2, 1, 1], [0, 1, 2, 0]], np.uint8)
    np.savez(work / "maps.npz", flat=die_map.ravel(), offsets=np.array([0, die_map.size]),
             shapes=np.array([die_map.shape]), label=np.array([0]))
    write_sinf(work / "w.sinf", die_map, wafer_id="W1")
    write_e142(work / "w.xml", die_map, substrate_id="W1")
    klarf = Klarf("LOT", "W1", 1, (8000.0, 8000.0), (0.0, 0.0), {0: "good", 1: "particle"}, [(0, 0), (1, 0)],
                  [{"DEFECTID": 1, "XREL": 1.0, "YREL": 2.0, "XINDEX": 1, "YINDEX": 0, "XSIZE": 5.0, "YSIZE": 5.0,
                    "DEFECTAREA": 25.0, "DSIZE": 5.0, "CLASSNUMBER": 1, "TEST": 1, "CLUSTERNUMBER": 0,
                    "ROUGHBINNUMBER": 1, "FINEBINNUMBER": 1, "REVIEWSAMPLE": 0, "IMAGECOUNT": 0}])
    write_klarf(work / "w.klarf", klarf, station="s", recipe="r", moment=datetime(2026, 12, 1, tzinfo=UTC))
    inputs = {name: (work / name).read_bytes() for name in ("maps.npz", "w.sinf", "w.xml", "w.klarf")}
    inputs["recipe.yaml"] = (ROOT / "inspect" / "inspection" / "recipes" / "wafer-die.yaml").read_bytes()
    inputs["lot.csv"] = (work / "lot" / "lot.csv").read_bytes()
    inputs["model.json"] = (ROOT / "models" / "die-patchnet-v1" / "model.json").read_bytes()
    _, png = cv2.imencode(".png", np.zeros((32, 32), np.uint8))
    inputs["image.png"] = png.tobytes()
    return inputs


def _card_parser(work: Path) -> Callable[[Path], Any]:
    model = Path(shutil.copytree(ROOT / "models" / "die-patchnet-v1", work / "card-model"))

    def parse(path: Path) -> Any:
        shutil.copy(path, model / "model.json")
        return read_card(model)
    return parse


_LYING_NUMBERS = ["9" * 5000, "-1", "0x1", "0_2", "1e-300", "1e300", "nan", "inf", "\u00b2", "", " ", "F" * 30,
                  str(2**63), str(-(2**63) - 1), "1" * 40, "0", "65536"]
_HOSTILE_TEXT = ["W\n1", "W\x001", "\uff1d1+1", "W;1", 'W"1', "{", "}", "\u202eW1", "W\r1", "\x07", "../../x",
                 "\ud7ff", "W" * 5000, "\t", "\u0085"]


def _unicode_text(rng: random.Random, *, max_chars: int = 12) -> str:
    pools = ["AZaz09", " _/;:\\.+@=,\"'*?<>|", "\uff1d\uff21\u00e9\u00c9\u00df\u0130\u03a3\u03c3",
             "\u4e2d\u6587\u0627\u0644\u05e9\U0001f600\u0301"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, max_chars)))


def _structured(kind: str, rng: random.Random, inputs: dict[str, bytes]) -> bytes:
    """A valid-looking file of ``kind`` whose fields lie: sizes, digit counts, nesting, escapes, encodings."""
    number, text = rng.choice(_LYING_NUMBERS), rng.choice([*_HOSTILE_TEXT, _unicode_text(rng)])
    depth = rng.choice([30, 500, 5000, 50_000])
    if kind == "recipe.yaml":
        data = yaml.safe_load(inputs[kind])
        choice = rng.randrange(4)
        if choice == 0:  # a hostile string where a path or name goes, written through YAML's escapes
            section, field = rng.choice([(None, "name"), ("camera", "uri"), ("reference", "golden"),
                                         ("classify", "model"), ("camera", "feature_file"), ("opcua", "certificate")])
            if section is not None and not isinstance(data.get(section), dict):
                data[section] = {}
            (data if section is None else data[section])[field] = text
            return yaml.safe_dump(data, allow_unicode=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        if choice == 1:  # a number that lies
            section, field = rng.choice([("pipeline", "workers"), ("pipeline", "fetch_timeout_s"), (None,
                                         "pixel_size_um"), ("align", "max_shift_px"), ("classify", "max_batch")])
            body = yaml.safe_dump(data).replace(f"{field}: ", f"{field}: {number} #", 1)
            return body.encode("utf-8", "surrogatepass")
        if choice == 2:
            return inputs[kind] + f"\nextra: {'[' * depth}{']' * depth}\n".encode()
        return inputs[kind] + "".join(f"\nk{i}: {i}" for i in range(rng.choice([100, 20_000, 70_000]))).encode()
    if kind == "model.json":
        card = json.loads(inputs[kind])
        choice = rng.randrange(3)
        if choice == 0:
            card[rng.choice(["onnx_file", "output_name", "arch", "task"])] = text
        elif choice == 1:
            text_card = json.dumps(card).replace('"opset": 17', f'"opset": {number or 0}')
            return text_card.encode("utf-8", "surrogatepass")
        else:
            return json.dumps(card).replace('"training": {', '"training": {"deep": ' + "[" * depth + "]" * depth
                                            + ", ", 1).encode()
        return json.dumps(card).encode("utf-8", "surrogatepass")
    if kind == "lot.csv":
        quoted = text.replace('"', '""')
        rows = ["image,wafer_id,lot_id,slot", *(f'wafer-01.png,"{quoted}",L,{number}' for _ in range(2))]
        return "\n".join(rows).encode("utf-8", "surrogatepass")
    if kind == "w.sinf":
        bins = " ".join(rng.choice([*_LYING_NUMBERS[:12], "01", "FF", "00"]) for _ in range(rng.randint(0, 6)))
        return (f"WAFER:{text}\nROWCT:{number}\nCOLCT:{rng.choice(_LYING_NUMBERS)}\nBCEQU:01\nRowData:{bins}\n"
                ).encode("utf-8", "surrogatepass")
    if kind == "w.xml":
        body = inputs[kind].decode().replace('X="4"', f'X="{number}"', 1)
        body = body.replace("encoding='utf-8'", f"encoding='{rng.choice(['x-no-such', 'utf-16', 'ascii', ''])}'")
        return body.replace("<BinCode>FF0101FF</BinCode>", f"<BinCode>{rng.choice(['ZZ', 'GG', '-1'] * 4)}"
                            "</BinCode>", 1).encode("utf-8", "surrogatepass")
    if kind == "w.klarf":
        spec = rng.choice(["XINDEX YINDEX", "XINDEX", "XREL YREL", ""]).split()
        columns = ["DEFECTID", *spec]
        return (f'FileVersion 1 2;\nLotID "L";\nWaferID "{text}";\nSlot {number};\nDiePitch '
                f"{rng.choice(_LYING_NUMBERS)} 8000;\nDefectRecordSpec {len(columns)} {' '.join(columns)};\n"
                f"DefectList\n {' '.join(['1'] * len(columns))};\nEndOfFile;\n").encode("utf-8", "surrogatepass")
    if kind == "maps.npz":
        import io
        import zipfile

        shape = tuple(rng.choice([0, 1, 3, 2**20, 2**40]) for _ in range(rng.randint(1, 3)))
        header = f"{{'descr': '{rng.choice(['<u1', '<i8', '|O', '<U9'])}', 'fortran_order': False, 'shape': {shape}, }}"
        header += " " * (63 - (10 + len(header)) % 64) + "\n"
        member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\x00" * 64
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, \
                zipfile.ZipFile(io.BytesIO(inputs[kind])) as valid:
            lying = rng.choice(valid.namelist())
            for item in valid.namelist():
                archive.writestr(item, member if item == lying else valid.read(item))
        return buffer.getvalue()
    return _mutate(inputs[kind], rng)


def hostile_ids_through_grade(count: int, rng: random.Random, work: Path) -> dict[str, Any]:
    """``count`` distinct random Unicode wafer ids (case variants, look-alikes and trailing backslashes among them)
    graded from one image: one set of files per id, each reading back its own id. A double quote is refused at the
    manifest (KLARF cannot carry it), so none is generated."""
    ids: list[str] = []
    while len(ids) < count:
        candidate = _unicode_text(rng).strip().replace('"', "")
        variants = [candidate, candidate.swapcase(), candidate.replace(" ", "_"), candidate.replace("/", ";"),
                    candidate + "\\"]
        for wafer_id in variants:
            if wafer_id and wafer_id not in ids and len(ids) < count:
                ids.append(wafer_id)
    manifest = work / "ids.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("image", "wafer_id", "lot_id"),
                                      *[(str(work / "lot" / "wafer-01.png"), wafer_id, "LOT;7") for wafer_id in ids]])
    out = work / "ids-out"
    process = subprocess.run([*INSPECT, "grade", str(manifest), "--out", str(out), "--quiet", "--workers", "2",
                              "--klarf-version", rng.choice(["1.2", "1.8"])], cwd=ROOT, capture_output=True,
                             text=True, timeout=900)
    klarfs = sorted((out / "klarf").glob("*.klarf"))
    read_back = sorted(read_klarf(path).wafer_id for path in klarfs) if klarfs else []
    return {"ids": count, "exit": process.returncode, "traceback": "Traceback" in process.stderr,
            "klarf_files": len(klarfs), "sinf_files": len(list((out / "maps").glob("*.sinf"))),
            "png_names_distinct_ignoring_case": len({p.name.casefold() for p in (out / "maps").glob("*.png")}),
            "ids_read_back_equal": read_back == sorted(ids)}


def hostile_inputs(count: int, rng: random.Random, work: Path, *, through_cli: int) -> dict[str, Any]:
    inputs = _valid_inputs(work)
    parsers: dict[str, Callable[[Path], Any]] = {
        "recipe.yaml": load_recipe, "lot.csv": read_lot, "maps.npz": read_npz, "w.sinf": read_sinf,
        "w.xml": read_e142, "w.klarf": lambda path: klarf_die_map(read_klarf(path)), "model.json": _card_parser(work),
        "image.png": read_image,
    }
    outcome: Counter[str] = Counter()
    crashes: list[str] = []
    kinds = [*parsers, "camera-uri"]
    for index in tqdm(range(count), desc="hostile inputs"):
        kind = kinds[index % len(kinds)]
        try:
            if kind == "camera-uri":
                scheme = rng.choice(["folder", "genicam", "pylon", "opencv", "sim", "http", ""])
                key = rng.choice(["fps", "size", "settle_s", "max_pixels", "bit_depth", "seed", "latest", "x"])
                value = rng.choice(["-1", "nan", "inf", "1e400", "0", "", "x", "99999999999", "%00", "1"])
                open_camera(f"{scheme}:{rng.choice(['wafer', 'pcb', '', '/nope', '0'])}?{key}={value}")
            else:
                path = work / f"hostile-{index}{Path(kind).suffix}"
                structured = index % 2 == 1 and kind != "image.png"
                path.write_bytes(_structured(kind, rng, inputs) if structured else _mutate(inputs[kind], rng))
                outcome["structure-aware"] += structured
                parsers[kind](path)
            outcome["accepted"] += 1
        except InspectionError:
            outcome["refused cleanly"] += 1
        except Exception as exc:  # what the benchmark is looking for
            outcome["crashed"] += 1
            crashes.append(f"{kind}: {type(exc).__name__}: {str(exc)[:160]}")
    cli_tracebacks = []
    for index in tqdm(range(through_cli), desc="hostile inputs via the command line"):
        if index % 2 == 0:
            recipe = work / f"cli-{index}.yaml"
            recipe.write_bytes(_mutate(inputs["recipe.yaml"], rng))
            command = [*INSPECT, "run", "--recipe", str(recipe), "--frames", "1", "--db", str(work / "cli.db"), "-q"]
        else:
            manifest = work / "lot" / f"cli-{index}.csv"
            manifest.write_bytes(_mutate(inputs["lot.csv"], rng))
            command = [*INSPECT, "grade", str(manifest), "--out", str(work / f"cli-grade-{index}"), "--quiet"]
        process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if "Traceback" in process.stderr:
            cli_tracebacks.append(f"{' '.join(command[3:5])}: {process.stderr.strip().splitlines()[-1][:200]}")
    return {"inputs": count, "structure_aware": outcome["structure-aware"],
            "refused cleanly": outcome["refused cleanly"], "accepted": outcome["accepted"],
            "crashed": outcome["crashed"], "crashes": crashes[:20], "through_the_command_line": through_cli,
            "command_line_tracebacks": cli_tracebacks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-trials", type=int, default=50)
    parser.add_argument("--grade-trials", type=int, default=6)
    parser.add_argument("--drain-trials", type=int, default=8)
    parser.add_argument("--start-trials", type=int, default=8)
    parser.add_argument("--idle-trials", type=int, default=4)
    parser.add_argument("--interrupt-trials", type=int, default=6)
    parser.add_argument("--hostile", type=int, default=400)
    parser.add_argument("--ids", type=int, default=16, help="random Unicode wafer ids graded through the command line")
    parser.add_argument("--hostile-cli", type=int, default=20, help="of the hostile recipes and manifests, run "
                        "this many through the command line")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        record: dict[str, Any] = {"benchmark": "faults", "date": datetime.now(UTC).isoformat(timespec="seconds"),
                                  "machine": machine(), "seed": args.seed}
        record["kill_run"] = kill_run_trials(args.kill_trials, rng, work)
        record["kill_grade"] = kill_grade_trials(args.grade_trials, rng, work)
        record["drain_run"] = drain_trials(args.drain_trials, rng, work)
        record["sigterm_while_starting"] = startup_sigterm_trials(args.start_trials, rng, work)
        record["drain_waiting_line"] = idle_drain_trials(args.idle_trials, rng, work)
        record["interrupt_grade"] = grade_interrupt_trials(args.interrupt_trials, rng, work)
        record["kill_wafermap_pool"] = wafermap_pool_kill_trials(work)
        record["environment_faults"] = environment_faults(work)
        record["hostile_inputs"] = hostile_inputs(args.hostile, rng, work, through_cli=args.hostile_cli)
        record["hostile_ids_through_grade"] = hostile_ids_through_grade(args.ids, rng, work)
    record["elapsed_s"] = round(time.perf_counter() - started, 1)
    path = save_record(record, args.out, name="faults")
    print(json.dumps(record, indent=1))
    print(f"record: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
