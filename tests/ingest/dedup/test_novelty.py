from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.records import news_item

from finsent.core.records import NewsItem, stable_id
from finsent.ingest.dedup import (
    NoveltyConfig,
    NoveltyTracker,
    SeenStore,
    Verdict,
    apply_verdict,
    normalize_title,
    novelty_score,
    shingles,
)

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=30)  # a wall clock after every story below

FED = "Fed holds rates steady, signals patience"
FED_2 = "Fed holds interest rates steady and signals patience"
FED_3 = "UPDATE 1-Fed holds rates steady, signals patience on cuts"
UNRELATED = "Oil prices fall as U.S. crude inventories rise"


def story(
    title: str,
    *,
    url: str | None = None,
    at: datetime = T0,
    source: str = "wire",
    body: str = "",
    tickers: tuple[str, ...] = (),
) -> NewsItem:
    if url is None:  # each outlet's copy has its own canonical URL
        url = f"https://{source}.example/{re.sub(r'[^a-z0-9]+', '-', title.lower())}"
    return news_item(
        id=stable_id(url, title, source),
        source=source,
        title=title,
        body=body,
        url=url,
        published_at=at,
        tickers=tickers,
    )


def tracker(url: str = "sqlite://", **config: object) -> NoveltyTracker:
    return NoveltyTracker(SeenStore(url), NoveltyConfig(**config))  # type: ignore[arg-type]


def run(items: Sequence[NewsItem], t: NoveltyTracker | None = None) -> list[Verdict]:
    t = t or tracker()
    return [t.process(item, NOW) for item in items]


def test_duplicate_by_canonical_url() -> None:
    first = story(FED, url="https://wire.example/fed")
    retitled = story(
        "Fed stands pat on rates", url="https://wire.example/fed", at=T0 + timedelta(hours=1)
    )
    v1, v2 = run([first, retitled])
    assert v1 == Verdict(kind="new", story_id=first.id, chain_id=first.id, novelty=100.0)
    assert v2.kind == "duplicate" and v2.duplicate_by == "url"
    assert v2.duplicate_of == first.id and v2.chain_id == first.id and v2.novelty == 0.0


def test_duplicate_by_title_hash_across_case_and_punctuation() -> None:
    first = story(FED, source="wire")
    shouted = story("FED HOLDS RATES STEADY — SIGNALS PATIENCE!", source="blog")
    # The blog's URL is now remembered too: its next poll, retitled, is caught by URL.
    repoll = story("Fed: no change", url=shouted.url, source="blog", at=T0 + timedelta(hours=2))
    verdicts = run([first, shouted, repoll])
    assert [v.kind for v in verdicts] == ["new", "duplicate", "duplicate"]
    assert [v.duplicate_by for v in verdicts[1:]] == ["title", "url"]
    assert all(v.duplicate_of == first.id and v.chain_id == first.id for v in verdicts[1:])


def test_syndicated_variants_join_one_chain_with_decreasing_novelty() -> None:
    items = [
        story(FED, source="reuters"),
        story(FED_2, source="yahoo", at=T0 + timedelta(minutes=10)),
        story(FED_3, source="marketwatch", at=T0 + timedelta(minutes=20)),
        story(UNRELATED, source="reuters", at=T0 + timedelta(minutes=30)),
    ]
    verdicts = run(items)
    assert [v.kind for v in verdicts] == ["new", "repeat", "repeat", "new"]
    assert [v.chain_id for v in verdicts[:3]] == [items[0].id] * 3
    assert [v.novelty for v in verdicts] == [100.0, 75.0, 56.25, 100.0]
    assert verdicts[3].chain_id == items[3].id
    assert verdicts[1].similar_to == items[0].id and (verdicts[1].similarity or 0) >= 0.5
    assert apply_verdict(items[2], verdicts[2]).novelty == 56.25
    assert apply_verdict(items[2], verdicts[2]).chain_id == items[0].id


