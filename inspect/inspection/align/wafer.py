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

from inspection.align import AlignmentError, grey_spread

RAYS = 1440
"""Edge samples around the wafer: one per 0.25 degree."""


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
    crossing is placed at half the local step (background to the grey 3-7 px inside the edge on that ray, past
    the optics' blur, which read 1-3 px inside biased the radius 0.15 px outward), which is unbiased whatever
    lies there.
    """
    step_px = 0.25
    radii = np.arange(0.88 * radius, 1.06 * radius, step_px, dtype=np.float32)
    map_x = (centre[0] + np.cos(angles)[:, None] * radii[None, :]).astype(np.float32)
    map_y = (centre[1] - np.sin(angles)[:, None] * radii[None, :]).astype(np.float32)
    profiles = cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rays that leave the frame sample NaN: handled below
        background = np.nanmedian(profiles[:, radii > 1.025 * radius], axis=1)
        inner_low = np.nanpercentile(profiles[:, radii < 0.95 * radius], 10, axis=1)
        # A wafer close to the frame border leaves no background beyond its edge on some rays: the background
        # is the same all round, so those rays take the others'.
        if np.isfinite(background).any():
            background = np.where(np.isfinite(background), background, np.nanmedian(background))
        # Scanning from outside in, the edge lies after the last sample at or above the level (NaN: False).
        rays = np.arange(len(angles))
        above = profiles >= (background + 0.25 * (inner_low - background))[:, None]
        last = profiles.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)
        inside = np.clip(last[:, None] - np.arange(12, 29)[None, :], 0, profiles.shape[1] - 1)  # 3-7 px inside
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
        # Imported here: scikit-image's measure module brings scipy.optimize, 0.5 s of every command's start.
        from skimage.measure import CircleModel, ransac

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
    profile = np.full(RAYS, np.nan)  # edge radius against angle, relative to the circle (NaN: no edge found)
    profile[good] = residuals
    angle_deg, kind = _notch(pixels, (cx, cy), fitted_radius, angles, profile)
    return WaferFit((cx, cy), fitted_radius, angle_deg, kind, rms, int(inliers.sum()), pixel_size_um)


def _notch(image: np.ndarray, centre: tuple[float, float], radius: float, angles: np.ndarray,
           profile: np.ndarray) -> tuple[float, str]:
    """Direction (degrees) and kind of the wafer's orientation mark, from the edge's radius against angle.

    A SEMI notch on a 300 mm wafer is 1 mm deep: on a 2 k frame, 6 px deep and three rays wide at 0.25 deg a
    ray, which a filter for neighbouring short rays misses. So the dip is found by matched filters (triangles
    from 3 to 65 rays wide, from a notch to a flat) on the profile, judged against the edge's own noise, and a
    notch is then measured on 401 rays 0.015 deg apart around it (on the coarse rays when those find no edge,
    as at the frame border): its direction is the depth-weighted centre of the rays deeper than half the
    deepest. A dip wider than 8 deg is a flat.
    """
    count = len(angles)
    finite = np.isfinite(profile)
    index = np.arange(count)
    filled = np.interp(index, index[finite], profile[finite], period=count)  # rays without an edge: neighbours'
    noise = 1.4826 * float(np.median(np.abs(filled - np.median(filled)))) + 1e-3
    best: tuple[float, int, int] | None = None  # (significance, ray, half width)
    for half in (1, 2, 4, 8, 16, 32):
        kernel = np.concatenate([np.arange(1, half + 2), np.arange(half, 0, -1)]).astype(np.float64)
        kernel /= kernel.sum()
        padded = np.concatenate([filled[-half:], filled, filled[:half]])
        smooth = np.convolve(padded, kernel, mode="valid")  # circular: the profile wraps at 360 deg
        ray = int(np.argmin(smooth))
        significance = -smooth[ray] / (noise * float(np.sqrt(np.sum(kernel**2))))
        if -smooth[ray] >= 1.0 and (best is None or significance > best[0]):
            best = (significance, ray, half)
    if best is None or best[0] < 8.0:
        deepest = -float(filled.min())
        raise AlignmentError(f"no notch or flat found on the wafer edge (deepest dip {deepest:.1f} px against "
                             f"edge noise {noise:.2f} px)")
    _, ray, half = best
    span_rays = 4 * half
    around = (ray + np.arange(-span_rays, span_rays + 1)) % count
    fine_angles, depth = np.unwrap(angles[around]), -filled[around]  # a flat (or a long notch): coarse rays
    if half < 8:  # a notch: measured again on fine rays, unless those find no edge (a notch at the frame border)
        spacing = np.radians(0.015)
        notch_angles = angles[ray] + spacing * np.arange(-200, 201)
        notch_depth = radius - _edge_radii(image, centre, radius, notch_angles)
        finite_fine = np.isfinite(notch_depth)
        if finite_fine.sum() >= 20:
            fine_angles = notch_angles
            depth = np.interp(np.arange(len(notch_depth)), np.nonzero(finite_fine)[0], notch_depth[finite_fine])
    peak = int(np.argmax(depth))
    half_depth = depth[peak] / 2
    low = peak
    while low > 0 and depth[low - 1] >= half_depth:
        low -= 1
    high = peak
    while high < len(depth) - 1 and depth[high + 1] >= half_depth:
        high += 1
    members = np.arange(low, high + 1)
    weight = depth[members]
    angle = float(np.degrees(np.sum(fine_angles[members] * weight) / np.sum(weight))) % 360.0
    span_deg = float(np.degrees(fine_angles[high] - fine_angles[low]))
    return angle, "flat" if span_deg > 8.0 else "notch"


def whole_wafer_radius_px(image: np.ndarray) -> float | None:
    """The radius of a whole wafer in view: a frame of a whole wafer, which a lot recipe grades, rather than of
    a die area, which a golden-template recipe judges.

    A wafer is in view when :func:`find_wafer` fits its edge to within 2 px RMS on at least half of its rays and
    the circle spans at least a third of the frame's shorter side and lies inside the frame.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8 ndarray
        A frame, grey or BGR.

    Returns
    -------
    float or None
        The wafer's radius in pixels; None when no whole wafer is in view.
    """
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    try:
        fit = find_wafer(grey)
    except AlignmentError:
        return None
    height, width = grey.shape
    (x, y), radius = fit.centre_xy_px, fit.radius_px
    inside = radius <= x <= width - radius and radius <= y <= height - radius
    if fit.edge_rms_px <= 2.0 and fit.edge_points >= RAYS // 2 and 2 * radius >= min(height, width) / 3 and inside:
        return radius
    return None
