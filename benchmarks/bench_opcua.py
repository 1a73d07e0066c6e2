"""Trigger-to-verdict latency through OPC UA: an asyncua client plays the PLC against ``inspect run --opcua``.

For each part the client sets ``Trigger``, waits for ``ResultReady`` (subscribed, not polled), reads the result
and clears ``Trigger``. The latency is the client's, from its trigger write to the moment it holds the verdict:
what a PLC sees. Compared with the recipe's latency budget (``pipeline.latency_budget_ms``). Verdicts are checked
against the results database.

The record, with the machine and date, goes to ``benchmarks/results/opcua-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from asyncua import Client, ua

from inspection.classify.timing import machine
from inspection.recipe import load_recipe
from inspection.report.records import save_record
from inspection.sim.frames import render_frame

REPO_ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "urn:wafer-inspect:vision"
PASSWORD = "bench-only"


class _Ready:
    """Data-change handler: an event set whenever ResultReady becomes true."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        if value:
            self.event.set()


async def _plc(endpoint: str, parts: int) -> list[tuple[int, str, float]]:
    client = Client(endpoint, timeout=10)
    client.set_user("plc")
    client.set_password(PASSWORD)
    for _ in range(150):
        try:
            await client.connect()
            break
        except OSError:
            await asyncio.sleep(0.2)
    try:
        index = await client.get_namespace_index(NAMESPACE)

        async def node(*path: str) -> Any:
            return await client.nodes.objects.get_child([f"{index}:{name}" for name in ("VisionSystem", *path)])

        trigger, ready = await node("Trigger"), await node("ResultReady")
        part_id, verdict = await node("Result", "PartId"), await node("Result", "Verdict")
        handler = _Ready()
        subscription = await client.create_subscription(1, handler)
        await subscription.subscribe_data_change(ready)
        seen = []
        for _ in range(parts):
            handler.event.clear()
            started = time.perf_counter()
            await trigger.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            await asyncio.wait_for(handler.event.wait(), timeout=30)
            values = await client.read_values([part_id, verdict])
            seen.append((int(values[0]), str(values[1]), (time.perf_counter() - started) * 1000.0))
            await trigger.write_value(ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
            while await ready.read_value():
                await asyncio.sleep(0.001)
        return seen
    finally:
        await client.disconnect()


def _run(camera: str, recipe: str, parts: int) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"opc.tcp://127.0.0.1:{probe.getsockname()[1]}"
    with tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "line.db"
        line = subprocess.Popen([sys.executable, "-m", "inspection", "run", "--recipe", recipe, "--camera", camera,
                                 "--db", str(db), "--opcua", endpoint, "--opcua-user", "plc",
                                 "--opcua-plaintext-passwords", "-q"],
                                env={**os.environ, "INSPECT_OPCUA_PASSWORD": PASSWORD}, stderr=subprocess.PIPE,
                                text=True)
        try:
            seen = asyncio.run(_plc(endpoint, parts))
        finally:
            line.send_signal(signal.SIGTERM)
            line.communicate(timeout=60)
        rows = subprocess.run([sys.executable, "-m", "inspection", "results", "--db", str(db), "--format", "json"],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    stored = {row["frame_counter"]: row["verdict"] for row in map(json.loads, rows)}
    latency = np.array([ms for _, _, ms in seen])
    budget = load_recipe(recipe).pipeline.latency_budget_ms
    return {"camera": camera, "recipe": recipe, "parts": parts, "latency_budget_ms": budget,
            "verdicts_equal_database": {part: verdict for part, verdict, _ in seen} == stored,
            "trigger_to_verdict_ms": {"p50": round(float(np.percentile(latency, 50)), 2),
                                      "p99": round(float(np.percentile(latency, 99)), 2),
                                      "max": round(float(latency.max()), 2), "mean": round(float(latency.mean()), 2)},
            "within_budget": bool(np.percentile(latency, 99) <= budget)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    runs = [_run("sim:wafer", "wafer-die", args.parts)]
    with tempfile.TemporaryDirectory() as frames:
        for index in range(args.parts):
            cv2.imwrite(str(Path(frames) / f"part_{index:04d}.png"), render_frame("wafer", index, seed=11)[0])
        runs.append(_run(f"folder:{frames}", "wafer-die", args.parts))
    record = {"benchmark": "opcua", "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
              "runs": runs}
    path = save_record(record, args.out, name="opcua")
    for run in runs:
        figures = run["trigger_to_verdict_ms"]
        print(f"{run['camera']} ({run['recipe']}): {run['parts']} parts, trigger to verdict p50 {figures['p50']:.1f} "
              f"ms, p99 {figures['p99']:.1f} ms, max {figures['max']:.1f} ms (budget {run['latency_budget_ms']:g} "
              f"ms); verdicts equal the database: {run['verdicts_equal_database']}")
    print(f"record: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
