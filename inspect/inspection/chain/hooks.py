"""What the line tells the world after each commit: one hook interface shared by the metrics, integrations
(an OPC UA server) and user code, which can neither stall nor stop the line.

A hook is any callable taking a :class:`LineEvent`. The line publishes an event after a result is committed,
after an input is skipped and after the camera reconnected; a dispatcher thread calls the hooks in order. The
line never waits for a hook: when the dispatcher falls behind by ``capacity`` events, new events are dropped
and counted; a hook that raises is logged (its first error in full, then counted) and called again for the
next event.

User hooks come from ``--hook module:function`` (a function, or a class called once to make the hook) or from
the ``wafer_inspect.result_hooks`` entry-point group of installed packages.
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Literal

from inspection.acquire import SkippedInput
from inspection.types import FrameResult, InspectionError

log = logging.getLogger("inspection.hooks")
ENTRY_POINT_GROUP = "wafer_inspect.result_hooks"


@dataclass(frozen=True)
class LineEvent:
    """Something the line did: a committed result, a skipped input, or a camera reconnect."""

    kind: Literal["result", "skipped", "reconnect"]
    run_id: int
    result: FrameResult | None = None
    """The committed result (``kind == "result"``)."""
    row_id: int | None = None
    """Its row in the results database."""
    latency_ms: float = 0.0
    """Acquisition to commit."""
    skipped: SkippedInput | None = None
    frames_waiting: int = 0
    """Frames acquired and not yet inspected when the event was published (the acquisition queue's depth)."""


Hook = Callable[[LineEvent], None]


class HookError(InspectionError, ValueError):
    """A hook named on the command line that cannot be loaded."""


def load_hook(spec: str) -> Hook:
    """``module:attribute`` as a hook: a function, or a class (instantiated without arguments).

    Parameters
    ----------
    spec : str
        ``module:attribute``.

    Returns
    -------
    Hook

    Raises
    ------
    HookError
        Naming the spec and what is wrong with it.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise HookError(f"--hook {spec!r}: expected module:function")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise HookError(f"--hook {spec!r}: {exc}") from None
    hook = target() if isinstance(target, type) else target
    if not callable(hook):
        raise HookError(f"--hook {spec!r}: {attribute} is not callable")
    return hook


def installed_hooks() -> list[Hook]:
    """The hooks installed packages declare in the ``wafer_inspect.result_hooks`` entry-point group.

    Returns
    -------
    list of Hook
    """
    return [load_hook(f"{entry.module}:{entry.attr}") for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)]


_STOP = object()


class HookDispatcher:
    """Calls the hooks on its own thread, in publication order, without ever making the line wait."""

    def __init__(self, hooks: Sequence[Hook], *, capacity: int = 10_000) -> None:
        self.hooks = list(hooks)
        self.dropped = 0
        """Events not delivered because the hooks had fallen ``capacity`` events behind."""
        self.errors: Counter[str] = Counter()
        """Exceptions raised, by hook."""
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._deliver, name="result-hooks", daemon=True)
        if self.hooks:
            self._thread.start()

    def publish(self, event: LineEvent) -> None:
        if not self.hooks:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _deliver(self) -> None:
        while (event := self._queue.get()) is not _STOP:
            for hook in self.hooks:
                try:
                    hook(event)  # type: ignore[arg-type]
                except Exception:  # a hook's bug must not reach the line
                    name = getattr(hook, "__qualname__", type(hook).__qualname__)
                    if not self.errors[name]:
                        log.exception("result hook %s failed; it is called again for the next event", name)
                    self.errors[name] += 1

    def close(self, *, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop the thread."""
        if not self.hooks:
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
