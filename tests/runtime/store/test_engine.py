"""The backends: SQLite's file and pragmas, dialect SQL, and what only a real PostgreSQL shows
(session time zones, and the local test server itself)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from support import postgres_local
from support.postgres import server_home
from support.postgres_local import LocalPostgres, PostgresLaunchError

from finsent.core.records import ScoredItem, WindowStat
from finsent.runtime.store import (
    Commit,
    Store,
    StoreError,
    as_utc,
    make_engine,
    scored_items,
    windows,
)
from finsent.runtime.store.engine import in_chunks, last_per_key

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_a_sqlite_file_gets_its_folder_and_wal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'er' / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert (tmp_path / "deep" / "er").is_dir()
    finally:
        engine.dispose()


def test_as_utc_reads_naive_values_as_utc_and_converts_aware_ones() -> None:
    assert as_utc(datetime(2026, 1, 5, 9, 0)) == T0
    assert as_utc(datetime(2026, 1, 5, 9, 0)).tzinfo is UTC
    ist = timezone(timedelta(hours=5, minutes=30))
    assert as_utc(datetime(2026, 1, 5, 14, 30, tzinfo=ist)) == T0


def test_last_per_key_keeps_the_later_row_or_the_higher_version() -> None:
    rows = [{"k": 1, "v": 2, "n": "a"}, {"k": 1, "v": 1, "n": "b"}, {"k": 2, "v": 1, "n": "c"}]
    assert [r["n"] for r in last_per_key(rows, ["k"], None)] == ["b", "c"]
    assert [r["n"] for r in last_per_key(rows, ["k"], "v")] == ["a", "c"]


# -- PostgreSQL ------------------------------------------------------------------------------


def aware_utc(value: datetime) -> datetime:
    """A stored datetime, checked to come back timezone-aware, as UTC."""
    assert value.tzinfo is not None, f"{value!r} came back naive"
    return as_utc(value)


@pytest.mark.postgres
def test_datetimes_are_utc_equal_whatever_the_session_time_zone(
    postgres_url: str,
    make_scored: Callable[[int], ScoredItem],
    make_window: Callable[..., WindowStat],
) -> None:
    # timestamptz comes back in the session's zone: a server set to another zone must not shift
    # any instant.
    setup = Store(postgres_url)
    database = make_url(postgres_url).database
    with setup.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone TO 'Asia/Kolkata'")
    setup.close()
    store = Store(postgres_url)  # its new connections take the database's zone
    scored, window = make_scored(1), make_window()
    try:
        store.commit(Commit(stage="agg", scored=[scored], windows=[window]))
        [row] = store.query(windows)
        assert row["window_start"].utcoffset() == timedelta(hours=5, minutes=30)
        assert aware_utc(row["window_start"]) == window.window_start
        assert aware_utc(row["window_end"]) == window.window_end
        published = store.query(scored_items)[0]["published_at"]
        assert aware_utc(published) == scored.item.published_at
    finally:
        store.close()


@pytest.mark.postgres
def test_a_server_that_cannot_start_raises_with_its_log(postgres_server: LocalPostgres) -> None:
    home = server_home()
    try:
        clash = LocalPostgres(home, postgres_server.port)
        with pytest.raises(PostgresLaunchError, match="(?s)server.log.*already in use"):
            clash.start(timeout_s=20)
        assert not clash.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.postgres
def test_missing_server_binaries_raise_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres_local, "find_bindir", lambda: None)
    with pytest.raises(PostgresLaunchError, match="ensure_postgres.sh"):
        LocalPostgres(tmp_path, 5432).start()


def test_a_url_of_no_known_database_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="unknown database|Can't load plugin") as raised:
        make_engine("foo://me:hunter2@x/y")
    assert "FINSENT_STORE_URL" in str(raised.value) and "hunter2" not in str(raised.value)


def test_a_missing_driver_is_a_store_error_but_finsents_own_is_left_to_the_cli(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as if it were not installed
    with pytest.raises(StoreError, match="needs the driver 'psycopg2'"):
        make_engine("postgresql+psycopg2://me@db/x")
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ModuleNotFoundError):  # the CLI names the 'postgres' extra for it
        make_engine("postgresql+psycopg://me@db/x")


def test_a_uri_filename_gets_its_folder_and_no_folder_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = make_engine(f"sqlite:///file:{tmp_path / 'deep' / 'x.db'}?mode=rwc&uri=true")
    with engine.connect():
        pass
    engine.dispose()
    assert (tmp_path / "deep" / "x.db").is_file()
    assert not (tmp_path / "file:").exists()


def test_json_columns_keep_what_orjson_refuses(tmp_path: Path) -> None:
    """orjson writes the JSON columns; what it refuses (integer keys, integers beyond 64 bits,
    a lone surrogate, as a dead letter's payload may hold) goes through the json module."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    values = {
        "plain": {"ids": ["a", "b"], "n": 3, "share": 0.25, "nested": [[1, "x"], None]},
        "int_keys": {1: "one", 2: [True, False]},
        "huge": [2**80, -(2**70)],
        "surrogate": ["\udc80 half a pair"],
    }
    try:
        store.commit(Commit(stage="probe", state_put=values))
        stored = store.load_state("probe")
    finally:
        store.close()
    assert stored["plain"] == values["plain"]
    assert stored["int_keys"] == {"1": "one", "2": [True, False]}  # JSON keys are text
    assert stored["huge"] == values["huge"]
    assert stored["surrogate"] == values["surrogate"]


@given(st.lists(st.text(max_size=3), max_size=400), st.sampled_from([1, 4, 16, 512]))
def test_in_chunks_cover_the_values_in_power_of_two_lists(values: list[str], size: int) -> None:
    chunks = list(in_chunks(values, size))
    assert sorted({v for chunk in chunks for v in chunk}) == sorted(set(values))
    assert [v for chunk in chunks for v in dict.fromkeys(chunk)] == sorted(set(values))
    for chunk in chunks:
        width = len(chunk)
        assert width & (width - 1) == 0 and width < 2 * size
        assert chunk == sorted(chunk)  # the padding repeats the last value
