"""The window size a page shows, and duration labels."""

from __future__ import annotations

from finsent.core.settings import Settings
from finsent.dashboard.common import duration_label, pick_size, window_sizes

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
