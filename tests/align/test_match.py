"""Pyramid template matching with rotation and subpixel refinement, against scenes of known pose."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.align import AlignmentError
from inspection.align.match import fiducial_homography, find_template
from inspection.sim.frames import render_pcb_panel


def _texture(seed: int, size_px: int = 768) -> np.ndarray:
    noise = np.random.default_rng(seed).random((size_px, size_px)).astype(np.float32)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 3), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_position_and_angle_to_subpixel(seed: int) -> None:
    pattern = _texture(9)
    template = pattern[336:464, 236:364].copy()  # 128 x 128, centre (299.5, 399.5)
    rng = np.random.default_rng(seed)
    angle_deg, shift = rng.uniform(-8, 8), rng.uniform(-60, 60, 2)
    motion = cv2.getRotationMatrix2D((299.5, 399.5), angle_deg, 1.0)
    motion[:, 2] += shift
    scene = cv2.warpAffine(pattern, motion, pattern.shape[::-1], flags=cv2.INTER_LINEAR)
    scene = np.clip(scene + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8)
    column, row = motion @ np.array([299.5, 399.5, 1.0])
    match = find_template(scene, template, angle_range_deg=(-10, 10))
    assert match and match.score > 0.95
    assert abs(match.column - column) <= 0.1 and abs(match.row - row) <= 0.1
    assert abs(match.angle_deg - angle_deg) <= 0.05


def test_no_match_is_falsy_with_its_reason() -> None:
    match = find_template(_texture(1), _texture(2)[:96, :96], min_score=0.8)
    assert not match and "best correlation" in match.reason and match.score < 0.8
    blank = find_template(_texture(1), np.full((64, 64), 90, np.uint8))
    assert not blank and "template is blank" in blank.reason


def test_a_template_larger_than_the_image_is_refused() -> None:
    with pytest.raises(AlignmentError, match=r"template \(200x200 px\) is larger than the image \(100x100 px\)"):
        find_template(_texture(1, 100), _texture(2, 200))


def test_fiducials_give_the_panel_homography() -> None:
    truth = np.array([[0.995, -0.02, 12.3], [0.018, 1.003, -7.6], [1e-6, -2e-6, 1.0]])
    seen, fiducial, nominal = render_pcb_panel(truth)
    homography, matches = fiducial_homography(seen, fiducial, nominal, search_radius_px=30)
    assert all(matches)
    probe = np.array([[450.0, 350.0], [100.0, 600.0]]).reshape(-1, 1, 2)
    error = cv2.perspectiveTransform(probe, homography) - cv2.perspectiveTransform(probe, truth)
    assert np.abs(error).max() < 0.2
    with pytest.raises(AlignmentError, match="only 3 of 4 fiducials found"):
        blotted = seen.copy()
        blotted[:200, :200] = 40
        fiducial_homography(blotted, fiducial, nominal, search_radius_px=30)
