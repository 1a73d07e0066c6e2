from __future__ import annotations

import numpy as np
import pytest

from inspection.preprocess import crop, preprocess, to_gray, to_uint8
from inspection.recipe import PreprocessSettings


def test_bit_depth_is_stated_not_guessed() -> None:
    twelve_bit = np.array([[0, 16, 4095, 65535]], np.uint16)
    np.testing.assert_array_equal(to_uint8(twelve_bit, bit_depth=12), [[0, 1, 255, 255]])
    np.testing.assert_array_equal(to_uint8(np.array([[1023]], np.uint16), bit_depth=10), [[255]])
    np.testing.assert_array_equal(to_uint8(np.array([[65535]], np.uint16), bit_depth=16), [[255]])


def test_gray_follows_the_stated_layout() -> None:
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255  # red in RGB order, blue in BGR order
    assert to_gray(red, layout="rgb")[0, 0] == 76
    assert to_gray(red, layout="bgr")[0, 0] == 29


def test_chain_with_roi_and_denoise() -> None:
    image = np.zeros((100, 120), np.uint16)
    image[50, 60] = 4095  # a hot pixel that the median removes
    image[10:90, 20:100] += 2048
    settings = PreprocessSettings(bit_depth=12, denoise="median", denoise_kernel_px=3, roi_xywh_px=(20, 10, 80, 80))
    out = preprocess(image, layout="mono", bit_depth=16, settings=settings)
    assert out.shape == (80, 80) and out.dtype == np.uint8
    assert int(out.max()) == 128


def test_roi_outside_the_frame_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"roi_xywh_px \(50, 0, 100, 10\) lies outside the 120x100 frame"):
        crop(np.zeros((100, 120), np.uint8), roi_xywh_px=(50, 0, 100, 10))
