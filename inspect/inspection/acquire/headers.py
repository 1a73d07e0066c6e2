"""Image sizes read from file headers, so a file that claims an absurd size is refused before it is decoded.

A 74-byte PNG may claim 60000 x 60000 pixels; decoding it would allocate gigabytes (or trip OpenCV's own
limit with an assertion). PNG, JPEG, BMP and TIFF state their size in the first bytes.
"""

from __future__ import annotations

import struct

MAX_IMAGE_PIXELS = 1 << 28
"""The largest image read by default: 268 Mpx (16,384 x 16,384), below OpenCV's own limit of 2**30."""


def _png(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    if data[:2] != b"\xff\xd8":
        return None
    index = 2
    while index + 9 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            index += 2
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        # Start-of-frame markers (all but DHT C4, JPG C8 and DAC CC) carry precision, height, width.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None


def _bmp(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 26 and data[:2] == b"BM":
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)  # a negative height marks a top-down bitmap
    return None


def _tiff(data: bytes) -> tuple[int, int] | None:
    if len(data) < 8 or data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    if offset + 2 > len(data):
        return None
    count = struct.unpack(order + "H", data[offset : offset + 2])[0]
    size: dict[int, int] = {}
    for entry in range(count):
        start = offset + 2 + 12 * entry
        if start + 12 > len(data):
            break
        tag, kind = struct.unpack(order + "HH", data[start : start + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            value = data[start + 8 : start + 12]
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2] if kind == 3 else value)[0]
    return (size[256], size[257]) if 256 in size and 257 in size else None


def image_size_px(data: bytes) -> tuple[int, int] | None:
    """The (width, height) a PNG, JPEG, BMP or TIFF file's header states.

    Parameters
    ----------
    data : bytes
        The file's first bytes (64 KiB is enough for any JPEG whose frame header follows its metadata).

    Returns
    -------
    tuple of int or None
        (width, height) in pixels, or None when the header is of another format or cut short.
    """
    for reader in (_png, _jpeg, _bmp, _tiff):
        try:
            size = reader(data)
        except struct.error:
            return None
        if size is not None:
            return size
    return None
