"""Per-company sentiment in a headline that names several companies.

"Nvidia surges as Intel sinks on weak outlook" is good news for Nvidia and bad news for Intel;
the headline's one score is neither. The method, chosen by measurement on FinEntity
(``bench/bench_entity_sentiment.py``, held-out documents):

1. split the text into clauses: at sentence ends, semicolons, and before the conjunctions that
   start a new clause in news prose (``while``, ``but``, ``as``, ``after``, ``with``, ...;
   not ``and``, which mostly joins lists of names that share one verb);
2. each company gets the model's sentiment of the clause(s) that name it (probabilities
   averaged over its clauses);
3. one role rule: a company named as the source of a view ("according to X", "analysts at
   X") is neutral; the story is about something else.

On the held-out half (1,045 entities; 180 in the 60 documents whose entities disagree):
accuracy 0.701 → 0.764, macro-F1 0.706 → 0.763; on the disagreeing documents accuracy
0.489 → 0.639, macro-F1 0.458 → 0.639.

Measured and not chosen: mixing the clause's probabilities with the whole text's (worse at
every weight), "and" as a clause break (worse), and proximity-weighted attention pooling (the
model's α re-weighted towards the company's tokens over per-token logits, which the int8 graph
does not expose; on the fp32 network it is no better than the whole text). Buyer/target and
litigation rules could not be justified: FinEntity has under ten such mentions, and they are
neutral there, so "UBS agrees to buy Credit Suisse" (one clause) keeps the headline's
sentiment for both.

Everything here is pure: the model comes in as ``Probabilities`` (texts → P(neg/neu/pos)) and
the company finder as ``FindNames`` (text → symbols named, in order), so tests run with fakes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from finsent.core.records import EntitySentiment, ScoredItem
from finsent.core.vocabulary import Sentiment

if TYPE_CHECKING:
    from finsent.model.infer import Predictor

Probabilities = Callable[[Sequence[str]], np.ndarray]  # texts → (N, 3) negative/neutral/positive
FindNames = Callable[[str], Sequence[str]]  # text → company symbols named in it, in order
LABELS: tuple[Sentiment, Sentiment, Sentiment] = ("negative", "neutral", "positive")

# A clause starts after a sentence end or a semicolon, or at a conjunction that opens a
# subordinate or contrasting clause (the split keeps the conjunction with its clause).
CLAUSE_CONJUNCTIONS = (
    "while",
    "whereas",
    "but",
    "although",
    "though",
    "even as",
    "as",
    "after",
    "despite",
    "with",
)
_CLAUSE_BREAK = re.compile(
    r"(?-i:(?<=[a-z0-9%)][.!?])\s+(?=[A-Z\"']))"  # a sentence end, not "U.S." or "S.A."
    r"|;\s*"
    r"|,?\s+(?=(?:" + "|".join(CLAUSE_CONJUNCTIONS) + r")\s)",
    re.IGNORECASE,
)
# The words just before a name that make it the source of a view, not its subject.
_ATTRIBUTION = re.compile(
    r"(?:according\s+to|(?:analysts?|strategists?|economists?|researchers?)\s+(?:at|from|with))"
    r"\s+(?:the\s+)?$",
    re.IGNORECASE,
)
_WORD = re.compile(r"\S+")
# A source's sentiment is the rule's call, not the model's: a middling confidence, as the
# lexicon scorer gives a neutral without evidence.
ATTRIBUTED = EntitySentiment(sentiment="neutral", score=0.0, confidence=0.5)


@dataclass(frozen=True, slots=True)
class Mention:
    """One mention of a company: ``key`` (its symbol) named from character ``start`` on."""

    key: str
    start: int


def predictor_probabilities(predictor: Predictor) -> Probabilities:
    """The shipped model's P(neg/neu/pos) per text, through its public ``predict``."""
    return lambda texts: predictor.predict(texts, explain=False).sentiment_probs


def clauses(text: str) -> list[tuple[int, int]]:
    """The (start, end) character ranges of the text's clauses, in order, none blank."""
    cuts = [0, *(match.start() for match in _CLAUSE_BREAK.finditer(text)), len(text)]
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if text[a:b].strip()]


def attributed(text: str, start: int) -> bool:
    """Whether the name at ``start`` is cited as a source ("according to X", "analysts at X")."""
    return _ATTRIBUTION.search(text, 0, start) is not None


