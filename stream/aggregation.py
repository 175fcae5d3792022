"""The aggregation stage: ``news.scored`` → event-time windows → ``sentiment.windows`` and the store.

Exactly-once effect: open-window state, scored items, closed windows and the consumed offsets are
written in one store transaction; on restart the consumer seeks to the stored offsets.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from finsent.kafka_io import (
    DeadLetters,
    SeekToStored,
    make_consumer,
    make_producer,
    next_offsets,
    poll_batch,
)
from finsent.records import RecordError, ScoredItem, WindowStat, decode, encode
from finsent.settings import Settings
from finsent.store import Commit, Store
from stream.windows import TumblingWindows

log = logging.getLogger(__name__)
STAGE = "aggregator"


def make_windows(settings: Settings) -> TumblingWindows:
    idle = settings.idle_close_seconds
    return TumblingWindows(
        size=timedelta(seconds=settings.window_seconds),
        grace=timedelta(seconds=settings.grace_seconds),
        top_n=settings.top_headlines,
        idle_close=timedelta(seconds=idle) if idle > 0 else None,
    )


def _warn_if_several_partitions(assigned: list) -> None:
    if len(assigned) > 1:
        log.warning(
            "assigned %d partitions: the watermark is shared, so stories from a lagging partition "
            "may count as late; run one partition until per-partition watermarks land",
            len(assigned),
        )


def run_aggregator(settings: Settings, stop: threading.Event) -> None:
    store = Store(settings.database_url)
    windows = make_windows(settings)
    windows.restore(store.load_state(STAGE))
    consumer = make_consumer(settings, STAGE)
    listener = SeekToStored(consumer, lambda: store.load_offsets(STAGE))
    listener.on_assign.append(_warn_if_several_partitions)
    consumer.subscribe([settings.topic("news.scored")], listener=listener)
    producer = make_producer(settings)
    dead = DeadLetters(settings, producer, STAGE)
    out_topic = settings.topic("sentiment.windows")
    emitted = 0
    log.info("aggregator: %ss windows, %ss grace", settings.window_seconds, settings.grace_seconds)
    try:
        while not stop.is_set():
            batch = poll_batch(consumer, settings.batch_max_size * 4, settings.batch_max_wait_ms)
            now = datetime.now(UTC)
            scored: list[ScoredItem] = []
            closed: list[WindowStat] = []
            for record in batch:
                try:
                    item = decode(ScoredItem, record.value)
                except RecordError as exc:
                    dead.send(exc.reason, record.value or b"", record)
                    continue
                out = windows.add(item, now)
                if out.duplicate:
                    continue
                for late in out.late:
                    dead.send(
                        f"late: window of {late.item.published_at.isoformat()} already closed",
                        encode(late),
                        record,
                    )
                if not out.late:
                    scored.append(item)
                closed.extend(out.closed)
            closed.extend(windows.advance(now))
            if not batch and not closed:
                continue
            futures = [
                producer.send(out_topic, key=w.key.encode(), value=encode(w)) for w in closed
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=30)
            put, delete = windows.take_changes()
            store.commit(
                Commit(
                    stage=STAGE,
                    offsets=next_offsets(batch),
                    scored=scored,
                    windows=closed,
                    state_put=put,
                    state_delete=delete,
                )
            )
            if batch:
                consumer.commit()  # for lag tooling only: the store holds the offsets we resume from
            emitted += len(closed)
    finally:
        producer.flush()
        producer.close()
        consumer.close()
        store.close()
        log.info("aggregator stopped after emitting %d windows", emitted)
