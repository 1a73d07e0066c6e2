from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.align import AlignmentError, estimate_shift, register, warp_reference
from inspection.recipe import AlignSettings
from inspection.sim.frames import golden_image, render_frame


@pytest.mark.parametrize("kind", ["wafer", "pcb"])
def test_subpixel_shift_of_synthetic_frames(kind: str) -> None:
    reference = np.asarray(golden_image(kind))
    errors = []
    for index in range(10):
        image, _ = render_frame(kind, index, seed=11, defect_rate=0.0)
        rng = np.random.default_rng([11, index])  # the generator's own draw of the true shift
        true_dx, true_dy = rng.uniform(-3, 3), rng.uniform(-3, 3)
        dx, dy, response = estimate_shift(image, reference)
        errors.append(max(abs(dx - true_dx), abs(dy - true_dy)))
        assert response > 0.2
    assert max(errors) < 0.15, errors


@pytest.mark.parametrize("method", ["phase", "rigid"])
def test_registered_reference_matches_the_frame(method: str) -> None:
    reference = np.asarray(golden_image("wafer"))
    image, _ = render_frame("wafer", 0, seed=2, defect_rate=0.0, noise_sigma=0.0)
    fit = register(image, reference, settings=AlignSettings(method=method))  # type: ignore[arg-type]
    drawn, covered = warp_reference(reference, fit, margin_px=1)
    inner = (slice(10, -10), slice(10, -10))
    before = np.abs(image.astype(float) - reference)[inner].mean()
    after = np.abs(image.astype(float) - drawn)[inner].mean()
    assert after < before / 4 and covered[inner].all()


def test_unrelated_or_mismatched_images_are_refused() -> None:
    reference = np.asarray(golden_image("wafer", size_px=128))
    noise = np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8)
    with pytest.raises(AlignmentError, match="no reliable match"):
        register(noise, reference, settings=AlignSettings(min_score=0.3))
    with pytest.raises(AlignmentError, match="frame is 64x64 px but the reference is 128x128 px"):
        register(noise[:64, :64], reference, settings=AlignSettings())
    shifted = cv2.warpAffine(reference, np.array([[1.0, 0.0, 15.0], [0.0, 1.0, 0.0]]), (128, 128))
    with pytest.raises(AlignmentError, match="exceeds max_shift_px 5"):
        register(shifted, reference, settings=AlignSettings(max_shift_px=5, min_score=0.0))
