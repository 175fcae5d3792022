"""The alerter stage's logic: ``sentiment.windows`` → spike detector → ``alerts`` and the store.

Per-series state and the consumed offsets are stored in one transaction, like the aggregator's
(``Checkpoint.STORE``, see ``finsent.runtime.runner``).
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

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
from finsent.core.watchlist import load_watchlist
from finsent.runtime.kafka_io import DeadLetterSink
from finsent.runtime.runner import Message, Partition
from finsent.runtime.store import Commit, Store, move_state_rows

if TYPE_CHECKING:
    from finsent.core.settings import Settings

log = logging.getLogger(__name__)
STAGE = "alerter"


def watched(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def load_alert_rules(settings: Settings) -> AlertRules:
    """The rules file named by the settings, or defaults that route every alert to Slack
    when a webhook is configured; bound to the settings' watchlist (``watchlist: true``)."""
    watchlist = load_watchlist(settings.watchlist_file).keys
    if settings.alert_rules_file is not None:
        return load_rules(settings.alert_rules_file).with_watchlist(watchlist)
    if settings.slack_webhook_url is not None:
        return AlertRules.model_validate(
            {"channels": {"slack": {"type": "slack"}}, "routes": [{"channels": ["slack"]}]}
        ).with_watchlist(watchlist)
    return AlertRules().with_watchlist(watchlist)


@dataclass(frozen=True)
class AlerterConfig:
    """What the alerter watches, and the thresholds it starts from. The watchlist's series
    (``rules.watchlist``) are watched whatever ``keys`` says."""

    rule: SpikeRule  # the thresholds of every series, before the rules file's overrides
    rules: AlertRules  # the rules file: per-series overrides (and the notifier's routing)
    keys: tuple[str, ...]  # glob patterns of the series keys it watches
    window: WindowSpec  # the window size it watches
    no_data_windows: int  # an active alert resolves after this many windows without data; 0: never

    @classmethod
    def from_settings(cls, settings: Settings) -> AlerterConfig:
        """Reads the rules file and the watchlist, if the settings name them (``RulesError``,
        ``WatchlistError`` if bad)."""
        rule = SpikeRule(
            scales=settings.alert_scale_spans,
            half_life=settings.alert_half_life_span,
            fire_z=settings.alert_fire_z,
            resolve_z=settings.alert_resolve_z,
            min_count=settings.alert_min_count,
            min_ratio=settings.alert_min_ratio,
            floor=settings.alert_floor,
            share_z=settings.alert_share_z,
        )
        return cls(
            rule=rule,
            rules=load_alert_rules(settings),
            keys=settings.alert_keys,
            window=settings.alert_window_spec,
            no_data_windows=settings.alert_no_data_windows,
        )


