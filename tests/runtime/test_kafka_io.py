"""Dead letters on their way to Kafka, over the test kit's producer (no broker): none may
vanish, neither one too large for the broker nor one whose delivery failed. The broker probe.
Partition counts against a real broker: a keyed topic asked to grow is refused at once, an
unkeyed one grows, none shrinks. The producers' cached partitioner answers as the default one.
Asking which stages run waits out a broker's start-up."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.errors import (
    CoordinatorLoadInProgressError,
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
)
from kafka.partitioner import DefaultPartitioner

import finsent.runtime.kafka_io as kafka_io
from finsent.core.records import DeadLetter, decode
from finsent.core.settings import TOPIC_NAMES, Settings
from finsent.runtime.kafka_io import (
    MAX_DEAD_PAYLOAD_BYTES,
    CachedKeyPartitioner,
    DeadLetters,
    KafkaConfig,
    PartitionCountError,
    active_groups,
    ensure_topics,
    group_id,
    make_producer,
    partition_counts,
    partition_of,
)
from finsent.runtime.testing import CollectingSink

DLQ = "news.dlq"
ONE_MIB = 1024 * 1024  # Kafka's default limit on a record


def letters(sink: CollectingSink) -> list[DeadLetter]:
    return [decode(DeadLetter, value) for value in sink.values(DLQ)]


def test_a_payload_too_large_for_the_broker_arrives_truncated_with_its_size() -> None:
    sink = CollectingSink(max_record_bytes=ONE_MIB)
    dead = DeadLetters(sink, "router", DLQ)
    payload = b"{" + b"x" * 900_000  # 1.2 MB once base64-encoded in the letter

    dead.send("not JSON", payload)
    dead.settle()

    [letter] = letters(sink)
    assert letter.payload() == payload[:MAX_DEAD_PAYLOAD_BYTES]
    assert letter.reason.startswith("not JSON") and "900001 bytes" in letter.reason


def test_a_dead_letter_whose_delivery_failed_is_sent_again_at_the_next_settle() -> None:
    sink = CollectingSink()
    dead = DeadLetters(sink, "router", DLQ)
    sink.fail(1)

    dead.send("not JSON", b"{bad")
    with pytest.raises(KafkaTimeoutError):
        dead.settle()
    assert letters(sink) == []
    dead.settle()

    [letter] = letters(sink)
    assert letter.payload() == b"{bad"
    assert dead.count == 1


def test_check_broker_names_the_address_and_the_fix_within_its_timeout() -> None:
    import socket
    import time

    from finsent.runtime.kafka_io import BrokerUnreachable, check_broker

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable) as raised:
        check_broker(f"127.0.0.1:{port}", timeout_s=2)
    assert time.monotonic() - started < 3
    assert f"Kafka at 127.0.0.1:{port} is not reachable" in str(raised.value)
    assert "finsent kafka start" in str(raised.value)
    assert "FINSENT_KAFKA_BOOTSTRAP" in str(raised.value)


def test_check_broker_passes_when_one_address_listens() -> None:
    import socket

    from finsent.runtime.kafka_io import check_broker

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_broker(f"127.0.0.1:1,127.0.0.1:{port}", timeout_s=2)


# -- partition counts, against a real broker -------------------------------------------------


def test_a_keyed_topic_asked_to_grow_is_refused_at_once_in_one_line(
    pipeline_settings: Settings,
) -> None:
    ensure_topics(pipeline_settings)  # the first run: one partition each
    more = pipeline_settings.model_copy(update={"partitions": 3})

    started = time.monotonic()
    with pytest.raises(PartitionCountError) as refused:
        ensure_topics(more)

    assert time.monotonic() - started < 10  # not the 60 s wait for partitions that never come
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        f"FINSENT_PARTITIONS asks for 3 partitions but {more.topic('news.keyed')} has 1;"
    )
    assert "`finsent kafka grow`" in message and "ask for 1 again" in message
    assert partition_counts(more) == dict.fromkeys(TOPIC_NAMES, 1)  # refused: nothing changed


def test_unkeyed_topics_grow_and_no_topic_shrinks(pipeline_settings: Settings) -> None:
    ensure_topics(pipeline_settings.model_copy(update={"partitions": 2}))
    unkeyed = {"news.raw": 4, "news.scored": 3, "news.dlq": 1}
    settings = pipeline_settings.model_copy(update={"partitions_per_topic": unkeyed})

    started = time.monotonic()
    ensure_topics(settings)

    assert time.monotonic() - started < 10
    assert partition_counts(settings) == {
        "news.raw": 4,
        "news.scored": 3,
        "news.keyed": 2,
        "sentiment.windows": 2,
        "alerts": 2,
        "news.dlq": 2,  # asked for 1: kept at 2, Kafka cannot remove partitions
    }


@given(
    keys=st.lists(st.binary(max_size=40), min_size=1, max_size=30),
    count=st.integers(min_value=1, max_value=64),
    max_keys=st.integers(min_value=1, max_value=8),
)
def test_the_cached_partitioner_sends_each_key_where_the_default_one_does(
    keys: list[bytes], count: int, max_keys: int
) -> None:
    """Keys repeat (and overflow the cache, which then starts afresh): every answer is still
    the default partitioner's, so records of a key keep their partition across producers."""
    partitions = list(range(count))
    cached = CachedKeyPartitioner(max_keys=max_keys)
    for key in keys + keys[::-1]:
        assert cached(key, partitions, partitions) == DefaultPartitioner()(
            key, partitions, partitions
        )
    assert len(cached._hashes) <= max_keys


