"""The line's OPC UA server (``inspect run ... --opcua opc.tcp://HOST:PORT``): an OPC 40100 vision system from
the published information model (:mod:`inspection.chain.opc40100`), and beside it, in the station's own
namespace, a vision system object with its state, its recipe, the methods Start, Stop, Reset and SelectRecipe
(while halted), a hardware-style trigger handshake, the last part's result (raised as an event when it commits)
and counters.

Handshake: the PLC sets ``Trigger``; the station answers ``Busy``, grabs one frame (a camera in software-trigger
mode is triggered by that grab), inspects and commits it, writes ``Result`` and sets ``ResultReady``; the PLC
reads the result and clears ``Trigger``, and the station clears ``ResultReady``. A trigger while the system is
not ``Operational`` (after Stop) or still busy is refused and counted.

Security: anyone may connect, browse, read and subscribe; writing a variable or calling a method needs a user
named by the station (``--opcua-user``, password from ``INSPECT_OPCUA_PASSWORD``); everything else is refused
with ``BadUserAccessDenied`` and logged. The server runs its own asyncio loop in a thread; the line never waits
on it (results reach it through the hook dispatcher).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole
from asyncua.server.user_managers import UserManager

from inspection.acquire import Camera, FrameTimeout
from inspection.chain.hooks import LineEvent
from inspection.chain.opc40100 import VisionSystemModel, build_vision_system
from inspection.recipe import CameraSettings
from inspection.types import Frame, FrameResult, InspectionError

log = logging.getLogger("inspection.opcua")
NAMESPACE = "urn:wafer-inspect:vision"
STATES = ("Preoperational", "Operational", "Halted", "Error")

_READ_REQUESTS = (
    "CreateSession", "ActivateSession", "CloseSession", "GetEndpoints", "FindServers", "Read", "Browse",
    "BrowseNext", "TranslateBrowsePathsToNodeIds", "RegisterNodes", "UnregisterNodes", "CreateSubscription",
    "ModifySubscription", "DeleteSubscriptions", "SetPublishingMode", "Publish", "Republish",
    "CreateMonitoredItems", "ModifyMonitoredItems", "DeleteMonitoredItems", "SetMonitoringMode",
)
_WRITE_REQUESTS = ("Write", "Call")


class OpcUaError(InspectionError, RuntimeError):
    """The OPC UA server cannot start (endpoint, port); the message names the endpoint."""


HANDSHAKE_DRAIN_S = 5.0
"""How long closing waits for the PLC to finish the last handshake (read the result, clear its trigger)."""


class TriggerGate:
    """PLC triggers on their way to the camera: the line grabs one frame per trigger."""

    def __init__(self) -> None:
        self._pending = threading.Semaphore(0)
        self.last_trigger_s = 0.0

    def release(self) -> None:
        self.last_trigger_s = time.perf_counter()
        self._pending.release()

    def wait(self, timeout_s: float) -> bool:
        return self._pending.acquire(timeout=timeout_s)


class TriggeredCamera(Camera):
    """A camera that delivers a frame only when the PLC triggered one; a camera in software-trigger mode fires
    its trigger in that grab."""

    def __init__(self, camera: Camera, gate: TriggerGate) -> None:
        self.camera, self.gate, self.uri = camera, gate, camera.uri
        self.configurable = camera.configurable
        self._triggered = False  # a trigger taken whose frame has not come yet: the next grab waits for it

    def set_up(self, settings: CameraSettings) -> None:
        self.camera.set_up(settings)

    @property
    def applied(self) -> dict[str, Any] | None:  # type: ignore[override]
        return self.camera.applied

    def open(self) -> None:
        self.camera.open()

    def grab(self, *, timeout_s: float) -> Frame:
        if not self._triggered and not self.gate.wait(timeout_s):
            raise FrameTimeout(f"{self.uri}: no trigger from the PLC within {timeout_s} s")
        self._triggered = True
        frame = self.camera.grab(timeout_s=timeout_s)  # a timeout here keeps the trigger for the next grab
        self._triggered = False
        return frame

    def close(self) -> None:
        self.camera.close()


class _Permissions(PermissionRuleset):
    """Anonymous sessions read, browse and subscribe; the station's users may also write and call."""

    def __init__(self) -> None:
        def ids(names: tuple[str, ...]) -> set[ua.NodeId]:
            return {ua.NodeId(getattr(ua.ObjectIds, f"{name}Request_Encoding_DefaultBinary")) for name in names}

        self._reading, self._writing = ids(_READ_REQUESTS), ids(_WRITE_REQUESTS)

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        if action_type_id in self._reading:
            return True
        allowed = action_type_id in self._writing and user is not None and user.role in (UserRole.User,
                                                                                         UserRole.Admin)
        if not allowed:
            log.warning("OPC UA: refused request %s from %s", action_type_id.Identifier,
                        "an anonymous session" if user is None or user.role == UserRole.Anonymous else user.name)
        return allowed


class _Users(UserManager):
    """Trusted users by their certificate, named users by password, the rest anonymous (read-only). A login that
    names an unknown user or a wrong password is refused."""

    FREE_FAILURES = 3
    """Wrong passwords a user name may have before each further one locks it for twice as long (1 s, 2 s, ...
    up to ``MAX_LOCK_S``)."""
    MAX_LOCK_S = 60.0

    def __init__(self, users: dict[str, str], trusted: dict[bytes, str]) -> None:
        self.users, self.trusted = users, trusted
        self.failures: dict[str, tuple[int, float]] = {}  # name -> (wrong passwords in a row, locked until)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: bytes | None = None) -> User | None:
        # ``certificate``: an X509 identity token's, or else the signed secure channel's client certificate; the
        # client proved it holds the key either way (asyncua checked the signature before this call).
        name = self.trusted.get(certificate) if certificate else None
        if name is not None:
            return User(role=UserRole.User, name=name)
        if username is None:
            if certificate:
                log.warning("OPC UA: a certificate the station does not trust: the session may only read")
            return User(role=UserRole.Anonymous)
        failures, locked_until = self.failures.get(username, (0, 0.0))
        if time.monotonic() < locked_until:  # guessing costs time: 20 wrong passwords took 0.7 s
            log.warning("OPC UA: refused login of %r: locked for %.0f s more after %d wrong passwords", username,
                        locked_until - time.monotonic(), failures)
            return None
        expected = self.users.get(username or "")
        if expected is not None and hmac.compare_digest(expected.encode(), (password or "").encode()):
            self.failures.pop(username, None)
            return User(role=UserRole.User, name=username)
        failures += 1
        over = failures - self.FREE_FAILURES
        lock_s = min(self.MAX_LOCK_S, 2.0 ** (over - 1)) if over > 0 else 0.0
        self.failures[username] = (failures, time.monotonic() + lock_s)
        log.warning("OPC UA: refused login of %r (unknown user or wrong password)%s", username,
                    f"; locked for {lock_s:g} s" if lock_s else "")
        return None


