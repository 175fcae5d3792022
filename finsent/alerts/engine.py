"""The alert stages.

- ``alerter``: ``sentiment.windows`` → spike detector → ``alerts`` and the store. Per-series
  state and the consumed offsets are stored in one transaction, like the aggregator.
- ``notifier``: ``alerts`` → grouping, silences, acknowledgements, inhibition, routing →
  Slack and email, with a delivery log so a restart never re-sends.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Histogram
from pydantic import SecretStr

from finsent.alerts.detector import SeriesState, SpikeRule, evaluate
from finsent.alerts.dispatch import Dispatcher, Group, Silence
from finsent.alerts.notifiers import EmailNotifier, Notifier, SlackNotifier, deliver
from finsent.alerts.rules import AlertRules, EmailChannel, SlackChannel, load_rules
from finsent.core.durations import EPOCH
from finsent.core.records import Alert, WindowStat
from finsent.core.settings import Settings
from finsent.runtime import metrics
from finsent.runtime.kafka_io import DeadLetters, decode_or_dead
from finsent.runtime.runner import Partition, run_transactional_stage
from finsent.runtime.store import Commit, Store, as_utc

log = logging.getLogger(__name__)
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
STAGE = "alerter"
NOTIFY_STAGE = "notifier"


def rule_from(settings: Settings) -> SpikeRule:
    return SpikeRule(
        min_count=settings.alert_min_count,
        pending_windows=settings.alert_pending_windows,
        min_baseline=settings.alert_min_baseline,
        baseline_windows=settings.alert_baseline_windows,
        fire_z=settings.alert_fire_z,
        resolve_z=settings.alert_resolve_z,
        floor=settings.alert_floor,
        volume_z=settings.alert_volume_z,
    )


def watched(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def load_alert_rules(settings: Settings) -> AlertRules:
    """The rules file named by the settings, or defaults that route every alert to Slack
    when a webhook is configured."""
    if settings.alert_rules_file is not None:
        return load_rules(settings.alert_rules_file)
    if settings.slack_webhook_url is not None:
        return AlertRules.model_validate(
            {"channels": {"slack": {"type": "slack"}}, "routes": [{"channels": ["slack"]}]}
        )
    return AlertRules()


class Alerter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rule = rule_from(settings)
        self.rules = load_alert_rules(settings)
        self.spec = settings.alert_window_spec
        self.states: dict[str, SeriesState] = {}  # loaded on assignment

    def assigned(self, partitions: list[Partition], store: Store) -> None:
        # Another member may have moved these series on since this process loaded them.
        self.states = {k: SeriesState.from_json(v) for k, v in store.load_state(STAGE).items()}

    def revoked(self, partitions: list[Partition]) -> None:
        pass

    def watches(self, window: WindowStat) -> bool:
        """Final windows of the alert window size, on the series keys it watches."""
        return (
            window.final
            and window.window_end - window.window_start == self.spec.size
            and (window.window_start - EPOCH) % self.spec.hop == timedelta(0)
            and watched(window.key, self.settings.alert_keys)
        )

    def process(self, batch: list, now: datetime, dead: DeadLetters) -> tuple[list, Commit | None]:
        if not batch:
            return [], None
        events: list[Alert] = []
        changed: dict[str, SeriesState] = {}
        for record in batch:
            window = decode_or_dead(WindowStat, record, dead)
            if window is None or not self.watches(window):
                continue
            state = self.states.get(window.key, SeriesState())
            result = evaluate(self.rules.rule_for(window.key, self.rule), state, window, now)
            self.states[window.key] = changed[window.key] = result.state
            if result.event is not None:
                events.append(result.event)
                log.warning("alert %s: %s", result.event.state, result.event.message)
        state_put = {k: s.to_json() for k, s in changed.items()}
        return [(a.key, a) for a in events], Commit(stage=STAGE, alerts=events, state_put=state_put)


def run_alerter(settings: Settings, stop: threading.Event) -> None:
    store = Store(settings.database_url)
    metrics.serve(settings, STAGE)
    logic = Alerter(settings)
    log.info("alerter watching %s on %s windows", ", ".join(settings.alert_keys), logic.spec.name)
    run_transactional_stage(
        settings,
        stage=STAGE,
        source="sentiment.windows",
        sink="alerts",
        store=store,
        logic=logic,
        stop=stop,
        max_batch=settings.batch_max_size,
    )


class NotifierLogic:
    """Alert events in; notifications out through the channels' notifiers."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        rules: AlertRules,
        notifiers: dict[str, Notifier],
    ) -> None:
        self.settings = settings
        self.store = store
        self.rules = rules
        self.notifiers = notifiers
        self.dispatcher = Dispatcher(rules)  # its groups are loaded on assignment
        self.missing: set[str] = set()

    def assigned(self, partitions: list[Partition], store: Store) -> None:
        groups = {k: Group.from_json(v) for k, v in store.load_state(NOTIFY_STAGE).items()}
        self.dispatcher = Dispatcher(self.rules, groups)

    def revoked(self, partitions: list[Partition]) -> None:
        pass

    def process(self, batch: list, now: datetime, dead: DeadLetters) -> tuple[list, Commit | None]:
        for record in batch:
            alert = decode_or_dead(Alert, record, dead)
            if alert is not None:
                self.dispatcher.receive(alert, now)
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
                now=lambda: datetime.now(UTC),
                max_attempts=4,
                max_wait_s=8,
            )
            HANDOFFS.labels(item.channel, result.status).inc()
            if result.status == "failed":
                self.dispatcher.retry_later(item, now)
            if result.status == "delivered":
                for alert in item.notification.alerts:
                    closed = alert.updated_at  # the window's end: its close, in event time
                    HANDOFF_LAG.observe(max((datetime.now(UTC) - closed).total_seconds(), 0))
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
        return [], Commit(stage=NOTIFY_STAGE, state_put=put, state_delete=removed)


def build_notifiers(rules: AlertRules, settings: Settings) -> dict[str, Notifier]:
    """One notifier per channel whose secret is in the environment."""
    notifiers: dict[str, Notifier] = {}
    for name, channel in rules.channels.items():
        try:
            if isinstance(channel, SlackChannel):
                url = _secret(settings, channel.webhook_env)
                if url is None:
                    log.error("channel %s: %s is not set", name, channel.webhook_env)
                    continue
                notifiers[name] = SlackNotifier(name, url)
            elif isinstance(channel, EmailChannel):
                password = _secret(settings, channel.password_env) if channel.username else None
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


def _secret(settings: Settings, env_name: str) -> SecretStr | None:
    """A channel's secret: from the settings for the standard names, else its own variable."""
    if env_name == "FINSENT_SLACK_WEBHOOK_URL":
        return settings.slack_webhook_url
    if env_name == "FINSENT_SMTP_PASSWORD":
        return settings.smtp_password
    value = os.environ.get(env_name)
    return SecretStr(value) if value else None


def run_notifier(settings: Settings, stop: threading.Event) -> None:
    store = Store(settings.database_url)
    metrics.serve(settings, NOTIFY_STAGE)
    rules = load_alert_rules(settings)
    notifiers = build_notifiers(rules, settings)
    log.info("notifier: channels %s", ", ".join(sorted(notifiers)) or "(none configured)")
    run_transactional_stage(
        settings,
        stage=NOTIFY_STAGE,
        source="alerts",
        sink="alerts",  # produces nothing: its outputs are Slack messages and emails
        store=store,
        logic=NotifierLogic(settings, store, rules, notifiers),
        stop=stop,
        max_batch=settings.batch_max_size,
    )
