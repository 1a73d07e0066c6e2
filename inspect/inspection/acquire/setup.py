"""Setting a camera up from its recipe section through the GenICam node names both SDKs share.

The node names are the GenICam SFNC's (ExposureTime in us, Gain in dB, TriggerMode/TriggerSource/
TriggerActivation, PixelFormat, UserSetSelector/UserSetLoad); older Basler cameras' ``ExposureTimeAbs`` and
``GainAbs`` are taken where the SFNC names are missing. Every value is read back after it is set: a camera that
takes another value (a rounded exposure) reports it, one that refuses a value or lacks a node is an error
naming the node.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from inspection.acquire.base import CameraError
from inspection.acquire.pixels import device_spelling
from inspection.recipe import CameraSettings


class NodeAccess(Protocol):
    """How one SDK reads and writes a node of the camera's node map."""

    def has(self, name: str) -> bool: ...

    def get(self, name: str) -> Any: ...

    def set(self, name: str, value: Any) -> None: ...

    def symbols(self, name: str) -> tuple[str, ...]: ...

    def execute(self, name: str) -> None: ...

    def get_text(self, name: str) -> str: ...

    def set_text(self, name: str, text: str) -> None: ...


_EDGES = {"rising": "RisingEdge", "falling": "FallingEdge"}


MAX_FEATURE_FILE_BYTES = 4 << 20
"""The largest feature file read (a camera's whole node map saved by a vendor's viewer is tens of kB)."""


def feature_stream(path: str | Path, *, uri: str) -> list[tuple[str, str]]:
    """The (node, value) pairs of a GenApi feature stream, in order: a pylon Viewer ``.pfs`` file or GenApi's
    feature-bag text (``Name<TAB>Value`` lines, ``#`` comments).

    Parameters
    ----------
    path : str or Path
        The file.
    uri : str
        The camera it is for, named in errors.

    Returns
    -------
    list of (str, str)
        Each node's name and value as text.

    Raises
    ------
    CameraError
        Naming the file and line that is not a feature stream.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FEATURE_FILE_BYTES:
            raise CameraError(f"{uri}: feature file {path}: larger than {MAX_FEATURE_FILE_BYTES >> 20} MB; a camera's "
                              "saved features are tens of kB")
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise CameraError(f"{uri}: feature file {path} cannot be read ({exc})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, tab, value = line.partition("\t")
        if not tab or not name.strip().isidentifier():
            raise CameraError(f"{uri}: feature file {path}:{number}: {line[:60]!r} is not 'NodeName<TAB>value'")
        entries.append((name.strip(), value.strip()))
    return entries


def _feature_text(nodes: NodeAccess, name: str) -> str:
    try:
        return nodes.get_text(name)
    except Exception as exc:  # a write-only or unavailable node: said as such, the others still recorded
        return f"(not readable: {str(exc).splitlines()[0][:80]})"


def apply_settings(settings: CameraSettings, nodes: NodeAccess, *, uri: str, set_buffer: Callable[[str], str],
                   load_feature_file: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Apply ``settings`` to a camera that is open and not yet acquiring; returns what it reads back.

    Parameters
    ----------
    settings : CameraSettings
        The recipe's camera section.
    nodes : NodeAccess
        The camera's node map through its SDK.
    uri : str
        The camera, named in errors.
    set_buffer : callable
        Sets the SDK's buffer strategy (``oldest-first`` or ``newest-only``) and returns the one in force.
    load_feature_file : callable, optional
        The SDK's own loader of ``settings.feature_file`` (pylon's); without one, each of the file's nodes is
        written in the file's order.

    Returns
    -------
    dict
        The settings asked for, as the camera holds them now (exposure_us, gain_db, trigger, pixel_format,
        buffer, user_set; ``feature_file``: its path and every node it names, read back after all settings).

    Raises
    ------
    CameraError
        Naming the node that is missing, or the value the camera refused.
    """

    def node(*names: str) -> str:
        for name in names:
            if nodes.has(name):
                return name
        raise CameraError(f"{uri}: the camera has no {' or '.join(names)} node; remove that setting from the "
                          "recipe's camera section or set it in the vendor's tool (a user set)")

    def write(name: str, value: Any) -> None:
        try:
            nodes.set(name, value)
        except CameraError:
            raise
        except Exception as exc:  # the SDKs raise their own exception types for out-of-range or locked nodes
            raise CameraError(f"{uri}: {name} = {value!r} refused: {str(exc).splitlines()[0]}") from None

    applied: dict[str, Any] = {}
    features = feature_stream(settings.feature_file, uri=uri) if settings.feature_file else []
    if settings.feature_file:  # the vendor tool's saved set-up first: the recipe's own values override it
        if load_feature_file is not None:
            load_feature_file(settings.feature_file)
        else:
            for name, value in features:
                if not nodes.has(name):
                    raise CameraError(f"{uri}: feature file {settings.feature_file}: the camera has no {name} node")
                try:
                    nodes.set_text(name, value)
                except Exception as exc:  # the SDK's own exception for a locked or out-of-range node
                    raise CameraError(f"{uri}: feature file {settings.feature_file}: {name} = {value!r} refused: "
                                      f"{str(exc).splitlines()[0]}") from None
    if settings.user_set:
        write(node("UserSetSelector"), settings.user_set)
        nodes.execute(node("UserSetLoad"))
        applied["user_set"] = nodes.get("UserSetSelector")
    if settings.pixel_format:
        name = node("PixelFormat")
        try:
            spelling = device_spelling(settings.pixel_format, nodes.symbols(name))
        except ValueError as exc:
            raise CameraError(f"{uri}: {exc}") from None
        write(name, spelling)
        applied["pixel_format"] = nodes.get(name)
    for key, names in (("exposure_us", ("ExposureTime", "ExposureTimeAbs")), ("gain_db", ("Gain", "GainAbs"))):
        asked = getattr(settings, key)
        if asked is None:
            continue
        name = node(*names)
        write(name, float(asked))
        applied[key] = got = float(nodes.get(name))
        if abs(got - asked) > max(0.01 * abs(asked), 1e-6):
            raise CameraError(f"{uri}: {name}: asked {asked}, the camera holds {got}")
    trigger = settings.trigger
    if trigger.mode != "free-run" or nodes.has("TriggerMode"):
        if nodes.has("TriggerSelector") and "FrameStart" in nodes.symbols("TriggerSelector"):
            write("TriggerSelector", "FrameStart")
        write(node("TriggerMode"), "Off" if trigger.mode == "free-run" else "On")
        if trigger.mode != "free-run":
            write(node("TriggerSource"), "Software" if trigger.mode == "software" else trigger.line)
        if trigger.mode == "hardware":
            write(node("TriggerActivation"), _EDGES[trigger.edge])
        applied["trigger"] = {"mode": trigger.mode, "TriggerMode": nodes.get("TriggerMode"),
                              **({"TriggerSource": nodes.get("TriggerSource")} if trigger.mode != "free-run" else {}),
                              **({"TriggerActivation": nodes.get("TriggerActivation")}
                                 if trigger.mode == "hardware" else {})}
    applied["buffer"] = set_buffer(settings.buffer)
    if settings.feature_file:
        applied["feature_file"] = {"path": settings.feature_file,
                                   "nodes": {name: _feature_text(nodes, name) for name, _ in features}}
    return applied
