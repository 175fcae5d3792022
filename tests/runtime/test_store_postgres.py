"""What only a real PostgreSQL shows: session time zones, and the local server itself.

The store's shared cases run on both backends in test_store.py.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from support import postgres_local
from support.postgres import server_home
from support.postgres_local import LocalPostgres, PostgresLaunchError

from finsent.core.records import NewsItem, ScoredItem, WindowStat
from finsent.runtime.store import Commit, Store, as_utc, scored_items, windows

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
W = timedelta(minutes=15)


def utc(value: datetime) -> datetime:
    """A stored datetime, checked to come back timezone-aware, as UTC."""
    assert value.tzinfo is not None, f"{value!r} came back naive"
    return as_utc(value)


def test_datetimes_are_utc_equal_whatever_the_session_time_zone(postgres_url: str) -> None:
    # timestamptz comes back in the session's zone: a server set to another zone must not shift
    # any instant.
    setup = Store(postgres_url)
    database = make_url(postgres_url).database
    with setup.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone TO 'Asia/Kolkata'")
    setup.close()
    store = Store(postgres_url)  # its new connections take the database's zone
    story = NewsItem(id="s1", source="wire", title="story", published_at=T0, fetched_at=T0)
    scored = ScoredItem(
        item=story,
        topic="Markets",
        sentiment="neutral",
        score=0.0,
        confidence=0.5,
        model_version="t",
        scored_at=T0,
    )
    window = WindowStat(
        key="overall",
        window_start=T0,
        window_end=T0 + W,
        count=1,
        weighted_count=1.0,
        mean_score=0.0,
        weighted_mean_score=0.0,
        neg_share=0.0,
        pos_share=0.0,
        emitted_at=T0 + W,
    )
    try:
        store.commit(Commit(stage="agg", scored=[scored], windows=[window]))
        [row] = store.query(windows)
        assert row["window_start"].utcoffset() == timedelta(hours=5, minutes=30)
        assert utc(row["window_start"]) == T0 and utc(row["window_end"]) == T0 + W
        assert utc(store.query(scored_items)[0]["published_at"]) == T0
    finally:
        store.close()


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