def test_the_cached_partitioner_spreads_records_without_a_key_over_available_ones() -> None:
    cached = CachedKeyPartitioner()
    assert {cached(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)} == {1, 3}
    assert cached._hashes == {}


def test_partition_of_is_where_the_producer_sends_a_key(pipeline_settings: Settings) -> None:
    settings = pipeline_settings.model_copy(update={"partitions": 5})
    ensure_topics(settings, ["news.keyed"])
    producer = make_producer(KafkaConfig.from_settings(settings))
    keys = ["overall", "topic:Earnings", "ticker:AAPL", "source:Reuters", "ticker:Ö"]
    sent = {
        k: producer.send(settings.topic("news.keyed"), key=k.encode(), value=b"{}") for k in keys
    }
    producer.flush()

    landed = {k: future.get(timeout=30).partition for k, future in sent.items()}

    assert landed == {k: partition_of(k, 5) for k in keys}
    assert len(set(landed.values())) > 1
    producer.close()


class _StartingBroker:
    """An admin client whose broker answers "coordinator loading" a few times, then lists
    the groups (or fails with ``error`` for good)."""

    def __init__(self, loading: int, running: str, error: Exception | None = None) -> None:
        self.loading, self.running, self.error = loading, running, error
        self.asked = 0
        self.closed = False

    def list_consumer_groups(self) -> list[tuple[str, str]]:
        self.asked += 1
        if self.error is not None:
            raise self.error
        if self.asked <= self.loading:
            raise CoordinatorLoadInProgressError("ListGroupsRequest failed")
        return [(self.running, "consumer")]

    def describe_consumer_groups(self, names: list[str]) -> list[Any]:
        return [SimpleNamespace(group=name, members=["member-1"]) for name in names]

    def close(self) -> None:
        self.closed = True


def test_active_groups_waits_out_a_broker_still_loading_its_coordinator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(metrics_port=None)
    broker = _StartingBroker(loading=2, running=group_id(settings, "router"))
    monkeypatch.setattr(kafka_io, "_admin", lambda *_args: broker)
    monkeypatch.setattr(kafka_io.time, "sleep", lambda _s: None)
    assert active_groups(settings, ["router", "scorer"]) == {"router": 1}
    assert broker.asked == 3 and broker.closed


class _MovingCoordinator(_StartingBroker):
    """A broker whose first group description answers "not the coordinator", which
    kafka-python misreads as ACL operation 31 (the ValueError it raises on such an answer)."""

    def __init__(self, running: str) -> None:
        super().__init__(loading=0, running=running)
        self.described = 0

    def describe_consumer_groups(self, names: list[str]) -> list[Any]:
        self.described += 1
        if self.described == 1:
            raise ValueError("31 is not a valid ACLOperation")
        return super().describe_consumer_groups(names)


def test_active_groups_asks_again_when_the_group_coordinator_was_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(metrics_port=None)
    broker = _MovingCoordinator(running=group_id(settings, "router"))
    monkeypatch.setattr(kafka_io, "_admin", lambda *_args: broker)
    monkeypatch.setattr(kafka_io.time, "sleep", lambda _s: None)
    assert active_groups(settings, ["router"]) == {"router": 1}
    assert broker.described == 2 and broker.closed


def test_active_groups_raises_an_error_that_waiting_cannot_cure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(metrics_port=None)
    denied = GroupAuthorizationFailedError("not allowed")
    broker = _StartingBroker(loading=0, running="", error=denied)
    monkeypatch.setattr(kafka_io, "_admin", lambda *_args: broker)
    with pytest.raises(GroupAuthorizationFailedError):
        active_groups(settings, ["router"])
    assert broker.asked == 1 and broker.closed
