"""Everything a yield engineer takes away from a graded lot, made from the grading database alone:
an HTML report (self-contained: pictures inline), CSV and JSON, a KLARF 1.8 file per wafer, SINF and SEMI
E142 bin maps, and the lot's figures against ground truth when the manifest carried it.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspection.evaluate.metrics import confusion_matrix
from inspection.report.klarf import KlarfVersion, klarf_for_wafer, write_klarf
from inspection.report.lots import read_die_truth, read_dies, read_thumbnails, read_wafers
from inspection.report.maps import write_e142, write_sinf
from inspection.report.pictures import draw_confusion, draw_wafer_map, save_png
from inspection.report.tables import spreadsheet_safe
from inspection.types import file_stem, unique_on_any_file_system
from inspection.wafermap.maps import PATTERNS

OPERATING_POINTS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9)
CSV_COLUMNS = ("lot_id", "wafer_id", "slot", "status", "verdict", "reason", "yield_fraction", "n_dies", "n_defective",
               "defect_density_per_cm2", "pattern", "pattern_confidence", "root_cause", "truth_pattern", "image_path")


def lot_figures(db_path: str | Path, *, wafers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per lot and overall: wafer counts by status and verdict, mean yield, pattern counts and, where the input
    carried truth, die-level recall and overkill and wafer pattern accuracy. ``wafers``: already read rows."""
    wafers = read_wafers(db_path) if wafers is None else wafers
    graded = [w for w in wafers if w["status"] == "graded"]
    figures: dict[str, Any] = {
        "wafers": len(wafers), "graded": len(graded), "failed_to_grade": len(wafers) - len(graded),
        "verdicts": {v: sum(w["verdict"] == v for w in wafers) for v in sorted({w["verdict"] for w in wafers})},
        "mean_yield": round(float(np.mean([w["yield_fraction"] for w in graded])), 5) if graded else None,
        "patterns": {p: sum(w["pattern"] == p for w in graded) for p in PATTERNS if any(w["pattern"] == p
                                                                                      for w in graded)},
    }
    truth_scores = read_die_truth(db_path)
    if truth_scores:
        is_defect = np.array([t[0] != "good" for t in truth_scores])
        scores = np.array([t[1] for t in truth_scores])
        rejected = np.array([t[2] for t in truth_scores])
        defect_truth, good_truth = int(is_defect.sum()), int((~is_defect).sum())
        figures["die_truth"] = {
            "defective_dies": defect_truth, "found": int(rejected[is_defect].sum()), "good_dies": good_truth,
            "good_rejected": int(rejected[~is_defect].sum()),
            "recall": round(float(rejected[is_defect].mean()), 5) if defect_truth else None,
            "overkill": round(float(rejected[~is_defect].mean()), 5) if good_truth else None,
            # What other die_defect_score settings would have given on this lot (for calibrating a recipe).
            "operating_points": [
                {"die_defect_score": threshold,
                 "recall": round(float((scores[is_defect] >= threshold).mean()), 5) if defect_truth else None,
                 "overkill": round(float((scores[~is_defect] >= threshold).mean()), 5) if good_truth else None}
                for threshold in OPERATING_POINTS],
        }
    with_truth = [w for w in graded if w["truth_pattern"]]
    if with_truth:
        correct = sum(w["pattern"] == w["truth_pattern"] for w in with_truth)
        figures["pattern_truth"] = {"wafers": len(with_truth), "correct": correct,
                                    "accuracy": round(correct / len(with_truth), 5)}
    return figures


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _data_uri(picture: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".png", picture)
    if not ok:
        raise OSError("PNG encoding failed")
    return _png_uri(encoded.tobytes())


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f2f2f2}.pass{color:#1a7f37}.fail{color:#cf222e}.review{color:#9a6700}.error{color:#8250df}
.bar{height:12px;background:#60b260}.bar.fail{background:#cf222e}.bar.review{background:#d4a72c}
.barbox{width:200px;background:#eee}.miss{background:#fff0f0}
figure{margin:0}figcaption{font-size:15px;margin:0 0 4px}figcaption b{font-size:17px}
.wafer{display:inline-block;vertical-align:top;margin:8px;padding:8px;border:1px solid #ddd;width:380px}
.wafer img.map{width:360px}.thumbs img{width:64px;height:64px;image-rendering:pixelated;margin:2px}
"""


def _write_html(db_path: str | Path, path: Path, *, title: str, wafers: list[dict[str, Any]],
                figures: dict[str, Any]) -> Path:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_STYLE}</style>"
             f"</head><body><h1>{e(title)}</h1>"]
    parts.append("<h2>Lot summary</h2><table id='summary'>")
    summary_rows = [("wafers", figures["wafers"]), ("graded", figures["graded"]),
                    ("failed to grade", figures["failed_to_grade"]),
                    ("mean yield", f"{figures['mean_yield']:.2%}" if figures["mean_yield"] is not None else "-"),
                    ("verdicts", ", ".join(f"{k} {v}" for k, v in figures["verdicts"].items())),
                    ("patterns", ", ".join(f"{k} {v}" for k, v in figures["patterns"].items()))]
    if "die_truth" in figures:
        truth = figures["die_truth"]
        summary_rows.append(("die recall vs truth", f"{truth['recall']:.4%} ({truth['found']} of "
                                                    f"{truth['defective_dies']} defective dies)"))
        summary_rows.append(("overkill vs truth", f"{truth['overkill']:.4%} ({truth['good_rejected']} of "
                                                  f"{truth['good_dies']} good dies rejected)"))
    if "pattern_truth" in figures:
        truth = figures["pattern_truth"]
        summary_rows.append(("pattern accuracy vs truth", f"{truth['accuracy']:.2%} ({truth['correct']} of "
                                                          f"{truth['wafers']})"))
    parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in summary_rows]
    truth_known = any(w["truth_pattern"] for w in wafers)
    truth_header = "<th>truth pattern</th>" if truth_known else ""
    parts.append("</table><h2>Wafers</h2><table id='wafers'><tr><th>lot</th><th>wafer</th><th>slot</th>"
                 f"<th>verdict</th><th>yield</th><th></th><th>pattern</th>{truth_header}<th>root-cause hint</th>"
                 "<th>reason</th></tr>")
    for w in wafers:
        yield_text = f"{w['yield_fraction']:.2%}" if w["yield_fraction"] is not None else "-"
        bar = ("" if w["yield_fraction"] is None else f"<div class='barbox'><div class='bar {e(w['verdict'])}' "
               f"style='width:{100 * w['yield_fraction']:.1f}%'></div></div>")
        pattern = f"{w['pattern']} ({w['pattern_confidence']:.2f})" if w["pattern"] else "-"
        truth_cell = ""
        if truth_known:
            missed = w["truth_pattern"] and w["pattern"] and w["truth_pattern"] != w["pattern"]
            truth_cell = f"<td{' class=miss' if missed else ''}>{e(w['truth_pattern'] or '-')}</td>"
        parts.append(f"<tr class='wafer-row'><td>{e(w['lot_id'])}</td><td>{e(w['wafer_id'])}</td><td>{w['slot']}</td>"
                     f"<td class='{e(w['verdict'])}'>{e(w['verdict'])}</td><td>{yield_text}</td><td>{bar}</td>"
                     f"<td>{e(pattern)}</td>{truth_cell}<td>{e(w['root_cause'] or '-')}</td><td>{e(w['reason'])}</td>"
                     "</tr>")
    parts.append("</table>")
    failed = [w for w in wafers if w["status"] != "graded"]
    if failed:
        parts.append("<h2>Failed to grade</h2><table id='failed'><tr><th>wafer</th><th>image</th><th>reason</th></tr>")
        parts += [f"<tr><td>{e(w['wafer_id'])}</td><td>{e(w['image_path'])}</td><td>{e(w['reason'])}</td></tr>"
                  for w in failed]
        parts.append("</table>")
    with_truth = [w for w in wafers if w["status"] == "graded" and w["truth_pattern"]]
    if with_truth:
        index = {p: i for i, p in enumerate(PATTERNS)}
        confusion = confusion_matrix(np.array([index[w["truth_pattern"]] for w in with_truth]),
                                     np.array([index[w["pattern"]] for w in with_truth]), n_classes=len(PATTERNS))
        picture = draw_confusion(confusion, class_names=PATTERNS, title="wafer pattern: truth (rows) vs graded")
        parts.append(f"<h2>Pattern confusion against ground truth</h2><img id='confusion' src='{_data_uri(picture)}'>")
    parts.append("<h2>Wafer maps and worst dies</h2><p>Dies are named by their KLARF "
                 "index (XINDEX to the right, YINDEX up, 0,0 the centre die), as in the lot's KLARF files.</p>")
    for w in wafers:
        if w["die_map"] is None:
            continue
        picture = draw_wafer_map(w["die_map"], title=f"{w['wafer_id']}: {w['verdict']}",
                                 subtitle=f"yield {w['yield_fraction']:.1%}, {w['pattern']} "
                                          f"({w['pattern_confidence']:.2f})")
        truth = f", truth {e(w['truth_pattern'])}" if w["truth_pattern"] else ""
        caption = (f"<b>{e(w['wafer_id'])}</b> <span class='{e(w['verdict'])}'>{e(w['verdict'])}</span>, yield "
                   f"{w['yield_fraction']:.1%}, {e(w['pattern'])} ({w['pattern_confidence']:.2f}){truth}")
        thumbs = "".join(f"<img src='{_png_uri(t['png'])}' title='die XINDEX {t['col']}, YINDEX {-t['row']}: "
                         f"{e(t['class'])} {t['defect_score']:.3f}' alt='{e(t['class'])}'>"
                         for t in read_thumbnails(db_path, w["id"]))
        parts.append(f"<figure class='wafer'><figcaption>{caption}</figcaption><img class='map' "
                     f"src='{_data_uri(picture)}' alt='{e(w['wafer_id'])} map'><div>{e(w['root_cause'] or '')}</div>"
                     f"<div class='thumbs'>{thumbs}</div></figure>")
    parts.append(f"<p>Made {datetime.now(UTC).isoformat(timespec='seconds')} from {e(str(db_path))}.</p>"
                 "</body></html>")
    path = Path(path)
    path.write_text("".join(parts), encoding="utf-8")
    return path


def write_lot_outputs(db_path: str | Path, out: str | Path, *, title: str, recipe_name: str, station: str,
                      klarf_version: KlarfVersion = "1.8") -> tuple[dict[str, Path], dict[str, Any]]:
    """report.html, wafers.csv, lot.json, klarf/*.klarf, maps/*.sinf, maps/*.e142.xml and maps/*.png; returns
    their paths and the lot's figures (:func:`lot_figures`)."""
    out = Path(out)
    (out / "klarf").mkdir(parents=True, exist_ok=True)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    wafers = read_wafers(db_path)
    figures = lot_figures(db_path, wafers=wafers)
    moment = datetime.now(UTC)
    with (out / "wafers.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(spreadsheet_safe(w[c] for c in CSV_COLUMNS) for w in wafers)
    records = []
    stems = unique_on_any_file_system([(file_stem(w["lot_id"], w["wafer_id"]), (w["lot_id"], w["wafer_id"]))
                                       for w in wafers])
    for w, stem in zip(wafers, stems, strict=True):
        record = {c: w[c] for c in CSV_COLUMNS}
        record |= {"geometry": w["geometry"], "timings_ms": w["timings_ms"], "file_stem": stem}
        if w["status"] == "graded":
            dies = read_dies(db_path, w["id"])
            write_klarf(out / "klarf" / f"{stem}.klarf", klarf_for_wafer(w, dies), station=station,
                        recipe=recipe_name, moment=moment, version=klarf_version)
            pitch_mm = tuple(v / 1000 for v in w["geometry"]["die_pitch_um"])
            die_size_mm = (pitch_mm[0], pitch_mm[1])
            write_sinf(out / "maps" / f"{stem}.sinf", w["die_map"], wafer_id=w["wafer_id"], lot=w["lot_id"],
                       device=recipe_name, die_size_mm=die_size_mm)
            write_e142(out / "maps" / f"{stem}.e142.xml", w["die_map"], substrate_id=w["wafer_id"],
                       lot_id=w["lot_id"], slot=w["slot"], die_size_mm=die_size_mm,
                       wafer_diameter_mm=w["geometry"].get("diameter_mm"))
            save_png(out / "maps" / f"{stem}.png", draw_wafer_map(w["die_map"], title=f"{w['wafer_id']}: "
                                                                   f"{w['verdict']}", subtitle=f"{w['pattern']}"))
            record["die_map"] = w["die_map"].tolist()
            record["map_origin_row_col"] = [w["map_origin_row"], w["map_origin_col"]]
        records.append(record)
    (out / "lot.json").write_text(json.dumps({"figures": figures, "wafers": records}, indent=1), encoding="utf-8")
    html_path = _write_html(db_path, out / "report.html", title=title, wafers=wafers, figures=figures)
    return ({"html": html_path, "csv": out / "wafers.csv", "json": out / "lot.json", "klarf": out / "klarf",
             "maps": out / "maps"}, figures)
