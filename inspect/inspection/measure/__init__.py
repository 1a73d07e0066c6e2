"""Measurement: golden-template comparison, candidate regions with calibrated features and their crops.

The comparison is a variation model: each pixel of the aligned frame must stay within the reference's
local min/max over a small window (the band absorbs residual misalignment and edge jitter) plus a grey-level
tolerance. Pixels outside form candidate regions, measured in micrometres through the pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspection.types import Region

__all__ = ["DifferenceSettings", "ToleranceBand", "candidate_crops", "crop_squares", "deviation", "dies",
           "difference_regions", "grid", "metrology", "regions", "tolerance_band"]
"""Candidates of a part here; the dies of a wafer in ``dies``, the die grid in ``grid``, calibrated metrology
(blobs, subpixel edges, line and circle fits) in ``metrology``."""


@dataclass(frozen=True)
class DifferenceSettings:
    """How a registered part is compared with its golden (:func:`difference_regions`): all sizes in pixels."""

    band_px: int
    """Half-side of the window over which the golden's local min/max make the tolerance band."""
    tolerance_grey: float
    """Grey levels the band is widened by."""
    open_px: int = 0
    """Side of the opening that removes slivers (0: none)."""
    close_px: int = 0
    """Side of the closing that joins the pieces of one defect (0: none)."""
    min_area_px: int = 1
    """Smaller regions are dropped."""
    min_side_px: int = 1
    """Regions whose box is narrower than this either way are dropped."""
    edge_zone_px: int = 0
    """Within this distance of the golden's edges the opening is ``edge_open_px`` instead (0: no edge zone)."""
    edge_open_px: int = 0
    edge_keep_min_area_px: int = 0
    edge_keep_max_side_px: int = 0
    """Pieces of at least ``edge_keep_min_area_px`` and at most ``edge_keep_max_side_px`` either way are spared
    the edge zone's opening (0: none are)."""


@dataclass(frozen=True)
class ToleranceBand:
    """Per-pixel grey limits derived from a golden reference (H x W uint8): a pixel leaves the band when it is
    below ``lower`` or above ``upper``."""

    lower: np.ndarray
    upper: np.ndarray


def tolerance_band(reference: np.ndarray, *, band_px: int, tolerance_grey: float) -> ToleranceBand:
    """The 8-bit reference's local min/max over a (2*band_px+1)^2 window, widened by ``tolerance_grey``.

    Pixels are whole grey levels, so leaving [min - t, max + t] is leaving [min - floor(t), max + floor(t)]:
    the band is kept in 8 bits (saturating at 0 and 255), where OpenCV's saturating arithmetic is fastest.

    Parameters
    ----------
    reference : (H, W) uint8 ndarray
        The registered golden, in the image's coordinates.
    band_px : int
        Half-width of the window, in pixels: how far an edge may sit from where the golden has it.
    tolerance_grey : float
        Grey levels allowed beyond the window's min and max.

    Returns
    -------
    ToleranceBand
        ``low`` and ``high``, (H, W) uint8.
    """
    kernel = np.ones((2 * band_px + 1, 2 * band_px + 1), np.uint8)
    whole = int(np.floor(tolerance_grey))
    return ToleranceBand(cv2.subtract(cv2.erode(reference, kernel), whole),
                         cv2.add(cv2.dilate(reference, kernel), whole))


def deviation(image: np.ndarray, band: ToleranceBand) -> np.ndarray:
    """By how many grey levels each pixel of ``image`` leaves the band.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        The part, registered to the band's reference.
    band : ToleranceBand
        From :func:`tolerance_band`.

    Returns
    -------
    (H, W) int16 ndarray
        Positive above the band, negative below, 0 inside.
    """
    brighter = cv2.subtract(image, band.upper)  # saturates at 0 inside the band
    darker = cv2.subtract(band.lower, image)
    return cv2.subtract(brighter, darker, dtype=cv2.CV_16S)