def locate(text: str, find_names: FindNames) -> list[Mention]:
    """Where each company that ``find_names`` sees in ``text`` is named.

    The finder says which companies a text names, not where; a name starts at a word when the
    text from that word on names one company more than the text from the next word on.
    """
    starts = [match.start() for match in _WORD.finditer(text)]
    mentions: list[Mention] = []
    later: Sequence[str] = ()
    for start in reversed(starts):
        here = find_names(text[start:])
        if len(here) > len(later):
            mentions.append(Mention(here[0], start))
        later = here
    return mentions[::-1]


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which clauses of one text each company's sentiment comes from (None: a source)."""

    text: str
    clauses: dict[str, tuple[tuple[int, int], ...] | None]


def _plan(text: str, mentions: Sequence[Mention], sources: bool) -> _Plan:
    spans = clauses(text) or [(0, len(text))]
    found: dict[str, list[tuple[int, int]]] = {}
    for mention in mentions:
        chosen = found.setdefault(mention.key, [])
        if sources and attributed(text, mention.start):
            continue  # a source here; it may still be a subject in another clause
        span = next((s for s in spans if s[0] <= mention.start < s[1]), spans[-1])
        if span not in chosen:
            chosen.append(span)
    return _Plan(text, {key: tuple(chosen) or None for key, chosen in found.items()})


def entity_probabilities(
    probabilities: Probabilities,
    texts: Sequence[str],
    mentions: Sequence[Sequence[Mention]],
    sources: bool = True,
) -> list[dict[str, np.ndarray | None]]:
    """Per text, each mentioned key's P(neg/neu/pos) (None: named only as a source; with
    ``sources=False`` the source rule is off, as the evaluation measures it).

    All clauses of all texts go to the model in one call, each distinct clause once.
    """
    plans = [_plan(text, found, sources) for text, found in zip(texts, mentions, strict=True)]
    wanted = {
        plan.text[a:b].strip()
        for plan in plans
        for spans in plan.clauses.values()
        for a, b in spans or ()
    }
    ordered = sorted(wanted)
    row = {clause: i for i, clause in enumerate(ordered)}
    probs = probabilities(ordered) if ordered else np.zeros((0, 3), dtype=np.float32)
    return [
        {
            key: None
            if spans is None
            else np.mean([probs[row[plan.text[a:b].strip()]] for a, b in spans], axis=0)
            for key, spans in plan.clauses.items()
        }
        for plan in plans
    ]


def as_record(probs: np.ndarray | None) -> EntitySentiment:
    """The record form, rounded as the scorer rounds a story's score and confidence."""
    if probs is None:
        return ATTRIBUTED
    score = float(np.clip(probs[2] - probs[0], -1.0, 1.0))
    return EntitySentiment(
        sentiment=LABELS[int(probs.argmax())],
        score=round(score, 6),
        confidence=round(float(probs.max()), 6),
    )


def needs_entities(text: str, mentions: Sequence[Mention]) -> bool:
    """Worth a model run: two or more companies, and the headline's one sentiment may not be
    theirs (it has several clauses, or names one as a source)."""
    if len({m.key for m in mentions}) < 2:
        return False
    return len(clauses(text)) > 1 or any(attributed(text, m.start) for m in mentions)


class EntityScorer:
    """Adds each tagged company's own sentiment to scored stories whose titles name several.

    Only such stories cost extra model runs (one per distinct clause that names a company), so
    the scorer's cost stays bounded by how often headlines name several companies.
    """

    def __init__(self, probabilities: Probabilities, find_names: FindNames) -> None:
        self.probabilities = probabilities
        self.find_names = find_names

    def attach(self, scored: Sequence[ScoredItem]) -> list[ScoredItem]:
        chosen: list[tuple[int, list[Mention]]] = []
        for i, story in enumerate(scored):
            if len(story.item.tickers) < 2:
                continue  # the cheap test first: most stories tag at most one company
            tagged = set(story.item.tickers)
            mentions = [m for m in locate(story.item.title, self.find_names) if m.key in tagged]
            if needs_entities(story.item.title, mentions):
                chosen.append((i, mentions))
        if not chosen:
            return list(scored)
        found = entity_probabilities(
            self.probabilities,
            [scored[i].item.title for i, _ in chosen],
            [mentions for _, mentions in chosen],
        )
        out = list(scored)
        for (i, _), per_key in zip(chosen, found, strict=True):
            out[i] = replace(out[i], entities={key: as_record(p) for key, p in per_key.items()})
        return out


__all__ = [
    "ATTRIBUTED",
    "CLAUSE_CONJUNCTIONS",
    "EntityScorer",
    "FindNames",
    "Mention",
    "Probabilities",
    "as_record",
    "attributed",
    "clauses",
    "entity_probabilities",
    "locate",
    "needs_entities",
    "predictor_probabilities",
]
