"""Grading: the recipe's rules turn measured regions into a verdict (pass / review / fail) and its reason."""

from __future__ import annotations

from inspection.recipe import GradeSettings
from inspection.types import Detection, Measurements, Verdict


def detections_of(measurements: Measurements, *, settings: GradeSettings) -> tuple[Detection, ...]:
    """Regions large enough to report. Without a classifier the class is the defect's polarity."""
    return tuple(
        Detection("bright" if region.mean_diff > 0 else "dark", min(1.0, region.max_abs_diff / 255.0), region)
        for region in measurements.regions
        if region.area_um2 >= settings.review_area_um2
    )


def verdict_of(detections: tuple[Detection, ...], *, settings: GradeSettings) -> tuple[Verdict, str]:
    """The verdict and the rule that decided it."""
    if not detections:
        return Verdict.PASS, "no defect region reaches review_area_um2"
    largest = max(detections, key=lambda d: d.region.area_um2)
    if largest.region.area_um2 >= settings.fail_area_um2:
        return Verdict.FAIL, (f"{largest.kind} defect of {largest.region.area_um2:.0f} um2 at "
                              f"{largest.region.box_xyxy_px} >= fail_area_um2 {settings.fail_area_um2:g}")
    if settings.max_detections and len(detections) > settings.max_detections:
        return Verdict.FAIL, f"{len(detections)} defects > max_detections {settings.max_detections}"
    return Verdict.REVIEW, (f"{len(detections)} defect(s), largest {largest.region.area_um2:.0f} um2 "
                            f"< fail_area_um2 {settings.fail_area_um2:g}")
