"""The store: SQLite by default, PostgreSQL by URL, through SQLAlchemy Core.

Stages write their outputs, their private state and their consumed offsets in one transaction,
and every write is an upsert keyed by ids, so at-least-once delivery has an exactly-once effect.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DatabaseError

from finsent.core.records import Alert, ScoredItem, WindowStat, to_jsonable

metadata = MetaData()

scored_items = Table(
    "scored_items",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("published_at", DateTime(timezone=True), nullable=False, index=True),
    Column("source", String(200), nullable=False),
    Column("title", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("topic", String(100), nullable=False, index=True),
    Column("sentiment", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("tickers", JSON, nullable=False),
    Column("top_tokens", JSON, nullable=False),
    Column("model_version", String(100), nullable=False),
    # One topic's stories in a time range, newest first (the dashboard's drill-downs).
    Index("ix_scored_items_topic_published", "topic", "published_at"),
)

windows = Table(
    "windows",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("window_end", DateTime(timezone=True), primary_key=True),  # sizes share starts
    Column("size_seconds", Integer, nullable=False, index=True),  # for one size's series
    Column("count", Integer, nullable=False),
    Column("weighted_count", Float, nullable=False),
    Column("mean_score", Float, nullable=False),
    Column("weighted_mean_score", Float, nullable=False),
    Column("neg_share", Float, nullable=False),
    Column("pos_share", Float, nullable=False),
    Column("weighted_neg_share", Float, nullable=True),
    Column("top_headlines", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("final", Boolean, nullable=False),
    Column("emitted_at", DateTime(timezone=True), nullable=False),
    # The dashboard's reads, each bounded by a size and a time range: one series
    # (key, size, since), a family of series such as every topic (size, since), and the
    # newest emission.
    Index("ix_windows_key_size_start", "key", "size_seconds", "window_start"),
    Index("ix_windows_size_start", "size_seconds", "window_start"),
    Index("ix_windows_emitted_at", "emitted_at"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key", String(200), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("neg_share", Float, nullable=False),
    Column("weighted_neg_share", Float, nullable=True),
    Column("weighted_count", Float, nullable=True),
    Column("mean_score", Float, nullable=True),
    Column("baseline_score", Float, nullable=True),
    Column("baseline_mean", Float, nullable=False),
    Column("baseline_std", Float, nullable=False),
    Column("zscore", Float, nullable=False),
    Column("count", Integer, nullable=False),
    Column("headlines", JSON, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("message", Text, nullable=False),
    Column("acked_by", String(200), nullable=True),
    Column("acked_at", DateTime(timezone=True), nullable=True),
    Column("ack_comment", Text, nullable=True),
    Index("ix_alerts_updated_at", "updated_at"),  # the latest alerts, within a look-back
    Index("ix_alerts_state", "state"),  # the firing ones
)

# Acknowledgements: who took an alert on, with a comment (the latest is also on the alert row).
alert_acks = Table(
    "alert_acks",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("at", DateTime(timezone=True), primary_key=True),
    Column("by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
)

# Silences: alerts whose key matches (a glob) and severity, between two times, are not notified.
silences = Table(
    "silences",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("matcher", String(200), nullable=False),
    Column("severity", String(16), nullable=True),  # None: any
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
)

# The audit of late news: each story that restated a closed window, or came too late to.
late_items = Table(
    "late_items",
    metadata,
    Column("item_id", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("window_end", DateTime(timezone=True), primary_key=True),
    Column("action", String(16), nullable=False),  # "restated" or "too_late"
    Column("version", Integer, nullable=False),  # the window's version after it; 0 if too late
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("title", Text, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),  # wall clock
)

# Every lifecycle event of every alert, for its history.
alert_events = Table(
    "alert_events",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("state", String(16), primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("payload", JSON, nullable=False),
)

# The notification log: one row per (notification, channel), so a restart never re-sends.
deliveries = Table(
    "deliveries",
    metadata,
    Column("notification_id", String(100), primary_key=True),
    Column("channel", String(100), primary_key=True),
    Column("status", String(16), nullable=False),  # "delivered" or "failed"
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),  # scrubbed of secrets
    Column("group_key", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # firing | resolved | repeat
    Column("at", DateTime(timezone=True), nullable=False),  # wall clock of the last attempt
)

# A stage's private state (open windows, baselines), saved with its offsets.
stage_state = Table(
    "stage_state",
    metadata,
    Column("stage", String(100), primary_key=True),
    Column("key", String(400), primary_key=True),
    Column("value", JSON, nullable=False),
)

consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("stage", String(100), primary_key=True),
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),  # Kafka offsets are 64-bit
)

# Backtest runs: one row per replay of a feed through the stages, with its report.
backtest_runs = Table(
    "backtest_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False, index=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),  # None while it runs
    Column("feed", Text, nullable=False),  # what was replayed: a file or a source name
    Column("params", JSON, nullable=False),  # the settings that differ from the defaults
    Column("report_path", Text, nullable=True),  # the report file, once written
    Column("alert_count", Integer, nullable=True),
    Column("status", String(16), nullable=False),  # running | finished | failed
)

TopicPartitionKey = tuple[str, int]


@dataclass
class Commit:
    """Everything one batch changes, applied atomically by ``Store.commit``."""

    stage: str
    offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)  # next offset to read
    scored: list[ScoredItem] = field(default_factory=list)
    windows: list[WindowStat] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    state_put: dict[str, Any] = field(default_factory=dict)
    state_delete: set[str] = field(default_factory=set)
    late: list[dict[str, Any]] = field(default_factory=list)  # rows for late_items
    # Fencing: per partition, the stored offset this batch started from (None: none stored).
    # The commit applies only if the store still holds exactly these.
    expected: dict[TopicPartitionKey, int | None] | None = None


class FencedError(RuntimeError):
    """The stored offsets moved under this process: another member owns the partition now."""


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file gets its folder and the pragmas every writer needs."""
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


