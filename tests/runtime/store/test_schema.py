from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, update

from finsent.runtime.store import (
    SCHEMA_VERSION,
    Store,
    StoreError,
    StoreSchemaError,
    create_schema,
    ingest_seen,
    make_engine,
    metadata,
    store_meta,
)
from finsent.runtime.store.schema import stored_schema_version

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def restamp(engine: Engine, version: str) -> None:
    """Make the database look as if another finsent had built it."""
    with engine.begin() as conn:
        conn.execute(update(store_meta).where(store_meta.c.name == "schema").values(value=version))


def test_a_new_database_gets_every_table_and_the_version_stamp(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        assert stored_schema_version(engine) is None
        create_schema(engine)
        assert set(inspect(engine).get_table_names()) == set(metadata.tables)
        assert "ingest_seen" in metadata.tables  # the dedup memory is part of the one schema
        assert stored_schema_version(engine) == str(SCHEMA_VERSION)
        create_schema(engine)  # idempotent
        assert stored_schema_version(engine) == str(SCHEMA_VERSION)
    finally:
        engine.dispose()


def test_a_store_of_another_schema_version_is_refused(store_url: str) -> None:
    Store(store_url).close()
    engine = make_engine(store_url)
    restamp(engine, str(SCHEMA_VERSION + 1))
    engine.dispose()
    with pytest.raises(StoreSchemaError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(store_url)


def test_an_unstamped_store_with_schema_1_windows_is_refused(store_url: str) -> None:
    engine = make_engine(store_url)
    with engine.begin() as conn:  # schema 1 keyed windows by (key, start) only
        conn.exec_driver_sql(
            "CREATE TABLE windows (key VARCHAR(200), window_start TIMESTAMP,"
            " PRIMARY KEY (key, window_start))"
        )
    try:
        with pytest.raises(StoreSchemaError, match="schema version 1"):
            create_schema(engine)
        assert "scored_items" not in inspect(engine).get_table_names()  # left untouched
    finally:
        engine.dispose()


def test_a_dedup_database_of_another_schema_version_is_refused(store_url: str) -> None:
    # The dedup memory may have a database of its own: the same check guards it.
    engine = make_engine(store_url)
    try:
        create_schema(engine)
        restamp(engine, "1")
        with pytest.raises(StoreSchemaError, match="FINSENT_INGEST_STATE_URL"):
            create_schema(engine)
    finally:
        engine.dispose()


def test_a_dedup_database_from_before_the_shared_schema_is_adopted(store_url: str) -> None:
    # Earlier finsents created only ingest_seen, unstamped, in the dedup database; the table
    # is unchanged, so such a database is completed and stamped, its rows kept.
    engine = make_engine(store_url)
    try:
        ingest_seen.create(engine)
        with engine.begin() as conn:
            conn.execute(
                ingest_seen.insert().values(
                    kind="url",
                    key="k",
                    story_id="s",
                    chain_id="s",
                    first_seen=T0,
                    event_time=T0,
                    chain_pos=0,
                    novelty=100.0,
                    tickers="",
                )
            )
        create_schema(engine)
        assert stored_schema_version(engine) == str(SCHEMA_VERSION)
        with engine.connect() as conn:
            assert conn.execute(ingest_seen.select()).one().story_id == "s"
    finally:
        engine.dispose()


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


def test_a_database_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot be opened") as raised:
        Store(f"sqlite:///{tmp_path}")  # a folder, not a database file
    assert str(tmp_path) in str(raised.value) and "FINSENT_STORE_URL" in str(raised.value)
