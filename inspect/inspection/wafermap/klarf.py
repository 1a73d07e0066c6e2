"""KLARF (KLA Results File) defect lists: written per graded wafer, read back, and turned into die maps.

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
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

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


def _stamp(moment: datetime) -> str:
    return moment.strftime("%m-%d-%y %H:%M:%S")


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


KlarfVersion = Literal["1.8", "1.2"]
KLARF_VERSIONS: tuple[KlarfVersion, ...] = ("1.8", "1.2")
_INTEGER_FIELDS = ("DEFECTID", "XINDEX", "YINDEX", "CLASSNUMBER", "TEST", "ROUGHBINNUMBER", "IMAGECOUNT", "TESTNO",
                   "NDEFECT", "NDIE", "NDEFDIE")
_LENGTH_FIELDS = ("XREL", "YREL", "XSIZE", "YSIZE", "DSIZE")
"""Lengths: micrometres in KLARF 1.2 and in :class:`Klarf`, nanometres in KLARF 1.8 (areas: um^2 and nm^2)."""


def write_klarf(path: str | Path, klarf: Klarf, *, station: str, recipe: str, moment: datetime,
                version: KlarfVersion = "1.8") -> Path:
    """Write one wafer's defects as KLARF.

    Parameters
    ----------
    path : str or Path
        The file to write.
    klarf : Klarf
        The wafer: lot and wafer ids, die pitch and centre in micrometres, class table, tested dies, defects.
    station : str
        The inspection station's name (``InspectionStationID``).
    recipe : str
        The recipe's name (``DeviceID``, and the setup or recipe id).
    moment : datetime
        When the wafer was inspected (``ResultTimestamp``).
    version : {"1.8", "1.2"}, optional
        KLARF 1.8 (nested records, nanometres) or 1.2 (flat records, micrometres).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    text = _nested18(klarf, station=station, recipe=recipe, moment=moment) if version == "1.8" else \
        _flat12(klarf, station=station, recipe=recipe, moment=moment)
    # UTF-8: ASCII ids are written as before, and no other id is lost to a "?" (quoted strings carry any text
    # but a double quote, which becomes an apostrophe).
    path.write_text(text, encoding="utf-8")
    return path


def _flat12(klarf: Klarf, *, station: str, recipe: str, moment: datetime) -> str:
    lines = [
        "FileVersion 1 2;", f"FileTimestamp {_stamp(moment)};",
        f'InspectionStationID "WAFER-INSPECT" "wafer-inspect" {_quote(station)};', "SampleType WAFER;",
        f"ResultTimestamp {_stamp(moment)};", f"LotID {_quote(klarf.lot_id)};", "SampleSize 1 300;",
        f"DeviceID {_quote(recipe)};", f"SetupID {_quote(recipe)} {_stamp(moment)};", 'StepID "AOI";',
        "SampleOrientationMarkType NOTCH;", "OrientationMarkLocation DOWN;",
        f"DiePitch {klarf.die_pitch_um[0]:.6e} {klarf.die_pitch_um[1]:.6e};", "DieOrigin 0.000000e+00 0.000000e+00;",
        f"WaferID {_quote(klarf.wafer_id)};", f"Slot {klarf.slot};",
        f"SampleCenterLocation {klarf.sample_centre_um[0]:.6e} {klarf.sample_centre_um[1]:.6e};",
        f"ClassLookup {len(klarf.class_names)}",
        *[f" {number} {_quote(name)}" for number, name in sorted(klarf.class_names.items())],
        ";", "InspectionTest 1;", f"SampleTestPlan {len(klarf.tested_dies)}",
        *[f" {x} {y}" for x, y in klarf.tested_dies], ";",
        f"AreaPerTest {len(klarf.tested_dies) * klarf.die_pitch_um[0] * klarf.die_pitch_um[1]:.6e};",
        f"DefectRecordSpec {len(DEFECT_FIELDS)} {' '.join(DEFECT_FIELDS)};", "DefectList",
    ]
    for defect in klarf.defects:
        lines.append(" " + " ".join(str(int(defect[name])) if name in _INTEGER_FIELDS else f"{defect[name]:.3f}"
                                    for name in DEFECT_FIELDS))
    lines += [";", f"SummarySpec {len(SUMMARY_FIELDS)} {' '.join(SUMMARY_FIELDS)};", "SummaryList",
              " " + " ".join(f"{klarf.summary.get(name, 0):g}" for name in SUMMARY_FIELDS) + ";", "EndOfFile;"]
    return "\n".join(lines) + "\n"


def _nm(value_um: float) -> int:
    return round(value_um * 1000)


def _nested18(klarf: Klarf, *, station: str, recipe: str, moment: datetime) -> str:
    day, time = f"{moment:%m-%d-%Y}", f"{moment:%H:%M:%S}"

    def field(name: str, *values: object) -> str:
        return f"Field {name} {len(values)} {{{', '.join(_value18(v) for v in values)}}}"

    def listing(name: str, columns: list[tuple[str, str]], rows: list[list[object]], indent: str) -> list[str]:
        header = ", ".join(f"{kind} {column}" for kind, column in columns)
        return [f"{indent}List {name}", f"{indent}{{", f"{indent}  Columns {len(columns)} {{ {header} }}",
                f"{indent}  Data {len(rows)}", f"{indent}  {{",
                *[f"{indent}    {' '.join(_value18(v) for v in row)};" for row in rows], f"{indent}  }}", f"{indent}}}"]

    defect_columns = [("int32" if name in _INTEGER_FIELDS or name in _LENGTH_FIELDS else "float", name)
                      for name in DEFECT_FIELDS]
    defect_rows = [[int(d[name]) if name in _INTEGER_FIELDS else _nm(d[name]) if name in _LENGTH_FIELDS
                    else float(d[name]) * 1e6 if name == "DEFECTAREA" else float(d[name]) for name in DEFECT_FIELDS]
                   for d in klarf.defects]
    summary_columns = [("float" if name == "DEFDENSITY" else "int32", name) for name in SUMMARY_FIELDS]
    summary_rows = [[float(klarf.summary.get(name, 0)) if name == "DEFDENSITY" else int(klarf.summary.get(name, 0))
                     for name in SUMMARY_FIELDS]]
    area_nm2 = len(klarf.tested_dies) * klarf.die_pitch_um[0] * klarf.die_pitch_um[1] * 1e6
    lines = [
        'Record FileRecord "1.8"', "{",
        f"  Record LotRecord {_quote(klarf.lot_id)}", "  {",
        f"    {field('DeviceID', recipe)}",
        f"    {field('DiePitch', _nm(klarf.die_pitch_um[0]), _nm(klarf.die_pitch_um[1]))}",
        f"    {field('InspectionStationID', 'WAFER-INSPECT', 'wafer-inspect', station)}",
        f"    {field('OrientationMarkLocation', 'DOWN')}",
        f"    {field('RecipeID', recipe, day, time)}",
        f"    {field('ResultTimestamp', day, time)}",
        f"    {field('SampleOrientationMarkType', 'NOTCH')}",
        f"    {field('SampleSize', 1, 300)}",
        f"    {field('SampleType', 'WAFER')}",
        f"    {field('StepID', 'AOI')}",
        *listing("ClassLookupList", [("int32", "CLASSNUMBER"), ("string", "CLASSNAME"), ("string", "CLASSCODE")],
                 [[number, name, ""] for number, name in sorted(klarf.class_names.items())], "    "),
        f"    Record WaferRecord {_quote(klarf.wafer_id)}", "    {",
        f"      {field('DieOrigin', 0, 0)}",
        f"      {field('SampleCenterLocation', _nm(klarf.sample_centre_um[0]), _nm(klarf.sample_centre_um[1]))}",
        f"      {field('SlotNumber', klarf.slot)}",
        *listing("DefectList", defect_columns, defect_rows, "      "),
        '      Record TestRecord "1"', "      {",
        f"        {field('AreaPerTest', area_nm2)}",
        *listing("SampleTestPlanList", [("int32", "XINDEX"), ("int32", "YINDEX")],
                 [[x, y] for x, y in klarf.tested_dies], "        "),
        "      }",
        "      Record SummaryRecord", "      {",
        *listing("TestSummaryList", summary_columns, summary_rows, "        "),
        "      }",
        "    }",
        "  }",
        f"  {field('FileTimestamp', day, time)}",
        "}", "EndOfFile;",
    ]
    return "\n".join(lines) + "\n"


def _value18(value: object) -> str:
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, float):
        return f"{value:.6e}"
    return str(value)


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
        The file, as :func:`write_klarf` or another tool wrote it.

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
        defect[name] = number / 1000 if name in _LENGTH_FIELDS else number / 1e6 if name == "DEFECTAREA" else number
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


UNCLASSIFIED = "Unclassified"


def klarf_for_wafer(wafer: dict[str, Any], dies: list[dict[str, Any]], *, good_class: str = "good") -> Klarf:
    """A graded wafer (``report.lots`` rows) as KLARF: failed dies are the defects, each at its located defect.

    The class table is KLARF's: 0 "Unclassified" (a die that failed on its defect score although its most likely
    class was ``good_class``), then the model's defect classes from 1.
    """
    names = [UNCLASSIFIED, *(name for name in wafer["class_names"] if name != good_class)]
    pitch = tuple(float(v) for v in wafer["geometry"]["die_pitch_um"])
    centre_die = next((d for d in dies if d["row"] == 0 and d["col"] == 0), None)
    centre = ((pitch[0] / 2 - centre_die["x_mm"] * 1000, pitch[1] / 2 - centre_die["y_mm"] * 1000)
              if centre_die else (pitch[0] / 2, pitch[1] / 2))
    def number_of(name: str) -> int:
        return names.index(name) if name in names else 0

    defects = []
    for die in dies:
        if not die["defective"]:
            continue
        defects.append({
            "DEFECTID": len(defects) + 1, "XREL": die["x_rel_um"], "YREL": die["y_rel_um"], "XINDEX": die["col"],
            "YINDEX": -die["row"], "XSIZE": die["x_size_um"], "YSIZE": die["y_size_um"],
            "DEFECTAREA": die["area_um2"], "DSIZE": float(np.sqrt(die["area_um2"])),
            "CLASSNUMBER": number_of(die["class"]), "TEST": 1, "ROUGHBINNUMBER": number_of(die["class"]),
            "IMAGECOUNT": 0,
        })
    n_dies = len(dies)
    area_cm2 = n_dies * pitch[0] * pitch[1] * 1e-8
    summary = {"TESTNO": 1, "NDEFECT": len(defects), "DEFDENSITY": round(len(defects) / area_cm2, 6) if n_dies else 0,
               "NDIE": n_dies, "NDEFDIE": len(defects)}
    return Klarf(wafer["lot_id"], wafer["wafer_id"], int(wafer["slot"]), (pitch[0], pitch[1]), centre,
                 dict(enumerate(names)), [(d["col"], -d["row"]) for d in dies], defects, summary)