def test_template_headlines_about_different_tickers_stay_apart() -> None:
    apple = story("Apple shares rise after earnings beat", tickers=("AAPL",))
    msft = story("Microsoft shares rise after earnings beat", tickers=("MSFT",))
    assert [v.kind for v in run([apple, msft])] == ["new", "new"]


def test_short_titles_lean_on_the_body() -> None:
    body_a = (
        "Shares of Nvidia slumped in early trade after export curbs were widened to more chips."
    )
    body_b = "The Nasdaq closed at a record as software stocks extended their rally into the close."
    a = story("Market update", source="a", body=body_a)
    b = story("Market update!", url="https://b.example/1", source="b", body=body_b)
    # Same normalized title, so still an exact duplicate: the body matters for near-dups only.
    assert run([a, b])[1].kind == "duplicate"
    c = story("Markets update", source="c", body=body_b)
    assert [v.kind for v in run([a, c])] == ["new", "new"]


def test_horizon_eviction_makes_an_old_story_new_again() -> None:
    late = T0 + timedelta(days=3)
    verdicts = run([story(FED, source="reuters"), story(FED_2, source="yahoo", at=late)])
    assert verdicts[1].kind == "new" and verdicts[1].novelty == 100.0
    assert verdicts[1].chain_id != verdicts[0].chain_id
    within = run(
        [story(FED, source="reuters"), story(FED_2, source="yahoo", at=T0 + timedelta(hours=47))]
    )
    assert within[1].kind == "repeat"
    # A 72 h horizon still holds it.
    wide = tracker(horizon=timedelta(hours=72))
    assert (
        run([story(FED, source="reuters"), story(FED_2, source="yahoo", at=late)], wide)[1].kind
        == "repeat"
    )


def test_recurring_title_is_new_after_the_horizon_but_a_url_never_is() -> None:
    daily = "Stocks making the biggest moves midday"
    first = story(daily, url="https://tv.example/2026/03/02/moves")
    next_day = story(daily, url="https://tv.example/2026/03/03/moves", at=T0 + timedelta(hours=24))
    three_days = story(daily, url="https://tv.example/2026/03/05/moves", at=T0 + timedelta(days=3))
    old_url = story(daily, url=first.url, at=T0 + timedelta(days=3, hours=1))
    verdicts = run([first, next_day, three_days, old_url])
    assert [v.kind for v in verdicts] == ["new", "duplicate", "new", "duplicate"]
    assert verdicts[2].novelty == 100.0 and verdicts[2].chain_id == three_days.id
    assert verdicts[3].duplicate_by == "url" and verdicts[3].duplicate_of == first.id


def test_novelty_decay_is_monotone_and_never_negative() -> None:
    scores = [novelty_score(k) for k in range(60)]
    assert scores[:4] == [100.0, 75.0, 56.25, 42.19]
    assert all(a >= b >= 0.0 for a, b in zip(scores, scores[1:], strict=False))


def test_chain_novelty_counts_only_stories_still_in_the_horizon() -> None:
    # A rolling story: each copy within 30 h of the previous, so the chain lives on while its
    # oldest members leave the 48 h horizon and stop counting.
    variants = [
        FED,
        "Fed holds rates steady and signals patience",
        "Fed holds rates steady, signals patience - Reuters",
        "Fed holds key rates steady, signals patience",
    ]
    items = [
        story(title, source=f"s{i}", at=T0 + timedelta(hours=30 * i))
        for i, title in enumerate(variants)
    ]
    verdicts = run(items)
    assert [v.kind for v in verdicts] == ["new", "repeat", "repeat", "repeat"]
    assert len({v.chain_id for v in verdicts}) == 1
    assert [v.novelty for v in verdicts] == [100.0, 75.0, 75.0, 75.0]


def test_future_dated_story_cannot_evict_the_horizon() -> None:
    t = tracker()
    t.process(story(FED, source="reuters"), T0 + timedelta(minutes=5))
    skewed = story(UNRELATED, at=T0 + timedelta(days=5))  # a feed clock five days ahead
    t.process(skewed, T0 + timedelta(minutes=6))
    assert (
        t.process(
            story(FED_2, source="yahoo", at=T0 + timedelta(minutes=7)), T0 + timedelta(minutes=7)
        ).kind
        == "repeat"
    )


