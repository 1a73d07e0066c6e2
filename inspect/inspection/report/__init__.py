"""Reporting: the only stage that writes results (SQLite store, pictures, exports)."""

from inspection.report.pictures import (
    crop_strip_png,
    decode_stored_png,
    draw_anomaly_map,
    draw_boxes,
    draw_confusion,
    draw_detections,
    draw_wafer_map,
    save_png,
    tile_pictures,
)
from inspection.report.store import ResultStore, StoreError, read_events, read_results, read_runs

__all__ = [
    "ResultStore",
    "StoreError",
    "crop_strip_png",
    "decode_stored_png",
    "draw_anomaly_map",
    "draw_boxes",
    "draw_confusion",
    "draw_detections",
    "draw_wafer_map",
    "read_events",
    "read_results",
    "read_runs",
    "save_png",
    "tile_pictures",
]
