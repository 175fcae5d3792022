"""Reads the store into pandas DataFrames for the dashboard.

Plain functions from a store URL to data, with no Streamlit in sight, so they are unit-testable;
the pages wrap them in ``st.cache_data``. Every time column comes back tz-aware UTC, whatever the
backend (SQLite hands back naive datetimes that are UTC).

Every read is bounded, so a page costs the same on a store of a thousand stories as on one of
millions: windows by one size and a time range (indexes ``(key, size_seconds, window_start)``
and ``(size_seconds, window_start)``), stories by a publication range and a LIMIT (indexes on
``published_at`` and ``(topic, published_at)``), alerts by their update time and a LIMIT.
Aggregates (counts, per-series totals) are computed by the database, never in pandas.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Engine, Text, case, cast, exists, false, func, or_, select

from finsent.core.vocabulary import ALERT_STATES, STATE_ORDER
from finsent.runtime.store import (
    Store,
    alert_events,
    alerts,
    as_utc,
    backtest_runs,
    consumer_offsets,
    labels,
    scored_items,
    silences,
    windows,
)
from finsent.runtime.store.labels import current_labels, label_history

WINDOW_COLUMNS = (
    "key",
    "window_start",
    "window_end",
    "count",
    "mean_score",
    "weighted_mean_score",
    "neg_share",
    "pos_share",
    "version",
    "final",
    "emitted_at",
)
ALERT_COLUMNS = (
    "id",
    "key",
    "state",
    "severity",
    "rule",
    "window_start",
    "window_end",
    "neg_share",
    "baseline_mean",
    "baseline_std",
    "zscore",
    "count",
    "mean_score",
    "baseline_score",
    "started_at",
    "updated_at",
    "message",
    "acked_by",
    "acked_at",
    "ack_comment",
)
ALERT_TIMES = ("window_start", "window_end", "started_at", "updated_at", "acked_at")
HEADLINE_COLUMNS = (
    "id",
    "published_at",
    "source",
    "topic",
    "sentiment",
    "score",
    "title",
    "url",
    "tickers",
    "top_tokens",
)
EVENT_COLUMNS = ("alert_id", "state", "window_start", "at")
SILENCE_COLUMNS = ("id", "matcher", "severity", "starts_at", "ends_at", "created_by", "comment")
BACKTEST_COLUMNS = (
    "id",
    "started_at",
    "finished_at",
    "feed",
    "params",
    "report_path",
    "alert_count",
    "status",
)

# Hard caps behind every read: enough for any chart or table a person can read.
MAX_WINDOWS = 20_000
MAX_HEADLINES = 5_000
MAX_ALERTS = 500
MAX_SERIES = 1_000


@dataclass(frozen=True)
class StoreSummary:
    scored_items: int
    windows: int
    firing_alerts: int
    last_update: datetime | None  # newest window emission or headline publication
    latest_published: datetime | None  # event time of the newest story

    @property
    def empty(self) -> bool:
        return self.scored_items == 0 and self.windows == 0


@dataclass(frozen=True)
class SizeSpan:
    """The first and last window starts stored for one window size."""

    first: datetime | None
    last: datetime | None


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine, so one connection pool, per store URL for the whole process.

    ``Store`` creates missing tables, so a brand-new store reads as empty instead of failing.
    """
    return Store(url).engine


def store_summary(url: str) -> StoreSummary:
    """Counts and the newest times: every one an index lookup or an index-only count."""
    with engine_for(url).connect() as conn:
        n_scored = conn.scalar(select(func.count()).select_from(scored_items))
        n_windows = conn.scalar(select(func.count()).select_from(windows))
        n_firing = conn.scalar(
            select(func.count()).select_from(alerts).where(alerts.c.state == "firing")
        )
        last_emitted = conn.scalar(select(func.max(windows.c.emitted_at)))
        last_published = conn.scalar(select(func.max(scored_items.c.published_at)))
    stamps = [as_utc(t) for t in (last_emitted, last_published) if t is not None]
    return StoreSummary(
        scored_items=n_scored or 0,
        windows=n_windows or 0,
        firing_alerts=n_firing or 0,
        last_update=max(stamps, default=None),
        latest_published=as_utc(last_published) if last_published is not None else None,
    )


