"""The one stage runner: every process of the pipeline is a stage declared in
``finsent.core.stages``, and this module runs it.

A consuming stage (``run_stage``, over ``StageLoop``) polls a micro-batch, decodes each record
into its topic's record type (what does not decode goes to the dead-letter topic, so no stage
logic decodes), hands the batch to the stage's logic, sends the logic's outputs to the sink topic
and checkpoints, as the stage declares:

- ``Checkpoint.STORE``: once the broker acknowledged the outputs, one store transaction records
  the stage's results, its state and the consumed offsets. On (re)assignment the consumer seeks
  to those offsets, so a crash anywhere replays at most one batch, and idempotent upserts absorb
  the replay. The commit is fenced: it applies only if the stored offsets are still the ones
  this process started the batch from, so a member that lost its partitions cannot overwrite
  the state of the member that took them over; a fenced member re-syncs from the store.
- ``Checkpoint.KAFKA`` (the scorer, which keeps no state): pipelined. Batch N's outputs go to
  the producer without waiting; once batch N+1 is processed, N's acknowledgements are awaited
  and its offsets committed to the consumer group, so the broker round trip overlaps the model
  instead of adding to it. Offsets still follow acknowledgements: at-least-once.

A source (ingest) consumes no topic; ``SourceRunner`` is its entry point, with the same send,
dead-letter and metrics path, and the source's own commit (its dedup memory) after the
acknowledgements.

Faults that retrying cannot fix do not stop a stage: a record its logic fails on (an exception
other than a sink's) becomes a dead letter with the error, found by running the batch again one
record at a time, and the rest go on; an output the broker refuses as too large becomes a dead
letter (its payload cut to fit) instead of failing the batch forever. Every dead letter is
acknowledged before the offsets move past its record.

Backpressure: when a sink (Kafka or the store) fails, the consumer pauses its partitions and the
batch is retried with backoff; nothing more is fetched until the batch is durable. The consumer
is polled meanwhile, so that the group keeps the member. A rebalance in that time un-pauses the
partitions, so such a poll can return records: the consumer seeks back to them instead of
dropping them, and once the batch is durable the stage re-syncs from the store. A stop ends
every wait on the broker within ``STOP_GRACE_S``: what is not acknowledged by then is replayed
on restart.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

from finsent.core.records import encode
from finsent.core.settings import Settings
from finsent.core.stages import Checkpoint, StageSpec
from finsent.runtime import metrics
from finsent.runtime.kafka_io import (
    ACK_TIMEOUT_S,
    TOO_LARGE,
    DeadLetters,
    DeadLetterSink,
    KafkaConfig,
    check_broker,
    decode_or_dead,
    ensure_topics,
    make_consumer,
    make_producer,
    next_offsets,
    poll_batch,
    subscribe,
)
from finsent.runtime.lag import UpstreamLag
from finsent.runtime.process import HeapTrimmer, settle_collector
from finsent.runtime.store import Commit, FencedError, Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Partition = tuple[str, int]  # (topic, partition)
Output = tuple[str, Any]  # (Kafka key, record)
# Failures a sink recovers from: the batch is retried, with the partitions paused.
RETRIED_ERRORS: tuple[type[Exception], ...] = (KafkaError, OperationalError, TimeoutError)
# A PostgreSQL store turned read-only (failed over to a replica) refuses writes with this
# SQLSTATE, which psycopg raises as an InternalError: an outage to wait out, like a lost
# connection, not a crash of the stage nor a fault of the batch's records.
READ_ONLY_SQLSTATE = "25006"
SETTLE_EVERY = 5000  # a bulk send waits for acknowledgements every this many records
STOP_GRACE_S = 5.0  # after a stop, how long a wait on the broker may still take
_FLUSH_SLICE_S = 0.5  # a flush checks for a stop this often
SETTLE_MARGIN_S = 10.0  # past a producer's delivery timeout, until it has expired every record


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoppedRetrying(Exception):
    """A stop came while a batch was retried: the batch is not durable, and is replayed on
    restart."""


@dataclass(frozen=True, slots=True)
class Message(Generic[T]):
    """One consumed record, decoded into its topic's record type, and where it was read."""

    value: T
    topic: str
    partition: int
    offset: int


