"""Wafer edge alignment: subpixel edge points, a RANSAC circle fit, the notch (or flat) and the canonical turn.

Rays from a rough centre cross the wafer edge; on each, the edge lies where the grey level passes midway
between the background outside and the wafer just inside (linear interpolation: subpixel). A RANSAC circle
fit (scikit-image's geometric CircleModel) ignores the notch and edge chips; the rays whose edge falls short
of the circle mark the notch, whose direction is their depth-weighted mean angle.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.measure import CircleModel, ransac

from inspection.align import AlignmentError, grey_spread

RAYS = 1440
"""Edge samples around the wafer: one per 0.25 degree."""

MIN_NOTCH_RAYS = 3


@dataclass(frozen=True)
class WaferFit:
    """Where the wafer lies in the frame. Angles: degrees counter-clockwise from +x with y up (270 = 6 o'clock)."""

    centre_xy_px: tuple[float, float]
    radius_px: float
    notch_angle_deg: float
    notch_kind: str
    """"notch" (a small bite) or "flat" (a long straight cut), from the width of the short edge run."""
    edge_rms_px: float
    """RMS distance of the inlier edge points from the circle."""
    edge_points: int
    pixel_size_um: float | None = None

    @property
    def radius_mm(self) -> float | None:
        return None if self.pixel_size_um is None else self.radius_px * self.pixel_size_um / 1000

    def to_canonical(self, *, size_px: tuple[int, int], notch_at_deg: float = 270.0) -> np.ndarray:
        """2x3 matrix that turns the frame about the wafer centre so the notch points to ``notch_at_deg`` and
        moves the centre to the middle of a ``size_px`` (width, height) output (for ``cv2.warpAffine``)."""
        matrix = cv2.getRotationMatrix2D(self.centre_xy_px, notch_at_deg - self.notch_angle_deg, 1.0)
        matrix[:, 2] += (size_px[0] / 2 - self.centre_xy_px[0], size_px[1] / 2 - self.centre_xy_px[1])
        return matrix


def _edge_radii(image: np.ndarray, centre: tuple[float, float], radius: float,
                angles: np.ndarray) -> np.ndarray:
    """Subpixel edge radius along each ray (NaN where no clean background-to-wafer step is found).

    Two levels: a low one (a quarter of the way from the background to the wafer's darkest common grey, its
    streets) finds the outermost wafer sample even where a dark street or a dark stain meets the edge; then the
    crossing is placed at half the local step (background to the grey just inside the edge on that ray), which
    is unbiased whatever lies there.
    """
    step_px = 0.25
    radii = np.arange(0.88 * radius, 1.06 * radius, step_px, dtype=np.float32)
    map_x = (centre[0] + np.cos(angles)[:, None] * radii[None, :]).astype(np.float32)
    map_y = (centre[1] - np.sin(angles)[:, None] * radii[None, :]).astype(np.float32)
    profiles = cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rays that leave the frame sample only NaN: skipped below
        background = np.nanmedian(profiles[:, radii > 1.025 * radius], axis=1)
        inner_low = np.nanpercentile(profiles[:, radii < 0.95 * radius], 10, axis=1)
    # Scanning from outside in, the edge lies after the last sample at or above the level (NaN compares False).
    rays = np.arange(len(angles))
    above = profiles >= (background + 0.25 * (inner_low - background))[:, None]
    last = profiles.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)
    inside = np.clip(last[:, None] - np.arange(4, 13)[None, :], 0, profiles.shape[1] - 1)  # 1-3 px inside
    local = np.nanmedian(profiles[rays[:, None], inside], axis=1)
    level = (background + local) / 2
    window = np.clip(last[:, None] + np.arange(-12, 5)[None, :], 0, profiles.shape[1] - 1)
    near = profiles[rays[:, None], window] >= level[:, None]
    offset = near.shape[1] - 1 - np.argmax(near[:, ::-1], axis=1)
    crossing = window[rays, offset]
    usable = (np.isfinite(level) & (inner_low - background >= 10) & (local - background >= 10) & above.any(axis=1)
              & near.any(axis=1) & (crossing + 1 < profiles.shape[1]))
    rays = np.nonzero(usable)[0]
    before, after = profiles[rays, crossing[rays]], profiles[rays, crossing[rays] + 1]
    found = np.full(len(angles), np.nan)
    found[rays] = radii[crossing[rays]] + step_px * (before - level[rays]) / (before - after)
    return found