def size_span(url: str, size_seconds: int) -> SizeSpan:
    """The first and last window start of one size: two ends of one index."""
    where = windows.c.size_seconds == size_seconds
    with engine_for(url).connect() as conn:
        first = conn.scalar(select(func.min(windows.c.window_start)).where(where))
        last = conn.scalar(select(func.max(windows.c.window_start)).where(where))
    return SizeSpan(
        first=as_utc(first) if first is not None else None,
        last=as_utc(last) if last is not None else None,
    )


def load_windows(
    url: str,
    *,
    key: str | None = None,
    prefix: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    size_seconds: int | None = None,
    limit: int = MAX_WINDOWS,
) -> pd.DataFrame:
    """Windows of one series (``key``) or a family of series (``prefix``, e.g. ``"topic:"``),
    oldest first, that end after ``since`` and start before ``until``, of one window size if
    given (the store holds every configured size). At most ``limit`` rows: the newest."""
    if (key is None) == (prefix is None):
        raise ValueError("give exactly one of key or prefix")
    if key is not None:
        where = [windows.c.key == key]
    else:
        # autoescape: a "_" or "%" in the prefix is literal, not a LIKE wildcard.
        where = [windows.c.key.startswith(prefix, autoescape=True)]
    if size_seconds is not None:
        where.append(windows.c.size_seconds == size_seconds)
        if since is not None:
            # Windows that end after `since`, as a range on the indexed start.
            where.append(windows.c.window_start > _utc(since) - timedelta(seconds=size_seconds))
    elif since is not None:
        where.append(windows.c.window_start >= _utc(since))
    if until is not None:
        where.append(windows.c.window_start < _utc(until))
    stmt = (
        select(*(windows.c[name] for name in WINDOW_COLUMNS))
        .where(*where)
        .order_by(windows.c.window_start.desc(), windows.c.key)
        .limit(limit)
    )
    frame = _frame(url, stmt, WINDOW_COLUMNS, ("window_start", "window_end", "emitted_at"))
    return frame.sort_values(["key", "window_start"], ignore_index=True)


def series_totals(
    url: str, prefix: str, *, size_seconds: int, since: datetime | None = None, limit: int = 200
) -> pd.DataFrame:
    """The series of a family (``topic:``, ``ticker:``, ``source:``) seen in windows of one
    size since a time, busiest first: name (without the prefix), items, negative share.

    Summed by the database over windows of one size, so each story counts once per series."""
    where = [
        windows.c.key.startswith(prefix, autoescape=True),
        windows.c.size_seconds == size_seconds,
    ]
    if since is not None:
        where.append(windows.c.window_start > _utc(since) - timedelta(seconds=size_seconds))
    items = func.sum(windows.c["count"])
    negatives = func.sum(windows.c["count"] * windows.c.neg_share)
    stmt = (
        select(windows.c.key, items.label("items"), negatives.label("negatives"))
        .where(*where)
        .group_by(windows.c.key)
        .order_by(items.desc(), windows.c.key)
        .limit(min(limit, MAX_SERIES))
    )
    with engine_for(url).connect() as conn:
        rows = [tuple(r) for r in conn.execute(stmt)]
    frame = pd.DataFrame.from_records(rows, columns=["key", "items", "negatives"])
    frame["name"] = frame["key"].str.removeprefix(prefix)
    frame["items"] = frame["items"].astype("int64")
    frame["neg_share"] = (frame["negatives"] / frame["items"].where(frame["items"] > 0)).fillna(0.0)
    return frame[["name", "items", "neg_share"]]


