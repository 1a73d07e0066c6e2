"""Grading: the recipe's rules turn detections into a verdict (pass / review / fail) and its reason: by class
(a station with a classifier) or by size (one without), and a graded wafer's by yield and pattern."""

from __future__ import annotations

from collections.abc import Sequence

from inspection.recipe import ClassifySettings, GradeSettings, LotRules
from inspection.types import Detection, Region, Verdict

__all__ = ["class_verdict", "polarity_detections", "size_verdict", "wafer_verdict"]


def polarity_detections(regions: Sequence[Region], *, settings: GradeSettings) -> tuple[Detection, ...]:
    """Regions large enough to report, for a station without a classifier: the class is the defect's polarity.

    Parameters
    ----------
    regions : sequence of Region
        Candidate regions of the part.
    settings : GradeSettings
        The recipe's ``grade`` section (``review_area_um2`` is the smallest reported area).

    Returns
    -------
    tuple of Detection
        ``dark`` (below the golden's band) or ``bright`` (above it), scored by the deviation; ``anomaly`` for a
        region an anomaly model found, scored by the model.
    """
    return tuple(
        Detection("anomaly", region.anomaly_score, region) if region.anomaly_score is not None else
        Detection("bright" if region.mean_diff > 0 else "dark", min(1.0, region.max_abs_diff / 255.0), region)
        for region in regions
        if region.area_um2 >= settings.review_area_um2
    )


def size_verdict(detections: Sequence[Detection], *, settings: GradeSettings) -> tuple[Verdict, str]:
    """The verdict by defect size and count, and the rule that decided it.

    Parameters
    ----------
    detections : sequence of Detection
        The part's reported regions.
    settings : GradeSettings
        ``fail_area_um2``, ``review_area_um2`` and ``max_detections``.

    Returns
    -------
    verdict : Verdict
    reason : str
    """
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


def class_verdict(detections: Sequence[Detection], *, rules: ClassifySettings) -> tuple[Verdict, str]:
    """The verdict by defect class, and the rule that decided it.

    A detection counts when its area reaches its class's ``min_area_um2`` (when one is set). The part fails on
    a counted detection of a ``fail_classes`` class, else goes to review on one of a ``review_classes`` class,
    else passes (classes the rules do not name are stored, and do not change the verdict).

    Parameters
    ----------
    detections : sequence of Detection
        The part's named candidates.
    rules : ClassifySettings
        The recipe's ``classify`` section.

    Returns
    -------
    verdict : Verdict
    reason : str
        The detection that decided it (the most certain of its kind): class, area, centre and score.
    """
    counted = [d for d in detections if d.region.area_um2 >= rules.min_area_um2.get(d.kind, 0.0)]
    for verdict, classes in ((Verdict.FAIL, rules.fail_classes), (Verdict.REVIEW, rules.review_classes)):
        hits = [d for d in counted if d.kind in classes]
        if hits:  # in an operator's words: what, how large, where; the rule is the verdict itself
            worst = max(hits, key=lambda d: d.score)
            x0, y0, x1, y1 = worst.region.box_xyxy_px
            more = [d.kind for d in hits if d is not worst]
            return verdict, (f"{worst.kind} of {worst.region.area_um2:.0f} um2 at x {(x0 + x1) // 2}, y "
                             f"{(y0 + y1) // 2} px (score {worst.score:.2f})"
                             + (f", and {len(more)} more ({', '.join(sorted(set(more)))})" if more else ""))
    if not detections:
        return Verdict.PASS, "no defect"
    return Verdict.PASS, (f"{len(detections)} detection(s) ({', '.join(sorted({d.kind for d in detections}))}), "
                          "none of fail_classes or review_classes at its min_area_um2")


def wafer_verdict(*, yield_fraction: float, defect_density_per_cm2: float, pattern: str, pattern_confidence: float,
                  rules: LotRules) -> tuple[Verdict, str]:
    """A graded wafer's verdict and the rule that decided it.

    The rules are tried in order: forbidden pattern, yield floor, defect density, review band; the first that
    fires decides.

    Parameters
    ----------
    yield_fraction : float
        Good dies over all dies, in [0, 1].
    defect_density_per_cm2 : float
        Failed dies per cm^2 of inspected wafer.
    pattern : str
        The wafer-map pattern.
    pattern_confidence : float
        The pattern classifier's probability for it.
    rules : LotRules
        The recipe's ``rules`` section.

    Returns
    -------
    verdict : Verdict
    reason : str
    """
    if pattern in rules.forbidden_patterns:
        if pattern_confidence >= rules.min_pattern_confidence:
            return Verdict.FAIL, f"forbidden pattern {pattern} (confidence {pattern_confidence:.3f})"
        return Verdict.REVIEW, (f"possible forbidden pattern {pattern} (confidence {pattern_confidence:.3f} < "
                                f"min_pattern_confidence {rules.min_pattern_confidence:g})")
    if yield_fraction < rules.yield_floor:
        return Verdict.FAIL, f"yield {yield_fraction:.1%} < yield_floor {rules.yield_floor:.1%}"
    if rules.max_defect_density_per_cm2 is not None and defect_density_per_cm2 > rules.max_defect_density_per_cm2:
        return Verdict.FAIL, (f"defect density {defect_density_per_cm2:.3f}/cm2 > max_defect_density_per_cm2 "
                              f"{rules.max_defect_density_per_cm2:g}")
    if yield_fraction < rules.yield_floor + rules.review_band:
        return Verdict.REVIEW, (f"yield {yield_fraction:.1%} within review_band {rules.review_band:.1%} above "
                                f"the floor {rules.yield_floor:.1%}")
    return Verdict.PASS, f"yield {yield_fraction:.1%}, pattern {pattern}"