class StageLogic(Protocol):
    """What a consuming stage does with a batch; the runner around it owns Kafka, the store,
    decoding, checkpoints and retries."""

    def assigned(self, partitions: list[Partition]) -> None:
        """Partitions this process now owns: load their state (from the store it was made with)."""

    def revoked(self, partitions: list[Partition]) -> None:
        """Partitions this process no longer owns: drop their state."""

    def process(
        self, batch: Sequence[Message[Any]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[Output], Commit | None]:
        """Keyed outputs, and what to commit with the offsets (``None``: nothing changed).

        ``batch`` may be empty (an idle poll: time-driven work, such as closing windows)."""


@runtime_checkable
class LagAware(Protocol):
    """A logic whose time-driven work needs to know whether its input is caught up (such as
    closing quiet windows: a backlog is not quiet news). Told before each ``process``, while
    ``watches_lag``."""

    @property
    def watches_lag(self) -> bool:
        """Whether it wants to be told now (its time-driven work is on)."""

    def caught_up(self, partitions: set[Partition]) -> None:
        """The owned partitions read to their end as the broker last reported it, and only
        while every stage before this one has read all its input too."""


@runtime_checkable
class Reloadable(Protocol):
    """A logic that swaps what it runs (the scorer's model) between batches. The runner asks
    before each poll, and on a yes makes the batch in flight durable (acknowledged, offsets
    committed) before the swap: no story is lost, and none is scored twice."""

    def reload_due(self) -> bool:
        """Whether there is something new to load (cheap: called before every poll)."""

    def reload(self) -> None:
        """Load it; on failure, keep running what ran."""


def caught_up(consumer: Any) -> set[Partition]:
    """The assigned partitions with no lag, from the consumer's last fetch (no broker round
    trip); one whose end the broker has not reported yet is not among them."""
    done: set[Partition] = set()
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        try:
            position = consumer.position(tp, timeout_ms=0)
        except Exception:  # noqa: BLE001 - no position yet: nothing read, so not caught up
            continue
        if high is not None and position is not None and position >= high:
            done.add((tp.topic, tp.partition))
    return done


# Makes a stage's logic: from the settings and, for a store-checkpointed stage, its store.
LogicFactory = Callable[[Settings, Store | None], StageLogic]


@dataclass(frozen=True)
class RunnerConfig:
    """What the runner takes from the settings to run one consuming stage."""

    kafka: KafkaConfig
    store_url: str | None  # None: the stage keeps no store (``Checkpoint.KAFKA``)
    source_topic: str
    sink_topic: str | None  # None: its outputs leave the system
    dead_letter_topic: str
    max_batch: int
    max_wait_ms: int

    @classmethod
    def from_settings(cls, settings: Settings, spec: StageSpec) -> RunnerConfig:
        if spec.source is None:
            raise ValueError(f"stage {spec.name} consumes no topic: run it with SourceRunner")
        return cls(
            kafka=KafkaConfig.from_settings(settings),
            store_url=settings.database_url if spec.checkpoint is Checkpoint.STORE else None,
            source_topic=settings.topic(spec.source),
            sink_topic=settings.topic(spec.sink) if spec.sink else None,
            dead_letter_topic=settings.topic("news.dlq"),
            max_batch=spec.max_batch(settings),
            max_wait_ms=settings.batch_max_wait_ms,
        )


@dataclass(frozen=True)
class Backoff:
    """How a batch is retried against a failing sink: exponential waits from ``first_s``."""

    first_s: float = 0.2
    max_s: float = 30.0


@dataclass(frozen=True)
class _Pending:
    """A pipelined batch: sent, not yet acknowledged, its offsets not yet committed."""

    outbox: Outbox
    offsets: dict[Partition, int]


class _Rebalance(ConsumerRebalanceListener):
    """The consumer group's callbacks: the logic loads or drops partition state and, for a
    store-checkpointed stage, the consumer seeks to the offsets stored with that state."""

    def __init__(self, consumer: Any, stage: str, store: Store | None, logic: StageLogic) -> None:
        self.consumer = consumer
        self.stage = stage
        self.store = store
        self.logic = logic
        self.positions: dict[Partition, int | None] = {}  # stored offset each batch starts from
        self.generation = 0  # assignments so far: a change means state was reloaded
        self.owner: str | None = None  # the token this member claimed its partitions with

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        parts = [(tp.topic, tp.partition) for tp in revoked]
        for part in parts:
            self.positions.pop(part, None)
        self.logic.revoked(parts)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """A Kafka assignment: claim the partitions in the store (fencing off the member that
        had them), then load their state and positions."""
        if self.store is not None and assigned:
            self.owner = uuid.uuid4().hex
            self.store.claim(self.stage, [(tp.topic, tp.partition) for tp in assigned], self.owner)
        self.reload(assigned)

    def reload(self, assigned: list[TopicPartition]) -> None:
        """Load the partitions' state and positions as stored; claims nothing."""
        self.generation += 1
        if self.store is not None:
            stored = self.store.load_offsets(self.stage)
            for tp in assigned:
                offset = stored.get((tp.topic, tp.partition))
                self.positions[(tp.topic, tp.partition)] = offset
                if offset is not None:
                    self.consumer.seek(tp, offset)
        self.logic.assigned([(tp.topic, tp.partition) for tp in assigned])


class StageLoop:
    """One consuming stage's loop over any consumer and producer: Kafka's (``run_stage``) or
    the test kit's in-memory ones (``finsent.runtime.testing``).

    The caller subscribes ``consumer`` with ``listener`` and closes what it opened.
    """

    def __init__(
        self,
        spec: StageSpec,
        logic: StageLogic,
        *,
        consumer: Any,
        producer: Any,
        dead: DeadLetterSink,
        store: Store | None,
        sink_topic: str | None,
        max_batch: int,
        max_wait_ms: int,
        clock: Callable[[], datetime] = utc_now,
        backoff: Backoff = Backoff(),
        upstream_caught_up: Callable[[], bool] = lambda: True,
    ) -> None:
        if spec.input_type is None:
            raise ValueError(f"stage {spec.name} consumes no topic: run it with SourceRunner")
        if (store is not None) != (spec.checkpoint is Checkpoint.STORE):
            raise ValueError(f"stage {spec.name} checkpoints in {spec.checkpoint}: store mismatch")
        self.spec = spec
        self.logic = logic
        self.consumer = consumer
        self.producer = producer
        self.dead = dead
        self.store = store
        self.sink_topic = sink_topic
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.clock = clock
        self.backoff = backoff
        # Whether the stages before this one have read all their input (``UpstreamLag``): a
        # stall upstream leaves this stage without lag, but the news is still on its way.
        self.upstream_caught_up = upstream_caught_up
        self.record_type: type[Any] = spec.input_type
        self.listener = _Rebalance(consumer, spec.name, store, logic)
        self.sent = 0  # records sent to the sink
        self._pending: _Pending | None = None
        self.trimmer = HeapTrimmer()

    def run(self, stop: threading.Event) -> int:
        """Process batches until ``stop`` is set; return how many records went to the sink.

        A clean stop leaves the last batch durable; a stop while a batch is being retried
        leaves it to be replayed on restart."""
        try:
            while not stop.is_set():
                self.step(stop)
            self.finish(stop)
        except StoppedRetrying as exc:
            log.warning("%s: %s; it will be replayed on restart", self.spec.name, exc)
        return self.sent

    def step(self, stop: threading.Event) -> None:
        """One poll, its batch processed, sent and checkpointed."""
        metrics.beat(self.spec.name)  # /healthz: the loop goes round
        self.trimmer.maybe_trim()  # the last batches' freed heap back to the system
        if isinstance(self.logic, Reloadable) and self.logic.reload_due():
            self.finish(stop)
            self.logic.reload()
        raw = poll_batch(self.consumer, self.max_batch, self.max_wait_ms)
        started = time.perf_counter()
        batch = self._decode(raw)
        now = self.clock()
        if isinstance(self.logic, LagAware) and self.logic.watches_lag:
            done = caught_up(self.consumer)
            self.logic.caught_up(done if done and self.upstream_caught_up() else set())
        try:
            outputs, commit = self.logic.process(batch, now, self.dead)
        except Exception as exc:
            if retried(exc) or not batch:
                raise  # the broker or store failed, or time-driven work: no record to blame
            log.warning(
                "%s: its logic failed on a batch of %d (%s: %s); running it record by record",
                self.spec.name,
                len(batch),
                type(exc).__name__,
                exc,
            )
            self._isolate(raw, batch, now, stop, started)
            return
        if self._checkpoint(raw, outputs, commit, stop):
            self._count(raw, outputs, started)

    def finish(self, stop: threading.Event) -> None:
        """Make the pipelined batch, if any, durable: wait for it and commit its offsets."""
        if self._pending is not None:
            self._settle(self._pending, stop, sync=True)
            self._pending = None

    def _checkpoint(
        self, raw: list[Any], outputs: list[Output], commit: Commit | None, stop: threading.Event
    ) -> bool:
        """Send and checkpoint as the stage declares; False if nothing became durable."""
        if self.spec.checkpoint is Checkpoint.STORE:
            return self._commit_to_store(raw, outputs, commit, stop)
        if commit is not None:
            raise TypeError(f"stage {self.spec.name} keeps no store, but its logic committed")
        return self._pipeline(raw, outputs, stop)

    # -- a record the logic fails on --------------------------------------------------------

    def _isolate(
        self,
        raw: list[Any],
        batch: Sequence[Message[Any]],
        now: datetime,
        stop: threading.Event,
        started: float,
    ) -> None:
        """Run a batch the logic failed on again, one record at a time: each record it fails on
        becomes a dead letter with the error, and the others go on.

        A store-checkpointed stage starts from its state as last committed (the failed run may
        have changed it half-way) and commits after each record, so that reloading the state
        after a failure loses none of the records before it. The scorer keeps no state: its
        outputs go out together, as one batch."""
        stateful = self.spec.checkpoint is Checkpoint.STORE
        if stateful:
            self._reload_logic()
        at = {(r.topic, r.partition, r.offset): i for i, r in enumerate(raw)}
        kept: list[Output] = []
        sent = 0
        durable = 0  # raw[:durable] is checkpointed
        for message in batch:
            end = at[(message.topic, message.partition, message.offset)] + 1
            try:
                outputs, commit = self.logic.process([message], now, self.dead)
            except Exception as exc:
                if retried(exc):
                    raise
                self._dead_letter_failure(raw[end - 1], exc)
                outputs, commit = [], None
                if stateful:
                    self._reload_logic()
            if not stateful:
                kept.extend(outputs)
                continue
            if not self._commit_to_store(raw[durable:end], outputs, commit, stop):
                return  # fenced: the partitions are another member's now
            durable, sent = end, sent + len(outputs)
        if not stateful:
            if self._pipeline(raw, kept, stop):
                self._count(raw, kept, started)
            return
        if durable < len(raw):  # records after the last decoded one did not decode
            self._commit_to_store(raw[durable:], [], None, stop)
        metrics.OUTPUTS.labels(self.spec.name).inc(sent)
        self._count(raw, [], started)

    def _dead_letter_failure(self, record: Any, exc: Exception) -> None:
        log.error(
            "%s: dead-lettering %s[%d]@%d, which its logic fails on",
            self.spec.name,
            record.topic,
            record.partition,
            record.offset,
            exc_info=exc,
        )
        reason = f"{self.spec.name} failed on this record: {type(exc).__name__}: {exc}"
        self.dead.send(reason, record.value or b"", record, kind="logic_error")

    def _reload_logic(self) -> None:
        """The logic's state of every owned partition, as last committed to the store."""
        owned = [(tp.topic, tp.partition) for tp in self.consumer.assignment()]
        self.logic.revoked(owned)
        self.logic.assigned(owned)

    # -- store checkpoints ----------------------------------------------------------------

    def _commit_to_store(
        self, raw: list[Any], outputs: list[Output], commit: Commit | None, stop: threading.Event
    ) -> bool:
        if commit is None and not raw:
            return False
        name = self.spec.name
        offsets = next_offsets(raw)
        positions = self.listener.positions
        if not positions:
            # A commit is fenced on the partitions the member owns; owning none, it may
            # change nothing (a timer of a member whose partitions were all revoked).
            log.debug("%s owns no partition: its commit is dropped", name)
            return False
        commit = replace(
            commit or Commit(stage=name),
            stage=name,
            offsets=offsets,
            # Every owned partition, not just those read: a commit without offsets (an idle
            # close, a timer) changes their state too, and must not once they are another's.
            expected=dict(positions),
        )
        generation = self.listener.generation
        store = self.store
        assert store is not None  # a store-checkpointed stage, checked in __init__
        outbox = self._outbox(outputs)
        try:
            self._durably(
                lambda: self._deliver(outbox, stop),
                # The owner as of each try: a rebalance that gave this member its partitions
                # again while it retried made it claim them anew.
                lambda: store.commit(replace(commit, owner=self.listener.owner)),
                stop,
            )
        except FencedError as exc:
            # Another member owns these partitions now: forget them and re-sync.
            log.warning("%s: %s; re-syncing from the store", name, exc)
            self.resync()
            return False
        positions.update(offsets)
        if self.listener.generation != generation:
            # A rebalance while the batch was retried reloaded the logic's state and the
            # consumer's positions as they were stored before this batch: reload them with it.
            self.resync()
        if raw:
            self.consumer.commit_async()  # for lag tooling only: the store holds our offsets
        self.sent += len(outputs)
        return True

    def resync(self) -> None:
        """Reload every owned partition's state and position from the store."""
        assigned = list(self.consumer.assignment())
        self.listener.on_partitions_revoked(assigned)
        # Not a new assignment: claiming again would take the partitions back from a new owner.
        self.listener.reload(assigned)

    # -- Kafka checkpoints, pipelined ------------------------------------------------------

    def _pipeline(self, raw: list[Any], outputs: list[Output], stop: threading.Event) -> bool:
        if not raw:  # idle: no next batch to overlap with, so settle the last one now
            if self._pending is not None:
                self._settle(self._pending, stop)
                self._pending = None
            return False
        outbox = self._outbox(outputs)
        outbox.send()
        if self._pending is not None:
            self._settle(self._pending, stop)
        self._pending = _Pending(outbox, next_offsets(raw))
        self.sent += len(outputs)
        return True

    def _settle(self, done: _Pending, stop: threading.Event, sync: bool = False) -> None:
        """Wait for a sent batch's acknowledgements and its dead letters (re-sending what
        failed), then commit its offsets (``sync``: and wait for the commit, as on the way
        out, though no longer than a stop allows)."""
        try:
            done.outbox.settle(stop)
            self.dead.settle()
        except StoppedRetrying:
            raise
        except Exception:  # noqa: BLE001 - any delivery failure: re-send with backoff below
            self._durably(lambda: self._deliver(done.outbox, stop), None, stop)
        if not done.offsets:
            return
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in done.offsets.items()
        }
        if not sync:
            self.consumer.commit_async(offsets=offsets)
            return
        try:
            # Without a timeout kafka-python retries until the coordinator answers: forever,
            # with the broker down, and the process would never exit.
            self.consumer.commit(offsets=offsets, timeout_ms=int(STOP_GRACE_S * 1000))
        except KafkaError as exc:
            log.warning("%s: offsets not committed (%s): replayed on restart", self.spec.name, exc)

    # -- shared -----------------------------------------------------------------------------

    def _decode(self, raw: list[Any]) -> list[Message[Any]]:
        batch: list[Message[Any]] = []
        for record in raw:
            value = decode_or_dead(self.record_type, record, self.dead)
            if value is not None:
                batch.append(Message(value, record.topic, record.partition, record.offset))
        return batch

    def _sink(self) -> str:
        if self.sink_topic is None:
            raise ValueError(f"stage {self.spec.name} declares no sink, yet produced records")
        return self.sink_topic

    def _outbox(self, outputs: list[Output]) -> Outbox:
        topic = self._sink() if outputs else (self.sink_topic or "")
        box = Outbox(self.producer, topic, self.dead)
        box.extend(outputs)
        return box

    def _deliver(self, outbox: Outbox, stop: threading.Event) -> None:
        """The outputs, then the dead letters, acknowledged: both before the offsets move."""
        outbox.deliver(stop)
        self.dead.settle()

    def _durably(
        self, send: Callable[[], None], then: Callable[[], None] | None, stop: threading.Event
    ) -> None:
        """``send``, then ``then``, retried with the partitions paused until both succeed; a
        retry of ``then`` does not send again what the broker acknowledged (nor does a retry
        of ``send``: an ``Outbox`` re-sends only what was not acknowledged)."""
        delivered = False
        try:
            for attempt in sink_retrying(self.consumer, self.spec.name, stop, self.backoff):
                with attempt:
                    if stop.is_set() and attempt.retry_state.attempt_number > 1:
                        raise StoppedRetrying("stopping with the batch not durable")
                    if not delivered:
                        send()
                        delivered = True
                    if then is not None:
                        then()
        finally:
            paused = self.consumer.paused()
            if paused:
                self.consumer.resume(*paused)

    def _count(self, raw: list[Any], outputs: list[Output], started: float) -> None:
        name = self.spec.name
        metrics.ITEMS.labels(name).inc(len(raw))
        metrics.OUTPUTS.labels(name).inc(len(outputs))
        if raw:
            metrics.BATCH_SIZE.labels(name).observe(len(raw))
            metrics.BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
            metrics.record_lag(name, self.consumer, self.consumer.assignment())


