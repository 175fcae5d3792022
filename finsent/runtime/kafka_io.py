"""Kafka I/O at the edges: producers, consumers, topics, dead letters and micro-batch polling.

The clients are built from a ``KafkaConfig``; the topic admin helpers, which the CLI, the demo
and the backtest call, take the settings.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewPartitions, NewTopic
from kafka.errors import (
    InvalidPartitionsError,
    KafkaError,
    MessageSizeTooLargeError,
    NotCoordinatorError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2
from kafka.structs import TopicPartition

from finsent.core.errors import UserError
from finsent.core.records import DeadLetter, RecordError, decode, encode
from finsent.core.settings import KEYED_TOPICS, TOPIC_NAMES, Settings
from finsent.core.stages import STAGES, consumer_group
from finsent.runtime.metrics import DEAD_LETTERS

log = logging.getLogger(__name__)
T = TypeVar("T")

# A record the broker (or the producer, against max_request_size) refuses for its size: no
# retry can deliver it.
TOO_LARGE: tuple[type[KafkaError], ...] = (MessageSizeTooLargeError, RecordListTooLargeError)
# A dead letter carries at most this much of its payload. Kafka takes records up to 1 MiB by
# default, and the letter's base64 adds a third: 512 KiB leaves room for the rest.
MAX_DEAD_PAYLOAD_BYTES = 512 * 1024
MAX_REASON_CHARS = 2000
ACK_TIMEOUT_S = 30  # the longest wait for one acknowledgement


@dataclass(frozen=True)
class KafkaConfig:
    """What the Kafka clients take from the settings."""

    bootstrap_servers: str
    topic_prefix: str  # also names the consumer groups, so a run's groups stay apart
    session_timeout_ms: int
    instance_id: str  # static group membership when set
    max_poll_records: int

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConfig:
        return cls(
            bootstrap_servers=settings.bootstrap_servers,
            topic_prefix=settings.topic_prefix,
            session_timeout_ms=settings.session_timeout_ms,
            instance_id=settings.instance_id,
            max_poll_records=settings.batch_max_size,
        )


class BrokerUnreachable(UserError, ConnectionError):
    """No bootstrap address accepts a connection: the one line a command prints and exits on."""


def check_broker(bootstrap_servers: str, timeout_s: float = 5.0) -> None:
    """Raise ``BrokerUnreachable`` unless some bootstrap address accepts a TCP connection within
    ``timeout_s`` in all. A stage calls it once before building clients, which would otherwise
    log connection errors for a minute before failing."""
    deadline = time.monotonic() + timeout_s
    addresses = [a.strip() for a in bootstrap_servers.split(",") if a.strip()]
    for address in addresses:
        host, _, port = address.rpartition(":")
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.create_connection((host.strip("[]") or address, int(port)), timeout=left):
                return
        except (OSError, ValueError):
            continue
    raise BrokerUnreachable(
        f"Kafka at {bootstrap_servers} is not reachable; start it with `finsent kafka start` "
        "or set FINSENT_KAFKA_BOOTSTRAP"
    )


class CachedKeyPartitioner:
    """kafka-python's default partitioner (murmur2 of the key, as the Java client's) with each
    key's hash remembered: its murmur2 is pure Python, and the router and aggregator send about
    three records a story over a few thousand series keys (5.8 µs a record, 0.9 µs cached, on
    2 cores of an AMD EPYC). Records without a key go where the default sends them."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(DefaultPartitioner()(key, all_partitions, available))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.max_keys:  # bounded: a long run's keys come and go
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


