from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.detector import SeriesState, SpikeRule, baseline, binomial_tail, evaluate, surprise_z
from finsent.records import WindowStat

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
RULE = SpikeRule(min_count=5, min_baseline=4, fire_z=3.0, resolve_z=1.0, floor=0.4)


def win(i: int, neg_share: float, count: int = 10, key: str = "topic:Financials") -> WindowStat:
    start = T0 + i * timedelta(minutes=15)
    return WindowStat(
        key=key,
        window_start=start,
        window_end=start + timedelta(minutes=15),
        count=count,
        weighted_count=float(count),
        mean_score=-neg_share,
        weighted_mean_score=-neg_share,
        neg_share=neg_share,
        pos_share=0.0,
        emitted_at=NOW,
    )


def run(shares: list[tuple[float, int]], rule: SpikeRule = RULE):
    state, events = SeriesState(), []
    for i, (share, count) in enumerate(shares):
        result = evaluate(rule, state, win(i, share, count), NOW)
        state = result.state
        if result.event:
            events.append((i, result.event))
    return state, events


QUIET = [(0.1, 10)] * 6


def test_spike_fires_once_then_resolves_with_the_same_id() -> None:
    state, events = run([*QUIET, (0.8, 10), (0.9, 12), (0.1, 10)])
    assert [(i, e.state) for i, e in events] == [(6, "firing"), (8, "resolved")]
    fired, resolved = events[0][1], events[1][1]
    assert fired.id == resolved.id
    assert fired.started_at == resolved.started_at == win(6, 0).window_start
    assert fired.zscore > RULE.fire_z
    assert fired.count == 10 and fired.neg_share == 0.8
    assert state.active is None
    assert state.history == (*QUIET, (0.1, 10))  # the resolving window rejoins the baseline
    assert SeriesState.from_json(state.to_json()) == state


def test_no_fire_without_enough_history() -> None:
    _, events = run([(0.1, 10)] * 3 + [(0.9, 10)])
    assert events == []


def test_no_fire_below_minimum_volume() -> None:
    _, events = run([*QUIET, (1.0, 4)])
    assert events == []


def test_no_fire_below_absolute_floor() -> None:
    # A very quiet series whose share triples is still not an alert below the floor.
    _, events = run([(0.0, 50)] * 6 + [(0.3, 50)])
    assert events == []


def test_hysteresis_keeps_firing_between_thresholds() -> None:
    # After firing, a share that is high but below the fire threshold does not resolve.
    _, events = run([*QUIET, (0.8, 10), (0.35, 10), (0.1, 10)])
    assert [(i, e.state) for i, e in events] == [(6, "firing"), (8, "resolved")]


def test_alerting_windows_stay_out_of_the_baseline() -> None:
    state, _ = run([*QUIET, (0.8, 10), (0.9, 10)])
    assert state.history == tuple(QUIET)


def test_baseline_pools_stories_and_its_error_shrinks_with_volume() -> None:
    p, small = baseline(((0.1, 100),), n=5)
    _, large = baseline(((0.1, 100),), n=500)
    assert p == pytest.approx(11 / 102)
    assert small > large * 9


def test_binomial_tail_matches_exact_values() -> None:
    assert binomial_tail(3, 3, 0.5) == pytest.approx(0.125)
    assert binomial_tail(1, 2, 0.5) == pytest.approx(0.75)
    assert binomial_tail(0, 10, 0.3) == 1.0
    assert binomial_tail(11, 10, 0.3) == 0.0
    assert binomial_tail(5000, 10_000, 0.2) < 1e-300  # no overflow at large n


def test_small_windows_need_more_evidence_than_large_ones() -> None:
    # The same 80% share against a 17% baseline: chance at n=5, overwhelming at n=50.
    assert surprise_z(4, 5, 0.17) < 3.0
    assert surprise_z(40, 50, 0.17) > 9.0
    assert surprise_z(0, 10, 0.1) < 0 < surprise_z(5, 10, 0.1)


def test_four_of_five_by_chance_does_not_fire() -> None:
    _, events = run([(0.2, 6)] * 8 + [(0.8, 5)])
    assert events == []


def test_severity_rises_with_z() -> None:
    _, events = run([(0.0, 200)] * 6 + [(1.0, 50)])
    assert events[0][1].severity == "critical"
    _, events = run([(0.2, 20)] * 6 + [(0.55, 20)], SpikeRule(fire_z=3.0, floor=0.4))
    assert events[0][1].severity == "warning"


def test_redelivered_window_is_ignored() -> None:
    state, _ = run(QUIET)
    again = evaluate(RULE, state, win(5, 0.9), NOW)
    assert again.event is None and again.state == state


def test_state_round_trips_through_json() -> None:
    state, _ = run([*QUIET, (0.8, 10)])
    assert state.active is not None
    assert SeriesState.from_json(state.to_json()) == state


def test_same_input_gives_same_alerts_regardless_of_wall_clock() -> None:
    shares = [*QUIET, (0.8, 10), (0.1, 10)]
    _, first = run(shares)
    state, second = SeriesState(), []
    for i, (share, count) in enumerate(shares):
        result = evaluate(RULE, state, win(i, share, count), NOW + timedelta(days=i))
        state = result.state
        if result.event:
            second.append((i, result.event))
    assert first == second
