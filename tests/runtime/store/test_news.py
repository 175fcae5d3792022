from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from finsent.core.records import ScoredItem, WindowStat
from finsent.runtime.store import Commit, Store, as_utc, late_items, scored_items, windows

ScoredFactory = Callable[[int], ScoredItem]
WindowFactory = Callable[..., WindowStat]


def test_restatement_wins_over_a_replayed_older_version(
    store: Store, make_window: WindowFactory
) -> None:
    restated = make_window(version=2, count=4)
    store.commit(Commit(stage="agg", windows=[restated]))
    store.commit(Commit(stage="agg", windows=[make_window(version=1, count=3)]))
    [row] = store.query(windows)
    assert (row["version"], row["count"]) == (2, 4)
    assert as_utc(row["window_start"]) == restated.window_start
    assert row["size_seconds"] == 15 * 60


def test_one_batch_may_carry_a_window_twice(store: Store, make_window: WindowFactory) -> None:
    # PostgreSQL refuses an upsert that touches one row twice; the newer version must win.
    batch = [make_window(version=2, count=4), make_window(version=1)]
    store.commit(Commit(stage="agg", windows=batch))
    [row] = store.query(windows)
    assert (row["version"], row["count"]) == (2, 4)


def test_scored_items_keep_their_story_and_verdict(
    store: Store, make_scored: ScoredFactory
) -> None:
    story = make_scored(7)
    store.commit(Commit(stage="router", scored=[story]))
    [row] = store.query(scored_items)
    assert (row["id"], row["title"], row["topic"]) == ("s7", "story 7", "Markets")
    assert as_utc(row["published_at"]) == story.item.published_at


def test_existing_ids_answers_for_more_ids_than_one_query_holds(
    store: Store, make_scored: ScoredFactory
) -> None:
    store.commit(Commit(stage="router", scored=[make_scored(i) for i in (1, 700, 1100)]))
    asked = [f"s{i}" for i in range(1200)]  # several IN (...) chunks
    assert store.existing_ids(asked) == {"s1", "s700", "s1100"}
    assert store.existing_ids([]) == set()


def test_late_items_are_upserted_by_story_and_window(
    store: Store, make_window: WindowFactory
) -> None:
    w = make_window()
    row = {
        "item_id": "s1",
        "key": w.key,
        "window_start": w.window_start,
        "window_end": w.window_end,
        "action": "restated",
        "version": 2,
        "published_at": w.window_start,
        "title": "story 1",
        "seen_at": w.window_end + timedelta(hours=1),
    }
    store.commit(Commit(stage="agg", late=[row]))
    store.commit(Commit(stage="agg", late=[{**row, "version": 3}]))
    [stored] = store.query(late_items)
    assert (stored["action"], stored["version"]) == ("restated", 3)
