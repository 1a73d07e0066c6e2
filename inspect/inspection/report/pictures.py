"""Pictures a person looks at: frames with their detections drawn, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from inspection.types import Detection, Verdict

_COLOURS_BGR = {Verdict.FAIL: (40, 40, 230), Verdict.REVIEW: (0, 170, 255), Verdict.PASS: (60, 200, 60),
                Verdict.ERROR: (200, 60, 200)}


def draw_detections(image: np.ndarray, detections: tuple[Detection, ...], *, verdict: Verdict,
                    title: str) -> np.ndarray:
    """An 8-bit BGR copy of the grey ``image`` with each detection boxed and labelled, and a title bar."""
    colour = _COLOURS_BGR[verdict]
    picture = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for detection in detections:
        x0, y0, x1, y1 = detection.region.box_xyxy_px
        cv2.rectangle(picture, (x0 - 2, y0 - 2), (x1 + 1, y1 + 1), colour, 1)
        label = f"{detection.kind} {detection.region.area_um2:.0f}um2"
        cv2.putText(picture, label, (x0, max(10, y0 - 5)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    cv2.rectangle(picture, (0, 0), (picture.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(picture, f"{verdict.upper()}  {title}", (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1,
                cv2.LINE_AA)
    return picture


def save_png(path: str | Path, picture: np.ndarray) -> Path:
    """Write ``picture`` to ``path`` via a temporary file, so a reader never sees half a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", picture)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(encoded.tobytes())
    os.replace(partial, path)
    return path