def regions(deviation_map: np.ndarray, *, mask: np.ndarray | None = None, min_area_px: int,
            pixel_size_um: float, min_side_px: int = 1) -> tuple[Region, ...]:
    """Connected regions (8-connectivity), largest first, with calibrated features.

    Parameters
    ----------
    deviation_map : (H, W) ndarray
        Signed grey-level deviation (as :func:`deviation` gives); each region's mean and largest deviation
        are read from it.
    mask : (H, W) uint8 or bool ndarray, optional
        Non-zero inside the regions; default: where the deviation is not zero.
    min_area_px : int
        Smaller regions are dropped.
    pixel_size_um : float
        Side of one pixel on the part, in micrometres, for ``area_um2``.
    min_side_px : int, optional
        Regions whose box is narrower than this either way are dropped.

    Returns
    -------
    tuple of Region
        Boxes and centroids in pixels of ``deviation_map``.
    """
    pieces = (deviation_map != 0).astype(np.uint8) if mask is None else mask.astype(np.uint8, copy=False)
    if not cv2.countNonZero(pieces):
        return ()
    # Label only the bounding box of what deviates (most of a frame does not), with the block-based algorithm:
    # a third of the default's time here, and the same labels in the same (raster) order.
    left, top, box_width, box_height = cv2.boundingRect(pieces)
    count, labels, stats, centroids = cv2.connectedComponentsWithStatsWithAlgorithm(
        pieces[top : top + box_height, left : left + box_width], 8, cv2.CV_32S, cv2.CCL_BBDT)
    found = []
    for label in range(1, count):
        area = int(stats[label, cv2.CC_STAT_AREA])
        width, height = int(stats[label, cv2.CC_STAT_WIDTH]), int(stats[label, cv2.CC_STAT_HEIGHT])
        if area < min_area_px or min(width, height) < min_side_px:
            continue
        x, y = int(stats[label, cv2.CC_STAT_LEFT]), int(stats[label, cv2.CC_STAT_TOP])
        values = deviation_map[top + y : top + y + height, left + x : left + x + width][
            labels[y : y + height, x : x + width] == label]
        x, y = x + left, y + top
        found.append(Region(
            label=label, area_px=area, area_um2=area * pixel_size_um**2, box_xyxy_px=(x, y, x + width, y + height),
            centroid_xy_px=(float(centroids[label, 0]) + left, float(centroids[label, 1]) + top),
            mean_diff=float(values.mean()), max_abs_diff=float(np.abs(values).max()),
        ))
    return tuple(sorted(found, key=lambda r: r.area_px, reverse=True))


def difference_regions(image: np.ndarray, reference: np.ndarray, *, valid: np.ndarray,
                       settings: DifferenceSettings, pixel_size_um: float) -> tuple[Region, ...]:
    """Candidate defect regions where a registered ``image`` leaves its ``reference``'s tolerance band.

    An opening of ``open_px`` removes the one-pixel slivers that registration leaves along edges; a closing of
    ``close_px`` joins the pieces of one defect (a mouse-bite's bites, a broken spur) into one region. Within
    ``edge_zone_px`` of the reference's edges the opening is ``edge_open_px`` instead (0: no edge zone): an edge
    that sits a pixel or two elsewhere from scan to scan leaves strips along it that a small rotation joins
    into long false candidates, swallowing the real defects they touch. A compact piece (at least
    ``edge_keep_min_area_px`` after the plain opening and no longer than ``edge_keep_max_side_px`` either way; 0:
    none) is spared the edge zone's opening: a shallow mouse-bite or a hairline open on a track's edge is as thin
    as a jitter strip but short, where a strip runs along the edge.

    Parameters
    ----------
    image, reference : (H, W) uint8 ndarray
        The part and its golden drawn in the part's coordinates.
    valid : (H, W) bool ndarray
        Where the golden covers the part (outside, nothing is compared).
    settings : DifferenceSettings
        The tolerance band (:func:`tolerance_band`), the opening and closing, the smallest region and the edge
        zone, as above.
    pixel_size_um : float
        Micrometres per pixel, for ``area_um2``.

    Returns
    -------
    tuple of Region
        Largest first, in the image's pixel coordinates.
    """
    open_px, edge_zone_px, max_side_px = settings.open_px, settings.edge_zone_px, settings.edge_keep_max_side_px
    deviation_map = deviation(image, tolerance_band(reference, band_px=settings.band_px,
                                                    tolerance_grey=settings.tolerance_grey))
    # Masks are uint8 and combined with OpenCV's bitwise operations: numpy's boolean algebra and fancy
    # indexing over the whole frame cost more than the morphology itself.
    deviating = cv2.bitwise_and(cv2.compare(deviation_map, 0, cv2.CMP_NE), valid.view(np.uint8))  # 0 or 1
    mask = _opened(deviating, open_px)
    if edge_zone_px > 0:
        window = np.ones((2 * edge_zone_px + 1, 2 * edge_zone_px + 1), np.uint8)
        # An edge is where the reference varies by more than the grey tolerance within the window.
        spread = cv2.subtract(cv2.dilate(reference, window), cv2.erode(reference, window))
        near_edge = cv2.compare(spread, float(settings.tolerance_grey), cv2.CMP_GT)  # 0 or 255
        if max_side_px > 0:
            # Pieces that survive a 2 px opening lie at least 3 px apart, one per 3x3 cell: on frames of
            # up to about 766 x 766 px, 16-bit labels suffice and halve the labelling's cost.
            cells = -(-mask.shape[0] // 3) * -(-mask.shape[1] // 3)
            label_type = cv2.CV_16U if open_px >= 2 and cells < 2**16 else cv2.CV_32S
            _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=label_type)
            longest_side_px = stats[:, [cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]].max(axis=1)
            compact = (stats[:, cv2.CC_STAT_AREA] >= settings.edge_keep_min_area_px) & (longest_side_px <= max_side_px)
            compact[0] = False  # the background
            for label in np.flatnonzero(compact):  # few and small: marked box by box, not by a whole-frame lookup
                x, y = stats[label, cv2.CC_STAT_LEFT], stats[label, cv2.CC_STAT_TOP]
                box = (slice(y, y + stats[label, cv2.CC_STAT_HEIGHT]), slice(x, x + stats[label, cv2.CC_STAT_WIDTH]))
                near_edge[box][labels[box] == label] = 0
        mask = cv2.bitwise_or(cv2.bitwise_and(_opened(deviating, settings.edge_open_px), near_edge),
                              cv2.bitwise_and(mask, cv2.bitwise_not(near_edge)))
    if settings.close_px > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((settings.close_px,) * 2, np.uint8))
    # Pixels the closing added between pieces belong to the region (with no deviation of their own).
    return regions(deviation_map, mask=mask, min_area_px=settings.min_area_px, pixel_size_um=pixel_size_um,
                   min_side_px=settings.min_side_px)


