from __future__ import annotations

from datetime import UTC, datetime

import pytest

from finsent.core.records import NewsItem
from finsent.model.scorer import LexiconScorer, load_scorer
from finsent.model.topics import FALLBACK_TOPIC, TOPICS, keyword_topic

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def news(title: str) -> NewsItem:
    return NewsItem(id=title[:20], source="t", title=title, published_at=T0, fetched_at=T0)


@pytest.fixture(scope="module")
def scorer() -> LexiconScorer:
    return LexiconScorer()


@pytest.mark.parametrize(
    ("title", "sentiment"),
    [
        ("Northwind Bank shares plunge as deposit losses mount", "negative"),
        ("Regulators probe lender after failed capital raise", "negative"),
        ("Apex Motors reports record profit as margins improve", "positive"),
        ("Company announces date of annual shareholder meeting", "neutral"),
    ],
)
def test_lexicon_labels(scorer: LexiconScorer, title: str, sentiment: str) -> None:
    [scored] = scorer.score([news(title)])
    assert scored.sentiment == sentiment
    assert scored.model_version == "lexicon-lm-1"
    assert (scored.score < 0) == (sentiment == "negative")
    if sentiment != "neutral":
        assert scored.top_tokens  # the dictionary words that drove it


def test_batch_keeps_order(scorer: LexiconScorer) -> None:
    titles = [f"Story {i} about losses" if i % 2 else f"Story {i}" for i in range(10)]
    assert [s.item.title for s in scorer.score([news(t) for t in titles])] == titles


def test_keyword_topics() -> None:
    assert keyword_topic("Fed signals rate hike as inflation persists")[0] == "Fed | Central Banks"
    assert keyword_topic("Crude oil jumps after OPEC cut")[0] == "Energy | Oil"
    topic, probs = keyword_topic("Nothing to see")
    assert topic == FALLBACK_TOPIC and probs == {FALLBACK_TOPIC: 1.0}
    assert len(TOPICS) == 20


def test_unknown_scorer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown scorer 'nope'"):
        load_scorer("nope")
