"""Faults and hostile inputs against the real commands: nothing committed is lost, no process is orphaned, no
command prints a traceback.

    python benchmarks/bench_faults.py [--kill-trials 50] [--grade-trials 6] [--hostile 400] [--seed 0]

- SIGKILL trials of ``inspect run`` (simulated camera) at a random moment: committed rows before the kill
  against rows after it, and the database's integrity check; the next open closes the killed run.
- SIGKILL and SIGTERM trials of ``inspect grade --workers 2``: wafers committed before against after, and the
  pool workers still alive 5 s after their parent died (orphans).
- Drain trials: SIGTERM to ``inspect run``; it must exit 0 with its run ``stopped`` and the frames in flight
  committed.
- Environmental faults: a disk that fills up (a file-size limit), a picture folder that cannot be written, a
  database where nothing can be written; each must end with one line and no traceback.
- Hostile inputs: seeded mutations of a recipe, a lot manifest, npz/SINF/E142/KLARF files, image headers, camera
  URIs and model cards, through the parsers the commands use (a named error or a valid result; anything else is
  a crash), and a share of the mutated recipes and manifests through the command line itself.

The record, with the machine and date, goes to ``benchmarks/results/faults-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
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
from tqdm import tqdm

from inspection.acquire import open_camera, read_image
from inspection.acquire.lot import read_lot
from inspection.classify.card import read_card
from inspection.classify.timing import machine
from inspection.recipe import load_recipe
from inspection.report.records import save_record
from inspection.sim.lot import make_lot
from inspection.types import InspectionError
from inspection.wafermap.formats import read_e142, read_npz, read_sinf, write_e142, write_sinf
from inspection.wafermap.klarf import Klarf, read_klarf, write_klarf

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
    lost, corrupt, not_closed, committed = 0, 0, 0, []
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
        if trial % 10 == 0 and db.exists():  # the next run closes the killed one
            subprocess.run([*INSPECT, "run", "--frames", "2", "--db", str(db), "-q"], cwd=ROOT, capture_output=True)
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                status = connection.execute("SELECT status FROM runs WHERE run_id = 1").fetchone()
            not_closed += status is not None and status[0] != "interrupted"
    return {"trials": trials, "committed_rows_lost": lost, "databases_failing_integrity_check": corrupt,
            "killed_runs_not_closed_on_next_open": not_closed,
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


def environment_faults(work: Path) -> dict[str, Any]:
    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    blocker = work / "a-file"
    blocker.write_text("not a folder")
    cases = {
        "disk fills up": ([*INSPECT, "run", "--camera", "sim:wafer?defect_rate=0.5", "--frames", "5000", "--db",
                           str(work / "full.db"), "-q"], small_disk),
        "picture folder cannot be written": ([*INSPECT, "run", "--frames", "20", "--db", str(work / "ng.db"),
                                              "--save-ng", str(blocker / "ng"), "-q"], None),
        "database where nothing can be written": ([*INSPECT, "run", "--frames", "2", "--db",
                                                   "/proc/wafer-inspect-fault.db", "-q"], None),
        "lot output where nothing can be written": ([*INSPECT, "grade", str(work / "lot"), "--out",
                                                     "/proc/wafer-inspect-fault", "--quiet"], None),
    }
    results = {}
    for name, (command, before) in tqdm(cases.items(), desc="environment faults"):
        process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, preexec_fn=before, timeout=300)
        errors = [line for line in process.stderr.splitlines() if line.startswith("inspect: error:")]
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


def hostile_inputs(count: int, rng: random.Random, work: Path, *, through_cli: int) -> dict[str, Any]:
    inputs = _valid_inputs(work)
    parsers: dict[str, Callable[[Path], Any]] = {
        "recipe.yaml": load_recipe, "lot.csv": read_lot, "maps.npz": read_npz, "w.sinf": read_sinf,
        "w.xml": read_e142, "w.klarf": read_klarf, "model.json": _card_parser(work), "image.png": read_image,
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
                path.write_bytes(_mutate(inputs[kind], rng))
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
    return {"inputs": count, "refused cleanly": outcome["refused cleanly"], "accepted": outcome["accepted"],
            "crashed": outcome["crashed"], "crashes": crashes[:20], "through_the_command_line": through_cli,
            "command_line_tracebacks": cli_tracebacks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-trials", type=int, default=50)
    parser.add_argument("--grade-trials", type=int, default=6)
    parser.add_argument("--drain-trials", type=int, default=8)
    parser.add_argument("--hostile", type=int, default=400)
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
        record["environment_faults"] = environment_faults(work)
        record["hostile_inputs"] = hostile_inputs(args.hostile, rng, work, through_cli=args.hostile_cli)
    record["elapsed_s"] = round(time.perf_counter() - started, 1)
    path = save_record(record, args.out, name="faults")
    print(json.dumps(record, indent=1))
    print(f"record: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
