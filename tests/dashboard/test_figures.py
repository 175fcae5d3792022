"""The pure figure builders, on frames shaped like ``dashboard.queries`` returns."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.figures import (
    NO_DATA,
    SEVERITY_COLORS,
    sentiment_trend,
    topic_lines,
    topic_names,
    volume_bars,
)

T0 = pd.Timestamp("2025-03-03 09:00", tz="UTC")
WINDOW = pd.Timedelta(minutes=15)


def windows(rows: list[tuple[str, int, int, float, float]]) -> pd.DataFrame:
    """(key, window index, count, mean score, negative share) rows as a windows frame."""
    frame = pd.DataFrame(rows, columns=["key", "i", "count", "mean_score", "neg_share"])
    frame["window_start"] = T0 + frame["i"].astype("int64") * WINDOW
    frame["window_end"] = frame["window_start"] + WINDOW
    return frame.drop(columns="i")


def alerts(rows: list[tuple[str, int, str, float]]) -> pd.DataFrame:
    """(key, window index, severity, negative share) rows as an alerts frame."""
    frame = pd.DataFrame(rows, columns=["key", "i", "severity", "neg_share"])
    frame["window_start"] = T0 + frame["i"].astype("int64") * WINDOW
    frame["state"] = "firing"
    frame["zscore"] = 4.2
    return frame.drop(columns="i")


def at(*indexes: int) -> list[pd.Timestamp]:
    """Window starts as plotly stores them: naive, in UTC."""
    return [(T0 + i * WINDOW).tz_localize(None) for i in indexes]


def xs(trace: go.BaseTraceType) -> list[pd.Timestamp]:
    return list(pd.to_datetime(trace.x))


def assert_no_data(fig: go.Figure) -> None:
    assert len(fig.data) == 0
    assert [a.text for a in fig.layout.annotations] == [NO_DATA]


OVERALL = windows(
    [
        # Out of order on purpose: figures must sort by time.
        ("overall", 2, 30, -0.4, 0.6),
        ("overall", 0, 10, 0.2, 0.1),
        ("overall", 1, 20, 0.0, 0.3),
        ("topic:Earnings", 0, 7, -0.5, 0.7),
    ]
)


def test_trend_draws_mean_score_and_negative_share_in_time_order() -> None:
    fig = sentiment_trend(OVERALL)

    mean, neg = fig.data
    assert (mean.name, neg.name) == ("mean score", "negative share")
    assert xs(mean) == xs(neg) == at(0, 1, 2)
    assert list(mean.y) == [0.2, 0.0, -0.4]
    assert list(neg.y) == [0.1, 0.3, 0.6]
    assert neg.yaxis == "y2"  # shares get their own 0..1 axis
    assert list(fig.layout.yaxis2.range) == [0, 1]
    assert not fig.layout.shapes


def test_trend_marks_alerts_on_the_same_key_within_the_plotted_range() -> None:
    fired = alerts(
        [
            ("overall", 2, "critical", 0.6),
            ("overall", 1, "warning", 0.3),
            ("topic:Earnings", 1, "critical", 0.9),  # another series
            ("overall", 9, "critical", 0.8),  # after the last plotted window
        ]
    )

    fig = sentiment_trend(OVERALL, fired)

    assert len(fig.data) == 3
    markers = fig.data[2]
    assert markers.name == "alerts"
    assert markers.mode == "markers"
    assert xs(markers) == at(1, 2)
    assert list(markers.y) == [0.3, 0.6]  # at the alert's negative share, on the share axis
    assert markers.yaxis == "y2"
    assert list(markers.marker.color) == [SEVERITY_COLORS["warning"], SEVERITY_COLORS["critical"]]
    # One dotted vertical line per marked alert, at its window start.
    assert [pd.Timestamp(s.x0) for s in fig.layout.shapes] == [T0 + WINDOW, T0 + 2 * WINDOW]
    assert all(s.x0 == s.x1 and s.line.dash == "dot" for s in fig.layout.shapes)


def test_trend_of_another_key() -> None:
    fig = sentiment_trend(OVERALL, alerts([("overall", 0, "critical", 0.5)]), key="topic:Earnings")

    assert len(fig.data) == 2  # the overall alert does not belong on this series
    assert list(fig.data[0].y) == [-0.5]
    assert fig.layout.title.text == "Sentiment: topic:Earnings"


def test_volume_bars_count_items_per_window() -> None:
    fig = volume_bars(OVERALL)

    (bars,) = fig.data
    assert bars.type == "bar"
    assert xs(bars) == at(0, 1, 2)
    assert list(bars.y) == [10, 20, 30]


TOPICS = windows(
    [
        ("topic:Markets", 1, 3, 0.3, 0.1),
        ("topic:Earnings", 0, 5, -0.2, 0.5),
        ("topic:Markets", 0, 4, 0.1, 0.2),
        ("topic:Earnings", 1, 6, -0.6, 0.8),
        ("overall", 0, 11, 0.0, 0.4),
    ]
)


def test_topic_lines_draw_one_line_per_topic() -> None:
    fig = topic_lines(TOPICS)

    assert [t.name for t in fig.data] == ["Earnings", "Markets"]
    earnings, markets = fig.data
    assert xs(earnings) == xs(markets) == at(0, 1)
    assert list(earnings.y) == [-0.2, -0.6]
    assert list(markets.y) == [0.1, 0.3]
    assert list(markets.customdata) == [4, 3]  # item counts, for the hover


def test_topic_lines_keep_only_the_selected_topics() -> None:
    fig = topic_lines(TOPICS, ["Markets", "Nonexistent"])

    assert [t.name for t in fig.data] == ["Markets"]


def test_topic_lines_with_no_selected_topic_present() -> None:
    assert_no_data(topic_lines(TOPICS, ["Nonexistent"]))


def test_topic_names_busiest_first() -> None:
    assert topic_names(TOPICS) == ["Earnings", "Markets"]  # 11 items against 7
    assert topic_names(TOPICS.iloc[:0]) == []


EMPTY = OVERALL.iloc[:0]


@pytest.mark.parametrize(
    "build",
    [
        lambda: sentiment_trend(EMPTY),
        lambda: sentiment_trend(EMPTY, alerts([("overall", 0, "critical", 0.5)])),
        lambda: sentiment_trend(EMPTY, alerts([])),
        lambda: sentiment_trend(windows([("topic:Markets", 0, 1, 0.0, 0.0)])),
        lambda: volume_bars(EMPTY),
        lambda: volume_bars(TOPICS[TOPICS["key"] != "overall"]),
        lambda: topic_lines(EMPTY),
        lambda: topic_lines(OVERALL[OVERALL["key"] == "overall"]),
    ],
    ids=[
        "trend-empty",
        "trend-empty-with-alerts",
        "trend-empty-alerts-frame",
        "trend-no-overall-series",
        "volume-empty",
        "volume-no-overall-series",
        "topics-empty",
        "topics-no-topic-series",
    ],
)
def test_no_data_yet(build: Callable[[], go.Figure]) -> None:
    assert_no_data(build())


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["overall", "topic:A", "topic:B", "topic:C_1", "ticker:X"]),
            st.integers(0, 50),
            st.integers(1, 100),
            st.floats(-1, 1),
            st.floats(0, 1),
        ),
        unique_by=lambda row: (row[0], row[1]),  # one row per (key, window), as in the store
        max_size=40,
    )
)
def test_figures_account_for_every_window(rows: list[tuple[str, int, int, float, float]]) -> None:
    frame = windows(rows)
    overall = sorted(row for row in rows if row[0] == "overall")
    topics = {row[0].removeprefix("topic:") for row in rows if row[0].startswith("topic:")}

    trend, volume, lines = sentiment_trend(frame), volume_bars(frame), topic_lines(frame)

    if overall:
        assert xs(trend.data[0]) == at(*(row[1] for row in overall))
        assert sum(volume.data[0].y) == sum(row[2] for row in overall)
    else:
        assert_no_data(trend)
        assert_no_data(volume)
    assert sorted(t.name for t in lines.data) == sorted(topics)
    assert sum(len(t.y) for t in lines.data) == sum(r[0].startswith("topic:") for r in rows)
