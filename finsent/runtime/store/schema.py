"""Every table of finsent's databases, and the one schema version over all of them.

The main store and the ingest dedup memory (which may live in a database of its own, see
``Settings.ingest_database_url``) share this one definition: ``create_schema`` creates whatever
is missing of it in either, and refuses a database stamped with another version.

Versioning: a new table or index is added in place (``create_all`` makes missing tables,
``_create_missing_indexes`` the indexes of old ones), so it needs no new version. A change to an
existing table's columns or keys does: bump ``SCHEMA_VERSION``, and older databases are refused
with a clear error rather than misread.
"""

from __future__ import annotations

import time

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
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
)
from sqlalchemy.exc import DatabaseError, OperationalError

from finsent.core.errors import UserError, one_line
from finsent.runtime.store.engine import StoreError, insert

# 2: windows keyed by (key, start, end); late_items; acks; silences. ingest_seen joined this
# schema unchanged, so dedup databases made before it are adopted as they are.
SCHEMA_VERSION = 2

metadata = MetaData()

# -- news: scored stories, their windows, and the audit of late ones ------------------------

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

# -- alerts: their current state, history, acknowledgements, silences, notification log -----

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
    Column("status", String(16), nullable=False),  # "sending" (claimed), "delivered", "failed"
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),  # scrubbed of secrets
    Column("group_key", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # firing | resolved | repeat
    Column("at", DateTime(timezone=True), nullable=False),  # wall clock of the last attempt
)

# -- stages: private state and consumed offsets, committed together -------------------------

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

# The member that owns a store-checkpointed stage's partition: claimed at each Kafka assignment
# and checked by every fenced commit, so a member that lost a partition commits nothing to it,
# not even state alone (an idle close, a timer), before the new owner has moved its offsets.
partition_owners = Table(
    "partition_owners",
    metadata,
    Column("stage", String(100), primary_key=True),
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("owner", String(64), nullable=False),
)

# -- backtests ------------------------------------------------------------------------------

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

# -- analysts' corrections and the model registry ----------------------------------------

# Every correction an analyst made, kept: a story's label for a task is its latest correction
# that sets it. The model's call and version at the time are kept beside it.
labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("story_id", String(64), nullable=False, index=True),
    Column("text", Text, nullable=False),  # what the model read: the headline
    Column("predicted_sentiment", String(16), nullable=True),
    Column("predicted_topic", String(100), nullable=True),
    Column("model_version", String(100), nullable=True),
    Column("sentiment", String(16), nullable=True),  # None: this correction leaves it as it was
    Column("topic", String(100), nullable=True),
    Column("by", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("note", Text, nullable=False),
    Column("origin", String(16), nullable=False),  # dashboard | cli | import
)

# Every model `finsent retrain` (or `finsent model register`) produced, with its gate report.
model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(100), primary_key=True),
    Column("path", Text, nullable=False),  # the artifact folder; "shipped": the package's own
    Column("parent", String(100), nullable=True),  # the version it was fine-tuned from
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # candidate | passed | refused | shipped
    Column("corrections", Integer, nullable=False),  # corrections it was trained on
    Column("report", JSON, nullable=False),  # the gate's figures and reasons
)

# Promotions and rollbacks, newest last: the latest row is the version the scorers run.
model_promotions = Table(
    "model_promotions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(100), nullable=True),  # None: back to the configured default
    Column("previous", String(100), nullable=True),  # what it replaced; None: the default
    Column("kind", String(16), nullable=False),  # promote | rollback
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
)

# -- ingest: the dedup memory (finsent.ingest.dedup reads and writes it) -------------------

ingest_seen = Table(
    "ingest_seen",
    metadata,
    Column("kind", String(8), primary_key=True),  # "url" | "title"
    Column("key", String(64), primary_key=True),  # hash of the canonical URL / normalized title
    Column("story_id", String(64), nullable=False),  # the original story this key belongs to
    Column("chain_id", String(64), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),  # processing time, UTC
    Column("event_time", DateTime(timezone=True), nullable=False),  # the story's, capped at now
    Column("chain_pos", Integer, nullable=False),  # earlier stories of its chain in the horizon
    Column("novelty", Float, nullable=False),
    Column("tickers", Text, nullable=False),  # space-separated
    # MinHash values (little-endian uint32) of a story in the near-duplicate index; one row per
    # indexed story carries them, which is what ``NoveltyTracker.restore`` reloads.
    Column("signature", LargeBinary, nullable=True),
    Index("ix_ingest_seen_first_seen", "first_seen"),
    Index("ix_ingest_seen_event_time", "event_time"),
)

# -- the stamp --------------------------------------------------------------------------------

store_meta = Table(
    "store_meta",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("value", String(200), nullable=False),
)


class StoreSchemaError(UserError, RuntimeError):
    """The database was made by a finsent with another schema version."""


def create_schema(engine: Engine, attempts: int = 5) -> None:
    """Check the version, create what is missing, and stamp the version.

    Stages start together on a fresh database, and create_all's check-then-create races between
    them, so a loser that finds the table made retries.
    """
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
            if raced and attempt < attempts - 1:
                time.sleep(0.05 * (attempt + 1))
                continue
            if isinstance(exc, OperationalError) and not raced:
                # No answer (not there, refused, wrong password), or a file it cannot open.
                raise StoreError(
                    f"the store at {engine.url.render_as_string(hide_password=True)} cannot "
                    f"be opened ({one_line(str(exc.orig))}): is the database up and "
                    "reachable? Check FINSENT_STORE_URL"
                ) from exc
            raise


def stored_schema_version(engine: Engine) -> str | None:
    """The version the database was made with; None for a fresh one (or one being made)."""
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
    return found


def _check_schema_version(engine: Engine) -> None:
    found = stored_schema_version(engine)
    if found is not None and found != str(SCHEMA_VERSION):
        raise StoreSchemaError(
            f"the store at {engine.url.render_as_string(hide_password=True)} has schema "
            f"version {found}; this finsent needs {SCHEMA_VERSION}. Move it aside (or point "
            "FINSENT_STORE_URL, or FINSENT_INGEST_STATE_URL for the dedup memory, elsewhere) "
            "and let the stages build a new one."
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
    with engine.begin() as conn:
        conn.execute(
            insert(conn, store_meta)
            .values(name="schema", value=str(SCHEMA_VERSION))
            .on_conflict_do_nothing()
        )
