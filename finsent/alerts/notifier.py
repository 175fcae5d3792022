"""The notifier stage's logic: ``alerts`` → grouping, silences, acknowledgements, inhibition,
routing → Slack and email, with a delivery log so a restart never re-sends.

It produces no topic (its stage declares no sink); its dispatcher state and the consumed
offsets are stored in one transaction (``Checkpoint.STORE``, see ``finsent.runtime.runner``).
Groups belong to the partition of ``alerts`` their events came from (the alerter keys events
by group), one dispatcher per owned partition, so two notifier members never flush, or save,
the same group.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError

from finsent.alerts.alerter import load_alert_rules
from finsent.alerts.dispatch import Dispatcher, Group, Outgoing
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
from finsent.runtime.store import Commit, Store, as_utc, move_state_rows

if TYPE_CHECKING:
    from finsent.core.settings import Settings

log = logging.getLogger(__name__)
STAGE = "notifier"
PRUNE_EVERY = timedelta(hours=1)
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
    retention: timedelta | None = None  # the store forgets what is older; None: nothing

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
        days = settings.retention_days
        return cls(
            rules=rules,
            secrets=MappingProxyType(secrets),
            retention=timedelta(days=days) if days > 0 else None,
        )


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
        self.dispatchers: dict[Partition, Dispatcher] = {}  # loaded on assignment
        self.unowned: set[str] = set()  # state rows of no partition, to delete once adopted
        self.missing: set[str] = set()
        self.next_prune: datetime | None = None

    def assigned(self, partitions: list[Partition]) -> None:
        for part in partitions:
            stored = self.store.load_state(STAGE, _prefix(part))
            groups = {k.removeprefix(_prefix(part)): Group.from_json(v) for k, v in stored.items()}
            dispatcher = self.dispatchers[part] = Dispatcher(self.config.rules, groups)
            if part[1] == 0:
                self._adopt_unowned(dispatcher)

    def _adopt_unowned(self, dispatcher: Dispatcher) -> None:
        """Groups saved before they belonged to a partition go to partition 0's owner, which
        saves them under its prefix with its next commit (and deletes the old rows)."""
        for key, value in self.store.load_state(STAGE).items():
            if not _OWNED.match(key):
                dispatcher.groups.setdefault(key, Group.from_json(value))
                dispatcher.changed.add(key)
                self.unowned.add(key)

    def revoked(self, partitions: list[Partition]) -> None:
        for part in partitions:
            self.dispatchers.pop(part, None)

    def process(
        self, batch: Sequence[Message[Alert]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[Output], Commit | None]:
        for message in batch:
            part = (message.topic, message.partition)
            if part not in self.dispatchers:  # the rebalance callback loads it first; be safe
                self.assigned([part])
            self.dispatchers[part].receive(message.value, now)
        silences = [
            Silence(
                matcher=row["matcher"],
                starts_at=as_utc(row["starts_at"]),
                ends_at=as_utc(row["ends_at"]),
                severity=row["severity"],
            )
            for row in self.store.active_silences(now)
        ]
        self._prune(now)
        market_wide = {w for d in self.dispatchers.values() for w in d.firing_overall()}
        acked = self.store.acked_ids({i for d in self.dispatchers.values() for i in d.alert_ids()})
        for dispatcher in self.dispatchers.values():
            for item in dispatcher.flush(now, silences, acked, market_wide):
                self._hand_off(dispatcher, item, now)
        put: dict[str, Any] = {}
        removed: set[str] = set()
        for part, dispatcher in self.dispatchers.items():
            part_put, part_removed = dispatcher.take_changes()
            put.update({_prefix(part) + k: v for k, v in part_put.items()})
            removed.update(_prefix(part) + k for k in part_removed)
        removed |= self.unowned
        self.unowned = set()
        if not batch and not put and not removed:
            return [], None
        return [], Commit(stage=STAGE, state_put=put, state_delete=removed)

    def _prune(self, now: datetime) -> None:
        """The store's retention, at most every ``PRUNE_EVERY``: the notifier runs in every
        deployment and its batches are small, so the housekeeping of the store is its job."""
        retention = self.config.retention
        if retention is None or (self.next_prune is not None and now < self.next_prune):
            return
        self.next_prune = now + PRUNE_EVERY
        try:
            pruned = self.store.prune(now - retention)
        except SQLAlchemyError as exc:  # housekeeping: try again next time, never crash for it
            log.warning("pruning the store failed (%s); trying again in %s", exc, PRUNE_EVERY)
            return
        if any(pruned.values()):
            log.info("pruned what ended over %s ago: %s", retention, pruned)

    def _hand_off(self, dispatcher: Dispatcher, item: Outgoing, now: datetime) -> None:
        notifier = self.notifiers.get(item.channel)
        if notifier is None:
            if item.channel not in self.missing:
                log.error("channel %s has no notifier (is its secret set?)", item.channel)
                self.missing.add(item.channel)
            return
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
            dispatcher.retry_later(item, now)
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


_OWNED = re.compile(r"\d+/")  # a partition's prefix


def repartition_state(
    rows: Mapping[str, Any], partition_of: Callable[[str], int]
) -> dict[str, Any]:
    """The notifier's state rows once alerts has more partitions: each notification group
    goes to the partition ``partition_of`` its group key now goes to."""
    return move_state_rows(rows, partition_of)[0]


def _prefix(partition: Partition) -> str:
    """Where a partition's groups are saved among the stage's state rows."""
    return f"{partition[1]}/"


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
                notifiers[name] = EmailNotifier.for_channel(name, channel, password)
        except ValueError as exc:  # the notifiers' messages never carry the secret
            log.error("channel %s is not usable: %s", name, exc)
    return notifiers
