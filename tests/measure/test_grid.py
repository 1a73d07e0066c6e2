"""Die grid pitch and origin, and die crops, against rendered wafers of known geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.align.wafer import find_wafer
from inspection.measure.grid import GridError, die_crops, find_die_grid, grid_angle_deg
from inspection.measure.metrology import blobs
from inspection.sim.frames import WaferGeometry, render_wafer_geometry


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pitch_and_origin_to_a_twentieth_of_a_pixel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    geometry = WaferGeometry((1024 + rng.uniform(-20, 20), 1024 + rng.uniform(-20, 20)), rng.uniform(880, 950),
                             270.0, (rng.uniform(40, 90), rng.uniform(40, 90)),
                             (rng.uniform(0, 40), rng.uniform(0, 40)), rng.uniform(3, 6))
    image, _ = render_wafer_geometry(geometry, size_px=2048, noise_grey=4.0, seed=seed)
    fit = find_wafer(image)
    grid = find_die_grid(image, centre_xy_px=fit.centre_xy_px, radius_px=fit.radius_px)
    for axis in (0, 1):
        pitch = geometry.die_pitch_xy_px[axis]
        assert abs(grid.pitch_xy_px[axis] - pitch) <= 0.05
        offset = (grid.origin_xy_px[axis] - geometry.grid_origin_xy_px[axis] + pitch / 2) % pitch - pitch / 2
        assert abs(offset) <= 0.2
    dies = die_crops(grid, centre_xy_px=fit.centre_xy_px, radius_px=fit.radius_px, pixel_size_um=100.0)
    # Every die lies wholly inside the wafer; indices are unique; the centre die is near (0, 0) mm.
    assert len({(d.row, d.column) for d in dies}) == len(dies) > 100
    for die in dies:
        x0, y0, x1, y1 = die.box_xyxy_px
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], float)
        assert np.hypot(*(corners - geometry.centre_xy_px).T).max() <= geometry.radius_px + 1
    centre_die = next(d for d in dies if (d.row, d.column) == (0, 0))
    assert max(abs(v) for v in centre_die.centre_mm) <= max(geometry.die_pitch_xy_px) * 0.1 / 2 + 1e-6


def test_a_frame_without_streets_has_no_grid() -> None:
    blank = np.full((1024, 1024), 120, np.uint8) + np.random.default_rng(0).integers(0, 3, (1024, 1024), np.uint8)
    with pytest.raises(GridError):
        find_die_grid(blank, centre_xy_px=(512, 512), radius_px=480)


def test_particles_on_a_rendered_wafer_are_found_as_blobs() -> None:
    geometry = WaferGeometry((1030.0, 1012.0), 930.0, 270.0, (64.0, 71.0), (5.0, 9.0), 4.0)
    image, truth = render_wafer_geometry(geometry, size_px=2048, seed=4, particles=6)
    fit = find_wafer(image)
    assert np.hypot(fit.centre_xy_px[0] - 1030.0, fit.centre_xy_px[1] - 1012.0) <= 0.2
    inside = [blob for blob in blobs(image, threshold=50, background=120, foreground=20, pixel_size_um=10.0,
                                     blur_sigma_px=0.85, min_area_px=5)
              if blob.area_px < 500]  # the dark surround of the wafer is one huge blob
    assert len(inside) == len(truth) == 6
    for defect in truth:
        x0, y0, x1, y1 = defect.box_xyxy_px
        assert any(x0 <= b.centroid_xy_px[0] <= x1 and y0 <= b.centroid_xy_px[1] <= y1 for b in inside)


@pytest.mark.parametrize("turn_deg", [-0.08, 0.03, 0.12])
def test_residual_grid_turn_to_a_hundredth_of_a_degree(turn_deg: float) -> None:
    geometry = WaferGeometry((1024.0, 1024.0), 930.0, 270.0, (52.3, 52.3), (7.0, 11.0), 5.0)
    image, _ = render_wafer_geometry(geometry, size_px=2048, noise_grey=3.0, seed=4)
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((1024.0, 1024.0), turn_deg, 1.0), (2048, 2048),
                            flags=cv2.INTER_LINEAR)
    grid = find_die_grid(turned, centre_xy_px=(1024.0, 1024.0), radius_px=930.0)
    found = grid_angle_deg(turned, centre_xy_px=(1024.0, 1024.0), radius_px=930.0, grid=grid)
    # getRotationMatrix2D turns counter-clockwise on screen: +x towards -y, a negative angle in image terms.
    assert found == pytest.approx(-turn_deg, abs=0.01)


@pytest.mark.parametrize("turn_deg", [1.0, 2.0, 2.5, -2.2, 3.0])
def test_a_grid_turned_by_degrees_is_measured_right_or_refused_never_wrong(turn_deg: float) -> None:
    # A 30.5 px pitch: beyond 1.34 deg the far bands' street shift passes half a pitch, which used to read a turn
    # of 2.0 deg as 0.69 (no error). The close bands now say which pitch; where the two directions disagree, the
    # turn is refused by name.
    geometry = WaferGeometry((1024.0, 1024.0), 930.0, 270.0, (30.5, 30.5), (7.0, 11.0), 5.0)
    image, _ = render_wafer_geometry(geometry, size_px=2048, noise_grey=3.0, seed=4)
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((1024.0, 1024.0), turn_deg, 1.0), (2048, 2048),
                            flags=cv2.INTER_LINEAR)
    try:
        grid = find_die_grid(turned, centre_xy_px=(1024.0, 1024.0), radius_px=930.0)
        found = grid_angle_deg(turned, centre_xy_px=(1024.0, 1024.0), radius_px=930.0, grid=grid)
    except GridError as exc:
        assert "street" in str(exc) or "turn is not measured" in str(exc)
        return
    assert found == pytest.approx(-turn_deg, abs=0.05)


def _grid_frame(pitch_px: float, seed: int, *, size: int = 1024, tall_content: bool = False
                ) -> tuple[np.ndarray, float]:
    """A renderer of its own (not the project's): 3 px streets at a sub-pixel pitch (supersampled), dies with a
    dark pad and a block at the same place in every die, a 15% illumination gradient, blur 0.8 px, noise 3.
    ``tall_content``: instead, a column of dark pads down 60% of each die's height beside its street and a bright
    block down 40% of it, as real dies have."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, pitch_px)
    factor = 4
    coordinate = (np.arange(size * factor) + 0.5) / factor - 0.5
    street = (np.mod(coordinate - start, pitch_px) < 3.0).astype(np.float64).reshape(size, factor).mean(axis=1)
    share = np.mod(np.arange(size) - start, pitch_px) / pitch_px  # where in its die each pixel row/column lies
    image = np.full((size, size), 180.0)
    if tall_content:
        image[np.ix_((share > 0.2) & (share < 0.8), (share > 0.12) & (share < 0.22))] = 90  # a column of pads
        image[np.ix_((share > 0.3) & (share < 0.7), (share > 0.6) & (share < 0.85))] = 230  # a bright block
    else:
        image[np.ix_((share > 0.2) & (share < 0.35), (share > 0.45) & (share < 0.6))] = 90  # a pad
        image[np.ix_((share > 0.6) & (share < 0.85), (share > 0.2) & (share < 0.4))] = 120  # a block
    streets = np.maximum(street[None, :], street[:, None])
    image = image * (1 - streets) + 60 * streets
    image *= 1 + 0.15 * np.linspace(-0.5, 0.5, size)[None, :] + 0.075 * np.linspace(-0.5, 0.5, size)[:, None]
    image = cv2.GaussianBlur(image, (0, 0), 0.8) + rng.normal(0, 3, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8), start + 1.5  # the street centre


@pytest.mark.parametrize("pitch_px", [16.51, 19.51, 20.51, 27.5, 33.0, 47.2, 60.0])
def test_pitch_and_origin_hold_for_sub_pixel_pitches_gradients_and_dies_with_content(pitch_px: float) -> None:
    for seed in range(2):
        image, street_centre = _grid_frame(pitch_px, seed)
        grid = find_die_grid(image, centre_xy_px=(512, 512), radius_px=700)
        for axis in (0, 1):  # never a multiple of the pitch, never half a pixel off
            assert abs(grid.pitch_xy_px[axis] - pitch_px) <= 0.05
            offset = (grid.origin_xy_px[axis] - street_centre + pitch_px / 2) % pitch_px - pitch_px / 2
            assert abs(offset) <= 0.2


@pytest.mark.parametrize("pitch_px", [16.51, 20.51, 27.5, 33.0, 47.2, 60.0])
def test_the_origin_of_a_straight_grid_holds_with_content_down_most_of_a_die(pitch_px: float) -> None:
    # A column of pads beside the street read as street at the 75th percentile: origin off by up to 1.2 px. Once
    # the grid is turned straight (the lot chain's second search), its streets are told from such content.
    for seed in range(2):
        image, street_centre = _grid_frame(pitch_px, seed, tall_content=True)
        grid = find_die_grid(image, centre_xy_px=(512, 512), radius_px=700, straight=True)
        for axis in (0, 1):
            assert abs(grid.pitch_xy_px[axis] - pitch_px) <= 0.05
            offset = (grid.origin_xy_px[axis] - street_centre + pitch_px / 2) % pitch_px - pitch_px / 2
            assert abs(offset) <= 0.2
