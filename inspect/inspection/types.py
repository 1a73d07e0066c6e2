"""The records that flow between stages.

Data flows one way: acquire -> preprocess -> align -> measure -> classify -> wafermap -> grade -> report.
Every stage takes and returns these frozen records; arrays keep their dtype and layout, and units are in
the field names.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Layout = Literal["mono", "rgb", "bgr"]
SimKind = Literal["wafer", "pcb"]
SIM_KINDS: tuple[SimKind, ...] = ("wafer", "pcb")
MIN_SIM_SIZE_PX, MAX_SIM_SIZE_PX = 64, 8192
"""The side of a synthetic frame or reference."""
"""The kinds of synthetic frame the simulator draws (``sim:wafer``, ``sim:pcb``)."""
WAFERMAP_PATTERNS = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none")
"""WM-811K's nine wafer-map classes."""


class InspectionError(Exception):
    """An error the user can act on: its message names the file, field or value and what was expected.

    The ``inspect`` command prints these without a traceback and exits with status 2.
    """


MAX_ID_CHARS = 200
"""The longest lot or wafer id taken (SEMI E90 substrate ids are at most 80; the file stems made from two stay
within the 255 bytes file systems allow)."""
_STEM_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def check_id(value: str, *, field: str) -> str:
    """``value`` as an id (lot, wafer, substrate), or an error naming ``field``.

    Ids are data: any printable Unicode is kept as it is, and writers quote or encode it. Refused: an empty id,
    one longer than ``MAX_ID_CHARS``, control characters (a newline or NUL would forge a line or end a
    string in SINF, KLARF and the logs) and the double quote (KLARF's quoted strings have no escape for it, so the
    id would be written as another). Returns the id with surrounding spaces removed.

    Raises
    ------
    InspectionError
        Naming ``field``, the offending character's position and code point.
    """
    text = value.strip()
    if not text:
        raise InspectionError(f"{field}: empty; expected an id of 1 to {MAX_ID_CHARS} printable characters")
    if len(text) > MAX_ID_CHARS:
        raise InspectionError(f"{field}: {len(text)} characters; expected at most {MAX_ID_CHARS}")
    for position, char in enumerate(text):
        if not char.isprintable() and char != " ":
            raise InspectionError(f"{field} {text[:40]!r}: control character U+{ord(char):04X} at position "
                                  f"{position}; ids must be printable text")
    if '"' in text:
        raise InspectionError(f"{field} {text[:40]!r}: a double quote at position {text.index(chr(34))}; KLARF "
                              "cannot carry it (its quoted strings have no escape), use another character")
    return text


def control_character(data: Any, *, where: str = "") -> tuple[str, str, str] | None:
    """The first string in ``data`` (nested dicts and lists, keys included) holding a control character (tab
    allowed): ``(where, string, character)``, ``where`` a dotted path such as ``camera.feature_file`` or
    ``class_names[2]``; None when every string is printable. A NUL ends a path early in the OS and a newline
    forges a line in logs and text formats, so readers of settings refuse them by name."""
    stack: list[tuple[Any, str]] = [(data, where)]
    while stack:
        value, at = stack.pop()
        if isinstance(value, str):
            bad = next((char for char in value if not char.isprintable() and char not in " \t"), None)
            if bad is not None:
                return at or "a value", value, bad
        elif isinstance(value, dict):
            stack.extend((key, f"{at} (a key)".lstrip()) for key in value)
            stack.extend((item, f"{at}.{key}".lstrip(".")) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, f"{at}[{index}]") for index, item in enumerate(value))
    return None


MAX_STEM_CHARS = 160
"""File stems longer than this are cut and end in ``~~`` and a hash (ids of non-Latin script take 9 characters
per letter)."""


