"""Retention: what the store forgets once it is older than the retention period.

Stories, windows, the late-news audit, alert history, the delivery log, resolved alerts with
their acknowledgements, and ended silences are deleted by the time that says they are over;
open alerts and stage state are never touched. The ingest dedup memory has its own pruning
(``NoveltyTracker.prune``), as it may live in a database of its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from finsent.runtime.store.schema import (
    alert_acks,
    alert_events,
    alerts,
    deliveries,
    late_items,
    scored_items,
    silences,
    windows,
)


def prune(conn: Connection, before: datetime) -> dict[str, int]:
    """Delete what ended before ``before``; returns how many rows went, per table."""
    resolved = select(alerts.c.id).where(alerts.c.state == "resolved", alerts.c.updated_at < before)
    deletes = {
        "scored_items": scored_items.delete().where(scored_items.c.published_at < before),
        "windows": windows.delete().where(windows.c.window_end < before),
        "late_items": late_items.delete().where(late_items.c.seen_at < before),
        "alert_events": alert_events.delete().where(alert_events.c.at < before),
        "deliveries": deliveries.delete().where(deliveries.c.at < before),
        "alert_acks": alert_acks.delete().where(alert_acks.c.alert_id.in_(resolved)),
        "alerts": alerts.delete().where(alerts.c.id.in_(resolved.scalar_subquery())),
        "silences": silences.delete().where(silences.c.ends_at < before),
    }
    return {name: int(conn.execute(stmt).rowcount or 0) for name, stmt in deletes.items()}
