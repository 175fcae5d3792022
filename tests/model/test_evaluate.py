"""The evaluation's figures: per-class metrics and the calibration error beside them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.core.vocabulary import SENTIMENTS
from finsent.model.data import Corpus, Example
from finsent.model.evaluate import corpus_report, expected_calibration_error, task_metrics
from finsent.model.infer import Predictions


def test_ece_of_perfect_and_of_overconfident_predictions() -> None:
    confident_right = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert expected_calibration_error(confident_right, [0, 2]) == 0.0
    # Says 90% and is right half the time: a gap of 0.4.
    overconfident = np.array([[0.9, 0.05, 0.05]] * 4)
    assert expected_calibration_error(overconfident, [0, 0, 1, 2]) == pytest.approx(0.4)
    # Two bins: 0.6 right 3 of 5 (gap 0), 0.95 right 1 of 5 (gap 0.75): 0.375 on average.
    mixed = np.array([[0.6, 0.3, 0.1]] * 5 + [[0.95, 0.03, 0.02]] * 5)
    assert expected_calibration_error(mixed, [0, 0, 0, 1, 1, 0, 1, 1, 1, 1]) == pytest.approx(0.375)


@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 2)), min_size=1, max_size=50))
def test_ece_is_between_zero_and_one(rows: list[tuple[float, int]]) -> None:
    probs = np.array([[p, (1 - p) / 2, (1 - p) / 2] for p, _ in rows])
    assert 0.0 <= expected_calibration_error(probs, [t for _, t in rows]) <= 1.0


class FixedPredictor:
    def __init__(self, sentiment: np.ndarray, topic: np.ndarray) -> None:
        self.result = Predictions(sentiment, topic, [() for _ in sentiment])

    def predict(self, texts: list[str], explain: bool = True) -> Predictions:
        return self.result


def test_corpus_report_scores_only_labelled_rows_with_their_calibration() -> None:
    rows = [Example("a", 0, None, "t"), Example("b", None, 3, "t"), Example("c", 2, 5, "t")]
    sentiment = np.array([[0.9, 0.05, 0.05], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
    topic = np.full((3, 20), 0.01)
    topic[:, 3] = 0.81
    report = corpus_report(FixedPredictor(sentiment, topic), Corpus([], [], {"t": rows}))
    assert report["t"]["sentiment"]["n"] == 2 and report["t"]["topic"]["n"] == 2
    assert report["t"]["sentiment"]["accuracy"] == 1.0
    assert report["t"]["sentiment"]["ece"] == pytest.approx(0.15)  # (0.1 + 0.2) / 2
    assert report["t"]["topic"]["accuracy"] == 0.5
    assert report["t"]["topic"]["ece"] == pytest.approx(0.31)  # says 0.81, right half the time
    expected = task_metrics([0, 2], [0, 2], SENTIMENTS)
    assert {k: v for k, v in report["t"]["sentiment"].items() if k != "ece"} == expected
