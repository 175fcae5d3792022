from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from finsent.records import NewsItem, ScoredItem, WindowStat
from stream.windows import TumblingWindows, series_keys, window_start

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)  # wall clock; irrelevant to event-time results
MIN = timedelta(minutes=1)


def item(i: int, at: datetime, sentiment: str = "neutral", score: float = 0.0, **kw) -> ScoredItem:
    news = NewsItem(
        id=f"s{i}",
        source=kw.pop("source", "wire"),
        title=f"story {i}",
        published_at=at,
        fetched_at=at,
        tickers=kw.pop("tickers", ()),
        novelty=kw.pop("novelty", 100.0),
    )
    return ScoredItem(
        item=news,
        topic=kw.pop("topic", "Markets"),
        sentiment=sentiment,  # type: ignore[arg-type]
        score=score,
        confidence=kw.pop("confidence", 1.0),
        model_version="test",
        scored_at=at,
    )


def windows(grace_min: int = 2, idle: timedelta | None = None) -> TumblingWindows:
    return TumblingWindows(size=15 * MIN, grace=grace_min * MIN, top_n=2, idle_close=idle)


def feed(w: TumblingWindows, items: list[ScoredItem], now: datetime = NOW) -> list[WindowStat]:
    closed = []
    for s in items:
        closed.extend(w.add(s, now).closed)
    return closed


def test_window_start_aligns_to_size() -> None:
    assert window_start(T0 + 14 * MIN, 15 * MIN) == T0
    assert window_start(T0 + 15 * MIN, 15 * MIN) == T0 + 15 * MIN


def test_series_keys_cover_overall_topic_source_and_each_ticker_once() -> None:
    s = item(1, T0, topic="Earnings", tickers=("AAPL", "MSFT", "AAPL"), source="wire")
    assert series_keys(s) == [
        "overall",
        "topic:Earnings",
        "source:wire",
        "ticker:AAPL",
        "ticker:MSFT",
    ]


def test_aggregates_of_a_closed_window() -> None:
    w = windows()
    closed = feed(
        w,
        [
            item(1, T0 + MIN, "negative", -0.8, confidence=1.0),
            item(2, T0 + 2 * MIN, "positive", 0.6, confidence=0.5, novelty=20.0),
            item(3, T0 + 3 * MIN, "negative", -0.4, confidence=0.5),
            item(4, T0 + 15 * MIN + 2 * MIN),  # watermark reaches T0+15m: the first window closes
        ],
    )
    overall = next(c for c in closed if c.key == "overall")
    assert (overall.window_start, overall.window_end) == (T0, T0 + 15 * MIN)
    assert overall.count == 3
    assert overall.weighted_count == 2.2
    assert overall.mean_score == -0.2
    assert overall.weighted_mean_score == round((-0.8 + 0.3 - 0.2) / 2.0, 6)
    assert overall.neg_share == round(2 / 3, 6)
    assert overall.pos_share == round(1 / 3, 6)
    assert [h.id for h in overall.top_headlines] == ["s1", "s2"]  # strongest |score| first
    assert {c.key for c in closed} == {"overall", "topic:Markets", "source:wire"}


def test_window_stays_open_until_the_watermark_passes_its_end() -> None:
    w = windows(grace_min=2)
    assert feed(w, [item(1, T0), item(2, T0 + 16 * MIN)]) == []  # watermark T0+14m
    assert len(feed(w, [item(3, T0 + 17 * MIN)])) == 3  # watermark T0+15m


def test_out_of_order_within_grace_is_counted() -> None:
    w = windows(grace_min=5)
    feed(w, [item(1, T0 + 10 * MIN), item(2, T0 + 16 * MIN), item(3, T0 + 14 * MIN)])
    closed = feed(w, [item(4, T0 + 20 * MIN)])
    assert next(c for c in closed if c.key == "overall").count == 2


def test_late_story_is_returned_never_dropped_silently() -> None:
    w = windows(grace_min=1)
    feed(w, [item(1, T0), item(2, T0 + 20 * MIN)])
    out = w.add(item(3, T0 + 5 * MIN), NOW)
    assert [s.item.id for s in out.late] == ["s3"]
    assert out.closed == []


def test_redelivered_story_counts_once() -> None:
    w = windows()
    first = w.add(item(1, T0), NOW)
    again = w.add(item(1, T0), NOW)
    assert not first.duplicate and again.duplicate
    closed = feed(w, [item(2, T0 + 30 * MIN)])
    assert next(c for c in closed if c.key == "overall").count == 1


def test_quiet_period_closes_windows_on_wall_clock() -> None:
    w = windows(grace_min=2, idle=timedelta(seconds=30))
    wall = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    w.add(item(1, T0 + 5 * MIN), wall)
    assert w.advance(wall + timedelta(seconds=10)) == []  # not idle long enough
    assert w.advance(wall + timedelta(minutes=5)) == []  # event time ~T0+8m: still open
    closed = w.advance(wall + timedelta(minutes=13))  # event time ~T0+16m > end + grace
    assert {c.key for c in closed} == {"overall", "topic:Markets", "source:wire"}


def test_state_survives_a_restart() -> None:
    items = [
        item(i, T0 + i * 3 * MIN, "negative" if i % 2 else "neutral", -0.5 if i % 2 else 0.0)
        for i in range(12)
    ]
    reference = windows()
    expected = feed(reference, items)

    first = windows()
    got = feed(first, items[:5])
    put, delete = first.take_changes()
    state = {k: v for k, v in put.items() if k not in delete}
    second = windows()
    second.restore(state)
    assert second.add(items[2], NOW).duplicate  # ids seen before the restart are remembered
    got += feed(second, items[5:])
    assert [(c.key, c.window_start, c.count, c.neg_share) for c in got] == [
        (c.key, c.window_start, c.count, c.neg_share) for c in expected
    ]


arrivals = st.lists(st.integers(min_value=0, max_value=44 * 60), min_size=1, max_size=40)


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
    closer = item(999, T0 + 3 * 60 * MIN)

    def final(stories: list[ScoredItem]) -> list[tuple]:
        w = TumblingWindows(size=15 * MIN, grace=grace)
        out = feed(w, [*stories, closer])
        return sorted((c.key, c.window_start, c.count, c.neg_share, c.mean_score) for c in out)

    w_check = TumblingWindows(size=15 * MIN, grace=grace)
    late = [s for s in shuffled if w_check.add(s, NOW).late]
    assert late == []
    assert final(shuffled) == final(ordered)
