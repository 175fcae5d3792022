"""The scorers behind one interface: the lexicon baseline, and the choice by name."""

from __future__ import annotations

import pytest
from support.records import news_item

from finsent.core.records import NewsItem
from finsent.model.scorer import LexiconScorer, load_scorer


def news(title: str) -> NewsItem:
    return news_item(id=title[:20], source="t", title=title)


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


def test_unknown_scorer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown scorer 'nope'"):
        load_scorer("nope")


@pytest.mark.weights
def test_load_scorer_defaults_to_the_model() -> None:
    from finsent.core.settings import Settings

    assert Settings().scorer == "attention"
    scorer = load_scorer("lexicon")
    assert scorer.version == "lexicon-lm-1"
    with pytest.raises(ValueError, match="unknown scorer"):
        load_scorer("nope")