def test_batch_matches_one_by_one_and_sees_its_own_members() -> None:
    items = [
        story(FED, source="reuters"),
        story(FED, source="reuters"),  # redelivered within the batch
        story(FED_2, source="yahoo", at=T0 + timedelta(minutes=1)),
        story(UNRELATED, at=T0 + timedelta(minutes=2)),
        story(UNRELATED.upper(), source="blog", at=T0 + timedelta(minutes=3)),
    ]
    t = tracker()
    batched = t.process_batch(items, NOW)
    assert batched == run(items)
    assert [v.kind for v in batched] == ["new", "duplicate", "repeat", "new", "duplicate"]
    assert t.pending == 0 and t.store.count() == 7  # 3 kept stories x 2 keys + the blog's URL


def test_decide_batch_writes_nothing_until_commit() -> None:
    store = SeenStore("sqlite://")
    t = NoveltyTracker(store)
    t.decide_batch([story(FED), story(UNRELATED)], NOW)
    assert t.pending == 4 and store.count() == 0
    assert NoveltyTracker.restore(store, NOW).indexed == 0
    assert t.commit() == 4 and store.count() == 4
    assert NoveltyTracker.restore(store, NOW).indexed == 2


def test_restart_rebuilds_chains_novelty_and_duplicates(tmp_path: Path) -> None:
    before = [
        story(FED, source="reuters"),
        story(FED_2, source="yahoo", at=T0 + timedelta(minutes=10)),
        story(UNRELATED, at=T0 + timedelta(minutes=20)),
        story("Ancient history headline nobody repeats", at=T0 - timedelta(days=4)),
    ]
    after = [
        story(FED_3, source="marketwatch", at=T0 + timedelta(minutes=30)),  # third in chain
        story(FED, source="reuters", at=T0 + timedelta(minutes=31)),  # same URL
        story(UNRELATED.lower() + "!", source="blog", at=T0 + timedelta(minutes=32)),  # title
        story(
            "Oil prices fall as US crude inventories rise again",
            source="ft",
            at=T0 + timedelta(hours=1),
        ),
    ]
    expected = run(before + after)

    url = f"sqlite:///{tmp_path / 'state' / 'seen.db'}"
    first = NoveltyTracker(SeenStore(url))
    got = [first.process(item, NOW) for item in before]
    first.store.close()
    del first

    store = SeenStore(url)
    second = NoveltyTracker.restore(store, NOW)
    assert second.indexed == 3  # the four-day-old story is behind the horizon
    got += [second.process(item, NOW) for item in after]
    assert got == expected
    assert [v.kind for v in got[4:]] == ["repeat", "duplicate", "duplicate", "repeat"]
    assert got[4].chain_id == before[0].id and got[4].novelty == 56.25
    assert got[7].chain_id == before[2].id and got[7].novelty == 75.0
    store.close()


def test_prune_refuses_to_cut_into_the_horizon() -> None:
    t = tracker()
    t.process(story(FED), NOW)
    with pytest.raises(ValueError, match="horizon"):
        t.prune(NOW, keep=timedelta(hours=1))
    assert t.prune(NOW + timedelta(days=31)) == 2


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        NoveltyConfig(threshold=1.5)
    with pytest.raises(ValueError):
        NoveltyConfig(num_perm=66)
    with pytest.raises(ValueError):
        NoveltyConfig(horizon=timedelta(0))


# -- properties -------------------------------------------------------------------------------

BASES = [FED, FED_2, UNRELATED, "Tesla recalls two million vehicles over Autopilot safety concerns"]
WORDS = ["fed", "rates", "apple", "iphone", "oil", "crude", "tesla", "recall", "bank", "profit"]