def run_stage(
    settings: Settings, spec: StageSpec, make_logic: LogicFactory, stop: threading.Event
) -> int:
    """Run a consuming stage against Kafka until ``stop`` is set; return how many records went
    to its sink. The settings go to ``make_logic`` and the metrics server; the runner itself
    takes its ``RunnerConfig``."""
    config = RunnerConfig.from_settings(settings, spec)
    store = Store(config.store_url) if config.store_url is not None else None
    consumer: Any = None
    producer: Any = None
    upstream: UpstreamLag | None = None
    try:
        logic = make_logic(settings, store)
        # Every local input (store, model, rules) is checked by now; the broker is next: one
        # line within seconds when it is not there, instead of a minute of client errors.
        check_broker(config.kafka.bootstrap_servers)
        ensure_topics(settings)
        if isinstance(logic, LagAware) and logic.watches_lag:
            upstream = UpstreamLag.kafka(
                spec,
                config.kafka.bootstrap_servers,
                config.kafka.topic_prefix,
                store.load_offsets if store is not None else lambda stage: {},
            )
        metrics.serve(settings, spec.name)
        consumer = make_consumer(config.kafka, spec.name)
        producer = make_producer(config.kafka)
        dead = DeadLetters(producer, spec.name, config.dead_letter_topic)
        loop = StageLoop(
            spec,
            logic,
            consumer=consumer,
            producer=producer,
            dead=dead,
            store=store,
            sink_topic=config.sink_topic,
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            upstream_caught_up=upstream.caught_up if upstream is not None else lambda: True,
        )
        subscribe(consumer, config.source_topic, loop.listener)
        settle_collector()
        log.info(
            "%s: %s → %s", spec.name, config.source_topic, loop.sink_topic or "outside the pipeline"
        )
        sent = loop.run(stop)
        log.info("%s stopped after %d records out, %d dead letters", spec.name, sent, dead.count)
        return sent
    finally:
        if upstream is not None:
            upstream.close()
        if producer is not None:
            close_producer(producer, spec.name)
        if consumer is not None:
            consumer.close(autocommit=False, timeout_ms=int(STOP_GRACE_S * 1000))
        if store is not None:
            store.close()


