"""Analysts' corrections of the model: every one kept, the latest per story and task wins."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from finsent.runtime.store.engine import as_utc, insert
from finsent.runtime.store.schema import labels

LABEL_COLUMNS = tuple(c.name for c in labels.columns if c.name != "id")


def add_labels(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append corrections (keys: the columns of ``labels`` but ``id``); nothing is overwritten."""
    if rows:
        conn.execute(insert(conn, labels), [{k: row[k] for k in LABEL_COLUMNS} for row in rows])


def label_history(
    conn: Connection, story_ids: Iterable[str] | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Corrections in the order they were made (oldest first), optionally of some stories only,
    or made after ``since``."""
    stmt = select(labels).order_by(labels.c.at, labels.c.id)
    if story_ids is not None:
        stmt = stmt.where(labels.c.story_id.in_(sorted(set(story_ids))))
    if since is not None:
        stmt = stmt.where(labels.c.at > since)
    rows = []
    for row in conn.execute(stmt).mappings():
        record = dict(row)
        record["at"] = as_utc(record["at"])
        rows.append(record)
    return rows


def current_labels(history: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each story's labels now, from its corrections oldest first: per task, the latest
    correction that set it. ``at`` and ``by`` are those of the story's latest correction."""
    current: dict[str, dict[str, Any]] = {}
    for row in history:
        story = current.setdefault(row["story_id"], {"sentiment": None, "topic": None})
        story.update(
            {k: row[k] for k in LABEL_COLUMNS if k not in ("sentiment", "topic")},
            corrections=story.get("corrections", 0) + 1,
        )
        for task in ("sentiment", "topic"):
            if row[task] is not None:
                story[task] = row[task]
    return current
