"""Wafer edge, notch and canonical turn against rendered wafers of known geometry (2048 x 2048, with noise)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from inspection.align import AlignmentError
from inspection.align.wafer import find_wafer
from inspection.sim.frames import WaferGeometry, render_wafer_geometry


def _geometry(rng: np.random.Generator, *, notch_angle_deg: float) -> WaferGeometry:
    return WaferGeometry(
        centre_xy_px=(1024 + rng.uniform(-30, 30), 1024 + rng.uniform(-30, 30)), radius_px=rng.uniform(880, 960),
        notch_angle_deg=notch_angle_deg, die_pitch_xy_px=(rng.uniform(40, 90), rng.uniform(40, 90)),
        grid_origin_xy_px=(rng.uniform(0, 40), rng.uniform(0, 40)), street_width_px=rng.uniform(3, 6))


@pytest.mark.parametrize(("seed", "notch_angle_deg"), [(0, 270.0), (1, 3.7), (2, 131.25), (3, 359.9)])
def test_centre_radius_and_notch_meet_the_targets(seed: int, notch_angle_deg: float) -> None:
    geometry = _geometry(np.random.default_rng(seed), notch_angle_deg=notch_angle_deg)
    image, _ = render_wafer_geometry(geometry, size_px=2048, noise_grey=4.0, seed=seed)
    fit = find_wafer(image, pixel_size_um=150.0)
    centre_error_px = np.hypot(fit.centre_xy_px[0] - geometry.centre_xy_px[0],
                               fit.centre_xy_px[1] - geometry.centre_xy_px[1])
    assert centre_error_px <= 0.2
    assert abs(fit.radius_px - geometry.radius_px) / geometry.radius_px <= 0.001
    assert abs((fit.notch_angle_deg - notch_angle_deg + 180) % 360 - 180) <= 0.2
    assert fit.notch_kind == "notch" and fit.edge_rms_px < 0.5
    assert fit.radius_mm == pytest.approx(fit.radius_px * 0.15)


def test_canonical_turn_puts_the_notch_at_six_o_clock() -> None:
    geometry = _geometry(np.random.default_rng(7), notch_angle_deg=40.0)
    image, _ = render_wafer_geometry(geometry, size_px=2048, seed=7)
    fit = find_wafer(image)
    turned = cv2.warpAffine(image, fit.to_canonical(size_px=(2048, 2048)), (2048, 2048))
    again = find_wafer(turned)
    assert abs(again.notch_angle_deg - 270.0) <= 0.2
    assert np.hypot(again.centre_xy_px[0] - 1024, again.centre_xy_px[1] - 1024) <= 0.3


def test_frames_without_a_usable_wafer_fail_with_the_reason() -> None:
    with pytest.raises(AlignmentError, match="blank frame"):
        find_wafer(np.full((512, 512), 30, np.uint8))
    with pytest.raises(AlignmentError, match="saturated frame"):
        find_wafer(np.where(np.random.default_rng(0).random((512, 512)) < 0.9, 255, 0).astype(np.uint8))
    speck = np.full((512, 512), 20, np.uint8)
    cv2.circle(speck, (100, 100), 20, 200, -1)
    with pytest.raises(AlignmentError, match="no wafer in view"):
        find_wafer(speck)
    with pytest.raises(AlignmentError, match="expected a grey image"):
        find_wafer(np.zeros((4, 4, 3), np.uint8))


def _semi_wafer(seed: int, *, size: int = 1024, centre: tuple[float, float] | None = None) -> tuple[np.ndarray,
                                                                                                    tuple[float, float],
                                                                                                    float]:
    """A renderer of its own (not the project's): a wafer with a SEMI notch (90 deg V, 0.67% of the radius
    deep: 1 mm on 300 mm), supersampled edges, a 15% illumination gradient, blur sigma 1 px, noise sigma 3."""
    rng = np.random.default_rng(seed)
    radius = 465.0
    cx, cy = centre or (size / 2 + rng.uniform(-10, 10), size / 2 + rng.uniform(-10, 10))
    notch = rng.uniform(0, 2 * np.pi)
    factor = 4
    yy, xx = np.mgrid[0 : size * factor, 0 : size * factor].astype(np.float32)
    x, y = (xx + 0.5) / factor - 0.5 - cx, (yy + 0.5) / factor - 0.5 - cy
    along = x * np.cos(notch) - y * np.sin(notch)
    across = np.abs(x * np.sin(notch) + y * np.cos(notch))
    apex = radius * (1 - 0.0067)
    inside = (np.hypot(x, y) <= radius) & ~((along >= apex) & (across <= along - apex))
    cover = inside.reshape(size, factor, size, factor).mean(axis=(1, 3))
    ramp = 1 + 0.15 * np.linspace(-0.5, 0.5, size)[None, :] * np.cos(seed)
    image = cv2.GaussianBlur((25 + 145 * cover) * ramp, (0, 0), 1.0) + rng.normal(0, 3, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8), (cx, cy), float(np.degrees(notch) % 360)


@pytest.mark.parametrize("seed", range(8))
def test_a_semi_notch_is_found_on_a_blurred_graded_noisy_frame_even_at_the_border(seed: int) -> None:
    centre = (475.0, 512.0) if seed % 2 else None  # every other wafer 10 px from the frame's left border
    image, (cx, cy), notch_deg = _semi_wafer(seed, centre=centre)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing printed on the way
        fit = find_wafer(image)
    assert np.hypot(fit.centre_xy_px[0] - cx, fit.centre_xy_px[1] - cy) <= 0.2
    assert abs((fit.notch_angle_deg - notch_deg + 180) % 360 - 180) <= 0.2 and fit.notch_kind == "notch"
    assert abs(fit.radius_px - 465.0) <= 0.03  # no bias from the blur
