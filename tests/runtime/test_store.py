from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from finsent.core.records import Alert, NewsItem, ScoredItem, WindowStat
from finsent.runtime.store import (
    Commit,
    FencedError,
    Store,
    alert_events,
    alerts,
    as_utc,
    scored_items,
    windows,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
W = timedelta(minutes=15)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every case runs on the default SQLite store and on a real PostgreSQL (a fresh database;
    skipped where the server binaries are missing)."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'nested' / 'store.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    yield store
    store.close()


def utc(value: datetime) -> datetime:
    """A stored datetime as UTC: SQLite hands back naive UTC, PostgreSQL an aware value."""
    return as_utc(value)


def scored(i: int) -> ScoredItem:
    item = NewsItem(id=f"s{i}", source="wire", title=f"story {i}", published_at=T0, fetched_at=T0)
    return ScoredItem(
        item=item,
        topic="Markets",
        sentiment="neutral",
        score=0.0,
        confidence=0.5,
        model_version="t",
        scored_at=T0,
    )


def window(version: int = 1, count: int = 3) -> WindowStat:
    return WindowStat(
        key="overall",
        window_start=T0,
        window_end=T0 + W,
        count=count,
        weighted_count=float(count),
        mean_score=0.0,
        weighted_mean_score=0.0,
        neg_share=0.0,
        pos_share=0.0,
        version=version,
        emitted_at=T0 + W,
    )


def alert(state: str, window_index: int, neg_share: float) -> Alert:
    start = T0 + window_index * W
    return Alert(
        id="a1",
        key="overall",
        state=state,  # type: ignore[arg-type]
        severity="critical",
        rule="r",
        window_start=start,
        window_end=start + W,
        neg_share=neg_share,
        baseline_mean=0.1,
        baseline_std=0.05,
        zscore=5.0,
        count=10,
        started_at=T0,
        updated_at=start + W,
        message=f"{state} message",
    )


def test_replaying_a_batch_has_exactly_one_effect(store: Store) -> None:
    batch = Commit(
        stage="agg",
        offsets={("news.scored", 0): 10},
        scored=[scored(1), scored(2)],
        windows=[window()],
    )
    store.commit(batch)
    store.commit(batch)
    assert len(store.query(scored_items)) == 2
    assert len(store.query(windows)) == 1
    assert store.load_offsets("agg") == {("news.scored", 0): 10}


def test_restatement_wins_over_a_replayed_older_version(store: Store) -> None:
    store.commit(Commit(stage="agg", windows=[window(version=2, count=4)]))
    store.commit(Commit(stage="agg", windows=[window(version=1, count=3)]))
    [row] = store.query(windows)
    assert (row["version"], row["count"]) == (2, 4)
    assert as_utc(row["window_start"]) == T0


def test_alert_row_keeps_firing_evidence_and_events_keep_history(store: Store) -> None:
    store.commit(Commit(stage="alerter", alerts=[alert("firing", 6, 0.8)]))
    store.commit(Commit(stage="alerter", alerts=[alert("resolved", 8, 0.1)]))
    [row] = store.query(alerts)
    assert row["state"] == "resolved"
    assert row["neg_share"] == 0.8 and as_utc(row["window_start"]) == T0 + 6 * W
    assert as_utc(row["updated_at"]) == T0 + 9 * W
    assert row["message"] == "resolved message"
    events = store.query(alert_events, order_by=[alert_events.c.at])
    assert [(e["state"], e["payload"]["neg_share"]) for e in events] == [
        ("firing", 0.8),
        ("resolved", 0.1),
    ]


def test_state_and_offsets_are_per_stage(store: Store) -> None:
    store.commit(Commit(stage="a", offsets={("t", 0): 5}, state_put={"k1": {"x": 1}, "k2": [1, 2]}))
    store.commit(Commit(stage="b", offsets={("t", 0): 9}, state_put={"k1": {"x": 2}}))
    store.commit(Commit(stage="a", offsets={("t", 0): 7, ("t", 1): 3}, state_delete={"k2"}))
    assert store.load_state("a") == {"k1": {"x": 1}}
    assert store.load_offsets("a") == {("t", 0): 7, ("t", 1): 3}
    assert store.load_offsets("b") == {("t", 0): 9}


def test_a_failed_commit_changes_nothing(store: Store) -> None:
    good = Commit(stage="a", offsets={("t", 0): 1}, scored=[scored(1)])
    store.commit(good)
    broken = dataclasses.replace(
        good, offsets={("t", 0): 2}, scored=[scored(2)], state_put={"k": object()}
    )
    with pytest.raises(Exception):  # noqa: B017 - any driver error; the point is atomicity
        store.commit(broken)
    assert store.load_offsets("a") == {("t", 0): 1}
    assert [r["id"] for r in store.query(scored_items)] == ["s1"]


# Each process imports first and says so, then waits for "go", so all create the schema at once.
OPEN_STORE = """
import sys
from finsent.runtime.store import Store, windows
print("ready", flush=True)
sys.stdin.readline()
store = Store(sys.argv[1])
store.query(windows)
print("ok", flush=True)
"""


def test_stages_opening_a_fresh_store_together_all_get_the_schema(store_url: str) -> None:
    # Stages start at once on a new store; create_all's check-then-create used to race.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_STORE, store_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        ready = [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]
        assert ready == ["ready"] * 6
        for p in procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    errors = [err for _, err in results if err.strip()]
    assert [p.returncode for p in procs] == [0] * 6, errors[0][-2000:] if errors else ""
    assert [out.strip() for out, _ in results] == ["ok"] * 6


def test_one_batch_may_carry_a_window_twice(store: Store) -> None:
    # PostgreSQL refuses an upsert that touches one row twice; the newer version must win.
    store.commit(Commit(stage="agg", windows=[window(version=2, count=4), window(version=1)]))
    [row] = store.query(windows)
    assert (row["version"], row["count"]) == (2, 4)


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
