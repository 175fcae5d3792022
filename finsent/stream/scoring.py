"""The scoring stage: ``news.raw`` → micro-batches → ``Scorer`` → ``news.scored``.

At-least-once: offsets are committed only after the scored batch is acknowledged by the broker;
a redelivered story gets the same id, and the router passes each id on once.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from finsent.core.records import NewsItem, ScoredItem, encode
from finsent.core.settings import Settings
from finsent.model.scorer import Scorer, load_scorer
from finsent.runtime import metrics
from finsent.runtime.kafka_io import (
    DeadLetters,
    decode_or_dead,
    make_consumer,
    make_producer,
    next_offsets,
    poll_batch,
    subscribe,
)
from finsent.runtime.runner import send_all, sink_retrying

log = logging.getLogger(__name__)
STAGE = "scorer"


def score_batch(
    scorer: Scorer, items: list[NewsItem]
) -> tuple[list[ScoredItem], list[tuple[NewsItem, str]]]:
    """Score a batch; if the batch fails, score one by one so one bad story cannot sink the rest."""
    try:
        return scorer.score(items), []
    except Exception:  # noqa: BLE001 - any scorer failure is isolated per item below
        log.exception("batch of %d failed; retrying item by item", len(items))
    scored, failed = [], []
    for item in items:
        try:
            scored.extend(scorer.score([item]))
        except Exception as exc:  # noqa: BLE001
            failed.append((item, f"scorer failed: {type(exc).__name__}: {exc}"))
    return scored, failed


class _Pending:
    """A scored batch sent but not yet acknowledged: its outputs, futures and offsets."""

    def __init__(self, outputs: list, futures: list, offsets: dict) -> None:
        self.outputs, self.futures, self.offsets = outputs, futures, offsets


def run_scorer(settings: Settings, stop: threading.Event, scorer: Scorer | None = None) -> None:
    """Score until ``stop`` is set.

    Pipelined: batch N's records are handed to the producer without waiting; they are awaited
    (and their offsets committed) after batch N+1 is scored, so the broker round trip overlaps
    the model instead of adding to it. Offsets still follow acknowledgements: at-least-once.
    """
    scorer = scorer or load_scorer(settings.scorer, settings)
    metrics.serve(settings, STAGE)
    consumer = make_consumer(settings, STAGE)
    subscribe(consumer, settings.topic("news.raw"))
    producer = make_producer(settings)
    dead = DeadLetters(settings, producer, STAGE)
    out_topic = settings.topic("news.scored")
    retrying = sink_retrying(consumer, STAGE, stop)
    pending: _Pending | None = None
    total = 0

    def settle(done: _Pending) -> None:
        """Wait for a sent batch's acknowledgements (re-sending on failure), then commit it."""
        try:
            for future in done.futures:
                future.get(timeout=30)
        except Exception:  # noqa: BLE001 - any delivery failure: re-send with backoff below
            for attempt in retrying:
                with attempt:
                    send_all(producer, out_topic, done.outputs)
        if done.offsets:
            consumer.commit_async(offsets=_commit_offsets(done.offsets))

    log.info("scorer %s consuming %s", scorer.version, settings.topic("news.raw"))
    try:
        while not stop.is_set():
            batch = poll_batch(consumer, settings.batch_max_size, settings.batch_max_wait_ms)
            if not batch:
                if pending is not None:
                    producer.flush()
                    settle(pending)
                    pending = None
                continue
            started = time.perf_counter()
            decoded = (decode_or_dead(NewsItem, record, dead) for record in batch)
            items = [item for item in decoded if item is not None]
            model_started = time.perf_counter()
            scored, failed = score_batch(scorer, items) if items else ([], [])
            metrics.MODEL_SECONDS.labels(STAGE).observe(time.perf_counter() - model_started)
            for item, reason in failed:
                dead.send(reason, encode(item))
            outputs = [(s.item.id, s) for s in scored]
            futures = [
                producer.send(out_topic, key=key.encode(), value=encode(rec))
                for key, rec in outputs
            ]
            if pending is not None:
                settle(pending)
            pending = _Pending(outputs, futures, next_offsets(batch))
            total += len(scored)
            metrics.ITEMS.labels(STAGE).inc(len(batch))
            metrics.OUTPUTS.labels(STAGE).inc(len(scored))
            metrics.BATCH_SIZE.labels(STAGE).observe(len(batch))
            metrics.BATCH_SECONDS.labels(STAGE).observe(time.perf_counter() - started)
            metrics.record_lag(STAGE, consumer, consumer.assignment())
        if pending is not None:  # a clean stop: the last batch is durable before we go
            producer.flush()
            settle(pending)
            consumer.commit(offsets=_commit_offsets(pending.offsets))
    finally:
        producer.flush()
        producer.close()
        consumer.close()
        log.info("scorer stopped after %d items (%d dead letters)", total, dead.count)


def _commit_offsets(offsets: dict[tuple[str, int], int]) -> dict:
    return {
        TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
        for (topic, partition), offset in offsets.items()
    }
