"""KLARF (KLA Results File) defect lists: read back and turned into die maps (written by ``report.klarf``).

Two layouts. KLARF 1.8 (the default) nests ``Record``s (file, lot, wafer, test, summary) holding ``Field``s
and ``List``s with typed ``Columns`` and ``Data`` rows, lengths in nanometres. KLARF 1.2 is a flat sequence of
records ``Keyword values...;`` whose lists carry their rows inside the record, lengths in micrometres. Both are
read; :class:`Klarf` holds micrometres either way. Die indices are KLARF's: XINDEX to the right, YINDEX up;
XREL / YREL place a defect from its die's lower-left corner. Class 0 is "Unclassified" (a die that failed
although its most likely class was good); the model's defect classes follow from 1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspection.types import InspectionError
from inspection.wafermap.maps import FAILED, GOOD, NO_DIE

DEFECT_FIELDS = ("DEFECTID", "XREL", "YREL", "XINDEX", "YINDEX", "XSIZE", "YSIZE", "DEFECTAREA", "DSIZE",
                 "CLASSNUMBER", "TEST", "ROUGHBINNUMBER", "IMAGECOUNT")
SUMMARY_FIELDS = ("TESTNO", "NDEFECT", "DEFDENSITY", "NDIE", "NDEFDIE")


class KlarfError(InspectionError, ValueError):
    """A KLARF file that cannot be read; the message names the file and the record."""


@dataclass
class Klarf:
    """The parts of a KLARF file a yield system uses."""

    lot_id: str
    wafer_id: str
    slot: int
    die_pitch_um: tuple[float, float]
    sample_centre_um: tuple[float, float]
    class_names: dict[int, str]
    tested_dies: list[tuple[int, int]]
    """(XINDEX, YINDEX) of every inspected die."""
    defects: list[dict[str, float]]
    """One dict per defect, keyed by DEFECT_FIELDS (numbers)."""
    summary: dict[str, float] = field(default_factory=dict)
    header: dict[str, str] = field(default_factory=dict)


MIN_DIE_PITCH_UM = 1.0
"""The smallest die pitch read (a die pitch of 1e-300 um made every defect its own die)."""


INTEGER_FIELDS = ("DEFECTID", "XINDEX", "YINDEX", "CLASSNUMBER", "TEST", "ROUGHBINNUMBER", "IMAGECOUNT", "TESTNO",
                   "NDEFECT", "NDIE", "NDEFDIE")
LENGTH_FIELDS = ("XREL", "YREL", "XSIZE", "YSIZE", "DSIZE")
"""Lengths: micrometres in KLARF 1.2 and in :class:`Klarf`, nanometres in KLARF 1.8 (areas: um^2 and nm^2)."""


_RECORD_END = re.compile(r'"[^"]*"|(;)')


def _records(text: str, source: str) -> list[list[str]]:
    """KLARF 1.2's records: the text between semicolons outside quoted strings, as words."""
    ends = [match.start() for match in _RECORD_END.finditer(text) if match.group(1)]
    records = []
    starts = [0, *(end + 1 for end in ends)]
    for number, raw in enumerate((text[start:end] for start, end in zip(starts, [*ends, len(text)],
                                                                          strict=True)), 1):
        if not raw.strip():
            continue
        try:
            records.append(_words(raw))
        except ValueError as exc:
            raise KlarfError(f"{source}: record {number} ({raw.strip()[:40]!r}): {exc}") from None
    return records


_WORD = re.compile(r'"([^"]*)"|([^\s"]+)|(")')


def _words(record: str) -> list[str]:
    """A record's words, quoted strings unquoted. KLARF has no escape character: a backslash is text (a wafer id
    ``W\\`` must not swallow its closing quote, as a shell-style split would)."""
    words = []
    for match in _WORD.finditer(record):
        if match.group(3):
            raise ValueError("a quoted string is not closed")
        words.append(match.group(1) if match.group(1) is not None else match.group(2))
    return words


def _finite(text: str, *, limit: float = 1e12) -> float:
    """A KLARF number: finite and of a size a wafer can have (coordinates, sizes and counts; ``limit`` 1e18 for
    KLARF 1.8's nanometres and square nanometres)."""
    value = float(text)
    if not math.isfinite(value) or abs(value) > limit:
        raise ValueError(f"{text!r} is not a finite number within +-{limit:g}")
    return value


