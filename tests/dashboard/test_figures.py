"""The pure figure builders, on frames shaped like ``dashboard.queries`` returns."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.dashboard.figures import (
    NO_DATA,
    SEVERITY_COLORS,
    STATE_COLORS,
    HeatMatrix,
    alert_labels,
    alert_segments,
    alert_timeline,
    baseline_band,
    heatmap,
    heatmap_matrix,
    in_time_zone,
    selected_cell,
    sentiment_trend,
    ticker_trend,
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
    frame["baseline_mean"] = 0.2
    return frame.drop(columns="i")


def trace(fig: go.Figure, name: str) -> go.BaseTraceType:
    [found] = [t for t in fig.data if t.name == name]
    return found


def names(fig: go.Figure) -> list[str]:
    return [t.name for t in fig.data]


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

    mean, neg = fig.data[:2]
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

    markers = trace(fig, "alerts")
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

    assert "alerts" not in names(fig)  # the overall alert does not belong on this series
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


# -- baseline band --------------------------------------------------------------------------


def test_baseline_band_is_an_ewma_of_the_windows_before() -> None:
    shares = [0.2, 0.3, 0.25, 0.6, 0.22, 0.28]

    band = baseline_band(shares, span=4, k=2.0)

    # The first window has no history; each later one is compared with the windows before it.
    assert band.iloc[0].isna().all()
    assert band["mean"][1] == pytest.approx(0.2)
    assert band["mean"][2] == pytest.approx(0.25)  # a running mean while young: (0.2 + 0.3) / 2
    alpha = 2 / (4 + 1)  # then the span's weight
    mean, var = 0.25, 0.5 * 0.5 * 0.1**2
    for i, share in enumerate(shares[2:5], start=3):
        delta = share - mean
        mean, var = mean + alpha * delta, (1 - alpha) * (var + alpha * delta * delta)
        assert band["mean"][i] == pytest.approx(mean)
        assert band["upper"][i] == pytest.approx(min(mean + 2 * var**0.5, 1))
        assert band["lower"][i] == pytest.approx(max(mean - 2 * var**0.5, 0))


def test_baseline_band_skips_windows_it_must_not_learn() -> None:
    shares = [0.2, 0.2, 0.9, 0.2]

    learned = baseline_band(shares, span=4)
    skipped = baseline_band(shares, span=4, learn=[True, True, False, True])

    assert learned["mean"][3] > 0.3  # the spike pulled the baseline up
    assert skipped["mean"][3] == pytest.approx(0.2)  # an alerting window is not learned
    assert skipped["upper"][3] == pytest.approx(0.2)  # no spread in a flat history


def test_trend_draws_the_baseline_band_on_the_share_axis() -> None:
    fig = sentiment_trend(OVERALL)

    assert names(fig) == [
        "mean score",
        "negative share",
        "baseline band",
        "baseline band",
        "baseline",
    ]
    upper, lower, mean = fig.data[2:]
    assert {upper.yaxis, lower.yaxis, mean.yaxis} == {"y2"}
    assert lower.fill == "tonexty"  # the band fills between its upper and lower lines
    assert xs(mean) == at(0, 1, 2)
    assert pd.isna(mean.y[0])
    assert mean.y[1] == pytest.approx(0.1)  # window 1 against window 0 (share 0.1)
    assert mean.y[2] == pytest.approx(0.2)  # the running mean of 0.1 and 0.3
    assert all(
        lo <= m <= hi for lo, m, hi in zip(lower.y[1:], mean.y[1:], upper.y[1:], strict=True)
    )


def test_trend_leaves_alert_windows_out_of_the_baseline() -> None:
    frame = windows(
        [("overall", i, 10, 0.0, share) for i, share in enumerate([0.2, 0.2, 0.9, 0.2])]
    )

    fig = sentiment_trend(frame, alerts([("overall", 2, "critical", 0.9)]))

    assert trace(fig, "baseline").y[3] == pytest.approx(0.2)


def test_trend_title_escapes_feed_text() -> None:
    frame = windows([("source:<b>x</b>", 0, 1, 0.0, 0.0)])

    fig = sentiment_trend(frame, key="source:<b>x</b>")

    assert fig.layout.title.text == "Sentiment: source:&lt;b&gt;x&lt;/b&gt;"


def test_topic_lines_mark_alerts_on_their_topic() -> None:
    fired = alerts([("topic:Markets", 1, "critical", 0.1), ("topic:Earnings", 7, "warning", 0.9)])

    fig = topic_lines(TOPICS, alerts=fired)

    markers = trace(fig, "alerts")
    assert xs(markers) == at(1)
    assert list(markers.y) == [0.3]  # on the Markets line, at its mean score
    assert markers.customdata[0][0] == "Markets"


# -- heatmap --------------------------------------------------------------------------------


def test_heatmap_matrix_is_topics_by_window_starts() -> None:
    matrix = heatmap_matrix(TOPICS)

    assert matrix.topics == ["Earnings", "Markets"]  # busiest first
    assert matrix.starts == [T0, T0 + WINDOW]
    assert matrix.z == [[0.5, 0.8], [0.2, 0.1]]
    assert [(c.topic, c.start, c.count) for c in matrix.cells] == [
        ("Earnings", T0, 5),
        ("Earnings", T0 + WINDOW, 6),
        ("Markets", T0, 4),
        ("Markets", T0 + WINDOW, 3),
    ]
    assert matrix.cells[0].end == T0 + WINDOW
    assert matrix.cells[0].key == "topic:Earnings"


def test_heatmap_matrix_leaves_missing_windows_empty() -> None:
    frame = windows([("topic:A", 0, 5, 0.0, 0.4), ("topic:B", 2, 9, 0.0, 0.7)])

    matrix = heatmap_matrix(frame)

    assert matrix.topics == ["B", "A"]
    assert matrix.starts == [T0, T0 + 2 * WINDOW]
    assert matrix.z == [[None, 0.7], [0.4, None]]
    assert heatmap_matrix(frame, ["A"]).topics == ["A"]


def test_heatmap_cells_are_clickable_markers() -> None:
    matrix = heatmap_matrix(TOPICS)

    fig = heatmap(matrix)

    cells, markers = fig.data
    assert cells.type == "heatmap"
    assert list(cells.y) == ["Earnings", "Markets"]
    assert (cells.zmin, cells.zmax) == (0, 1)
    assert cells.hoverinfo == "skip"  # the markers answer hovers and clicks
    assert markers.type == "scatter"
    assert len(markers.x) == len(matrix.cells) == 4
    assert list(markers.customdata[1][:2]) == ["Earnings", (T0 + WINDOW).isoformat()]
    assert markers.marker.opacity == 0
    assert markers.selected.marker.opacity == 1
    assert fig.layout.hoverdistance == -1
    assert fig.layout.clickmode == "event+select"


def test_selected_cell_from_a_plotly_selection_event() -> None:
    matrix = heatmap_matrix(TOPICS)
    second = matrix.cells[1]

    by_custom = {"points": [{"customdata": ["Earnings", (T0 + WINDOW).isoformat(), 6]}]}
    by_index = {"points": [{"curve_number": 1, "point_index": 1}]}
    by_xy = {"points": [{"x": "2025-03-03 09:15", "y": "Earnings"}]}

    assert selected_cell(by_custom, matrix) == second
    assert selected_cell(by_index, matrix) == second
    assert selected_cell(by_xy, matrix) == second
    assert selected_cell({"points": []}, matrix) is None
    assert selected_cell(None, matrix) is None
    assert selected_cell({"points": [{"curve_number": 0, "point_index": 9}]}, matrix) is None
    assert selected_cell(by_custom, HeatMatrix([], [], [], [])) is None


# -- alerts ---------------------------------------------------------------------------------


def alert_rows(rows: list[tuple[str, str, str, int, int]]) -> pd.DataFrame:
    """(id, key, state, window index, updated window index) rows as an alerts frame."""
    frame = pd.DataFrame(rows, columns=["id", "key", "state", "i", "u"])
    frame["window_start"] = T0 + frame["i"].astype("int64") * WINDOW
    frame["window_end"] = frame["window_start"] + WINDOW
    frame["started_at"] = frame["window_start"]
    frame["updated_at"] = T0 + frame["u"].astype("int64") * WINDOW
    frame["severity"] = "critical"
    return frame.drop(columns=["i", "u"])


def event_rows(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """(alert id, state, window index of the event time) rows as an events frame."""
    frame = pd.DataFrame(rows, columns=["alert_id", "state", "i"])
    frame["at"] = T0 + frame["i"].astype("int64") * WINDOW
    frame["window_start"] = frame["at"] - WINDOW
    return frame.drop(columns="i")


ALERT_ROWS = alert_rows(
    [
        ("a1", "overall", "resolved", 1, 5),
        ("a2", "topic:Markets", "firing", 3, 4),
        ("a3", "ticker:ACME", "pending", 6, 7),
    ]
)
EVENTS = event_rows(
    [
        ("a1", "pending", 2),
        ("a1", "firing", 3),
        ("a1", "resolved", 5),
        ("a2", "firing", 4),
    ]
)


def test_alert_segments_follow_each_alerts_states() -> None:
    now = T0 + 10 * WINDOW

    segments = alert_segments(ALERT_ROWS, EVENTS, now)

    rows = [(r.alert_id, r.state, r.start, r.end) for r in segments.itertuples()]
    assert rows == [
        # From its window's start, pending until it fired, firing until it resolved.
        ("a1", "pending", T0 + WINDOW, T0 + 3 * WINDOW),
        ("a1", "firing", T0 + 3 * WINDOW, T0 + 5 * WINDOW),
        ("a1", "resolved", T0 + 5 * WINDOW, T0 + 5 * WINDOW),
        # Still firing: until now.
        ("a2", "firing", T0 + 3 * WINDOW, now),
        # No stored events: from its own row, pending until now.
        ("a3", "pending", T0 + 6 * WINDOW, now),
    ]
    assert list(segments["label"].unique()) == [
        "overall · 2025-03-03 09:15",
        "topic:Markets · 2025-03-03 09:45",
        "ticker:ACME · 2025-03-03 10:30",
    ]


def test_alert_segments_last_at_least_one_window() -> None:
    fired = alert_rows([("a", "overall", "firing", 4, 4)])

    segments = alert_segments(fired, event_rows([]), T0 + 4 * WINDOW)

    [(start, end)] = zip(segments["start"], segments["end"], strict=True)
    assert end - start == WINDOW  # visible, even when "now" is its own start


def test_alert_timeline_bars_by_state_and_resolution_marks() -> None:
    segments = alert_segments(ALERT_ROWS, EVENTS, T0 + 10 * WINDOW)

    fig = alert_timeline(segments)

    assert names(fig) == ["pending", "firing", "resolved"]
    pending, firing, resolved = fig.data
    assert pending.orientation == firing.orientation == "h"
    assert pending.marker.color == STATE_COLORS["pending"]
    # Bars start at their base and last their span in milliseconds (a date axis).
    assert list(firing.x) == [2 * 15 * 60 * 1000, 7 * 15 * 60 * 1000]
    assert list(pd.to_datetime(firing.base)) == at(3, 3)
    assert list(resolved.y) == ["overall · 2025-03-03 09:15"]
    # Newest alert at the top.
    assert list(fig.layout.yaxis.categoryarray)[-1] == "ticker:ACME · 2025-03-03 10:30"


def test_alert_labels_are_unique_and_name_key_state_and_window() -> None:
    frame = alert_rows(
        [("abcdef123", "overall", "firing", 1, 1), ("zzz999888", "overall", "firing", 1, 1)]
    )
    frame.loc[len(frame)] = frame.iloc[0]
    frame.loc[2, "id"] = "other"
    frame.loc[2, "key"] = "topic:IPO"

    labels = alert_labels(frame)

    assert labels["other"] == "topic:IPO · firing · 2025-03-03 09:15"
    assert labels["abcdef123"] == "overall · firing · 2025-03-03 09:15 · abcdef12"
    assert len(set(labels.values())) == 3
    assert alert_labels(frame, with_state=False)["other"] == "topic:IPO · 2025-03-03 09:15"


# -- time zone ------------------------------------------------------------------------------


def test_a_figure_moves_to_the_shown_time_zone_and_its_data_stays_utc() -> None:
    alerts_frame = alerts([("overall", 2, "critical", 0.6)])
    fig = in_time_zone(sentiment_trend(OVERALL, alerts_frame), "Asia/Tokyo")  # UTC+9

    tokyo = [t + pd.Timedelta(hours=9) for t in at(0, 1, 2)]
    assert xs(trace(fig, "mean score")) == tokyo
    assert xs(trace(fig, "alerts")) == [tokyo[2]]
    assert [pd.Timestamp(s.x0) for s in fig.layout.shapes] == [tokyo[2]]  # the alert's line
    assert OVERALL["window_start"].min() == T0  # the frame it was drawn from is untouched
    assert in_time_zone(sentiment_trend(OVERALL), "UTC").data[0].x[0] == at(0)[0]


def test_the_timeline_and_the_heatmap_move_but_a_cell_is_still_found() -> None:
    segments = alert_segments(ALERT_ROWS, EVENTS, T0 + 10 * WINDOW, "America/New_York")
    timeline = in_time_zone(alert_timeline(segments), "America/New_York")  # UTC-5 in March
    firing = trace(timeline, "firing")
    assert list(pd.to_datetime(firing.base)) == [t - pd.Timedelta(hours=5) for t in at(3, 3)]
    assert list(firing.x) == [2 * 15 * 60 * 1000, 7 * 15 * 60 * 1000]  # spans, not times
    assert list(trace(timeline, "resolved").y) == ["overall · 2025-03-03 04:15"]

    matrix = heatmap_matrix(TOPICS)
    fig = in_time_zone(heatmap(matrix), "Asia/Tokyo")
    cells = trace(fig, "cells")
    assert pd.Timestamp(cells.x[0]) == matrix.cells[0].start.tz_localize(None) + pd.Timedelta(
        hours=9
    )
    point = {"curve_number": 1, "point_index": 0, "customdata": list(cells.customdata[0])}
    assert selected_cell({"points": [point]}, matrix) == matrix.cells[0]


def test_alert_labels_in_a_time_zone() -> None:
    frame = alert_rows([("a", "overall", "firing", 1, 1)])
    assert alert_labels(frame, tz="Europe/Berlin") == {"a": "overall · firing · 2025-03-03 10:15"}


# -- tickers --------------------------------------------------------------------------------


def test_ticker_trend_has_sentiment_above_and_volume_below() -> None:
    frame = windows(
        [("ticker:ACME", 1, 4, -0.2, 0.5), ("ticker:ACME", 0, 2, 0.1, 0.2), ("overall", 0, 9, 0, 0)]
    )

    fig = ticker_trend(frame, "ticker:ACME", alerts([("ticker:ACME", 1, "warning", 0.5)]))

    assert fig.layout.title.text == "Sentiment and volume: ticker:ACME"
    mean = trace(fig, "mean score")
    assert xs(mean) == at(0, 1)
    assert trace(fig, "negative share").yaxis == "y2"  # the share axis of the top row
    assert trace(fig, "alerts").yaxis == "y2"
    items = trace(fig, "items")
    assert items.type == "bar"
    assert list(items.y) == [2, 4]
    assert items.yaxis == "y3"  # the bottom row
    assert fig.layout.xaxis.matches == "x2"  # one time axis for both rows


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
        lambda: heatmap(heatmap_matrix(EMPTY)),
        lambda: heatmap(heatmap_matrix(OVERALL[OVERALL["key"] == "overall"])),
        lambda: alert_timeline(alert_segments(ALERT_ROWS.iloc[:0], EVENTS.iloc[:0], T0)),
        lambda: ticker_trend(OVERALL, "ticker:NONE"),
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
        "heatmap-empty",
        "heatmap-no-topic-series",
        "timeline-no-alerts",
        "ticker-no-series",
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
