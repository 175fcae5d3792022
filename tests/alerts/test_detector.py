"""The negative-surge detector on synthetic series: surges fire early, seasonality and busy
news days do not, and the same design holds from a few stories a day to thousands."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.records import window_stat

from finsent.alerts.detector import (
    SeriesState,
    SpikeRule,
    UnivariateSurge,
    evaluate,
    negative_binomial_tail,
    resolve_without_data,
    tail_z,
)
from finsent.core.records import Alert, Headline, WindowStat

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
TICK = timedelta(minutes=15)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
RULE = SpikeRule()


def window(
    i: int,
    stories: int,
    negatives: int,
    key: str = "topic:Financials",
    novelty: float = 100.0,
    evidence: tuple[Headline, ...] = (),
) -> WindowStat:
    weighted = stories * novelty / 100
    return window_stat(
        key=key,
        window_start=T0 + i * TICK,
        count=stories,
        weighted_count=weighted,
        neg_share=negatives / stories,
        weighted_neg_share=negatives / stories,
        mean_score=-negatives / stories,
        evidence=evidence,
        emitted_at=NOW,
    )


def feed(
    rate_per_hour: Callable[[int], float], share: Callable[[int], float], ticks: int, seed: int = 7
) -> Iterator[WindowStat]:
    """Poisson stories per 15-minute tick; each is negative with probability ``share(tick)``."""
    rng = random.Random(seed)
    for i in range(ticks):
        n = _poisson(rng, rate_per_hour(i) / 4)
        if n:
            yield window(i, n, sum(rng.random() < share(i) for _ in range(n)))


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 30:  # normal approximation: exact enough for a background, and fast
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def run(windows: list[WindowStat] | Iterator[WindowStat], rule: SpikeRule = RULE):
    state, events = SeriesState(), []
    for w in windows:
        result = evaluate(rule, state, w, NOW, origin=T0)
        state = result.state
        if result.event:
            events.append(result.event)
    return state, events


def fired(events: list[Alert]) -> list[Alert]:
    return [e for e in events if e.state == "firing"]


def hour_of(tick: int) -> int:
    return (tick // 4) % 24


def weekday(tick: int) -> int:
    return (tick // 96) % 7


def seasonal(base: float) -> Callable[[int], float]:
    """Busy working hours (3x the night), quiet weekends (a fifth)."""

    def rate(tick: int) -> float:
        day = 1.0 if weekday(tick) < 5 else 0.2
        hours = 3.0 if 8 <= hour_of(tick) < 18 else 1.0
        return base * day * hours

    return rate


FOUR_WEEKS = 4 * 7 * 96


@pytest.mark.parametrize("stories_a_day", [20, 200, 2_000, 20_000])
def test_seasonal_news_with_a_steady_share_never_fires(stories_a_day: int) -> None:
    _, events = run(feed(seasonal(stories_a_day / 40), lambda i: 0.3, FOUR_WEEKS))
    assert fired(events) == []


def test_an_earnings_season_tripling_the_volume_does_not_fire() -> None:
    def season(tick: int) -> float:
        return 30.0 if tick >= 2 * 7 * 96 else 10.0  # 10 stories an hour, then 30

    _, events = run(feed(season, lambda i: 0.4, FOUR_WEEKS))
    assert fired(events) == []


@pytest.mark.parametrize("stories_a_day", [20, 200, 2_000, 20_000])
def test_a_surge_of_bad_news_fires_within_hours_at_every_volume(stories_a_day: int) -> None:
    """The same design, no per-feed tuning: three weeks of steady news, then for six hours
    five times the usual bad news (at least a handful of stories)."""
    surge_start = 3 * 7 * 96 + 40  # a Monday, 10:00

    def rate(tick: int) -> float:
        extra = 0.0
        if surge_start <= tick < surge_start + 24:
            extra = max(4 * stories_a_day / 24 * 0.3, 2.0)  # extra stories an hour, all bad
        return stories_a_day / 24 + extra

    def share(tick: int) -> float:
        if surge_start <= tick < surge_start + 24:
            usual = stories_a_day / 24 * 0.3
            extra = max(4 * usual, 2.0)
            return (usual + extra) / (stories_a_day / 24 + extra)
        return 0.3

    _, events = run(feed(rate, share, surge_start + 96))
    first = fired(events)
    assert first, "the surge did not fire"
    assert all(e.started_at >= T0 + surge_start * TICK for e in first)
    lead = first[0].updated_at - (T0 + surge_start * TICK)
    assert lead <= timedelta(hours=6)


def test_scales_of_minutes_judge_a_steady_series_by_its_own_rate_within_the_hour() -> None:
    """The prior is sized to the scales: at 2m/4m scales (a fast feed, the soak) a series with
    a steady 1 story a minute, 35 % negative, is soon judged against its own 1.4 negatives per
    4 minutes. A prior of 2 negatives a day, weighing six hours, expected about 0.2 there an
    hour in, and 50 such series fired 86 alerts in two hours."""
    rule = SpikeRule(scales=(timedelta(minutes=2), timedelta(minutes=4)))
    minute = timedelta(minutes=1)
    alerts, expected_after_an_hour = 0, []
    for seed in range(50):
        rng, state = random.Random(seed), SeriesState()
        for i in range(120):
            stories = _poisson(rng, 1.0)
            if not stories:
                continue
            negatives = sum(rng.random() < 0.35 for _ in range(stories))
            share = negatives / stories
            w = window_stat(
                key="ticker:ZZZ",
                window_start=T0 + i * minute,
                count=stories,
                weighted_count=float(stories),
                neg_share=share,
                weighted_neg_share=share,
                emitted_at=NOW,
            )
            result = evaluate(rule, state, w, NOW, origin=T0, explain=True)
            state = result.state
            alerts += result.event is not None and result.event.state == "firing"
            if i == 60:
                expected_after_an_hour.append(result.verdicts[-1].expected)
    mean_expected = sum(expected_after_an_hour) / len(expected_after_an_hour)
    assert 0.7 * 1.4 <= mean_expected <= 1.3 * 1.4
    assert alerts <= 8  # 4 in this run: 100 series-hours at a z of 3.5, and bursty Poisson


def test_two_novel_negative_stories_on_a_quiet_company_fire_and_resolve_with_one_id() -> None:
    key = "ticker:ACME"
    quiet = [window(i, 1, 0, key=key) for i in range(0, 14 * 96, 96)]  # one neutral story a day
    burst = [window(14 * 96 + i, 1, 1, key=key) for i in (0, 2)]  # two bad ones in an hour
    after = [window(17 * 96 + i, 1, 0, key=key) for i in range(0, 96 * 3, 48)]
    state, events = run([*quiet, *burst, *after])
    assert [e.state for e in events] == ["firing", "resolved"]
    firing, resolved = events
    assert firing.id == resolved.id
    assert firing.updated_at == burst[-1].window_end  # as soon as the second story is in
    assert firing.zscore >= RULE.fire_z
    assert "2.0 negative stories in" in firing.message
    assert state.active is None


def test_one_story_syndicated_many_times_is_not_a_surge() -> None:
    key = "ticker:ACME"
    quiet = [window(i, 1, 0, key=key) for i in range(0, 14 * 96, 96)]
    # Twenty copies of one story: novelty 5 each, one story's worth in all.
    copies = [window(14 * 96 + i, 1, 1, key=key, novelty=5.0) for i in range(20)]
    _, events = run([*quiet, *copies])
    assert fired(events) == []


def test_a_busy_news_day_with_its_usual_share_does_not_fire() -> None:
    steady = list(feed(lambda i: 8.0, lambda i: 0.4, 14 * 96))
    busy_day = [window(14 * 96 + i, 8, 3) for i in range(96)]  # four times the volume
    _, events = run([*steady, *busy_day])
    assert fired(events) == []


def test_a_mostly_negative_surge_on_a_usually_negative_series_still_needs_volume() -> None:
    steady = list(feed(lambda i: 4.0, lambda i: 0.8, 14 * 96))
    more_of_the_same = [window(14 * 96 + i, 1, 1) for i in range(0, 8)]
    _, events = run([*steady, *more_of_the_same])
    assert fired(events) == []


def test_the_alert_shows_only_negative_stories_most_novel_first() -> None:
    key = "ticker:ACME"
    quiet = [window(i, 1, 0, key=key) for i in range(0, 14 * 96, 96)]

    def story(n: int, novelty: float, score: float, sentiment: str = "negative") -> Headline:
        return Headline(
            id=f"s{n}", title=f"story {n}", score=score, novelty=novelty, sentiment=sentiment
        )

    burst = [
        window(
            14 * 96,
            2,
            1,
            key=key,
            evidence=(story(1, 40.0, -0.9), story(9, 100.0, 0.9, "positive")),
        ),
        window(14 * 96 + 1, 1, 1, key=key, evidence=(story(2, 100.0, -0.5),)),
        window(14 * 96 + 2, 1, 1, key=key, evidence=(story(3, 100.0, -0.8),)),
        window(14 * 96 + 3, 1, 1, key=key, evidence=(story(4, 70.0, -0.7),)),
    ]
    _, events = run([*quiet, *burst], replace(RULE, min_count=3.0))
    alert = fired(events)[0]
    assert [h.id for h in alert.headlines] == ["s3", "s2", "s1"]
    assert all(h.sentiment == "negative" for h in alert.headlines)


def test_a_redelivered_window_is_ignored() -> None:
    state, _ = run([window(0, 3, 1), window(1, 3, 1)])
    again = evaluate(RULE, state, window(1, 3, 3), NOW, origin=T0)
    assert again.state == state
    assert again.event is None


def test_state_round_trips_through_json_and_old_state_starts_afresh() -> None:
    state, _ = run(feed(lambda i: 6.0, lambda i: 0.3, 3 * 96))
    assert SeriesState.from_json(state.to_json()) == state
    old = {"windows": 5, "mean": 0.1, "var": 0.0, "score": 0.0, "last_window": None, "active": None}
    assert SeriesState.from_json(old) == SeriesState()


def test_a_quiet_series_resolves_for_want_of_data() -> None:
    key = "ticker:ACME"
    quiet = [window(i, 1, 0, key=key) for i in range(0, 14 * 96, 96)]
    burst = [window(14 * 96 + i, 1, 1, key=key) for i in (0, 1, 2)]
    state, events = run([*quiet, *burst])
    assert state.active is not None
    assert resolve_without_data(state, TICK, 96, burst[-1].window_end) is None
    later = burst[-1].window_end + 97 * TICK
    result = resolve_without_data(state, TICK, 96, later)
    assert result is not None and result.event is not None
    assert result.event.state == "resolved" and result.state.active is None


def test_negative_binomial_tail_matches_exact_sums() -> None:
    def exact(k: int, mean: float, inverse_shape: float) -> float:
        r = 1 / inverse_shape
        q = mean / (mean + r)
        pmf = [
            math.exp(
                math.lgamma(i + r)
                - math.lgamma(r)
                - math.lgamma(i + 1)
                + r * math.log1p(-q)
                + i * math.log(q)
            )
            for i in range(k)
        ]
        return 1 - sum(pmf)

    for k, mean, inv in [(3, 0.5, 0.5), (1, 2.0, 1.0), (10, 4.0, 0.1), (5, 5.0, 2.0)]:
        assert negative_binomial_tail(k, mean, inv) == pytest.approx(exact(k, mean, inv), rel=1e-9)
    assert negative_binomial_tail(0, 1.0, 0.5) == 1.0
    # Far tails keep their precision instead of rounding to zero.
    assert 0 < negative_binomial_tail(40, 0.01, 0.01) < 1e-100
    assert tail_z(0.5) == pytest.approx(0.0, abs=1e-12)


def test_the_same_windows_give_the_same_alerts_whatever_the_wall_clock() -> None:
    windows = list(feed(seasonal(2.0), lambda i: 0.3, 7 * 96))
    burst = [window(7 * 96 + i, 2, 2) for i in range(8)]
    first = run([*windows, *burst])
    state, events = SeriesState(), []
    for w in [*windows, *burst]:
        result = evaluate(RULE, state, w, datetime(2031, 1, 1, tzinfo=UTC), origin=T0)
        state = result.state
        events.extend([result.event] if result.event else [])
    assert (state, events) == first


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3),  # ticks since the previous window
            st.integers(min_value=1, max_value=10_000),  # stories
            st.floats(min_value=0.0, max_value=1.0),  # negative share
            st.floats(min_value=0.0, max_value=100.0),  # novelty
        ),
        max_size=60,
    )
)
def test_any_series_gives_finite_scores_and_well_formed_alerts(
    rows: list[tuple[int, int, float, float]],
) -> None:
    state, tick = SeriesState(), 0
    for gap, stories, share, novelty in rows:
        tick += gap + 1
        w = window(tick, stories, round(share * stories), novelty=novelty)
        result = evaluate(RULE, state, w, NOW, origin=T0)
        state = result.state
        assert math.isfinite(result.zscore)
        if result.event is not None:
            assert result.event.state in ("firing", "resolved")
            assert 0.0 <= result.event.weighted_neg_share <= 1.0  # type: ignore[operator]
    assert SeriesState.from_json(state.to_json()) == state


def test_the_univariate_form_flags_a_level_shift_and_not_the_noise_before_it() -> None:
    rng = random.Random(3)
    detector = UnivariateSurge(probation=200)
    noise = [detector.update(None, rng.gauss(10.0, 1.0)) for _ in range(2000)]
    shifted = [detector.update(None, rng.gauss(16.0, 1.0)) for _ in range(50)]
    assert max(noise) < 0.5
    assert max(shifted) >= 0.5
    assert detector.update(None, math.nan) == 0.0  # a gap is not evidence


def test_a_series_state_is_its_own_windows_whatever_the_watch_began() -> None:
    """Windows of different series reach the alerter in an order that can differ between a
    live run and a replay; a series' state must not depend on it, only its judgement does."""
    key = "ticker:ACME"
    windows = [window(14 * 96 + i, 1, 1, key=key) for i in (0, 2, 40, 41)]
    states = []
    for origin in (T0, T0 + 7 * 96 * TICK, None):
        state = SeriesState()
        for w in windows:
            state = evaluate(RULE, state, w, NOW, origin=origin).state
        states.append(state)
    sums = [replace(state, active=None) for state in states]  # the judgement may differ
    assert sums[0] == sums[1] == sums[2]
    # Watched for two weeks without a story, its first bad ones are news; watched for none, not.
    long_watch = evaluate(RULE, SeriesState(), windows[0], NOW, origin=T0)
    quiet_then_two = evaluate(RULE, long_watch.state, windows[1], NOW, origin=T0)
    fresh = evaluate(RULE, SeriesState(), windows[0], NOW, origin=None)
    fresh_two = evaluate(RULE, fresh.state, windows[1], NOW, origin=None)
    assert quiet_then_two.event is not None and quiet_then_two.event.state == "firing"
    assert fresh_two.event is None


def test_explaining_a_series_changes_none_of_its_decisions() -> None:
    """``explain`` computes every scale's z, where the guards would skip it: the states and
    alerts stay those of the plain run, and each verdict names the guards that held it back."""

    def rate(tick: int) -> float:
        return 12.0 if 700 <= tick < 716 else 0.5

    def share(tick: int) -> float:
        return 0.9 if 700 <= tick < 716 else 0.3

    plain, explained = SeriesState(), SeriesState()
    verdicts = []
    for w in feed(rate, share, 800):
        a = evaluate(RULE, plain, w, NOW, origin=T0)
        b = evaluate(RULE, explained, w, NOW, origin=T0, explain=True)
        assert a.state == b.state and a.event == b.event and a.verdicts == ()
        assert [v.scale for v in b.verdicts] == list(RULE.scales)
        plain, explained = a.state, b.state
        verdicts.extend(b.verdicts)
    assert any(v.passes and not v.blocked_by for v in verdicts)
    blocked = [v for v in verdicts if not v.passes]
    assert blocked and all(v.blocked_by for v in blocked)
    assert any(v.zscore != 0.0 for v in blocked)  # the z the plain run does not compute