SCHEMA_VERSION = 2  # 2: windows keyed by (key, start, end); late_items; acks; silences


class StoreSchemaError(RuntimeError):
    pass


store_meta = Table(
    "store_meta",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("value", String(200), nullable=False),
)


def create_schema(engine: Engine, attempts: int = 5) -> None:
    """Create missing tables. Stages start together on a fresh store, and create_all's
    check-then-create races between them, so a loser that finds the table made retries."""
    for attempt in range(attempts):
        try:
            _check_schema_version(engine)
            metadata.create_all(engine)
            _create_missing_indexes(engine)
            _stamp_schema_version(engine)
            return
        except DatabaseError as exc:
            message = str(exc.orig).lower()
            raced = "already exists" in message or "duplicate key" in message
            if not raced or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _check_schema_version(engine: Engine) -> None:
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    found = None
    if "store_meta" in tables:
        with engine.connect() as conn:
            found = conn.execute(
                select(store_meta.c.value).where(store_meta.c.name == "schema")
            ).scalar()
    if found is None and "windows" in tables:
        # Stores from before the stamp: schema 1 keyed windows by (key, start) only. (Not
        # "stamp missing", which a sibling stage creating the store right now also shows.)
        keys = inspector.get_pk_constraint("windows")["constrained_columns"]
        found = None if "window_end" in keys else "1"
    if found is not None and found != str(SCHEMA_VERSION):
        raise StoreSchemaError(
            f"the store at {engine.url.render_as_string(hide_password=True)} has schema "
            f"version {found}; this finsent needs {SCHEMA_VERSION}. Move it aside (or point "
            "FINSENT_STORE_URL elsewhere) and let the stages build a new one."
        )


def _create_missing_indexes(engine: Engine) -> None:
    """Indexes added since a table was created: ``create_all`` only indexes new tables."""
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in tables or not table.indexes:
            continue
        present = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in present:
                index.create(engine, checkfirst=True)


