"""Record factories for tests: one place that knows every required field of each record.

Each factory makes a valid record from defaults (a negative Financials story at ``T0`` and
the windows and alerts it would give) and takes any field as a keyword override. Fields that
follow from others default to them: a story's fetch and score times to its publish time, a
window's end to its start plus ``WINDOW``, an alert's times to its window. A test names only
what it is about.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from finsent.core.records import (
    Alert,
    Headline,
    KeyedPoint,
    NewsItem,
    ScoredItem,
    SeriesPoint,
    WindowStat,
)

T0 = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
WINDOW = timedelta(minutes=15)  # the window size the factories default to

_NEWS_FIELDS = frozenset(f.name for f in fields(NewsItem)) - {"schema"}


def news_item(**overrides: Any) -> NewsItem:
    """A story: id ``n1`` from ``wire``, "Bank shares fall", published and fetched at ``T0``."""
    published_at = overrides.pop("published_at", T0)
    values: dict[str, Any] = {
        "id": "n1",
        "source": "wire",
        "title": "Bank shares fall",
        "published_at": published_at,
        "fetched_at": published_at,
    }
    return NewsItem(**{**values, **overrides})


def scored_item(item: NewsItem | None = None, **overrides: Any) -> ScoredItem:
    """``item`` (default: ``news_item``) scored negative, Financials, -0.8 at 0.9 confidence.

    Overrides named after a ``NewsItem`` field (``id``, ``title``, ``published_at``,
    ``tickers``…) go to the story, so ``scored_item(id="s2", sentiment="neutral")`` works;
    they cannot be mixed with ``item``."""
    news_overrides = {k: overrides.pop(k) for k in list(overrides) if k in _NEWS_FIELDS}
    if item is None:
        item = news_item(**news_overrides)
    elif news_overrides:
        raise TypeError(f"give story fields {sorted(news_overrides)} to news_item, not with item")
    values: dict[str, Any] = {
        "item": item,
        "topic": "Financials",
        "sentiment": "negative",
        "score": -0.8,
        "confidence": 0.9,
        "model_version": "test",
        "scored_at": item.published_at,
    }
    return ScoredItem(**{**values, **overrides})


def series_point(**overrides: Any) -> SeriesPoint:
    """What ``scored_item()`` contributes to one series, with overrides."""
    return replace(SeriesPoint.of(scored_item()), **overrides)


def keyed_point(key: str = "overall", **overrides: Any) -> KeyedPoint:
    """A ``series_point`` (with the overrides) on the series ``key``."""
    return KeyedPoint(key=key, point=series_point(**overrides))


def headline(**overrides: Any) -> Headline:
    """The default story as a window's or an alert's headline."""
    values: dict[str, Any] = {"id": "n1", "title": "Bank shares fall", "score": -0.8}
    return Headline(**{**values, **overrides})


def window_stat(**overrides: Any) -> WindowStat:
    """The closed ``topic:Financials`` window [``T0``, ``T0`` + ``WINDOW``) of three quiet
    stories, emitted at its end. ``weighted_count`` defaults to the count and
    ``weighted_mean_score`` to the mean score."""
    start = overrides.pop("window_start", T0)
    end = overrides.pop("window_end", start + WINDOW)
    count = overrides.pop("count", 3)
    mean_score = overrides.pop("mean_score", 0.0)
    values: dict[str, Any] = {
        "key": "topic:Financials",
        "window_start": start,
        "window_end": end,
        "count": count,
        "weighted_count": float(count),
        "mean_score": mean_score,
        "weighted_mean_score": mean_score,
        "neg_share": 0.0,
        "pos_share": 0.0,
        "emitted_at": end,
    }
    return WindowStat(**{**values, **overrides})


def alert(**overrides: Any) -> Alert:
    """A firing warning on ``topic:Financials`` for the window [``T0``, ``T0`` + ``WINDOW``),
    started at the window's start and updated at its end."""
    start = overrides.pop("window_start", T0)
    end = overrides.pop("window_end", start + WINDOW)
    values: dict[str, Any] = {
        "id": "a1",
        "key": "topic:Financials",
        "state": "firing",
        "severity": "warning",
        "rule": "negative-share-spike",
        "window_start": start,
        "window_end": end,
        "neg_share": 0.8,
        "baseline_mean": 0.1,
        "baseline_std": 0.05,
        "zscore": 5.0,
        "count": 10,
        "started_at": start,
        "updated_at": end,
    }
    return Alert(**{**values, **overrides})
