"""Station calibration: camera intrinsics from checkerboard views, and dark/flat frames for radiometric correction.

Results go to ``calibration/<station>/``: ``camera.yaml`` (intrinsics, distortion, RMS reprojection error,
per-image errors, micrometres per pixel at the working plane) and ``flatfield.npz`` (mean dark and flat
frames), which the recipe names as ``preprocess.flatfield``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import yaml

from inspection.acquire import ImageReadError, read_image
from inspection.preprocess import FlatField, to_gray
from inspection.types import InspectionError

__all__ = ["CalibrationError", "CameraCalibration", "calibrate_camera", "load_flatfield", "make_flatfield",
           "write_calibration"]


class CalibrationError(InspectionError, ValueError):
    """A calibration that cannot be made or would be poor; the message says which images and why."""


@dataclass(frozen=True)
class CameraCalibration:
    station: str
    image_size: tuple[int, int]
    """(width, height) in pixels."""
    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    rms_px: float
    per_image_rms_px: dict[str, float]
    um_per_px: float
    """Micrometres per pixel on a plane facing the camera at the median distance of the board centres."""
    inner_corners: tuple[int, int]
    square_mm: float
    rejected: dict[str, str]
    """Images not used, with the reason."""

    def to_yaml(self) -> str:
        return yaml.safe_dump({
            "station": self.station, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "image_size_px": list(self.image_size),
            "camera_matrix": np.round(self.camera_matrix, 6).tolist(),
            "focal_length_px": [round(float(self.camera_matrix[0, 0]), 4), round(float(self.camera_matrix[1, 1]), 4)],
            "principal_point_px": [round(float(self.camera_matrix[0, 2]), 4),
                                   round(float(self.camera_matrix[1, 2]), 4)],
            "dist_coeffs": np.round(self.dist_coeffs.ravel(), 8).tolist(),
            "rms_reprojection_px": round(self.rms_px, 5),
            "per_image_rms_px": {name: round(value, 5) for name, value in self.per_image_rms_px.items()},
            "um_per_px": round(self.um_per_px, 5),
            "board": {"inner_corners": list(self.inner_corners), "square_mm": self.square_mm},
            "rejected": self.rejected,
        }, sort_keys=False)


def calibrate_camera(paths: list[Path], *, inner_corners: tuple[int, int], square_mm: float, station: str,
                     min_boards: int = 5, max_rms_px: float = 0.5, bit_depth: int | None = None) -> CameraCalibration:
    """Intrinsics and distortion from views of a flat checkerboard.

    Parameters
    ----------
    paths : list of Path
        Images of the board in different poses, all of one size.
    inner_corners : tuple of int
        Inner corners of the board, columns x rows (OpenCV's convention).
    square_mm : float
        Side of one square, in millimetres.
    station : str
        The station's name, recorded and used as the folder name by :func:`write_calibration`.
    min_boards : int, optional
        Fewest views in which the board must be found.
    max_rms_px : float, optional
        Largest acceptable RMS reprojection error, in pixels.
    bit_depth : int, optional
        The significant bits of 16-bit views (12 for a Mono12 camera's PNGs); None: as many as each view's
        brightest pixel needs, so 12-bit data saved in 16-bit files is found as well as full-range data.

    Returns
    -------
    CameraCalibration
        Camera matrix, distortion, RMS and per-image errors, micrometres per pixel at the median board distance,
        and the images rejected with the reason.

    Raises
    ------
    CalibrationError
        Naming the images, when fewer than ``min_boards`` boards are found, the views differ in size, or the
        RMS reprojection error exceeds ``max_rms_px``.
    """
    if not paths:
        raise CalibrationError("no calibration images given")
    columns, rows = inner_corners
    board = np.zeros((columns * rows, 3), np.float32)
    board[:, :2] = np.mgrid[0:columns, 0:rows].T.reshape(-1, 2) * square_mm
    found: dict[str, np.ndarray] = {}
    rejected: dict[str, str] = {}
    size: tuple[int, int] | None = None
    for path in paths:
        try:
            image, layout, _ = read_image(path, bit_depth=bit_depth)
        except ImageReadError as exc:
            rejected[str(path)] = str(exc)
            continue
        grey = _eight_bit(to_gray(image, layout=layout), bit_depth=bit_depth)
        if size is not None and grey.shape[::-1] != size:
            rejected[str(path)] = f"{grey.shape[1]}x{grey.shape[0]} px, but the first view is {size[0]}x{size[1]} px"
            continue
        ok, corners = cv2.findChessboardCornersSB(grey, inner_corners, flags=cv2.CALIB_CB_ACCURACY)
        if not ok:
            rejected[str(path)] = f"no {columns}x{rows} checkerboard found"
            continue
        size = grey.shape[::-1]
        found[str(path)] = corners.reshape(-1, 2).astype(np.float32)  # (N, 2) whatever the OpenCV version returns
    if len(found) < min_boards or size is None:
        reasons = "; ".join(f"{Path(p).name}: {why}" for p, why in list(rejected.items())[:5])
        raise CalibrationError(f"only {len(found)} of {len(paths)} images show a {columns}x{rows} board; at least "
                               f"{min_boards} are needed ({reasons})")
    names = list(found)
    rms, matrix, dist, rvecs, tvecs = cv2.calibrateCamera([board] * len(names), [found[n] for n in names], size,
                                                          None, None)
    per_image = {}
    for name, rvec, tvec in zip(names, rvecs, tvecs, strict=True):
        projected, _ = cv2.projectPoints(board, rvec, tvec, matrix, dist)
        residuals = projected.reshape(-1, 2) - found[name]  # both (N, 2): one residual per corner, no broadcasting
        per_image[name] = float(np.sqrt(np.mean(np.sum(residuals**2, axis=1))))
    if rms > max_rms_px:
        worst = sorted(per_image.items(), key=lambda item: -item[1])[:3]
        raise CalibrationError(f"RMS reprojection error {rms:.3f} px exceeds {max_rms_px} px; worst views: "
                               + ", ".join(f"{Path(n).name} {e:.3f} px" for n, e in worst))
    # Distance of each board's centre (independent of which corner the detector numbered first).
    centre = board.mean(axis=0)
    distance_mm = float(np.median([float((cv2.Rodrigues(r)[0] @ centre + np.ravel(t))[2])
                                   for r, t in zip(rvecs, tvecs, strict=True)]))
    um_per_px = distance_mm / float(np.sqrt(matrix[0, 0] * matrix[1, 1])) * 1000
    return CameraCalibration(station, size, matrix, dist, float(rms), per_image, um_per_px, inner_corners, square_mm,
                             rejected)


def _eight_bit(grey: np.ndarray, *, bit_depth: int | None) -> np.ndarray:
    """A view in 8 bits for the corner search: its top 8 significant bits, the stated ones or, unstated, as many as
    its brightest pixel needs (the search needs contrast, not levels)."""
    if grey.dtype == np.uint8:
        return grey
    bits = bit_depth or max(8, int(grey.max()).bit_length())
    return np.minimum(grey >> (bits - 8), 255).astype(np.uint8)


def write_calibration(calibration: CameraCalibration, root: Path) -> Path:
    """Write ``root/<station>/camera.yaml`` atomically (a reader never sees half a file).

    Parameters
    ----------
    calibration : CameraCalibration
        As :func:`calibrate_camera` made it.
    root : Path
        The calibration folder (``calibration/`` by default on the command line).

    Returns
    -------
    Path
        The file written.
    """
    path = root / calibration.station / "camera.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(".camera.yaml.partial")
    partial.write_text(calibration.to_yaml())
    partial.replace(path)
    return path


def _mean_frame(paths: list[Path], *, what: str) -> tuple[np.ndarray, int]:
    if not paths:
        raise CalibrationError(f"no {what} frames given")
    total, first_shape, bit_depth = None, None, 8
    for path in paths:
        image, layout, bit_depth = read_image(path)
        grey = to_gray(image, layout=layout).astype(np.float64)
        if first_shape is None:
            first_shape, total = grey.shape, np.zeros_like(grey)
        elif grey.shape != first_shape:
            raise CalibrationError(f"{path}: {grey.shape[1]}x{grey.shape[0]} px, but the first {what} frame is "
                                   f"{first_shape[1]}x{first_shape[0]} px")
        total += grey
    assert total is not None
    return (total / len(paths)).astype(np.float32), bit_depth


def make_flatfield(dark_paths: list[Path], flat_paths: list[Path], *, station: str, root: Path) -> Path:
    """Mean dark and flat frames to ``root/station/flatfield.npz``.

    Parameters
    ----------
    dark_paths : list of Path
        Frames taken with the light off (or the lens capped), all of one size.
    flat_paths : list of Path
        Frames of an even, bright field, the size of the dark frames.
    station : str
        The station's folder under ``root``.
    root : Path
        The calibration folder.

    Returns
    -------
    Path
        The npz written.

    Raises
    ------
    CalibrationError
        When no frames are given, sizes differ (the file named) or the flat is not brighter than the dark
        everywhere.
    """
    dark, bit_depth = _mean_frame(dark_paths, what="dark")
    flat, _ = _mean_frame(flat_paths, what="flat")
    if dark.shape != flat.shape:
        raise CalibrationError(f"dark frames are {dark.shape[1]}x{dark.shape[0]} px but flat frames are "
                               f"{flat.shape[1]}x{flat.shape[0]} px")
    try:
        FlatField(dark, flat)  # validates the pair: the flat brighter than the dark everywhere
    except ValueError as exc:
        raise CalibrationError(f"{flat_paths[0].parent}: {exc}") from None
    path = root / station / "flatfield.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(".flatfield.partial.npz")
    np.savez_compressed(partial, dark=dark, flat=flat, bit_depth=bit_depth, dark_frames=len(dark_paths),
                        flat_frames=len(flat_paths))
    partial.replace(path)
    return path


def load_flatfield(path: str | Path) -> FlatField:
    """The dark/flat pair written by ``inspect calibrate flatfield``.

    Parameters
    ----------
    path : str or Path
        A station folder or its ``flatfield.npz``.

    Returns
    -------
    FlatField
    """
    path = Path(path)
    if path.is_dir():
        path = path / "flatfield.npz"
    try:
        with np.load(path) as data:
            return FlatField(data["dark"], data["flat"])
    except (OSError, KeyError, ValueError) as exc:
        raise CalibrationError(f"{path}: not a flat-field file written by `inspect calibrate flatfield` ({exc})") \
            from None
