from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.records import scored_item

from finsent.core.records import EntitySentiment, ScoredItem, SeriesPoint, WindowStat
from finsent.stream.windows import WindowEngine, WindowSpec, fan_out, series_keys, window_start

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)  # wall clock; irrelevant to event-time results
MIN = timedelta(minutes=1)
M15 = WindowSpec.parse("15m")


def item(i: int, at: datetime, sentiment: str = "neutral", score: float = 0.0, **kw) -> ScoredItem:
    return scored_item(
        id=f"s{i}",
        source=kw.pop("source", "wire"),
        title=f"story {i}",
        published_at=at,
        tickers=kw.pop("tickers", ()),
        novelty=kw.pop("novelty", 100.0),
        topic=kw.pop("topic", "Markets"),
        sentiment=sentiment,
        score=score,
        confidence=kw.pop("confidence", 1.0),
    )


def engine(
    grace_min: int = 2,
    idle: timedelta | None = None,
    lateness_min: int = 0,
    specs: tuple[str, ...] = ("15m",),
) -> WindowEngine:
    return WindowEngine(
        specs=[WindowSpec.parse(s) for s in specs],
        grace=grace_min * MIN,
        allowed_lateness=lateness_min * MIN,
        top_n=2,
        idle_close=idle,
    )


def feed(w: WindowEngine, items: list[ScoredItem], now: datetime = NOW) -> list[WindowStat]:
    emitted = []
    for s in items:
        emitted.extend(w.add_item(s, now).emitted)
    return emitted


def overall(stats: list[WindowStat]) -> list[WindowStat]:
    return [s for s in stats if s.key == "overall"]


def test_window_start_aligns_to_size() -> None:
    assert window_start(T0 + 14 * MIN, 15 * MIN) == T0
    assert window_start(T0 + 15 * MIN, 15 * MIN) == T0 + 15 * MIN


def test_specs_parse_tumbling_and_hopping() -> None:
    assert WindowSpec.parse("15m") == WindowSpec(size=15 * MIN, hop=15 * MIN)
    assert WindowSpec.parse("1h/5m") == WindowSpec(size=60 * MIN, hop=5 * MIN)
    assert WindowSpec.parse("1d").name == "1d" and WindowSpec.parse("1h/5m").name == "1h/5m"
    for bad in ("", "15", "0m", "1h/7m", "5m/1h", "1w"):
        with pytest.raises(ValueError):
            WindowSpec.parse(bad)


def test_a_hopping_window_spec_places_a_story_in_size_over_hop_windows() -> None:
    spec = WindowSpec.parse("1h/15m")
    bounds = list(spec.bounds(T0 + 20 * MIN))
    assert [start for start, _ in bounds] == [T0 + 15 * MIN, T0, T0 - 15 * MIN, T0 - 30 * MIN]
    assert all(start <= T0 + 20 * MIN < end for start, end in bounds)


def test_series_keys_cover_overall_topic_source_and_each_ticker_once() -> None:
    s = item(1, T0, topic="Earnings", tickers=("AAPL", "MSFT", "AAPL"), source="wire")
    assert series_keys(s) == [
        "overall",
        "topic:Earnings",
        "source:wire",
        "ticker:AAPL",
        "ticker:MSFT",
    ]
    assert {p.id for _, p in fan_out(s)} == {"s1"}


def test_a_company_without_a_ticker_has_its_own_series() -> None:
    s = item(1, T0, tickers=("AAPL",))
    s = replace(s, item=replace(s.item, companies=("pear-therapeutics",)))
    assert series_keys(s)[-2:] == ["ticker:AAPL", "company:pear-therapeutics"]


def test_a_ticker_with_its_own_sentiment_gets_it_and_the_other_series_the_headlines() -> None:
    own = EntitySentiment(sentiment="positive", score=0.7, confidence=0.8)
    s = replace(
        item(1, T0, "negative", -0.9, tickers=("CSGN", "UBS"), confidence=0.95),
        entities={"UBS": own},
    )
    points = dict(fan_out(s))
    assert (points["ticker:UBS"].sentiment, points["ticker:UBS"].score) == ("positive", 0.7)
    assert points["ticker:UBS"].confidence == 0.8
    assert points["ticker:UBS"] == replace(
        points["ticker:CSGN"], sentiment="positive", score=0.7, confidence=0.8
    )
    for key in ("overall", "topic:Markets", "source:wire", "ticker:CSGN"):
        assert points[key] == SeriesPoint.of(s)


