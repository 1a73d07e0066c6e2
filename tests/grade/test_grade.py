from __future__ import annotations

import numpy as np

from inspection.grade import detections_of, verdict_of
from inspection.recipe import GradeSettings
from inspection.types import AlignedFrame, Frame, Measurements, Region, Verdict


def measurements(*areas_um2: float) -> Measurements:
    frame = Frame(np.zeros((4, 4), np.uint8), "mono", 8, "t", 0, 0.0)
    aligned = AlignedFrame(frame, frame.image, (0.0, 0.0), 0.0, 1.0)
    found = tuple(Region(i, int(a), a, (0, 0, 1, 1), (0.0, 0.0), -40.0 if i % 2 else 40.0, 40.0)
                  for i, a in enumerate(areas_um2, start=1))
    return Measurements(aligned, found, 1.0)


def grade(*areas: float, max_detections: int = 0) -> tuple[Verdict, str]:
    settings = GradeSettings(review_area_um2=100, fail_area_um2=400, max_detections=max_detections)
    return verdict_of(detections_of(measurements(*areas), settings=settings), settings=settings)


def test_rules() -> None:
    assert grade()[0] == Verdict.PASS
    assert grade(99)[0] == Verdict.PASS  # below review_area_um2: noise
    verdict, reason = grade(150, 120)
    assert verdict == Verdict.REVIEW and "2 defect(s), largest 150 um2" in reason
    verdict, reason = grade(150, 400)
    assert verdict == Verdict.FAIL and "defect of 400 um2" in reason and ">= fail_area_um2 400" in reason
    verdict, reason = grade(150, 150, 150, max_detections=2)
    assert verdict == Verdict.FAIL and "3 defects > max_detections 2" in reason


def test_detection_kind_is_the_polarity() -> None:
    settings = GradeSettings(review_area_um2=0, fail_area_um2=0)
    kinds = [d.kind for d in detections_of(measurements(10, 10), settings=settings)]
    assert kinds == ["dark", "bright"]
