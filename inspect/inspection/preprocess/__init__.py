"""Preprocessing: colour to grey, flat-field correction, bit-depth normalisation, denoise, contrast and ROI.

Plain functions on numpy arrays; the data argument is positional, options are keyword-only. Layout and bit
depth are always stated by the caller (from the Frame), never guessed from the pixel values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from inspection.recipe import PreprocessSettings
from inspection.types import Frame, Layout

__all__ = ["FlatField", "crop", "denoise", "equalize", "flat_field_correct", "preprocess", "preprocess_frame",
           "to_gray", "to_uint8"]


def to_gray(image: np.ndarray, *, layout: Layout) -> np.ndarray:
    """A single-channel view of ``image``, keeping its dtype.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        Pixels as the camera delivered them.
    layout : {"mono", "rgb", "bgr"}
        The channel order (``Frame.layout``); a mono image is returned as it is.

    Returns
    -------
    (H, W) ndarray
        Grey levels, same dtype as ``image``.
    """
    if layout == "mono":
        return image
    code = cv2.COLOR_RGB2GRAY if layout == "rgb" else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


@dataclass(frozen=True)
class FlatField:
    """Mean dark and flat frames of a station (grey levels of the raw pixels, float32)."""

    dark: np.ndarray
    flat: np.ndarray
    gain: np.ndarray = field(init=False, repr=False)
    """Per-pixel gain that maps (pixel - dark) to the flat's mean response."""

    def __post_init__(self) -> None:
        if self.dark.shape != self.flat.shape or self.dark.ndim != 2:
            raise ValueError(f"dark {self.dark.shape} and flat {self.flat.shape} must be grey frames of one size")
        response = self.flat.astype(np.float32) - self.dark.astype(np.float32)
        if float(response.min()) <= 0:
            raise ValueError(f"the flat frame is not brighter than the dark frame everywhere (minimum flat - dark "
                             f"{float(response.min()):.2f}): retake the flat frames with light")
        object.__setattr__(self, "gain", (float(response.mean()) / response).astype(np.float32))


def flat_field_correct(image: np.ndarray, flatfield: FlatField, *, bit_depth: int) -> np.ndarray:
    """Even out the response over the field of view: (pixel - dark) x gain.

    Parameters
    ----------
    image : (H, W) unsigned integer ndarray
        Raw grey levels, the size of the flat field's frames.
    flatfield : FlatField
        The station's mean dark and flat frames.
    bit_depth : int
        Significant bits of ``image``; corrected values are clipped to ``2**bit_depth - 1``.

    Returns
    -------
    (H, W) ndarray
        Same dtype as ``image``.

    Raises
    ------
    ValueError
        When the frame and the flat field differ in size (both sizes named).
    """
    if image.shape != flatfield.dark.shape:
        raise ValueError(f"frame is {image.shape[1]}x{image.shape[0]} px but the flat field is "
                         f"{flatfield.dark.shape[1]}x{flatfield.dark.shape[0]} px")
    corrected = (image.astype(np.float32) - flatfield.dark) * flatfield.gain
    return np.clip(np.rint(corrected), 0, (1 << bit_depth) - 1).astype(image.dtype)


def to_uint8(image: np.ndarray, *, bit_depth: int) -> np.ndarray:
    """Scale ``bit_depth``-bit pixels to 8 bits by dropping the low bits (values above the range saturate).

    Parameters
    ----------
    image : (H, W) unsigned integer ndarray
        Grey levels.
    bit_depth : int
        Significant bits of ``image`` (1 to 16); fewer than 8 are stretched to 0..255.

    Returns
    -------
    (H, W) uint8 ndarray
        ``image`` itself when it is already 8-bit.
    """
    if image.dtype == np.uint8 and bit_depth == 8:
        return image
    max_value = (1 << bit_depth) - 1
    if bit_depth >= 8:
        scaled = np.minimum(image, max_value) >> (bit_depth - 8)
    else:
        scaled = (np.minimum(image, max_value).astype(np.uint16) * 255) // max_value
    return scaled.astype(np.uint8)