class Alerter:
    """Evaluates each final window it watches against its series' state; emits alert events.

    State is kept per owned partition of ``sentiment.windows`` (a series' windows always come
    through one partition, keyed by the series), so a member judges, and resolves for want of
    data, only the series it owns: another member's quiet-looking series are not quiet."""

    def __init__(self, config: AlerterConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.states: dict[Partition, dict[str, SeriesState]] = {}  # loaded on assignment
        # Per owned partition, the series with an active alert: each window checks them for
        # lack of data, and scanning every series' state per window grew with the series.
        self.alerting: dict[Partition, set[str]] = {}
        # Saved before state was kept per partition: taken up by the partition whose windows
        # the series comes through, then deleted.
        self.unowned: dict[str, SeriesState] = {}
        self.adopted: set[str] = set()
        # Per owned partition: when its watch began (its earliest window), from which a series
        # first seen later counts as watched, and quiet.
        self.origins: dict[Partition, datetime] = {}

    def assigned(self, partitions: list[Partition]) -> None:
        # Another member may have moved these series on since this process loaded them.
        for part in partitions:
            prefix = _prefix(part)
            self.states[part] = {
                k.removeprefix(prefix): SeriesState.from_json(v)
                for k, v in self.store.load_state(STAGE, prefix).items()
            }
            self.alerting[part] = {k for k, s in self.states[part].items() if s.active is not None}
            origins = [s.origin for s in self.states[part].values() if s.origin is not None]
            if origins:
                self.origins[part] = EPOCH + timedelta(seconds=min(origins))
            else:
                self.origins.pop(part, None)
        self.unowned = {
            k: SeriesState.from_json(v)
            for k, v in self.store.load_state(STAGE).items()
            if not _OWNED.match(k)
        }

    def revoked(self, partitions: list[Partition]) -> None:
        for part in partitions:
            self.states.pop(part, None)
            self.alerting.pop(part, None)
            self.origins.pop(part, None)

    def _without_data(
        self, states: dict[str, SeriesState], alerting: set[str], now_event: datetime
    ) -> list[Evaluation]:
        """Resolutions of the active alerts whose series have had no window for too long."""
        found = []
        for key in sorted(alerting):
            hop, windows = self.config.window.hop, self.config.no_data_windows
            result = resolve_without_data(states[key], hop, windows, now_event)
            if result is not None:
                found.append(result)
        return found

    def _record(
        self,
        result: Evaluation,
        states: dict[str, SeriesState],
        changed: dict[str, SeriesState],
        alerting: set[str],
    ) -> Alert:
        event = result.event
        assert event is not None
        _keep(event.key, result.state, states, changed, alerting)
        log.warning("alert %s: %s", event.state, event.message)
        return event

    def watches(self, window: WindowStat) -> bool:
        """Final windows of the alert window size, on the series keys it watches and the
        watchlist's."""
        spec = self.config.window
        return (
            window.final
            and window.window_end - window.window_start == spec.size
            and (window.window_start - EPOCH) % spec.hop == timedelta(0)
            and (watched(window.key, self.config.keys) or window.key in self.config.rules.watchlist)
        )

    def process(
        self, batch: Sequence[Message[WindowStat]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[tuple[str, Alert]], Commit | None]:
        if not batch:
            return [], None
        events: list[Alert] = []
        changed: dict[Partition, dict[str, SeriesState]] = {}
        for message in batch:
            window = message.value
            if not self.watches(window):
                continue
            part = (message.topic, message.partition)
            if part not in self.states:  # the rebalance callback loads it first; be safe
                self.assigned([part])
            states, part_changed = self.states[part], changed.setdefault(part, {})
            alerting = self.alerting.setdefault(part, set())
            # Checked at each window, not each batch, so batching changes nothing.
            for result in self._without_data(states, alerting, window.window_end):
                events.append(self._record(result, states, part_changed, alerting))
            state = states.get(window.key)
            if state is None:
                state = self.unowned.pop(window.key, None)
                if state is None:
                    state = SeriesState()
                else:  # saved under its old key, deleted as it is saved under the new one
                    self.adopted.add(window.key)
            rule = self.config.rules.rule_for(window.key, self.config.rule)
            # The earliest window seen: arrival order across series can differ between runs,
            # but only for the first windows, which no scale can judge yet.
            origin = min(self.origins.get(part, window.window_start), window.window_start)
            self.origins[part] = origin
            result = evaluate(rule, state, window, now, origin=origin)
            _keep(window.key, result.state, states, part_changed, alerting)
            if result.event is not None:
                events.append(self._record(result, states, part_changed, alerting))
        state_put = {
            _prefix(part) + k: s.to_json() for part, c in changed.items() for k, s in c.items()
        }
        state_delete, self.adopted = self.adopted, set()
        # Keyed by notification group, so one notifier member holds all of a group's alerts.
        group_by = self.config.rules.grouping.group_by
        outputs = [(group_key(a.key, group_by), a) for a in events]
        return outputs, Commit(
            stage=STAGE, alerts=events, state_put=state_put, state_delete=state_delete
        )


_OWNED = re.compile(r"\d+/")  # a partition's prefix


def _keep(
    key: str,
    state: SeriesState,
    states: dict[str, SeriesState],
    changed: dict[str, SeriesState],
    alerting: set[str],
) -> None:
    """A series' new state, saved with the batch, and whether it has an active alert."""
    states[key] = changed[key] = state
    if state.active is not None:
        alerting.add(key)
    else:
        alerting.discard(key)


def repartition_state(
    rows: Mapping[str, Any], partition_of: Callable[[str], int]
) -> dict[str, Any]:
    """The alerter's state rows once sentiment.windows has more partitions: each series'
    baseline and alert go to the partition ``partition_of`` its key now goes to."""
    return move_state_rows(rows, partition_of)[0]


def _prefix(partition: Partition) -> str:
    """Where a partition's series states are saved among the stage's state rows."""
    return f"{partition[1]}/"
