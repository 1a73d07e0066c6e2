from __future__ import annotations

import numpy as np
import pytest

from inspection.classify.metrics import classification_report, confusion_matrix, operating_point, recall_overkill


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