def load_alerts(url: str, *, since: datetime | None = None, limit: int = 200) -> pd.DataFrame:
    """The latest state of alerts updated since ``since``: firing ones first, then newest
    first. Without their stored headlines (``alert_detail`` has them)."""
    stmt = select(*(alerts.c[name] for name in ALERT_COLUMNS))
    if since is not None:
        stmt = stmt.where(alerts.c.updated_at >= _utc(since))
    stmt = stmt.order_by(
        (alerts.c.state == "firing").desc(), alerts.c.updated_at.desc(), alerts.c.id
    ).limit(min(limit, MAX_ALERTS))
    return _frame(url, stmt, ALERT_COLUMNS, ALERT_TIMES)


def alert_detail(url: str, alert_id: str) -> dict[str, Any] | None:
    """One alert with its evidence: the top headlines of the window that fired it."""
    stmt = select(*(alerts.c[name] for name in ALERT_COLUMNS), alerts.c.headlines).where(
        alerts.c.id == alert_id
    )
    with engine_for(url).connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    detail = dict(row)
    for name in ALERT_TIMES:
        if detail[name] is not None:
            detail[name] = as_utc(detail[name])
    detail["headlines"] = list(detail["headlines"] or [])
    return detail


def load_alert_events(url: str, alert_ids: Iterable[str]) -> pd.DataFrame:
    """The lifecycle events (pending, firing, resolved) of some alerts, oldest first."""
    ids = sorted(set(alert_ids))[:MAX_ALERTS]
    # Events at the same time in lifecycle order: pending, firing, resolved; unknown last.
    lifecycle = case(dict(STATE_ORDER), value=alert_events.c.state, else_=len(ALERT_STATES))
    stmt = (
        select(*(alert_events.c[name] for name in EVENT_COLUMNS))
        .where(alert_events.c.alert_id.in_(ids))
        .order_by(
            alert_events.c.alert_id, alert_events.c.at, lifecycle, alert_events.c.window_start
        )
    )
    if not ids:
        stmt = stmt.where(false())
    return _frame(url, stmt, EVENT_COLUMNS, ("window_start", "at"))


def load_headlines(
    url: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    topics: Sequence[str] = (),
    sources: Sequence[str] = (),
    sentiments: Sequence[str] = (),
    ticker: str | None = None,
    tickers: Sequence[str] = (),
    order: str = "newest",
    limit: int = 50,
) -> pd.DataFrame:
    """Scored headlines published in ``[since, until)`` that pass the filters (an empty filter
    passes everything), newest first (or most negative first with ``order="negative"``).

    At most ``limit`` rows (capped at ``MAX_HEADLINES``). A ticker matches the stored list of
    tickers exactly, case-insensitively; ``tickers`` (a watchlist's) passes a story that
    names any of them."""
    where: list[Any] = []
    if since is not None:
        where.append(scored_items.c.published_at >= _utc(since))
    if until is not None:
        where.append(scored_items.c.published_at < _utc(until))
    if topics:
        where.append(scored_items.c.topic.in_(sorted(set(topics))))
    if sources:
        where.append(scored_items.c.source.in_(sorted(set(sources))))
    if sentiments:
        where.append(scored_items.c.sentiment.in_(sorted(set(sentiments))))
    if ticker and ticker.strip():
        # Tickers are stored as a JSON list of strings, e.g. ["ACME", "BETA"]: the quoted
        # symbol is an exact element match, and autoescape keeps "_" and "%" literal.
        symbol = json.dumps(ticker.strip().upper())
        where.append(cast(scored_items.c.tickers, Text).contains(symbol, autoescape=True))
    if tickers:
        stored = cast(scored_items.c.tickers, Text)
        symbols = sorted({json.dumps(t.strip().upper()) for t in tickers if t.strip()})
        where.append(or_(*(stored.contains(symbol, autoescape=True) for symbol in symbols)))
    ordering: tuple[ColumnElement[Any], ...]
    if order == "negative":
        ordering = (scored_items.c.score, scored_items.c.published_at.desc(), scored_items.c.id)
    elif order == "newest":
        ordering = (scored_items.c.published_at.desc(), scored_items.c.id)
    else:
        raise ValueError(f"order is 'newest' or 'negative', not {order!r}")
    stmt = (
        select(*(scored_items.c[name] for name in HEADLINE_COLUMNS))
        .where(*where)
        .order_by(*ordering)
        .limit(min(limit, MAX_HEADLINES))
    )
    frame = _frame(url, stmt, HEADLINE_COLUMNS, ("published_at",))
    for name in ("tickers", "top_tokens"):
        frame[name] = [tuple(v or ()) for v in frame[name]]
    return frame


