"""The notification, and the contract every notifier meets (Alertmanager's ``notify`` shape).

A ``Notification`` is one alert group's lifecycle event: firing, resolved, or a repeat of a
group that is still firing. A ``Notifier`` sends it once or raises ``DeliveryError``, whose
``transient`` flag says whether trying again could help. Pure data: the dispatcher builds
notifications without pulling in any HTTP or SMTP code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from pydantic import SecretStr

from finsent.alerts.notify.redact import scrub
from finsent.core.records import Alert

NotificationKind = Literal["firing", "resolved", "repeat"]


@dataclass(frozen=True)
class Notification:
    id: str  # idempotency key; the delivery log is keyed on (id, channel)
    group_key: str  # e.g. "topic:Financials"
    kind: NotificationKind
    alerts: tuple[Alert, ...]  # the group's alerts, newest event of each
    dashboard_url: str  # link to the alert in the dashboard

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a Notification needs an id")
        if not self.alerts:
            raise ValueError("a Notification needs at least one alert")


class DeliveryError(Exception):
    """A failed send. ``transient``: trying again may succeed (timeouts, 5xx, SMTP 4xx).
    ``retry_after``: the wait the endpoint asked for, in seconds, when it said. Its message is
    scrubbed of every registered secret at construction."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        secrets: Iterable[str | SecretStr | None] = (),
    ) -> None:
        super().__init__(scrub(message, secrets))
        self.transient = transient
        self.retry_after = retry_after


@runtime_checkable
class Notifier(Protocol):
    channel: str  # the channel's name from the routing rules, e.g. "slack-ops"

    def send(self, notification: Notification) -> None:
        """Deliver once or raise ``DeliveryError``."""
        ...
