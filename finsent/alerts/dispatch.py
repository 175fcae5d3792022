"""From alert events to notifications: grouping, silences, acknowledgements, inhibition, routing.

Pure, with "now" passed in, after Alertmanager's dispatcher: alert events join a group (by
series key, or by family); a new group waits ``group_wait`` to collect company, then is sent;
changes after that wait for ``group_interval`` since the last send; a group still firing is
re-sent after ``repeat_interval`` unless every alert in it is acknowledged. Silenced alerts are
never notified, and a firing market-wide (``overall``) alert mutes topic alerts of its window.
Pending alerts are stored, not notified. A notification's id is a hash of what it says (a
repeat's, also of the time it was due), so the delivery log turns a replay into a no-op.
Sending is not done here: the notifier stage hands each ``Outgoing`` to the channel's notifier
(``alerts.notify``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from finsent.alerts.notify.model import Notification, NotificationKind
from finsent.alerts.rules import AlertRules
from finsent.alerts.silences import Silence
from finsent.core.records import Alert, decode, to_jsonable


def group_key(alert_key: str, group_by: str) -> str:
    if group_by == "family":
        return alert_key.split(":", 1)[0] if ":" in alert_key else alert_key
    return alert_key


@dataclass
class Group:
    key: str
    alerts: dict[str, Alert] = field(default_factory=dict)  # alert id -> latest event
    notified: dict[str, str] = field(default_factory=dict)  # alert id -> state last sent
    next_flush: datetime | None = None
    last_sent: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "alerts": {i: to_jsonable(a) for i, a in self.alerts.items()},
            "notified": self.notified,
            "next_flush": self.next_flush.isoformat() if self.next_flush else None,
            "last_sent": self.last_sent.isoformat() if self.last_sent else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Group:
        return cls(
            key=data["key"],
            alerts={i: decode(Alert, json.dumps(a)) for i, a in data["alerts"].items()},
            notified=dict(data["notified"]),
            next_flush=_dt(data["next_flush"]),
            last_sent=_dt(data["last_sent"]),
        )


@dataclass(frozen=True)
class Outgoing:
    channel: str
    notification: Notification


class Dispatcher:
    def __init__(self, rules: AlertRules, groups: dict[str, Group] | None = None) -> None:
        self.rules = rules
        self.groups: dict[str, Group] = groups or {}
        self.changed: set[str] = set()  # groups to save
        self.removed: set[str] = set()

    def receive(self, alert: Alert, now: datetime) -> None:
        """Take in one lifecycle event."""
        if alert.state == "pending":
            return  # stored by the alerter; not worth a notification yet
        key = group_key(alert.key, self.rules.grouping.group_by)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key=key)
            group.next_flush = now + self.rules.grouping.group_wait
        group.alerts[alert.id] = alert
        if group.last_sent is not None:  # after a send, changes wait for the group interval
            due = max(group.last_sent + self.rules.grouping.group_interval, now)
            if group.next_flush is None or due < group.next_flush:
                group.next_flush = due
        self.changed.add(key)

    def retry_later(self, outgoing: Outgoing, now: datetime) -> None:
        """A delivery failed for good this time: forget that it was sent, so the next flush
        after the group interval tries again (channels that got it skip it by its id).

        A resolved notice's alerts left the group when it was made (and an emptied group with
        them), so they are put back as told "firing": the next flush makes the same notice."""
        n = outgoing.notification
        group = self.groups.get(n.group_key)
        if group is None:
            group = self.groups[n.group_key] = Group(key=n.group_key, last_sent=now)
            self.removed.discard(group.key)
        for alert in n.alerts:
            if n.kind == "resolved":
                if group.alerts.get(alert.id, alert).state == "resolved":
                    group.alerts[alert.id] = alert
                    group.notified[alert.id] = "firing"
            elif alert.id in group.alerts:
                group.notified.pop(alert.id, None)
        group.next_flush = now + self.rules.grouping.group_interval
        self.changed.add(group.key)

    def firing_overall(self) -> set[datetime]:
        """The windows of the firing market-wide alerts this dispatcher holds."""
        return {
            a.window_start
            for g in self.groups.values()
            for a in g.alerts.values()
            if a.key == "overall" and a.state == "firing"
        }

    def alert_ids(self) -> set[str]:
        """The alerts in its groups (those whose acknowledgements matter)."""
        return {i for g in self.groups.values() for i in g.alerts}

    def flush(
        self,
        now: datetime,
        silences: list[Silence],
        acked: set[str],
        market_wide: set[datetime] | None = None,
    ) -> list[Outgoing]:
        """Notifications due at ``now``; ``market_wide``: windows of firing ``overall`` alerts
        held elsewhere (another partition's dispatcher), which mute topic alerts here too."""
        out: list[Outgoing] = []
        firing_overall = self.firing_overall() | (market_wide or set())
        for key in sorted(self.groups):
            group = self.groups[key]
            if group.next_flush is None or group.next_flush > now:
                continue
            out.extend(self._flush_group(group, now, silences, acked, firing_overall))
        return out

    def _flush_group(
        self,
        group: Group,
        now: datetime,
        silences: list[Silence],
        acked: set[str],
        firing_overall: set[datetime],
    ) -> list[Outgoing]:
        def muted(alert: Alert) -> bool:
            if any(s.mutes(alert, now) for s in silences):
                return True
            return (
                self.rules.inhibit_market_wide
                and alert.key.startswith("topic:")
                and alert.window_start in firing_overall
            )

        firing = [a for a in group.alerts.values() if a.state == "firing" and not muted(a)]
        resolved = [
            a
            for a in group.alerts.values()
            if a.state == "resolved" and group.notified.get(a.id) == "firing"
        ]
        fresh = [a for a in firing if group.notified.get(a.id) != "firing"]
        repeat_due = (
            not fresh
            and not resolved
            and firing
            and group.last_sent is not None
            and now >= group.last_sent + self.rules.grouping.repeat_interval
            and not all(a.id in acked for a in firing)
        )
        group.next_flush = None
        self.changed.add(group.key)
        batches: list[tuple[NotificationKind, list[Alert]]] = []
        repeat_at: datetime | None = None
        if fresh:
            batches.append(("firing", firing))
        elif repeat_due:
            batches.append(("repeat", firing))
            # When it was due, not when it was made: a notifier restarted from the same state
            # makes the same repeat, which the delivery log then skips.
            assert group.last_sent is not None  # by repeat_due
            repeat_at = group.last_sent + self.rules.grouping.repeat_interval
        if resolved:
            batches.append(("resolved", resolved))
        out: list[Outgoing] = []
        for kind, members in batches:
            alerts = tuple(sorted(members, key=lambda a: (a.key, a.started_at)))
            notification = Notification(
                id=_notification_id(
                    group.key, kind, alerts, repeat_at if kind == "repeat" else None
                ),
                group_key=group.key,
                kind=kind,
                alerts=alerts,
                dashboard_url=f"{self.rules.dashboard_url.rstrip('/')}/Alerts?id={alerts[0].id}",
            )
            severity = "critical" if any(a.severity == "critical" for a in alerts) else "warning"
            for channel in self.rules.channels_for(alerts[0].key, severity):
                out.append(Outgoing(channel, notification))
            group.last_sent = now
            for a in alerts:
                group.notified[a.id] = a.state
        # Resolved alerts leave the group once told (or if never told); firing ones stay for
        # repeats, which are checked again after the repeat interval.
        for a in [a for a in group.alerts.values() if a.state == "resolved"]:
            del group.alerts[a.id]
            group.notified.pop(a.id, None)
        if group.alerts:
            group.next_flush = (group.last_sent or now) + self.rules.grouping.repeat_interval
        else:
            del self.groups[group.key]
            self.removed.add(group.key)
            self.changed.discard(group.key)
        return out

    def take_changes(self) -> tuple[dict[str, Any], set[str]]:
        put = {k: self.groups[k].to_json() for k in self.changed if k in self.groups}
        removed = set(self.removed)
        self.changed.clear()
        self.removed.clear()
        return put, removed


def _notification_id(
    key: str, kind: str, alerts: tuple[Alert, ...], repeat_at: datetime | None
) -> str:
    basis = [key, kind, *(f"{a.id}:{a.state}:{a.updated_at.isoformat()}" for a in alerts)]
    if repeat_at is not None:
        basis.append(repeat_at.isoformat())
    return hashlib.sha256("|".join(basis).encode()).hexdigest()[:32]


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
