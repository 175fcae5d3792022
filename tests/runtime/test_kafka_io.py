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
