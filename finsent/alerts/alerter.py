"""The alerter stage's logic: ``sentiment.windows`` → spike detector → ``alerts`` and the store.

Per-series state and the consumed offsets are stored in one transaction, like the aggregator's
(``Checkpoint.STORE``, see ``finsent.runtime.runner``).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from finsent.alerts.detector import SeriesState, SpikeRule, evaluate
from finsent.alerts.rules import AlertRules, load_rules
from finsent.core.durations import EPOCH
from finsent.core.records import Alert, WindowStat
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import DeadLetterSink
from finsent.runtime.runner import Message, Partition
from finsent.runtime.store import Commit, Store

log = logging.getLogger(__name__)
STAGE = "alerter"


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
    """Evaluates each final window it watches against its series' state; emits alert events."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.rule = rule_from(settings)
        self.rules = load_alert_rules(settings)
        self.spec = settings.alert_window_spec
        self.states: dict[str, SeriesState] = {}  # loaded on assignment

    def assigned(self, partitions: list[Partition]) -> None:
        # Another member may have moved these series on since this process loaded them.
        self.states = {k: SeriesState.from_json(v) for k, v in self.store.load_state(STAGE).items()}

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

    def process(
        self, batch: Sequence[Message[WindowStat]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[tuple[str, Alert]], Commit | None]:
        if not batch:
            return [], None
        events: list[Alert] = []
        changed: dict[str, SeriesState] = {}
        for message in batch:
            window = message.value
            if not self.watches(window):
                continue
            state = self.states.get(window.key, SeriesState())
            result = evaluate(self.rules.rule_for(window.key, self.rule), state, window, now)
            self.states[window.key] = changed[window.key] = result.state
            if result.event is not None:
                events.append(result.event)
                log.warning("alert %s: %s", result.event.state, result.event.message)
        state_put = {k: s.to_json() for k, s in changed.items()}
        return [(a.key, a) for a in events], Commit(stage=STAGE, alerts=events, state_put=state_put)
