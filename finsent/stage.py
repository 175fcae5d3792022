"""The consume → process → produce → commit loop shared by the stateful stages.

Each batch's outputs are acknowledged by the broker first; then one store transaction records
the stage's results, its state and the consumed offsets. On restart the consumer seeks to those
offsets, so a crash anywhere replays at most one batch, and idempotent upserts absorb the replay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition

from finsent.kafka_io import (
    DeadLetters,
    SeekToStored,
    make_consumer,
    make_producer,
    next_offsets,
    poll_batch,
)
from finsent.records import encode
from finsent.settings import Settings
from finsent.store import Commit, Store

log = logging.getLogger(__name__)

# (batch, wall-clock now, dead letters) -> (keyed outputs, what to commit); None: nothing changed
Process = Callable[[list[Any], datetime, DeadLetters], tuple[list[tuple[str, Any]], Commit | None]]


def run_transactional_stage(
    settings: Settings,
    *,
    stage: str,
    source: str,
    sink: str,
    store: Store,
    process: Process,
    stop: threading.Event,
    max_batch: int,
    on_assign: Callable[[list[TopicPartition]], None] | None = None,
) -> int:
    """Run until ``stop`` is set; return how many records went to ``sink``."""
    consumer = make_consumer(settings, stage)
    listener = SeekToStored(consumer, lambda: store.load_offsets(stage))
    if on_assign is not None:
        listener.on_assign.append(on_assign)
    consumer.subscribe([settings.topic(source)], listener=listener)
    producer = make_producer(settings)
    dead = DeadLetters(settings, producer, stage)
    out_topic = settings.topic(sink)
    sent = 0
    try:
        while not stop.is_set():
            batch = poll_batch(consumer, max_batch, settings.batch_max_wait_ms)
            outputs, commit = process(batch, datetime.now(UTC), dead)
            if commit is None and not batch:
                continue
            futures = [
                producer.send(out_topic, key=key.encode(), value=encode(record))
                for key, record in outputs
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=30)  # surfaces delivery errors instead of losing them
            store.commit(
                replace(commit or Commit(stage=stage), stage=stage, offsets=next_offsets(batch))
            )
            if batch:
                consumer.commit()  # for lag tooling only: the store holds the offsets we resume from
            sent += len(outputs)
    finally:
        producer.flush()
        producer.close()
        consumer.close()
        store.close()
    return sent