def _stamp_schema_version(engine: Engine) -> None:
    dialect = sqlite if engine.dialect.name == "sqlite" else postgresql
    with engine.begin() as conn:
        conn.execute(
            dialect.insert(store_meta)
            .values(name="schema", value=str(SCHEMA_VERSION))
            .on_conflict_do_nothing()
        )


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        create_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ---------------------------------------------------------------

    def commit(self, batch: Commit) -> None:
        with self.engine.begin() as conn:
            if batch.scored:
                self._upsert(conn, scored_items, [_scored_row(s) for s in batch.scored], ["id"])
            if batch.windows:
                rows = [_window_row(w) for w in batch.windows]
                keys = ["key", "window_start", "window_end"]
                self._upsert(conn, windows, rows, keys, only_newer="version")
            if batch.alerts:
                self._apply_alerts(conn, batch.alerts)
                events = [
                    {
                        "alert_id": a.id,
                        "state": a.state,
                        "window_start": a.window_start,
                        "at": a.updated_at,
                        "payload": to_jsonable(a),
                    }
                    for a in batch.alerts
                ]
                self._upsert(conn, alert_events, events, ["alert_id", "state", "window_start"])
            if batch.state_delete:
                conn.execute(
                    stage_state.delete().where(
                        stage_state.c.stage == batch.stage,
                        stage_state.c.key.in_(sorted(batch.state_delete)),
                    )
                )
            if batch.state_put:
                rows = [
                    {"stage": batch.stage, "key": k, "value": v} for k, v in batch.state_put.items()
                ]
                self._upsert(conn, stage_state, rows, ["stage", "key"])
            if batch.late:
                self._upsert(
                    conn, late_items, batch.late, ["item_id", "key", "window_start", "window_end"]
                )
            if batch.offsets:
                self._write_offsets(conn, batch)

    def _write_offsets(self, conn: Any, batch: Commit) -> None:
        if batch.expected is None:
            rows = [
                {"stage": batch.stage, "topic": t, "partition": p, "next_offset": o}
                for (t, p), o in batch.offsets.items()
            ]
            self._upsert(conn, consumer_offsets, rows, ["stage", "topic", "partition"])
            return
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        for (topic, partition), offset in batch.offsets.items():
            where = (
                consumer_offsets.c.stage == batch.stage,
                consumer_offsets.c.topic == topic,
                consumer_offsets.c.partition == partition,
            )
            expected = batch.expected.get((topic, partition))
            if expected is None:
                row = {
                    "stage": batch.stage,
                    "topic": topic,
                    "partition": partition,
                    "next_offset": offset,
                }
                stmt = dialect.insert(consumer_offsets).values(row).on_conflict_do_nothing()
            else:
                stmt = (
                    consumer_offsets.update()
                    .where(*where, consumer_offsets.c.next_offset == expected)
                    .values(next_offset=offset)
                )
            # RETURNING, not rowcount: drivers disagree on rowcount for skipped inserts.
            changed = conn.execute(stmt.returning(consumer_offsets.c.partition)).all()
            if len(changed) != 1:
                # Raising inside the transaction rolls back the whole batch.
                raise FencedError(
                    f"{batch.stage} offsets of {topic}[{partition}] moved past {expected}"
                )

    def _apply_alerts(self, conn: Any, events: list[Alert]) -> None:
        """One row per alert: the evidence of the window that fired it, plus its current state.

        Each lifecycle event, with its own window's figures, is kept in ``alert_events``.
        """
        for alert in events:
            if alert.state in ("pending", "firing"):
                self._upsert(conn, alerts, [_alert_row(alert)], ["id"])
                continue
            changed = conn.execute(
                alerts.update()
                .where(alerts.c.id == alert.id)
                .values(state=alert.state, updated_at=alert.updated_at, message=alert.message)
            ).rowcount
            if not changed:  # resolved without a stored firing event: keep what we have
                self._upsert(conn, alerts, [_alert_row(alert)], ["id"])

    def _upsert(
        self,
        conn: Any,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        keys: list[str],
        only_newer: str | None = None,
    ) -> None:
        rows = _last_per_key(rows, keys, only_newer)
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        stmt = dialect.insert(table)
        updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        where = None
        if only_newer:
            # A replayed older version never overwrites a restatement.
            where = table.c[only_newer] <= stmt.excluded[only_newer]
        conn.execute(
            stmt.on_conflict_do_update(index_elements=keys, set_=updates, where=where), rows
        )

    # -- reads ----------------------------------------------------------------

    def load_offsets(self, stage: str) -> dict[TopicPartitionKey, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(consumer_offsets).where(consumer_offsets.c.stage == stage)
            ).mappings()
            return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    def load_state(self, stage: str, prefix: str = "") -> dict[str, Any]:
        """The stage's state rows, optionally only those whose key starts with ``prefix``."""
        stmt = select(stage_state).where(stage_state.c.stage == stage)
        if prefix:
            stmt = stmt.where(stage_state.c.key.startswith(prefix, autoescape=True))
        with self.engine.connect() as conn:
            return {r["key"]: r["value"] for r in conn.execute(stmt).mappings()}

    def delivery(self, notification_id: str, channel: str) -> dict | None:
        """The logged delivery of a notification to a channel, if any."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(deliveries).where(
                        deliveries.c.notification_id == notification_id,
                        deliveries.c.channel == channel,
                    )
                )
                .mappings()
                .first()
            )
            return dict(row) if row else None

    def record_delivery(self, row: Mapping[str, Any]) -> None:
        """Upsert one delivery-log row (keys: the columns of ``deliveries``)."""
        with self.engine.begin() as conn:
            self._upsert(conn, deliveries, [row], ["notification_id", "channel"])

    def acknowledge(self, alert_id: str, by: str, comment: str, at: datetime) -> bool:
        """Record an acknowledgement; False if there is no such alert."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                alerts.update()
                .where(alerts.c.id == alert_id)
                .values(acked_by=by, acked_at=at, ack_comment=comment)
                .returning(alerts.c.id)
            ).all()
            if not changed:
                return False
            self._upsert(
                conn,
                alert_acks,
                [{"alert_id": alert_id, "at": at, "by": by, "comment": comment}],
                ["alert_id", "at"],
            )
            return True

    def add_silence(self, row: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            self._upsert(conn, silences, [row], ["id"])

    def save_backtest_run(self, row: Mapping[str, Any]) -> None:
        """Upsert one backtest run (keys: the columns of ``backtest_runs``)."""
        with self.engine.begin() as conn:
            self._upsert(conn, backtest_runs, [row], ["id"])

    def active_silences(self, now: datetime) -> list[dict]:
        return self.query(silences, silences.c.starts_at <= now, silences.c.ends_at > now)

    def acked_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(
                conn.execute(select(alerts.c.id).where(alerts.c.acked_by.isnot(None))).scalars()
            )

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of these story ids are stored already."""
        wanted = sorted(set(ids))
        found: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                stmt = select(scored_items.c.id).where(scored_items.c.id.in_(chunk))
                found.update(conn.execute(stmt).scalars())
        return found

    def count(self, table: Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)

    def query(self, table: Table, *where: Any, order_by: Iterable[Any] = ()) -> list[dict]:
        with self.engine.connect() as conn:
            stmt = select(table).where(*where).order_by(*order_by)
            return [dict(r) for r in conn.execute(stmt).mappings()]


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


def _scored_row(s: ScoredItem) -> dict[str, Any]:
    return {
        "id": s.item.id,
        "published_at": s.item.published_at,
        "source": s.item.source,
        "title": s.item.title,
        "url": s.item.url,
        "topic": s.topic,
        "sentiment": s.sentiment,
        "score": s.score,
        "confidence": s.confidence,
        "tickers": list(s.item.tickers),
        "top_tokens": list(s.top_tokens),
        "model_version": s.model_version,
    }


def _window_row(w: WindowStat) -> dict[str, Any]:
    return {
        "key": w.key,
        "window_start": w.window_start,
        "window_end": w.window_end,
        "size_seconds": int((w.window_end - w.window_start).total_seconds()),
        "count": w.count,
        "weighted_count": w.weighted_count,
        "mean_score": w.mean_score,
        "weighted_mean_score": w.weighted_mean_score,
        "neg_share": w.neg_share,
        "pos_share": w.pos_share,
        "weighted_neg_share": w.weighted_neg_share,
        "top_headlines": [to_jsonable(h) for h in w.top_headlines],
        "version": w.version,
        "final": w.final,
        "emitted_at": w.emitted_at,
    }


def _alert_row(a: Alert) -> dict[str, Any]:
    row = to_jsonable(a)
    row.pop("schema")
    for name in ("window_start", "window_end", "started_at", "updated_at"):
        row[name] = getattr(a, name)
    return row


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; the store only ever holds UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _last_per_key(
    rows: Sequence[Mapping[str, Any]], keys: list[str], version: str | None
) -> list[Mapping[str, Any]]:
    """One row per key: PostgreSQL refuses to upsert the same row twice in one statement.

    The later row wins, or the higher version when rows are versioned."""
    chosen: dict[tuple, Mapping[str, Any]] = {}
    for row in rows:
        pk = tuple(row[k] for k in keys)
        held = chosen.get(pk)
        if held is None or version is None or held[version] <= row[version]:
            chosen[pk] = row
    return list(chosen.values())
