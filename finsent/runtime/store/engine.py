"""The backends: engine creation, SQLite's pragmas, and the SQL that differs per dialect.

SQLite is the default and PostgreSQL is chosen by URL; everything above this module is written
once for both, through SQLAlchemy Core.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from finsent.core.errors import UserError, hide_password
from finsent.core.settings import DATABASE_URL_FORMS

# The PostgreSQL driver finsent installs (the 'postgres' extra); the CLI names the extra when
# it is missing, so only other drivers are this module's error.
OWN_DRIVERS = ("psycopg",)


class StoreError(UserError, RuntimeError):
    """The store's URL names no database SQLAlchemy knows, a driver that is not installed, or a
    database that does not answer."""


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file gets its folder and the pragmas every writer needs."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            # A URI filename (sqlite:///file:/path?mode=ro&uri=true) names a file too.
            Path(parsed.database.removeprefix("file:")).parent.mkdir(parents=True, exist_ok=True)
        # imports the driver, connects to nothing
        engine = create_engine(
            parsed, future=True, json_serializer=to_json, json_deserializer=from_json
        )
    except ArgumentError as exc:  # also an unknown dialect (NoSuchModuleError)
        raise StoreError(
            f"the store URL {hide_password(url)} is not one finsent can open ({exc}): fix "
            f"FINSENT_STORE_URL; use {DATABASE_URL_FORMS}"
        ) from exc
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in OWN_DRIVERS:
            raise
        raise StoreError(
            f"the store URL {hide_password(url)} needs the driver {exc.name!r}, which is not "
            "installed: finsent talks to PostgreSQL through psycopg, so use "
            "postgresql+psycopg://... in FINSENT_STORE_URL (pip install 'finsent[postgres]')"
        ) from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# State rows are rewritten with every batch that touches them: no spaces, no cycle check.
_compact_json = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def to_json(value: Any) -> str:
    """JSON columns' text: orjson (a sixth of the json module's time on window state), and the
    json module for what orjson refuses (integer keys, integers beyond 64 bits, lone surrogates
    in a dead letter's payload), so every value that was storable stays storable."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError
        return _compact_json(value)


def from_json(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except ValueError:  # orjson.JSONDecodeError: NaN, or integers beyond 64 bits
        return json.loads(text)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the dashboard read while stages write; busy_timeout rides out short write locks.
    cur.execute("PRAGMA busy_timeout=30000")
    # Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "locked" at
    # once, without the busy handler, while a sibling process holds it: retry for a while.
    for attempt in range(200):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


IN_CHUNK = 512  # values per IN (...) list: well under every backend's parameter limit


def in_chunks(values: Iterable[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    """``values``, sorted and distinct, in lists for ``IN (...)``, each padded to a power of
    two by repeating its last value, so that the SQL text takes one of a few shapes.

    Drivers keep prepared statements per SQL text: SQLite's up to 128 a connection, some with
    thousands of parameters, and an IN list of every batch's own length was a new one each
    time (the aggregator's SQLite memory grew by 29 MB in ten minutes of a soak's feed)."""
    ordered = sorted(set(values))
    for start in range(0, len(ordered), size):
        chunk = ordered[start : start + size]
        width = 1 << (len(chunk) - 1).bit_length()
        yield chunk + [chunk[-1]] * (width - len(chunk))


def insert(conn: Connection, table: Table) -> Any:
    """The dialect's own INSERT, which has ``on_conflict_do_*`` (Core's generic one has not)."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    return dialect.insert(table)


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    keys: list[str],
    only_newer: str | None = None,
) -> None:
    """Insert ``rows``, or update the row with the same ``keys``.

    An update sets only the columns the rows carry: a column written by someone else (an
    alert's acknowledgement) keeps its stored value. With ``only_newer`` (a version column), a
    stored row is only replaced by one whose version is at least its own, so a replayed older
    version never overwrites a restatement.
    """
    rows = last_per_key(rows, keys, only_newer)
    if not rows:
        return  # an empty executemany would run the INSERT once, without values
    stmt = insert(conn, table)
    given = set().union(*(row.keys() for row in rows))
    updates = {
        c.name: stmt.excluded[c.name]
        for c in table.columns
        if c.name not in keys and c.name in given
    }
    if not updates:  # the rows are all key: nothing to update
        conn.execute(stmt.on_conflict_do_nothing(index_elements=keys), rows)
        return
    where = table.c[only_newer] <= stmt.excluded[only_newer] if only_newer else None
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates, where=where), rows)


def last_per_key(
    rows: Sequence[Mapping[str, Any]], keys: list[str], version: str | None
) -> list[Mapping[str, Any]]:
    """One row per key: PostgreSQL refuses to upsert the same row twice in one statement.

    The later row wins, or the higher version when rows are versioned."""
    chosen: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in rows:
        pk = tuple(row[k] for k in keys)
        held = chosen.get(pk)
        if held is None or version is None or held[version] <= row[version]:
            chosen[pk] = row
    return list(chosen.values())


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; the store only ever holds UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
