"""The line's OPC UA server driven by an independent asyncua client, as a PLC would: the trigger handshake for
every part against the simulator and a folder camera, verdicts equal to the database's, the methods, and the
security rules (anonymous reads only; a wrong password is refused)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from inspection.sim.frames import render_frame
from tests.conftest import results_json

asyncua = pytest.importorskip("asyncua")
from asyncua import Client, ua  # noqa: E402

NAMESPACE = "urn:wafer-inspect:vision"
PASSWORD = "line-7-secret"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_line(tmp_path: Path, camera: str, *extra: str) -> tuple[subprocess.Popen[str], str, Path]:
    """``inspect run`` with an OPC UA server; it grabs a frame per trigger until it is told to stop."""
    endpoint, db = f"opc.tcp://127.0.0.1:{_free_port()}", tmp_path / "line.db"
    line = subprocess.Popen(
        [sys.executable, "-m", "inspection", "run", "--recipe", "wafer-die", "--camera", camera, "--db", str(db),
         "--opcua", endpoint, "--opcua-user", "plc", "--opcua-plaintext-passwords", "-q", *extra],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "INSPECT_OPCUA_PASSWORD": PASSWORD})
    return line, endpoint, db


async def _node(client: Client, *path: str) -> ua.Node:
    index = await client.get_namespace_index(NAMESPACE)
    return await client.nodes.objects.get_child([f"{index}:{name}" for name in ("VisionSystem", *path)])


async def _connect(endpoint: str, *, user: str | None = None, password: str | None = None) -> Client:
    client = Client(endpoint, timeout=10)
    if user is not None:
        client.set_user(user)
        client.set_password(password or "")
    deadline = time.monotonic() + 180  # the line starts its server after loading the recipe: slow on a busy machine
    while time.monotonic() < deadline:
        try:
            await client.connect()
            return client
        except (TimeoutError, OSError):
            await asyncio.sleep(0.2)
    raise AssertionError(f"no OPC UA server at {endpoint} within 180 s")


async def _handshake(client: Client, parts: int) -> list[tuple[int, str, float]]:
    trigger, ready, busy = [await _node(client, name) for name in ("Trigger", "ResultReady", "Busy")]
    part_id, verdict, latency = [await _node(client, "Result", name) for name in ("PartId", "Verdict",
                                                                                   "TriggerToResultMs")]
    seen = []
    for _ in range(parts):
        await trigger.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
        deadline = time.monotonic() + 20
        while not await ready.read_value():
            assert time.monotonic() < deadline, "no result within 20 s of the trigger"
            await asyncio.sleep(0.002)
        seen.append((await part_id.read_value(), await verdict.read_value(), await latency.read_value()))
        await trigger.write_value(ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
        while await ready.read_value():
            await asyncio.sleep(0.002)
        assert not await busy.read_value()
    return seen


def _stop(line: subprocess.Popen[str]) -> str:
    """SIGTERM, as a line controller stops a station: the run drains and ends well."""
    line.send_signal(signal.SIGTERM)
    _, errors = line.communicate(timeout=60)
    assert line.returncode == 0, errors
    return errors


def _drive(tmp_path: Path, camera: str, parts: int) -> None:
    line, endpoint, db = _start_line(tmp_path, camera)

    async def plc() -> list[tuple[int, str, float]]:
        client = await _connect(endpoint, user="plc", password=PASSWORD)
        try:
            seen = await _handshake(client, parts)
            counters = {name: await (await _node(client, "Counters", name)).read_value()
                        for name in ("Parts", "Pass", "Fail", "Review", "Error")}
            assert counters["Parts"] == parts == sum(v for k, v in counters.items() if k != "Parts")
            return seen
        finally:
            await client.disconnect()

    try:
        seen = asyncio.run(plc())
        _stop(line)
    finally:
        line.kill()
    stored = {row["frame_counter"]: row["verdict"] for row in results_json(db)}
    assert len(stored) == parts and {part: verdict for part, verdict, _ in seen} == stored
    latencies = [latency for _, _, latency in seen]
    assert all(0 < latency < 5000 for latency in latencies)


def test_a_bounded_run_lets_the_plc_finish_its_last_handshake(tmp_path: Path) -> None:
    """``--frames 2``: the line has its last result after the second trigger, but serves until the PLC has read
    it and cleared its trigger (a PLC that reads a second later still finds the server)."""
    line, endpoint, _ = _start_line(tmp_path, "sim:wafer?seed=3", "--frames", "2")

    async def plc() -> tuple[int, str]:
        client = await _connect(endpoint, user="plc", password=PASSWORD)
        try:
            await _handshake(client, 1)
            trigger, ready = await _node(client, "Trigger"), await _node(client, "ResultReady")
            await trigger.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            deadline = time.monotonic() + 20
            while not await ready.read_value():
                assert time.monotonic() < deadline, "no result within 20 s of the trigger"
                await asyncio.sleep(0.002)
            await asyncio.sleep(1.0)  # a slow PLC cycle: the run has its two frames and would end here
            last = (await (await _node(client, "Result", "PartId")).read_value(),
                    await (await _node(client, "Result", "Verdict")).read_value())
            await trigger.write_value(ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
            return last
        finally:
            await client.disconnect()

    try:
        part, verdict = asyncio.run(plc())
        _, errors = line.communicate(timeout=60)
    finally:
        line.kill()
    assert line.returncode == 0, errors
    assert part == 1 and verdict in ("pass", "fail", "review") and "unread by the PLC" not in errors


def test_plc_handshake_against_the_simulator(tmp_path: Path) -> None:
    _drive(tmp_path, "sim:wafer?seed=3", 100)


def test_plc_handshake_against_a_folder_camera(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(100):
        cv2.imwrite(str(folder / f"part_{index:04d}.png"), render_frame("wafer", index, seed=5)[0])
    _drive(tmp_path, f"folder:{folder}", 100)


def test_anonymous_clients_read_but_cannot_trigger_or_call(tmp_path: Path) -> None:
    line, endpoint, _ = _start_line(tmp_path, "sim:wafer")

    async def outsiders() -> None:
        client = await _connect(endpoint)
        try:
            assert await (await _node(client, "State")).read_value() == "Operational"
            assert (await (await _node(client, "ActiveRecipe")).read_value()).startswith("wafer-aoi-station (")
            with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
                await (await _node(client, "Trigger")).write_value(ua.DataValue(ua.Variant(True,
                                                                                           ua.VariantType.Boolean)))
            system = await _node(client)
            index = await client.get_namespace_index(NAMESPACE)
            with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
                await system.call_method(f"{index}:Stop")
        finally:
            await client.disconnect()
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
            await _connect(endpoint, user="plc", password="wrong")
        plc = await _connect(endpoint, user="plc", password=PASSWORD)
        try:
            system, index = await _node(plc), await plc.get_namespace_index(NAMESPACE)
            await system.call_method(f"{index}:Stop")
            assert await (await _node(plc, "State")).read_value() == "Halted"
            trigger = await _node(plc, "Trigger")
            await trigger.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            await asyncio.sleep(0.2)  # refused while halted: nothing is grabbed
            assert await (await _node(plc, "Counters", "RefusedTriggers")).read_value() == 1
            with pytest.raises(ua.UaStatusCodeError):
                await trigger.write_value(ua.DataValue(ua.Variant("yes", ua.VariantType.String)))
            await trigger.write_value(ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
            await system.call_method(f"{index}:Start")
            await _handshake(plc, 1)
        finally:
            await plc.disconnect()

    try:
        asyncio.run(outsiders())
        errors = _stop(line)
    finally:
        line.kill()
    assert "refused" in errors


def test_a_user_without_a_password_is_refused_before_anything_starts(tmp_path: Path) -> None:
    process = subprocess.run([sys.executable, "-m", "inspection", "run", "--recipe", "wafer-die", "--camera",
                              "sim:wafer", "--opcua", "opc.tcp://127.0.0.1:4999", "--opcua-user", "plc",
                              "--opcua-plaintext-passwords", "--db",
                              str(tmp_path / "x.db")], capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if k != "INSPECT_OPCUA_PASSWORD"})
    assert process.returncode == 2 and "INSPECT_OPCUA_PASSWORD" in process.stderr
    assert not (tmp_path / "x.db").exists()


def test_the_recipe_names_the_endpoint_and_user(tmp_path: Path) -> None:
    import yaml

    from inspection.recipe import RecipeError, load_recipe

    endpoint = f"opc.tcp://127.0.0.1:{_free_port()}"
    station = yaml.safe_load((Path(load_recipe("wafer-die").source_path or "")).read_text())
    recipe = tmp_path / "station.yaml"
    opcua = {"endpoint": endpoint, "user": "plc", "plaintext_passwords": True}
    recipe.write_text(yaml.safe_dump({**station, "opcua": opcua}))
    line = subprocess.Popen([sys.executable, "-m", "inspection", "run", "--recipe", str(recipe), "--camera",
                             "sim:wafer", "--db", str(tmp_path / "line.db"), "-q"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "INSPECT_OPCUA_PASSWORD": PASSWORD})

    async def plc() -> None:
        client = await _connect(endpoint, user="plc", password=PASSWORD)
        try:
            assert len(await _handshake(client, 3)) == 3
        finally:
            await client.disconnect()

    try:
        asyncio.run(plc())
        assert "plc may trigger" in _stop(line)
    finally:
        line.kill()
    recipe.write_text(yaml.safe_dump({**station, "opcua": {"endpoint": "http://127.0.0.1:4840"}}))
    with pytest.raises(RecipeError, match=r"opcua\.endpoint: got 'http://127\.0\.0\.1:4840'"):
        load_recipe(recipe)


def test_a_recipe_is_selected_while_halted(tmp_path: Path) -> None:
    import yaml

    from inspection.recipe import load_recipe

    station = yaml.safe_load((Path(load_recipe("wafer-die").source_path or "")).read_text())
    other = tmp_path / "night-shift.yaml"
    other.write_text(yaml.safe_dump({**station, "name": "night-shift"}))
    line, endpoint, db = _start_line(tmp_path, "sim:wafer")

    async def mes() -> None:
        client = await _connect(endpoint, user="plc", password=PASSWORD)
        try:
            system, index = await _node(client), await client.get_namespace_index(NAMESPACE)
            with pytest.raises(ua.UaStatusCodeError, match="BadInvalidState"):  # running: stop first
                await system.call_method(f"{index}:SelectRecipe", ua.Variant(str(other), ua.VariantType.String))
            await _handshake(client, 2)
            await system.call_method(f"{index}:Stop")
            with pytest.raises(ua.UaStatusCodeError, match="BadInvalidArgument"):
                await system.call_method(f"{index}:SelectRecipe", ua.Variant("no-such-recipe",
                                                                             ua.VariantType.String))
            active = await system.call_method(f"{index}:SelectRecipe", ua.Variant(str(other), ua.VariantType.String))
            assert active.startswith("night-shift (")
            assert await (await _node(client, "ActiveRecipe")).read_value() == active
            await system.call_method(f"{index}:Start")
            assert len(await _handshake(client, 2)) == 2
        finally:
            await client.disconnect()

    try:
        asyncio.run(mes())
        errors = _stop(line)
    finally:
        line.kill()
    assert "no-such-recipe" in errors
    assert [row["verdict"] != "error" for row in results_json(db)] == [True] * 4
    with sqlite3.connect(db) as connection:
        kinds = [kind for (kind,) in connection.execute("select kind from events")]
    assert kinds.count("recipe-selected") == 1


def _certificate(folder: Path, name: str, *, uri: str, server: bool) -> tuple[Path, Path]:
    """A self-signed OPC UA application certificate (DER) and its key (PEM), as a plant's PKI would issue."""
    from asyncua.crypto import cert_gen
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = cert_gen.generate_private_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    certificate = cert_gen.generate_self_signed_app_certificate(
        key, name, {"organizationName": "wafer-inspect tests"},
        [x509.UniformResourceIdentifier(uri), x509.DNSName(socket.gethostname())], extended=[usage])
    (folder / f"{name}.der").write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    (folder / f"{name}.pem").write_bytes(cert_gen.dump_private_key_as_pem(key))
    return folder / f"{name}.der", folder / f"{name}.pem"


