"""Alerts: their current rows and event history, acknowledgements, silences, and the
notifier's delivery log.

(Named ``alerting`` so the ``alerts`` table keeps its name in the package's public API.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from finsent.core.records import Alert, to_jsonable
from finsent.runtime.store.engine import in_chunks, upsert
from finsent.runtime.store.schema import alert_acks, alert_events, alerts, deliveries, silences


def write_alerts(conn: Connection, events: Sequence[Alert]) -> None:
    """One row per alert: the evidence of the window that fired it, plus its current state.

    Each lifecycle event, with its own window's figures, is kept in ``alert_events``.
    """
    for alert in events:
        if alert.state in ("pending", "firing"):
            upsert(conn, alerts, [_alert_row(alert)], ["id"])
            continue
        changed = conn.execute(
            alerts.update()
            .where(alerts.c.id == alert.id)
            .values(state=alert.state, updated_at=alert.updated_at, message=alert.message)
        ).rowcount
        if not changed:  # resolved without a stored firing event: keep what we have
            upsert(conn, alerts, [_alert_row(alert)], ["id"])
    history = [
        {
            "alert_id": a.id,
            "state": a.state,
            "window_start": a.window_start,
            "at": a.updated_at,
            "payload": to_jsonable(a),
        }
        for a in events
    ]
    upsert(conn, alert_events, history, ["alert_id", "state", "window_start"])


def acknowledge(conn: Connection, alert_id: str, by: str, comment: str, at: datetime) -> bool:
    """Record an acknowledgement; False if there is no such alert."""
    changed = conn.execute(
        alerts.update()
        .where(alerts.c.id == alert_id)
        .values(acked_by=by, acked_at=at, ack_comment=comment)
        .returning(alerts.c.id)
    ).all()
    if not changed:
        return False
    row = {"alert_id": alert_id, "at": at, "by": by, "comment": comment}
    upsert(conn, alert_acks, [row], ["alert_id", "at"])
    return True


def latest_alerts(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most recently updated alerts, newest first (ties by id)."""
    stmt = select(alerts).order_by(alerts.c.updated_at.desc(), alerts.c.id).limit(limit)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def acked_ids(conn: Connection, among: Iterable[str]) -> set[str]:
    """Which of the alerts ``among`` are acknowledged."""
    acked: set[str] = set()
    for chunk in in_chunks(among):
        stmt = select(alerts.c.id).where(alerts.c.id.in_(chunk), alerts.c.acked_by.isnot(None))
        acked.update(conn.execute(stmt).scalars())
    return acked


def add_silence(conn: Connection, row: Mapping[str, Any]) -> None:
    """Upsert one silence (keys: the columns of ``silences``)."""
    upsert(conn, silences, [row], ["id"])


def active_silences(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    stmt = select(silences).where(silences.c.starts_at <= now, silences.c.ends_at > now)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def delivery(conn: Connection, notification_id: str, channel: str) -> dict[str, Any] | None:
    """The logged delivery of a notification to a channel, if any."""
    stmt = select(deliveries).where(
        deliveries.c.notification_id == notification_id, deliveries.c.channel == channel
    )
    row = conn.execute(stmt).mappings().first()
    return dict(row) if row else None


def record_delivery(conn: Connection, row: Mapping[str, Any]) -> None:
    """Upsert one delivery-log row (keys: the columns of ``deliveries``)."""
    upsert(conn, deliveries, [row], ["notification_id", "channel"])


def _alert_row(a: Alert) -> dict[str, Any]:
    row = to_jsonable(a)
    row.pop("schema")
    for name in ("window_start", "window_end", "started_at", "updated_at"):
        row[name] = getattr(a, name)
    return row
