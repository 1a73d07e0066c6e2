"""Accuracy of the classical toolkit on frames drawn by a renderer of its own (not the project's generator):
supersampled edges, illumination gradients, blur and sensor noise, with each figure's distribution.

    python benchmarks/bench_metrology.py [--wafers 100] [--blobs 300] [--only blob_area ...] [--seed 0]

- Wafer edge and notch: 2048 x 2048 frames, a 300 mm wafer (radius 930 px) with a SEMI notch (90 deg V, 1 mm
  deep: 0.67% of the radius), a 15% gradient, blur sigma 1 px, noise sigma 3; a fifth of the wafers 10 px from
  the frame border. Found share, centre, radius and notch-angle errors.
- Die grid: 1024 x 1024 crops, pitches 16.5-60 px (x.5 pitches included), 3 px streets, dies with a pad and a
  block, a 15% gradient, blur 0.8, noise 3. Pitch and origin errors.
- Template matching: three fiducials (a ring with a cross and a block, a thin cross, an L-shaped corner) turned
  up to +-7.3 deg and moved by sub-pixel amounts, noise sigma 3 in both, templates of 64, 96 and 128 px.
  Position and angle errors, and the Cramer-Rao bound of the angle at this noise.
- Blob area: ellipses of 21 to 2,000 px, blur sigma 0.8 and 1.2, noise sigma 8 (contrast 170), measured with the
  blur that calibration measures on a checkerboard at that blur. Area error by size, and the Cramer-Rao bound:
  the least spread any unbiased estimator can have at this noise.

The record, with the machine and date, goes to ``benchmarks/results/metrology-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from inspection.align.match import find_template
from inspection.align.wafer import find_wafer
from inspection.calibrate import edge_blur_sigma_px
from inspection.classify.timing import machine
from inspection.measure.grid import find_die_grid
from inspection.measure.metrology import blobs
from inspection.report.records import save_record
from inspection.types import InspectionError

RESULTS = Path(__file__).parent / "results"


def _figures(errors: list[float]) -> dict[str, float | int]:
    values = np.abs(np.array(errors, float))
    return {"n": len(values), "mean": round(float(values.mean()), 4), "p95": round(float(np.percentile(values, 95)), 4),
            "p99": round(float(np.percentile(values, 99)), 4), "max": round(float(values.max()), 4)}


def _angle_error(a_deg: float, b_deg: float) -> float:
    return abs((a_deg - b_deg + 180) % 360 - 180)


def wafer_frame(rng: np.random.Generator, *, at_border: bool, size: int = 2048,
                radius: float = 930.0) -> tuple[np.ndarray, tuple[float, float], float]:
    cx, cy = (radius + 10 + rng.uniform(0, 1), size / 2 + rng.uniform(-20, 20)) if at_border else \
        (size / 2 + rng.uniform(-30, 30), size / 2 + rng.uniform(-30, 30))
    notch = rng.uniform(0, 2 * np.pi)
    image = np.empty((size, size), np.float32)
    factor = 4
    for top in range(0, size, 256):  # supersampled in bands to bound the memory
        yy, xx = np.mgrid[top * factor : (top + 256) * factor, 0 : size * factor].astype(np.float32)
        x, y = (xx + 0.5) / factor - 0.5 - cx, (yy + 0.5) / factor - 0.5 - cy
        along = x * np.cos(notch) - y * np.sin(notch)
        across = np.abs(x * np.sin(notch) + y * np.cos(notch))
        apex = radius * (1 - 0.0067)
        inside = (np.hypot(x, y) <= radius) & ~((along >= apex) & (across <= along - apex))
        image[top : top + 256] = inside.reshape(256, factor, size, factor).mean(axis=(1, 3))
    tilt = rng.uniform(0, 2 * np.pi)
    ramp = 1 + 0.15 * (np.linspace(-0.5, 0.5, size)[None, :] * np.cos(tilt)
                       + np.linspace(-0.5, 0.5, size)[:, None] * np.sin(tilt))
    frame = cv2.GaussianBlur((25 + 145 * image) * ramp, (0, 0), 1.0) + rng.normal(0, 3, (size, size))
    return np.clip(frame, 0, 255).astype(np.uint8), (cx, cy), float(np.degrees(notch) % 360)


def bench_wafers(count: int, rng: np.random.Generator) -> dict[str, Any]:
    centre, radius, angle, missed = [], [], [], []
    for index in tqdm(range(count), desc="wafers"):
        frame, (cx, cy), notch_deg = wafer_frame(rng, at_border=index % 5 == 0)
        try:
            fit = find_wafer(frame)
        except InspectionError as exc:
            missed.append(f"wafer {index}: {exc}")
            continue
        centre.append(float(np.hypot(fit.centre_xy_px[0] - cx, fit.centre_xy_px[1] - cy)))
        radius.append(fit.radius_px - 930.0)
        angle.append(_angle_error(fit.notch_angle_deg, notch_deg))
    return {"wafers": count, "found": count - len(missed), "missed": missed[:5], "centre_error_px": _figures(centre),
            "radius_error_px": _figures(radius), "notch_angle_error_deg": _figures(angle),
            "radius_bias_px": round(float(np.mean(radius)), 4)}


def grid_frame(pitch: float, rng: np.random.Generator, *, size: int = 1024) -> tuple[np.ndarray, float]:
    start = rng.uniform(0, pitch)
    factor = 4
    coordinate = (np.arange(size * factor) + 0.5) / factor - 0.5
    street = (np.mod(coordinate - start, pitch) < 3.0).astype(np.float64).reshape(size, factor).mean(axis=1)
    share = np.mod(np.arange(size) - start, pitch) / pitch
    image = np.full((size, size), 180.0)
    image[np.ix_((share > 0.2) & (share < 0.35), (share > 0.45) & (share < 0.6))] = 90
    image[np.ix_((share > 0.6) & (share < 0.85), (share > 0.2) & (share < 0.4))] = 120
    streets = np.maximum(street[None, :], street[:, None])
    image = image * (1 - streets) + 60 * streets
    image *= 1 + 0.15 * np.linspace(-0.5, 0.5, size)[None, :] + 0.075 * np.linspace(-0.5, 0.5, size)[:, None]
    image = cv2.GaussianBlur(image, (0, 0), 0.8) + rng.normal(0, 3, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8), start + 1.5


def bench_grids(rng: np.random.Generator) -> dict[str, Any]:
    pitch_errors, origin_errors, failures = [], [], []
    pitches = [16.51, 17.5, 19.51, 20.51, 23.3, 27.5, 31.7, 33.0, 40.5, 47.2, 55.5, 60.0]
    for pitch in tqdm(pitches, desc="grids"):
        for _ in range(3):
            frame, street_centre = grid_frame(pitch, rng)
            try:
                grid = find_die_grid(frame, centre_xy_px=(512, 512), radius_px=700, straight=True)
            except InspectionError as exc:
                failures.append(f"pitch {pitch}: {exc}")
                continue
            for axis in (0, 1):
                pitch_errors.append(grid.pitch_xy_px[axis] - pitch)
                origin_errors.append((grid.origin_xy_px[axis] - street_centre + pitch / 2) % pitch - pitch / 2)
    return {"pitches_px": pitches, "failures": failures, "pitch_error_px": _figures(pitch_errors),
            "origin_error_px": _figures(origin_errors)}


FIDUCIALS = ("ring_cross", "cross", "corner")


def _fiducial(kind: str, big: int, size: int) -> np.ndarray:
    """A fiducial on an 8x grid: a ring with a cross and a block, a thin cross, or an L-shaped corner mark."""
    canvas = np.full((size * big, size * big), 40, np.uint8)
    c = size * big // 2
    if kind == "ring_cross":
        cv2.circle(canvas, (c, c), 22 * big, 200, 5 * big)
        cv2.line(canvas, (c - 28 * big, c), (c + 28 * big, c), 220, 4 * big)
        cv2.line(canvas, (c, c - 28 * big), (c, c + 12 * big), 220, 4 * big)
        cv2.rectangle(canvas, (c + 8 * big, c + 10 * big), (c + 20 * big, c + 18 * big), 160, -1)
    elif kind == "cross":
        cv2.line(canvas, (c - 25 * big, c), (c + 25 * big, c), 220, 3 * big)
        cv2.line(canvas, (c, c - 25 * big), (c, c + 25 * big), 220, 3 * big)
    else:
        cv2.rectangle(canvas, (c - 20 * big, c - 20 * big), (c - 12 * big, c + 20 * big), 200, -1)
        cv2.rectangle(canvas, (c - 20 * big, c + 12 * big), (c + 20 * big, c + 20 * big), 200, -1)
    return canvas


def _moved(canvas: np.ndarray, angle_deg: float, shift_px: np.ndarray, big: int) -> tuple[np.ndarray, np.ndarray]:
    """The canvas turned about its centre and moved, averaged down to pixels; with the motion on the 8x grid."""
    c = canvas.shape[0] // 2
    motion = cv2.getRotationMatrix2D((c, c), angle_deg, 1.0)
    motion[:, 2] += shift_px * big
    moved = cv2.warpAffine(canvas, motion, canvas.shape[::-1], flags=cv2.INTER_LINEAR, borderValue=40)
    size = canvas.shape[0] // big
    return cv2.resize(moved, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64), motion


def template_scene(rng: np.random.Generator, template_px: int, fiducial: str
                   ) -> tuple[np.ndarray, np.ndarray, float, float, float, float]:
    """Image, template, the template centre's true x and y, the true turn, and the Cramer-Rao bound on the turn's
    standard deviation (deg) from this scene at this noise (template and image both noisy)."""
    big, size, noise = 8, 256, 3.0
    canvas = _fiducial(fiducial, big, size)
    angle = rng.uniform(-7.3, 7.3)
    shift = rng.uniform(-20, 20, 2)
    image, motion = _moved(canvas, angle, shift, big)
    whole = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)
    half, middle = template_px // 2, size // 2
    window = (slice(middle - half, middle + half), slice(middle - half, middle + half))
    template = whole[window].copy()
    # Fisher information of (turn, x, y) over the template's window, noise in both template and image
    turned = (_moved(canvas, 0.05, np.zeros(2), big)[0] - _moved(canvas, -0.05, np.zeros(2), big)[0]) / 0.1
    gradient_y, gradient_x = np.gradient(whole)
    jacobian = np.stack([turned[window].ravel(), gradient_x[window].ravel(), gradient_y[window].ravel()], axis=1)
    bound_deg = float(np.sqrt(np.linalg.inv(jacobian.T @ jacobian / (2 * noise**2))[0, 0]))
    image += rng.normal(0, noise, image.shape)
    template += rng.normal(0, noise, template.shape)
    centre_big = np.array([middle * big - 0.5, middle * big - 0.5, 1.0])  # the template's centre, 8x grid
    x_big, y_big = motion @ centre_big
    true_x, true_y = (x_big + 0.5) / big - 0.5, (y_big + 0.5) / big - 0.5
    return (np.clip(image, 0, 255).astype(np.uint8), np.clip(template, 0, 255).astype(np.uint8), true_x, true_y,
            angle, bound_deg)


def bench_matching(rng: np.random.Generator) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for fiducial in FIDUCIALS:
        for template_px in (64, 96, 128):
            positions, angles, bounds = [], [], []
            for _ in tqdm(range(60), desc=f"matching {fiducial} {template_px} px"):
                image, template, x, y, angle, bound = template_scene(rng, template_px, fiducial)
                match = find_template(image, template, angle_range_deg=(-10, 10))
                positions.append(float(np.hypot(match.column - x, match.row - y)))
                angles.append(abs(match.angle_deg - angle))
                bounds.append(bound)
            results[f"{fiducial} {template_px}px"] = {
                "position_error_px": _figures(positions), "angle_error_deg": _figures(angles),
                "angle_cramer_rao_p99_deg": round(2.576 * float(np.median(bounds)), 4)}
    return results


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float],
             angle_deg: float) -> np.ndarray:
    factor = 8
    yy, xx = np.mgrid[0 : shape[0] * factor, 0 : shape[1] * factor]
    x, y = (xx + 0.5) / factor - 0.5 - centre[0], (yy + 0.5) / factor - 0.5 - centre[1]
    angle = np.radians(angle_deg)
    u, v = x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)
    inside = (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0
    return inside.reshape(shape[0], factor, shape[1], factor).mean(axis=(1, 3))


def _area_bound(radius: float, *, blur_px: float = 0.8, noise: float = 8.0, contrast: float = 170.0) -> float:
    """The Cramer-Rao bound on the relative standard deviation of a disc's area from one frame: the least any
    unbiased estimator can reach even knowing the shape up to its size (Fisher information of the area over the
    blurred image's pixels, at this noise)."""
    area, step = np.pi * radius**2, 0.01

    def frame(scale: float) -> np.ndarray:
        return cv2.GaussianBlur(contrast * _ellipse((90, 90), (45.2, 44.7), (radius * scale, radius * scale), 0.0),
                                (0, 0), blur_px)

    slope = (frame(np.sqrt(1 + step)) - frame(np.sqrt(1 - step))) / (2 * step * area)  # grey level per px2
    return float(noise / np.sqrt((slope**2).sum()) / area)


def _board_blur(rng: np.random.Generator, blur_px: float) -> float:
    """The station blur as calibration measures it: a 9x6 board, 40 px squares, turned 3-6 deg, 8x supersampled,
    blurred by ``blur_px`` and noisy; the median sigma over its square sides."""
    big, size = 8, 480
    yy, xx = np.mgrid[0 : size * big, 0 : size * big]
    angle = np.radians(rng.uniform(3, 6))
    x, y = (xx + 0.5) / big - size / 2 - rng.uniform(0, 1), (yy + 0.5) / big - size / 2 - rng.uniform(0, 1)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    cells = np.floor((u + 200) / 40) + np.floor((v + 140) / 40)
    inside = (np.abs(u) < 200) & (np.abs(v) < 140)
    board = np.where(inside & (cells % 2 == 0), 30.0, 200.0).reshape(size, big, size, big).mean(axis=(1, 3))
    image = cv2.GaussianBlur(board, (0, 0), blur_px) + rng.normal(0, 3, board.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    found, corners = cv2.findChessboardCornersSB(image, (9, 6), flags=cv2.CALIB_CB_ACCURACY)
    if not found:
        raise InspectionError(f"the bench's board at blur {blur_px} px was not found")
    return float(np.median(edge_blur_sigma_px(image, corners.reshape(-1, 2), inner_corners=(9, 6))))


def bench_blobs(count: int, rng: np.random.Generator) -> dict[str, Any]:
    """Blob areas at two blurs, each measured with the blur that calibration measures on a board at that blur."""
    by_blur: dict[str, Any] = {}
    for blur_px in (0.8, 1.2):
        measured_blur = _board_blur(rng, blur_px)
        bands: dict[str, Any] = {"measured_blur_sigma_px": round(measured_blur, 4)}
        for radius in tqdm((2.6, 4.0, 5.5, 9.3, 15.0, 25.0), desc=f"blobs at blur {blur_px}"):
            errors = []
            for _ in range(count):
                axes = (radius * rng.uniform(0.8, 1.2), radius)
                coverage = _ellipse((90, 90), (45 + rng.uniform(-0.5, 0.5), 45 + rng.uniform(-0.5, 0.5)), axes,
                                    rng.uniform(0, 180))
                image = cv2.GaussianBlur(30 + 170 * coverage, (0, 0), blur_px) + rng.normal(0, 8, (90, 90))
                found = blobs(image, threshold=115, background=30, foreground=200, pixel_size_um=1.0,
                              blur_sigma_px=measured_blur, min_area_px=3)
                true_area = np.pi * axes[0] * axes[1]
                errors.append((max(b.area_subpx or 0.0 for b in found) - true_area) / true_area)
            bound = _area_bound(radius, blur_px=blur_px)
            bands[f"{np.pi * radius**2:.0f}px"] = {
                "relative_error": _figures(errors), "mean_signed": round(float(np.mean(errors)), 4),
                "std": round(float(np.std(errors)), 4), "cramer_rao_std": round(bound, 4),
                "cramer_rao_p99": round(2.576 * bound, 4),  # |error| under which 99% of an ideal estimator's fall
            }
        by_blur[f"blur {blur_px}px"] = bands
    return by_blur


PARTS = ("wafer_notch", "die_grid", "template_matching", "blob_area")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wafers", type=int, default=100)
    parser.add_argument("--blobs", type=int, default=300, help="blobs per size")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=PARTS, help="run only these parts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    record: dict[str, Any] = {"benchmark": "metrology", "date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "seed": args.seed}
    if "wafer_notch" in args.only:
        record["wafer_notch"] = bench_wafers(args.wafers, rng)
    if "die_grid" in args.only:
        record["die_grid"] = bench_grids(rng)
    if "template_matching" in args.only:
        record["template_matching"] = bench_matching(rng)
    if "blob_area" in args.only:
        record["blob_area"] = bench_blobs(args.blobs, rng)
    record["elapsed_s"] = round(time.perf_counter() - started, 1)
    path = save_record(record, args.out, name="metrology")
    print(json.dumps(record, indent=1))
    print(f"record: {path}")


if __name__ == "__main__":
    main()
