"""The consume → process → produce → commit loop shared by the stateful stages.

Each batch's outputs are acknowledged by the broker first; then one store transaction records
the stage's results, its state and the consumed offsets. On (re)assignment the consumer seeks to
those offsets, so a crash anywhere replays at most one batch, and idempotent upserts absorb the
replay. The store commit is fenced: it only applies if the stored offsets are still the ones this
process started the batch from, so a member that lost its partitions cannot overwrite the state
of the member that took them over.

Backpressure: when a sink (Kafka or the store) fails, the consumer pauses its partitions and the
batch is retried with backoff; nothing more is fetched until the batch is durable.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from kafka import TopicPartition
from kafka.errors import KafkaError
from sqlalchemy.exc import OperationalError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from finsent.core.records import encode
from finsent.core.settings import Settings
from finsent.runtime import metrics
from finsent.runtime.kafka_io import (
    DeadLetters,
    SeekToStored,
    make_consumer,
    make_producer,
    next_offsets,
    poll_batch,
    subscribe,
)
from finsent.runtime.store import Commit, FencedError, Store

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class StageLogic(Protocol):
    """What a stage does with a batch; the loop around it owns Kafka, the store and retries."""

    def assigned(self, partitions: list[Partition], store: Store) -> None:
        """Partitions this process now owns: load their state from the store."""

    def revoked(self, partitions: list[Partition]) -> None:
        """Partitions this process no longer owns: drop their state."""

    def process(
        self, batch: list[Any], now: datetime, dead: DeadLetters
    ) -> tuple[list[tuple[str, Any]], Commit | None]:
        """Keyed outputs and what to commit; ``None`` when nothing changed."""


class _Rebalance(SeekToStored):
    def __init__(self, consumer: Any, store: Store, stage: str, logic: StageLogic) -> None:
        super().__init__(consumer, lambda: store.load_offsets(stage))
        self.store = store
        self.logic = logic
        self.positions: dict[Partition, int | None] = {}  # stored offset each batch starts from

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        parts = [(tp.topic, tp.partition) for tp in revoked]
        for part in parts:
            self.positions.pop(part, None)
        self.logic.revoked(parts)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        stored = self.load()
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            self.positions[(tp.topic, tp.partition)] = offset
            if offset is not None:
                self.consumer.seek(tp, offset)
        self.logic.assigned([(tp.topic, tp.partition) for tp in assigned], self.store)


def run_transactional_stage(
    settings: Settings,
    *,
    stage: str,
    source: str,
    sink: str,
    store: Store,
    logic: StageLogic,
    stop: threading.Event,
    max_batch: int,
    max_retry_wait_s: float = 30.0,
) -> int:
    """Run until ``stop`` is set; return how many records went to ``sink``."""
    consumer = make_consumer(settings, stage)
    rebalance = _Rebalance(consumer, store, stage, logic)
    subscribe(consumer, settings.topic(source), rebalance)
    producer = make_producer(settings)
    dead = DeadLetters(settings, producer, stage)
    out_topic = settings.topic(sink)
    sent = 0

    retrying = sink_retrying(consumer, stage, stop, max_retry_wait_s)
    try:
        while not stop.is_set():
            batch = poll_batch(consumer, max_batch, settings.batch_max_wait_ms)
            started = time.perf_counter()
            outputs, commit = logic.process(batch, datetime.now(UTC), dead)
            if commit is None and not batch:
                continue
            offsets = next_offsets(batch)
            expected = {part: rebalance.positions.get(part) for part in offsets}
            commit = replace(
                commit or Commit(stage=stage), stage=stage, offsets=offsets, expected=expected
            )
            delivered = False
            try:
                for attempt in retrying:
                    with attempt:
                        if stop.is_set() and attempt.retry_state.attempt_number > 1:
                            raise InterruptedError("stopping with the batch not durable")
                        if not delivered:  # a store retry does not re-send the outputs
                            send_all(producer, out_topic, outputs)
                            delivered = True
                        store.commit(commit)
            except FencedError as exc:
                # Another member owns these partitions now: forget them and re-sync.
                log.warning("%s: %s; re-syncing from the store", stage, exc)
                _resync(consumer, rebalance)
                continue
            except InterruptedError as exc:
                log.warning("%s: %s; it will be replayed on restart", stage, exc)
                break
            finally:
                if consumer.paused():
                    consumer.resume(*consumer.paused())
            rebalance.positions.update(offsets)
            if batch:
                consumer.commit_async()  # for lag tooling only: the store holds our offsets
            sent += len(outputs)
            metrics.ITEMS.labels(stage).inc(len(batch))
            metrics.OUTPUTS.labels(stage).inc(len(outputs))
            if batch:
                metrics.BATCH_SIZE.labels(stage).observe(len(batch))
                metrics.BATCH_SECONDS.labels(stage).observe(time.perf_counter() - started)
                metrics.record_lag(stage, consumer, consumer.assignment())
    finally:
        producer.flush()
        producer.close()
        consumer.close()
        store.close()
    return sent


def sink_retrying(
    consumer: Any, stage: str, stop: threading.Event, max_wait_s: float = 30.0
) -> Retrying:
    """Retries for a failing sink (Kafka or the store), with the consumer's partitions paused
    meanwhile: backpressure instead of an ever-growing buffer."""

    def paused_wait(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sink_name = "store" if isinstance(exc, OperationalError) else "kafka"
        metrics.SINK_RETRIES.labels(stage, sink_name).inc()
        log.warning("%s: %s sink failed (%s); pausing and retrying", stage, sink_name, exc)
        consumer.pause(*consumer.assignment())

    return Retrying(
        retry=retry_if_exception_type((KafkaError, OperationalError, TimeoutError)),
        wait=wait_exponential(multiplier=0.2, max=max_wait_s),
        before_sleep=paused_wait,
        sleep=lambda seconds: _sleep_polling(consumer, seconds, stop),
        reraise=True,
    )


def send_all(producer: Any, topic: str, outputs: list[tuple[str, Any]]) -> None:
    futures = [producer.send(topic, key=key.encode(), value=encode(rec)) for key, rec in outputs]
    producer.flush()
    for future in futures:
        future.get(timeout=30)  # surfaces delivery errors instead of losing them


def _sleep_polling(consumer: Any, seconds: float, stop: threading.Event) -> None:
    """Sleep with the partitions paused, polling so the group keeps this member."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        consumer.poll(timeout_ms=int(min(0.5, max(deadline - time.monotonic(), 0)) * 1000))


def _resync(consumer: Any, rebalance: _Rebalance) -> None:
    assigned = list(consumer.assignment())
    rebalance.on_partitions_revoked(assigned)
    rebalance.on_partitions_assigned(assigned)
