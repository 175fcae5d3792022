"""The window size a page shows, duration labels, times in a zone, and links to a series'
window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from finsent.core.settings import Settings
from finsent.dashboard.common import (
    SeriesWindow,
    duration_label,
    format_time,
    pick_size,
    window_sizes,
)

SIZES = [(900, 900), (3600, 300), (3600, 3600), (86400, 86400)]


def test_pick_size_keeps_series_readable() -> None:
    day, week = 86400.0, 7 * 86400.0

    assert pick_size(SIZES, 900, day, 500) == 900  # 96 windows
    assert pick_size(SIZES, 900, week, 500) == 3600  # 672 of 15 min; 1 h hops every 5 min: 2016
    assert pick_size([(900, 900), (3600, 300)], 900, week, 500) == 3600  # nothing fits: largest
    assert pick_size(SIZES, 900, 400 * day, 500) == 86400
    assert pick_size(SIZES, 3600, 60.0, 500) == 3600  # never below the preferred size
    assert pick_size(SIZES, 900, None, 500) == 900
    assert pick_size([], 900, day, 500) == 900


def test_window_sizes_from_settings() -> None:
    settings = Settings(windows=("1h/5m", "15m", "1d"))

    assert window_sizes(settings) == [(900, 900), (3600, 300), (86400, 86400)]


def test_duration_labels() -> None:
    assert [duration_label(s) for s in (900, 3600, 5400, 86400, 90)] == [
        "15 min",
        "1 h",
        "90 min",
        "1 d",
        "90 s",
    ]


def test_format_time_in_a_zone() -> None:
    now = datetime(2025, 3, 3, 23, 30, tzinfo=UTC)
    value = datetime(2025, 3, 3, 22, 15, 5, tzinfo=UTC)

    assert format_time(value, now) == "22:15:05"
    assert format_time(value, now, "Asia/Tokyo") == "07:15:05"  # the next day there, like now
    after_midnight = now + timedelta(hours=1)  # Mar 04 in UTC; in Tokyo, the same day
    assert format_time(value, after_midnight) == "Mar 03 22:15"
    assert format_time(value, after_midnight, "Asia/Tokyo") == "07:15:05"
    assert format_time(value.replace(tzinfo=None), now) == "22:15:05"  # naive reads as UTC
    assert format_time(None, now) == "—"


def test_a_series_window_round_trips_through_query_params() -> None:
    start = datetime(2025, 3, 3, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    window = SeriesWindow("topic:Energy & Oil", start, start + timedelta(minutes=15))

    params = window.query_params()

    assert params == {
        "series": "topic:Energy & Oil",
        "from": "2025-03-03T09:00:00Z",
        "to": "2025-03-03T09:15:00Z",
    }
    assert SeriesWindow.from_params(params) == window
    assert window.filters() == {
        "since": window.start,
        "until": window.end,
        "topics": ("Energy & Oil",),
    }
    assert SeriesWindow.from_params({}) is None
    # A "+" in a link's offset reaches the page as a space.
    spaced = {"series": "overall", "from": "2025-03-03T10:00:00 01:00", "to": params["to"]}
    assert SeriesWindow.from_params(spaced) == SeriesWindow("overall", window.start, window.end)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"series": "overall"}, "needs series, from and to"),
        ({"series": "fund:X", "from": "2025-03-03T09:00Z", "to": "2025-03-03T10:00Z"}, "unknown"),
        ({"series": "overall", "from": "yesterday", "to": "2025-03-03T10:00Z"}, "not an ISO"),
        ({"series": "overall", "from": "2025-03-03T10:00Z", "to": "2025-03-03T09:00Z"}, "ends"),
    ],
)
def test_a_bad_link_says_what_is_wrong(params: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SeriesWindow.from_params(params)