def file_stem(*ids: str) -> str:
    """A file stem made of ``ids`` (lot, wafer) that no other ids give, and that ``ids_of_stem`` reads back.

    Letters, digits, ``-`` and ``.`` stay as they are (so ``LOT7``, ``W-01`` read as themselves); every other
    character, as its UTF-8 bytes, becomes ``~XX`` (hex), and the ids are joined with ``_``, which is never
    left bare inside one: ``("LOT7", "W_1")`` gives ``LOT7_W~5F1``, ``("LOT7", "W/1")`` ``LOT7_W~2F1``. A leading
    ``.`` is encoded too, so no stem is hidden or a relative path. A stem over ``MAX_STEM_CHARS`` is cut and ends
    in ``~~`` and 16 hex digits of the ids' SHA-256 (unique, no longer reversible). Distinct ids in the same
    letter case never share a stem; where two differ only in case, ``unique_on_any_file_system`` tells them
    apart for file systems that ignore case.
    """
    def encode(text: str) -> str:
        return "".join(char if char in _STEM_SAFE and not (index == 0 and char == ".") else
                       "".join(f"~{byte:02X}" for byte in char.encode("utf-8")) for index, char in enumerate(text))

    stem = "_".join(encode(text) for text in ids)
    if len(stem) <= MAX_STEM_CHARS:
        return stem
    cut = stem[: MAX_STEM_CHARS - 18]
    cut = cut[: cut.rfind("~")] if "~" in cut[-2:] else cut  # never half an escape
    return f"{cut}~~{_digest(ids)[:16]}"


