"""GenICam pixel formats: which dtype, layout and bit depth a camera buffer carries.

Names follow the GenICam Pixel Format Naming Convention; Basler's legacy ``...Packed`` names for the same
unpacked colour layouts are accepted too. 10/12-bit data arrive unpacked in 16-bit words (the SDKs unpack
``Mono10p``/``Mono12p``), so the dtype is uint16 and ``bit_depth`` keeps the significant bits: pixels are
never rescaled here. Bayer mosaics (``BayerRG8`` ...) are demosaiced to BGR by OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspection.types import Layout


@dataclass(frozen=True)
class PixelFormat:
    name: str
    layout: Layout
    bit_depth: int
    channels_in_buffer: int
    """Channels per pixel in the buffer; 4 for formats with a padding/alpha channel that is dropped."""
    bayer: str | None = None
    """The colour of the mosaic's top-left 2 x 2 cell in GenICam's naming (``RG``: red, green / green, blue)."""

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth <= 8 else np.uint16)


_FORMATS = {
    f.name: f
    for f in (
        PixelFormat("Mono8", "mono", 8, 1),
        PixelFormat("Mono10", "mono", 10, 1),
        PixelFormat("Mono10p", "mono", 10, 1),
        PixelFormat("Mono12", "mono", 12, 1),
        PixelFormat("Mono12p", "mono", 12, 1),
        PixelFormat("Mono16", "mono", 16, 1),
        PixelFormat("RGB8", "rgb", 8, 3),
        PixelFormat("BGR8", "bgr", 8, 3),
        PixelFormat("RGBa8", "rgb", 8, 4),
        PixelFormat("BGRa8", "bgr", 8, 4),
        *(PixelFormat(f"Bayer{cell}{bits}", "bgr", bits, 1, bayer=cell)
          for cell in ("RG", "GR", "GB", "BG") for bits in (8, 10, 12, 16)),
    )
}
# OpenCV names a Bayer pattern by its second row's second and third pixels, GenICam by the top-left cell.
_DEMOSAIC = {"RG": cv2.COLOR_BayerBG2BGR, "BG": cv2.COLOR_BayerRG2BGR, "GR": cv2.COLOR_BayerGB2BGR,
             "GB": cv2.COLOR_BayerGR2BGR}
_ALIASES = {"RGB8Packed": "RGB8", "BGR8Packed": "BGR8", "BGRA8Packed": "BGRa8", "RGBA8Packed": "RGBa8"}
SUPPORTED_PIXEL_FORMATS = tuple(_FORMATS)


def pixel_format(name: str) -> PixelFormat:
    """The format named ``name`` (SFNC or Basler legacy spelling)."""
    canonical = _ALIASES.get(name, name)
    if canonical not in _FORMATS:
        raise ValueError(
            f"pixel format {name!r} is not supported; expected one of {', '.join(SUPPORTED_PIXEL_FORMATS)}"
        )
    return _FORMATS[canonical]


def device_spelling(wanted: str, available: tuple[str, ...]) -> str:
    """The device's own name for the format ``wanted`` (SFNC ``RGB8`` may be ``RGB8Packed`` on a device)."""
    canonical = pixel_format(wanted).name
    for name in available:
        if _ALIASES.get(name, name) == canonical:
            return name
    raise ValueError(f"pixel format {wanted!r} is not offered by the device; it offers {', '.join(available)}")


def to_image(data: np.ndarray, *, width: int, height: int, fmt: PixelFormat) -> np.ndarray:
    """A buffer's pixels as an owned HxW or HxWx3 array of the format's dtype (alpha/padding dropped, Bayer
    mosaics demosaiced to BGR)."""
    flat = np.asarray(data).reshape(-1)
    if flat.dtype != fmt.dtype:
        flat = flat.view(fmt.dtype) if flat.dtype.itemsize == 1 and fmt.dtype.itemsize == 2 else flat.astype(fmt.dtype)
    expected = width * height * fmt.channels_in_buffer
    if flat.size < expected:
        raise ValueError(
            f"{fmt.name} buffer holds {flat.size} values; {width}x{height} needs {expected}"
        )
    flat = flat[:expected]
    if fmt.bayer is not None:
        return cv2.cvtColor(flat.reshape(height, width), _DEMOSAIC[fmt.bayer])
    if fmt.channels_in_buffer == 1:
        return flat.reshape(height, width).copy()
    return flat.reshape(height, width, fmt.channels_in_buffer)[:, :, :3].copy()


def is_grey(image: np.ndarray) -> bool:
    """Whether an image holds grey levels only: one channel, or three equal ones (some scanners store grey so).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray

    Returns
    -------
    bool
    """
    return image.ndim == 2 or (np.array_equal(image[..., 0], image[..., 1])
                               and np.array_equal(image[..., 1], image[..., 2]))
