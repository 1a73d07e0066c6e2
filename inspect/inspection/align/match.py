"""Template matching with rotation and subpixel refinement (the contract of HALCON's ``find_shape_model``).

A pyramid keeps it fast: every angle of the range is tried on the coarsest level (normalised correlation,
the template turned with a mask so its corners do not count), the best pose is then followed down the
levels in a small neighbourhood of position and angle, and ECC (enhanced correlation coefficient, rigid)
refines it to a fraction of a pixel and a hundredth of a degree on the full-resolution image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspection.align import AlignmentError, grey_spread


@dataclass(frozen=True)
class Match:
    """Where the template's centre lies in the image, how far it is turned, and how well it matches.

    Falsy when no match was found; ``reason`` then says why (HALCON returns empty tuples instead).
    """

    row: float
    column: float
    angle_deg: float
    """Counter-clockwise on screen (OpenCV's sense)."""
    score: float
    reason: str = ""

    def __bool__(self) -> bool:
        return not self.reason


def _turned(template: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """The template turned about its centre on a canvas large enough to hold it, with the mask of its pixels."""
    height, width = template.shape
    side = int(np.ceil(np.hypot(height, width))) | 1
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle_deg, 1.0)
    matrix[:, 2] += ((side - width) / 2, (side - height) / 2)
    turned = cv2.warpAffine(template, matrix, (side, side), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full_like(template, 255), matrix, (side, side), flags=cv2.INTER_NEAREST)
    return turned, cv2.erode(mask, np.ones((3, 3), np.uint8))


def _best(image: np.ndarray, template: np.ndarray, angles: np.ndarray) -> tuple[float, float, float, float]:
    """(score, centre x, centre y, angle) of the best normalised correlation over ``angles``."""
    best = (-2.0, 0.0, 0.0, 0.0)
    for angle in angles:
        turned, mask = _turned(template, float(angle))
        if turned.shape[0] > image.shape[0] or turned.shape[1] > image.shape[1]:
            continue
        scores = cv2.matchTemplate(image, turned, cv2.TM_CCOEFF_NORMED, mask=mask)
        scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
        _, value, _, (x, y) = cv2.minMaxLoc(scores)
        if value > best[0]:
            best = (float(value), x + (turned.shape[1] - 1) / 2, y + (turned.shape[0] - 1) / 2, float(angle))
    return best


def find_template(image: np.ndarray, template: np.ndarray, *, angle_range_deg: tuple[float, float] = (-10.0, 10.0),
                  min_score: float = 0.6, levels: int | None = None) -> Match:
    """The best placement of ``template`` in ``image``: pyramid search over angles, then ECC subpixel refinement.

    Parameters
    ----------
    image, template : 2-D uint8 ndarray
        Grey; the template smaller than the image.
    angle_range_deg : tuple of float, optional
        Turns searched, in degrees.
    min_score : float, optional
        Lowest acceptable normalised correlation.
    levels : int, optional
        Pyramid levels; default: as many as keep the template at least about 24 px across.

    Returns
    -------
    Match
        Centre row and column (subpixel), angle in degrees and score; falsy, with its reason, when nothing
        reaches ``min_score``.
    """
    if image.ndim != 2 or template.ndim != 2:
        raise AlignmentError(f"image and template must be grey (2-D); got shapes {image.shape} and {template.shape}")
    if template.shape[0] > image.shape[0] or template.shape[1] > image.shape[1]:
        raise AlignmentError(f"the template ({template.shape[1]}x{template.shape[0]} px) is larger than the image "
                             f"({image.shape[1]}x{image.shape[0]} px)")
    if grey_spread(template) < 1.0:
        return Match(0.0, 0.0, 0.0, 0.0, reason="the template is blank: nothing to match on")
    if grey_spread(image) < 1.0:
        return Match(0.0, 0.0, 0.0, 0.0, reason="the image is blank")
    if levels is None:  # coarsest level keeps the template at least ~24 px across
        levels = max(0, int(np.log2(min(template.shape) / 24)))
    images, templates = [image.astype(np.float32)], [template.astype(np.float32)]
    for _ in range(levels):
        images.append(cv2.pyrDown(images[-1]))
        templates.append(cv2.pyrDown(templates[-1]))
    low, high = angle_range_deg
    top_radius = np.hypot(*templates[-1].shape) / 2
    step = float(np.degrees(1.0 / top_radius))  # one pixel of arc at the template's rim
    score, x, y, angle = _best(images[-1], templates[-1], np.arange(low, high + step / 2, step))
    for level in range(levels - 1, -1, -1):
        step /= 2
        x, y = 2 * x + 0.5, 2 * y + 0.5  # pyrDown halves about pixel centres
        level_image, level_template = images[level], templates[level]
        half = int(np.ceil(np.hypot(*level_template.shape) / 2)) + 3
        left, top = max(0, int(x) - half), max(0, int(y) - half)
        window = level_image[top : int(y) + half + 1, left : int(x) + half + 1]
        score, wx, wy, angle = _best(window, level_template, np.array([angle - step, angle, angle + step]))
        x, y = wx + left, wy + top
    if score < min_score:
        return Match(y, x, angle, score, reason=f"best correlation {score:.3f} < min_score {min_score}")
    return _refine(image, template, x=x, y=y, angle_deg=angle, score=score)


def _refine(image: np.ndarray, template: np.ndarray, *, x: float, y: float, angle_deg: float, score: float) -> Match:
    """ECC (rigid) of the template against the image around the pose found: subpixel position and angle."""
    height, width = template.shape
    # ECC's warp maps template coordinates to image coordinates: turn about the template centre, then move.
    forward = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle_deg, 1.0).astype(np.float32)
    forward[:, 2] += (x - (width - 1) / 2, y - (height - 1) / 2)
    try:
        refined_score, forward = cv2.findTransformECC(
            template.astype(np.float32), image.astype(np.float32), forward, cv2.MOTION_EUCLIDEAN,
            (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-6), None, 3)
    except cv2.error:
        return Match(y, x, angle_deg, score)  # ECC gave up: the pyramid's pose stands
    centre = forward @ np.array([(width - 1) / 2, (height - 1) / 2, 1.0])
    refined_angle = float(np.degrees(np.arctan2(forward[0, 1], forward[0, 0])))
    return Match(float(centre[1]), float(centre[0]), refined_angle, float(refined_score))


