"""`inspect calibrate camera` on rendered boards of known intrinsics, and dark/flat-field correction."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspection.calibrate import CalibrationError, load_flatfield, read_calibration
from inspection.measure.metrology import blobs
from inspection.preprocess import flat_field_correct
from inspection.sim.frames import render_checkerboard
from tests.conftest import run_cli

CAMERA_MATRIX = np.array([[1100.0, 0.0, 402.0], [0.0, 1100.0, 297.0], [0.0, 0.0, 1.0]])
DISTORTION = np.array([-0.12, 0.05, 0.0005, -0.0003, 0.0])


def _boards(folder: Path, count: int, *, seed: int = 0, twelve_bit: bool = False, blur_sigma_px: float = 0.0
            ) -> list[float]:
    """Rendered 9x6 boards (10 mm squares) from varied poses; returns the distances of their centres in mm. With
    ``twelve_bit``, saved as a Mono12 camera's PNGs are: 12-bit values in 16-bit files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    distances = []
    for index in range(count):
        rvec = np.array([rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35), rng.uniform(-0.2, 0.2)])
        tvec = np.array([-40 + rng.uniform(-10, 10), -25 + rng.uniform(-10, 10), rng.uniform(330, 420)])
        image = render_checkerboard(inner_corners=(9, 6), square_mm=10.0, camera_matrix=CAMERA_MATRIX,
                                    dist_coeffs=DISTORTION, rvec=rvec, tvec=tvec, size_px=(800, 600), seed=index,
                                    blur_sigma_px=blur_sigma_px)
        cv2.imwrite(str(folder / f"board{index:02d}.png"), image.astype(np.uint16) * 16 if twelve_bit else image)
        centre = np.array([40.0, 25.0, 0.0])  # middle of the 9x6 inner corners at 10 mm
        distances.append(float((cv2.Rodrigues(rvec)[0] @ centre + tvec)[2]))
    return distances


def test_calibration_recovers_the_intrinsics(tmp_path: Path) -> None:
    distances = _boards(tmp_path / "boards", 8)
    out = run_cli("calibrate", "camera", "--images", str(tmp_path / "boards" / "*.png"), "--board", "9x6",
                  "--square-mm", "10", "--station", "line1", "--root", str(tmp_path / "calibration"), timeout=300)
    assert "RMS" in out.stdout
    card = yaml.safe_load((tmp_path / "calibration" / "line1" / "camera.yaml").read_text())
    fx, fy = card["focal_length_px"]
    assert abs(fx - 1100) / 1100 <= 0.005 and abs(fy - 1100) / 1100 <= 0.005
    assert card["rms_reprojection_px"] <= 0.3
    assert len(card["per_image_rms_px"]) == 8 and card["image_size_px"] == [800, 600]
    # The per-view errors agree with OpenCV's own overall RMS (the same corners per view: RMS of the RMSs),
    # an independent computation of the same residuals.
    per_view = np.array(list(card["per_image_rms_px"].values()))
    assert float(np.sqrt(np.mean(per_view**2))) == pytest.approx(card["rms_reprojection_px"], rel=0.01)
    assert per_view.max() < 0.2
    assert card["um_per_px"] == pytest.approx(np.median(distances) / 1100 * 1000, rel=0.02)


@pytest.mark.parametrize("stated", [[], ["--bit-depth", "12"]])
def test_twelve_bit_views_in_sixteen_bit_files_are_found(tmp_path: Path, stated: list[str]) -> None:
    _boards(tmp_path / "boards", 6, twelve_bit=True)
    assert cv2.imread(str(tmp_path / "boards" / "board00.png"), cv2.IMREAD_UNCHANGED).max() < 4096
    out = run_cli("calibrate", "camera", "--images", str(tmp_path / "boards" / "*.png"), "--board", "9x6",
                  "--square-mm", "10", "--station", "mono12", "--root", str(tmp_path / "calibration"), *stated,
                  timeout=300)
    assert "6 boards (0 rejected)" in out.stdout
    card = yaml.safe_load((tmp_path / "calibration" / "mono12" / "camera.yaml").read_text())
    assert abs(card["focal_length_px"][0] - 1100) / 1100 <= 0.01


def test_too_few_boards_are_refused_with_the_images_named(tmp_path: Path) -> None:
    _boards(tmp_path / "boards", 2)
    cv2.imwrite(str(tmp_path / "boards" / "blank.png"), np.full((600, 800), 128, np.uint8))
    out = run_cli("calibrate", "camera", "--images", str(tmp_path / "boards" / "*.png"), "--board", "9x6",
                  "--square-mm", "10", "--station", "s", "--root", str(tmp_path), check=False, timeout=300)
    assert out.returncode == 2
    assert "only 2 of 3 images show a 9x6 board" in out.stderr and "blank.png: no 9x6 checkerboard" in out.stderr
    out = run_cli("calibrate", "camera", "--images", str(tmp_path / "none" / "*.png"), "--board", "9x6",
                  "--square-mm", "10", "--station", "s", check=False)
    assert out.returncode == 2 and "no files match" in out.stderr
    out = run_cli("calibrate", "camera", "--images", "x", "--board", "9by6", "--square-mm", "10", "--station", "s",
                  check=False)
    assert out.returncode == 2 and "expected COLSxROWS" in out.stderr