async def _connect_with_certificate(endpoint: str, certificate: Path, key: Path) -> Client:
    """A signed-and-encrypted session whose identity is the certificate (an X509 token signed with its key)."""
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    client = Client(endpoint, timeout=10)
    await client.set_security(SecurityPolicyBasic256Sha256, certificate=str(certificate), private_key=str(key),
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    await client.load_client_certificate(str(certificate))
    await client.load_private_key(key)
    await client.connect()
    return client


def test_with_a_certificate_only_the_encrypted_endpoint_is_offered_and_without_one_a_warning(tmp_path: Path) -> None:
    import yaml

    from inspection.recipe import load_recipe

    _certificate(tmp_path, "station", uri="urn:wafer-inspect:station", server=True)
    station = yaml.safe_load((Path(load_recipe("wafer-die").source_path or "")).read_text())
    endpoint = f"opc.tcp://127.0.0.1:{_free_port()}"
    recipe = tmp_path / "station.yaml"
    recipe.write_text(yaml.safe_dump({**station, "opcua": {"endpoint": endpoint, "certificate": "station.der",
                                                           "private_key": "station.pem"}}))
    line = subprocess.Popen([sys.executable, "-m", "inspection", "run", "--recipe", str(recipe), "--camera",
                             "sim:wafer", "--db", str(tmp_path / "line.db"), "-q"], stderr=subprocess.PIPE, text=True)

    async def offered() -> set[str]:
        deadline = time.monotonic() + 180
        while True:
            try:
                found = await Client(endpoint, timeout=10).connect_and_get_server_endpoints()
                return {f"{e.SecurityPolicyUri.rsplit('#', 1)[1]} {e.SecurityMode.name}" for e in found}
            except (TimeoutError, OSError):
                assert time.monotonic() < deadline, f"no OPC UA server at {endpoint}"
                await asyncio.sleep(0.2)

    try:
        assert asyncio.run(offered()) == {"Basic256Sha256 SignAndEncrypt"}
    finally:
        line.terminate()  # it may still be loading its model: the stop is not what this test checks
        line.communicate(timeout=60)
    (tmp_path / "plain").mkdir()
    plain, plain_endpoint, _ = _start_line(tmp_path / "plain", "sim:wafer")

    async def up() -> None:
        await (await _connect(plain_endpoint)).disconnect()

    try:
        asyncio.run(up())  # the server is up, so its start-up warning has been printed
    finally:
        plain.terminate()
        _, errors = plain.communicate(timeout=60)
    assert "offers only the unencrypted endpoint (security None)" in errors and "certificate and private_key" in errors


def test_a_trusted_certificate_may_trigger_and_call_and_an_unknown_one_only_reads(tmp_path: Path) -> None:
    import yaml

    from inspection.recipe import RecipeError, load_recipe

    client_uri = Client("opc.tcp://127.0.0.1:1").application_uri
    _certificate(tmp_path, "station", uri="urn:wafer-inspect:station", server=True)
    mes = _certificate(tmp_path, "mes", uri=client_uri, server=False)
    stranger = _certificate(tmp_path, "stranger", uri=client_uri, server=False)
    endpoint = f"opc.tcp://127.0.0.1:{_free_port()}"
    station = yaml.safe_load((Path(load_recipe("wafer-die").source_path or "")).read_text())
    recipe = tmp_path / "station.yaml"
    security = {"endpoint": endpoint, "certificate": "station.der", "private_key": "station.pem",
                "trusted_users": {"mes": "mes.der"}, "unencrypted_endpoint": True}
    recipe.write_text(yaml.safe_dump({**station, "opcua": security}))
    line = subprocess.Popen([sys.executable, "-m", "inspection", "run", "--recipe", str(recipe), "--camera",
                             "sim:wafer", "--db", str(tmp_path / "line.db"), "-q"], stderr=subprocess.PIPE, text=True)

    async def clients() -> None:
        anonymous = await _connect(endpoint)  # waits for the line; anonymous reads over the endpoint asked for
        try:
            assert await (await _node(anonymous, "State")).read_value() == "Operational"
            with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
                await (await _node(anonymous, "Trigger")).write_value(ua.DataValue(ua.Variant(True,
                                                                                              ua.VariantType.Boolean)))
        finally:
            await anonymous.disconnect()
        unknown = await _connect_with_certificate(endpoint, *stranger)  # signed and encrypted, but not trusted
        try:
            assert await (await _node(unknown, "State")).read_value() == "Operational"
            index = await unknown.get_namespace_index(NAMESPACE)
            with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
                await (await _node(unknown)).call_method(f"{index}:Stop")
        finally:
            await unknown.disconnect()
        client = await _connect_with_certificate(endpoint, *mes)
        try:
            system = await _node(client)
            index = await client.get_namespace_index(NAMESPACE)
            await system.call_method(f"{index}:Stop")
            assert await (await _node(client, "State")).read_value() == "Halted"
            await system.call_method(f"{index}:Start")
            assert len(await _handshake(client, 3)) == 3
        finally:
            await client.disconnect()

    try:
        asyncio.run(clients())
        errors = _stop(line)
    finally:
        line.kill()
    assert "mes (certificate) may trigger" in errors and "signed and encrypted and unencrypted endpoints" in errors
    assert "a certificate the station does not trust: the session may only read" in errors
    recipe.write_text(yaml.safe_dump({**station, "opcua": {**security, "private_key": None}}))
    with pytest.raises(RecipeError, match="certificate and private_key go together"):
        load_recipe(recipe)
    recipe.write_text(yaml.safe_dump({**station, "opcua": {**security, "trusted_users": {"mes": "none.der"}}}))
    with pytest.raises(RecipeError, match=r"opcua\.trusted_users\.mes: got 'none\.der'; expected an existing file"):
        load_recipe(recipe)


def test_passwords_never_cross_in_clear_text_unless_said_and_guessing_costs_time(tmp_path: Path) -> None:
    process = subprocess.run([sys.executable, "-m", "inspection", "run", "--recipe", "wafer-die", "--camera",
                              "sim:wafer", "--opcua", "opc.tcp://127.0.0.1:4999", "--opcua-user", "plc", "--db",
                              str(tmp_path / "x.db")], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "INSPECT_OPCUA_PASSWORD": PASSWORD})
    assert process.returncode == 2 and "clear text" in process.stderr
    assert "--opcua-plaintext-passwords" in process.stderr
    assert not (tmp_path / "x.db").exists()
    for endpoint in ("opc.tcp://127.0.0.1:99999", "opc.tcp://127.0.0.1:0"):
        refused = subprocess.run([sys.executable, "-m", "inspection", "run", "--recipe", "wafer-die", "--camera",
                                  "sim:wafer", "--opcua", endpoint, "--db", str(tmp_path / "y.db")],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "within 1..65535" in refused.stderr and "Traceback" not in refused.stderr
    from inspection.chain.opcua import _Users

    users = _Users({"plc": PASSWORD}, {})
    for _ in range(_Users.FREE_FAILURES):
        assert users.get_user(None, "plc", "guess") is None
    assert users.get_user(None, "plc", PASSWORD) is not None  # three wrong ones cost nothing yet
    for _ in range(_Users.FREE_FAILURES + 1):
        users.get_user(None, "plc", "guess")
    assert users.get_user(None, "plc", PASSWORD) is None  # locked for a while, even with the right password


def test_a_trigger_outlives_a_grab_cut_short_by_the_stop_poll() -> None:
    """The line grabs in slices of 0.2 s; a camera slower than that after the PLC's trigger must still deliver
    that trigger's frame on the next grab, not wait for another trigger."""
    from inspection.acquire import FrameTimeout, open_camera
    from inspection.chain.opcua import TriggeredCamera, TriggerGate
    from inspection.types import Frame

    inner = open_camera("sim:wafer")
    inner.open()
    slow = [True]
    real_grab = inner.grab

    def grab(*, timeout_s: float) -> Frame:  # the first grab after the trigger times out: a long exposure
        if slow and slow.pop():
            raise FrameTimeout("exposing")
        return real_grab(timeout_s=timeout_s)

    inner.grab = grab  # type: ignore[method-assign]
    gate = TriggerGate()
    camera = TriggeredCamera(inner, gate)
    gate.release()
    with pytest.raises(FrameTimeout, match="exposing"):
        camera.grab(timeout_s=0.2)
    assert camera.grab(timeout_s=0.2).frame_counter == 0  # the same trigger's frame, no second trigger
    with pytest.raises(FrameTimeout, match="no trigger from the PLC"):
        camera.grab(timeout_s=0.05)