def _index(text: str) -> int:
    """A KLARF die index or class number: a whole number of at most 9 digits."""
    if not re.fullmatch(r"[+-]?\d{1,9}", text):
        raise ValueError(f"{text!r} is not a whole number of at most 9 digits")
    return int(text)


def read_klarf(path: str | Path) -> Klarf:
    """Read a KLARF file: 1.8 (nested records) or 1.1/1.2 (flat records), its first wafer.

    Parameters
    ----------
    path : str or Path
        The file, as ``report.klarf.write_klarf`` or another tool wrote it.

    Returns
    -------
    Klarf
        Lengths in micrometres whatever the file's version.

    Raises
    ------
    KlarfError
        Naming the file and the record or value that could not be read.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise KlarfError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    if re.match(r"\s*Record\s+FileRecord\b", text, re.IGNORECASE):
        return _read_nested(text, source)
    return _read_flat(text, source)


def _read_flat(text: str, source: str) -> Klarf:
    header: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    defect_spec: list[str] = []
    summary_spec: list[str] = []
    for tokens in _records(text, source):
        keyword, rest = tokens[0], tokens[1:]
        values[keyword] = rest
        if keyword == "DefectRecordSpec":
            defect_spec = rest[1:]
        elif keyword == "SummarySpec":
            summary_spec = rest[1:]
        elif keyword not in ("ClassLookup", "SampleTestPlan", "DefectList", "SummaryList"):
            header[keyword] = " ".join(rest)
    if values.get("FileVersion", [""])[:1] != ["1"]:
        raise KlarfError(f"{source}: FileVersion {' '.join(values.get('FileVersion', ['missing']))}; expected 1.x")
    for required in ("WaferID", "DiePitch", "DefectRecordSpec", "DefectList"):
        if required not in values:
            raise KlarfError(f"{source}: no {required} record")

    def numbers(keyword: str, width: int) -> np.ndarray:
        raw = values.get(keyword, [])
        start = 1 if keyword in ("ClassLookup", "SampleTestPlan") else 0
        flat = raw[start:]
        if width and len(flat) % width:
            raise KlarfError(f"{source}: {keyword} has {len(flat)} values, not a multiple of {width}")
        return np.array(flat, dtype=object).reshape(-1, width) if width else np.array(flat, dtype=object)

    try:
        lookup = numbers("ClassLookup", 2)
        class_names = {_index(number): str(name) for number, name in lookup}
        plan = numbers("SampleTestPlan", 2)
        tested = [(_index(x), _index(y)) for x, y in plan]
        rows = numbers("DefectList", len(defect_spec))
        defects = [{name: _finite(v) for name, v in zip(defect_spec, row, strict=True)} for row in rows]
        summary_rows = numbers("SummaryList", len(summary_spec)) if summary_spec else np.empty((0, 0))
        summary = {name: _finite(v) for name, v in zip(summary_spec, summary_rows[0], strict=True)} \
            if len(summary_rows) else {}
        pitch = tuple(_finite(v) for v in values["DiePitch"][:2])
        centre = tuple(_finite(v) for v in values.get("SampleCenterLocation", ["0", "0"])[:2])
    except (ValueError, IndexError) as exc:
        raise KlarfError(f"{source}: a number was expected: {exc}") from None
    if len(pitch) != 2 or not all(MIN_DIE_PITCH_UM <= p <= 1_000_000 for p in pitch):
        raise KlarfError(f"{source}: DiePitch {values['DiePitch'][:2]}; expected two pitches within "
                         f"{MIN_DIE_PITCH_UM:g}..1000000 um")
    slot_text = " ".join(values.get("Slot", ["0"]))  # a Slot record with no value is no slot number either
    if not re.fullmatch(r"\d{1,4}", slot_text):
        raise KlarfError(f"{source}: Slot {slot_text[:40]!r} is not a slot number (at most 4 digits)")
    return Klarf(" ".join(values.get("LotID", [""])), " ".join(values["WaferID"]), int(slot_text),
                 (pitch[0], pitch[1]), (centre[0], centre[1]), class_names, tested, defects, summary, header)


_TOKEN = re.compile(r'"[^"]*"|[{};,]|[^\s{};,"]+')
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass
class _Node:
    """A KLARF 1.8 ``Record`` with its ``Field`` values and ``List`` tables (rows as dicts by column)."""

    kind: str
    name: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    lists: dict[str, list[dict[str, str | None]]] = field(default_factory=dict)
    records: list[_Node] = field(default_factory=list)

    def find(self, kind: str) -> list[_Node]:
        return [record for record in self.records if record.kind == kind]

    def value(self, name: str, *others: _Node) -> list[str] | None:
        """A field of this record, else of the enclosing ones given (innermost first)."""
        for node in (self, *others):
            if name in node.fields:
                return node.fields[name]
        return None


def _unquote(token: str) -> str:
    return token[1:-1] if token.startswith('"') else token


def _parse18(tokens: list[str], source: str) -> _Node:
    position = 0

    def take(expected: str | None = None) -> str:
        nonlocal position
        if position >= len(tokens):
            raise KlarfError(f"{source}: the file ends inside a record (a closing brace is missing)")
        token = tokens[position]
        position += 1
        if expected is not None and token != expected:
            raise KlarfError(f"{source}: expected {expected!r}, found {token[:40]!r} (token {position})")
        return token

    def block(node: _Node) -> None:
        take("{")
        while (token := take()) != "}":
            if token == "Record":
                name = take()
                label = _unquote(take()) if position < len(tokens) and tokens[position] != "{" else ""
                child = _Node(name, label)
                block(child)
                node.records.append(child)
            elif token == "Field":
                name, _count = take(), take()
                take("{")
                values = []
                while (value := take()) != "}":
                    if value != ",":
                        values.append(_unquote(value))
                node.fields[name] = values
            elif token == "List":
                name = take()
                node.lists[name] = table()
            else:
                raise KlarfError(f"{source}: expected Record, Field or List, found {token[:40]!r}")

    def table() -> list[dict[str, str | None]]:
        take("{")
        columns: list[str] = []
        rows: list[dict[str, str | None]] = []
        while (token := take()) != "}":
            if token == "Columns":
                take()
                take("{")
                names = []
                while (word := take()) != "}":
                    if word != ",":
                        names.append(word)
                columns = names[1::2]  # "type name, type name, ..."
            elif token == "Data":
                take()
                take("{")
                row: list[str | None] = []
                while (word := take()) != "}":
                    if word == ";":
                        if len(row) != len(columns):
                            raise KlarfError(f"{source}: a data row has {len(row)} values for {len(columns)} columns")
                        rows.append(dict(zip(columns, row, strict=True)))
                        row = []
                    elif word == "{":  # a compound value (``Images 3 { ... }``): kept as one empty value
                        depth = 1
                        while depth:
                            depth += {"{": 1, "}": -1}.get(take(), 0)
                        row[-2:] = [None]
                    else:
                        row.append(None if word == "N" else _unquote(word))
            else:
                raise KlarfError(f"{source}: expected Columns or Data in a list, found {token[:40]!r}")
        return rows

    take("Record")
    name = take()
    root = _Node(name, _unquote(take()))
    block(root)
    return root


def _read_nested(text: str, source: str) -> Klarf:
    try:
        root = _parse18(_TOKEN.findall(text), source)
    except RecursionError:
        raise KlarfError(f"{source}: records nested deeper than a KLARF file has") from None
    if not root.name.startswith("1."):
        raise KlarfError(f"{source}: FileRecord {root.name!r}; expected a KLARF 1.x file")
    lots = root.find("LotRecord")
    wafers = lots[0].find("WaferRecord") if lots else []
    if not wafers:
        raise KlarfError(f"{source}: no LotRecord holding a WaferRecord")
    lot, wafer = lots[0], wafers[0]
    try:
        pitch_nm = wafer.value("DiePitch", lot, root)
        if pitch_nm is None:
            raise KlarfError(f"{source}: no DiePitch field")
        pitch = tuple(_finite(v, limit=1e18) / 1000 for v in pitch_nm[:2])
        centre = tuple(_finite(v, limit=1e18) / 1000
                       for v in (wafer.value("SampleCenterLocation", lot) or ["0", "0"])[:2])
        class_rows = lot.lists.get("ClassLookupList") or root.lists.get("ClassLookupList") or []
        class_names = {_index(str(row["CLASSNUMBER"])): str(row.get("CLASSNAME") or "") for row in class_rows}
        tested = [(_index(str(row["XINDEX"])), _index(str(row["YINDEX"])))
                  for test in wafer.find("TestRecord") for row in test.lists.get("SampleTestPlanList", [])]
        defects = [_defect18(row) for row in wafer.lists.get("DefectList", [])]
        summaries = [row for record in wafer.find("SummaryRecord") for row in record.lists.get("TestSummaryList", [])]
        summary = {name: _finite(str(value)) for name, value in summaries[0].items()
                   if name in SUMMARY_FIELDS and value is not None} if summaries else {}
        slot = _index((wafer.value("SlotNumber") or ["0"])[0])
    except (KeyError, ValueError, IndexError) as exc:
        raise KlarfError(f"{source}: a number was expected: {exc}") from None
    if len(pitch) != 2 or not all(MIN_DIE_PITCH_UM <= p <= 1_000_000 for p in pitch):
        raise KlarfError(f"{source}: DiePitch {pitch_nm}; expected two pitches within "
                         f"{MIN_DIE_PITCH_UM * 1000:g}..1000000000 nm")
    header = {name: " ".join(values) for node in (root, lot, wafer) for name, values in node.fields.items()}
    return Klarf(lot.name, wafer.name, slot, (pitch[0], pitch[1]), (centre[0], centre[1]), class_names, tested,
                 defects, summary, header)


def _defect18(row: dict[str, str | None]) -> dict[str, float]:
    """A KLARF 1.8 defect row's standard columns (DEFECT_FIELDS) in micrometres; other tools' columns (image
    lists, design coordinates, vendor classes) are left out."""
    defect = {}
    for name, value in row.items():
        if name not in DEFECT_FIELDS or value is None or not _NUMBER.fullmatch(value):
            continue
        number = _finite(value, limit=1e18)
        defect[name] = number / 1000 if name in LENGTH_FIELDS else number / 1e6 if name == "DEFECTAREA" else number
    if "XINDEX" not in defect or "YINDEX" not in defect:
        raise ValueError("a defect row without XINDEX and YINDEX")
    return defect


def klarf_die_map(klarf: Klarf) -> tuple[np.ndarray, tuple[int, int]]:
    """The WM-811K die map of a KLARF (tested dies good, dies with a defect failed) and the (XINDEX, YINDEX) of
    its top-left cell. Rows run down the screen (YINDEX decreasing)."""
    if any("XINDEX" not in d or "YINDEX" not in d for d in klarf.defects):
        raise KlarfError("the defect list has no XINDEX and YINDEX columns: the dies of its defects are unknown, "
                         "so there is no die map")
    indices = list(klarf.tested_dies) or [(int(d["XINDEX"]), int(d["YINDEX"])) for d in klarf.defects]
    if not indices:
        raise KlarfError("the KLARF lists neither tested dies nor defects: no die map")
    xs, ys = np.array([i[0] for i in indices]), np.array([i[1] for i in indices])
    x_min, y_max = int(xs.min()), int(ys.max())
    if xs.max() - x_min >= 10_000 or y_max - ys.min() >= 10_000:
        raise KlarfError(f"die indices span {int(xs.max()) - x_min + 1} x {y_max - int(ys.min()) + 1} dies; a wafer "
                         "map has at most 10000 a side")
    die_map = np.full((int(ys.max() - ys.min()) + 1, int(xs.max() - x_min) + 1), NO_DIE, np.uint8)
    die_map[y_max - ys, xs - x_min] = GOOD
    for defect in klarf.defects:
        row, col = y_max - int(defect["YINDEX"]), int(defect["XINDEX"]) - x_min
        if 0 <= row < die_map.shape[0] and 0 <= col < die_map.shape[1]:
            die_map[row, col] = FAILED
    return die_map, (x_min, y_max)


