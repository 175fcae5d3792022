"""The notifier stage's logic: ``alerts`` → grouping, silences, acknowledgements, inhibition,
routing → Slack and email, with a delivery log so a restart never re-sends.

It produces no topic (its stage declares no sink); its dispatcher state and the consumed
offsets are stored in one transaction (``Checkpoint.STORE``, see ``finsent.runtime.runner``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from pydantic import SecretStr

from finsent.alerts.alerter import load_alert_rules
from finsent.alerts.dispatch import Dispatcher, Group
from finsent.alerts.notify.delivery import deliver
from finsent.alerts.notify.email import EmailNotifier
from finsent.alerts.notify.model import Notifier
from finsent.alerts.notify.slack import SlackNotifier
from finsent.alerts.rules import AlertRules, EmailChannel, SlackChannel
from finsent.alerts.silences import Silence
from finsent.core.records import Alert
from finsent.runtime import metrics
from finsent.runtime.kafka_io import DeadLetterSink
from finsent.runtime.runner import Message, Output, Partition, utc_now
from finsent.runtime.store import Commit, Store, as_utc

if TYPE_CHECKING:
    from finsent.core.settings import Settings

log = logging.getLogger(__name__)
STAGE = "notifier"
HANDOFFS = Counter(
    "finsent_notifications",
    "Notifications handed to a channel, by outcome.",
    ["channel", "status"],
    registry=metrics.REGISTRY,
)
HANDOFF_LAG = Histogram(
    "finsent_alert_handoff_seconds",
    "From the end of an alert's window to the notification's hand-off (live runs).",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
    registry=metrics.REGISTRY,
)


def channel_secret_names(rules: AlertRules) -> set[str]:
    """The environment variables the rules' channels take their secrets from."""
    names: set[str] = set()
    for channel in rules.channels.values():
        if isinstance(channel, SlackChannel):
            names.add(channel.webhook_env)
        elif isinstance(channel, EmailChannel) and channel.username:
            names.add(channel.password_env)
    return names


@dataclass(frozen=True)
class NotifierConfig:
    """The rules (grouping, routes, channels) and the channels' secrets that are set."""

    rules: AlertRules
    secrets: Mapping[str, SecretStr]  # by environment variable name; unset ones are absent

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None
    ) -> NotifierConfig:
        """Reads the rules file, if the settings name one (``RulesError`` if it is bad), and
        the secrets its channels name (``environ``: the environment to read, for tests)."""
        rules = load_alert_rules(settings)
        secrets = {
            name: secret
            for name in sorted(channel_secret_names(rules))
            if (secret := settings.secret(name, environ)) is not None
        }
        return cls(rules=rules, secrets=MappingProxyType(secrets))


class NotifierLogic:
    """Alert events in; notifications out through the channels' notifiers."""

    def __init__(
        self,
        config: NotifierConfig,
        store: Store,
        notifiers: Mapping[str, Notifier],
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.store = store
        self.notifiers = dict(notifiers)
        # Delivery is the edge: attempts are stamped with the wall clock and retried after real
        # waits; both are passed in so tests run on a fake clock without sleeping.
        self.clock = clock
        self.sleep = sleep
        self.dispatcher = Dispatcher(config.rules)  # its groups are loaded on assignment
        self.missing: set[str] = set()

    def assigned(self, partitions: list[Partition]) -> None:
        groups = {k: Group.from_json(v) for k, v in self.store.load_state(STAGE).items()}
        self.dispatcher = Dispatcher(self.config.rules, groups)

    def revoked(self, partitions: list[Partition]) -> None:
        pass

    def process(
        self, batch: Sequence[Message[Alert]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[Output], Commit | None]:
        for message in batch:
            self.dispatcher.receive(message.value, now)
        silences = [
            Silence(
                matcher=row["matcher"],
                starts_at=as_utc(row["starts_at"]),
                ends_at=as_utc(row["ends_at"]),
                severity=row["severity"],
            )
            for row in self.store.active_silences(now)
        ]
        outgoing = self.dispatcher.flush(now, silences, self.store.acked_ids())
        for item in outgoing:
            notifier = self.notifiers.get(item.channel)
            if notifier is None:
                if item.channel not in self.missing:
                    log.error("channel %s has no notifier (is its secret set?)", item.channel)
                    self.missing.add(item.channel)
                continue
            # Bounded retries: a dead endpoint must not hold the consumer past its poll
            # interval; a failed notification is tried again after the group interval.
            result = deliver(
                item.notification,
                notifier,
                self.store,
                now=self.clock,
                max_attempts=4,
                max_wait_s=8,
                sleep=self.sleep,
            )
            HANDOFFS.labels(item.channel, result.status).inc()
            if result.status == "failed":
                self.dispatcher.retry_later(item, now)
            if result.status == "delivered":
                for alert in item.notification.alerts:
                    closed = alert.updated_at  # the window's end: its close, in event time
                    HANDOFF_LAG.observe(max((self.clock() - closed).total_seconds(), 0))
            log.info(
                "notification %s (%s, %s) to %s: %s",
                item.notification.id[:12],
                item.notification.group_key,
                item.notification.kind,
                item.channel,
                result.status,
            )
        put, removed = self.dispatcher.take_changes()
        if not batch and not put and not removed:
            return [], None
        return [], Commit(stage=STAGE, state_put=put, state_delete=removed)


def build_notifiers(config: NotifierConfig) -> dict[str, Notifier]:
    """One notifier per channel whose secret is set."""
    notifiers: dict[str, Notifier] = {}
    for name, channel in config.rules.channels.items():
        try:
            if isinstance(channel, SlackChannel):
                url = config.secrets.get(channel.webhook_env)
                if url is None:
                    log.error("channel %s: %s is not set", name, channel.webhook_env)
                    continue
                notifiers[name] = SlackNotifier(name, url)
            elif isinstance(channel, EmailChannel):
                password = config.secrets.get(channel.password_env) if channel.username else None
                notifiers[name] = EmailNotifier(
                    name,
                    host=channel.host,
                    port=channel.port,
                    security=channel.security,
                    username=channel.username,
                    password=password,
                    sender=channel.sender,
                    recipients=channel.to,
                )
        except ValueError as exc:  # the notifiers' messages never carry the secret
            log.error("channel %s is not usable: %s", name, exc)
    return notifiers