def _opened(mask: np.ndarray, size_px: int) -> np.ndarray:
    """``mask`` without the parts narrower than a size_px square (unchanged for sizes below 2)."""
    if size_px <= 1:
        return mask
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((size_px, size_px), np.uint8))


def crop_squares(boxes: np.ndarray, *, size: tuple[int, int], context: float, min_side_px: int) -> np.ndarray:
    """Square crops centred on each box, inside the image.

    Parameters
    ----------
    boxes : (N, 4) ndarray
        Candidate boxes, xyxy in pixels.
    size : tuple of int
        The image's (height, width).
    context : float
        A crop's side as a multiple of its box's longer side.
    min_side_px : int
        The smallest side of a crop, in pixels.

    Returns
    -------
    (N, 4) int ndarray
        The crops, xyxy in pixels; each is moved inside the image (and shrunk only when the image is smaller).
    """
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    height, width = size
    longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    side = np.minimum(np.maximum(min_side_px, np.round(context * longer)), min(height, width)).astype(int)
    centre_x = ((boxes[:, 0] + boxes[:, 2]) / 2).astype(int)
    centre_y = ((boxes[:, 1] + boxes[:, 3]) / 2).astype(int)
    left = np.clip(centre_x - side // 2, 0, width - side)
    top = np.clip(centre_y - side // 2, 0, height - side)
    return np.stack([left, top, left + side, top + side], axis=1)


def candidate_crops(image: np.ndarray, reference: np.ndarray, boxes: np.ndarray, *, context: float,
                    min_side_px: int) -> list[np.ndarray]:
    """One crop per candidate box: (image, reference, |difference|), the three as the channels of a BGR picture.

    Each crop is the square of :func:`crop_squares`, so a classifier sees the candidate, the golden at the same
    place and where they differ.

    Parameters
    ----------
    image, reference : (H, W) uint8 ndarray
        The part and its golden drawn in the part's coordinates.
    boxes : (N, 4) ndarray
        Candidate boxes, xyxy in pixels.
    context : float
        A crop's side as a multiple of its box's longer side.
    min_side_px : int
        The smallest side of a crop, in pixels.

    Returns
    -------
    list of (h, w, 3) uint8 ndarray
        N crops, each of its own size (the classifier resizes them).
    """
    stacked = np.dstack([image, reference, cv2.absdiff(image, reference)])
    squares = crop_squares(boxes, size=image.shape, context=context, min_side_px=min_side_px)
    return [stacked[y0:y1, x0:x1] for x0, y0, x1, y1 in squares]


def background_boxes(size: tuple[int, int], avoid: np.ndarray, count: int, *, rng: np.random.Generator,
                     side_px: tuple[int, int] = (4, 24), valid: np.ndarray | None = None) -> np.ndarray:
    """Up to ``count`` random boxes that touch none of ``avoid``: where image and golden agree, what a candidate
    that is no defect looks like when cut (the ``good`` examples of a classifier's training folder).

    Parameters
    ----------
    size : (int, int)
        The image's height and width in pixels.
    avoid : (M, 4) ndarray
        Boxes, xyxy in pixels, that no returned box may overlap (defects, candidates).
    count : int
        How many boxes to return; fewer when the free space does not hold them within 50 tries each.
    rng : numpy.random.Generator
        The random source (seed it for a reproducible folder).
    side_px : (int, int), optional
        The smallest and largest side of a box, in pixels.
    valid : (H, W) bool ndarray, optional
        Where the golden covers the image; a box's centre must lie there.

    Returns
    -------
    (N, 4) float ndarray
        N <= ``count`` boxes, xyxy in pixels.
    """
    height, width = size
    avoid = np.asarray(avoid, float).reshape(-1, 4)
    found: list[list[float]] = []
    for _ in range(50 * count):
        if len(found) == count:
            break
        side_x, side_y = rng.integers(side_px[0], side_px[1] + 1, size=2)
        if side_x >= width or side_y >= height:
            break
        x0, y0 = int(rng.integers(0, width - side_x)), int(rng.integers(0, height - side_y))
        x1, y1 = x0 + int(side_x), y0 + int(side_y)
        if valid is not None and not valid[(y0 + y1) // 2, (x0 + x1) // 2]:
            continue
        touches = ((x0 < avoid[:, 2]) & (avoid[:, 0] < x1) & (y0 < avoid[:, 3]) & (avoid[:, 1] < y1)).any()
        if not touches:
            found.append([x0, y0, x1, y1])
            avoid = np.vstack([avoid, found[-1]])
    return np.array(found, float).reshape(-1, 4)