# A title is a known headline with a word dropped and/or one added (a syndicated variant, at
# all distances), or a few random words.
variants = st.tuples(
    st.sampled_from(BASES),
    st.integers(min_value=-1, max_value=9),  # which word to drop; -1: none
    st.sampled_from(["", "Reuters", "update", "cuts"]),
).map(lambda t: " ".join(w for i, w in enumerate(t[0].split()) if i != t[1]) + " " + t[2])
titles = st.one_of(
    variants, variants, st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)
)

stories = st.lists(
    st.tuples(
        titles,
        st.sampled_from(["unique", "unique", "unique", "", "https://x.example/1"]),
        st.integers(min_value=0, max_value=60),  # hours after T0, in any order
        st.booleans(),  # shout it: upper case and punctuation
        st.sampled_from([(), (), (), ("AAPL",), ("TSLA",)]),
    ),
    max_size=16,
)


def build(spec: list) -> tuple[list[NewsItem], list[datetime]]:
    items, nows, newest = [], [], T0
    for i, (title, url, hours, shout, tickers) in enumerate(spec):
        title = title.upper() + "!" if shout else title
        url = f"https://u.example/{i}" if url == "unique" else url
        at = T0 + timedelta(hours=hours)
        items.append(story(title, url=url, at=at, tickers=tickers))
        newest = max(newest, at)
        nows.append(newest + timedelta(minutes=5))  # the wall clock only moves forward
    return items, nows


@given(stories, st.integers(min_value=0, max_value=16))
def test_properties_bounds_first_occurrence_determinism_restart(spec: list, cut: int) -> None:
    items, nows = build(spec)
    t = tracker()
    verdicts = [t.process(item, now) for item, now in zip(items, nows, strict=True)]

    seen_titles: set[str] = set()
    seen_urls: set[str] = set()
    earlier: list[set[str]] = []
    for item, verdict in zip(items, verdicts, strict=True):
        assert 0.0 <= verdict.novelty <= 100.0
        if verdict.kind == "new":
            assert verdict.novelty == 100.0 and verdict.chain_id == item.id
        elif verdict.kind == "repeat":
            assert 0.0 < verdict.novelty < 100.0 and verdict.similar_to is not None
        else:
            assert verdict.novelty == 0.0 and verdict.duplicate_of is not None
        title = normalize_title(item.title)
        grams = shingles(item.title)
        if title not in seen_titles and (not item.url or item.url not in seen_urls):
            assert verdict.kind != "duplicate"
            # Nothing earlier comes near it: MinHash cannot reach 0.5 from a true J < 0.2.
            if all(len(grams & g) / len(grams | g) < 0.2 for g in earlier):
                assert verdict.kind == "new" and verdict.novelty == 100.0
        seen_titles.add(title)
        seen_urls.add(item.url)
        earlier.append(grams)

    again = tracker()
    assert [again.process(item, now) for item, now in zip(items, nows, strict=True)] == verdicts

    cut = min(cut, len(items))
    store = SeenStore("sqlite://")
    first = NoveltyTracker(store)
    resumed = [first.process(item, now) for item, now in zip(items[:cut], nows[:cut], strict=True)]
    second = NoveltyTracker.restore(SeenStore(store.engine), nows[cut - 1] if cut else T0)
    resumed += [
        second.process(item, now) for item, now in zip(items[cut:], nows[cut:], strict=True)
    ]
    assert resumed == verdicts


@given(
    st.lists(st.tuples(variants, st.integers(min_value=0, max_value=60)), min_size=2, max_size=10),
    st.integers(min_value=1, max_value=9),
)
def test_property_chains_survive_a_restart_anywhere(spec: list, cut: int) -> None:
    # Syndicated variants only, each copy from its own outlet: long chains, out of order.
    items = [
        story(title, source=f"s{i}", at=T0 + timedelta(hours=hours))
        for i, (title, hours) in enumerate(spec)
    ]
    expected = run(items)
    store = SeenStore("sqlite://")
    cut = min(cut, len(items) - 1)
    got = run(items[:cut], NoveltyTracker(store))
    got += run(items[cut:], NoveltyTracker.restore(SeenStore(store.engine), NOW))
    assert got == expected
