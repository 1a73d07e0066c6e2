"""Alignment: bring a preprocessed frame into the reference's coordinates.

Phase correlation gives the subpixel translation of a frame against its golden reference (parts on a
fixture or stage move by a few pixels between shots). ``register_rigid`` adds rotation: a pyramid
correlation search over angles refined by ECC, for boards that sit up to a degree or so off their golden
template. Wafer edge/notch alignment joins this module with the classical-measurement work.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspection.recipe import AlignSettings
from inspection.types import InspectionError

__all__ = ["AlignedFrame", "AlignmentError", "PhaseReference", "RigidFit", "align_to_golden", "estimate_shift",
           "grey_spread", "match", "register", "register_rigid", "wafer", "warp_reference"]
"""The registration of a part to its golden here; template matching in ``match``, wafer edge and notch in ``wafer``."""


class AlignmentError(InspectionError, ValueError):
    """The frame could not be registered to its reference; the message says why."""


class PhaseReference:
    """A reference prepared once for phase correlation: its Hann-windowed spectrum, kept for every frame.

    OpenCV's ``phaseCorrelate`` transforms both images and builds the window on every call; a line compares
    every frame with the same golden, so half of that work is done once here. The result is the same (the
    normalised cross-power spectrum's peak, its 5 x 5 weighted centroid for the subpixel shift, and the sum
    of that neighbourhood as the response).
    """

    def __init__(self, reference: np.ndarray, *, scale: float = 1.0) -> None:
        self.shape = reference.shape
        self.scale = scale
        """Correlate images resized by this factor (0.5: a quarter of the pixels, about 0.2 px accuracy)."""
        scaled = self._scaled(reference)
        self.window = cv2.createHanningWindow((scaled.shape[1], scaled.shape[0]), cv2.CV_32F)
        self.spectrum = cv2.dft(scaled.astype(np.float32) * self.window, flags=cv2.DFT_COMPLEX_OUTPUT)

    def _scaled(self, image: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return image
        size = (max(8, round(image.shape[1] * self.scale)), max(8, round(image.shape[0] * self.scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def shift_of(self, image: np.ndarray) -> tuple[float, float, float]:
        """Where ``image`` sits relative to the reference.

        Parameters
        ----------
        image : (H, W) ndarray
            Grey image of the reference's size.

        Returns
        -------
        dx, dy : float
            Shift in pixels (the image's content is the reference's moved by it).
        response : float
            The correlation peak's strength: about 1 for a clean match, near 0 for none.

        Raises
        ------
        AlignmentError
            When the sizes differ (both named).
        """
        if image.shape != self.shape:
            raise AlignmentError(f"frame is {image.shape[1]}x{image.shape[0]} px but the reference is "
                                 f"{self.shape[1]}x{self.shape[0]} px")
        spectrum = cv2.dft(self._scaled(image).astype(np.float32) * self.window, flags=cv2.DFT_COMPLEX_OUTPUT)
        cross = cv2.mulSpectrums(spectrum, self.spectrum, 0, conjB=True)
        magnitude = cv2.magnitude(cross[..., 0], cross[..., 1])
        cross /= (magnitude + np.float32(1e-12))[..., None]
        surface = cv2.idft(cross, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
        _, _, _, (peak_x, peak_y) = cv2.minMaxLoc(surface)
        height, width = surface.shape
        offsets = np.arange(-2, 3)
        patch = surface[np.ix_((peak_y + offsets) % height, (peak_x + offsets) % width)]
        response = float(patch.sum())
        dx = peak_x + float(patch.sum(axis=0) @ offsets) / response
        dy = peak_y + float(patch.sum(axis=1) @ offsets) / response
        # The surface wraps around: a peak past the middle is a negative shift.
        dx, dy = (dx - width if dx > width / 2 else dx), (dy - height if dy > height / 2 else dy)
        return dx / self.scale, dy / self.scale, response


def estimate_shift(image: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """Where ``image`` sits relative to ``reference``, by phase correlation.

    Parameters
    ----------
    image, reference : (H, W) ndarray
        Grey images of one size.

    Returns
    -------
    dx, dy : float
        Shift in pixels.
    response : float
        Phase correlation's normalised peak in [0, 1]; low values mean no reliable match.
    """
    return PhaseReference(reference).shift_of(image)  # which refuses images of another size


@dataclass(frozen=True)
class RigidFit:
    """A rotation + translation that maps image pixel coordinates onto the reference's."""

    matrix: np.ndarray
    """2x3: reference (x, y) = matrix @ (x, y, 1) of the image."""
    score: float
    """Correlation coefficient of the registered pair in [-1, 1] (ECC's, or the coarse search's)."""

    @property
    def angle_deg(self) -> float:
        """How far the image is turned against the reference, counter-clockwise on screen (OpenCV's sense)."""
        return float(np.degrees(np.arctan2(self.matrix[1, 0], self.matrix[0, 0])))

    @property
    def shift_px(self) -> tuple[float, float]:
        """The translation part of ``matrix`` (image -> reference), in pixels."""
        return float(self.matrix[0, 2]), float(self.matrix[1, 2])


