from __future__ import annotations

from inspection.grade import class_verdict, polarity_detections, size_verdict
from inspection.recipe import ClassifySettings, GradeSettings
from inspection.types import Detection, Region, Verdict


def regions(*areas_um2: float) -> tuple[Region, ...]:
    return tuple(Region(i, int(a), a, (0, 0, 1, 1), (0.0, 0.0), -40.0 if i % 2 else 40.0, 40.0)
                 for i, a in enumerate(areas_um2, start=1))


def grade(*areas: float, max_detections: int = 0) -> tuple[Verdict, str]:
    settings = GradeSettings(review_area_um2=100, fail_area_um2=400, max_detections=max_detections)
    return size_verdict(polarity_detections(regions(*areas), settings=settings), settings=settings)


def test_rules_by_size() -> None:
    assert grade()[0] == Verdict.PASS
    assert grade(99)[0] == Verdict.PASS  # below review_area_um2: noise
    verdict, reason = grade(150, 120)
    assert verdict == Verdict.REVIEW and "2 defect(s), largest 150 um2" in reason
    verdict, reason = grade(150, 400)
    assert verdict == Verdict.FAIL and "defect of 400 um2" in reason and ">= fail_area_um2 400" in reason
    verdict, reason = grade(150, 150, 150, max_detections=2)
    assert verdict == Verdict.FAIL and "3 defects > max_detections 2" in reason


def test_detection_kind_is_the_polarity_without_a_classifier() -> None:
    settings = GradeSettings(review_area_um2=0, fail_area_um2=0)
    kinds = [d.kind for d in polarity_detections(regions(10, 10), settings=settings)]
    assert kinds == ["dark", "bright"]


def test_rules_by_class_with_a_minimum_area_per_class() -> None:
    rules = ClassifySettings(model="m", fail_classes=("particle", "scratch"), review_classes=("stain",),
                             min_area_um2={"particle": 100})
    small, large = regions(50, 500)

    def verdict(*detections: Detection) -> Verdict:
        return class_verdict(detections, rules=rules)[0]

    assert verdict() == Verdict.PASS
    assert verdict(Detection("particle", 0.9, small)) == Verdict.PASS  # under its class's min_area_um2
    assert verdict(Detection("particle", 0.9, large)) == Verdict.FAIL
    assert verdict(Detection("stain", 0.9, small)) == Verdict.REVIEW
    assert verdict(Detection("stain", 0.9, small), Detection("scratch", 0.6, small)) == Verdict.FAIL
    reason = class_verdict((Detection("stain", 0.8, large),), rules=rules)[1]
    assert reason.startswith("stain of ") and " um2 at x " in reason and "(score 0.80)" in reason
    reason = class_verdict((Detection("stain", 0.8, large), Detection("scratch", 0.7, large),
                            Detection("particle", 0.9, large)), rules=rules)[1]
    assert reason.startswith("particle of ") and reason.endswith(", and 1 more (scratch)")
    assert verdict(Detection("other", 0.99, large)) == Verdict.PASS  # a class the rules do not name