def find_wafer(image: np.ndarray, *, pixel_size_um: float | None = None) -> WaferFit:
    """Centre, radius and notch of the (brighter) wafer on a darker background in a grey frame.

    Subpixel edge points on 1,440 rays from the bright region's centre, a RANSAC circle fit (twice, the
    second time from the fitted circle), then the notch (or flat) as the deepest run of rays whose edge falls
    short of the circle.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        Grey frame with the whole wafer in view.
    pixel_size_um : float, optional
        When given, the fit carries the radius in millimetres too.

    Returns
    -------
    WaferFit
        Centre and radius in pixels, edge RMS, notch angle and kind.

    Raises
    ------
    AlignmentError
        For blank or saturated frames and frames with no wafer in view.
    """
    if image.ndim != 2 or image.size == 0:
        raise AlignmentError(f"expected a grey image, got an array of shape {image.shape}")
    pixels = image if image.dtype == np.uint8 else cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
    if (spread := grey_spread(pixels)) < 2.0:
        raise AlignmentError(f"blank frame (grey-level spread {spread:.2f}): no wafer in view")
    if float((pixels >= 254).mean()) > 0.5:
        raise AlignmentError(f"saturated frame ({float((pixels >= 254).mean()):.0%} of pixels at full scale): "
                             "lower the exposure")
    scale = min(1.0, 512 / max(pixels.shape))
    small = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    _, mask = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))  # streets are darker than dies
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        raise AlignmentError("no wafer in view: nothing brighter than the background")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area_fraction = stats[largest, cv2.CC_STAT_AREA] / mask.size
    if area_fraction < 0.05:
        raise AlignmentError(f"no wafer in view: the largest bright region covers {area_fraction:.1%} of the frame")
    centre = (float(centroids[largest, 0] / scale), float(centroids[largest, 1] / scale))
    radius = float(np.sqrt(stats[largest, cv2.CC_STAT_AREA] / np.pi) / scale)
    angles = np.linspace(0, 2 * np.pi, RAYS, endpoint=False)
    for _ in range(2):  # the second pass starts from the fitted circle, so the rays cross the edge squarely
        radii = _edge_radii(pixels, centre, radius, angles)
        good = np.isfinite(radii)
        if good.sum() < RAYS // 4:
            raise AlignmentError(f"no wafer edge: only {int(good.sum())} of {RAYS} rays cross a clean edge")
        points = np.column_stack([centre[0] + np.cos(angles[good]) * radii[good],
                                  centre[1] - np.sin(angles[good]) * radii[good]])
        model, inliers = ransac(points, CircleModel, min_samples=3, residual_threshold=1.0, max_trials=200,
                                rng=0)
        if model is None or inliers is None or inliers.sum() < RAYS // 4:
            raise AlignmentError("no circular wafer edge found (RANSAC found no consistent circle)")
        refit = CircleModel.from_estimate(points[inliers])
        if not refit:
            raise AlignmentError(f"no circular wafer edge found ({refit})")
        cx, cy, fitted_radius = float(refit.center[0]), float(refit.center[1]), float(refit.radius)
        centre, radius = (cx, cy), fitted_radius
    residuals = np.linalg.norm(points - [cx, cy], axis=1) - fitted_radius
    rms = float(np.sqrt(np.mean(residuals[inliers] ** 2)))
    angle_deg, kind = _notch(angles[good], residuals, rms)
    return WaferFit((cx, cy), fitted_radius, angle_deg, kind, rms, int(inliers.sum()), pixel_size_um)


def _notch(angles: np.ndarray, residuals: np.ndarray, rms_px: float) -> tuple[float, str]:
    """Direction (degrees) of the deepest run of rays whose edge falls short of the circle, and its kind.

    Deepest, not longest: a dark street lying along the edge pulls a long arc in by a pixel or two, while a
    notch or a flat cuts many pixels deep.
    """
    # A 3-ray circular median drops single rays whose edge search failed (one deep ray is no notch).
    residuals = np.median(np.stack([np.roll(residuals, 1), residuals, np.roll(residuals, -1)]), axis=0)
    short = residuals < -max(1.5, 4 * rms_px)
    if not short.any():
        raise AlignmentError("no notch or flat found on the wafer edge")
    # Circular runs of short rays: unroll the circle once so a run across 0 degrees stays whole.
    doubled = np.concatenate([short, short])
    depth_all = -np.concatenate([residuals, residuals])
    best_start, best_length, best_key, start = 0, 0, (-np.inf, 0), None
    for index, flag in enumerate(doubled):
        if flag and start is None:
            start = index
        if (not flag or index == len(doubled) - 1) and start is not None:
            end = index if not flag else index + 1
            # Ties go to the longer run: the whole run across 0 degrees beats its part after 0.
            key = (float(depth_all[start:end].max()), end - start)
            if start < len(short) and end - start >= MIN_NOTCH_RAYS and key > best_key:
                best_start, best_length, best_key = start, min(end - start, len(short)), key
            start = None
    if best_length == 0:
        raise AlignmentError(f"no notch or flat found on the wafer edge (no {MIN_NOTCH_RAYS} neighbouring rays "
                             "fall short of the circle)")
    members = np.arange(best_start, best_start + best_length) % len(short)
    # Only the cut itself (deeper than half the deepest ray) places it: a shallow street run beside the notch
    # would pull a depth-weighted centre sideways.
    members = members[-residuals[members] >= best_key[0] / 2]
    depth = -residuals[members]
    unrolled = np.unwrap(angles[members])
    angle = float(np.degrees(np.sum(unrolled * depth) / np.sum(depth))) % 360.0
    span_deg = float(np.degrees(unrolled[-1] - unrolled[0]))
    return angle, "flat" if span_deg > 8.0 else "notch"
