"""Rigid registration (rotation + translation) of a board to its golden template, against known motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.align import AlignmentError, register_rigid, warp_reference
from inspection.sim.frames import golden_image


def _moved(image: np.ndarray, *, dx: float, dy: float, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned about its centre and shifted, and that motion as a 3x3 matrix (reference -> image)."""
    height, width = image.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle_deg, 1.0)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0), np.vstack(
        [matrix, [0, 0, 1]])


@pytest.mark.parametrize(("dx", "dy", "angle_deg"), [(0.0, 0.0, 0.0), (13.4, -7.7, 0.6), (-19.2, 18.5, -1.0)])
def test_recovers_shift_and_rotation_to_subpixel(dx: float, dy: float, angle_deg: float) -> None:
    reference = golden_image("pcb", size_px=512)
    rng = np.random.default_rng(3)
    moved, forward = _moved(reference, dx=dx, dy=dy, angle_deg=angle_deg)
    noisy = np.clip(moved + rng.normal(0, 4, moved.shape), 0, 255).astype(np.uint8)
    fit = register_rigid(noisy, reference)
    # Image points mapped by the fit must land where the true inverse motion puts them (centre region).
    points = np.array([[128, 128, 1], [384, 128, 1], [128, 384, 1], [384, 384, 1]], float)
    expected = (np.linalg.inv(forward) @ points.T).T[:, :2]
    error_px = np.abs(points @ fit.matrix.T.astype(float) - expected).max()
    assert error_px < 0.05
    assert fit.angle_deg == pytest.approx(angle_deg, abs=0.05)
    assert fit.score > 0.9
    warped, covered = warp_reference(reference, fit)
    inside = covered & (moved > 0)
    assert np.abs(warped.astype(int) - moved.astype(int))[inside].mean() < 6


def test_bad_pairs_fail_with_the_reason() -> None:
    reference = golden_image("pcb", size_px=256)
    with pytest.raises(AlignmentError, match="256x256 px but the reference is 128x128"):
        register_rigid(reference, reference[:128, :128])
    with pytest.raises(AlignmentError, match="image is blank"):
        register_rigid(np.full_like(reference, 200), reference)
    noise = np.random.default_rng(0).integers(0, 255, reference.shape).astype(np.uint8)
    with pytest.raises(AlignmentError, match="cannot be registered"):
        register_rigid(noise, reference)


def test_a_bare_reference_registers_as_identity() -> None:
    board = golden_image("pcb", size_px=128)
    fit = register_rigid(board, np.full_like(board, 255))
    assert np.allclose(fit.matrix, np.eye(2, 3)) and fit.angle_deg == 0.0
