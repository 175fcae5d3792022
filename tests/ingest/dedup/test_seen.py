from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, update

from finsent.ingest.dedup import SeenEntry, SeenStore, url_key
from finsent.runtime.store import SCHEMA_VERSION, Store, StoreSchemaError, store_meta

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def test_seen_store_remember_lookup_and_prune() -> None:
    store = SeenStore("sqlite://")
    entry = SeenEntry(
        kind="url",
        key=url_key("https://a.example/1"),
        story_id="s1",
        chain_id="s1",
        first_seen=T0,
        event_time=T0 - timedelta(minutes=5),
        tickers=("AAPL", "MSFT"),
    )
    store.remember(entry)
    store.remember(replace(entry, story_id="other"))  # kept: the first writer wins
    assert store.lookup("url", entry.key) == entry
    assert store.lookup("title", entry.key) is None
    store.remember(replace(entry, story_id="other"), replace=True)
    assert store.lookup("url", entry.key).story_id == "other"  # type: ignore[union-attr]
    many = [
        SeenEntry(
            kind="title",
            key=f"k{i}",
            story_id=f"s{i}",
            chain_id=f"s{i}",
            first_seen=T0 + timedelta(days=i),
            event_time=T0,
        )
        for i in range(1200)  # more than one IN (...) chunk
    ]
    assert store.remember_many(many) == 1200
    assert len(store.lookup_many([("title", e.key) for e in many] + [("url", "nope")])) == 1200
    assert store.forget_older_than(T0 + timedelta(days=600)) == 601
    assert store.count() == 600


def test_signatures_are_reloaded_from_a_time_oldest_first() -> None:
    store = SeenStore("sqlite://")
    base = SeenEntry(kind="title", key="", story_id="", chain_id="c", first_seen=T0, event_time=T0)
    store.remember_many(
        [
            replace(
                base, key="a", story_id="a", event_time=T0 + timedelta(hours=2), signature=b"1"
            ),
            replace(base, key="b", story_id="b", event_time=T0, signature=b"2"),
            replace(base, key="c", story_id="c", event_time=T0 + timedelta(hours=3)),  # unsigned
            replace(
                base, key="d", story_id="d", event_time=T0 - timedelta(hours=1), signature=b"3"
            ),
        ]
    )
    assert [e.story_id for e in store.signatures_since(T0)] == ["b", "a"]
    assert store.newest_signature_time() == T0 + timedelta(hours=2)
    assert SeenStore("sqlite://").newest_signature_time() is None


def test_a_dedup_database_of_its_own_gets_the_one_schema(tmp_path: Path) -> None:
    store = SeenStore(f"sqlite:///{tmp_path / 'state' / 'ingest.db'}")
    try:
        assert "ingest_seen" in inspect(store.engine).get_table_names()
        with store.engine.connect() as conn:
            assert conn.execute(store_meta.select()).one().value == str(SCHEMA_VERSION)
    finally:
        store.close()


def test_a_dedup_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ingest.db'}"
    store = SeenStore(url)
    with store.engine.begin() as conn:
        conn.execute(update(store_meta).values(value=str(SCHEMA_VERSION + 1)))
    store.close()
    with pytest.raises(StoreSchemaError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SeenStore(url)


def test_sharing_the_main_stores_engine_leaves_it_open(tmp_path: Path) -> None:
    main = Store(f"sqlite:///{tmp_path / 'store.db'}")
    seen = SeenStore(main.engine)
    entry = SeenEntry(kind="url", key="k", story_id="s", chain_id="s", first_seen=T0, event_time=T0)
    with main.engine.begin() as conn:  # the caller's transaction, e.g. with its offsets
        seen.remember_many([entry], conn=conn)
    seen.close()  # not its engine to dispose
    assert SeenStore(main.engine).lookup("url", "k") == entry
    main.close()
