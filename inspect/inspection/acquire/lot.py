"""A lot of wafer images: a manifest CSV (``lot.csv``), or a folder of images.

The manifest's columns are ``image, wafer_id`` and optionally ``lot_id, slot, truth_pattern, truth_dies``
(paths relative to the manifest's folder); errors name the file, line and column.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspection.acquire.folder import IMAGE_SUFFIXES
from inspection.types import WAFERMAP_PATTERNS, InspectionError, LotItem, check_id

MANIFEST_NAME = "lot.csv"
MANIFEST_COLUMNS = ("image", "wafer_id", "lot_id", "slot", "truth_pattern", "truth_dies")
REQUIRED_COLUMNS, OPTIONAL_COLUMNS = MANIFEST_COLUMNS[:2], MANIFEST_COLUMNS[2:]


class LotInputError(InspectionError, ValueError):
    """A lot folder or manifest that cannot be read; the message names the file, line and column."""


def _id(value: str, field: str) -> str:
    try:
        return check_id(value, field=field)
    except InspectionError as exc:
        raise LotInputError(str(exc)) from None


def _manifest_items(source: Path, text: str) -> list[LotItem]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        raise LotInputError(f"{source}:1: columns {header}; missing {missing}, unknown {unknown}; expected "
                            f"{', '.join(REQUIRED_COLUMNS)} and optionally {', '.join(OPTIONAL_COLUMNS)}")
    items, seen = [], set()
    for line, row in enumerate(reader, 2):
        image = (row.get("image") or "").strip()
        if not image:
            raise LotInputError(f"{source}:{line}: image must not be empty")
        wafer_id = _id(row.get("wafer_id") or "", f"{source}:{line}: wafer_id")
        slot_text = (row.get("slot") or str(line - 1)).strip()
        if not re.fullmatch(r"[0-9]{1,9}", slot_text):
            raise LotInputError(f"{source}:{line}: slot {slot_text!r} is not a whole number")
        lot_id = _id(row.get("lot_id") or source.parent.resolve().name, f"{source}:{line}: lot_id")
        if (lot_id, wafer_id) in seen:
            raise LotInputError(f"{source}:{line}: wafer {wafer_id} of lot {lot_id} is listed twice")
        seen.add((lot_id, wafer_id))
        truth_dies = (row.get("truth_dies") or "").strip()
        truth_pattern = (row.get("truth_pattern") or "").strip() or None
        if truth_pattern is not None and truth_pattern not in WAFERMAP_PATTERNS:
            raise LotInputError(f"{source}:{line}: truth_pattern {truth_pattern[:40]!r} is not a wafer-map pattern; "
                                f"expected one of {', '.join(WAFERMAP_PATTERNS)} or nothing")
        items.append(LotItem(str(source.parent / image), wafer_id, lot_id, int(slot_text), truth_pattern,
                             str(source.parent / truth_dies) if truth_dies else None))
    return items


def read_lot(source: str | Path) -> list[LotItem]:
    """The wafers of a lot: a manifest CSV, a folder holding ``lot.csv``, or a folder of images (wafer id = file
    stem, lot id = folder name, slot = position in name order)."""
    source = Path(source)
    if source.is_dir() and (source / MANIFEST_NAME).is_file():
        source = source / MANIFEST_NAME
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise LotInputError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) and no {MANIFEST_NAME}")
        lot_id = _id(source.resolve().name, f"{source}: lot id (the folder's name)")
        return [LotItem(str(p), _id(p.stem, f"{p}: wafer id (the file's stem)"), lot_id, slot)
                for slot, p in enumerate(images, 1)]
    if not source.is_file():
        raise LotInputError(f"{source}: no such folder or manifest file")
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LotInputError(f"{source}: not UTF-8 text (byte {exc.start}); save the manifest as UTF-8") from None
    except OSError as exc:
        raise LotInputError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    try:
        items = _manifest_items(source, text)
    except csv.Error as exc:
        raise LotInputError(f"{source}: not a readable CSV manifest ({exc})") from None
    if not items:
        raise LotInputError(f"{source}: the manifest lists no wafers")
    return items


@dataclass(frozen=True)
class WaferTruth:
    """The truth of a wafer's dies: its pattern and, per die (N,), grid row, column and class."""

    pattern: str
    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray
    """Index into ``class_names`` per die."""
    class_names: tuple[str, ...]

    def class_by_cell(self) -> dict[tuple[int, int], str]:
        """Die class name by (row, column) die index."""
        return {(int(r), int(c)): self.class_names[int(k)]
                for r, c, k in zip(self.rows, self.cols, self.classes, strict=True)}


def read_truth(path: str | Path) -> WaferTruth:
    """A truth file as ``samples.lot`` writes it (``inspect grade`` reads the manifest's ``truth_dies``).

    Raises ValueError naming the file when it is not one, or a class index has no name.
    """
    try:
        with np.load(path) as data:
            names = tuple(str(n) for n in data["class_names"])
            truth = WaferTruth(str(data["pattern"]), data["rows"], data["cols"], data["classes"], names)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a die truth file (pattern, rows, cols, classes, class_names): {exc}") from None
    if len(truth.classes) and not (int(truth.classes.min()) >= 0 and int(truth.classes.max()) < len(names)):
        raise ValueError(f"{path}: class indices {int(truth.classes.min())}..{int(truth.classes.max())}; expected "
                         f"0..{len(names) - 1} ({len(names)} class names)")
    return truth