def unique_on_any_file_system(stems: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """The stems of ``(stem, ids)`` pairs, each one that repeats an earlier one when letter case is ignored
    given ``~~`` and 8 hex digits of its ids' SHA-256, so no file overwrites another on macOS or Windows."""
    seen: set[str] = set()
    unique = []
    for stem, ids in stems:
        if stem.casefold() in seen:
            stem = f"{stem}~~{_digest(ids)[:8]}"
        seen.add(stem.casefold())
        unique.append(stem)
    return unique


def ids_of_stem(stem: str) -> tuple[str, ...]:
    """The ids ``file_stem`` made ``stem`` of.

    Raises
    ------
    ValueError
        For a stem that was cut or told apart by a hash (``~~``): its ids are in the report's ``lot.json``.
    """
    if "~~" in stem:
        raise ValueError(f"{stem}: a shortened or disambiguated stem; its ids are in the report's lot.json")
    return tuple(_decode(part) for part in stem.split("_"))


def _digest(ids: tuple[str, ...]) -> str:
    return hashlib.sha256("\0".join(ids).encode("utf-8")).hexdigest()


def _decode(part: str) -> str:
    raw, index = bytearray(), 0
    while index < len(part):
        if part[index] == "~":
            raw.append(int(part[index + 1 : index + 3], 16))
            index += 3
        else:
            raw += part[index].encode("utf-8")
            index += 1
    return raw.decode("utf-8")


@dataclass(frozen=True)
class Frame:
    """One image as a source delivered it.

    ``image`` is HxW for ``layout="mono"`` and HxWx3 for ``"rgb"``/``"bgr"``; its dtype is kept as delivered
    (uint8 for 8-bit data, uint16 for 10/12/16-bit data) and ``bit_depth`` says how many bits are significant.
    """

    image: np.ndarray
    layout: Layout
    bit_depth: int
    source_id: str
    frame_counter: int
    timestamp_s: float
    """Host wall-clock time (seconds since the epoch) at which the frame was received."""
    device_timestamp: int | None = None
    """The device's own timestamp (ticks), when the source has one."""
    path: str | None = None
    """The file the frame was read from, for file sources."""
    truth: tuple[Defect, ...] | None = None
    """Ground truth for synthetic frames; None when unknown."""

    def __post_init__(self) -> None:
        expected_ndim = 2 if self.layout == "mono" else 3
        if self.image.ndim != expected_ndim or (expected_ndim == 3 and self.image.shape[2] != 3):
            raise ValueError(
                f"Frame from {self.source_id!r}: layout {self.layout!r} needs an image of "
                f"{'HxW' if expected_ndim == 2 else 'HxWx3'}, got shape {self.image.shape}"
            )
        max_bits = 8 * self.image.dtype.itemsize
        if self.image.dtype.kind != "u" or not 1 <= self.bit_depth <= max_bits:
            raise ValueError(
                f"Frame from {self.source_id!r}: bit_depth {self.bit_depth} does not fit dtype {self.image.dtype}"
                " (expected unsigned integer pixels)"
            )

    @property
    def height_px(self) -> int:
        return int(self.image.shape[0])

    @property
    def width_px(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class Defect:
    """A known (ground-truth) or detected defect's class and bounding box in pixels."""

    kind: str
    box_xyxy_px: tuple[int, int, int, int]
    """Left, top, right (exclusive), bottom (exclusive)."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "box_xyxy_px": list(self.box_xyxy_px)}


@dataclass(frozen=True)
class Region:
    """A connected region with its calibrated features.

    The line's regions (``measure.regions``) are measured on the difference to the golden; the metrology's
    blobs (``measure.metrology.blobs``) on a grey image against the background level they were asked for. Both
    are this one record; the shape fields that only the metrology computes are None on the line.
    """

    label: int
    area_px: int
    area_um2: float
    box_xyxy_px: tuple[int, int, int, int]
    """Left, top, right (exclusive), bottom (exclusive)."""
    centroid_xy_px: tuple[float, float]
    mean_diff: float
    """Mean signed grey-level deviation from the reference (the golden's tolerance band on the line, the
    background level for blobs); positive: brighter than the reference."""
    max_abs_diff: float
    """Largest absolute grey-level deviation from the same reference."""
    area_subpx: float | None = None
    """Area in px from each pixel's grey-level coverage between background and foreground (blobs only)."""
    orientation_deg: float | None = None
    """Direction of the major axis, counter-clockwise from +x on screen (blobs only)."""
    eccentricity: float | None = None
    """0 for a circle, towards 1 for a line (blobs only)."""
    anomaly_score: float | None = None
    """The highest score of an anomaly model's map inside the region (regions an anomaly model found, which
    have no reference: their grey-level deviations are 0)."""

    def to_dict(self) -> dict[str, Any]:
        shape = {name: round(value, 3) for name in ("area_subpx", "orientation_deg", "eccentricity", "anomaly_score")
                 if (value := getattr(self, name)) is not None}
        return {
            "label": self.label,
            "area_px": self.area_px,
            "area_um2": round(self.area_um2, 3),
            "box_xyxy_px": list(self.box_xyxy_px),
            "centroid_xy_px": [round(c, 3) for c in self.centroid_xy_px],
            "mean_diff": round(self.mean_diff, 3),
            "max_abs_diff": round(self.max_abs_diff, 3),
            **shape,
        }


@dataclass(frozen=True)
class Detection:
    """A region that the inspection reports, with its class and score."""

    kind: str
    score: float
    region: Region
    box_xyxy_px: tuple[float, float, float, float] | None = None
    """The reported box when it differs from the region's (grown to the class's annotated size), in pixels."""
    model_sha256: str | None = None
    """The sha256 of the ONNX model that named it (None: named by the classical stages, e.g. by polarity)."""

    def to_dict(self) -> dict[str, Any]:
        reported = {} if self.box_xyxy_px is None else {"reported_box_xyxy_px": [round(v, 1) for v in self.box_xyxy_px]}
        return {"kind": self.kind, "score": round(self.score, 4), **self.region.to_dict(), **reported,
                "model_sha256": self.model_sha256}


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    REVIEW = "review"
    ERROR = "error"
    """The part could not be inspected (a stage failed); it is stored with the reason, never dropped."""


@dataclass(frozen=True)
class FrameResult:
    """The outcome for one frame: what the line acts on and what the store keeps."""

    source_id: str
    frame_counter: int
    acquired_at_s: float
    verdict: Verdict
    detections: tuple[Detection, ...]
    stage_latency_ms: Mapping[str, float]
    reason: str = ""
    """Why the verdict was reached (the rule that fired, or the error)."""
    path: str | None = None
    shift_px: tuple[float, float] | None = None
    truth: tuple[Defect, ...] | None = None
    model_sha256: str | None = None
    """The classifier that judged the frame's candidates (None: no classifier ran)."""
    extras: Mapping[str, Any] = field(default_factory=dict)
    """How inference went: candidates, the sizes of the batches they rode in, the longest wait in the batcher."""


@dataclass(frozen=True)
class LotItem:
    image_path: str
    wafer_id: str
    lot_id: str
    slot: int
    truth_pattern: str | None = None
    truth_dies: str | None = None
    """A truth file (``sample_lot`` layout: rows, cols, classes per die) for die-level comparison."""


@dataclass(frozen=True)
class PatternScore:
    pattern: str
    probability: float


@dataclass(frozen=True)
class WaferPattern:
    """A die map's spatial pattern (one of ``WAFERMAP_PATTERNS``) as a wafer-map model judged it."""

    pattern: str
    confidence: float
    """The model's probability of ``pattern``."""
    top3: tuple[PatternScore, ...]
    yield_fraction: float
    """Good dies / dies on the map."""
    root_cause: str
    """The process steps that usually leave this pattern."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``inspect wafermap classify --json`` prints."""
        return {"pattern": self.pattern, "confidence": self.confidence,
                "top3": [{"pattern": t.pattern, "probability": t.probability} for t in self.top3],
                "yield": self.yield_fraction, "root_cause": self.root_cause}


@dataclass(frozen=True)
class WaferGeometry:
    """Where the wafer and its die grid lie in the image, as the lot grading found them."""

    centre_xy_px: tuple[float, float]
    diameter_mm: float
    notch_angle_deg: float
    notch_kind: str
    edge_rms_px: float
    """RMS distance of the edge points from the fitted circle."""
    die_pitch_um: tuple[float, float]
    die_size_um: tuple[float, float]
    dies: int
    image_size_px: tuple[int, int]
    """Width, height."""

    def to_dict(self) -> dict[str, Any]:
        return {"centre_xy_px": [round(v, 3) for v in self.centre_xy_px], "diameter_mm": round(self.diameter_mm, 3),
                "notch_angle_deg": round(self.notch_angle_deg, 3), "notch_kind": self.notch_kind,
                "edge_rms_px": round(self.edge_rms_px, 3), "die_pitch_um": [round(v, 2) for v in self.die_pitch_um],
                "die_size_um": [round(v, 1) for v in self.die_size_um], "dies": self.dies,
                "image_size_px": list(self.image_size_px)}


@dataclass(frozen=True)
class DieTable:
    """Per graded die, columns of equal length (N,): its grid cell, centre, class and score, and where its defect
    lies (KLARF's die-relative position from the die's lower-left corner and size, 0 for a passing die)."""

    row: np.ndarray
    col: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    class_index: np.ndarray
    """Index into the model's classes (the good class for a passing die)."""
    defect_score: np.ndarray
    """1 - p(good)."""
    defective: np.ndarray
    x_rel_um: np.ndarray
    y_rel_um: np.ndarray
    x_size_um: np.ndarray
    y_size_um: np.ndarray
    area_um2: np.ndarray
    truth_class: np.ndarray
    """Index into the model's classes of the truth file's class; -1: no truth for this die."""

    def __len__(self) -> int:
        return len(self.row)


@dataclass(frozen=True)
class DiePicture:
    """A picture of one die kept with its wafer: a thumbnail, or the classifier's input kept for review."""

    row: int
    col: int
    class_name: str
    defect_score: float
    png: bytes


@dataclass(frozen=True)
class WaferReport:
    """What grading found on a wafer: its die map and pattern, yield, geometry and dies."""

    pattern: WaferPattern
    yield_fraction: float
    defect_density_per_cm2: float
    die_map: np.ndarray
    """(rows, cols) int8: 0 no die, 1 good, 2 failed."""
    map_origin_row_col: tuple[int, int]
    """Die index of die_map[0, 0]."""
    geometry: WaferGeometry
    dies: DieTable
    class_names: tuple[str, ...]
    thumbnails: tuple[DiePicture, ...] = ()
    """The worst dies as they were imaged."""
    review_dies: tuple[DiePicture, ...] = ()
    """The worst defective dies as the classifier saw them (die, median die, difference), kept for review."""


@dataclass(frozen=True)
class GradedWafer:
    """Everything the store keeps about one wafer: a graded wafer has its report, a failed one only the reason."""

    item: LotItem
    reason: str
    verdict: Verdict
    timings_ms: Mapping[str, float]
    report: WaferReport | None = None

    @property
    def status(self) -> Literal["graded", "failed"]:
        return "failed" if self.report is None else "graded"
