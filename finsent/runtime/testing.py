"""A test kit for stage logic, shipped with the package (the idea of bytewax's ``testing``
module): in-memory stand-ins for a stage's Kafka consumer, producer and dead-letter topic, and
``run_logic``, which drives a stage's logic to the end of its input, in process, through the
production loop (``finsent.runtime.runner.StageLoop``): the same decoding and dead letters,
micro-batches, fenced store commits, pipelined Kafka commits and retries, minus Kafka.

    from finsent.runtime.testing import run_logic

    run = run_logic(Router(store), scored, store, clock, stage="router")
    assert [key for key, _ in run.outputs] == ["overall", "topic:Earnings", ...]

The pieces also plug into ``StageLoop`` directly, for tests of the runner itself: rebalances
(``MemorySource.rebalance``), failing deliveries (``CollectingSink.fail``) and fencing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from kafka.structs import TopicPartition

from finsent.core.records import DeadLetter, decode, encode
from finsent.core.stages import stage as stage_spec
from finsent.runtime.kafka_io import dead_letter
from finsent.runtime.runner import Backoff, Partition, StageLogic, StageLoop, utc_now
from finsent.runtime.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")

# Retries in a test wait milliseconds, not the production backoff's seconds.
FAST_BACKOFF = Backoff(first_s=0.001, max_s=0.01)
_POLL_WAIT_MS = 10  # how long a poll for a micro-batch may wait: no broker to wait for


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A consumed record: the fields of kafka-python's ``ConsumerRecord`` that the runner reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class MemorySource:
    """An in-memory consumer of one topic's partitions that ends: once every partition is read
    to its end and the group's committed offsets cover all that was read, a poll calls
    ``on_eof`` (a stage that read a batch it has not made durable is not done).

    To the runner it is a kafka-python ``KafkaConsumer``: ``subscribe`` with a rebalance
    listener (the first poll assigns every partition, as a group join does), ``poll``, ``pause``
    and ``resume`` (a paused partition returns nothing), ``seek``, ``position``, ``highwater``,
    ``commit`` and ``commit_async`` (the group's offsets, kept in ``committed``).
    ``rebalance()`` runs a group rebalance the way kafka-python does: every partition revoked,
    then assigned again at its committed offset, with its pause forgotten.
    """

    def __init__(
        self,
        topic: str,
        partitions: Mapping[int, Sequence[bytes]],
        on_eof: Callable[[], None] | None = None,
    ) -> None:
        self.topic = topic
        # (key, value) per offset; records are made as polls return them. Like a real
        # consumer, which holds only what it fetched, this keeps a long topic out of the
        # garbage collector's sight: bytes in tuples are not tracked, records would be.
        self.logs: dict[TopicPartition, list[tuple[bytes | None, bytes]]] = {}
        for partition, values in partitions.items():
            self.logs[TopicPartition(topic, partition)] = []
            for value in values:
                self.append(partition, value)
        self.on_eof = on_eof
        self.committed: dict[Partition, int] = {}  # the consumer group's offsets
        self.listener: Any = None
        self.polls = 0
        self.rebalances = 0
        self.closed = False
        self._positions: dict[TopicPartition, int] = {}
        self._read: dict[TopicPartition, int] = {}  # past the furthest record a poll returned
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()

    def append(self, partition: int, value: bytes, key: bytes | None = None) -> None:
        """One more record at the end of a partition."""
        log_ = self.logs.setdefault(TopicPartition(self.topic, partition), [])
        log_.append((key, value))

    @property
    def at_end(self) -> bool:
        """Every partition read to its end."""
        return all(self._positions.get(tp, 0) >= len(log_) for tp, log_ in self.logs.items())

    @property
    def settled(self) -> bool:
        """Every record a poll returned is covered by the committed offsets."""
        return all(
            self.committed.get((tp.topic, tp.partition), 0) >= read
            for tp, read in self._read.items()
        )

    # -- the KafkaConsumer surface the runner uses ------------------------------------------

    def subscribe(self, topics: Iterable[str], listener: Any = None) -> None:
        if list(topics) != [self.topic]:
            raise ValueError(f"this source holds {self.topic} only, not {list(topics)}")
        self.listener = listener

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None, update_offsets: bool = True
    ) -> dict[TopicPartition, list[SourceRecord]]:
        self.polls += 1
        if not self._assigned:
            self._assign()
        budget = max_records or 500
        polled: dict[TopicPartition, list[SourceRecord]] = {}
        for tp in sorted(self._assigned):
            if tp in self._paused or budget <= 0:
                continue
            position = self._positions[tp]
            records = [
                SourceRecord(tp.topic, tp.partition, offset, key, value)
                for offset, (key, value) in enumerate(
                    self.logs[tp][position : position + budget], start=position
                )
            ]
            if records:
                polled[tp] = records
                self._positions[tp] = position + len(records)
                self._read[tp] = max(self._read.get(tp, 0), position + len(records))
                budget -= len(records)
        if not polled and self.at_end and self.settled and self.on_eof is not None:
            self.on_eof()
        return polled

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions) & self._assigned

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if partition not in self._assigned:
            raise AssertionError(f"seek on {partition}, which is not assigned")
        self._positions[partition] = offset

    def position(self, partition: TopicPartition, timeout_ms: int | None = None) -> int:
        return self._positions[partition]

    def highwater(self, partition: TopicPartition) -> int:
        return len(self.logs[partition])

    def commit(
        self, offsets: Mapping[TopicPartition, Any] | None = None, timeout_ms: int | None = None
    ) -> None:
        for tp, offset in (offsets if offsets is not None else self._consumed()).items():
            self.committed[(tp.topic, tp.partition)] = getattr(offset, "offset", offset)

    def commit_async(
        self, offsets: Mapping[TopicPartition, Any] | None = None, callback: Any = None
    ) -> None:
        self.commit(offsets)

    def close(self) -> None:
        self.closed = True

    # -- test controls -------------------------------------------------------------------

    def rebalance(self) -> None:
        """A group rebalance: revoke every partition, then assign them again, each at its
        committed offset and no longer paused."""
        self.rebalances += 1
        revoked = sorted(self._assigned)
        self._call("on_partitions_revoked", revoked)
        self._assigned.clear()
        self._paused.clear()
        self._assign()

    def _assign(self) -> None:
        self._assigned = set(self.logs)
        for tp in self._assigned:
            self._positions[tp] = self.committed.get((tp.topic, tp.partition), 0)
        self._call("on_partitions_assigned", sorted(self._assigned))

    def _consumed(self) -> dict[TopicPartition, int]:
        return {tp: self._positions[tp] for tp in self._assigned}

    def _call(self, callback: str, partitions: list[TopicPartition]) -> None:
        if self.listener is None:
            return
        try:
            getattr(self.listener, callback)(partitions)
        except Exception:  # kafka-python logs a failing listener and goes on; so does this
            log.exception("rebalance listener %s failed", callback)


class _Delivery:
    """A send's future: resolved when the sink flushes (``get`` flushes if need be)."""

    def __init__(self, sink: CollectingSink) -> None:
        self.sink = sink
        self.done = False
        self.error: Exception | None = None

    def get(self, timeout: float | None = None) -> None:
        if not self.done:
            self.sink.flush()
        if self.error is not None:
            raise self.error


class CollectingSink:
    """A producer that keeps every record its broker acknowledged, in order, in ``sent``.

    Sends are delivered at the next ``flush`` (or when a future is waited for), all at once.
    ``fail(n)`` makes the next ``n`` deliveries fail as a broker outage does: their futures
    raise ``KafkaTimeoutError``, and nothing of them is kept. With ``max_record_bytes`` a larger
    record is refused as kafka-python refuses one over ``max_request_size``: its future fails
    at once with ``MessageSizeTooLargeError``, however often it is sent.
    """

    def __init__(self, max_record_bytes: int | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []  # (topic, key, value)
        self.failed_deliveries = 0
        self.closed = False
        self.max_record_bytes = max_record_bytes
        self.refused = 0  # sends refused as too large
        self._failures = 0
        self._buffer: list[tuple[str, bytes | None, bytes, _Delivery]] = []

    def fail(self, deliveries: int) -> None:
        self._failures += deliveries

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> _Delivery:
        future = _Delivery(self)
        size = len(key or b"") + len(value)
        if self.max_record_bytes is not None and size > self.max_record_bytes:
            self.refused += 1
            future.done = True
            future.error = MessageSizeTooLargeError(
                f"The message is {size} bytes when serialized which is larger than the maximum"
                f" request size ({self.max_record_bytes})"
            )
            return future
        self._buffer.append((topic, key, value, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        buffer, self._buffer = self._buffer, []
        if not buffer:
            return
        error: Exception | None = None
        if self._failures:
            self._failures -= 1
            self.failed_deliveries += 1
            error = KafkaTimeoutError(f"delivery of {len(buffer)} records failed (simulated)")
        for topic, key, value, future in buffer:
            if error is None:
                self.sent.append((topic, key, value))
            future.done, future.error = True, error

    def close(self, timeout: float | None = None) -> None:
        self.flush()
        self.closed = True

    def values(self, topic: str) -> list[bytes]:
        """The acknowledged payloads of ``topic``, in order."""
        return [value for t, _, value in self.sent if t == topic]

    def records(self, topic: str, cls: type[T]) -> list[tuple[str, T]]:
        """The acknowledged records of ``topic``, decoded, with their keys."""
        return [
            ((key or b"").decode(), decode(cls, value)) for t, key, value in self.sent if t == topic
        ]


class MemoryDeadLetters:
    """The dead-letter topic in memory: each ``DeadLetter`` a stage routed, in ``letters``."""

    def __init__(self, stage: str, clock: Callable[[], datetime] = utc_now) -> None:
        self.stage = stage
        self.clock = clock
        self.letters: list[DeadLetter] = []
        self.count = 0

    def send(
        self, reason: str, payload: bytes, record: Any = None, source: str = "", kind: str = ""
    ) -> None:
        self.letters.append(dead_letter(self.stage, reason, payload, self.clock(), record, source))
        self.count += 1

    def settle(self) -> None:
        """Nothing to wait for: a letter is kept as it is sent."""


@dataclass(frozen=True)
class Run:
    """What ``run_logic`` left behind."""

    outputs: list[tuple[str, Any]]  # (key, record) acknowledged by the sink, decoded, in order
    dead: list[DeadLetter]  # what went to the dead-letter topic
    # Where the stage would resume: its stored offsets (store-checkpointed stages) or its
    # consumer group's committed ones (the scorer).
    offsets: dict[Partition, int]
    source: MemorySource
    sink: CollectingSink


def run_logic(
    logic: StageLogic,
    records: Sequence[object] | Mapping[int, Sequence[object]],
    store: Store | None = None,
    clock: Callable[[], datetime] | None = None,
    *,
    stage: str,
    batch_size: int = 64,
    sink: CollectingSink | None = None,
) -> Run:
    """Drive ``logic`` over ``records`` to their end, in process, as the runner would.

    - ``logic``: a stage's logic, e.g. ``Router(store)`` or ``Aggregator(config, store)``.
    - ``records``: the stage's input topic from its first offset, in order: records of the
      stage's input type (encoded here, so they take the production decode path) or ``bytes``
      (a raw payload: one that does not decode becomes a dead letter). A sequence is partition
      0; a mapping ``{partition: records}`` spreads them over partitions.
    - ``store``: for a store-checkpointed stage, the store the logic was made with. Each batch
      commits there, fenced, with its offsets; a store that holds offsets of this stage
      already makes the run resume from them, as a restarted stage does. ``None`` for the
      scorer, whose offsets are committed to the (in-memory) consumer group.
    - ``clock``: the "now" of each batch (default: the wall clock; pass one in tests).
    - ``stage``: the declared stage name (``finsent.core.stages``): its input record type,
      its sink topic and where it checkpoints.
    - ``batch_size``: records per micro-batch; ``sink``: a ``CollectingSink`` set up to fail.

    The run ends at the first poll that finds every partition read and every record read
    committed: that idle batch is processed too (time-driven work such as closing windows),
    then the run stops cleanly.
    """
    spec = stage_spec(stage)
    if spec.source is None or spec.input_type is None:
        raise ValueError(f"stage {stage} consumes no topic")
    partitions = records if isinstance(records, Mapping) else {0: records}
    source = MemorySource(
        spec.source, {p: [_payload(r, spec.input_type) for r in rs] for p, rs in partitions.items()}
    )
    sink = sink or CollectingSink()
    now = clock or utc_now
    dead = MemoryDeadLetters(spec.name, now)
    stop = threading.Event()
    source.on_eof = stop.set
    loop = StageLoop(
        spec,
        logic,
        consumer=source,
        producer=sink,
        dead=dead,
        store=store,
        sink_topic=spec.sink,
        max_batch=batch_size,
        max_wait_ms=_POLL_WAIT_MS,
        clock=now,
        backoff=FAST_BACKOFF,
    )
    source.subscribe([spec.source], listener=loop.listener)
    loop.run(stop)
    offsets = store.load_offsets(spec.name) if store is not None else dict(source.committed)
    outputs: list[tuple[str, Any]] = (
        list(sink.records(spec.sink, spec.output_type))
        if spec.sink is not None and spec.output_type is not None
        else []
    )
    return Run(outputs=outputs, dead=list(dead.letters), offsets=offsets, source=source, sink=sink)


def _payload(record: object, input_type: type[Any]) -> bytes:
    if isinstance(record, bytes):
        return record
    if not isinstance(record, input_type):
        raise TypeError(f"expected {input_type.__name__} or bytes, got {type(record).__name__}")
    return encode(record)
