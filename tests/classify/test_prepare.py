from __future__ import annotations

import numpy as np

from inspection.classify.card import InputSpec, Normalisation
from inspection.classify.prepare import normalise, resize, to_unit


def test_unit_range_follows_the_stated_bit_depth_and_layout() -> None:
    twelve = np.array([[0, 4095]], np.uint16)
    np.testing.assert_allclose(to_unit(twelve, layout="mono", bit_depth=12, channels=1), [[0.0, 1.0]])
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    rgb = to_unit(bgr, layout="bgr", bit_depth=8, channels=3)
    np.testing.assert_allclose(rgb[0, 0], [1.0, 0.0, 0.0])
    assert to_unit(bgr, layout="bgr", bit_depth=8, channels=1).shape == (1, 1)


def test_resize_and_normalise_give_nchw() -> None:
    spec = InputSpec(channels=1, height=16, width=24)
    unit = resize(np.ones((40, 60), np.float32), spec=spec)
    assert unit.shape == (16, 24)
    batch = normalise(np.stack([unit, unit * 0]), normalisation=Normalisation(mean=[0.5], std=[0.25]))
    assert batch.shape == (2, 1, 16, 24) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0], 2.0)
    np.testing.assert_allclose(batch[1], -2.0)
