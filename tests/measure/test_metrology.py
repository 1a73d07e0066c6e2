"""Blob areas and features, subpixel edge distances, and line/circle fits against rendered truth."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.measure.metrology import MeasureError, blobs, edge_to_edge_px, edges_along, fit_circle, fit_line


def _ellipse(shape: tuple[int, int], *, centre: tuple[float, float], axes: tuple[float, float], angle_deg: float,
             background: float, foreground: float, factor: int = 8) -> np.ndarray:
    """An anti-aliased filled ellipse (coverage by 8x8 supersampling)."""
    height, width = shape
    yy, xx = np.mgrid[0 : height * factor, 0 : width * factor]
    x, y = (xx + 0.5) / factor - 0.5 - centre[0], (yy + 0.5) / factor - 0.5 - centre[1]
    angle = np.radians(angle_deg)
    u, v = x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)  # y down: ccw on screen
    inside = (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0
    coverage = inside.reshape(height, factor, width, factor).mean(axis=(1, 3))
    return background + (foreground - background) * coverage


@pytest.mark.parametrize(("radius_px", "seed"), [(2.6, 0), (4.0, 1), (9.3, 2), (25.0, 3)])
def test_blob_area_within_two_percent(radius_px: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    centre = (40 + rng.uniform(-0.5, 0.5), 40 + rng.uniform(-0.5, 0.5))
    image = _ellipse((80, 80), centre=centre, axes=(radius_px, radius_px), angle_deg=0, background=30,
                     foreground=200) + rng.normal(0, 1.0, (80, 80))
    [blob] = blobs(image, threshold=115, background=30, foreground=200, pixel_size_um=5.0, blur_sigma_px=0.3,
                   min_area_px=3)
    true_area = np.pi * radius_px**2
    assert true_area >= 20 and abs(blob.area_subpx - true_area) / true_area <= 0.02
    assert blob.area_um2 == pytest.approx(blob.area_subpx * 25)
    assert blob.centroid_xy_px == pytest.approx(centre, abs=0.05)


@pytest.mark.parametrize(("radius_px", "mean_within", "p95_within"), [(2.6, 0.01, 0.06), (4.0, 0.005, 0.025),
                                                                 (9.3, 0.003, 0.01)])
def test_blob_area_is_unbiased_under_blur_and_noise(radius_px: float, mean_within: float, p95_within: float) -> None:
    import cv2

    errors = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        centre = (40 + rng.uniform(-0.5, 0.5), 40 + rng.uniform(-0.5, 0.5))
        axes = (radius_px * rng.uniform(0.8, 1.2), radius_px)
        image = _ellipse((80, 80), centre=centre, axes=axes, angle_deg=rng.uniform(0, 180), background=30,
                         foreground=200)
        image = cv2.GaussianBlur(image, (0, 0), 0.8) + rng.normal(0, 8, (80, 80))  # optics blur, sensor noise
        found = blobs(image, threshold=115, background=30, foreground=200, pixel_size_um=1.0, blur_sigma_px=0.85,
                      min_area_px=3)
        true_area = np.pi * axes[0] * axes[1]
        errors.append((max(b.area_subpx or 0.0 for b in found) - true_area) / true_area)
    errors = np.array(errors)
    # no bias left (clipping and a 1-px rim read these blobs 2-4% low); what remains is the noise's spread
    assert abs(errors.mean()) <= mean_within and np.percentile(np.abs(errors), 95) <= p95_within


def test_neighbouring_blobs_do_not_share_their_edge_pixels() -> None:
    image = (_ellipse((60, 80), centre=(30, 30), axes=(6, 6), angle_deg=0, background=30, foreground=200)
             + _ellipse((60, 80), centre=(47, 30), axes=(6, 6), angle_deg=0, background=0, foreground=170))
    found = blobs(image, threshold=115, background=30, foreground=200, pixel_size_um=1.0, blur_sigma_px=0.3)
    assert len(found) == 2 and all(b.area_subpx == pytest.approx(np.pi * 36, rel=0.02) for b in found)


def test_blob_orientation_eccentricity_and_grey() -> None:
    image = _ellipse((100, 100), centre=(50, 50), axes=(30, 10), angle_deg=30, background=20, foreground=220)
    [blob] = blobs(image, threshold=120, background=20, foreground=220, pixel_size_um=1.0, blur_sigma_px=0.3)
    assert blob.orientation_deg == pytest.approx(30, abs=1.0)
    assert blob.eccentricity == pytest.approx(np.sqrt(1 - (10 / 30) ** 2), abs=0.02)
    # grey levels relative to the background (20)
    assert blob.max_abs_diff == pytest.approx(200, abs=1) and 130 < blob.mean_diff <= 200
    with pytest.raises(MeasureError, match="no contrast"):
        blobs(image, threshold=120, background=20, foreground=20, pixel_size_um=1.0, blur_sigma_px=0.3)


def test_edge_to_edge_distance_is_subpixel() -> None:
    # A bright bar 17.3 px wide whose edges cut through pixels (coverage rendering along x).
    x = np.arange(200) - 0.5
    left, right = 80.35, 97.65
    coverage = np.clip(np.minimum(x + 1 - left, right - x), 0, 1)
    image = np.tile(40 + 160 * coverage, (40, 1)) + np.random.default_rng(0).normal(0, 1.0, (40, 200))
    width = edge_to_edge_px(image, (60.0, 20.0), (120.0, 20.0))
    assert width == pytest.approx(right - left, abs=0.05)
    polarities = [polarity for _, polarity in edges_along(image, (60.0, 20.0), (120.0, 20.0))]
    assert polarities == [1, -1]
    with pytest.raises(MeasureError, match="two are needed"):
        edge_to_edge_px(image, (10.0, 20.0), (50.0, 20.0))


def test_line_and_circle_fits() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 100, 50)
    points = np.column_stack([10 + 0.8 * t, 5 + 0.6 * t]) + rng.normal(0, 0.05, (50, 2))
    (x0, y0), (vx, vy), rms = fit_line(points)
    assert abs(vx * 0.6 - vy * 0.8) < 1e-3 and rms < 0.1
    assert abs((x0 - 10) * 0.6 - (y0 - 5) * 0.8) < 0.05  # the fitted point lies on the true line
    angles = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    ring = np.column_stack([300.2 + 120.5 * np.cos(angles), 200.7 + 120.5 * np.sin(angles)])
    (cx, cy), radius, rms = fit_circle(ring + rng.normal(0, 0.05, ring.shape))
    assert (cx, cy, radius) == pytest.approx((300.2, 200.7, 120.5), abs=0.03) and rms < 0.1
    with pytest.raises(MeasureError, match="at least 3 points"):
        fit_circle(ring[:2])