def test_flat_field_evens_out_vignetting(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:160]
    vignetting = 1.0 - 0.4 * (((xx - 80) / 80) ** 2 + ((yy - 60) / 60) ** 2) / 2
    offset = 100 + 20 * (xx / 160)
    for index in range(4):
        dark = offset + rng.normal(0, 2, offset.shape)
        flat = offset + 3000 * vignetting + rng.normal(0, 5, offset.shape)
        cv2.imwrite(str(tmp_path / f"dark{index}.png"), np.rint(dark).astype(np.uint16))
        cv2.imwrite(str(tmp_path / f"flat{index}.png"), np.rint(flat).astype(np.uint16))
    run_cli("calibrate", "flatfield", "--dark", str(tmp_path / "dark*.png"), "--flat", str(tmp_path / "flat*.png"),
            "--station", "st", "--root", str(tmp_path / "calibration"))
    flatfield = load_flatfield(tmp_path / "calibration" / "st")
    scene = np.rint(offset + 1500 * vignetting).astype(np.uint16)  # a uniform grey target seen through the optics
    corrected = flat_field_correct(scene, flatfield, bit_depth=16).astype(float)
    assert scene.std() / scene.mean() > 0.05 and corrected.std() / corrected.mean() < 0.01
    with pytest.raises(CalibrationError, match="not a flat-field file"):
        load_flatfield(tmp_path / "missing")
    out = run_cli("calibrate", "flatfield", "--dark", str(tmp_path / "flat*.png"), "--flat",
                  str(tmp_path / "dark*.png"), "--station", "bad", "--root", str(tmp_path), check=False)
    assert out.returncode == 2 and "not brighter than the dark frame" in out.stderr


def _blob_area_errors(blur_sigma_px: float, measured_blur_sigma_px: float, *, radius_px: float) -> np.ndarray:
    """Relative area errors of 40 blurred, noisy discs measured with the blur given."""
    errors = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        centre = np.array([40 + rng.uniform(-0.5, 0.5), 40 + rng.uniform(-0.5, 0.5)])
        yy, xx = np.mgrid[0:640, 0:640]  # 8x supersampled coverage
        inside = np.hypot((xx + 0.5) / 8 - 0.5 - centre[0], (yy + 0.5) / 8 - 0.5 - centre[1]) <= radius_px
        coverage = inside.reshape(80, 8, 80, 8).mean(axis=(1, 3))
        image = cv2.GaussianBlur(30 + 170 * coverage, (0, 0), blur_sigma_px) + rng.normal(0, 3, (80, 80))
        [blob, *_] = blobs(image, threshold=115, background=30, foreground=200, pixel_size_um=1.0,
                           blur_sigma_px=measured_blur_sigma_px, min_area_px=3)
        errors.append((blob.area_subpx - np.pi * radius_px**2) / (np.pi * radius_px**2))
    return np.array(errors)


def test_the_station_blur_is_measured_on_the_board_and_keeps_blob_areas_unbiased(tmp_path: Path) -> None:
    _boards(tmp_path / "boards", 5, blur_sigma_px=1.2)
    run_cli("calibrate", "camera", "--images", str(tmp_path / "boards" / "*.png"), "--board", "9x6",
            "--square-mm", "10", "--station", "blurred", "--root", str(tmp_path / "calibration"), timeout=300)
    calibration = read_calibration(tmp_path / "calibration" / "blurred")
    # the optics' 1.2 px and the pixels' own footprint (1/12 px^2) together
    assert calibration.blur_sigma_px == pytest.approx(np.hypot(1.2, np.sqrt(1 / 12)), rel=0.03)
    assert calibration.camera_matrix[0, 0] == pytest.approx(1100, rel=0.005)
    # Blobs measured with the station's blur have no bias left; the constant of a sharper station's
    # (sigma 0.85) read them low.
    with_measured = _blob_area_errors(1.2, calibration.blur_sigma_px, radius_px=3.0)
    with_sharper = _blob_area_errors(1.2, 0.85, radius_px=3.0)
    assert abs(with_measured.mean()) <= 0.01 and with_sharper.mean() <= -0.02


def test_a_calibration_file_with_a_field_missing_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "camera.yaml").write_text("station: old\nimage_size_px: [800, 600]\n")
    with pytest.raises(CalibrationError, match=r"old/camera.yaml: field 'camera_matrix' is missing"):
        read_calibration(folder)
    (folder / "camera.yaml").write_text("- not\n- a card\n")
    with pytest.raises(CalibrationError, match="not a camera calibration"):
        read_calibration(folder / "camera.yaml")
    with pytest.raises(CalibrationError, match="cannot be read"):
        read_calibration(tmp_path / "missing.yaml")