def test_aggregates_of_a_closed_window() -> None:
    w = engine()
    closed = feed(
        w,
        [
            item(1, T0 + MIN, "negative", -0.8, confidence=1.0),
            item(2, T0 + 2 * MIN, "positive", 0.6, confidence=0.5, novelty=20.0),
            item(3, T0 + 3 * MIN, "negative", -0.4, confidence=0.5, novelty=50.0),
            item(4, T0 + 15 * MIN + 2 * MIN),  # watermark reaches T0+15m: the first window closes
        ],
    )
    [first] = overall(closed)
    assert (first.window_start, first.window_end) == (T0, T0 + 15 * MIN)
    assert (first.version, first.final) == (1, True)
    assert first.count == 3
    assert first.weighted_count == 1.7
    assert first.mean_score == -0.2
    assert first.weighted_mean_score == round((-0.8 + 0.3 - 0.2) / 2.0, 6)
    assert first.neg_share == round(2 / 3, 6)
    assert first.weighted_neg_share == round(1.5 / 1.7, 6)  # repeats weigh less
    assert first.pos_share == round(1 / 3, 6)
    assert [h.id for h in first.top_headlines] == ["s1", "s2"]  # strongest |score| first
    assert {c.key for c in closed} == {"overall", "topic:Markets", "source:wire"}


def test_window_stays_open_until_the_watermark_passes_its_end() -> None:
    w = engine(grace_min=2)
    assert feed(w, [item(1, T0), item(2, T0 + 16 * MIN)]) == []  # watermark T0+14m
    assert len(feed(w, [item(3, T0 + 17 * MIN)])) == 3  # watermark T0+15m
    assert w.watermark == T0 + 15 * MIN


def test_out_of_order_within_grace_is_counted() -> None:
    w = engine(grace_min=5)
    feed(w, [item(1, T0 + 10 * MIN), item(2, T0 + 16 * MIN), item(3, T0 + 14 * MIN)])
    [first] = overall(feed(w, [item(4, T0 + 20 * MIN)]))
    assert first.count == 2


def test_late_story_within_allowed_lateness_restates_the_window() -> None:
    w = engine(grace_min=1, lateness_min=30)
    [closed] = overall(feed(w, [item(1, T0, "neutral"), item(2, T0 + 20 * MIN)]))
    assert (closed.count, closed.version) == (1, 1)
    out = w.add_item(item(3, T0 + 5 * MIN, "negative", -0.9), NOW)
    [restated] = overall(out.emitted)
    assert (restated.count, restated.version, restated.final) == (2, 2, True)
    assert restated.neg_share == 0.5
    assert {late.key for late, _ in out.restated} == {"overall", "topic:Markets", "source:wire"}
    assert out.late == []


def test_story_beyond_allowed_lateness_is_returned_never_dropped_silently() -> None:
    w = engine(grace_min=1, lateness_min=10)
    feed(w, [item(1, T0), item(2, T0 + 30 * MIN)])  # watermark T0+29m >= T0+15m + 10m
    out = w.add_item(item(3, T0 + 5 * MIN), NOW)
    assert {(late.key, late.point.id, late.window_start) for late in out.late} == {
        ("overall", "s3", T0),
        ("topic:Markets", "s3", T0),
        ("source:wire", "s3", T0),
    }
    assert out.emitted == [] and out.restated == []


def test_retired_windows_leave_the_state() -> None:
    w = engine(grace_min=1, lateness_min=10)
    feed(w, [item(1, T0), item(2, T0 + 20 * MIN)])
    assert any(start == T0 for _, start, _ in w.slots)  # closed, kept for late news
    w.take_changes()
    feed(w, [item(3, T0 + 40 * MIN)])
    assert not any(start == T0 for _, start, _ in w.slots)
    _, delete = w.take_changes()
    assert any(sid.startswith(T0.isoformat()) for sid in delete)


def test_redelivered_story_counts_once() -> None:
    w = engine()
    first = w.add_item(item(1, T0), NOW)
    again = w.add_item(item(1, T0), NOW)
    assert first.duplicates == 0 and again.duplicates == 3  # once per series
    [closed] = overall(feed(w, [item(2, T0 + 30 * MIN)]))
    assert closed.count == 1


def test_quiet_period_closes_windows_on_wall_clock() -> None:
    w = engine(grace_min=2, idle=timedelta(seconds=30))
    wall = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    w.add_item(item(1, T0 + 5 * MIN), wall)
    assert w.advance(wall, caught_up=True) == []  # quiet from here
    assert w.advance(wall + timedelta(seconds=10), caught_up=True) == []  # not long enough
    assert w.advance(wall + timedelta(minutes=5), caught_up=True) == []  # ~T0+10m: still open
    closed = w.advance(wall + timedelta(minutes=13), caught_up=True)  # ~T0+18m > end + grace
    assert {c.key for c in closed} == {"overall", "topic:Markets", "source:wire"}