def fiducial_homography(image: np.ndarray, fiducial: np.ndarray, nominal_xy_px: np.ndarray, *,
                        search_radius_px: float, min_score: float = 0.7) -> tuple[np.ndarray, list[Match]]:
    """Homography from a panel's nominal coordinates to the image, from its fiducial marks.

    Each fiducial is searched (rotation-aware, subpixel) within ``search_radius_px`` of its nominal position;
    at least four must be found.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        The panel.
    fiducial : (h, w) uint8 ndarray
        The mark's template.
    nominal_xy_px : (N, 2) ndarray
        Where the marks should be, (x, y) in pixels; N >= 4.
    search_radius_px : float
        How far from its nominal position a mark is searched.
    min_score : float, optional
        Lowest acceptable correlation of a mark.

    Returns
    -------
    homography : (3, 3) float ndarray
        Maps nominal (x, y, 1) to image coordinates.
    matches : list of Match
        One per mark, in order (a mark outside the image or not found is a falsy Match with its reason).

    Raises
    ------
    AlignmentError
        Naming the marks that were not found.
    """
    nominal = np.asarray(nominal_xy_px, np.float64).reshape(-1, 2)
    if len(nominal) < 4:
        raise AlignmentError(f"a homography needs at least 4 fiducials, {len(nominal)} given")
    half = int(np.ceil(search_radius_px + np.hypot(*fiducial.shape) / 2))
    matches, found, targets = [], [], []
    for index, (x, y) in enumerate(nominal):
        left, top = max(0, int(x) - half), max(0, int(y) - half)
        window = image[top : int(y) + half + 1, left : int(x) + half + 1]
        if window.shape[0] < fiducial.shape[0] or window.shape[1] < fiducial.shape[1]:
            matches.append(Match(0.0, 0.0, 0.0, 0.0, reason=f"fiducial {index} at ({x:.0f}, {y:.0f}) is outside "
                                 "the image"))
            continue
        match = find_template(window, fiducial, min_score=min_score)
        match = Match(match.row + top, match.column + left, match.angle_deg, match.score, match.reason)
        matches.append(match)
        if match:
            found.append((match.column, match.row))
            targets.append((x, y))
    missing = [f"{i}: {m.reason}" for i, m in enumerate(matches) if not m]
    if len(found) < 4:
        raise AlignmentError(f"only {len(found)} of {len(nominal)} fiducials found ({'; '.join(missing)})")
    homography, _ = cv2.findHomography(np.array(targets), np.array(found), 0)
    return homography, matches
