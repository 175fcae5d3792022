"""Reads the store into pandas DataFrames for the dashboard.

Plain functions from a store URL to data, with no Streamlit in sight, so they are unit-testable;
the app wraps them in ``st.cache_data``. Every time column comes back tz-aware UTC, whatever the
backend (SQLite hands back naive datetimes that are UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select

from finsent.store import Store, alerts, as_utc, scored_items, windows

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
    "started_at",
    "updated_at",
    "acked_by",
    "ack_comment",
)
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


@dataclass(frozen=True)
class StoreSummary:
    scored_items: int
    windows: int
    firing_alerts: int
    last_update: datetime | None  # newest window emission or headline publication
    latest_window_start: datetime | None  # event time of the newest window

    @property
    def empty(self) -> bool:
        return self.scored_items == 0 and self.windows == 0


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine, so one connection pool, per store URL for the whole process.

    ``Store`` creates missing tables, so a brand-new store reads as empty instead of failing.
    """
    return Store(url).engine


def store_summary(url: str) -> StoreSummary:
    with engine_for(url).connect() as conn:
        n_scored = conn.scalar(select(func.count()).select_from(scored_items))
        n_windows = conn.scalar(select(func.count()).select_from(windows))
        n_firing = conn.scalar(
            select(func.count()).select_from(alerts).where(alerts.c.state == "firing")
        )
        last_emitted = conn.scalar(select(func.max(windows.c.emitted_at)))
        last_published = conn.scalar(select(func.max(scored_items.c.published_at)))
        latest_window = conn.scalar(select(func.max(windows.c.window_start)))
    stamps = [as_utc(t) for t in (last_emitted, last_published) if t is not None]
    return StoreSummary(
        scored_items=n_scored or 0,
        windows=n_windows or 0,
        firing_alerts=n_firing or 0,
        last_update=max(stamps, default=None),
        latest_window_start=as_utc(latest_window) if latest_window is not None else None,
    )


def load_windows(
    url: str,
    *,
    key: str | None = None,
    prefix: str | None = None,
    since: datetime | None = None,
    size_seconds: int | None = None,
) -> pd.DataFrame:
    """Windows of one series (``key``) or a family of series (``prefix``, e.g. ``"topic:"``),
    oldest first, starting at or after ``since``, of one window size if given (the store
    holds every configured size)."""
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
        # SQLite compares stored UTC text, so the bound value must be UTC too.
        where.append(windows.c.window_start >= as_utc(since).astimezone(UTC))
    stmt = (
        select(*(windows.c[name] for name in WINDOW_COLUMNS))
        .where(*where)
        .order_by(windows.c.key, windows.c.window_start)
    )
    return _frame(url, stmt, WINDOW_COLUMNS, ("window_start", "window_end", "emitted_at"))


def load_alerts(url: str, *, limit: int = 100) -> pd.DataFrame:
    """The latest state of recent alerts: firing ones first, then newest first."""
    stmt = (
        select(*(alerts.c[name] for name in ALERT_COLUMNS))
        .order_by((alerts.c.state == "firing").desc(), alerts.c.updated_at.desc())
        .limit(limit)
    )
    times = ("window_start", "window_end", "started_at", "updated_at")
    return _frame(url, stmt, ALERT_COLUMNS, times)


def load_headlines(url: str, *, limit: int = 50) -> pd.DataFrame:
    """The most recently published scored headlines, newest first."""
    stmt = (
        select(*(scored_items.c[name] for name in HEADLINE_COLUMNS))
        .order_by(scored_items.c.published_at.desc(), scored_items.c.id)
        .limit(limit)
    )
    return _frame(url, stmt, HEADLINE_COLUMNS, ("published_at",))


def _frame(url: str, stmt: Any, columns: tuple[str, ...], times: tuple[str, ...]) -> pd.DataFrame:
    with engine_for(url).connect() as conn:
        rows = [tuple(row) for row in conn.execute(stmt)]
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    for name in times:
        # utc=True localizes SQLite's naive UTC values and converts PostgreSQL's aware ones.
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame
