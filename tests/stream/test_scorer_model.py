"""The default scorer through the real broker: the shipped attention model in the `finsent scorer`
process, news.raw → news.scored, with explanations and the model version on every record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer, KafkaProducer
from support.stages import StageProcesses

from finsent.core.records import NewsItem, ScoredItem, decode, encode
from finsent.core.settings import Settings
from finsent.model.topics import TOPICS
from finsent.runtime.kafka_io import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.weights]

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
HEADLINES = {
    "n1": ("Northwind Bank shares plunge as losses mount and depositors flee", "negative"),
    "n2": ("Acme Corp posts record profit and raises its annual outlook", "positive"),
    "n3": ("Acme Corp to hold its annual general meeting on May 5", "neutral"),
}


def test_default_scorer_is_the_attention_model(
    pipeline_settings: Settings, stages: StageProcesses
) -> None:
    settings = pipeline_settings.model_copy(update={"scorer": "attention"})
    stages.env.update(settings.child_env())
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for n, (news_id, (title, _)) in enumerate(HEADLINES.items()):
        at = T0 + timedelta(minutes=n)
        item = NewsItem(id=news_id, source="wire", title=title, published_at=at, fetched_at=at)
        producer.send(settings.topic("news.raw"), encode(item)).get(30)
    producer.close()

    stages.start("scorer", "scorer")
    consumer = KafkaConsumer(
        settings.topic("news.scored"),
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=120_000,  # the first start builds the int8 ONNX model
    )
    scored: dict[str, ScoredItem] = {}
    try:
        for message in consumer:
            record = decode(ScoredItem, message.value)
            scored[record.item.id] = record
            if len(scored) == len(HEADLINES):
                break
    finally:
        consumer.close()
    assert len(scored) == len(HEADLINES), stages.log("scorer")

    for news_id, (title, sentiment) in HEADLINES.items():
        record = scored[news_id]
        assert record.sentiment == sentiment, (title, record)
        assert record.model_version.startswith("finsent-attn-1+")
        assert record.model_version.endswith("/onnx-int8")
        assert record.topic in TOPICS and set(record.topic_probs) == set(TOPICS)
        assert abs(sum(record.topic_probs.values()) - 1.0) < 0.01
        assert record.confidence >= 1 / 3
        words = set(title.lower().replace(",", "").split())
        assert record.top_tokens and set(record.top_tokens) <= words, record.top_tokens
    assert scored["n1"].score < -0.5 < 0.5 < scored["n2"].score
    assert stages.stop_all() == {"scorer": 0}
