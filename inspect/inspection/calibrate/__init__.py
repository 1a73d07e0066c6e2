"""Station calibration: camera intrinsics from checkerboard views, and dark/flat frames for radiometric correction.

Results go to ``calibration/<station>/``: ``camera.yaml`` (intrinsics, distortion, RMS reprojection error,
per-image errors, micrometres per pixel at the working plane, the edge blur measured on the board's squares) and
``flatfield.npz`` (mean dark and flat frames), which the recipe names as ``preprocess.flatfield``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import yaml
from scipy.optimize import curve_fit
from scipy.special import erf

from inspection.acquire import ImageReadError, read_image
from inspection.preprocess import FlatField, to_gray
from inspection.types import InspectionError

__all__ = ["CalibrationError", "CameraCalibration", "calibrate_camera", "edge_blur_sigma_px", "load_flatfield",
           "make_flatfield", "read_calibration", "write_calibration"]


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
    blur_sigma_px: float
    """Sigma of the edge spread on the board's square sides (optics and pixel footprint), median over every side of
    every view: what blob areas need (``measure.metrology.blobs``)."""

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
            "blur_sigma_px": round(self.blur_sigma_px, 4),
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
    side_blurs: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for path in paths:
        try:
            image, layout, _ = read_image(path, bit_depth=bit_depth)
        except ImageReadError as exc:
            rejected[str(path)] = str(exc)
            continue
        full_depth = to_gray(image, layout=layout)
        grey = _eight_bit(full_depth, bit_depth=bit_depth)
        if size is not None and grey.shape[::-1] != size:
            rejected[str(path)] = f"{grey.shape[1]}x{grey.shape[0]} px, but the first view is {size[0]}x{size[1]} px"
            continue
        ok, corners = cv2.findChessboardCornersSB(grey, inner_corners, flags=cv2.CALIB_CB_ACCURACY)
        if not ok:
            rejected[str(path)] = f"no {columns}x{rows} checkerboard found"
            continue
        size = grey.shape[::-1]
        found[str(path)] = corners.reshape(-1, 2).astype(np.float32)  # (N, 2) whatever the OpenCV version returns
        side_blurs.append(edge_blur_sigma_px(full_depth, found[str(path)], inner_corners=inner_corners))
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
    blurs = np.concatenate(side_blurs)
    if len(blurs) == 0:
        raise CalibrationError("no square side of any board had a measurable edge (saturated or blank views?)")
    return CameraCalibration(station, size, matrix, dist, float(rms), per_image, um_per_px, inner_corners, square_mm,
                             rejected, float(np.median(blurs)))


def _erf_edge(distance_px: np.ndarray, low: float, step: float, centre_px: float, sigma_px: float) -> np.ndarray:
    return low + step * 0.5 * (1.0 + erf((distance_px - centre_px) / (np.sqrt(2.0) * sigma_px)))


def edge_blur_sigma_px(grey: np.ndarray, corners_xy_px: np.ndarray, *, inner_corners: tuple[int, int]) -> np.ndarray:
    """The edge spread of each inner square side of a found checkerboard, as a Gaussian's sigma.

    Each side between two neighbouring inner corners separates a dark square from a light one. The pixels along
    its middle half, out to 0.35 of a side on either hand, are placed by their distance from the side's line
    (slanted sides sample it at every sub-pixel phase, as the slanted-edge method does) and an error function is
    fitted to grey level against distance.

    Parameters
    ----------
    grey : (H, W) ndarray
        The view, any real dtype, at its full bit depth.
    corners_xy_px : (N, 2) ndarray
        The inner corners as OpenCV's checkerboard search returns them, row by row; N = columns * rows.
    inner_corners : tuple of int
        Columns x rows of inner corners.

    Returns
    -------
    (M,) float ndarray
        Sigma in pixels of each side whose fit converged, the optics' blur and the pixels' footprint together
        (about sqrt(sigma_optics**2 + 1/12) for square pixels); sides shorter than 8 px are left out.
    """
    columns, rows = inner_corners
    grid = np.asarray(corners_xy_px, np.float64).reshape(rows, columns, 2)
    pairs = [(grid[r, c], grid[r, c + 1]) for r in range(rows) for c in range(columns - 1)]
    pairs += [(grid[r, c], grid[r + 1, c]) for r in range(rows - 1) for c in range(columns)]
    pixels = grey.astype(np.float64)
    sigmas = []
    for start, end in pairs:
        side_px = float(np.hypot(*(end - start)))
        if side_px < 8:
            continue
        along = (end - start) / side_px
        across = np.array([-along[1], along[0]])
        reach = 0.35 * side_px
        corners = np.array([start + across * reach, start - across * reach, end + across * reach,
                            end - across * reach])
        (x0, y0), (x1, y1) = np.floor(corners.min(axis=0)).astype(int), np.ceil(corners.max(axis=0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, grey.shape[1] - 1), min(y1, grey.shape[0] - 1)
        ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
        offset_x, offset_y = xs - start[0], ys - start[1]
        position = (offset_x * along[0] + offset_y * along[1]) / side_px
        distance = offset_x * across[0] + offset_y * across[1]
        keep = (position >= 0.25) & (position <= 0.75) & (np.abs(distance) <= reach)
        distance, values = distance[keep], pixels[y0 : y1 + 1, x0 : x1 + 1][keep]
        if len(values) < 20:
            continue
        low, high = float(values[distance < 0].mean()), float(values[distance > 0].mean())
        try:
            (_, _, _, sigma), _ = curve_fit(_erf_edge, distance, values, p0=(low, high - low, 0.0, 1.0),
                                            bounds=([-np.inf, -np.inf, -reach / 2, 0.05], [np.inf, np.inf, reach / 2,
                                                                                           reach / 3]))
        except (RuntimeError, ValueError):  # no convergence: a side without an edge (glare, a missing square)
            continue
        sigmas.append(float(sigma))
    return np.array(sigmas)


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


def read_calibration(path: str | Path) -> CameraCalibration:
    """The camera calibration written by ``inspect calibrate camera``.

    Parameters
    ----------
    path : str or Path
        A station folder or its ``camera.yaml``.

    Returns
    -------
    CameraCalibration
        ``um_per_px`` is the metrology's ``pixel_size_um``, ``blur_sigma_px`` its ``blur_sigma_px``.

    Raises
    ------
    CalibrationError
        Naming the file and the field missing or malformed.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "camera.yaml"
    try:
        card = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CalibrationError(f"{path}: cannot be read as a camera calibration ({exc})") from None
    if not isinstance(card, dict):
        raise CalibrationError(f"{path}: not a camera calibration written by `inspect calibrate camera`")
    try:  # fields in the file's order, so the first one missing is named
        return CameraCalibration(
            str(card["station"]), (int(card["image_size_px"][0]), int(card["image_size_px"][1])),
            np.array(card["camera_matrix"], np.float64).reshape(3, 3), np.array(card["dist_coeffs"], np.float64),
            float(card["rms_reprojection_px"]), {str(k): float(v) for k, v in card["per_image_rms_px"].items()},
            float(card["um_per_px"]),
            (int(card["board"]["inner_corners"][0]), int(card["board"]["inner_corners"][1])),
            float(card["board"]["square_mm"]), dict(card.get("rejected") or {}), float(card["blur_sigma_px"]))
    except KeyError as exc:
        raise CalibrationError(f"{path}: field {exc.args[0]!r} is missing; re-run `inspect calibrate camera` "
                               "(calibrations before 2026-12 have no blur_sigma_px)") from None
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise CalibrationError(f"{path}: a field is malformed ({exc})") from None


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
