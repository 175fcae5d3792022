"""The scorer stage: its logic in process with the test kit and a tiny fake scorer (no broker,
no model), then the shipped attention model in the `finsent scorer` process on a real broker.

In process: a payload that is not a story, and a story the scorer fails on, each become a
dead letter with a reason, while the rest of the batch is scored; the offsets move past all
of them, committed to the consumer group.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer
from support.records import T0, news_item
from support.stage_logic import PoisonSensitiveScorer, scoring
from support.stages import StageProcesses

from finsent.core.records import NewsItem, ScoredItem, decode, encode
from finsent.core.settings import Settings
from finsent.model.entity_sentiment import EntityScorer
from finsent.model.topics import TOPICS
from finsent.runtime.kafka_io import ensure_topics
from finsent.runtime.testing import run_logic
from finsent.stream.scoring import Scoring, score_batch

# -- in process ------------------------------------------------------------------------------


def news(title: str) -> NewsItem:
    return news_item(id=title, source="s", title=title)


def test_one_bad_story_does_not_sink_its_batch() -> None:
    scorer = PoisonSensitiveScorer()
    items = [news("fine 1"), news("poison pill"), news("fine 2")]
    scored, failed = score_batch(scorer, items)
    assert [s.item.id for s in scored] == ["fine 1", "fine 2"]
    assert [(item.id, reason) for item, reason in failed] == [
        ("poison pill", "scorer failed: RuntimeError: tokenizer exploded")
    ]
    assert scorer.calls == 1 + len(items)  # the batch, then one call per story


def test_healthy_batch_is_scored_in_one_call() -> None:
    scorer = PoisonSensitiveScorer()
    scored, failed = score_batch(scorer, [news("a"), news("b")])
    assert len(scored) == 2 and failed == [] and scorer.calls == 1


def test_bad_records_and_a_failing_story_become_dead_letters_with_reasons() -> None:
    scorer = PoisonSensitiveScorer()
    stories: list[NewsItem | bytes] = [
        news("fine 1"),
        b"\xff not json",
        news("poison pill"),
        encode(news("from the future")).replace(b'"schema":1', b'"schema":9'),
        news("fine 2"),
        news("fine 3"),
    ]

    run = run_logic(scoring(scorer), stories, None, lambda: T0, stage="scorer", batch_size=3)

    assert [key for key, _ in run.outputs] == ["fine 1", "fine 2", "fine 3"]
    assert all(s.model_version == PoisonSensitiveScorer.version for _, s in run.outputs)
    reasons = {letter.offset: letter.reason for letter in run.dead}
    assert reasons[1] == "payload: Invalid JSON: expected value at line 1 column 1"
    assert reasons[2] == "scorer failed: RuntimeError: tokenizer exploded"
    assert reasons[3] == "unknown schema version (supported: 1)"
    assert sorted(reasons) == [1, 2, 3]
    assert all(letter.stage == "scorer" for letter in run.dead)
    poison = next(letter for letter in run.dead if letter.offset == 2)
    assert decode(NewsItem, poison.payload()) == stories[2]  # the story, whole, for a replay
    # Only the batch that held the poison story was scored one by one.
    assert scorer.calls == 1 + 2 + 1
    assert run.offsets == {("news.raw", 0): 6} == run.source.committed


def test_stories_naming_several_companies_carry_each_ones_sentiment() -> None:
    def find_names(text: str) -> list[str]:  # the tagger's finder, for two names
        return [word for word in text.split() if word in {"Northwind", "Acme"}]

    def model(texts: Sequence[str]) -> np.ndarray:  # falls: negative, else positive
        return np.array([[0.9, 0.1, 0.0] if "falls" in t else [0.0, 0.1, 0.9] for t in texts])

    stories = [
        news_item(id="two", title="Northwind falls as Acme gains", tickers=("Northwind", "Acme")),
        news_item(id="one", title="Northwind falls as rivals gain", tickers=("Northwind",)),
    ]
    logic = Scoring(PoisonSensitiveScorer(), EntityScorer(model, find_names))
    run = run_logic(logic, stories, None, lambda: T0, stage="scorer")

    two, one = (s for _, s in run.outputs)
    assert {k: e.sentiment for k, e in two.entities.items()} == {
        "Northwind": "negative",
        "Acme": "positive",
    }
    assert two.sentiment == "neutral"  # the story's own, from the scorer, unchanged
    assert one.entities == {}


def test_a_failing_per_company_pass_leaves_the_stories_scored() -> None:
    def broken(texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("model gone")

    story = news_item(id="two", title="Northwind falls as Acme gains", tickers=("N", "A"))

    def initials(text: str) -> list[str]:
        return [word[0] for word in text.split() if word in {"Northwind", "Acme"}]

    logic = Scoring(PoisonSensitiveScorer(), EntityScorer(broken, initials))
    run = run_logic(logic, [story], None, lambda: T0, stage="scorer")
    assert [s.entities for _, s in run.outputs] == [{}] and run.dead == []


# -- the shipped model against a real broker -------------------------------------------------

MODEL_T0 = T0.replace(hour=14, minute=0)
HEADLINES = {
    "n1": ("Northwind Bank shares plunge as losses mount and depositors flee", "negative"),
    "n2": ("Acme Corp posts record profit and raises its annual outlook", "positive"),
    "n3": ("Acme Corp to hold its annual general meeting on May 5", "neutral"),
}


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.weights
def test_default_scorer_is_the_attention_model(
    pipeline_settings: Settings, stages: StageProcesses
) -> None:
    settings = pipeline_settings.model_copy(update={"scorer": "attention"})
    stages.env.update(settings.child_env())
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for n, (news_id, (title, _)) in enumerate(HEADLINES.items()):
        item = news_item(id=news_id, title=title, published_at=MODEL_T0 + timedelta(minutes=n))
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