def grey_spread(image: np.ndarray) -> float:
    """Standard deviation of the grey levels (OpenCV's one pass: numpy's ``std`` copies the frame to float64).

    Parameters
    ----------
    image : (H, W) ndarray
        Grey image.

    Returns
    -------
    float
        In grey levels; near 0 for a blank frame.
    """
    return float(cv2.meanStdDev(image)[1][0, 0])


def _scaled(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image.astype(np.float32)
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32)


def _coarse_rigid(image: np.ndarray, reference: np.ndarray, *, max_shift_px: float, max_angle_deg: float,
                  scale: float) -> RigidFit:
    """Best (angle, shift) by normalised cross-correlation on a 1/8 pyramid level over a grid of angles."""
    small_image, small_reference = _scaled(image, scale), _scaled(reference, scale)
    height, width = small_image.shape
    margin = int(np.ceil(max_shift_px * scale)) + 1
    centre = (width / 2, height / 2)
    best = (-2.0, 0.0, 0.0, 0.0)
    for angle in np.arange(-max_angle_deg, max_angle_deg + 1e-9, 0.5):
        rotated = cv2.warpAffine(small_reference, cv2.getRotationMatrix2D(centre, float(angle), 1.0), (width, height),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        template = rotated[margin : height - margin, margin : width - margin]
        if grey_spread(template) < 1e-3:
            continue
        _, value, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(small_image, template, cv2.TM_CCOEFF_NORMED))
        if value > best[0]:
            best = (value, float(angle), (x - margin) / scale, (y - margin) / scale)
    value, angle, dx, dy = best
    # The image is the reference rotated by `angle` about the centre, then moved by (dx, dy); invert that.
    forward = np.vstack([cv2.getRotationMatrix2D((reference.shape[1] / 2, reference.shape[0] / 2), angle, 1.0),
                         [0.0, 0.0, 1.0]])
    forward[:2, 2] += (dx, dy)
    return RigidFit(np.linalg.inv(forward)[:2].astype(np.float32), float(value))


# (pyramid scale, ECC iterations, ECC Gaussian smoothing): coarse levels catch tens of pixels and a degree,
# the half-resolution level reaches subpixel accuracy; full resolution would triple the cost for little gain.
# Two steps at half resolution: four moved DeepPCB fits by at most 0.005 px and cost 2.3 ms more a board.
_ECC_LEVELS = ((0.125, 50, 5), (0.25, 30, 5), (0.5, 2, 5))