def test_lag_and_a_restart_are_not_quiet_news() -> None:
    w = engine(grace_min=2, idle=timedelta(seconds=30))
    wall = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    w.add_item(item(1, T0 + 5 * MIN), wall)
    # Reading a backlog (or waiting for the first fetch) is not quiet, however long it takes.
    assert w.advance(wall + timedelta(hours=1), caught_up=False) == []
    assert w.advance(wall + timedelta(hours=2), caught_up=True) == []  # quiet starts now

    # The process restarts an hour later from its saved state: quiet is measured afresh.
    restarted = engine(grace_min=2, idle=timedelta(seconds=30))
    restarted.restore(w.take_changes()[0])
    later = wall + timedelta(hours=3)
    assert restarted.advance(later, caught_up=True) == []
    assert restarted.advance(later + timedelta(minutes=5), caught_up=True) == []
    closed = restarted.advance(later + timedelta(minutes=13), caught_up=True)
    assert {c.key for c in closed} == {"overall", "topic:Markets", "source:wire"}


def test_close_all_at_end_of_input_closes_what_a_later_story_would() -> None:
    stories = [item(i, T0 + i * 7 * MIN, "negative" if i % 2 else "positive") for i in range(9)]
    specs = ("15m", "1h")
    flushed = engine(specs=specs)
    emitted = feed(flushed, stories)
    emitted += flushed.close_all(NOW)
    assert flushed.slots == {}  # with no allowed lateness nothing stays open or retiring
    assert flushed.close_all(NOW) == []  # idempotent

    reference = engine(specs=specs)
    sentinel = item(99, T0 + timedelta(days=2), source="sentinel", topic="Macro")
    expected = feed(reference, [*stories, sentinel])
    assert sorted(w.window_start for w in emitted if w.key == "overall") == sorted(
        w.window_start for w in expected if w.key == "overall"
    )
    assert [w for w in emitted if w.key != "overall"] == [
        w for w in expected if w.key not in ("overall", "source:sentinel", "topic:Macro")
    ]
    assert all(w.final and w.version == 1 for w in emitted)


def test_several_sizes_and_hops_share_one_pass() -> None:
    w = engine(grace_min=0, specs=("15m", "1h", "1h/15m"))
    stories = [item(i, T0 + i * 10 * MIN) for i in range(13)]  # T0 .. T0+2h
    sizes = {}
    for s in overall(feed(w, stories)):
        sizes.setdefault(s.window_end - s.window_start, []).append((s.window_start, s.count))
    assert sizes[60 * MIN][:2] == [(T0 - 45 * MIN, 2), (T0 - 30 * MIN, 3)]
    # The on-the-hour 1h window is one window, not one per spec that contains it.
    assert sizes[60 * MIN].count((T0, 6)) == 1
    assert sizes[15 * MIN][:3] == [(T0, 2), (T0 + 15 * MIN, 1), (T0 + 30 * MIN, 2)]


def test_updates_give_running_figures_of_open_windows_only() -> None:
    w = engine()
    feed(w, [item(1, T0, "negative", -0.5), item(2, T0 + MIN)])
    updates = overall(w.updates(NOW))
    assert [(u.count, u.version, u.final) for u in updates] == [(2, 0, False)]
    assert w.updates(NOW) == []  # nothing changed since
    feed(w, [item(3, T0 + 20 * MIN)])  # closes the first window
    assert [(u.window_start, u.count) for u in overall(w.updates(NOW))] == [(T0 + 15 * MIN, 1)]


def test_state_saved_in_the_earlier_form_restores_the_same_windows() -> None:
    """Before headlines were saved once per window, each ranked entry held its own: a store
    written by that version must still restore, to the same closed windows."""
    items = [
        item(i, T0 + i * MIN, "negative" if i % 3 else "positive", -0.9 + i / 10) for i in range(6)
    ]
    reference = engine()
    feed(reference, items[:4])
    feed(saved := engine(), items[:4])
    state, _ = saved.take_changes()
    earlier = {}
    for row, value in state.items():
        if isinstance(value, dict) and "acc" in value:
            acc = dict(value["acc"])
            heads = acc.pop("heads")
            acc["top"] = [[s, i, heads[i]] for s, i in acc["top"]]
            acc["evidence"] = [[n, s, i, heads[i]] for n, s, i in acc["evidence"]]
            value = {**value, "acc": acc}
        earlier[row] = value
    assert any(isinstance(v, dict) and v.get("acc", {}).get("top") for v in earlier.values())
    restored = engine()
    restored.restore(earlier)
    later = [item(i, T0 + 40 * MIN + i * MIN) for i in range(6, 8)]
    expected = feed(reference, items[4:] + later)
    got = feed(restored, items[4:] + later)
    assert got == expected and any(s.top_headlines and s.evidence for s in got)


