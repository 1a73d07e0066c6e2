"""Pictures a person looks at: frames with their detections drawn, written atomically."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import cv2
import numpy as np

from inspection.types import Detection, Verdict

_COLOURS_BGR = {Verdict.FAIL: (40, 40, 230), Verdict.REVIEW: (0, 170, 255), Verdict.PASS: (60, 200, 60),
                Verdict.ERROR: (200, 60, 200)}


def draw_detections(image: np.ndarray, detections: tuple[Detection, ...], *, verdict: Verdict, title: str,
                    reason: str = "") -> np.ndarray:
    """An 8-bit BGR copy of the grey ``image`` with each detection boxed and labelled, and a title bar.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        The frame as inspected.
    detections : tuple of Detection
        Boxed in the verdict's colour, each labelled with its class and area in um^2.
    verdict : Verdict
        Written first in the title bar, which takes its colour.
    title : str
        The rest of the title bar (source and frame counter, for instance).
    reason : str, optional
        Why the part got its verdict (the rule, or the stage that failed); a second line of the bar.

    Returns
    -------
    (H + bar, W, 3) uint8 ndarray
        The picture, the bar above the frame so that it covers nothing.
    """
    colour = _COLOURS_BGR[verdict]
    frame = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    # Text in proportion to the frame (a 512 px frame gets letters about 20 px tall), so that labels stay
    # readable in a thumbnail at half size; each on a dark ground, readable on any part.
    scale = max(0.5, frame.shape[1] / 600)
    thickness = max(1, round(scale * 1.5))
    line_px = round(28 * scale)
    for detection in detections:
        x0, y0, x1, y1 = detection.region.box_xyxy_px
        cv2.rectangle(frame, (x0 - 2, y0 - 2), (x1 + 1, y1 + 1), colour, thickness)
        _label(frame, f"{detection.kind} {detection.region.area_um2:.0f} um2", (x0, y0 - 4), colour, scale=scale,
               thickness=thickness)
    bar_px = 2 * line_px if reason else line_px
    picture = np.zeros((frame.shape[0] + bar_px, frame.shape[1], 3), np.uint8)
    picture[bar_px:] = frame
    baseline = round(line_px * 0.75)
    cv2.putText(picture, f"{verdict.upper()}  {title}", (4, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, colour,
                thickness, cv2.LINE_AA)
    if reason:
        cv2.putText(picture, reason, (4, line_px + baseline), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7,
                    (235, 235, 235), thickness, cv2.LINE_AA)
    return picture


def _label(frame: np.ndarray, text: str, bottom_left: tuple[int, int], colour: tuple[int, int, int], *,
           scale: float, thickness: int) -> None:
    """``text`` on a black ground above a box, moved inside the frame where it would leave it (in place)."""
    (width, height), descent = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x = min(max(0, bottom_left[0]), max(0, frame.shape[1] - width - 2))
    y = max(height + 2, bottom_left[1])
    cv2.rectangle(frame, (x, y - height - 2), (x + width + 2, y + descent), (0, 0, 0), -1)
    cv2.putText(frame, text, (x + 1, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _title_bar(picture: np.ndarray, title: str) -> np.ndarray:
    """White ``title`` on a black bar over the picture's first 18 rows (in place); returns the picture."""
    cv2.rectangle(picture, (0, 0), (picture.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(picture, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return picture


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: list[str], *, title: str) -> np.ndarray:
    """An 8-bit BGR copy of the grey ``image`` with each box outlined and labelled, and a title bar.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        The board or part.
    boxes : (N, 4) ndarray
        Boxes, xyxy in pixels (floats are rounded).
    labels : list of str
        N labels, written above their boxes.
    title : str
        Written in the bar at the top (which covers the first 18 rows).

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    picture = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    colour = _COLOURS_BGR[Verdict.FAIL]
    for (x0, y0, x1, y1), label in zip(np.asarray(boxes).reshape(-1, 4).round().astype(int), labels, strict=True):
        cv2.rectangle(picture, (int(x0), int(y0)), (int(x1), int(y1)), colour, 2)
        cv2.putText(picture, label, (int(x0), max(30, int(y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                    cv2.LINE_AA)
    return _title_bar(picture, title)


def draw_anomaly_map(image: np.ndarray, score_map: np.ndarray, *, threshold: float, truth_boxes: np.ndarray,
                     found_boxes: np.ndarray, title: str) -> np.ndarray:
    """The grey ``image`` with an anomaly model's scores as a heat overlay (cells at or above ``threshold``
    opaque, the rest faint), annotated boxes in green and the model's regions in red, and a title bar.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        The board.
    score_map : (h, w) float ndarray
        Scores 0..1, one cell per H/h x W/w pixels.
    threshold : float
        The operating threshold.
    truth_boxes, found_boxes : (N, 4) and (M, 4) ndarrays
        xyxy in pixels: the annotation and the regions reported.
    title : str
        Written in the bar at the top.

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    height, width = image.shape
    scores = cv2.resize(score_map.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    heat = cv2.applyColorMap((scores * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    weight = np.where(scores >= threshold, 0.8, 0.35 * scores)[..., None]
    picture = (cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) * (1 - weight) + heat * weight).astype(np.uint8)
    for boxes, colour in ((truth_boxes, (0, 200, 0)), (found_boxes, _COLOURS_BGR[Verdict.FAIL])):
        for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4).round().astype(int):
            cv2.rectangle(picture, (int(x0), int(y0)), (int(x1), int(y1)), colour, 1)
    return _title_bar(picture, title)


def save_png(path: str | Path, picture: np.ndarray) -> Path:
    """Write ``picture`` to ``path`` via a temporary file, so a reader never sees half a PNG.

    Parameters
    ----------
    path : str or Path
        The PNG to write; missing folders are made.
    picture : (H, W) or (H, W, 3) uint8 ndarray
        Grey or BGR.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", picture)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(encoded.tobytes())
        os.replace(partial, path)
    except OSError as exc:  # named by the file asked for, not the temporary one
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    return path


def draw_confusion(confusion: np.ndarray, *, class_names: list[str] | tuple[str, ...], title: str) -> np.ndarray:
    """A confusion matrix as a picture: rows true, columns predicted, cells shaded by row share, with counts.

    Parameters
    ----------
    confusion : (N, N) integer ndarray
        ``confusion[true, predicted]`` counts.
    class_names : sequence of str
        N names, written in full: rows on the left, columns turned upright above the matrix.
    title : str
        Written above.

    Returns
    -------
    (H, W, 3) uint8 ndarray
        The picture (BGR); the diagonal is shaded blue, errors red, both by the share of their row.
    """
    n = len(class_names)
    font, scale, ink = cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0)
    cell = 52
    names_px = max(cv2.getTextSize(name, font, scale, 1)[0][0] for name in class_names) + 12
    left, top = names_px + 22, 50 + names_px
    picture = np.full((top + n * cell + 12, max(left + n * cell + 12, 24 + cv2.getTextSize(
        title, font, 0.55, 1)[0][0]), 3), 255, np.uint8)
    cv2.putText(picture, title, (8, 22), font, 0.55, ink, 1, cv2.LINE_AA)
    # Column names upright: written on a strip, turned a quarter anti-clockwise.
    strip = np.full((cell * n, names_px, 3), 255, np.uint8)
    for j, name in enumerate(class_names):
        cv2.putText(strip, name, (4, j * cell + cell // 2 + 6), font, scale, ink, 1, cv2.LINE_AA)
    picture[50 : 50 + names_px, left : left + n * cell] = np.rot90(strip)
    cv2.putText(picture, "predicted", (left, 44), font, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    caption = np.full((20, n * cell, 3), 255, np.uint8)
    cv2.putText(caption, "true", (n * cell // 2 - 14, 15), font, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    picture[top : top + n * cell, 0:20] = np.rot90(caption)
    rows = confusion.sum(axis=1, keepdims=True).clip(min=1)
    for i in range(n):
        cv2.putText(picture, class_names[i], (22, top + i * cell + cell // 2 + 6), font, scale, ink, 1, cv2.LINE_AA)
        for j in range(n):
            share = confusion[i, j] / rows[i, 0]
            x, y = left + j * cell, top + i * cell
            shade = int(255 - 200 * share)
            colour = (255, shade, shade) if i == j else (shade, shade, 255)
            cv2.rectangle(picture, (x, y), (x + cell - 2, y + cell - 2), colour, -1)
            count = str(int(confusion[i, j]))
            width = cv2.getTextSize(count, font, scale, 1)[0][0]
            cv2.putText(picture, count, (x + (cell - 2 - width) // 2, y + cell // 2 + 5), font, scale,
                        ink if confusion[i, j] else (170, 170, 170), 1, cv2.LINE_AA)
    return picture


_DIE_COLOURS_BGR = np.array([(38, 38, 38), (96, 178, 96), (40, 40, 220)], np.uint8)  # no die, good, failed


def draw_wafer_map(die_map: np.ndarray, *, title: str, subtitle: str = "", cell_px: int | None = None) -> np.ndarray:
    """A die map as a picture: good dies green, failed dies red, no die dark, with a grid on large cells.

    Parameters
    ----------
    die_map : (rows, cols) uint8 ndarray
        0 no die, 1 good, 2 failed.
    title : str
        First line above the map.
    subtitle : str, optional
        Second line, smaller.
    cell_px : int, optional
        Side of one die in pixels; default: the map fits in about 480 px.

    Returns
    -------
    (h, w, 3) uint8 ndarray
        BGR, at least 360 px wide and as wide as the longer text line.
    """
    rows, cols = die_map.shape
    cell = cell_px or max(2, min(24, 480 // max(rows, cols)))
    picture = np.repeat(np.repeat(_DIE_COLOURS_BGR[die_map], cell, axis=0), cell, axis=1)
    if cell >= 6:  # die boundaries, as on a prober's map
        picture[::cell, :] = (picture[::cell, :] * 0.6).astype(np.uint8)
        picture[:, ::cell] = (picture[:, ::cell] * 0.6).astype(np.uint8)
    header = 44 if subtitle else 26
    # As wide as the longer text line, so a narrow map does not cut its title off.
    text_px = max(cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0],
                  cv2.getTextSize(subtitle, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0])
    width = max(picture.shape[1], 360, text_px + 4)
    canvas = np.full((picture.shape[0] + header + 8, width + 8, 3), 255, np.uint8)
    canvas[header : header + picture.shape[0], 4 : 4 + picture.shape[1]] = picture
    cv2.putText(canvas, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if subtitle:
        cv2.putText(canvas, subtitle, (6, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (70, 70, 70), 1, cv2.LINE_AA)
    return canvas


def tile_pictures(pictures: list[np.ndarray], *, columns: int) -> np.ndarray:
    """Pictures of any sizes on a white sheet, ``columns`` a row, each in a cell as large as the largest.

    Parameters
    ----------
    pictures : list of (h, w, 3) uint8 ndarray
        In reading order.
    columns : int
        Pictures per row.

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    if not pictures:
        raise ValueError("no pictures to tile")
    cell_h = max(p.shape[0] for p in pictures)
    cell_w = max(p.shape[1] for p in pictures)
    rows = -(-len(pictures) // columns)
    sheet = np.full((rows * cell_h, min(columns, len(pictures)) * cell_w, 3), 255, np.uint8)
    for index, picture in enumerate(pictures):
        top, left = (index // columns) * cell_h, (index % columns) * cell_w
        sheet[top : top + picture.shape[0], left : left + picture.shape[1]] = picture
    return sheet


def crop_strip_png(crop: np.ndarray, *, min_height_px: int = 96) -> bytes:
    """A classifier's input as a person compares it: its channels (image, golden or median die, |difference|) as
    grey tiles side by side, enlarged without smoothing to at least ``min_height_px``.

    Parameters
    ----------
    crop : (h, w) or (h, w, C) uint8 ndarray
        As stored (a crop file, or a die kept for review).
    min_height_px : int, optional
        The strip is enlarged by a whole factor until at least this tall.

    Returns
    -------
    bytes
        The strip as a PNG file.
    """
    tiles = [crop] if crop.ndim == 2 else [crop[..., channel] for channel in range(crop.shape[2])]
    gap = np.full((crop.shape[0], 2), 255, np.uint8)
    strip = np.hstack([part for tile in tiles for part in (tile, gap)][:-1])
    scale = max(1, -(-min_height_px // strip.shape[0]))
    strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return cv2.imencode(".png", strip)[1].tobytes()


def decode_stored_png(data: bytes) -> np.ndarray | None:
    """A picture the store keeps as PNG bytes (a die's classifier input), channels as written.

    Parameters
    ----------
    data : bytes
        The stored PNG.

    Returns
    -------
    ndarray or None
        (h, w) or (h, w, C) uint8; None when the bytes are not a PNG.
    """
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
