"""The soak test's generated feed: its stories reach the pipeline as the generator meant them
(one ticker each, nothing else tagged), and dedup treats each kind as intended: copies dropped,
rewrites kept and chained, originals kept and unchained."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from finsent.ingest.admit import Admission, IngestConfig
from finsent.ingest.dedup.keys import normalize_title
from finsent.ingest.generated_feed import (
    CONTEXTS,
    OUTLETS,
    VERBS,
    FeedGenerator,
    FeedShape,
    GeneratedStory,
    company_names,
    ticker_symbol,
)
from finsent.ingest.normalize import normalize
from finsent.ingest.raw import RawStory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def stories(shape: FeedShape, n: int, rate: float = 100.0) -> list[GeneratedStory]:
    generator = FeedGenerator(shape)
    return [generator.story(NOW + timedelta(seconds=i / rate)) for i in range(n)]


def test_every_company_name_is_tagged_as_its_own_ticker_alone() -> None:
    # One headline per ticker: the tagger must find no listed company in any invented name.
    generator = FeedGenerator(FeedShape())
    wrong = {}
    for ticker, name in generator.names.items():
        raw = RawStory(OUTLETS[0], f"{name} {VERBS[0]} 3% {CONTEXTS[0]}", tickers=(ticker,))
        item = normalize(raw, fetched_at=NOW, now=NOW)
        if item.tickers != (ticker,) or item.companies:
            wrong[ticker] = (item.tickers, item.companies)
    assert len(generator.names) == 4970
    assert wrong == {}


def test_generated_stories_carry_their_ticker_outlet_and_time() -> None:
    made = stories(FeedShape(), 3000)
    for i, story in enumerate(made):
        item = normalize(story.raw, fetched_at=NOW, now=NOW + timedelta(minutes=1))
        assert item.tickers == (story.ticker,)
        assert item.companies == ()
        assert item.source == story.outlet
        assert item.url == story.raw.url  # already canonical: the feed maps verdicts by it
        if story.kind != "exact":  # a copy keeps its original's time
            due = NOW + timedelta(seconds=i / 100)
            assert due - timedelta(seconds=20) <= item.published_at <= due


def test_the_shares_of_rewrites_and_copies_are_as_asked() -> None:
    kinds = Counter(s.kind for s in stories(FeedShape(), 20_000))
    assert kinds["near"] / 20_000 == pytest.approx(0.20, abs=0.01)
    assert kinds["exact"] / 20_000 == pytest.approx(0.02, abs=0.005)
    assert kinds["original"] + kinds["near"] + kinds["exact"] == 20_000


def test_titles_and_urls_are_unique_except_for_copies() -> None:
    # A ticker with many stories goes through every (verb, context) pair and then rounds.
    made = stories(FeedShape(tickers=3), 4000)
    new = [s for s in made if s.kind != "exact"]
    assert len({normalize_title(s.raw.title) for s in new}) == len(new)
    assert len({s.raw.url for s in new}) == len(new)
    originals = {s.raw.url: s.raw for s in new if s.kind == "original"}
    assert all(originals.get(s.raw.url) == s.raw for s in made if s.kind == "exact")


def test_dedup_drops_the_copies_and_chains_every_rewrite(tmp_path: Path) -> None:
    # No jitter: every original is published before its rewrites, so each rewrite must join
    # its original's chain and no original may join another's.
    made = stories(FeedShape(tickers=200, jitter_s=0.0), 3000)
    config = IngestConfig(
        state_url=f"sqlite:///{tmp_path / 'dedup.db'}",
        dedup_horizon=timedelta(hours=48),
        max_future=timedelta(hours=6),
    )
    admission = Admission.open(config, NOW)
    kind_of = {s.raw.url: s.kind for s in made}
    dropped = 0
    chained: Counter[str] = Counter()
    try:
        for first in range(0, len(made), 50):
            items = [normalize(s.raw, fetched_at=NOW, now=NOW) for s in made[first : first + 50]]
            kept, duplicates = admission.decide(items, NOW)
            admission.tracker.commit()
            dropped += duplicates
            chained.update(kind_of[i.url] for i in kept if i.chain_id != i.id)
    finally:
        admission.close()
    kinds = Counter(s.kind for s in made)
    assert dropped == kinds["exact"]
    assert chained == Counter({"near": kinds["near"]})


def test_names_symbols_and_shapes() -> None:
    names = company_names(5600)
    assert len(set(names)) == 5600
    with pytest.raises(ValueError, match="at most"):
        company_names(6000)
    assert ticker_symbol(42) == "Z0042"
    with pytest.raises(ValueError):
        FeedShape(near_share=0.9, exact_share=0.2)
    with pytest.raises(ValueError):
        FeedShape(tickers=0)
    with pytest.raises(ValueError):
        FeedShape(outlets=len(OUTLETS) + 1)