def window_headlines(
    url: str, key: str, start: datetime, end: datetime, *, limit: int = 100
) -> pd.DataFrame:
    """The stories behind one window of one series (``overall``, ``topic:…``, ``source:…``,
    ``ticker:…``), most negative first."""
    filters = series_filters(key)
    return load_headlines(url, since=start, until=end, order="negative", limit=limit, **filters)


def series_filters(key: str) -> dict[str, Any]:
    """The ``load_headlines`` filters that select one series' stories; ValueError for a key
    that is no series."""
    family, _, name = key.partition(":")
    if family == "topic" and name:
        return {"topics": (name,)}
    if family == "source" and name:
        return {"sources": (name,)}
    if family == "ticker" and name:
        return {"ticker": name}
    if key == "overall":
        return {}
    raise ValueError(f"unknown series key {key!r}")


def active_silences(url: str, now: datetime, *, limit: int = 100) -> pd.DataFrame:
    """Silences in force at ``now``, ending soonest first."""
    at = _utc(now)
    stmt = (
        select(*(silences.c[name] for name in SILENCE_COLUMNS))
        .where(silences.c.starts_at <= at, silences.c.ends_at > at)
        .order_by(silences.c.ends_at, silences.c.id)
        .limit(limit)
    )
    return _frame(url, stmt, SILENCE_COLUMNS, ("starts_at", "ends_at"))


def load_backtest_runs(url: str, *, limit: int = 200) -> pd.DataFrame:
    """Backtest runs, newest first."""
    stmt = (
        select(*(backtest_runs.c[name] for name in BACKTEST_COLUMNS))
        .order_by(backtest_runs.c.started_at.desc(), backtest_runs.c.id)
        .limit(limit)
    )
    return _frame(url, stmt, BACKTEST_COLUMNS, ("started_at", "finished_at"))


def stored_offsets(url: str) -> dict[tuple[str, str, int], int]:
    """Every stage's next offset to read, per (stage, topic, partition)."""
    stmt = select(
        consumer_offsets.c.stage,
        consumer_offsets.c.topic,
        consumer_offsets.c.partition,
        consumer_offsets.c.next_offset,
    ).limit(10_000)
    with engine_for(url).connect() as conn:
        return {(stage, topic, part): int(nxt) for stage, topic, part, nxt in conn.execute(stmt)}


# -- corrections, the review queue and the models (issue 18) ---------------------------------

# A stored story with what the model said of it: what a correction records as the prediction.
STORY_COLUMNS = (*HEADLINE_COLUMNS, "confidence", "model_version")
MAX_REVIEW_CANDIDATES = 2_000  # stories the review queue ranks: the newest uncorrected ones


def _stories(url: str, stmt: Any) -> pd.DataFrame:
    frame = _frame(url, stmt, STORY_COLUMNS, ("published_at",))
    for name in ("tickers", "top_tokens"):
        frame[name] = [tuple(v or ()) for v in frame[name]]
    return frame


def _uncorrected() -> ColumnElement[bool]:
    # NOT EXISTS on the indexed labels.story_id: one index probe per story.
    return ~exists().where(labels.c.story_id == scored_items.c.id)


