"""The store's behaviour against a real PostgreSQL: the cases of test_store.py, plus what only a
server shows (session time zones, concurrent schema creation across processes).

The builders are copied from test_store.py rather than imported: another installed
distribution ships a top-level `tests` package, so `tests.finsent.test_store` is not importable.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pg_support import server_home
from sqlalchemy.engine import make_url

from finsent import postgres_local
from finsent.postgres_local import LocalPostgres, PostgresLaunchError
from finsent.records import Alert, NewsItem, ScoredItem, WindowStat
from finsent.store import (
    Commit,
    FencedError,
    Store,
    alert_events,
    alerts,
    as_utc,
    scored_items,
    windows,
)

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
W = timedelta(minutes=15)


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    store = Store(postgres_url)
    yield store
    store.close()


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


def utc(value: datetime) -> datetime:
    """A stored datetime, checked to come back timezone-aware, as UTC."""
    assert value.tzinfo is not None, f"{value!r} came back naive"
    return as_utc(value)


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
    assert utc(row["window_start"]) == T0
    assert utc(row["emitted_at"]) == T0 + W


def test_one_batch_may_carry_a_window_twice(store: Store) -> None:
    # PostgreSQL refuses an upsert that touches one row twice; the newer version must win.
    store.commit(Commit(stage="agg", windows=[window(version=2, count=4), window(version=1)]))
    [row] = store.query(windows)
    assert (row["version"], row["count"]) == (2, 4)


def test_alert_row_keeps_firing_evidence_and_events_keep_history(store: Store) -> None:
    store.commit(Commit(stage="alerter", alerts=[alert("firing", 6, 0.8)]))
    store.commit(Commit(stage="alerter", alerts=[alert("resolved", 8, 0.1)]))
    [row] = store.query(alerts)
    assert row["state"] == "resolved"
    assert row["neg_share"] == 0.8 and utc(row["window_start"]) == T0 + 6 * W
    assert utc(row["updated_at"]) == T0 + 9 * W
    assert row["message"] == "resolved message"
    events = store.query(alert_events, order_by=[alert_events.c.at])
    assert [(e["state"], e["payload"]["neg_share"]) for e in events] == [
        ("firing", 0.8),
        ("resolved", 0.1),
    ]
    assert [utc(e["at"]) for e in events] == [T0 + 7 * W, T0 + 9 * W]


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


def test_datetimes_are_utc_equal_whatever_the_session_time_zone(postgres_url: str) -> None:
    # timestamptz comes back in the session's zone: a server set to another zone must not shift
    # any instant.
    setup = Store(postgres_url)
    database = make_url(postgres_url).database
    with setup.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone TO 'Asia/Kolkata'")
    setup.close()
    store = Store(postgres_url)  # its new connections take the database's zone
    try:
        store.commit(Commit(stage="agg", scored=[scored(1)], windows=[window()]))
        [row] = store.query(windows)
        assert row["window_start"].utcoffset() == timedelta(hours=5, minutes=30)
        assert utc(row["window_start"]) == T0 and utc(row["window_end"]) == T0 + W
        assert utc(store.query(scored_items)[0]["published_at"]) == T0
    finally:
        store.close()


def test_offsets_beyond_32_bits_round_trip(store: Store) -> None:
    store.commit(Commit(stage="a", offsets={("t", 0): 2**31 + 5}))
    assert store.load_offsets("a") == {("t", 0): 2**31 + 5}


# Each process imports first and says so, then waits for "go", so all create the schema at once.
OPEN_STORE = """
import sys
from finsent.store import Store, windows
print("ready", flush=True)
sys.stdin.readline()
store = Store(sys.argv[1])
store.query(windows)
print("ok", flush=True)
"""


def test_stages_opening_a_fresh_store_together_all_get_the_schema(postgres_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_STORE, postgres_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
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
        outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0] * 6
    assert outputs == ["ok"] * 6


# -- the local server itself -----------------------------------------------------------------


def test_a_server_that_cannot_start_raises_with_its_log(postgres_server: LocalPostgres) -> None:
    home = server_home()
    try:
        clash = LocalPostgres(home, postgres_server.port)
        with pytest.raises(PostgresLaunchError, match="(?s)server.log.*already in use"):
            clash.start(timeout_s=20)
        assert not clash.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_missing_server_binaries_raise_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres_local, "find_bindir", lambda: None)
    with pytest.raises(PostgresLaunchError, match="ensure_postgres.sh"):
        LocalPostgres(tmp_path, 5432).start()


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
