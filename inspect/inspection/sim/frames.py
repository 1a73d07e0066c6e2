"""Synthetic wafer and PCB frames with injected defects and known ground truth.

One generator serves the ``sim:`` camera, the tests, the demos and (later) training data. Everything is
deterministic: frame ``index`` of ``seed`` is always the same image with the same defects.

A frame is its kind's defect-free design (the golden image), shifted by a random subpixel offset as a real
stage would place it, with defects drawn in and sensor noise added.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from inspection.types import MAX_SIM_SIZE_PX, MIN_SIM_SIZE_PX, SIM_KINDS, Defect, SimKind

WAFER_DEFECTS = ("particle", "scratch", "stain")
PCB_DEFECTS = ("open", "short", "mousebite", "spur", "copper", "pin-hole")

_WAFER_BACKGROUND, _WAFER_DIE, _WAFER_STREET, _WAFER_PAD = 20, 120, 80, 170
_PCB_SUBSTRATE, _PCB_COPPER = 40, 200
_OPTICS_SIGMA_PX = 0.8


@dataclass(frozen=True)
class _Trace:
    y_px: int
    x0_px: int
    x1_px: int
    half_width_px: int


def _wafer_design(size_px: int) -> np.ndarray:
    image = np.full((size_px, size_px), _WAFER_BACKGROUND, np.uint8)
    centre = size_px / 2
    radius = 0.46 * size_px
    yy, xx = np.mgrid[0:size_px, 0:size_px]
    on_wafer = (xx - centre + 0.5) ** 2 + (yy - centre + 0.5) ** 2 <= radius**2
    pitch = max(16, size_px // 16)
    street = max(2, pitch // 8)
    in_street = ((xx % pitch) < street) | ((yy % pitch) < street)
    pad_lo, pad_hi = pitch // 4, pitch // 4 + max(3, pitch // 5)
    in_pad = ((xx % pitch >= pad_lo) & (xx % pitch < pad_hi)) & ((yy % pitch >= pad_lo) & (yy % pitch < pad_hi))
    wafer = np.where(in_street, _WAFER_STREET, np.where(in_pad, _WAFER_PAD, _WAFER_DIE))
    image[on_wafer] = wafer[on_wafer]
    # The notch at 6 o'clock, as on a 200/300 mm wafer.
    notch = np.array(
        [[centre - 0.02 * size_px, centre + radius + 1], [centre, centre + radius - 0.03 * size_px],
         [centre + 0.02 * size_px, centre + radius + 1]], np.int32,
    )
    cv2.fillPoly(image, [notch], _WAFER_BACKGROUND)
    return image


def _pcb_traces(size_px: int) -> list[_Trace]:
    rng = np.random.default_rng(20190101)  # the board design is fixed; frames vary, the design does not
    traces = []
    y = size_px // 16
    while y < size_px - size_px // 16:
        x0 = int(rng.integers(size_px // 32, size_px // 4))
        x1 = int(rng.integers(3 * size_px // 4, size_px - size_px // 32))
        traces.append(_Trace(y, x0, x1, int(rng.integers(3, 6))))
        y += int(rng.integers(size_px // 20, size_px // 12))
    return traces


def _pcb_design(size_px: int) -> np.ndarray:
    image = np.full((size_px, size_px), _PCB_SUBSTRATE, np.uint8)
    for trace in _pcb_traces(size_px):
        cv2.rectangle(
            image, (trace.x0_px, trace.y_px - trace.half_width_px),
            (trace.x1_px, trace.y_px + trace.half_width_px), _PCB_COPPER, -1,
        )
        for x in (trace.x0_px, trace.x1_px):  # pads with drill holes at both ends
            cv2.circle(image, (x, trace.y_px), trace.half_width_px + 5, _PCB_COPPER, -1)
            cv2.circle(image, (x, trace.y_px), 2, _PCB_SUBSTRATE, -1)
    return image


@functools.lru_cache(maxsize=8)
def golden_image(kind: SimKind, *, size_px: int = 512) -> np.ndarray:
    """The defect-free image of ``kind`` at zero shift, 8-bit, read-only."""
    if kind not in SIM_KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; expected one of {', '.join(SIM_KINDS)}")
    if not MIN_SIM_SIZE_PX <= size_px <= MAX_SIM_SIZE_PX:
        raise ValueError(f"size_px must be within {MIN_SIM_SIZE_PX}..{MAX_SIM_SIZE_PX}, got {size_px}")
    design = _wafer_design(size_px) if kind == "wafer" else _pcb_design(size_px)
    image = cv2.GaussianBlur(design, (0, 0), _OPTICS_SIGMA_PX)
    image.setflags(write=False)
    return image


def _box(x0: float, y0: float, x1: float, y1: float, size_px: int) -> tuple[int, int, int, int]:
    def clip(v: float) -> int:
        return int(min(max(v, 0), size_px))

    return clip(np.floor(x0)), clip(np.floor(y0)), clip(np.ceil(x1)), clip(np.ceil(y1))


def _random_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    i = int(rng.integers(len(xs)))
    return int(xs[i]), int(ys[i])


def _draw_wafer_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> Defect:
    size = image.shape[0]
    centre, radius = size / 2, 0.40 * size
    angle, dist = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0, 1))
    x, y = centre + dist * np.cos(angle), centre + dist * np.sin(angle)
    sign = 1 if rng.uniform() < 0.5 else -1
    if kind == "particle":
        r = rng.uniform(2.5, 6.0)
        grey = int(np.clip(int(image[round(y), round(x)]) + sign * 90, 0, 255))
        cv2.circle(image, (round(x), round(y)), round(r), grey, -1)
        return Defect(kind, _box(x - r - 1, y - r - 1, x + r + 2, y + r + 2, size))
    if kind == "scratch":
        length, theta = rng.uniform(0.08, 0.25) * size, rng.uniform(0, np.pi)
        x1, y1 = x + length * np.cos(theta), y + length * np.sin(theta)
        mask = np.zeros_like(image)
        cv2.line(mask, (round(x), round(y)), (round(x1), round(y1)), 255, 2)
        image[mask > 0] = np.clip(image[mask > 0].astype(np.int16) + sign * 80, 0, 255).astype(np.uint8)
        ys, xs = np.nonzero(mask)
        return Defect(kind, _box(xs.min() - 1, ys.min() - 1, xs.max() + 2, ys.max() + 2, size))
    # stain: a soft-edged ellipse of changed reflectivity
    axes = (rng.uniform(6, 16), rng.uniform(4, 10))
    mask = np.zeros(image.shape, np.float32)
    cv2.ellipse(mask, (round(x), round(y)), (round(axes[0]), round(axes[1])), rng.uniform(0, 180), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.5)
    image[:] = np.clip(image + sign * 70 * mask, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(mask > 0.5)
    return Defect(kind, _box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, size))


def _draw_pcb_defect(image: np.ndarray, kind: str, rng: np.random.Generator, traces: list[_Trace],
                     shift: tuple[float, float]) -> Defect:
    size = image.shape[0]
    dx, dy = shift
    trace = traces[int(rng.integers(len(traces)))]
    x_on = rng.uniform(trace.x0_px + 20, trace.x1_px - 20) + dx
    y_mid, hw = trace.y_px + dy, trace.half_width_px
    if kind == "open":
        gap = rng.uniform(4, 8)
        x0, y0, x1, y1 = x_on - gap / 2, y_mid - hw - 2, x_on + gap / 2, y_mid + hw + 2
        cv2.rectangle(image, (round(x0), round(y0)), (round(x1), round(y1)), _PCB_SUBSTRATE, -1)
    elif kind == "short":
        i = traces.index(trace)
        neighbour = traces[i + 1] if i + 1 < len(traces) else traces[i - 1]
        width = rng.uniform(4, 8)
        top, bottom = sorted((y_mid, neighbour.y_px + dy))
        x_on = rng.uniform(max(trace.x0_px, neighbour.x0_px) + 20, min(trace.x1_px, neighbour.x1_px) - 20) + dx
        x0, y0, x1, y1 = x_on - width / 2, top, x_on + width / 2, bottom
        cv2.rectangle(image, (round(x0), round(y0)), (round(x1), round(y1)), _PCB_COPPER, -1)
    elif kind in ("spur", "mousebite"):
        side = 1 if rng.uniform() < 0.5 else -1
        edge = y_mid + side * hw
        if kind == "spur":
            length, width = rng.uniform(5, 10), rng.uniform(3, 6)
            y0, y1 = sorted((edge, edge + side * length))
            x0, x1 = x_on - width / 2, x_on + width / 2
            cv2.rectangle(image, (round(x0), round(y0)), (round(x1), round(y1)), _PCB_COPPER, -1)
        else:
            r = rng.uniform(2.5, 4.0)
            cv2.circle(image, (round(x_on), round(edge)), round(r), _PCB_SUBSTRATE, -1)
            x0, y0, x1, y1 = x_on - r, edge - r, x_on + r, edge + r
    elif kind == "pin-hole":
        r = rng.uniform(1.5, 2.5)
        cv2.circle(image, (round(x_on), round(y_mid)), round(r), _PCB_SUBSTRATE, -1)
        x0, y0, x1, y1 = x_on - r, y_mid - r, x_on + r, y_mid + r
    else:  # copper: a spurious copper splash on bare substrate
        clear = cv2.distanceTransform((image < (_PCB_SUBSTRATE + _PCB_COPPER) // 2).astype(np.uint8), cv2.DIST_L2, 5)
        x, y = _random_point(clear > 12, rng)
        r = rng.uniform(3, 6)
        cv2.circle(image, (x, y), round(r), _PCB_COPPER, -1)
        x0, y0, x1, y1 = x - r, y - r, x + r, y + r
    return Defect(kind, _box(x0 - 1, y0 - 1, x1 + 2, y1 + 2, size))


def render_frame(kind: SimKind, index: int, *, seed: int = 0, size_px: int = 512, defect_rate: float = 0.3,
                 max_shift_px: float = 3.0, noise_sigma: float = 2.0) -> tuple[np.ndarray, tuple[Defect, ...]]:
    """Frame ``index`` of the stream ``seed``: an 8-bit image and its ground-truth defects.

    With probability ``defect_rate`` the frame carries one to three defects of the kind's classes.
    """
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be within 0..1, got {defect_rate}")
    rng = np.random.default_rng([seed, index])
    golden = golden_image(kind, size_px=size_px)
    shift = (float(rng.uniform(-max_shift_px, max_shift_px)), float(rng.uniform(-max_shift_px, max_shift_px)))
    moved = cv2.warpAffine(
        golden, np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float64), (size_px, size_px),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    )
    truth: list[Defect] = []
    if rng.uniform() < defect_rate:
        classes = WAFER_DEFECTS if kind == "wafer" else PCB_DEFECTS
        for _ in range(int(rng.integers(1, 4))):
            defect_kind = classes[int(rng.integers(len(classes)))]
            if kind == "wafer":
                truth.append(_draw_wafer_defect(moved, defect_kind, rng))
            else:
                truth.append(_draw_pcb_defect(moved, defect_kind, rng, _pcb_traces(size_px), shift))
    bank = _noise_bank(size_px, noise_sigma)
    left, top = (int(v) for v in rng.integers(0, _NOISE_MARGIN_PX, size=2))
    noisy = cv2.add(moved.astype(np.int16), bank[top : top + size_px, left : left + size_px])
    return np.clip(noisy, 0, 255).astype(np.uint8), tuple(truth)


_NOISE_MARGIN_PX = 251
"""A frame's sensor noise is a window of a fixed noise field, at an offset drawn per frame: generating fresh
Gaussian noise took most of a frame's rendering time, and the simulated camera shares the line's cores."""


@functools.lru_cache(maxsize=4)
def _noise_bank(size_px: int, noise_sigma: float) -> np.ndarray:
    """Gaussian sensor noise, rounded to grey levels (int16), one field for every frame of a size."""
    side = size_px + _NOISE_MARGIN_PX
    field = np.random.default_rng(20261201).standard_normal((side, side), dtype=np.float32) * np.float32(noise_sigma)
    field = np.rint(field).astype(np.int16)
    field.setflags(write=False)
    return field


DIE_CLASSES = ("good", "particle", "scratch", "stain", "missing-pattern", "bridge")


@dataclass(frozen=True)
class DieDesign:
    """The pattern of one product's die: grey levels, horizontal metal lines and a bond pad (pixels)."""

    size_px: int
    base_grey: float
    metal_grey: float
    line_centres_px: tuple[float, ...]
    line_half_widths_px: tuple[float, ...]
    pad_xy_px: tuple[float, float]
    pad_side_px: float

    def draw(self) -> np.ndarray:
        """The defect-free die as float32 grey levels."""
        s = self.size_px
        image = np.full((s, s), self.base_grey, np.float32)
        for y, hw in zip(self.line_centres_px, self.line_half_widths_px, strict=True):
            image[max(0, round(y - hw)) : round(y + hw) + 1, :] = self.metal_grey
        (pad_x, pad_y), pad = self.pad_xy_px, self.pad_side_px
        image[round(pad_y) : round(pad_y + pad), round(pad_x) : round(pad_x + pad)] = self.metal_grey + 20
        return image


