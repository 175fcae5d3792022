"""The alert stage: ``sentiment.windows`` → spike detector → ``alerts`` and the store.

Per-series state and the consumed offsets are stored in one transaction, like the aggregator.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from datetime import datetime, timedelta

from alerts.detector import SeriesState, SpikeRule, evaluate
from finsent import metrics
from finsent.kafka_io import DeadLetters, decode_or_dead
from finsent.records import Alert, WindowStat
from finsent.settings import Settings
from finsent.stage import Partition, run_transactional_stage
from finsent.store import Commit, Store
from stream.windows import EPOCH

log = logging.getLogger(__name__)
STAGE = "alerter"


def rule_from(settings: Settings) -> SpikeRule:
    return SpikeRule(
        min_count=settings.alert_min_count,
        min_baseline=settings.alert_min_baseline,
        baseline_windows=settings.alert_baseline_windows,
        fire_z=settings.alert_fire_z,
        resolve_z=settings.alert_resolve_z,
        floor=settings.alert_floor,
    )


def watched(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


class Alerter:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.rule = rule_from(settings)
        self.spec = settings.alert_window_spec
        self.states = {k: SeriesState.from_json(v) for k, v in store.load_state(STAGE).items()}

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
            result = evaluate(self.rule, state, window, now)
            self.states[window.key] = changed[window.key] = result.state
            if result.event is not None:
                events.append(result.event)
                log.warning("alert %s: %s", result.event.state, result.event.message)
        state_put = {k: s.to_json() for k, s in changed.items()}
        return [(a.key, a) for a in events], Commit(stage=STAGE, alerts=events, state_put=state_put)


def run_alerter(settings: Settings, stop: threading.Event) -> None:
    store = Store(settings.database_url)
    metrics.serve(settings, STAGE)
    logic = Alerter(settings, store)
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
