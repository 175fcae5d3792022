from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest
from support.records import news_item, scored_item

from finsent.core.records import ScoredItem, decode, encode
from finsent.model.entity_sentiment import (
    ATTRIBUTED,
    EntityScorer,
    Mention,
    as_record,
    attributed,
    clauses,
    entity_probabilities,
    locate,
    needs_entities,
)

COMPANIES = {
    "UBS": "UBS",
    "Credit Suisse": "CSGN",
    "Nvidia": "NVDA",
    "Intel": "INTC",
    "Tesla": "TSLA",
    "Goldman Sachs": "GS",
    "Bank of America": "BAC",
    "Wells Fargo": "WFC",
}
_NAME = re.compile(r"\b(" + "|".join(sorted(COMPANIES, key=len, reverse=True)) + r")\b")


def find_names(text: str) -> list[str]:
    """A stand-in for the tagger's ``company_index().find_names``: symbols in order."""
    return [COMPANIES[m.group(1)] for m in _NAME.finditer(text)]


class WordModel:
    """A fake model: a text is negative or positive by its first cue word, else neutral.
    Records every call, so tests can count model runs."""

    NEGATIVE = {"sinks", "slides", "plunge", "plunges", "misses", "collapse"}
    POSITIVE = {"surges", "jumps", "jump", "beats", "rises"}

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = []
        for text in texts:
            words = re.findall(r"[a-z]+", text.lower())
            cue = next((w for w in words if w in self.NEGATIVE | self.POSITIVE), None)
            if cue in self.NEGATIVE:
                out.append([0.9, 0.08, 0.02])
            elif cue in self.POSITIVE:
                out.append([0.02, 0.18, 0.8])
            else:
                out.append([0.1, 0.8, 0.1])
        return np.array(out, dtype=np.float32).reshape(len(texts), 3)


def pieces(text: str) -> list[str]:
    return [text[a:b] for a, b in clauses(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Nvidia surges as Intel sinks", ["Nvidia surges", " as Intel sinks"]),
        (
            "Bank of America beats estimates, but Wells Fargo misses",
            ["Bank of America beats estimates", ", but Wells Fargo misses"],
        ),
        ("Oil rises; gold slides. Stocks flat", ["Oil rises", "; gold slides.", " Stocks flat"]),
        # "and" mostly joins names that share one verb: not a clause break
        ("Brent and U.S. Crude rise 1%", ["Brent and U.S. Crude rise 1%"]),
        ("Chase reports profit", ["Chase reports profit"]),
        ("", []),
    ],
)
def test_clauses_split_at_sentences_semicolons_and_clause_conjunctions(
    text: str, expected: list[str]
) -> None:
    assert pieces(text) == expected


def test_clauses_cover_the_text_in_order() -> None:
    text = "Tesla jumps after results, while Intel sinks as demand fades; UBS flat"
    spans = clauses(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_a_company_cited_as_a_source_is_attributed() -> None:
    text = "Tesla jumps, according to Goldman Sachs; analysts at UBS see more"
    assert attributed(text, text.index("Goldman"))
    assert attributed(text, text.index("UBS"))
    assert not attributed(text, text.index("Tesla"))
    assert not attributed("Goldman Sachs says Tesla jumps", 0)  # a speaker may be the subject


def test_locate_finds_each_mention_where_it_starts() -> None:
    text = "Credit Suisse plunges as UBS agrees to buy Credit Suisse"
    assert locate(text, find_names) == [
        Mention("CSGN", 0),
        Mention("UBS", text.index("UBS")),
        Mention("CSGN", text.rindex("Credit")),
    ]
    assert locate("No company here", find_names) == []
    assert locate("", find_names) == []


def test_each_company_gets_its_own_clause() -> None:
    text = "Nvidia surges as Intel sinks on weak outlook"
    model = WordModel()
    (found,) = entity_probabilities(model, [text], [locate(text, find_names)])
    assert as_record(found["NVDA"]).sentiment == "positive"
    assert as_record(found["INTC"]).sentiment == "negative"
    assert model.calls == [["Nvidia surges", "as Intel sinks on weak outlook"]]


def test_companies_in_one_clause_share_it_and_repeats_average_their_clauses() -> None:
    text = "UBS jumps as Credit Suisse sinks; Credit Suisse with UBS"
    model = WordModel()
    (found,) = entity_probabilities(model, [text], [locate(text, find_names)])
    # UBS: "UBS jumps" and "with UBS" (neutral); Credit Suisse: "as Credit Suisse sinks" and
    # "; Credit Suisse" (neutral).
    assert np.allclose(found["UBS"], np.mean([[0.02, 0.18, 0.8], [0.1, 0.8, 0.1]], axis=0))
    assert np.allclose(found["CSGN"], np.mean([[0.9, 0.08, 0.02], [0.1, 0.8, 0.1]], axis=0))


def test_a_source_is_neutral_unless_also_a_subject() -> None:
    texts = [
        "Tesla jumps after analysts at Goldman Sachs upgrade it",
        "Goldman Sachs slides, according to UBS; analysts at UBS expect more",
    ]
    model = WordModel()
    first, second = entity_probabilities(model, texts, [locate(t, find_names) for t in texts])
    assert first["GS"] is None and as_record(first["GS"]) == ATTRIBUTED
    assert as_record(first["TSLA"]).sentiment == "positive"
    assert second["UBS"] is None
    assert as_record(second["GS"]).sentiment == "negative"
    # with the rule off, a source takes its clause's sentiment
    (off,) = entity_probabilities(model, texts[:1], [locate(texts[0], find_names)], sources=False)
    assert off["GS"] is not None


def test_one_model_call_with_each_distinct_clause_once() -> None:
    texts = ["Nvidia surges as Intel sinks", "Intel sinks as Nvidia surges", "UBS plunges"]
    model = WordModel()
    entity_probabilities(model, texts, [locate(t, find_names) for t in texts])
    assert len(model.calls) == 1
    assert sorted(model.calls[0]) == sorted(
        {"Nvidia surges", "as Intel sinks", "Intel sinks", "as Nvidia surges", "UBS plunges"}
    )


def test_record_rounds_as_the_scorer_does() -> None:
    record = as_record(np.array([0.1234567891, 0.2, 0.6765432109]))
    assert record.sentiment == "positive"
    assert record.score == round(0.6765432109 - 0.1234567891, 6)
    assert record.confidence == round(0.6765432109, 6)


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("Nvidia surges as Intel sinks", True),  # two companies, two clauses
        ("Tesla jumps, analysts at Goldman Sachs say", True),  # a source
        ("UBS agrees to buy Credit Suisse", False),  # one clause: the headline's is theirs
        ("Nvidia surges as chips rally", False),  # one company
    ],
)
def test_needs_entities_only_where_companies_may_differ(text: str, wanted: bool) -> None:
    assert needs_entities(text, locate(text, find_names)) is wanted


def story(title: str, tickers: tuple[str, ...]) -> ScoredItem:
    return scored_item(news_item(id=title[:20], title=title, tickers=tickers))


def test_attach_scores_only_stories_naming_several_tagged_companies() -> None:
    model = WordModel()
    scorer = EntityScorer(model, find_names)
    stories = [
        story("Nvidia surges as Intel sinks", ("NVDA", "INTC")),
        story("Nvidia surges as Intel sinks", ("NVDA",)),  # Intel not tagged: left out
        story("UBS agrees to buy Credit Suisse", ("UBS", "CSGN")),  # one clause
        story("Tesla jumps as rivals slide", ("TSLA",)),
    ]
    out = scorer.attach(stories)
    assert [s.item for s in out] == [s.item for s in stories]
    assert set(out[0].entities) == {"NVDA", "INTC"}
    assert out[0].entities["INTC"].sentiment == "negative"
    assert out[0].entities["NVDA"].sentiment == "positive"
    assert [s.entities for s in out[1:]] == [{}, {}, {}]
    assert model.calls == [["Nvidia surges", "as Intel sinks"]]
    assert decode(ScoredItem, encode(out[0])) == out[0]


def test_attach_runs_no_model_when_no_story_needs_it() -> None:
    model = WordModel()
    stories = [story("UBS agrees to buy Credit Suisse", ("UBS", "CSGN"))]
    assert EntityScorer(model, find_names).attach(stories) == stories
    assert model.calls == []


# -- the shipped model ------------------------------------------------------------------------


@pytest.mark.weights
def test_the_shipped_model_tells_companies_apart_in_one_headline() -> None:
    from finsent.model.entity_sentiment import predictor_probabilities
    from finsent.model.infer import AttentionScorer

    scorer = AttentionScorer(threads=1)
    entities = EntityScorer(predictor_probabilities(scorer.predictor), find_names)
    titles = {
        "rescue": (
            "Credit Suisse shares plunge 60% as UBS agrees to buy it in emergency rescue",
            ("CSGN", "UBS"),
        ),
        "split": ("Nvidia surges as Intel sinks on weak outlook", ("NVDA", "INTC")),
        "source": (
            "Tesla shares jump after analysts at Goldman Sachs upgrade the stock",
            ("TSLA", "GS"),
        ),
        "deal": ("UBS agrees to buy Credit Suisse", ("UBS", "CSGN")),
    }
    items = [news_item(id=k, title=t, tickers=tickers) for k, (t, tickers) in titles.items()]
    rescue, split, source, deal = entities.attach(scorer.score(items))

    assert rescue.sentiment == "negative"  # the headline's: it was both companies' before
    assert rescue.entities["CSGN"].sentiment == "negative"
    assert rescue.entities["UBS"].sentiment != "negative"
    assert split.entities["NVDA"].sentiment == "positive"
    assert split.entities["INTC"].sentiment == "negative"
    assert source.entities["TSLA"].sentiment == "positive"
    assert source.entities["GS"] == ATTRIBUTED
    # One clause, no source: nothing to tell apart; both take the headline's sentiment.
    assert deal.entities == {}
