"""The NAB scorer on hand-made windows, and (slow) the full evaluation on the shared NAB data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.app import nab
from finsent.app.nab import CostMatrix, Series, label_points, raw_score, scaled_sigmoid

NAB_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "nab"
STANDARD = CostMatrix(tp=1.0, fp=0.11, fn=1.0)
LOW_FN = CostMatrix(tp=1.0, fp=0.11, fn=2.0)

ROWS = 1000
PROBATION = nab.probation_length(ROWS)  # 150
WINDOW = (500, 599)  # 100 rows


def detections(*rows: int, n: int = ROWS) -> np.ndarray:
    hits = np.zeros(n, dtype=bool)
    hits[list(rows)] = True
    return hits


def score(*rows: int, cost: CostMatrix = STANDARD, windows=(WINDOW,)) -> float:
    return raw_score(detections(*rows), label_points(ROWS, windows, PROBATION, cost), cost)


def series(n: int, windows: tuple[tuple[int, int], ...], name: str = "x/y.csv") -> Series:
    return Series(
        name=name,
        timestamps=pd.DatetimeIndex(pd.date_range("2024-01-01", periods=n, freq="5min")),
        values=np.zeros(n),
        windows=windows,
    )


def test_probation_is_15_percent_capped_at_750_rows() -> None:
    assert nab.probation_length(1000) == 150
    assert nab.probation_length(4032) == 604
    assert nab.probation_length(15_902) == 750


def test_scaled_sigmoid_shape() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(3.5) == -1.0  # far past a window: a full false positive
    assert scaled_sigmoid(-0.5) > scaled_sigmoid(-0.1) > 0 > scaled_sigmoid(0.1)


def test_detection_at_left_edge_earns_the_full_tp_weight() -> None:
    assert score(500) == pytest.approx(1.0)
    doubled = CostMatrix(tp=2.0, fp=0.11, fn=1.0)
    assert score(500, cost=doubled) == pytest.approx(2.0)


def test_later_detections_in_a_window_earn_less() -> None:
    left, middle, right = score(500), score(550), score(599)
    assert left > middle > right > 0
    assert right == pytest.approx(scaled_sigmoid(-1 / 100) / scaled_sigmoid(-1.0))


def test_only_the_first_detection_in_a_window_counts() -> None:
    assert score(550, 560, 599) == pytest.approx(score(550))
    assert score(500, 520) == pytest.approx(1.0)


def test_detection_right_after_a_window_is_a_cheap_false_positive() -> None:
    just_after = score(500, 600) - score(500)
    expected = STANDARD.fp * scaled_sigmoid(1 / 99)  # 1 row past a 100-row window
    assert just_after == pytest.approx(expected)
    assert -0.01 < just_after < 0
    far_after = score(500, 999) - score(500)
    assert far_after == pytest.approx(-STANDARD.fp)


def test_false_positive_before_any_window_costs_the_full_fp_weight() -> None:
    assert score(500, 300) - score(500) == pytest.approx(-STANDARD.fp)


def test_missed_window_costs_the_fn_weight() -> None:
    assert score() == pytest.approx(-1.0)
    assert score(cost=LOW_FN) == pytest.approx(-2.0)
    assert score(cost=LOW_FN, windows=((300, 399), WINDOW)) == pytest.approx(-4.0)


def test_probationary_period_is_ignored() -> None:
    assert score(10, 149, 500) == pytest.approx(score(500))
    # A window that lies inside the probationary period is neither found nor missed.
    assert score(100, windows=((90, 120), WINDOW)) == pytest.approx(score())


def test_perfect_detector_normalizes_to_100_and_null_to_0() -> None:
    present = [
        series(ROWS, ((300, 399), WINDOW)),
        series(2000, ((1000, 1199),), "x/z.csv"),
    ]
    perfect = []
    for item in present:
        s = np.zeros(len(item.values))
        s[[left for left, _ in item.windows]] = 1.0
        perfect.append(s)
    null = [np.full(len(item.values), 0.5) for item in present]
    for cost in (STANDARD, LOW_FN, CostMatrix(tp=1.0, fp=0.22, fn=1.0)):
        assert nab.score_corpus(present, perfect, cost, "p").score == pytest.approx(100.0)
        assert nab.score_corpus(present, null, cost, "p").score == pytest.approx(0.0)


def test_threshold_is_chosen_once_for_all_files() -> None:
    present = [series(ROWS, (WINDOW,)), series(ROWS, (WINDOW,), "x/z.csv")]
    # File 1 fires at 0.9 in its window; file 2 at 0.6 in its window and 0.8 far outside it.
    first, second = np.zeros(ROWS), np.zeros(ROWS)
    first[500] = 0.9
    second[550], second[999] = 0.6, 0.8
    result = nab.score_corpus(present, [first, second], STANDARD, "standard")
    assert result.threshold == pytest.approx(0.6)
    assert result.detected == 2
    assert result.false_positives == 1


@given(
    scores=st.lists(st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0]), min_size=300, max_size=300),
    windows=st.sets(st.integers(min_value=0, max_value=9), max_size=4),
    fn=st.sampled_from([1.0, 2.0]),
)
def test_threshold_sweep_matches_brute_force(
    scores: list[float], windows: set[int], fn: float
) -> None:
    cost = CostMatrix(tp=1.0, fp=0.11, fn=fn)
    ranges = tuple((30 * w, 30 * w + 9) for w in sorted(windows))
    labels = label_points(300, ranges, nab.probation_length(300), cost)
    values = np.array(scores)
    best = max([raw_score(values >= t, labels, cost) for t in set(scores)] + [-fn * labels.windows])
    threshold, raw = nab.best_threshold([values], [labels], cost)
    assert raw == pytest.approx(best)
    if math.isfinite(threshold):
        assert raw_score(values >= threshold, labels, cost) == pytest.approx(raw)


def test_report_renders_profiles_beside_published_baselines() -> None:
    present = [series(ROWS, (WINDOW,))]
    result = nab.score_corpus(present, [np.zeros(ROWS)], STANDARD, "standard")
    report = nab.NabReport(
        detector="d",
        files=("x/y.csv",),
        windows=1,
        rows=ROWS,
        seconds=0.1,
        profiles={"standard": result},
    )
    text = report.render()
    assert "standard" in text and "KNN CAD" in text and "58.0" in text
    assert "all 58 series" in text


def test_main_reports_missing_data(tmp_path: Path) -> None:
    assert nab.main(tmp_path / "absent") == 2


@pytest.mark.slow
def test_full_evaluation_on_shared_nab() -> None:
    if not (NAB_DIR / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"NAB data not present at {NAB_DIR}")
    report = nab.evaluate(NAB_DIR)
    assert set(report.profiles) == set(nab.PROFILE_NAMES)
    assert len(report.files) >= 1
    for result in report.profiles.values():
        assert 0.0 < result.score <= 100.0  # beats the null detector, never the perfect one
        assert result.null < result.raw <= result.perfect
    for name in nab.PROFILE_NAMES:
        assert report.references["null (no detections)"][name].score == pytest.approx(0.0)
    if len(report.files) == 24:
        # The alerter's detector in its univariate form scores 51.9 on the 24 shared series
        # (below the 60 asked for, and below the 64.8 of the separate detector it replaced):
        # a floor against regressions, not a target met.
        assert report.profiles["standard"].score >= 50.0
    text = report.render()
    assert all(name in text for name in nab.PROFILE_NAMES)
