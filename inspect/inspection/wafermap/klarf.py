"""KLARF 1.8 (KLA Results File) defect lists: written per graded wafer, read back, and turned into die maps.

A KLARF file is a sequence of records ``Keyword values...;``. Lists (``ClassLookup``, ``SampleTestPlan``,
``DefectList``, ``SummaryList``) carry their rows inside the record. Die indices are KLARF's: XINDEX to the
right, YINDEX up; XREL / YREL place a defect from its die's lower-left corner, in micrometres.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

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


def _stamp(moment: datetime) -> str:
    return moment.strftime("%m-%d-%y %H:%M:%S")


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def write_klarf(path: str | Path, klarf: Klarf, *, station: str, recipe: str, moment: datetime) -> Path:
    path = Path(path)
    lines = [
        "FileVersion 1 8;", f"FileTimestamp {_stamp(moment)};",
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
        values = []
        for name in DEFECT_FIELDS:
            value = defect[name]
            values.append(str(int(value)) if name in ("DEFECTID", "XINDEX", "YINDEX", "CLASSNUMBER", "TEST",
                                                       "ROUGHBINNUMBER", "IMAGECOUNT") else f"{value:.3f}")
        lines.append(" " + " ".join(values))
    lines += [";", f"SummarySpec {len(SUMMARY_FIELDS)}", " ".join(SUMMARY_FIELDS) + ";", "SummaryList",
              " " + " ".join(f"{klarf.summary.get(name, 0):g}" for name in SUMMARY_FIELDS) + ";", "EndOfFile;"]
    path.write_text("\n".join(lines) + "\n", encoding="ascii", errors="replace")
    return path


def _records(text: str, source: str) -> list[list[str]]:
    records = []
    for number, raw in enumerate(text.split(";"), 1):
        if not raw.strip():
            continue
        try:
            records.append(shlex.split(raw, posix=True))
        except ValueError as exc:
            raise KlarfError(f"{source}: record {number} ({raw.strip()[:40]!r}): {exc}") from None
    return records


def _finite(text: str) -> float:
    """A KLARF number: finite and of a size a wafer can have (coordinates, sizes and counts)."""
    value = float(text)
    if not math.isfinite(value) or abs(value) > 1e12:
        raise ValueError(f"{text!r} is not a finite number within +-1e12")
    return value


def _index(text: str) -> int:
    """A KLARF die index or class number: a whole number of at most 9 digits."""
    if not re.fullmatch(r"[+-]?\d{1,9}", text):
        raise ValueError(f"{text!r} is not a whole number of at most 9 digits")
    return int(text)


def read_klarf(path: str | Path) -> Klarf:
    """Parse a KLARF 1.x file (the records written by :func:`write_klarf` and the common ones of other tools)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise KlarfError(f"{source}: cannot be read: {exc.strerror or exc}") from None
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
    if values.get("FileVersion", [""])[0] != "1":
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
    if len(pitch) != 2 or not all(0 < p <= 1_000_000 for p in pitch):
        raise KlarfError(f"{source}: DiePitch {values['DiePitch'][:2]}; expected two pitches within 0..1000000 um")
    slot_text = values.get("Slot", ["0"])[0]
    if not re.fullmatch(r"\d+", slot_text):
        raise KlarfError(f"{source}: Slot {slot_text!r} is not a whole number")
    return Klarf(" ".join(values.get("LotID", [""])), " ".join(values["WaferID"]), int(slot_text),
                 (pitch[0], pitch[1]), (centre[0], centre[1]), class_names, tested, defects, summary, header)


def klarf_die_map(klarf: Klarf) -> tuple[np.ndarray, tuple[int, int]]:
    """The WM-811K die map of a KLARF (tested dies good, dies with a defect failed) and the (XINDEX, YINDEX) of
    its top-left cell. Rows run down the screen (YINDEX decreasing)."""
    indices = list(klarf.tested_dies) or [(int(d["XINDEX"]), int(d["YINDEX"])) for d in klarf.defects]
    if not indices:
        raise KlarfError("the KLARF lists neither tested dies nor defects: no die map")
    xs, ys = np.array([i[0] for i in indices]), np.array([i[1] for i in indices])
    x_min, y_max = int(xs.min()), int(ys.max())
    die_map = np.full((int(ys.max() - ys.min()) + 1, int(xs.max() - x_min) + 1), NO_DIE, np.uint8)
    die_map[y_max - ys, xs - x_min] = GOOD
    for defect in klarf.defects:
        row, col = y_max - int(defect["YINDEX"]), int(defect["XINDEX"]) - x_min
        if 0 <= row < die_map.shape[0] and 0 <= col < die_map.shape[1]:
            die_map[row, col] = FAILED
    return die_map, (x_min, y_max)


def klarf_for_wafer(wafer: dict[str, Any], dies: list[dict[str, Any]]) -> Klarf:
    """A graded wafer (``report.lots`` rows) as KLARF: failed dies are the defects, each at its located defect."""
    names = list(wafer["class_names"])
    pitch = tuple(float(v) for v in wafer["geometry"]["die_pitch_um"])
    centre_die = next((d for d in dies if d["row"] == 0 and d["col"] == 0), None)
    centre = ((pitch[0] / 2 - centre_die["x_mm"] * 1000, pitch[1] / 2 - centre_die["y_mm"] * 1000)
              if centre_die else (pitch[0] / 2, pitch[1] / 2))
    defects = []
    for die in dies:
        if not die["defective"]:
            continue
        defects.append({
            "DEFECTID": len(defects) + 1, "XREL": die["x_rel_um"], "YREL": die["y_rel_um"], "XINDEX": die["col"],
            "YINDEX": -die["row"], "XSIZE": die["x_size_um"], "YSIZE": die["y_size_um"],
            "DEFECTAREA": die["area_um2"], "DSIZE": float(np.sqrt(die["area_um2"])),
            "CLASSNUMBER": names.index(die["class"]), "TEST": 1, "ROUGHBINNUMBER": names.index(die["class"]),
            "IMAGECOUNT": 0,
        })
    n_dies = len(dies)
    area_cm2 = n_dies * pitch[0] * pitch[1] * 1e-8
    summary = {"TESTNO": 1, "NDEFECT": len(defects), "DEFDENSITY": round(len(defects) / area_cm2, 6) if n_dies else 0,
               "NDIE": n_dies, "NDEFDIE": len(defects)}
    return Klarf(wafer["lot_id"], wafer["wafer_id"], int(wafer["slot"]), (pitch[0], pitch[1]), centre,
                 dict(enumerate(names)), [(d["col"], -d["row"]) for d in dies], defects, summary)
