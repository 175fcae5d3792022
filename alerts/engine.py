"""The alert stage: ``sentiment.windows`` → spike detector → ``alerts`` and the store.

Per-series state and the consumed offsets are stored in one transaction, like the aggregator.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from datetime import UTC, datetime

from alerts.detector import SeriesState, SpikeRule, evaluate
from finsent.kafka_io import (
    DeadLetters,
    SeekToStored,
    make_consumer,
    make_producer,
    next_offsets,
    poll_batch,
)
from finsent.records import Alert, RecordError, WindowStat, decode, encode
from finsent.settings import Settings
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
    consumer = make_consumer(settings, STAGE)
    consumer.subscribe(
        [settings.topic("sentiment.windows")],
        listener=SeekToStored(consumer, lambda: store.load_offsets(STAGE)),
    )
    producer = make_producer(settings)
    dead = DeadLetters(settings, producer, STAGE)
    out_topic = settings.topic("alerts")
    log.info("alerter watching %s", ", ".join(settings.alert_keys))
    try:
        while not stop.is_set():
            batch = poll_batch(consumer, settings.batch_max_size, settings.batch_max_wait_ms)
            if not batch:
                continue
            now = datetime.now(UTC)
            events: list[Alert] = []
            changed: dict[str, SeriesState] = {}
            for record in batch:
                try:
                    window = decode(WindowStat, record.value)
                except RecordError as exc:
                    dead.send(exc.reason, record.value or b"", record)
                    continue
                if not window.final or not watched(window.key, settings.alert_keys):
                    continue
                result = evaluate(rule, states.get(window.key, SeriesState()), window, now)
                states[window.key] = changed[window.key] = result.state
                if result.event is not None:
                    events.append(result.event)
                    log.warning("alert %s: %s", result.event.state, result.event.message)
            futures = [
                producer.send(out_topic, key=a.key.encode(), value=encode(a)) for a in events
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=30)
            store.commit(
                Commit(
                    stage=STAGE,
                    offsets=next_offsets(batch),
                    alerts=events,
                    state_put={k: s.to_json() for k, s in changed.items()},
                )
            )
            consumer.commit()
    finally:
        producer.flush()
        producer.close()
        consumer.close()
        store.close()
