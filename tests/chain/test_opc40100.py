"""The line's OPC UA server as an OPC 40100 vision system, checked by an independent client (node-opcua, from npm)
by the specification's BrowseNames and types, and its methods called with asyncua."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.chain.test_opcua import PASSWORD, _connect, _start_line, _stop
from tests.conftest import results_json

asyncua = pytest.importorskip("asyncua", reason="asyncua ([opcua] extra) is not installed")
ua = asyncua.ua
NODE_CLIENT = Path(__file__).parent / "node" / "opc40100_client.js"
NODE_OPCUA = "node-opcua-client@2.186.4"
MV = "http://opcfoundation.org/UA/MachineVision"


@pytest.fixture(scope="session")
def node_opcua(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with node-opcua's client installed from npm (the independent client of OPC 40100's tests)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (apt-get install nodejs npm)")
    folder = tmp_path_factory.mktemp("node-opcua")
    installed = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", NODE_OPCUA], cwd=folder,
                               capture_output=True, text=True, timeout=600)
    if installed.returncode != 0:
        pytest.skip(f"npm could not install {NODE_OPCUA}: {installed.stderr.strip()[-300:]}")
    shutil.copy(NODE_CLIENT, folder)
    return folder


def test_an_independent_client_finds_the_vision_system_by_opc_40100_and_gets_an_event_per_part(
        node_opcua: Path, tmp_path: Path) -> None:
    parts = 100
    line, endpoint, db = _start_line(tmp_path, "sim:wafer?seed=3")
    try:
        client = subprocess.run(["node", NODE_CLIENT.name, endpoint, "plc", PASSWORD, str(parts)], cwd=node_opcua,
                                capture_output=True, text=True, timeout=600)
        assert client.returncode == 0, client.stderr[-2000:]
        _stop(line)
    finally:
        line.kill()
    report = json.loads(client.stdout.strip().splitlines()[-1])
    assert report["type"].endswith(":VisionSystemType") and report["typeNamespace"] == MV
    assert report["state"] == "Operational"
    rows = results_json(db)
    stored = {row["frame_counter"]: row for row in rows}
    assert len(report["results"]) == parts == len(stored)
    assert {r["partId"]: r["verdict"] for r in report["results"]} == {k: v["verdict"] for k, v in stored.items()}
    events = report["events"]
    assert len(events) == parts and all(e["eventType"].endswith(";i=1024") for e in events)  # ResultReadyEventType
    states = {"pass": 1, "review": 2, "fail": -1, "error": -2}
    assert {e["partId"]: (e["resultId"], e["resultState"]) for e in events} == \
        {k: (v["id"], states[v["verdict"]]) for k, v in stored.items()}


def test_opc_40100_methods_run_a_single_job_and_move_the_state_machine(tmp_path: Path) -> None:
    line, endpoint, db = _start_line(tmp_path, "sim:wafer?seed=3")

    async def client() -> list[str]:
        session = await _connect(endpoint, user="plc", password=PASSWORD)
        try:
            await session.load_data_type_definitions()  # JobIdDataType and the others, from the server
            index = await session.get_namespace_index(MV)
            system = await session.nodes.objects.get_child(f"{index}:VisionSystem")
            machine = await system.get_child(f"{index}:VisionStateMachine")
            automatic = await machine.get_child(f"{index}:AutomaticModeStateMachine")
            state = await machine.get_child("0:CurrentState")
            seen = [(await state.read_value()).Text]
            no_value = ua.Variant(None, ua.VariantType.ExtensionObject)
            job = await automatic.call_method(f"{index}:StartSingleJob", no_value, no_value, no_value, no_value,
                                              ua.Variant([], ua.VariantType.Variant))
            seen.append(job[0].Id)
            deadline = time.monotonic() + 30
            while not results_json(db) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            cause = (ua.Variant(1, ua.VariantType.Int32), ua.Variant("maintenance", ua.VariantType.String))
            assert await machine.call_method(f"{index}:Halt", *cause) == 0
            seen.append((await state.read_value()).Text)
            with pytest.raises(ua.UaStatusCodeError, match="BadInvalidState"):  # no job while halted
                await automatic.call_method(f"{index}:StartSingleJob", no_value, no_value, no_value, no_value,
                                            ua.Variant([], ua.VariantType.Variant))
            assert await machine.call_method(f"{index}:Reset", *cause) == 0
            seen.append((await state.read_value()).Text)
            return seen
        finally:
            await session.disconnect()

    try:
        seen = asyncio.run(client())
        _stop(line)
    finally:
        line.kill()
    assert seen == ["Operational", "job-1", "Halted", "Operational"] and len(results_json(db)) == 1


def test_the_nodeset_is_the_published_one() -> None:
    from inspection.chain.opc40100 import NODESET

    text = NODESET.read_text(encoding="utf-8")
    model = '<Model ModelUri="http://opcfoundation.org/UA/MachineVision" Version="1.0.0" PublicationDate="2019-07-11'
    assert model in text
    assert "OPC Foundation MIT License" in text and os.path.getsize(NODESET) > 800_000  # the whole model, unchanged
