"""The router's logic in process, driven by the test kit (no broker): each scored story fans
out into one keyed point per series, in story order; a redelivered story is passed on once,
whether the copy is in the same batch, a later one, or already in the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.records import T0, scored_item
from support.stage_logic import isolated_settings, router

from finsent.core.records import KeyedPoint, SeriesPoint
from finsent.core.settings import Settings
from finsent.runtime.metrics import REGISTRY
from finsent.runtime.store import Commit, Store, scored_items
from finsent.runtime.testing import run_logic


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return isolated_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.database_url)


def duplicates_counted() -> float:
    return REGISTRY.get_sample_value("finsent_duplicates_total", {"stage": "router"}) or 0.0


def test_each_story_fans_out_to_its_series_in_story_order(settings: Settings, store: Store) -> None:
    first = scored_item(id="s1", topic="Earnings", tickers=("AAPL", "MSFT", "AAPL"))
    second = scored_item(id="s2", source="dow", topic="Macro")

    run = run_logic(router(settings, store), [first, second], store, lambda: T0, stage="router")

    assert [key for key, _ in run.outputs] == [
        "overall",
        "topic:Earnings",
        "source:wire",
        "ticker:AAPL",  # a ticker named twice is one series
        "ticker:MSFT",
        "overall",
        "topic:Macro",
        "source:dow",
    ]
    assert all(record.key == key for key, record in run.outputs)  # the Kafka key is the series
    assert [record.point for _, record in run.outputs] == (
        [SeriesPoint.of(first)] * 5 + [SeriesPoint.of(second)] * 3
    )
    assert sorted(r["id"] for r in store.query(scored_items)) == ["s1", "s2"]
    assert run.offsets == {("news.scored", 0): 2}


def test_a_story_redelivered_in_one_batch_or_a_later_one_is_routed_once(
    settings: Settings, store: Store
) -> None:
    s1, s2, s3 = (scored_item(id=f"s{i}") for i in (1, 2, 3))
    # Batches of two: [s1, s2] [s1, s3] [s3, s2]: a copy in its own batch and in later ones.
    stories = [s1, s2, s1, s3, s3, s2]
    before = duplicates_counted()

    run = run_logic(
        router(settings, store), stories, store, lambda: T0, stage="router", batch_size=2
    )

    ids = [record.point.id for _, record in run.outputs]
    assert ids == ["s1"] * 3 + ["s2"] * 3 + ["s3"] * 3  # overall, topic, source: once each
    assert duplicates_counted() - before == 3
    assert store.count(scored_items) == 3
    assert run.offsets == {("news.scored", 0): 6}


def test_stories_already_in_the_store_are_skipped(settings: Settings, store: Store) -> None:
    stored = scored_item(id="old", title="Stored by an earlier router batch")
    store.commit(Commit(stage="router", scored=[stored]))  # a batch replayed after a crash

    run = run_logic(
        router(settings, store),
        [stored, scored_item(id="new")],
        store,
        lambda: T0,
        stage="router",
    )

    assert {record.point.id for _, record in run.outputs} == {"new"}
    assert all(isinstance(record, KeyedPoint) for _, record in run.outputs)
    assert sorted(r["id"] for r in store.query(scored_items)) == ["new", "old"]
    assert run.offsets == {("news.scored", 0): 2}  # past the skipped story too


def test_a_payload_that_is_not_a_scored_story_is_a_dead_letter(
    settings: Settings, store: Store
) -> None:
    run = run_logic(
        router(settings, store),
        [b'{"schema": 1, "topic": "Earnings"}', scored_item(id="s1")],
        store,
        lambda: T0,
        stage="router",
    )

    [letter] = run.dead
    assert letter.stage == "router" and letter.offset == 0
    assert letter.reason == "item: Field required (+5 more)"  # what is wrong with it
    assert {record.point.id for _, record in run.outputs} == {"s1"}


def test_a_story_too_long_for_the_store_s_columns_is_a_dead_letter_not_a_crash_loop(
    tmp_path: Path, postgres_url: str
) -> None:
    """PostgreSQL enforces column lengths (SQLite does not): a source or id longer than its
    column must not reach the store, where it would fail every retry of the batch."""
    settings = Settings(store_url=postgres_url, cache_dir=tmp_path / "cache")
    store = Store(settings.database_url)
    long_source = scored_item(id="s1", source="wire " * 60)  # 300 characters
    long_id = scored_item(id="s" * 80)
    fine = scored_item(id="s3")

    run = run_logic(
        router(settings, store), [long_source, long_id, fine], store, lambda: T0, stage="router"
    )

    assert [letter.offset for letter in run.dead] == [0, 1]
    assert sorted(r["id"] for r in store.query(scored_items)) == ["s3"]
    assert run.offsets == {("news.scored", 0): 3}
    store.close()
