"""``Store``: one handle on the database for every stage, the dashboard and the CLI.

It owns the engine and opens one transaction per call; what each call does lives in the
context modules (offsets, news, alerting, backtests), which take a connection so that one
stage's writes can share a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, func, select

from finsent.runtime.store import alerting, backtests, labels, news, offsets, registry, retention
from finsent.runtime.store.engine import make_engine
from finsent.runtime.store.offsets import Commit, TopicPartitionKey
from finsent.runtime.store.schema import create_schema


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        create_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- stages -----------------------------------------------------------------------------

    def commit(self, batch: Commit) -> None:
        """Apply the batch atomically; ``FencedError`` if its offsets were moved under it."""
        with self.engine.begin() as conn:
            offsets.apply_commit(conn, batch)

    def claim(self, stage: str, partitions: list[TopicPartitionKey], owner: str) -> None:
        """Make ``owner`` the member whose fenced commits apply to these partitions."""
        with self.engine.begin() as conn:
            offsets.claim(conn, stage, partitions, owner)

    def load_offsets(self, stage: str) -> dict[TopicPartitionKey, int]:
        with self.engine.connect() as conn:
            return offsets.load_offsets(conn, stage)

    def load_state(self, stage: str, prefix: str = "") -> dict[str, Any]:
        """The stage's state rows, optionally only those whose key starts with ``prefix``."""
        with self.engine.connect() as conn:
            return offsets.load_state(conn, stage, prefix)

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of these story ids are stored already."""
        with self.engine.connect() as conn:
            return news.existing_ids(conn, ids)

    # -- alerts -----------------------------------------------------------------------------

    def delivery(self, notification_id: str, channel: str) -> dict[str, Any] | None:
        """The logged delivery of a notification to a channel, if any."""
        with self.engine.connect() as conn:
            return alerting.delivery(conn, notification_id, channel)

    def record_delivery(self, row: Mapping[str, Any]) -> None:
        """Upsert one delivery-log row (keys: the columns of ``deliveries``)."""
        with self.engine.begin() as conn:
            alerting.record_delivery(conn, row)

    def acknowledge(self, alert_id: str, by: str, comment: str, at: datetime) -> bool:
        """Record an acknowledgement; False if there is no such alert."""
        with self.engine.begin() as conn:
            return alerting.acknowledge(conn, alert_id, by, comment, at)

    def latest_alerts(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most recently updated alerts, newest first."""
        with self.engine.connect() as conn:
            return alerting.latest_alerts(conn, limit)

    def acked_ids(self, among: Iterable[str]) -> set[str]:
        """Which of the alerts ``among`` are acknowledged (only those: the table grows)."""
        with self.engine.connect() as conn:
            return alerting.acked_ids(conn, among)

    def add_silence(self, row: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            alerting.add_silence(conn, row)

    def active_silences(self, now: datetime) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return alerting.active_silences(conn, now)

    def prune(self, before: datetime) -> dict[str, int]:
        """Forget what ended before ``before`` (see ``retention``); rows deleted per table."""
        with self.engine.begin() as conn:
            return retention.prune(conn, before)

    # -- backtests --------------------------------------------------------------------------

    def save_backtest_run(self, row: Mapping[str, Any]) -> None:
        """Upsert one backtest run (keys: the columns of ``backtest_runs``)."""
        with self.engine.begin() as conn:
            backtests.save_backtest_run(conn, row)

    # -- analysts' corrections and the model registry --------------------------------------

    def add_labels(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append corrections, all or none (keys: the columns of ``labels`` but ``id``)."""
        with self.engine.begin() as conn:
            labels.add_labels(conn, rows)

    def label_history(
        self, story_ids: Iterable[str] | None = None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Corrections oldest first; see ``labels.current_labels`` for each story's labels now."""
        with self.engine.connect() as conn:
            return labels.label_history(conn, story_ids, since)

    def save_model_version(self, row: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            registry.save_version(conn, row)

    def set_model_status(self, version: str, status: str, report: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            registry.set_status(conn, version, status, report)

    def model_versions(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return registry.versions(conn)

    def model_version(self, version: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            return registry.version(conn, version)

    def model_promotions(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return registry.promotions(conn)

    def active_model(self) -> dict[str, Any] | None:
        """The latest promotion or rollback; None if there never was one."""
        with self.engine.connect() as conn:
            return registry.active(conn)

    def record_promotion(self, row: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            registry.record_promotion(conn, row)

    # -- any table --------------------------------------------------------------------------

    def count(self, table: Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)

    def query(
        self, table: Table, *where: Any, order_by: Iterable[Any] = (), limit: int | None = None
    ) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            stmt = select(table).where(*where).order_by(*order_by).limit(limit)
            return [dict(r) for r in conn.execute(stmt).mappings()]
