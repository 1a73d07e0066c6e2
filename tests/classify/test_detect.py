"""Detection geometry and the DeepPCB metric on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.chain.pairs import CANDIDATE_SETTINGS
from inspection.classify.detect import Hypotheses, iou_matrix, merge_fragments, nms, ranked_hypotheses, refine_boxes
from inspection.evaluate.detection import (
    average_precision,
    detection_intervals,
    detection_report,
    match_detections,
    outcomes_report,
)
from inspection.measure import crop_squares


def test_iou_of_known_boxes() -> None:
    iou = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    assert iou.shape == (1, 3) and iou[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])


def test_matching_follows_the_deeppcb_rule() -> None:
    truth = np.array([[0, 0, 10, 10], [100, 100, 120, 120]], float)
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [100, 100, 120, 120], [4, 0, 14, 10]], float)
    # The best-scoring duplicate takes the box; the second one is a false positive; a wrong type never matches;
    # IoU must exceed 0.33 (box 4 overlaps 60/140 = 0.43 but the box is already taken).
    hits = match_detections(boxes, ["open", "open", "short", "open"], np.array([0.9, 0.95, 0.8, 0.5]),
                            truth, ["open", "spur"])
    assert hits.tolist() == [False, True, False, False]
    hits = match_detections(np.array([[6, 0, 16, 10]], float), ["open"], np.array([0.9]), truth, ["open", "spur"])
    assert hits.tolist() == [False]  # IoU 40/160 = 0.25


def test_average_precision_and_report() -> None:
    # Ranked hits: TP, FP, TP with 3 ground-truth boxes -> precision envelope 1, 2/3: AP = 1/3 + 2/3 * 1/3.
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), n_truth=3) == pytest.approx(
        1 / 3 + 2 / 9)
    assert average_precision(np.array([]), np.array([], bool), n_truth=2) == 0.0
    report = detection_report([("open", 0.9, True), ("open", 0.8, False), ("short", 0.7, True)],
                              {"open": 1, "short": 2}, class_names=["open", "short"])
    assert report["precision"] == pytest.approx(2 / 3, abs=1e-4) and report["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["per_class_ap"] == {"open": 1.0, "short": 0.5} and report["map"] == 0.75
    # A low-scored hypothesis that finds the second short box lifts AP, not the F-score of the reported ones.
    ranked = detection_report(
        [("open", 0.9, True), ("open", 0.8, False), ("short", 0.7, True)], {"open": 1, "short": 2},
        class_names=["open", "short"], ranked=[("open", 0.9, True), ("open", 0.8, False), ("short", 0.7, True),
                                               ("short", 0.1, True), ("open", 0.05, False)])
    assert ranked["f_score"] == report["f_score"] and ranked["per_class_ap"] == {"open": 1.0, "short": 1.0}
    assert ranked["map_at_min_score"] == 0.75 and ranked["hypotheses"] == 5 and ranked["detections"] == 3


def test_detection_intervals_resample_whole_images() -> None:
    names = ["open", "short"]
    # Twenty images whose reported detections are all right: every resample scores 1.
    right = [[("open", 0.9, True)]] * 20
    perfect = detection_intervals((right, right), [("open",)] * 20, class_names=names)
    assert perfect == {"precision": [1.0, 1.0], "recall": [1.0, 1.0], "f_score": [1.0, 1.0], "map": [1.0, 1.0]}
    # Plus five images each with one false detection and one missed box: the whole-set figures fall inside.
    detections = right + [[("short", 0.8, False)]] * 5
    truth = [("open",)] * 20 + [("short",)] * 5
    intervals = detection_intervals((detections, detections), truth, class_names=names)
    report = outcomes_report((detections, detections), truth, class_names=names)
    assert report == detection_report([hit for image in detections for hit in image], {"open": 20, "short": 5},
                                      class_names=names)
    for name in ("precision", "recall", "f_score"):
        low, high = intervals[name]
        assert low < report[name] < high < 1.0
    # Open AP is 1 and short AP 0 in every resample that has both classes.
    assert intervals["map"] == [0.5, 0.5] and report["map"] == 0.5


def test_paired_detection_intervals_are_of_the_difference() -> None:
    names = ["open", "short"]
    truth = [("open",)] * 25
    better = [[("open", 0.9, True)]] * 25
    worse = [[("open", 0.9, True)]] * 20 + [[("open", 0.9, False)]] * 5  # five boxes missed, five false
    same = detection_intervals((better, better), truth, class_names=names, baseline=(better, better))
    assert same == {"precision": [0.0, 0.0], "recall": [0.0, 0.0], "f_score": [0.0, 0.0], "map": [0.0, 0.0]}
    difference = detection_intervals((better, better), truth, class_names=names, baseline=(worse, worse))
    assert all(0.0 < difference[name][0] <= 0.2 <= difference[name][1] for name in ("precision", "recall"))


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), iou_threshold=0.3).tolist() == [1, 2]


def test_crops_stay_square_and_inside_and_boxes_grow_by_class() -> None:
    squares = crop_squares(np.array([[0, 0, 4, 4], [600, 600, 640, 630]], float), size=(640, 640), context=1.5,
                           min_side_px=32)
    assert squares.tolist() == [[0, 0, 32, 32], [580, 580, 640, 640]]
    settings = CANDIDATE_SETTINGS.model_copy(update={"box_growth": {"open": (2.0, 10.0), "spur": (1.0, 0.0)}})
    grown = refine_boxes(np.array([[100, 100, 110, 120], [0, 0, 10, 10]], float), ["open", "spur"],
                         settings=settings, size=(640, 640))
    assert grown.tolist() == [[90, 85, 120, 135], [0, 0, 10, 10]]


def test_pieces_of_one_defect_join_and_other_classes_stay_apart() -> None:
    settings = CANDIDATE_SETTINGS.model_copy(update={"box_growth": {"open": (1.0, 10.0), "spur": (1.0, 10.0)}})
    boxes = np.array([[100, 100, 104, 104], [110, 100, 114, 104], [200, 200, 204, 204], [112, 100, 116, 104]],
                     float)
    leaders, joined = merge_fragments(boxes, ["open", "open", "open", "spur"], np.array([0.6, 0.9, 0.8, 0.7]),
                                      settings=settings, size=(640, 640))
    # The two open pieces 6 px apart join (grown by 5 px a side they overlap) into one box led by the
    # better score; the distant open and the spur stay on their own.
    assert leaders.tolist() == [1, 2, 3]
    assert joined.tolist() == [[95, 95, 119, 109], [195, 195, 209, 209], [107, 95, 121, 109]]


def test_ranked_hypotheses_add_each_candidates_other_classes_without_duplicates() -> None:
    settings = CANDIDATE_SETTINGS.model_copy(update={"box_growth": {"open": (1.0, 0.0), "spur": (1.0, 0.0)},
                                                     "nms_iou": 0.3})
    candidates = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [100, 100, 110, 110]], float)
    probabilities = np.array([[0.9, 0.05], [0.3, 0.2], [0.2, 0.1]])  # (open, spur); the rest is "good"
    reported = np.zeros((3, 2), bool)
    reported[0, 0] = True
    detections = Hypotheses(candidates[:1], ("open",), np.array([0.9]))
    ranked = ranked_hypotheses(detections, candidates, probabilities, reported, class_names=["open", "spur"],
                               settings=settings, size=(640, 640))
    # Candidate 1's open (0.3) lies on the reported open and is dropped; the spurs of candidates 0 and 1 overlap,
    # so only the better one (0.2) stays; the far candidate brings both of its classes.
    assert list(zip(ranked.kinds, ranked.scores.tolist(), strict=True)) == [
        ("open", 0.9), ("spur", 0.2), ("open", 0.2), ("spur", 0.1)]
    assert ranked.boxes[0].tolist() == [0, 0, 10, 10] and ranked.boxes[1].tolist() == [1, 0, 11, 10]
    # A reported detection stays in the list even when a hypothesis of its class outscores it.
    low = Hypotheses(candidates[:1], ("open",), np.array([0.2]))
    ranked = ranked_hypotheses(low, candidates, np.array([[0.2, 0.0], [0.6, 0.0], [0.0, 0.0]]), reported,
                               class_names=["open", "spur"], settings=settings, size=(640, 640))
    assert ranked.kinds[0] == "open" and ranked.scores[0] == 0.2 and 0.6 not in ranked.scores.tolist()