def denoise(image: np.ndarray, *, method: str, kernel_px: int) -> np.ndarray:
    """Smooth sensor noise with the recipe's filter.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        Grey levels.
    method : {"none", "median", "gaussian"}
        The filter.
    kernel_px : int
        Odd side of the filter's window, in pixels.

    Returns
    -------
    (H, W) uint8 ndarray
        ``image`` itself for ``"none"``.
    """
    if method == "median":
        return cv2.medianBlur(image, kernel_px)
    if method == "gaussian":
        return cv2.GaussianBlur(image, (kernel_px, kernel_px), 0)
    if method == "none":
        return image
    raise ValueError(f"denoise method {method!r}; expected none, median or gaussian")


def equalize(image: np.ndarray, *, clip_limit: float, tile_grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (CLAHE).

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        Grey levels.
    clip_limit : float
        OpenCV's contrast limit per tile.
    tile_grid : int, optional
        Tiles per side.

    Returns
    -------
    (H, W) uint8 ndarray
    """
    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid)).apply(image)


def crop(image: np.ndarray, *, roi_xywh_px: tuple[int, int, int, int]) -> np.ndarray:
    """The region of interest of ``image``, as a view.

    Parameters
    ----------
    image : (H, W) or (H, W, C) ndarray
        Any image.
    roi_xywh_px : tuple of int
        Left, top, width and height in pixels.

    Returns
    -------
    (height, width) or (height, width, C) ndarray
        A view into ``image``.

    Raises
    ------
    ValueError
        When the region leaves the frame (both named).
    """
    x, y, width, height = roi_xywh_px
    if x < 0 or y < 0 or x + width > image.shape[1] or y + height > image.shape[0]:
        raise ValueError(
            f"roi_xywh_px {roi_xywh_px} lies outside the {image.shape[1]}x{image.shape[0]} frame"
        )
    return image[y : y + height, x : x + width]


def preprocess(image: np.ndarray, *, layout: Layout, bit_depth: int, settings: PreprocessSettings,
               flatfield: FlatField | None = None) -> np.ndarray:
    """The recipe's preprocessing chain: an 8-bit grey image ready for alignment and measurement.

    Grey conversion, flat-field correction, region of interest, bit-depth scaling, denoising and CLAHE, in
    that order, each as ``settings`` says.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) unsigned integer ndarray
        Pixels as delivered.
    layout : {"mono", "rgb", "bgr"}
        Channel order of ``image``.
    bit_depth : int
        Significant bits of ``image``; the recipe's ``preprocess.bit_depth`` overrides it when set.
    settings : PreprocessSettings
        The recipe's ``preprocess`` section.
    flatfield : FlatField, optional
        The station's dark and flat frames, applied before the bit-depth scaling.

    Returns
    -------
    (h, w) uint8 ndarray
        C-contiguous; ``(h, w)`` is the region of interest's size when one is set.
    """
    grey = to_gray(image, layout=layout)
    if flatfield is not None:
        grey = flat_field_correct(grey, flatfield, bit_depth=settings.bit_depth or bit_depth)
    if settings.roi_xywh_px is not None:
        grey = crop(grey, roi_xywh_px=settings.roi_xywh_px)
    grey = to_uint8(grey, bit_depth=settings.bit_depth or bit_depth)
    grey = denoise(grey, method=settings.denoise, kernel_px=settings.denoise_kernel_px)
    if settings.clahe:
        grey = equalize(grey, clip_limit=settings.clahe_clip_limit)
    return np.ascontiguousarray(grey)


def preprocess_frame(frame: Frame, settings: PreprocessSettings, *, flatfield: FlatField | None = None) -> np.ndarray:
    """:func:`preprocess` on a frame, with the frame's own layout and bit depth.

    Parameters
    ----------
    frame : Frame
        As a camera or file source delivered it.
    settings : PreprocessSettings
        The recipe's ``preprocess`` section.
    flatfield : FlatField, optional
        The station's dark and flat frames.

    Returns
    -------
    (h, w) uint8 ndarray
    """
    return preprocess(frame.image, layout=frame.layout, bit_depth=frame.bit_depth, settings=settings,
                      flatfield=flatfield)
