from __future__ import annotations

import numpy as np
import pytest

from inspection.classify.card import CardError, class_order
from inspection.evaluate.metrics import (
    bootstrap_intervals,
    classification_intervals,
    classification_report,
    confusion_matrix,
    operating_point,
    recall_overkill,
)


def test_report_from_confusion() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    confusion = confusion_matrix(y_true, y_pred, n_classes=3)
    assert confusion.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    report = classification_report(confusion, class_names=["a", "b", "c"])
    assert report["accuracy"] == round(4 / 6, 5)
    assert report["per_class"]["a"] == {"precision": round(2 / 3, 5), "recall": round(2 / 3, 5),
                                        "f1": round(2 / 3, 5), "support": 3}
    assert report["per_class"]["c"]["f1"] == 0.0
    assert report["macro_f1"] == round((2 / 3 + 0.8 + 0.0) / 3, 5)


def test_operating_point_reaches_the_target_recall_with_the_least_overkill() -> None:
    defect_scores = np.array([0.99, 0.95, 0.9, 0.6, 0.2, 0.1, 0.05, 0.7])
    is_defect = np.array([True, True, True, True, False, False, False, False])
    point = operating_point(defect_scores, is_defect, target_recall=1.0)
    assert point["threshold"] == 0.6 and point["defect_recall"] == 1.0 and point["overkill"] == 0.25
    point = operating_point(defect_scores, is_defect, target_recall=0.75)
    assert point["threshold"] == 0.9 and point["defect_recall"] == 0.75 and point["overkill"] == 0.0
    assert recall_overkill(defect_scores, is_defect, threshold=0.95)["defect_recall"] == 0.5
    with pytest.raises(ValueError, match="needs both good and defective samples"):
        operating_point(defect_scores[:4], is_defect[:4], target_recall=0.999)


def test_bootstrap_interval_of_a_mean_is_seeded_brackets_the_mean_and_narrows_with_more_units() -> None:
    values = np.random.default_rng(3).random(200)

    def mean(units: np.ndarray) -> dict[str, float]:
        return {"mean": float(values[units].mean())}

    interval = bootstrap_intervals(mean, len(values))["mean"]
    assert interval == bootstrap_intervals(mean, len(values))["mean"]  # same seed, same interval
    assert interval[0] < values.mean() < interval[1]
    # The normal approximation: about +-1.96 standard errors.
    half_width = (interval[1] - interval[0]) / 2
    assert half_width == pytest.approx(1.96 * values.std() / np.sqrt(len(values)), rel=0.15)
    narrower = bootstrap_intervals(lambda units: {"mean": float(values[:50][units].mean())}, 50)["mean"]
    assert narrower[1] - narrower[0] > 1.5 * (interval[1] - interval[0])
    assert bootstrap_intervals(lambda units: {"nothing": float("nan")}, 10) == {"nothing": None}
    with pytest.raises(ValueError, match="at least one unit"):
        bootstrap_intervals(mean, 0)


def test_classification_intervals_bracket_the_report_and_leave_out_resamples_without_a_class() -> None:
    generator = np.random.default_rng(0)
    y_true = generator.integers(0, 3, 600)
    y_pred = np.where(generator.random(600) < 0.9, y_true, generator.integers(0, 3, 600))
    y_true[0], y_pred[0] = 3, 3  # one sample of a rare class, missing from about a third of the resamples
    names = ["a", "b", "c", "rare"]
    report = classification_report(confusion_matrix(y_true, y_pred, n_classes=4), class_names=names)
    intervals = classification_intervals(y_true, y_pred, class_names=names)
    assert set(intervals) == {"accuracy", "macro_f1", "recall"} and set(intervals["recall"]) == set(names)
    for name in ("accuracy", "macro_f1"):
        assert intervals[name][0] <= report[name] <= intervals[name][1]
    for name in ("a", "b", "c"):
        low, high = intervals["recall"][name]
        assert low < report["per_class"][name]["recall"] < high
    assert intervals["recall"]["rare"] == [1.0, 1.0]  # never 0 from a resample that lacks the class


def test_paired_classification_intervals_are_of_the_difference_on_the_same_samples() -> None:
    generator = np.random.default_rng(1)
    y_true = generator.integers(0, 3, 500)
    y_pred = np.where(generator.random(500) < 0.9, y_true, (y_true + 1) % 3)
    names = ["a", "b", "c"]
    same = classification_intervals(y_true, y_pred, class_names=names, baseline_pred=y_pred)
    assert same["accuracy"] == [0.0, 0.0] and same["recall"]["b"] == [0.0, 0.0]
    # The baseline errs on 25 more samples of class "a" (5% of all): on the same resamples the gap is certain,
    # and its interval narrower than the model's own.
    baseline_pred = y_pred.copy()
    baseline_pred[np.flatnonzero((y_true == 0) & (y_pred == 0))[:25]] = 1
    paired = classification_intervals(y_true, y_pred, class_names=names, baseline_pred=baseline_pred)
    own = classification_intervals(y_true, y_pred, class_names=names)
    assert 0.0 < paired["accuracy"][0] <= 0.05 <= paired["accuracy"][1]
    assert paired["accuracy"][1] - paired["accuracy"][0] < own["accuracy"][1] - own["accuracy"][0]
    assert paired["recall"]["c"] == [0.0, 0.0] and paired["recall"]["a"][0] > 0.0


def test_a_baseline_of_other_class_order_is_put_in_the_models_order() -> None:
    order = class_order(["good", "scratch", "particle"], ["particle", "good", "scratch"])
    baseline_pred = np.array([0, 1, 2, 2])  # good, scratch, particle, particle in the baseline's order
    assert order[baseline_pred].tolist() == [1, 2, 0, 0]
    assert np.argsort(order)[np.array([0, 1, 2])].tolist() == [2, 0, 1]  # and the truth back into the baseline's
    with pytest.raises(CardError, match=r"\(good, stain\) are not the model's \(good, scratch\)"):
        class_order(["good", "stain"], ["good", "scratch"])
