"""The scorer stage: its logic in process with the test kit and a tiny fake scorer (no broker,
no model), then the shipped attention model in the `finsent scorer` process on a real broker.

In process: a payload that is not a story, and a story the scorer fails on, each become a
dead letter with a reason, while the rest of the batch is scored; the offsets move past all
of them, committed to the consumer group.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer
from support.records import T0, news_item
from support.stage_logic import PoisonSensitiveScorer, scoring
from support.stages import StageProcesses

from finsent.core.records import NewsItem, ScoredItem, decode, encode
from finsent.core.settings import Settings
from finsent.model.entity_sentiment import EntityScorer
from finsent.model.registry import ActiveModel, FollowingScorer
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


# -- a promoted model, swapped between batches --------------------------------------------


class VersionedScorer(PoisonSensitiveScorer):
    def __init__(self, version: str) -> None:
        super().__init__()
        self.version = version


class PromotingRegistry:
    """The registry as the scorer sees it: "v2" is promoted once the first batch is scored."""

    def __init__(self) -> None:
        self.promoted = False

    def active(self) -> ActiveModel:
        return ActiveModel("v1", Path("v1"), None)

    def active_version(self) -> str:
        return "v2" if self.promoted else "v1"

    def path_of(self, version: str) -> Path:
        return Path(version)


def test_a_promoted_model_is_loaded_after_the_batch_in_flight_is_committed() -> None:
    registry = PromotingRegistry()
    committed_at_load: list[int] = []
    run_box: dict[str, Any] = {}

    def load(path: Path) -> VersionedScorer:
        if path.name == "v2":  # the swap: what the consumer group had committed by then
            committed_at_load.append(sum(run_box["source"].committed.values()))
        return VersionedScorer(path.name)

    following = FollowingScorer(registry, load, poll_seconds=0.0)  # type: ignore[arg-type]
    logic = Scoring(following)
    original = following.score

    def score_then_promote(items: Sequence[NewsItem]) -> list[ScoredItem]:
        scored = original(items)
        registry.promoted = True
        return scored

    following.score = score_then_promote  # type: ignore[method-assign]
    stories = [news(f"story {i}") for i in range(10)]
    with pytest.MonkeyPatch.context() as patch:
        # The kit's source is made inside run_logic: catch it to read its commits.
        from finsent.runtime import testing

        made = testing.MemorySource

        def remembered(*args: Any, **kwargs: Any) -> testing.MemorySource:
            run_box["source"] = made(*args, **kwargs)
            return run_box["source"]

        patch.setattr(testing, "MemorySource", remembered)
        run = run_logic(logic, stories, stage="scorer", batch_size=4)

    versions = [s.model_version for _, s in run.outputs]
    assert [s.item.id for _, s in run.outputs] == [s.id for s in stories]  # none lost or doubled
    assert versions == ["v1"] * 4 + ["v2"] * 6  # the first batch by the old model, then the new
    assert committed_at_load == [4]  # loaded only once the first batch's offsets were committed
    assert run.offsets == {("news.raw", 0): 10}


def test_a_model_that_fails_to_load_leaves_the_running_one_scoring() -> None:
    registry = PromotingRegistry()

    def load(path: Path) -> VersionedScorer:
        if path.name == "v2":
            raise OSError("artifact folder is gone")
        return VersionedScorer(path.name)

    following = FollowingScorer(registry, load, poll_seconds=0.0)  # type: ignore[arg-type]
    registry.promoted = True
    run = run_logic(Scoring(following), [news("a"), news("b")], stage="scorer", batch_size=1)
    assert [s.model_version for _, s in run.outputs] == ["v1", "v1"]
    assert not following.reload_due()  # the broken version is not retried at every poll