def register_rigid(image: np.ndarray, reference: np.ndarray, *, max_shift_px: float = 24.0,
                   max_angle_deg: float = 1.5, min_score: float = 0.5) -> RigidFit:
    """Register a grey ``image`` to its ``reference`` of the same size: rotation and translation, subpixel.

    A coarse normalised-correlation search over angles on a 1/8 pyramid level starts ECC (enhanced
    correlation coefficient) maximisation, refined level by level.

    Parameters
    ----------
    image, reference : (H, W) uint8 ndarray
        The part and its golden, grey, of one size.
    max_shift_px : float, optional
        Largest translation searched, in pixels.
    max_angle_deg : float, optional
        Largest rotation searched, in degrees either way.
    min_score : float, optional
        Lowest acceptable ECC correlation.

    Returns
    -------
    RigidFit
        The 2 x 3 matrix that maps the image's coordinates to the reference's, and the score.

    Raises
    ------
    AlignmentError
        Naming the reason, for different sizes, a blank image or a pair that does not correlate.
    """
    if image.shape != reference.shape or image.ndim != 2:
        raise AlignmentError(f"image is {'x'.join(map(str, image.shape[::-1]))} px but the reference is "
                             f"{'x'.join(map(str, reference.shape[::-1]))} px; both must be grey and the same size")
    if grey_spread(reference) < 1.0:
        # A featureless reference (a bare board) looks the same at every shift: any fit is as good as none.
        return RigidFit(np.eye(2, 3, dtype=np.float32), 1.0)
    if (spread := grey_spread(image)) < 1.0:
        raise AlignmentError(f"the image is blank (grey-level spread {spread:.2f}) but its reference "
                             "is not; nothing to register on")
    fit = _coarse_rigid(image, reference, max_shift_px=max_shift_px, max_angle_deg=max_angle_deg,
                        scale=_ECC_LEVELS[0][0])
    warp = fit.matrix.copy()
    score = fit.score
    centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
    for scale, iterations, smoothing in _ECC_LEVELS:
        level = warp.copy()
        level[:, 2] *= scale
        try:
            score, level = cv2.findTransformECC(
                _scaled(image, scale), _scaled(reference, scale), level, cv2.MOTION_EUCLIDEAN,
                (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations, 1e-4), None, smoothing)
        except cv2.error:
            # ECC gives up on nearly featureless pairs; the coarse search's answer is the best there is.
            return _checked(fit, min_score=min_score)
        warp = level.copy()
        warp[:, 2] /= scale
    refined = RigidFit(warp, float(score))
    if not _within(refined, centre=centre, max_shift_px=max_shift_px, max_angle_deg=max_angle_deg):
        # ECC can slide along periodic structure (parallel tracks) to a far, equally good fit; the coarse
        # search stayed within the range.
        refined = fit
    return _checked(refined, min_score=min_score)


def _within(fit: RigidFit, *, centre: np.ndarray, max_shift_px: float, max_angle_deg: float) -> bool:
    """Whether the fit turns and moves the image centre no further than the search range (with some slack)."""
    centre_shift_px = fit.matrix[:, :2].astype(float) @ centre + fit.matrix[:, 2] - centre
    return abs(fit.angle_deg) <= 1.5 * max_angle_deg and float(np.abs(centre_shift_px).max()) <= 1.5 * max_shift_px


def _checked(fit: RigidFit, *, min_score: float) -> RigidFit:
    if fit.score < min_score:
        raise AlignmentError(f"the pair cannot be registered: correlation {fit.score:.3f} < min_score {min_score}")
    return fit


