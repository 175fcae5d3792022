"""Scored stories, their sentiment windows, and the audit of late stories.

Each write takes the caller's connection, so a stage's outputs join its offsets' transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from finsent.core.records import ScoredItem, WindowStat, headline_jsonable
from finsent.runtime.store.engine import in_chunks, upsert
from finsent.runtime.store.schema import late_items, scored_items, windows


def write_scored(conn: Connection, items: Sequence[ScoredItem]) -> None:
    upsert(conn, scored_items, [_scored_row(s) for s in items], ["id"])


def write_windows(conn: Connection, stats: Sequence[WindowStat]) -> None:
    """Upsert windows by (key, start, end); a replayed older version never wins."""
    rows = [_window_row(w) for w in stats]
    upsert(conn, windows, rows, ["key", "window_start", "window_end"], only_newer="version")


def write_late(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Upsert rows of ``late_items`` (keys: its columns)."""
    upsert(conn, late_items, rows, ["item_id", "key", "window_start", "window_end"])


def existing_ids(conn: Connection, ids: Iterable[str]) -> set[str]:
    """Which of these story ids are stored already."""
    found: set[str] = set()
    for chunk in in_chunks(ids):
        stmt = select(scored_items.c.id).where(scored_items.c.id.in_(chunk))
        found.update(conn.execute(stmt).scalars())
    return found


def _scored_row(s: ScoredItem) -> dict[str, Any]:
    return {
        "id": s.item.id,
        "published_at": s.item.published_at,
        "source": s.item.source,
        "title": s.item.title,
        "url": s.item.url,
        "topic": s.topic,
        "sentiment": s.sentiment,
        "score": s.score,
        "confidence": s.confidence,
        "tickers": list(s.item.tickers),
        "top_tokens": list(s.top_tokens),
        "model_version": s.model_version,
    }


def _window_row(w: WindowStat) -> dict[str, Any]:
    return {
        "key": w.key,
        "window_start": w.window_start,
        "window_end": w.window_end,
        "size_seconds": int((w.window_end - w.window_start).total_seconds()),
        "count": w.count,
        "weighted_count": w.weighted_count,
        "mean_score": w.mean_score,
        "weighted_mean_score": w.weighted_mean_score,
        "neg_share": w.neg_share,
        "pos_share": w.pos_share,
        "weighted_neg_share": w.weighted_neg_share,
        "top_headlines": [headline_jsonable(h) for h in w.top_headlines],
        "version": w.version,
        "final": w.final,
        "emitted_at": w.emitted_at,
    }
