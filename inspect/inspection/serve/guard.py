"""The station's guard in front of every route: the Host it answers to, request bodies within bounds, and a log
line for every refused request."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse

log = logging.getLogger("inspection.serve")
MAX_BODY_BYTES = 16 * 1024
"""The largest request body taken (a review is about 100 bytes); larger ones are refused unread."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The names a station answers to by default: its loopback addresses (``inspect serve --allow-host`` adds)."""


def _host_name(header: str) -> str:
    """The host of a Host header, without its port (``[::1]:8000`` gives ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class RequestGuard:
    """ASGI middleware: refuses request bodies over :data:`MAX_BODY_BYTES` (by their Content-Length, or as they
    stream in, unread past the limit) and logs every refused request with its client and status."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, hosts: Sequence[str] = LOOPBACK_HOSTS) -> None:
        self.app = app
        self.hosts = {host.lower() for host in hosts}

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in scope["path"][:300])
        where = f"{scope['method']} {path} from {(scope.get('client') or ('?',))[0]}"  # a %0A forges no log line

        refused: list[int] = []

        async def logged_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                refused.append(message["status"])
            elif message["type"] == "http.response.body" and refused:
                log.warning("refused %s: HTTP %d %s", where, refused.pop(), message.get("body", b"")[:300].decode(
                    "utf-8", "replace"))
            await send(message)

        host = _host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
        if host not in self.hosts:  # a page read through a name the attacker's DNS points here (DNS rebinding)
            await JSONResponse({"detail": f"Host {host[:60]!r} is not one this station answers to; start it with "
                                          "--allow-host NAME to add one"}, status_code=421)(scope, receive, logged_send)
            return
        too_large = JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            await too_large(scope, receive, logged_send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await too_large(scope, receive, logged_send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, logged_send)