def close_producer(producer: Any, stage: str) -> None:
    """Flush and close, waiting no longer than ``STOP_GRACE_S``: with the broker down, what is
    not acknowledged by then is not checkpointed either, and is replayed on restart."""
    try:
        producer.close(timeout=STOP_GRACE_S)
    except KafkaError as exc:
        log.warning("%s: closed with records not acknowledged (%s)", stage, exc)


class SourceRunner:
    """The runner's entry point for a source stage (ingest), which consumes no topic: what the
    source hands over goes to the stage's sink topic, bad input to the dead-letter topic, and
    the source's own commit runs only once the broker acknowledged everything."""

    def __init__(self, spec: StageSpec, *, producer: Any, dead: DeadLetterSink, sink_topic: str):
        if spec.checkpoint is not Checkpoint.NONE or spec.sink is None:
            raise ValueError(f"stage {spec.name} is not a source")
        self.spec = spec
        self.producer = producer
        self.dead = dead
        self.sink_topic = sink_topic
        # A failed delivery makes the source send its records again, so every record must
        # be settled first: one still in the producer's buffer would be delivered once the
        # broker is back, and then again by the re-send. The producer settles each record
        # (acknowledged, or expired and never written) within its delivery timeout.
        config = getattr(producer, "config", None)
        delivery_ms = config.get("delivery_timeout_ms") if isinstance(config, dict) else None
        self.ack_timeout_s = (
            delivery_ms / 1000 + SETTLE_MARGIN_S if delivery_ms is not None else ACK_TIMEOUT_S
        )

    @classmethod
    def kafka(cls, settings: Settings, spec: StageSpec, **producer_overrides: Any) -> SourceRunner:
        """The source side over Kafka: the entry point that reads the settings."""
        if spec.sink is None:
            raise ValueError(f"stage {spec.name} is not a source")
        producer = make_producer(KafkaConfig.from_settings(settings), **producer_overrides)
        return cls(
            spec,
            producer=producer,
            dead=DeadLetters(producer, spec.name, settings.topic("news.dlq")),
            sink_topic=settings.topic(spec.sink),
        )

    def deliver(
        self,
        outputs: Iterable[Output],
        *,
        consumed: int,
        commit: Callable[[], object] | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Send ``outputs`` (may be a lazy, paced iterator) and wait for every acknowledgement
        (a failed delivery raises); then run ``commit``, unless ``stop`` was set meanwhile.

        ``consumed``: how many inputs the batch came from, for the metrics. Returns how many
        records were sent."""
        started = time.perf_counter()
        sent = send_all(
            self.producer,
            self.sink_topic,
            outputs,
            window=SETTLE_EVERY,
            dead=self.dead,
            # A stop cuts the long wait short (``StoppedRetrying``): what was not acknowledged
            # is not remembered, so it is sent again after the restart (at least once).
            stop=stop,
            ack_timeout_s=self.ack_timeout_s,
        )
        self.dead.settle()
        if commit is not None and not (stop is not None and stop.is_set()):
            commit()
        name = self.spec.name
        metrics.ITEMS.labels(name).inc(consumed)
        metrics.OUTPUTS.labels(name).inc(sent)
        if consumed:
            metrics.BATCH_SIZE.labels(name).observe(consumed)
            metrics.BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
        return sent

    def close(self) -> None:
        close_producer(self.producer, self.spec.name)


class Outbox:
    """Keyed records on their way to one topic, each encoded once.

    ``settle`` waits for what was sent. A record the broker refuses as too large becomes a dead
    letter (through ``dead``; without one, the refusal is raised) and is never sent again; on any
    other failure the records from the first one not acknowledged on are kept, in order, for
    the next ``deliver``, and the failure is raised. So a retry neither re-sends what the
    broker took before the failure nor fails forever on a record it can never take.
    """

    def __init__(
        self,
        producer: Any,
        topic: str,
        dead: DeadLetterSink | None = None,
        ack_timeout_s: float = ACK_TIMEOUT_S,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.dead = dead
        self.ack_timeout_s = ack_timeout_s
        self.acknowledged = 0
        self.too_large = 0
        # (key, value, the future of its send, or None while not in flight), in output order
        self._records: list[tuple[bytes, bytes, Any]] = []

    def __len__(self) -> int:
        """Records not acknowledged yet."""
        return len(self._records)

    def add(self, key: str, record: Any) -> None:
        """Encode and send one record, without waiting."""
        key_bytes, value = key.encode(), encode(record)
        self._records.append((key_bytes, value, None))
        self._records[-1] = (key_bytes, value, self._send(key_bytes, value))

    def extend(self, outputs: Iterable[Output]) -> None:
        """Encode records, to be sent by ``send`` or ``deliver``."""
        self._records.extend((key.encode(), encode(record), None) for key, record in outputs)

    def send(self) -> None:
        """Send every record not in flight, without waiting."""
        self._records = [
            (key, value, future if future is not None else self._send(key, value))
            for key, value, future in self._records
        ]

    def deliver(self, stop: threading.Event | None = None) -> None:
        self.send()
        self.settle(stop)

    def settle(self, stop: threading.Event | None = None) -> None:
        """Wait for every record in flight (see the class)."""
        if not self._records:
            return
        flush(self.producer, stop, self.ack_timeout_s)
        error: Exception | None = None
        kept: list[tuple[bytes, bytes, Any]] = []
        for key, value, future in self._records:
            if future is None:  # its send raised: send it again
                kept.append((key, value, None))
                continue
            try:
                future.get(timeout=self.ack_timeout_s)
            except TOO_LARGE as exc:
                self._refused(key, value, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - any failed delivery: sent again
                error = error or exc
            else:
                if error is None and not kept:
                    self.acknowledged += 1
                    continue
            kept.append((key, value, None))
        self._records = kept
        if error is not None:
            raise error
        if kept:  # only sends that raised: nothing was waited for
            raise KafkaTimeoutError(f"{len(kept)} records for {self.topic} not sent")

    def _send(self, key: bytes, value: bytes) -> Any:
        return self.producer.send(self.topic, key=key, value=value)

    def _refused(self, key: bytes, value: bytes, exc: Exception) -> None:
        if self.dead is None:
            raise exc
        self.too_large += 1
        reason = (
            f"too large for {self.topic}: a record of {len(value)} bytes, key "
            f"{key.decode(errors='replace')!r} ({exc})"
        )
        self.dead.send(reason, value, kind="too_large")


def send_all(
    producer: Any,
    topic: str,
    outputs: Iterable[Output],
    window: int = 0,
    dead: DeadLetterSink | None = None,
    stop: threading.Event | None = None,
    ack_timeout_s: float = ACK_TIMEOUT_S,
) -> int:
    """Send keyed records (as ``outputs`` yields them) and wait for every acknowledgement,
    raising on a failed delivery instead of losing it; with ``window``, waiting each time that
    many are in flight, each wait at most ``ack_timeout_s``. A record too large for the broker
    goes to ``dead`` (without it, the refusal is raised). Returns how many were acknowledged."""
    box = Outbox(producer, topic, dead, ack_timeout_s)
    for key, record in outputs:
        box.add(key, record)
        if window and len(box) >= window:
            box.settle(stop)
    box.settle(stop)
    return box.acknowledged


def flush(
    producer: Any, stop: threading.Event | None = None, timeout_s: float = ACK_TIMEOUT_S
) -> None:
    """Wait until the producer's records are acknowledged or failed, at most ``timeout_s``,
    and once ``stop`` is set at most ``STOP_GRACE_S`` more: ``StoppedRetrying`` then."""
    deadline = time.monotonic() + timeout_s
    stopping_at: float | None = None
    while True:
        try:
            producer.flush(timeout=_FLUSH_SLICE_S)
            return
        except KafkaTimeoutError:
            now = time.monotonic()
            if stop is not None and stop.is_set():
                stopping_at = stopping_at or now
                if now >= stopping_at + STOP_GRACE_S:
                    raise StoppedRetrying("stopping with records not acknowledged") from None
            if now >= deadline:
                raise


def retried(exc: BaseException) -> bool:
    """A failure of the broker or the store that retrying recovers from."""
    if isinstance(exc, RETRIED_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == READ_ONLY_SQLSTATE


def sink_retrying(
    consumer: Any, stage: str, stop: threading.Event, backoff: Backoff = Backoff()
) -> Retrying:
    """Retries for a failing sink (Kafka or the store), with the consumer's partitions paused
    meanwhile: backpressure instead of an ever-growing buffer."""

    def paused_wait(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sink_name = "store" if isinstance(exc, DBAPIError) else "kafka"
        metrics.SINK_RETRIES.labels(stage, sink_name).inc()
        metrics.beat(stage)  # waiting out a sink is the loop at work, not a stalled one
        log.warning("%s: %s sink failed (%s); pausing and retrying", stage, sink_name, exc)
        consumer.pause(*consumer.assignment())

    return Retrying(
        retry=retry_if_exception(retried),
        wait=wait_exponential(multiplier=backoff.first_s, max=backoff.max_s),
        before_sleep=paused_wait,
        sleep=lambda seconds: _sleep_polling(consumer, seconds, stop),
        reraise=True,
    )


def _sleep_polling(consumer: Any, seconds: float, stop: threading.Event) -> None:
    """Sleep with the partitions paused, polling so the group keeps this member.

    Such a poll returns records only when a rebalance un-paused the partitions. They are in no
    batch yet: the consumer seeks back to the first of each partition, and pauses again, rather
    than dropping them (the next commit would move past them: lost).
    """
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        remaining = max(deadline - time.monotonic(), 0.0)
        polled = consumer.poll(timeout_ms=int(min(0.5, remaining) * 1000))
        if polled:
            for tp, records in polled.items():
                if records:
                    consumer.seek(tp, records[0].offset)
            consumer.pause(*consumer.assignment())
        if time.monotonic() >= deadline:
            break