def load_stories(url: str, ids: Iterable[str], *, uncorrected: bool = False) -> pd.DataFrame:
    """The stored stories of some ids (at most ``MAX_HEADLINES``), newest first; with
    ``uncorrected``, only those no analyst has corrected yet."""
    wanted = sorted(set(ids))[:MAX_HEADLINES]
    stmt = select(*(scored_items.c[name] for name in STORY_COLUMNS)).where(
        scored_items.c.id.in_(wanted) if wanted else false()
    )
    if uncorrected:
        stmt = stmt.where(_uncorrected())
    return _stories(url, stmt.order_by(scored_items.c.published_at.desc(), scored_items.c.id))


def review_candidates(
    url: str, *, since: datetime | None = None, limit: int = MAX_REVIEW_CANDIDATES
) -> pd.DataFrame:
    """The newest stories published since ``since`` that no analyst has corrected yet."""
    stmt = select(*(scored_items.c[name] for name in STORY_COLUMNS)).where(_uncorrected())
    if since is not None:
        stmt = stmt.where(scored_items.c.published_at >= _utc(since))
    stmt = stmt.order_by(scored_items.c.published_at.desc(), scored_items.c.id).limit(
        min(limit, MAX_REVIEW_CANDIDATES)
    )
    return _stories(url, stmt)


def firing_alert_stories(
    url: str, *, since: datetime | None = None, limit: int = MAX_ALERTS
) -> dict[str, tuple[str, ...]]:
    """The stories that drove a firing alert updated since ``since``: story id → the series
    keys of the alerts whose evidence headlines name it."""
    stmt = select(alerts.c.key, alerts.c.headlines).where(alerts.c.state == "firing")
    if since is not None:
        stmt = stmt.where(alerts.c.updated_at >= _utc(since))
    stmt = stmt.order_by(alerts.c.updated_at.desc(), alerts.c.id).limit(min(limit, MAX_ALERTS))
    found: dict[str, list[str]] = {}
    with engine_for(url).connect() as conn:
        for key, headlines in conn.execute(stmt):
            for shown in headlines or ():
                story = shown.get("id") if isinstance(shown, dict) else None
                if story and key not in found.setdefault(story, []):
                    found[story].append(key)
    return {story: tuple(keys) for story, keys in found.items()}


def story_labels(url: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each corrected story's labels now (``labels.current_labels``: the latest correction per
    task wins, with ``corrections``, how many there were), for some story ids."""
    wanted = sorted(set(ids))[:MAX_HEADLINES]
    if not wanted:
        return {}
    with engine_for(url).connect() as conn:
        return current_labels(label_history(conn, wanted))


def model_usage(url: str, *, since: datetime | None = None) -> pd.DataFrame:
    """Per stored ``model_version`` (with its backend suffix, ``finsent-attn-1+ab12/onnx-int8``),
    the stories it scored that were published since ``since``, and the first and last of them.

    Over the look-back's range of the published_at index; the whole table with none."""
    stmt = select(
        scored_items.c.model_version,
        func.count().label("stories"),
        func.min(scored_items.c.published_at).label("first"),
        func.max(scored_items.c.published_at).label("last"),
    )
    if since is not None:
        stmt = stmt.where(scored_items.c.published_at >= _utc(since))
    stmt = stmt.group_by(scored_items.c.model_version).order_by(scored_items.c.model_version)
    frame = _frame(url, stmt.limit(MAX_SERIES), ("model_version", "stories", "first", "last"), ())
    for name in ("first", "last"):
        # SQLite's MIN/MAX of a datetime column come back as text: parsed here, as UTC.
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame


def _utc(value: datetime) -> datetime:
    # SQLite compares stored UTC text, so every bound value must be UTC too.
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return as_utc(value).astimezone(UTC)


def _frame(url: str, stmt: Any, columns: tuple[str, ...], times: tuple[str, ...]) -> pd.DataFrame:
    with engine_for(url).connect() as conn:
        rows = [tuple(row) for row in conn.execute(stmt)]
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    for name in times:
        # utc=True localizes SQLite's naive values and converts PostgreSQL's aware ones.
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame
