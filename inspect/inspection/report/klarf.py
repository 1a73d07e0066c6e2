"""KLARF from a graded wafer: the defect list a fab's yield system reads, as KLARF 1.8 (nested records,
nanometres) or 1.2 (flat records, micrometres). The reader and the :class:`~inspection.wafermap.klarf.Klarf`
record are in :mod:`inspection.wafermap.klarf`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inspection.wafermap.klarf import DEFECT_FIELDS, INTEGER_FIELDS, LENGTH_FIELDS, SUMMARY_FIELDS, Klarf


def _stamp(moment: datetime) -> str:
    return moment.strftime("%m-%d-%y %H:%M:%S")


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


KlarfVersion = Literal["1.8", "1.2"]


KLARF_VERSIONS: tuple[KlarfVersion, ...] = ("1.8", "1.2")


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
        lines.append(" " + " ".join(str(int(defect[name])) if name in INTEGER_FIELDS else f"{defect[name]:.3f}"
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

    defect_columns = [("int32" if name in INTEGER_FIELDS or name in LENGTH_FIELDS else "float", name)
                      for name in DEFECT_FIELDS]
    defect_rows = [[int(d[name]) if name in INTEGER_FIELDS else _nm(d[name]) if name in LENGTH_FIELDS
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
