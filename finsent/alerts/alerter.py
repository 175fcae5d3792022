"""The alerter stage's logic: ``sentiment.windows`` → spike detector → ``alerts`` and the store.

Per-series state and the consumed offsets are stored in one transaction, like the aggregator's
(``Checkpoint.STORE``, see ``finsent.runtime.runner``).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from finsent.alerts.detector import (
    Evaluation,
    SeriesState,
    SpikeRule,
    evaluate,
    resolve_without_data,
)
from finsent.alerts.dispatch import group_key
from finsent.alerts.rules import AlertRules, load_rules
from finsent.core.durations import EPOCH, WindowSpec
from finsent.core.records import Alert, WindowStat
from finsent.runtime.kafka_io import DeadLetterSink
from finsent.runtime.runner import Message, Partition
from finsent.runtime.store import Commit, Store

if TYPE_CHECKING:
    from finsent.core.settings import Settings

log = logging.getLogger(__name__)
STAGE = "alerter"


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


@dataclass(frozen=True)
class AlerterConfig:
    """What the alerter watches, and the thresholds it starts from."""

    rule: SpikeRule  # the thresholds of every series, before the rules file's overrides
    rules: AlertRules  # the rules file: per-series overrides (and the notifier's routing)
    keys: tuple[str, ...]  # glob patterns of the series keys it watches
    window: WindowSpec  # the window size it watches
    no_data_windows: int  # an active alert resolves after this many windows without data; 0: never

    @classmethod
    def from_settings(cls, settings: Settings) -> AlerterConfig:
        """Reads the rules file, if the settings name one (``RulesError`` if it is bad)."""
        rule = SpikeRule(
            min_count=settings.alert_min_count,
            pending_windows=settings.alert_pending_windows,
            min_baseline=settings.alert_min_baseline,
            baseline_windows=settings.alert_baseline_windows,
            fire_z=settings.alert_fire_z,
            resolve_z=settings.alert_resolve_z,
            floor=settings.alert_floor,
            volume_z=settings.alert_volume_z,
        )
        return cls(
            rule=rule,
            rules=load_alert_rules(settings),
            keys=settings.alert_keys,
            window=settings.alert_window_spec,
            no_data_windows=settings.alert_no_data_windows,
        )


class Alerter:
    """Evaluates each final window it watches against its series' state; emits alert events."""

    def __init__(self, config: AlerterConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.states: dict[str, SeriesState] = {}  # loaded on assignment

    def assigned(self, partitions: list[Partition]) -> None:
        # Another member may have moved these series on since this process loaded them.
        self.states = {k: SeriesState.from_json(v) for k, v in self.store.load_state(STAGE).items()}

    def revoked(self, partitions: list[Partition]) -> None:
        pass

    def _without_data(self, now_event: datetime) -> list[Evaluation]:
        """Resolutions of the active alerts whose series have had no window for too long."""
        found = []
        for key in sorted(k for k, s in self.states.items() if s.active is not None):
            hop, windows = self.config.window.hop, self.config.no_data_windows
            result = resolve_without_data(self.states[key], hop, windows, now_event)
            if result is not None:
                found.append(result)
        return found

    def _record(self, result: Evaluation, changed: dict[str, SeriesState]) -> Alert:
        event = result.event
        assert event is not None
        self.states[event.key] = changed[event.key] = result.state
        log.warning("alert %s: %s", event.state, event.message)
        return event

    def watches(self, window: WindowStat) -> bool:
        """Final windows of the alert window size, on the series keys it watches."""
        spec = self.config.window
        return (
            window.final
            and window.window_end - window.window_start == spec.size
            and (window.window_start - EPOCH) % spec.hop == timedelta(0)
            and watched(window.key, self.config.keys)
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
            # Checked at each window, not each batch, so batching changes nothing.
            for result in self._without_data(window.window_end):
                events.append(self._record(result, changed))
            state = self.states.get(window.key, SeriesState())
            rule = self.config.rules.rule_for(window.key, self.config.rule)
            result = evaluate(rule, state, window, now)
            self.states[window.key] = changed[window.key] = result.state
            if result.event is not None:
                events.append(self._record(result, changed))
        state_put = {k: s.to_json() for k, s in changed.items()}
        # Keyed by notification group, so one notifier member holds all of a group's alerts.
        group_by = self.config.rules.grouping.group_by
        outputs = [(group_key(a.key, group_by), a) for a in events]
        return outputs, Commit(stage=STAGE, alerts=events, state_put=state_put)
