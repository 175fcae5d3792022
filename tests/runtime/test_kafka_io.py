"""Dead letters on their way to Kafka, over the test kit's producer (no broker): none may
vanish, neither one too large for the broker nor one whose delivery failed."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError

from finsent.core.records import DeadLetter, decode
from finsent.runtime.kafka_io import MAX_DEAD_PAYLOAD_BYTES, DeadLetters
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