def die_design(rng: np.random.Generator, *, size_px: int) -> DieDesign:
    """A random die pattern: 3-4 metal lines and a pad, contrast and placement varying as between products."""
    s = size_px
    base = float(rng.uniform(80, 130))
    metal = base + float(rng.uniform(45, 75))
    lines = int(rng.integers(3, 5))
    pitch = s / (lines + 0.5)
    offset = rng.uniform(0.2, 0.5) * pitch
    half_widths = tuple(float(rng.uniform(1.5, 2.8) * s / 64) for _ in range(lines))
    centres = tuple(float(offset + i * pitch + rng.uniform(-1, 1)) for i in range(lines))
    pad_xy = (float(rng.uniform(0.1, 0.7) * s), float(rng.uniform(0.1, 0.7) * s))
    return DieDesign(s, base, metal, centres, half_widths, pad_xy, float(rng.uniform(0.15, 0.22) * s))


def draw_die_defect(image: np.ndarray, design: DieDesign, kind: str, rng: np.random.Generator) -> None:
    """Draw one defect of ``kind`` (a DIE_CLASSES name other than good) into ``image``, a drawn ``design``."""
    s = design.size_px
    centres, half_widths = design.line_centres_px, design.line_half_widths_px
    sign = 1 if rng.uniform() < 0.5 else -1
    x, y = rng.uniform(0.15, 0.85) * s, rng.uniform(0.15, 0.85) * s
    if kind == "particle":
        local = float(image[round(y), round(x)])  # relative to what lies beneath: a line, the pad or bulk
        cv2.circle(image, (round(x), round(y)), max(1, round(rng.uniform(1.5, 3.5) * s / 64)),
                   local + sign * rng.uniform(60, 90), -1)
    elif kind == "scratch":
        # Across the pattern (not hidden along a metal line) and wholly inside the die, so every labelled
        # scratch is visible, as a human labeller would demand.
        theta = rng.uniform(np.radians(25), np.radians(155))
        length = rng.uniform(0.3, 0.6) * s
        dx, dy = length * np.cos(theta) / 2, length * np.sin(theta) / 2
        cx = rng.uniform(0.05 * s + abs(dx), 0.95 * s - abs(dx))
        cy = rng.uniform(0.05 * s + abs(dy), 0.95 * s - abs(dy))
        mask = np.zeros_like(image)
        cv2.line(mask, (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy)), 1.0, max(1, round(s / 64)))
        image += sign * rng.uniform(50, 70) * mask
    elif kind == "stain":
        mask = np.zeros_like(image)
        axes = (round(rng.uniform(0.08, 0.18) * s), round(rng.uniform(0.06, 0.12) * s))
        cv2.ellipse(mask, (round(x), round(y)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        image += sign * rng.uniform(35, 50) * cv2.GaussianBlur(mask, (0, 0), 1.5)
    elif kind == "missing-pattern":
        line = int(rng.integers(len(centres)))
        y0, y1 = round(centres[line] - half_widths[line]) - 1, round(centres[line] + half_widths[line]) + 2
        x0 = round(rng.uniform(0.05, 0.7) * s)
        image[max(0, y0) : y1, x0 : x0 + round(rng.uniform(0.15, 0.3) * s)] = design.base_grey
    elif kind == "bridge":
        line = int(rng.integers(len(centres) - 1))
        width = max(2, round(rng.uniform(2, 4) * s / 64))
        (pad_x, _), pad = design.pad_xy_px, design.pad_side_px
        free = [x for x in range(round(0.05 * s), round(0.9 * s)) if x + width < pad_x or x > pad_x + pad]
        x0 = free[int(rng.integers(len(free)))]  # beside the pad, where the bridge cannot hide
        image[round(centres[line]) : round(centres[line + 1]) + 1, x0 : x0 + width] = design.metal_grey
    elif kind != "good":
        raise ValueError(f"unknown die class {kind!r}; expected one of {', '.join(DIE_CLASSES)}")


def render_die(kind: str, index: int, *, seed: int = 0, size_px: int = 64) -> np.ndarray:
    """Die image ``index`` of class ``kind`` (one of DIE_CLASSES): 8-bit, ``size_px`` square.

    A die shows horizontal metal lines and a bond pad, with varying illumination, contrast, pattern
    placement and sensor noise, so a classifier must learn the defect and not the die. Each class has its
    own deterministic stream: (seed, kind, index) always gives the same image.
    """
    if kind not in DIE_CLASSES:
        raise ValueError(f"unknown die class {kind!r}; expected one of {', '.join(DIE_CLASSES)}")
    rng = np.random.default_rng([seed, DIE_CLASSES.index(kind), index])
    s = size_px
    design = die_design(rng, size_px=s)
    image = design.draw()
    draw_die_defect(image, design, kind, rng)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    image *= 1.0 + rng.uniform(0, 0.12) * ((xx * np.cos(theta) + yy * np.sin(theta)) / s - 0.5)
    image = cv2.GaussianBlur(image, (0, 0), _OPTICS_SIGMA_PX)
    image += rng.normal(0, rng.uniform(1.5, 3.5), image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class WaferGeometry:
    """The exact geometry a rendered wafer frame was drawn with (pixel coordinates: pixel centres at integers)."""

    centre_xy_px: tuple[float, float]
    radius_px: float
    notch_angle_deg: float
    """Direction of the notch from the centre, degrees counter-clockwise from +x with y pointing up (so 270 is
    6 o'clock on screen)."""
    die_pitch_xy_px: tuple[float, float]
    grid_origin_xy_px: tuple[float, float]
    """Centre of one street crossing; the others lie at origin + (i, j) x pitch."""
    street_width_px: float


def _coverage(signed_distance_px: np.ndarray) -> np.ndarray:
    """Area coverage of a pixel by the region where the signed distance is positive (a 1-px linear ramp)."""
    return np.clip(signed_distance_px + 0.5, 0.0, 1.0)


def wafer_coverage(xx: np.ndarray, yy: np.ndarray, *, centre_xy_px: tuple[float, float], radius_px: float,
                   notch_angle_deg: float) -> np.ndarray:
    """How much of each pixel (coordinates ``xx``, ``yy``) the wafer covers: an anti-aliased disc less a round
    notch (radius 1.2% of the wafer's + 3 px) at ``notch_angle_deg`` (counter-clockwise from +x, y up)."""
    cx, cy = centre_xy_px
    angle = np.radians(notch_angle_deg)
    notch_x, notch_y = cx + radius_px * np.cos(angle), cy - radius_px * np.sin(angle)
    coverage = _coverage(radius_px - np.hypot(xx - cx, yy - cy))
    coverage *= _coverage(np.hypot(xx - notch_x, yy - notch_y) - (0.012 * radius_px + 3))  # keeps xx's dtype
    return coverage


def render_wafer_geometry(geometry: WaferGeometry, *, size_px: int = 2048, noise_grey: float = 3.0,
                          seed: int = 0, particles: int = 0) -> tuple[np.ndarray, tuple[Defect, ...]]:
    """An 8-bit wafer frame drawn with anti-aliased edges from exact ``geometry``: background, wafer with dies,
    streets and a round notch, ``particles`` dark particles on dies (their boxes returned as ground truth),
    then Gaussian sensor noise. Edges are placed to a small fraction of a pixel."""
    yy, xx = np.mgrid[0:size_px, 0:size_px].astype(np.float32)
    cx, cy = geometry.centre_xy_px
    on_wafer = wafer_coverage(xx, yy, centre_xy_px=geometry.centre_xy_px, radius_px=geometry.radius_px,
                              notch_angle_deg=geometry.notch_angle_deg)
    pitch_x, pitch_y = geometry.die_pitch_xy_px
    ox, oy = geometry.grid_origin_xy_px
    half_street = geometry.street_width_px / 2
    # Distance to the nearest street centre line, per axis; a pixel is street where either is within half width.
    to_street_x = np.abs((xx - ox + pitch_x / 2) % pitch_x - pitch_x / 2)
    to_street_y = np.abs((yy - oy + pitch_y / 2) % pitch_y - pitch_y / 2)
    street = np.maximum(_coverage(half_street - to_street_x), _coverage(half_street - to_street_y))
    surface = _WAFER_DIE + (_WAFER_STREET - _WAFER_DIE) * street
    rng = np.random.default_rng(seed)
    truth = []
    for _ in range(particles):
        angle, reach = rng.uniform(0, 2 * np.pi), geometry.radius_px * np.sqrt(rng.uniform(0, 0.8))
        x, y = cx + reach * np.cos(angle), cy + reach * np.sin(angle)
        radius = rng.uniform(2.5, 6.0)
        window = (slice(max(0, int(y - radius - 2)), int(y + radius + 3)), slice(max(0, int(x - radius - 2)),
                                                                                  int(x + radius + 3)))
        cover = _coverage(radius - np.hypot(xx[window] - x, yy[window] - y))
        surface[window] += (_WAFER_BACKGROUND - surface[window]) * cover
        truth.append(Defect("particle", _box(x - radius, y - radius, x + radius + 1, y + radius + 1, size_px)))
    image = _WAFER_BACKGROUND + (surface - _WAFER_BACKGROUND) * on_wafer
    image += rng.normal(0.0, noise_grey, image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), tuple(truth)


def render_pcb_panel(homography: np.ndarray, *, size_px: tuple[int, int] = (900, 700), seed: int = 0,
                     noise_grey: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A PCB panel (copper texture, four ring fiducials 80 px in from the corners) seen through ``homography``
    (panel -> image). Returns the image, the fiducial's template (61 x 61) and the fiducials' panel positions."""
    width, height = size_px
    noise = np.random.default_rng(seed).random((height, width)).astype(np.float32)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 3), None, 0, 255, cv2.NORM_MINMAX)
    panel = (texture // 2 + 40).astype(np.uint8)
    nominal = np.array([[80, 80], [width - 80, 80], [width - 80, height - 80], [80, height - 80]], float)
    for x, y in nominal:
        cv2.circle(panel, (int(x), int(y)), 22, 0, -1)
        cv2.circle(panel, (int(x), int(y)), 14, 255, -1)
        cv2.circle(panel, (int(x), int(y)), 5, 0, -1)
    fiducial = panel[50:111, 50:111].copy()
    seen = cv2.warpPerspective(panel, homography, size_px, flags=cv2.INTER_LINEAR, borderValue=40).astype(np.float32)
    seen += np.random.default_rng(seed + 1).normal(0.0, noise_grey, seen.shape).astype(np.float32)
    return np.clip(np.round(seen), 0, 255).astype(np.uint8), fiducial, nominal


def render_checkerboard(*, inner_corners: tuple[int, int], square_mm: float, camera_matrix: np.ndarray,
                        dist_coeffs: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, size_px: tuple[int, int],
                        noise_grey: float = 2.0, blur_sigma_px: float = 0.0, seed: int = 0) -> np.ndarray:
    """An 8-bit view of a flat checkerboard (``inner_corners`` = columns x rows of inner corners, the OpenCV
    convention) through a pinhole camera with radial/tangential distortion, anti-aliased by 2x2 supersampling,
    with the optics' Gaussian blur of ``blur_sigma_px`` (after the pixels' own integration).

    The board's corner (i, j) sits at (i * square_mm, j * square_mm, 0) in board coordinates; one white square
    of margin surrounds the pattern.
    """
    width, height = size_px
    factor = 2
    grid_x, grid_y = np.meshgrid((np.arange(width * factor) + 0.5) / factor - 0.5,
                                 (np.arange(height * factor) + 0.5) / factor - 0.5)
    pixels = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).reshape(-1, 1, 2)
    # Undistort each (sub)pixel to a viewing ray, then intersect the ray with the board plane (Z = 0).
    rays = cv2.undistortPoints(pixels, camera_matrix, dist_coeffs,
                               criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-9)).reshape(-1, 2)
    rotation, _ = cv2.Rodrigues(rvec)
    # Board point X satisfies s * [u, v, 1] = R [X, Y, 0] + t: a homography from the board plane to rays.
    plane_to_ray = np.column_stack([rotation[:, 0], rotation[:, 1], np.ravel(tvec)])
    board = np.linalg.solve(plane_to_ray, np.vstack([rays.T, np.ones(len(rays))]))
    board_x, board_y = board[0] / board[2], board[1] / board[2]
    columns, rows = inner_corners
    cell_x, cell_y = np.floor(board_x / square_mm), np.floor(board_y / square_mm)
    inside = (cell_x >= -1) & (cell_x <= columns - 1) & (cell_y >= -1) & (cell_y <= rows - 1)
    margin = (cell_x >= -2) & (cell_x <= columns) & (cell_y >= -2) & (cell_y <= rows)
    dark = inside & ((cell_x + cell_y) % 2 == 0)
    value = np.where(dark, 30.0, np.where(margin, 220.0, 110.0)).reshape(height * factor, width * factor)
    image = cv2.resize(value, (width, height), interpolation=cv2.INTER_AREA)
    if blur_sigma_px > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma_px)
    image += np.random.default_rng(seed).normal(0.0, noise_grey, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)