def make_producer(kafka: KafkaConfig, **overrides: Any) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "partitioner": CachedKeyPartitioner(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 10,
        # With kafka-python's pure-Python sender fewer bytes means more records/s (40k/s
        # against 20k/s uncompressed, measured on 2 cores). zstd: gzip's ratio on our records
        # at a twentieth of its CPU (kafka-python's gzip is fixed at level 9).
        "compression_type": "zstd",
        # A scorer batch is ~80 KB of records: one request per partition, not five of 16 KB.
        "batch_size": 256 * 1024,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "client_id": "finsent",
        # A lost broker is retried at least every second, as the Java client does, not
        # kafka-python's up to 30 s: a restarted broker is back in use at once.
        "reconnect_backoff_max_ms": 1000,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def group_id(settings: Settings, stage: str) -> str:
    return consumer_group(settings.topic_prefix, stage)


def make_consumer(kafka: KafkaConfig, stage: str, **overrides: Any) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "group_id": consumer_group(kafka.topic_prefix, stage),
        "enable_auto_commit": False,  # offsets are committed only after outputs are durable
        "auto_offset_reset": "earliest",
        "max_poll_records": kafka.max_poll_records,
        "isolation_level": "read_committed",
        "client_id": f"finsent-{stage}",
        "session_timeout_ms": kafka.session_timeout_ms,
        # Notice new topics and partitions within seconds, not the 5-minute default.
        "metadata_max_age_ms": 5000,
        "heartbeat_interval_ms": max(kafka.session_timeout_ms // 3, 1000),
        "reconnect_backoff_max_ms": 1000,  # as the producer's
    }
    if kafka.instance_id:
        config["group_instance_id"] = f"{stage}-{kafka.instance_id}"
    config.update(overrides)
    return KafkaConsumer(**config)


def subscribe(
    consumer: KafkaConsumer, topic: str, listener: Any = None, timeout_s: float = 60
) -> None:
    """Subscribe once the client knows the topic's partitions.

    A member that joins its group before its metadata lists the topic can be handed no
    partitions and, with kafka-python, sometimes keeps that empty assignment; seen as a stage
    that consumed nothing for minutes on a busy machine.
    """
    deadline = time.monotonic() + timeout_s
    while not consumer.partitions_for_topic(topic):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no partitions after {timeout_s}s")
        time.sleep(0.2)
    if listener is None:
        consumer.subscribe([topic])
    else:
        consumer.subscribe([topic], listener=listener)


class PartitionCountError(UserError, ValueError):
    """A keyed topic has fewer partitions than the settings ask for: growing it would move
    series to other partitions, away from their state. The message is the one line to print."""


def ensure_topics(
    settings: Settings, names: Iterable[str] = TOPIC_NAMES, timeout_s: float = 60
) -> None:
    """Create the pipeline topics that do not exist yet, and wait until they are usable.

    An existing topic with fewer partitions than asked for: an unkeyed one grows (its
    consumers keep no state per key); a keyed one (``KEYED_TOPICS``) raises
    ``PartitionCountError`` at once, since growing it needs ``finsent kafka grow``. One with
    more keeps them: Kafka cannot take partitions away.
    """
    logical = {settings.topic(name): name for name in names}
    wanted = {topic: settings.partitions_for(name) for topic, name in logical.items()}
    deadline = time.monotonic() + timeout_s
    admin = _admin(settings.bootstrap_servers, deadline)
    try:
        existing = set(admin.list_topics())
        counts = _partition_counts(admin, [t for t in wanted if t in existing])
        # Refused before anything changes, and at once: not after a wait for partitions
        # that will never come.
        for topic, asked in wanted.items():  # in pipeline order: news.keyed first
            name, count = logical[topic], counts.get(topic, asked)
            if count < asked and name in KEYED_TOPICS:
                raise PartitionCountError(keyed_growth_message(settings, name, count, asked))
        missing = [NewTopic(t, n, 1) for t, n in wanted.items() if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a sibling process won the race
                admin.create_topics(missing)
            log.info("created topics %s", ", ".join(t.name for t in missing))
        grow = {t: wanted[t] for t, count in counts.items() if count < wanted[t]}
        if grow:
            grow_partitions(admin, grow)
        for topic, count in counts.items():
            if count > wanted[topic]:
                log.warning(
                    "%s keeps its %d partitions (%s asks for %d): Kafka cannot remove any",
                    topic,
                    count,
                    partitions_variable(settings, logical[topic]),
                    wanted[topic],
                )
                wanted[topic] = count
        # Consumers that subscribe before a topic's partitions have leaders get no assignment
        # until their next metadata refresh, so wait for the leaders here.
        while not _all_led(admin, wanted):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"topics {sorted(wanted)} got no partition leaders in {timeout_s}s"
                )
            time.sleep(0.2)
    finally:
        admin.close()


def partitions_variable(settings: Settings, name: str) -> str:
    """The variable that gives topic ``name`` its partition count."""
    if name in settings.partitions_per_topic:
        return "FINSENT_PARTITIONS_PER_TOPIC"
    return "FINSENT_PARTITIONS"


def keyed_growth_message(settings: Settings, name: str, count: int, asked: int) -> str:
    """The one line a stage refuses to start on when keyed topic ``name`` is to grow."""
    consumer = next((s.name for s in STAGES if s.source == name), "its consumer")
    return (
        f"{partitions_variable(settings, name)} asks for {asked} partitions but "
        f"{settings.topic(name)} has {count}; it is keyed and the {consumer} keeps its state "
        f"per partition, so stop all stages and run `finsent kafka grow` (grows the topics "
        f"and moves that state), or ask for {count} again"
    )


def partition_counts(settings: Settings, names: Iterable[str] = TOPIC_NAMES) -> dict[str, int]:
    """The partition count of each of these pipeline topics that exists, by logical name."""
    physical = {settings.topic(name): name for name in names}
    admin = _admin(settings.bootstrap_servers, time.monotonic() + 30)
    try:
        existing = set(admin.list_topics())
        counts = _partition_counts(admin, [t for t in physical if t in existing])
    finally:
        admin.close()
    return {physical[topic]: count for topic, count in counts.items()}


def _partition_counts(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    if not topics:
        return {}
    counts = {}
    for topic in admin.describe_topics(topics):
        name = str(topic.get("topic", topic.get("name")))
        counts[name] = len(topic.get("partitions") or [])
    return counts


def grow_topics(settings: Settings, counts: dict[str, int]) -> None:
    """Grow each of these pipeline topics (by logical name) to its count of partitions, keyed
    or not: for ``finsent kafka grow``, once it has moved the keyed topics' state."""
    admin = _admin(settings.bootstrap_servers, time.monotonic() + 30)
    try:
        grow_partitions(admin, {settings.topic(name): n for name, n in counts.items()})
    finally:
        admin.close()


def grow_partitions(admin: KafkaAdminClient, counts: dict[str, int]) -> None:
    """Grow each topic to its count of partitions (a sibling process may have done it)."""
    try:
        admin.create_partitions({t: NewPartitions(n) for t, n in counts.items()})
    except InvalidPartitionsError:  # already grown by a sibling: the leader wait checks it
        log.info("partitions of %s were grown already", ", ".join(counts))
        return
    log.info("grew %s", ", ".join(f"{t} to {n} partitions" for t, n in counts.items()))


def partition_of(key: str, count: int) -> int:
    """The partition the producers' default partitioner (murmur2, as the Java client's) sends
    a record keyed ``key`` to, on a topic of ``count`` partitions."""
    return int(DefaultPartitioner()(key.encode(), list(range(count)), list(range(count))))


def describe_groups(admin: KafkaAdminClient, names: Iterable[str]) -> list[Any]:
    """``admin.describe_consumer_groups``, with a broker's "not the coordinator" answer raised as
    the retriable `NotCoordinatorError` it is. Such an answer (error 16, seen while a group's
    coordinator moves or loads) carries no authorized operations, only the sign bit, and
    kafka-python reads that as ACL operation 31 and raises ValueError before it looks at the
    error code."""
    try:
        return list(admin.describe_consumer_groups(list(names)))
    except ValueError as exc:
        raise NotCoordinatorError(f"the group coordinator's answer was not ready: {exc}") from exc


def active_groups(settings: Settings, stages: Iterable[str]) -> dict[str, int]:
    """Of these stages, those whose consumer group has members now: how many, by stage."""
    groups = {group_id(settings, stage): stage for stage in stages}
    deadline = time.monotonic() + 30
    admin = _admin(settings.bootstrap_servers, deadline)
    try:
        while True:
            try:
                known = {g[0] for g in admin.list_consumer_groups()} & set(groups)
                described = describe_groups(admin, sorted(known)) if known else []
                break
            except KafkaError as exc:
                # A broker that has just started answers "coordinator loading" for a while:
                # ask again rather than guess, since a caller may act on "nobody is running".
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()
    return {groups[g.group]: len(g.members) for g in described if g.members}


def end_offsets(settings: Settings, names: Iterable[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of these pipeline topics, by (topic, partition)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        parts = [
            TopicPartition(topic, p)
            for topic in (settings.topic(name) for name in names)
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = consumer.end_offsets(parts) if parts else {}
        return {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}
    finally:
        consumer.close()


def _all_led(admin: KafkaAdminClient, wanted: dict[str, int]) -> bool:
    try:
        described = admin.describe_topics(list(wanted))
    except KafkaError:
        return False
    for topic in described:
        # Older and newer client versions name these "topic"/"leader" or "name"/"leader_id".
        name = str(topic.get("topic", topic.get("name")))
        partitions = topic.get("partitions") or []
        if topic.get("error_code") or len(partitions) < wanted[name]:
            return False
        if any(p.get("leader", p.get("leader_id", -1)) < 0 for p in partitions):
            return False
    return True


def delete_topics(settings: Settings, topics: list[str]) -> None:
    if not topics:
        return
    admin = _admin(settings.bootstrap_servers, time.monotonic() + 30)
    try:
        admin.delete_topics(topics)
    finally:
        admin.close()


def list_topics(settings: Settings) -> list[str]:
    admin = _admin(settings.bootstrap_servers, time.monotonic() + 30)
    try:
        return sorted(admin.list_topics())
    finally:
        admin.close()


def _admin(bootstrap_servers: str, deadline: float) -> KafkaAdminClient:
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="finsent-admin")
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"Kafka at {bootstrap_servers} is not reachable: {exc}"
                ) from exc
            time.sleep(0.5)


class DeadLetterSink(Protocol):
    """Where a stage routes what it cannot process: ``DeadLetters`` (Kafka), or the test kit's
    in-memory one (``finsent.runtime.testing``)."""

    count: int

    def send(
        self, reason: str, payload: bytes, record: Any = None, source: str = "", kind: str = ""
    ) -> None: ...

    def settle(self) -> None:
        """Wait until every letter sent so far is durable; raise if one is not (it is sent
        again at the next call). Offsets must not move past a letter before this returns."""


def dead_letter(
    stage: str, reason: str, payload: bytes, at: datetime, record: Any = None, source: str = ""
) -> DeadLetter:
    """The dead letter for ``payload``; ``record`` (a consumed record, if any) says where it was.

    A payload over ``MAX_DEAD_PAYLOAD_BYTES`` is cut there, its whole size told in the reason,
    so that the letter itself fits in a Kafka record."""
    if len(payload) > MAX_DEAD_PAYLOAD_BYTES:
        reason = f"{reason} (payload of {len(payload)} bytes cut to {MAX_DEAD_PAYLOAD_BYTES})"
        payload = payload[:MAX_DEAD_PAYLOAD_BYTES]
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return DeadLetter.of(
        stage=stage,
        reason=reason,
        payload=payload,
        at=at,
        source_topic=getattr(record, "topic", ""),
        partition=getattr(record, "partition", -1),
        offset=getattr(record, "offset", -1),
        source=source,
    )


def dead_letter_kind(reason: str, kind: str = "") -> str:
    """The metric label of a dead letter: ``kind``, or the reason's first word."""
    label = kind or (reason.split(":", 1)[0].split(" ", 1)[0].lower() or "error")
    return label[:30]


class DeadLetters:
    """Routes what a stage cannot process to ``news.dlq`` with the stage, the reason and the raw
    bytes; ``settle`` makes sure each letter arrived."""

    def __init__(self, producer: KafkaProducer, stage: str, topic: str) -> None:
        self.topic = topic  # the run's news.dlq
        self.producer = producer
        self.stage = stage
        self.count = 0
        self._in_flight: list[tuple[DeadLetter, Any]] = []  # (letter, its send's future)
        self._unsent: list[DeadLetter] = []  # letters whose delivery failed: sent again

    def send(
        self, reason: str, payload: bytes, record: Any = None, source: str = "", kind: str = ""
    ) -> None:
        """Route one payload; ``kind`` labels the metric (default: the reason's first word)."""
        letter = dead_letter(self.stage, reason, payload, datetime.now(UTC), record, source)
        self._produce(letter)
        self.count += 1
        DEAD_LETTERS.labels(self.stage, dead_letter_kind(reason, kind)).inc()
        log.warning(
            "dead letter from %s%s: %s", self.stage, f" ({source})" if source else "", reason
        )

    def settle(self) -> None:
        """Wait for every letter sent so far. One the broker refuses as too large goes again
        without its payload; one whose delivery failed is kept for the next call, and the
        failure raised, so the caller retries before moving its offsets past it."""
        for letter in self._unsent:
            self._produce(letter)
        self._unsent = []
        error: Exception | None = None
        while self._in_flight:
            self.producer.flush(timeout=ACK_TIMEOUT_S)
            in_flight, self._in_flight = self._in_flight, []
            for letter, future in in_flight:
                try:
                    future.get(timeout=ACK_TIMEOUT_S)
                except TOO_LARGE as exc:
                    if not letter.payload_b64:
                        log.error("dead letter from %s refused even empty: %s", self.stage, exc)
                        continue
                    self._produce(_without_payload(letter, exc))
                except Exception as exc:  # noqa: BLE001 - any failed delivery: send it again
                    self._unsent.append(letter)
                    error = error or exc
        if error is not None:
            raise error

    def _produce(self, letter: DeadLetter) -> None:
        future = self.producer.send(self.topic, key=self.stage.encode(), value=encode(letter))
        self._in_flight.append((letter, future))


def _without_payload(letter: DeadLetter, exc: Exception) -> DeadLetter:
    """The letter without its payload, for a broker that refuses it even cut (its limit is set
    below ``MAX_DEAD_PAYLOAD_BYTES``); the excerpt stays."""
    size = len(letter.payload_b64) * 3 // 4
    reason = f"{letter.reason} (payload of about {size} bytes dropped: {exc})"
    return replace(letter, payload_b64="", reason=reason[:MAX_REASON_CHARS])


def decode_or_dead(cls: type[T], record: Any, dead: DeadLetterSink) -> T | None:
    """The record's value as ``cls``, or None after routing it to the dead-letter topic."""
    try:
        return decode(cls, record.value)
    except RecordError as exc:
        dead.send(exc.reason, record.value or b"", record)
        return None


def poll_batch(consumer: Any, max_size: int, max_wait_ms: int) -> list[Any]:
    """One micro-batch: up to ``max_size`` records, waiting at most ``max_wait_ms``.

    Records keep their per-partition order. ``consumer``: a ``KafkaConsumer``, or the test
    kit's in-memory source.
    """
    batch: list[Any] = []
    deadline = time.monotonic() + max_wait_ms / 1000
    while len(batch) < max_size:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            break
        polled = consumer.poll(timeout_ms=remaining_ms, max_records=max_size - len(batch))
        for records in polled.values():
            batch.extend(records)
        if not polled and batch:
            break
    return batch


def next_offsets(records: Iterable[Any]) -> dict[tuple[str, int], int]:
    """The offset to resume from, per partition, after ``records``."""
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        offsets[key] = max(offsets.get(key, 0), r.offset + 1)
    return offsets