def warp_reference(reference: np.ndarray, fit: RigidFit, *, margin_px: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The reference drawn in the image's coordinates.

    Parameters
    ----------
    reference : (H, W) uint8 ndarray
        The golden.
    fit : RigidFit
        As :func:`register` found it.
    margin_px : int, optional
        The coverage mask is shrunk by this many pixels, so interpolated border pixels are not compared.

    Returns
    -------
    warped : (H, W) uint8 ndarray
        The reference resampled onto the image's pixel grid (0 outside it).
    covered : (H, W) bool ndarray
        The pixels the reference covers.
    """
    height, width = reference.shape
    warped = cv2.warpAffine(reference, fit.matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    covered = cv2.warpAffine(np.full((height, width), 255, np.uint8), fit.matrix, (width, height),
                             flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
    if margin_px:
        covered = cv2.erode(covered, np.ones((2 * margin_px + 1,) * 2, np.uint8), borderType=cv2.BORDER_CONSTANT,
                            borderValue=0)
    return warped, covered > 0


def register(image: np.ndarray, reference: np.ndarray, *, settings: AlignSettings,
             prepared: PhaseReference | None = None) -> RigidFit:
    """Where the preprocessed grey ``image`` sits against its ``reference``, by the recipe's method.

    ``phase``: a subpixel translation by phase correlation, its normalised peak as the score; ``rigid``:
    rotation and translation (:func:`register_rigid`); ``none``: the fixture holds the part (identity).

    Parameters
    ----------
    image, reference : (H, W) uint8 ndarray
        The part and its golden, of one size.
    settings : AlignSettings
        The recipe's ``align`` section: method, ``max_shift_px``, ``min_score``, ``phase_scale``.
    prepared : PhaseReference, optional
        The reference's prepared spectrum, which saves transforming it again for every frame.

    Returns
    -------
    RigidFit
        Maps the image's coordinates to the reference's.

    Raises
    ------
    AlignmentError
        When the sizes differ, the score is below ``settings.min_score`` or the shift beyond
        ``settings.max_shift_px``.
    """
    if image.shape != reference.shape:
        raise AlignmentError(f"frame is {image.shape[1]}x{image.shape[0]} px but the reference is "
                             f"{reference.shape[1]}x{reference.shape[0]} px")
    if settings.method == "none":
        return RigidFit(np.eye(2, 3, dtype=np.float32), 1.0)
    if settings.method == "rigid":
        return register_rigid(image, reference, max_shift_px=settings.max_shift_px, min_score=settings.min_score)
    dx, dy, response = (prepared or PhaseReference(reference, scale=settings.phase_scale)).shift_of(image)
    if response < settings.min_score:
        raise AlignmentError(f"no reliable match to the reference (phase-correlation response {response:.3f} "
                             f"< min_score {settings.min_score})")
    if max(abs(dx), abs(dy)) > settings.max_shift_px:
        raise AlignmentError(f"shift ({dx:.1f}, {dy:.1f}) px exceeds max_shift_px {settings.max_shift_px}")
    # image(x) = reference(x - d): the reference's coordinates are the image's minus the shift.
    return RigidFit(np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]], np.float32), min(1.0, response))


@dataclass(frozen=True)
class AlignedFrame:
    """A preprocessed image registered to its golden, with the golden drawn in the image's coordinates."""

    image: np.ndarray
    """(H, W) uint8: the part as the stages judge it."""
    reference: np.ndarray
    """(H, W) uint8: the golden resampled onto the image's pixel grid."""
    valid: np.ndarray
    """(H, W) bool: the pixels the golden covers, less the margin (candidates are sought there only)."""
    fit: RigidFit


def align_to_golden(image: np.ndarray, golden: np.ndarray, *, settings: AlignSettings, margin_px: int,
                    prepared: PhaseReference | None = None) -> AlignedFrame:
    """``image`` registered to ``golden`` (:func:`register`) with the golden drawn over it (:func:`warp_reference`).

    Parameters
    ----------
    image, golden : (H, W) uint8 ndarray
        The preprocessed part and its golden, of one size.
    settings : AlignSettings
        The recipe's ``align`` section.
    margin_px : int
        The coverage mask is shrunk by this many pixels.
    prepared : PhaseReference, optional
        The golden's prepared spectrum.

    Returns
    -------
    AlignedFrame

    Raises
    ------
    AlignmentError
        As :func:`register` does.
    """
    fit = register(image, golden, settings=settings, prepared=prepared)
    reference, valid = warp_reference(golden, fit, margin_px=margin_px)
    return AlignedFrame(image, reference, valid, fit)
