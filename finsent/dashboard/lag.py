"""Consumer lag: how far the stages' stored offsets trail the ends of their Kafka topics.

The stored offsets come from the store (``consumer_offsets``); the topics' end offsets from
a Kafka client with short timeouts, asked in a background thread. A page never waits more
than about a second for Kafka: it gets the last answer (at most a few seconds old) or none,
and shows "n/a" when Kafka cannot be reached.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

Partition = tuple[str, int]  # (topic, partition)
EndOffsets = dict[Partition, int]


@dataclass(frozen=True)
class Lag:
    total: int
    by_stage: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return ", ".join(f"{stage} {lag:,}" for stage, lag in sorted(self.by_stage.items()))


def compute_lag(stored: Mapping[tuple[str, str, int], int], ends: Mapping[Partition, int]) -> Lag:
    """Per stage, the records between each stored next offset and its partition's end
    (never negative: the end may be read a moment before the stored offset). Partitions with
    no known end are left out."""
    by_stage: dict[str, int] = {}
    for (stage, topic, partition), next_offset in stored.items():
        end = ends.get((topic, partition))
        if end is None:
            continue
        by_stage[stage] = by_stage.get(stage, 0) + max(int(end) - int(next_offset), 0)
    return Lag(total=sum(by_stage.values()), by_stage=by_stage)


class EndOffsetsProbe:
    """Asks ``fetch`` for end offsets in a background thread, at most once per ``max_age``
    seconds, and never keeps a caller more than ``wait`` seconds.

    The first call for a set of partitions waits up to ``wait`` for an answer; later calls
    return the last answer at once (refreshing it in the background when it is older than
    ``max_age``), or None while there is none, once it is older than ``stale_after``, or when
    the last attempt failed."""

    def __init__(
        self,
        fetch: Callable[[list[Partition]], EndOffsets],
        *,
        max_age: float = 5.0,
        wait: float = 1.0,
        stale_after: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.max_age = max_age
        self.wait = wait
        self.stale_after = stale_after
        self.clock = clock
        self._lock = threading.Lock()
        self._result: EndOffsets | None = None
        self._for: tuple[Partition, ...] | None = None
        self._at = -math.inf
        self._running: threading.Event | None = None
        self._waited: set[tuple[Partition, ...]] = set()  # partition sets a caller waited for

    def get(self, partitions: Iterable[Partition]) -> EndOffsets | None:
        wanted = tuple(sorted(set(partitions)))
        if not wanted:
            return {}
        with self._lock:
            age = self.clock() - self._at
            known = self._for == wanted
            if known and age < self.max_age:
                return self._result
            done = self._running
            if done is None:
                done = self._running = threading.Event()
                threading.Thread(
                    target=self._refresh, args=(wanted, done), name="kafka-lag", daemon=True
                ).start()
            first = wanted not in self._waited
            if first:
                if len(self._waited) > 64:
                    self._waited.clear()
                self._waited.add(wanted)
        if first:
            done.wait(self.wait)  # nothing to show yet: worth one short wait
        with self._lock:
            if self._for == wanted and self.clock() - self._at < self.stale_after:
                return self._result
            return None

    def _refresh(self, wanted: tuple[Partition, ...], done: threading.Event) -> None:
        try:
            result: EndOffsets | None = self.fetch(list(wanted))
        except Exception as exc:  # Kafka down or slow: show "n/a", try again later
            log.debug("end offsets unavailable: %s", exc)
            result = None
        with self._lock:
            self._result, self._for, self._at = result, wanted, self.clock()
            self._running = None
        done.set()


class KafkaEndOffsets:
    """End offsets from one Kafka client, kept between calls and rebuilt after a failure.

    Only ever called from the probe's one background thread at a time."""

    def __init__(self, bootstrap: str, timeout_ms: int = 3000) -> None:
        self.bootstrap = bootstrap
        self.timeout_ms = timeout_ms
        self._consumer: Any = None

    def __call__(self, partitions: list[Partition]) -> EndOffsets:
        from kafka import KafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id="finsent-dashboard",
                enable_auto_commit=False,
                isolation_level="read_committed",  # what the stages' consumers can read
                request_timeout_ms=self.timeout_ms,
                api_version_auto_timeout_ms=min(self.timeout_ms, 2000),
                reconnect_backoff_max_ms=1000,
                metadata_max_age_ms=30_000,
            )
        try:
            ends = self._consumer.end_offsets([TopicPartition(t, p) for t, p in partitions])
        except Exception:
            self.close()
            raise
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()


@lru_cache(maxsize=4)
def probe_for(bootstrap: str) -> EndOffsetsProbe:
    """One probe (one Kafka client) per broker address for the whole process."""
    return EndOffsetsProbe(KafkaEndOffsets(bootstrap))


def consumer_lag(stored: Mapping[tuple[str, str, int], int], probe: EndOffsetsProbe) -> Lag | None:
    """The stages' lag, or None when nothing is stored yet or Kafka gives no answer."""
    if not stored:
        return None
    ends = probe.get({(topic, partition) for _, topic, partition in stored})
    if ends is None:
        return None
    return compute_lag(stored, ends)
