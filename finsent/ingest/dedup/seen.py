"""The persistent exact-dedup memory: the ``ingest_seen`` table, which survives restarts.

Its definition lives with every other table in the store's schema (``finsent.runtime.store``),
under the one schema version, whether it shares the store's database or has its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, RowMapping, func, select
from sqlalchemy.dialects import postgresql, sqlite

from finsent.core.records import utc
from finsent.runtime.store import as_utc, create_schema, ingest_seen, make_engine

SeenKind = Literal["url", "title"]
SeenKey = tuple[SeenKind, str]

_LOOKUP_CHUNK = 500  # keys per IN (...) query: well under every backend's parameter limit


@dataclass(frozen=True, slots=True)
class SeenEntry:
    """One row of ``ingest_seen``: a key and the story it first belonged to."""

    kind: SeenKind
    key: str
    story_id: str
    chain_id: str
    first_seen: datetime
    event_time: datetime
    chain_pos: int = 0
    novelty: float = 100.0
    tickers: tuple[str, ...] = ()
    signature: bytes | None = None


class SeenStore:
    """``ingest_seen`` through SQLAlchemy Core: SQLite by default, PostgreSQL by URL.

    Pass a URL, or the ``Engine`` of the main store so ``commit`` can share its transaction.
    Either way the database gets the store's whole schema, checked and stamped: one of another
    schema version is refused with ``StoreSchemaError``.
    """

    def __init__(self, url_or_engine: str | Engine) -> None:
        if isinstance(url_or_engine, Engine):
            self.engine = url_or_engine
            self._owns_engine = False
        else:
            self.engine = make_engine(url_or_engine)
            self._owns_engine = True
        create_schema(self.engine)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- reads ------------------------------------------------------------------------------

    def lookup(self, kind: SeenKind, key: str) -> SeenEntry | None:
        return self.lookup_many([(kind, key)]).get((kind, key))

    def lookup_many(self, keys: Iterable[SeenKey]) -> dict[SeenKey, SeenEntry]:
        """The stored entries among ``keys``, in as few queries as the key count allows."""
        by_kind: dict[SeenKind, set[str]] = {}
        for kind, key in keys:
            by_kind.setdefault(kind, set()).add(key)
        found: dict[SeenKey, SeenEntry] = {}
        with self.engine.connect() as conn:
            for kind, wanted in sorted(by_kind.items()):
                ordered = sorted(wanted)
                for start in range(0, len(ordered), _LOOKUP_CHUNK):
                    chunk = ordered[start : start + _LOOKUP_CHUNK]
                    stmt = select(ingest_seen).where(
                        ingest_seen.c.kind == kind, ingest_seen.c.key.in_(chunk)
                    )
                    for row in conn.execute(stmt).mappings():
                        entry = _entry(row)
                        found[(entry.kind, entry.key)] = entry
        return found

    def signatures_since(self, since: datetime) -> list[SeenEntry]:
        """Rows of indexed stories with an event time at or after ``since``, oldest first."""
        stmt = (
            select(ingest_seen)
            .where(ingest_seen.c.signature.is_not(None), ingest_seen.c.event_time >= utc(since))
            .order_by(ingest_seen.c.event_time, ingest_seen.c.story_id)
        )
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(stmt).mappings()]

    def newest_signature_time(self) -> datetime | None:
        stmt = select(func.max(ingest_seen.c.event_time)).where(
            ingest_seen.c.signature.is_not(None)
        )
        with self.engine.connect() as conn:
            newest = conn.execute(stmt).scalar_one_or_none()
        return as_utc(newest) if newest is not None else None

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ingest_seen)).scalar_one())

    # -- writes -----------------------------------------------------------------------------

    def remember(self, entry: SeenEntry, *, replace: bool = False) -> None:
        self.remember_many([entry], replace=replace)

    def remember_many(
        self, entries: Iterable[SeenEntry], *, replace: bool = False, conn: Connection | None = None
    ) -> int:
        """Insert entries in one statement; an existing key is kept unless ``replace``.

        With ``conn`` the rows join the caller's transaction (e.g. with its consumer offsets).
        """
        # One row per key: PostgreSQL refuses to upsert the same row twice in one statement.
        rows = list({(e.kind, e.key): _row(e) for e in entries}.values())
        if not rows:
            return 0
        if conn is not None:
            self._insert(conn, rows, replace)
        else:
            with self.engine.begin() as own:
                self._insert(own, rows, replace)
        return len(rows)

    def _insert(self, conn: Connection, rows: list[dict[str, Any]], replace: bool) -> None:
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        stmt = dialect.insert(ingest_seen)
        keys = ["kind", "key"]
        if replace:
            updates = {
                c.name: stmt.excluded[c.name] for c in ingest_seen.columns if c.name not in keys
            }
            stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        conn.execute(stmt, rows)

    def forget_older_than(self, cutoff: datetime) -> int:
        """Delete rows first seen before ``cutoff``; returns how many went."""
        with self.engine.begin() as conn:
            result = conn.execute(
                ingest_seen.delete().where(ingest_seen.c.first_seen < utc(cutoff))
            )
            return int(result.rowcount or 0)


def _row(entry: SeenEntry) -> dict[str, Any]:
    return {
        "kind": entry.kind,
        "key": entry.key,
        "story_id": entry.story_id,
        "chain_id": entry.chain_id,
        "first_seen": utc(entry.first_seen),
        "event_time": utc(entry.event_time),
        "chain_pos": entry.chain_pos,
        "novelty": entry.novelty,
        "tickers": " ".join(entry.tickers),
        "signature": entry.signature,
    }


def _entry(row: RowMapping) -> SeenEntry:
    return SeenEntry(
        kind=row["kind"],
        key=row["key"],
        story_id=row["story_id"],
        chain_id=row["chain_id"],
        first_seen=as_utc(row["first_seen"]),
        event_time=as_utc(row["event_time"]),
        chain_pos=row["chain_pos"],
        novelty=row["novelty"],
        tickers=tuple(row["tickers"].split()),
        signature=bytes(row["signature"]) if row["signature"] is not None else None,
    )