def test_state_survives_a_restart() -> None:
    items = [
        item(i, T0 + i * 3 * MIN, "negative" if i % 2 else "neutral", -0.5 if i % 2 else 0.0)
        for i in range(24)
    ]
    reference = engine(lateness_min=20)
    expected = feed(reference, items)

    # Two restarts, saving state the way the aggregator does.
    first = engine(lateness_min=20)
    got = feed(first, items[:5])
    put, delete = first.take_changes()
    state = dict(put)
    for k in delete:
        state.pop(k, None)
    second = engine(lateness_min=20)
    second.restore(state)
    assert second.add_item(items[2], NOW).duplicates == 3  # ids seen before the restart
    got += feed(second, items[5:12])
    put, delete = second.take_changes()
    state = {**state, **put}
    for k in delete:
        state.pop(k, None)
    third = engine(lateness_min=20)
    third.restore(state)
    got += feed(third, items[12:])
    assert [(c.key, c.window_start, c.count, c.neg_share) for c in got] == [
        (c.key, c.window_start, c.count, c.neg_share) for c in expected
    ]


def test_points_decode_to_the_same_figures() -> None:
    s = item(1, T0, "negative", -0.7, tickers=("AAPL",))
    point = SeriesPoint.of(s)
    assert (point.id, point.published_at, point.score, point.sentiment) == (
        "s1",
        T0,
        -0.7,
        "negative",
    )


arrivals = st.lists(st.integers(min_value=0, max_value=44 * 60), min_size=1, max_size=40)


def final_windows(w: WindowEngine, stories: list[ScoredItem]) -> list[tuple]:
    closer = item(999, T0 + 3 * 60 * MIN)
    out = feed(w, [*stories, closer])
    return sorted(
        (c.key, c.window_start, c.window_end, c.count, c.neg_share, c.mean_score) for c in out
    )


@given(offsets=arrivals, data=st.data())
def test_arrival_order_within_grace_gives_identical_final_windows(offsets: list[int], data) -> None:
    """Shuffling stories by less than the grace period never changes the closed windows."""
    grace = 5 * MIN
    ordered = [
        item(
            i, T0 + timedelta(seconds=s), *(("negative", -1.0) if s % 3 == 0 else ("neutral", 0.0))
        )
        for i, s in enumerate(sorted(offsets))
    ]
    # Each story arrives up to (not including) the grace period after its event time.
    delays = [data.draw(st.integers(0, int(grace.total_seconds()) - 1)) for _ in ordered]
    arrival = {
        s.item.id: s.item.published_at + timedelta(seconds=d)
        for s, d in zip(ordered, delays, strict=True)
    }
    shuffled = sorted(ordered, key=lambda s: arrival[s.item.id])

    def fresh() -> WindowEngine:
        return WindowEngine(specs=[M15, WindowSpec.parse("30m/15m")], grace=grace)

    check = fresh()
    assert all(not check.add_item(s, NOW).late for s in shuffled)
    assert final_windows(fresh(), shuffled) == final_windows(fresh(), ordered)


@given(offsets=arrivals, cuts=st.lists(st.integers(0, 40), max_size=4))
def test_restarts_anywhere_give_identical_final_windows(offsets: list[int], cuts) -> None:
    """Saving and restoring state between any two stories changes nothing."""
    stories = [item(i, T0 + timedelta(seconds=s)) for i, s in enumerate(sorted(offsets))]
    stories.append(item(999, T0 + 3 * 60 * MIN))

    def run(cut_points: set[int]) -> list[tuple]:
        w = WindowEngine(specs=[M15], grace=2 * MIN, allowed_lateness=10 * MIN)
        state: dict = {}
        out = []
        for i, s in enumerate(stories):
            if i in cut_points:
                put, delete = w.take_changes()
                state.update(put)
                for k in delete:
                    state.pop(k, None)
                w = WindowEngine(specs=[M15], grace=2 * MIN, allowed_lateness=10 * MIN)
                w.restore(state)
            out.extend(w.add_item(s, NOW).emitted)
        return sorted((c.key, c.window_start, c.count, c.version) for c in out)

    assert run(set(cuts)) == run(set())
