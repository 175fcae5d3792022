"""The alert stage: ``sentiment.windows`` → spike detector → ``alerts`` and the store.

Per-series state and the consumed offsets are stored in one transaction, like the aggregator.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from datetime import datetime

from alerts.detector import SeriesState, SpikeRule, evaluate
from finsent.kafka_io import DeadLetters, decode_or_dead
from finsent.records import Alert, WindowStat
from finsent.settings import Settings
from finsent.stage import run_transactional_stage
from finsent.store import Commit, Store

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


def run_alerter(settings: Settings, stop: threading.Event) -> None:
    store = Store(settings.database_url)
    rule = rule_from(settings)
    states = {k: SeriesState.from_json(v) for k, v in store.load_state(STAGE).items()}

    def process(batch: list, now: datetime, dead: DeadLetters) -> tuple[list, Commit | None]:
        if not batch:
            return [], None
        events: list[Alert] = []
        changed: dict[str, SeriesState] = {}
        for record in batch:
            window = decode_or_dead(WindowStat, record, dead)
            if window is None or not window.final or not watched(window.key, settings.alert_keys):
                continue
            result = evaluate(rule, states.get(window.key, SeriesState()), window, now)
            states[window.key] = changed[window.key] = result.state
            if result.event is not None:
                events.append(result.event)
                log.warning("alert %s: %s", result.event.state, result.event.message)
        state_put = {k: s.to_json() for k, s in changed.items()}
        return [(a.key, a) for a in events], Commit(stage=STAGE, alerts=events, state_put=state_put)

    log.info("alerter watching %s", ", ".join(settings.alert_keys))
    run_transactional_stage(
        settings,
        stage=STAGE,
        source="sentiment.windows",
        sink="alerts",
        store=store,
        process=process,
        stop=stop,
        max_batch=settings.batch_max_size,
    )
