"""The streaming anomaly detector on synthetic series."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.alerts.anomaly import (
    ALARM,
    AnomalyDetector,
    DetectorConfig,
    RobustBaseline,
    RollingMax,
    RollingQuantiles,
    score_series,
)

PROBATION = 600
ONSET = 3000


def noise(seed: int, n: int = 4000) -> np.ndarray:
    return 10.0 + np.random.default_rng(seed).normal(size=n)


def alarms(scores: list[float]) -> list[int]:
    return [i for i, s in enumerate(scores) if s >= ALARM]


@pytest.mark.parametrize("seed", range(8))
def test_flat_noisy_series_raises_no_alarm(seed: int) -> None:
    scores = score_series(noise(seed), probation=PROBATION)
    assert alarms(scores) == []
    assert max(scores) < ALARM


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("jump", [10.0, -10.0])
def test_spike_is_detected_on_the_spot(seed: int, jump: float) -> None:
    values = noise(seed)
    values[ONSET] += jump
    assert alarms(score_series(values, probation=PROBATION)) == [ONSET]


@pytest.mark.parametrize("seed", range(4))
def test_level_shift_is_detected_quickly(seed: int) -> None:
    values = noise(seed)
    values[ONSET:] += 3.0  # three sigma, sustained: no single value stands out much
    found = alarms(score_series(values, probation=PROBATION))
    assert found, "the shift was never detected"
    assert ONSET <= found[0] <= ONSET + 48


def test_probationary_period_only_learns() -> None:
    values = noise(0)
    values[100] += 50.0
    scores = score_series(values, probation=PROBATION)
    assert scores[:PROBATION] == [0.0] * PROBATION
    assert alarms(scores) == []


def test_one_event_raises_one_alarm_then_a_bigger_one_raises_another() -> None:
    values = noise(1)
    values[ONSET] += 10.0
    values[ONSET + 10] += 20.0  # inside the quiet period: held below the alarm level
    values[ONSET + 400] += 40.0  # a new record, well after it
    assert alarms(score_series(values, probation=PROBATION)) == [ONSET, ONSET + 400]


def test_units_do_not_matter() -> None:
    values = noise(2)
    values[ONSET] += 8.0
    # Scaling by a power of two is exact in floating point, so the scores must match exactly.
    assert score_series(values * 1024.0, probation=PROBATION) == score_series(
        values, probation=PROBATION
    )


def test_gaps_are_skipped() -> None:
    values = noise(3, n=1000)
    with_gaps = np.insert(values, [700, 800], math.nan)
    scores = score_series(with_gaps, probation=PROBATION)
    assert scores[700] == 0.0 and scores[801] == 0.0
    assert [s for i, s in enumerate(scores) if i not in (700, 801)] == score_series(
        values, probation=PROBATION
    )


@given(
    values=st.lists(
        st.one_of(
            st.integers(min_value=-5, max_value=5).map(float),
            st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
        ),
        min_size=1,
        max_size=400,
    ),
    probation=st.integers(min_value=0, max_value=100),
)
def test_scores_are_deterministic_bounded_and_quiet_after_alarms(
    values: list[float], probation: int
) -> None:
    config = DetectorConfig(baseline_window=50, record_window=120, quiet_period=10)
    first = score_series(values, probation=probation, config=config)
    assert first == score_series(values, probation=probation, config=config)
    assert all(0.0 <= s < 1.0 for s in first)
    assert first[:probation] == [0.0] * min(probation, len(values))
    found = alarms(first)
    assert all(b - a > config.quiet_period for a, b in zip(found, found[1:], strict=False))


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=200))
def test_rolling_helpers_match_numpy(values: list[float]) -> None:
    size = 25
    quantiles, maxima = RollingQuantiles(size), RollingMax(size)
    for i, value in enumerate(values):
        quantiles.add(value)
        maxima.add(value)
        window = values[max(0, i - size + 1) : i + 1]
        assert maxima.max() == max(window)
        for q in (0.05, 0.25, 0.5, 0.75, 0.99):
            assert quantiles.quantile(q) == pytest.approx(
                float(np.quantile(window, q)), rel=1e-9, abs=1e-6
            )


def test_extreme_values_keep_scores_finite() -> None:
    values = [0.0, 1.0] * 100 + [1e308, -1e308, 5e-324, 0.0, 1e308] * 20
    scores = score_series(values, probation=50, config=DetectorConfig(baseline_window=30))
    assert all(0.0 <= s < 1.0 for s in scores)


def test_robust_baseline_ignores_outliers_and_survives_constant_counts() -> None:
    baseline = RobustBaseline(window=200)
    for i in range(200):
        baseline.add(1000.0 if i % 50 == 0 else float(i % 5))  # 0..4 with rare huge spikes
    assert abs(baseline.zscore(2.0)) < 0.5  # the spikes did not move the median or spread
    zeros = RobustBaseline(window=100)
    for _ in range(100):
        zeros.add(0.0)
    assert math.isfinite(zeros.zscore(1.0))


def test_the_detector_reads_no_clock() -> None:
    # Timestamps are bookkeeping only: forwards, backwards or absent, the scores are the same.
    values = noise(4, n=1200)
    values[1000] += 12.0
    start = datetime(2015, 3, 1, tzinfo=UTC)
    forwards, backwards = AnomalyDetector(PROBATION), AnomalyDetector(PROBATION)
    ahead = [forwards.update(start + timedelta(minutes=5 * i), v) for i, v in enumerate(values)]
    behind = [backwards.update(start - timedelta(days=i), v) for i, v in enumerate(values)]
    assert ahead == behind == score_series(values, probation=PROBATION)
    assert alarms(ahead) == [1000]
    assert forwards.last_timestamp == start + timedelta(minutes=5 * 1199)
