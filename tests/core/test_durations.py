"""The one duration grammar, and the window shape built on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.core.durations import (
    EPOCH,
    WindowSpec,
    format_duration,
    parse_duration,
    window_start,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("15m", 900), ("1.5h", 5400), ("2d", 172800), (90, 90), (0, 0)],
)
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "m", "-5m", "5 minutes", "1w", True, -1])
def test_bad_durations_are_refused_with_an_example(text: object) -> None:
    with pytest.raises(ValueError, match="like 30s"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["99999999999d", "9" * 400 + "s", float("inf"), 1e300])
def test_durations_beyond_timedelta_are_refused_not_overflowing(text: object) -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration(text)


def test_positive_refuses_zero() -> None:
    assert parse_duration("0s") == timedelta(0)
    with pytest.raises(ValueError, match="above 0"):
        parse_duration("0s", positive=True)


@given(st.integers(min_value=1, max_value=10**7))
def test_format_then_parse_is_the_identity(seconds: int) -> None:
    length = timedelta(seconds=seconds)
    assert parse_duration(format_duration(length)) == length


def test_window_names_and_bounds() -> None:
    assert WindowSpec.parse("15m").name == "15m"
    assert WindowSpec.parse("1h/5m").name == "1h/5m"
    assert WindowSpec.parse("60m").name == "1h"
    at = datetime(2023, 3, 10, 14, 7, tzinfo=UTC)
    assert list(WindowSpec.parse("15m").bounds(at)) == [
        (at.replace(minute=0), at.replace(minute=15))
    ]
    assert len(list(WindowSpec.parse("1h/5m").bounds(at))) == 12


@pytest.mark.parametrize("text", ["0m", "1h/7m", "1h/2h", "1.5s", "soon"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        WindowSpec.parse(text)


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from(["1m", "15m", "1h", "1d"]),
)
def test_a_time_lies_in_the_window_it_starts(ts: datetime, spec: str) -> None:
    size = WindowSpec.parse(spec).size
    start = window_start(ts.replace(tzinfo=UTC), size)
    assert start <= ts.replace(tzinfo=UTC) < start + size
    assert (start - EPOCH) % size == timedelta(0)
