from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from finsent.core.records import ScoredItem, WindowStat
from finsent.runtime.store import Commit, FencedError, Store, scored_items, windows

ScoredFactory = Callable[[int], ScoredItem]
WindowFactory = Callable[..., WindowStat]


def test_replaying_a_batch_has_exactly_one_effect(
    store: Store, make_scored: ScoredFactory, make_window: WindowFactory
) -> None:
    batch = Commit(
        stage="agg",
        offsets={("news.scored", 0): 10},
        scored=[make_scored(1), make_scored(2)],
        windows=[make_window()],
    )
    store.commit(batch)
    store.commit(batch)
    assert len(store.query(scored_items)) == 2
    assert len(store.query(windows)) == 1
    assert store.load_offsets("agg") == {("news.scored", 0): 10}


def test_state_and_offsets_are_per_stage(store: Store) -> None:
    store.commit(Commit(stage="a", offsets={("t", 0): 5}, state_put={"k1": {"x": 1}, "k2": [1, 2]}))
    store.commit(Commit(stage="b", offsets={("t", 0): 9}, state_put={"k1": {"x": 2}}))
    store.commit(Commit(stage="a", offsets={("t", 0): 7, ("t", 1): 3}, state_delete={"k2"}))
    assert store.load_state("a") == {"k1": {"x": 1}}
    assert store.load_offsets("a") == {("t", 0): 7, ("t", 1): 3}
    assert store.load_offsets("b") == {("t", 0): 9}


def test_state_can_be_loaded_by_key_prefix_taken_literally(store: Store) -> None:
    state = {"win:a": 1, "win:b": 2, "base:a": 3, "win%x": 4}
    store.commit(Commit(stage="agg", state_put=state))
    assert store.load_state("agg", prefix="win:") == {"win:a": 1, "win:b": 2}
    assert store.load_state("agg", prefix="win%") == {"win%x": 4}  # no LIKE wildcard


def test_a_failed_commit_changes_nothing(store: Store, make_scored: ScoredFactory) -> None:
    good = Commit(stage="a", offsets={("t", 0): 1}, scored=[make_scored(1)])
    store.commit(good)
    broken = dataclasses.replace(
        good, offsets={("t", 0): 2}, scored=[make_scored(2)], state_put={"k": object()}
    )
    with pytest.raises(Exception):  # noqa: B017 - any driver error; the point is atomicity
        store.commit(broken)
    assert store.load_offsets("a") == {("t", 0): 1}
    assert [r["id"] for r in store.query(scored_items)] == ["s1"]


def test_offsets_beyond_32_bits_round_trip(store: Store) -> None:
    store.commit(Commit(stage="a", offsets={("t", 0): 2**31 + 5}))
    assert store.load_offsets("a") == {("t", 0): 2**31 + 5}


def test_a_fenced_commit_changes_nothing(store: Store) -> None:
    """Offsets apply only from the position the batch started at: a member that lost the
    partition cannot overwrite the new owner's progress."""
    store.commit(Commit(stage="agg", offsets={("k", 0): 5}, expected={("k", 0): None}))
    stale = Commit(
        stage="agg",
        offsets={("k", 0): 9},
        expected={("k", 0): None},  # it believed nothing was stored yet
        state_put={"x": 1},
    )
    with pytest.raises(FencedError):
        store.commit(stale)
    with pytest.raises(FencedError):
        store.commit(dataclasses.replace(stale, expected={("k", 0): 3}))
    assert store.load_offsets("agg") == {("k", 0): 5}
    assert store.load_state("agg") == {}
    store.commit(dataclasses.replace(stale, expected={("k", 0): 5}))
    assert store.load_offsets("agg") == {("k", 0): 9} and store.load_state("agg") == {"x": 1}


def test_a_commit_of_state_alone_is_fenced_on_the_partitions_it_expects(store: Store) -> None:
    """An idle close or a timer commits state without offsets: it applies only while the
    member's partitions are still where it left them."""
    store.commit(Commit(stage="agg", offsets={("k", 0): 5}, expected={("k", 0): None}))
    store.commit(Commit(stage="agg", offsets={("k", 0): 9}, expected={("k", 0): 5}))  # new owner

    zombie = Commit(stage="agg", expected={("k", 0): 5, ("k", 1): None}, state_put={"x": 1})
    with pytest.raises(FencedError):
        store.commit(zombie)
    assert store.load_state("agg") == {}

    owner = dataclasses.replace(zombie, expected={("k", 0): 9, ("k", 1): None})
    store.commit(owner)
    assert store.load_state("agg") == {"x": 1}
    assert store.load_offsets("agg") == {("k", 0): 9}


def test_a_member_whose_partition_was_claimed_by_another_commits_nothing(store: Store) -> None:
    """Its offsets have not moved yet (the new owner has committed nothing), so only the claim
    tells the two apart: the old member's state-only commit is fenced, the new owner's is not."""
    store.claim("agg", [("k", 0)], "old-member")
    store.commit(
        Commit(stage="agg", offsets={("k", 0): 5}, expected={("k", 0): None}, owner="old-member")
    )
    store.claim("agg", [("k", 0)], "new-member")  # the rebalance gave it to another member

    zombie = Commit(stage="agg", expected={("k", 0): 5}, state_put={"x": 1}, owner="old-member")
    with pytest.raises(FencedError, match="claimed by another member"):
        store.commit(zombie)
    assert store.load_state("agg") == {}

    store.commit(dataclasses.replace(zombie, owner="new-member"))
    assert store.load_state("agg") == {"x": 1}
    assert store.load_offsets("agg") == {("k", 0): 5}


def test_deleting_state_of_every_batch_size_prepares_a_few_statements(store: Store) -> None:
    """Deleted state keys go in IN lists padded to a power of two: batches of 1 to 600 keys
    make a handful of SQL texts, not one each. Drivers keep each text prepared (SQLite up to
    128 a connection), and one per batch size was how the aggregator's memory grew."""
    deletes: set[str] = set()

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM STAGE_STATE"):
            deletes.add(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        for size in range(1, 601, 7):
            keys = {f"k{size}-{i}" for i in range(size)}
            store.commit(Commit(stage="agg", state_put=dict.fromkeys(keys, 1)))
            store.commit(Commit(stage="agg", state_put={"kept": size}, state_delete=keys))
            assert store.load_state("agg") == {"kept": size}
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert 1 < len(deletes) <= 11  # widths 1, 2, 4 ... 512
