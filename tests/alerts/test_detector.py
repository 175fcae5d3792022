from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from support.records import window_stat

from finsent.alerts.detector import (
    SeriesState,
    SpikeRule,
    binomial_tail,
    evaluate,
    poisson_tail,
    share_baselines,
    surprise_z,
)
from finsent.core.records import WindowStat

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
RULE = SpikeRule(min_count=5, min_baseline=4, fire_z=3.0, resolve_z=1.0, floor=0.4)


def win(
    i: int,
    neg_share: float,
    count: int = 10,
    key: str = "topic:Financials",
    weighted: float | None = None,
) -> WindowStat:
    return window_stat(
        key=key,
        window_start=T0 + i * timedelta(minutes=15),
        count=count,
        weighted_count=float(count) if weighted is None else weighted,
        mean_score=-neg_share,
        neg_share=neg_share,
        weighted_neg_share=neg_share,
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
    assert fired.baseline_mean == pytest.approx(0.1, abs=0.02)
    assert fired.baseline_score == pytest.approx(-0.1)
    assert state.active is None
    assert state.windows == 7  # the quiet windows and the resolving one; not the spike
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
    quiet, _ = run(QUIET)
    state, _ = run([*QUIET, (0.8, 10), (0.9, 10)])
    assert (state.windows, state.mean, state.var) == (quiet.windows, quiet.mean, quiet.var)


def test_ewma_baseline_follows_a_drifting_series() -> None:
    state, _ = run([(0.1, 20)] * 10 + [(0.3, 20)] * 30)
    assert state.mean == pytest.approx(0.3, abs=0.02)
    assert state.var < 0.01


def test_a_jumpy_series_needs_a_bigger_jump() -> None:
    calm = [(0.2, 40)] * 12
    jumpy = [(0.05, 40), (0.35, 40)] * 6
    spike = (0.5, 40)
    _, calm_events = run([*calm, spike])
    _, jumpy_events = run([*jumpy, spike])
    assert [e.state for _, e in calm_events] == ["firing"]
    assert jumpy_events == []


def test_pending_period_needs_consecutive_windows() -> None:
    rule = SpikeRule(min_count=5, min_baseline=4, fire_z=3.0, floor=0.4, pending_windows=2)
    _, events = run([*QUIET, (0.8, 10), (0.1, 10)], rule)
    assert [(i, e.state) for i, e in events] == [(6, "pending"), (7, "resolved")]
    _, events = run([*QUIET, (0.8, 10), (0.9, 10), (0.1, 10)], rule)
    assert [(i, e.state) for i, e in events] == [(6, "pending"), (7, "firing"), (8, "resolved")]
    assert events[0][1].id == events[1][1].id  # one alert through its lifecycle
    assert events[1][1].started_at == win(6, 0).window_start


def test_one_syndicated_story_is_not_a_spike() -> None:
    # 50 copies of one negative story: 50 stories, but novelty-weighted barely more than one.
    state = SeriesState()
    for i in range(8):
        state = evaluate(RULE, state, win(i, 0.1, 50), NOW).state
    syndicated = evaluate(RULE, state, win(8, 1.0, count=50, weighted=1.6), NOW)
    assert syndicated.event is None
    distinct = evaluate(RULE, state, win(8, 1.0, count=50), NOW)
    assert distinct.event is not None and distinct.event.state == "firing"


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


def test_a_surge_of_negative_volume_fires_only_with_the_volume_rule() -> None:
    # Bank news is negative half the time on a quiet day: three stories a window. A crisis
    # brings twelve, eleven negative: the share moves little, the negative volume multiplies.
    history = [(0.5 if i % 2 else 0.67, 3) for i in range(20)]
    crisis = [*history, (11 / 12, 12)]
    _, share_only = run(crisis)
    assert share_only == []
    with_volume = SpikeRule(**{**RULE.__dict__, "volume_z": 3.5})
    _, events = run(crisis, with_volume)
    assert [(i, e.state) for i, e in events] == [(20, "firing")]
    assert events[0][1].zscore >= RULE.fire_z
    # An ordinary busy day, as negative as usual, stays quiet.
    _, busy = run([*history, (0.5, 6)], with_volume)
    assert busy == []


def test_poisson_tail_matches_exact_values() -> None:
    assert poisson_tail(0, 2.0) == 1.0
    assert poisson_tail(1, 2.0) == pytest.approx(1 - math.exp(-2.0))
    assert poisson_tail(3, 1.5) == pytest.approx(
        1 - math.exp(-1.5) * (1 + 1.5 + 1.5**2 / 2), rel=1e-12
    )
    assert poisson_tail(400, 5.0) < 1e-100  # far tails do not overflow


def test_share_baselines_are_the_states_before_each_window() -> None:
    shares = [0.2, 0.3, 0.9, 0.25]
    learn = [True, True, False, True]

    before = share_baselines(shares, span=4, learn=learn)

    assert len(before) == len(shares) and before[0] == SeriesState()
    expected = SeriesState().learn(0.2, 0.0, 0, 4).learn(0.3, 0.0, 0, 4)
    assert before[2] == expected
    assert before[3] == expected  # the alerting window 2 was not learned
    assert share_baselines(shares, span=4)[3].mean > expected.mean
    with pytest.raises(ValueError, match="one flag per share"):
        share_baselines(shares, span=4, learn=[True])