class OpcUaServer:
    """The vision system's OPC UA server; a line hook (call it with each :class:`LineEvent`).

    Parameters
    ----------
    endpoint : str
        ``opc.tcp://HOST:PORT`` to listen on.
    recipe : str
        The active recipe's name (and short sha256), shown as ``ActiveRecipe``.
    users : dict of str to str
        User names and passwords allowed to write and call; none (and no ``trusted_users``): read-only.
    gate : TriggerGate
        Where PLC triggers go (the line's :class:`TriggeredCamera` takes them).
    certificate, private_key : str, optional
        The server's certificate (DER or PEM) and key (PEM): the server then offers its Basic256Sha256
        signed-and-encrypted endpoint (and the unencrypted one beside it only with ``unencrypted_endpoint``).
    trusted_users : dict of str to str, optional
        User name -> certificate file: a session that proves it holds that certificate's key (as its X509
        identity token, or as the client certificate of a signed connection) may write and call; another
        certificate only reads. Needs ``certificate``.
    plaintext_passwords : bool, optional
        Let ``users``' passwords cross the unencrypted endpoint (a closed network only).
    unencrypted_endpoint : bool, optional
        With a certificate, also offer the unencrypted endpoint for anonymous reading.

    Attributes
    ----------
    select_recipe : callable, optional
        Called by the SelectRecipe method with the recipe's name or file while the system is halted and idle;
        returns the new ``ActiveRecipe`` text, or raises InspectionError (the call is refused, the reason logged).
    """

    def __init__(self, endpoint: str, *, recipe: str, users: dict[str, str], gate: TriggerGate,
                 certificate: str | None = None, private_key: str | None = None,
                 trusted_users: dict[str, str] | None = None, plaintext_passwords: bool = False,
                 unencrypted_endpoint: bool = False) -> None:
        self.endpoint, self.recipe, self.users, self.gate = endpoint, recipe, users, gate
        self.certificate, self.private_key, self.trusted_users = certificate, private_key, trusted_users or {}
        self.plaintext_passwords, self.unencrypted_endpoint = plaintext_passwords, unencrypted_endpoint
        if self.trusted_users and certificate is None:
            raise OpcUaError("OPC UA trusted users need the server's certificate and private key")
        if users and certificate is None and not plaintext_passwords:
            raise OpcUaError(f"OPC UA user {', '.join(users)}: a password would cross the unencrypted endpoint in "
                             "clear text; give the server a certificate and private_key (recipe opcua section), "
                             "or say opcua.plaintext_passwords: true (--opcua-plaintext-passwords) for a closed "
                             "network")
        self.select_recipe: Callable[[str], str] | None = None
        self.counts: Counter[str] = Counter()
        self._awaiting_plc = False  # a result is ready and the PLC has not cleared its trigger yet
        self._vision: VisionSystemModel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="opcua", daemon=True)
        self._nodes: dict[str, Any] = {}
        self._types: dict[str, ua.VariantType] = {}

    # --- life cycle (called from the line's threads) -------------------------------------------------------

    def start(self) -> None:
        """Listen; raises OpcUaError when the endpoint cannot be served."""
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._failure is not None or not self._ready.is_set():
            raise OpcUaError(f"--opcua {self.endpoint}: cannot serve it ({self._failure or 'no answer in 30 s'})")
        self._call(self._set("State", "Operational"))

    def __call__(self, event: LineEvent) -> None:
        if event.kind == "result" and event.result is not None:
            self._call(self._publish(event, event.result))

    def close(self) -> None:
        """Stop serving, once the PLC has read the last result (cleared its trigger), or after
        ``HANDSHAKE_DRAIN_S``: a bounded run (``--frames N``) must not end the last handshake half way."""
        deadline = time.monotonic() + HANDSHAKE_DRAIN_S
        while self._awaiting_plc and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.005)
        if self._awaiting_plc:
            log.warning("OPC UA: closing with the last result unread by the PLC (no falling trigger in %.0f s)",
                        HANDSHAKE_DRAIN_S)
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)

    def _call(self, coroutine: Any) -> None:
        if self._loop is None:
            raise OpcUaError(f"--opcua {self.endpoint}: not serving")
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # --- the server's own thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(), or logged when the server dies later
            self._failure = exc
            self._ready.set()
            log.error("OPC UA server on %s stopped: %s", self.endpoint, exc)

    async def _serve(self) -> None:
        stop = asyncio.Event()
        self._loop, self._stop = asyncio.get_running_loop(), stop
        trusted = {}
        for name, path in self.trusted_users.items():
            trusted[uacrypto.der_from_x509(await uacrypto.load_certificate(path))] = name
        server = Server(user_manager=_Users(self.users, trusted))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("wafer-inspect vision system")
        policies, tokens = [ua.SecurityPolicyType.NoSecurity], [ua.AnonymousIdentityToken, ua.UserNameIdentityToken]
        if self.certificate is not None and self.private_key is not None:
            await server.load_certificate(self.certificate)
            await server.load_private_key(self.private_key)
            # Signed and encrypted by default; None beside it only when the recipe asks (and never for passwords).
            policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
            if self.unencrypted_endpoint and (not self.users or self.plaintext_passwords):
                policies.insert(0, ua.SecurityPolicyType.NoSecurity)
            if trusted:
                tokens.append(ua.X509IdentityToken)
        server.set_security_policy(policies, permission_ruleset=_Permissions())
        server.set_identity_tokens(tokens)
        namespace = await server.register_namespace(NAMESPACE)
        system = await server.nodes.objects.add_object(namespace, "VisionSystem")
        result = await system.add_object(namespace, "Result")
        counters = await system.add_object(namespace, "Counters")
        variables: list[tuple[Any, str, Any, ua.VariantType, bool]] = [
            (system, "State", "Preoperational", ua.VariantType.String, False),
            (system, "ActiveRecipe", self.recipe, ua.VariantType.String, False),
            (system, "Trigger", False, ua.VariantType.Boolean, True),
            (system, "Busy", False, ua.VariantType.Boolean, False),
            (system, "ResultReady", False, ua.VariantType.Boolean, False),
            (result, "PartId", 0, ua.VariantType.UInt32, False),
            (result, "Verdict", "", ua.VariantType.String, False),
            (result, "Reason", "", ua.VariantType.String, False),
            (result, "DefectClasses", [], ua.VariantType.String, False),
            (result, "DefectCounts", [], ua.VariantType.UInt32, False),
            (result, "LatencyMs", 0.0, ua.VariantType.Double, False),
            (result, "TriggerToResultMs", 0.0, ua.VariantType.Double, False),
            (result, "Time", datetime.now(UTC), ua.VariantType.DateTime, False),
        ]
        variables += [(counters, name, 0, ua.VariantType.UInt32, False)
                      for name in ("Parts", "Pass", "Fail", "Review", "Error", "RefusedTriggers")]
        for parent, name, value, variant, writable in variables:
            node = await parent.add_variable(namespace, name, ua.Variant(value, variant))
            if writable:
                await node.set_writable()
            self._nodes[name], self._types[name] = node, variant
        for name, action in (("Start", "Operational"), ("Stop", "Halted"), ("Reset", "Operational")):
            await system.add_method(namespace, name, self._method(name, action), [], [])
        await system.add_method(namespace, "SelectRecipe", self._select, [ua.VariantType.String],
                                [ua.VariantType.String])
        self._event = await server.get_event_generator(ua.ObjectIds.BaseEventType, system)
        self._vision = await build_vision_system(server, on_state=self._set_state, on_single_job=self._single_job)
        async with server:
            self._ready.set()
            log.info("OPC UA: %s serving %s", self.endpoint, NAMESPACE)
            await self._watch_trigger(stop)

    def _method(self, name: str, state: str) -> Any:
        async def call(parent: ua.NodeId) -> list[ua.Variant]:
            if name == "Reset":
                for flag in ("Busy", "ResultReady", "Trigger"):
                    await self._set(flag, False)
            await self._set("State", state)
            log.info("OPC UA: %s called; state %s", name, state)
            return []
        return call

    async def _select(self, parent: ua.NodeId, name: ua.Variant | str) -> list[ua.Variant] | ua.StatusCode:
        """SelectRecipe(name): only while Halted and not busy; the new chain is built off the server's loop."""
        name = name.Value if isinstance(name, ua.Variant) else name
        state, busy = await self._nodes["State"].read_value(), await self._nodes["Busy"].read_value()
        if state != "Halted" or busy or self.select_recipe is None:
            log.warning("OPC UA: SelectRecipe(%r) refused: state %s%s (Stop the system first)", name, state,
                        ", busy" if busy else "")
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        try:
            active = await asyncio.get_running_loop().run_in_executor(None, self.select_recipe, str(name))
        except InspectionError as exc:
            log.warning("OPC UA: SelectRecipe(%r) refused: %s", name, exc)
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        await self._set("ActiveRecipe", active)
        log.info("OPC UA: recipe %s selected", active)
        return [ua.Variant(active, ua.VariantType.String)]

    async def _set(self, name: str, value: Any) -> None:
        await self._nodes[name].write_value(ua.Variant(value, self._types[name]))
        if name == "State" and self._vision is not None:  # OPC 40100's state machine says the same
            await self._vision.set_state(value)

    async def _set_state(self, state: str) -> None:
        """OPC 40100's Halt, Stop, Abort (Halted), Reset and StartContinuous (Operational)."""
        await self._set("State", state)
        log.info("OPC UA: OPC 40100 method; state %s", state)

    async def _single_job(self) -> str | None:
        """OPC 40100's StartSingleJob: one part, as a PLC trigger asks for it; None (refused) unless Operational
        and idle."""
        state, busy = await self._nodes["State"].read_value(), await self._nodes["Busy"].read_value()
        if state != "Operational" or busy:
            log.warning("OPC UA: StartSingleJob refused: state %s%s", state, ", busy" if busy else "")
            return None
        await self._set("ResultReady", False)
        await self._set("Busy", True)
        self.gate.release()
        self.counts["Jobs"] += 1
        return f"job-{self.counts['Jobs']}"

    async def _watch_trigger(self, stop: asyncio.Event) -> None:
        """Poll the PLC's trigger every millisecond (a local read) until ``stop``: a rising edge starts a part, a
        falling edge ends the handshake."""
        previous = False
        while not stop.is_set():
            trigger = bool(await self._nodes["Trigger"].read_value())
            if trigger and not previous:
                state, busy = await self._nodes["State"].read_value(), await self._nodes["Busy"].read_value()
                if state != "Operational" or busy:
                    self.counts["RefusedTriggers"] += 1
                    await self._set("RefusedTriggers", self.counts["RefusedTriggers"])
                    log.warning("OPC UA: trigger refused (state %s%s)", state, ", busy" if busy else "")
                else:
                    await self._set("ResultReady", False)
                    await self._set("Busy", True)
                    self.gate.release()
            elif previous and not trigger:
                await self._set("ResultReady", False)
                self._awaiting_plc = False
            previous = trigger
            await asyncio.sleep(0.001)

    async def _publish(self, event: LineEvent, result: FrameResult) -> None:
        kinds = Counter(detection.kind for detection in result.detections)
        self.counts["Parts"] += 1
        self.counts[str(result.verdict).capitalize()] += 1
        await self._set("PartId", result.frame_counter)
        await self._set("Verdict", str(result.verdict))
        await self._set("Reason", result.reason)
        await self._set("DefectClasses", sorted(kinds))
        await self._set("DefectCounts", [kinds[kind] for kind in sorted(kinds)])
        await self._set("LatencyMs", float(event.latency_ms))
        await self._set("TriggerToResultMs", (time.perf_counter() - self.gate.last_trigger_s) * 1000.0)
        await self._set("Time", datetime.now(UTC))
        for name in ("Parts", "Pass", "Fail", "Review", "Error"):
            await self._set(name, self.counts[name])
        await self._set("Busy", False)
        self._awaiting_plc = bool(await self._nodes["Trigger"].read_value())  # the PLC is to read it and clear it
        await self._set("ResultReady", True)
        await self._event.trigger(message=f"part {result.frame_counter}: {result.verdict} ({result.reason})")
        if self._vision is not None:
            await self._vision.result_ready(
                result_id=event.row_id or 0, part_id=result.frame_counter, recipe=self.recipe,
                verdict=str(result.verdict), reason=result.reason, defect_classes=sorted(kinds),
                simulated=result.source_id.startswith("sim:"), latency_ms=float(event.latency_ms))
