"""The store: SQLite by default, PostgreSQL by URL, through SQLAlchemy Core.

Stages write their outputs, their private state and their consumed offsets in one transaction,
and every write is an upsert keyed by ids, so at-least-once delivery has an exactly-once effect.

This package's names are its public API. Inside: ``schema`` (every table, the ingest dedup
memory's too, and the one schema version), ``engine`` (backends and dialect SQL), ``offsets``
(the fenced batch commit), ``news``, ``alerting``, ``backtests``, ``labels`` (analysts' corrections) and ``registry``
(model versions) (one context each), and
``facade`` (``Store``, which opens the transactions and delegates to them).
"""

from finsent.runtime.store.engine import StoreError, as_utc, make_engine
from finsent.runtime.store.facade import Store
from finsent.runtime.store.offsets import (
    Commit,
    FencedError,
    TopicPartitionKey,
    move_state_rows,
)
from finsent.runtime.store.schema import (
    SCHEMA_VERSION,
    StoreSchemaError,
    alert_acks,
    alert_events,
    alerts,
    backtest_runs,
    consumer_offsets,
    create_schema,
    deliveries,
    ingest_seen,
    labels,
    late_items,
    metadata,
    model_promotions,
    model_versions,
    scored_items,
    silences,
    stage_state,
    store_meta,
    windows,
)

__all__ = [
    "SCHEMA_VERSION",
    "Commit",
    "FencedError",
    "Store",
    "StoreError",
    "StoreSchemaError",
    "TopicPartitionKey",
    "alert_acks",
    "alert_events",
    "alerts",
    "as_utc",
    "backtest_runs",
    "consumer_offsets",
    "create_schema",
    "deliveries",
    "ingest_seen",
    "labels",
    "late_items",
    "make_engine",
    "metadata",
    "model_promotions",
    "model_versions",
    "move_state_rows",
    "scored_items",
    "silences",
    "stage_state",
    "store_meta",
    "windows",
]
