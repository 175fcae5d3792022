"""A stage's batch commit: its results, private state and consumed offsets in one transaction.

Every write is an upsert keyed by ids, so a batch replayed after a crash has one effect. With
``Commit.expected`` the commit is fenced: offsets move only from the position the batch started
at, and a partition named in ``expected`` without new offsets (a commit of state alone: an idle
close, a timer) must still be at its expected position, so a member that lost its partition to
another cannot overwrite the new owner's progress or state. With ``Commit.owner`` it is fenced on
ownership too: each partition in ``expected`` must still be claimed (``claim``, at assignment)
by that owner, which also stops a member that lost a partition before the new owner moved its
offsets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from finsent.core.records import Alert, ScoredItem, WindowStat
from finsent.runtime.store import alerting, news
from finsent.runtime.store.engine import in_chunks, insert, upsert
from finsent.runtime.store.schema import consumer_offsets, partition_owners, stage_state

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
    # Fencing: per partition the member owns, the stored offset this batch started from (None:
    # none stored). The commit applies only if the store still holds exactly these.
    expected: dict[TopicPartitionKey, int | None] | None = None
    # Ownership: the token this member claimed its partitions with (None: not checked).
    owner: str | None = None


class FencedError(RuntimeError):
    """The stored offsets moved under this process: another member owns the partition now."""


def apply_commit(conn: Connection, batch: Commit) -> None:
    """Write the whole batch on ``conn``; the caller's transaction makes it atomic."""
    if batch.owner is not None and batch.expected:
        _check_owner(conn, batch)
    if batch.scored:
        news.write_scored(conn, batch.scored)
    if batch.windows:
        news.write_windows(conn, batch.windows)
    if batch.alerts:
        alerting.write_alerts(conn, batch.alerts)
    for keys in in_chunks(batch.state_delete):
        conn.execute(
            stage_state.delete().where(
                stage_state.c.stage == batch.stage, stage_state.c.key.in_(keys)
            )
        )
    if batch.state_put:
        rows = [{"stage": batch.stage, "key": k, "value": v} for k, v in batch.state_put.items()]
        upsert(conn, stage_state, rows, ["stage", "key"])
    if batch.late:
        news.write_late(conn, batch.late)
    if batch.offsets:
        _write_offsets(conn, batch)
    if batch.expected:
        _check_unmoved(conn, batch)


def _write_offsets(conn: Connection, batch: Commit) -> None:
    if batch.expected is None:
        rows = [
            {"stage": batch.stage, "topic": t, "partition": p, "next_offset": o}
            for (t, p), o in batch.offsets.items()
        ]
        upsert(conn, consumer_offsets, rows, ["stage", "topic", "partition"])
        return
    for (topic, partition), offset in batch.offsets.items():
        expected = batch.expected.get((topic, partition))
        if expected is None:
            row = {"stage": batch.stage, "topic": topic, "partition": partition}
            stmt = (
                insert(conn, consumer_offsets)
                .values(**row, next_offset=offset)
                .on_conflict_do_nothing()
            )
        else:
            stmt = (
                consumer_offsets.update()
                .where(
                    consumer_offsets.c.stage == batch.stage,
                    consumer_offsets.c.topic == topic,
                    consumer_offsets.c.partition == partition,
                    consumer_offsets.c.next_offset == expected,
                )
                .values(next_offset=offset)
            )
        # RETURNING, not rowcount: drivers disagree on rowcount for skipped inserts.
        changed = conn.execute(stmt.returning(consumer_offsets.c.partition)).all()
        if len(changed) != 1:
            # Raising inside the transaction rolls back the whole batch.
            raise FencedError(
                f"{batch.stage} offsets of {topic}[{partition}] moved past {expected}"
            )


def _check_unmoved(conn: Connection, batch: Commit) -> None:
    """``FencedError`` unless each expected partition without new offsets is where expected."""
    assert batch.expected is not None
    for (topic, partition), expected in batch.expected.items():
        if (topic, partition) in batch.offsets:
            continue  # fenced by its write
        where = (
            consumer_offsets.c.stage == batch.stage,
            consumer_offsets.c.topic == topic,
            consumer_offsets.c.partition == partition,
        )
        if expected is None:
            moved = conn.execute(select(consumer_offsets.c.next_offset).where(*where)).first()
            unmoved = moved is None
        else:
            # An update to the same value, not a read: it locks the row (PostgreSQL), so a new
            # owner's commit cannot slip in between this check and the end of the transaction.
            stmt = (
                consumer_offsets.update()
                .where(*where, consumer_offsets.c.next_offset == expected)
                .values(next_offset=expected)
                .returning(consumer_offsets.c.partition)
            )
            unmoved = len(conn.execute(stmt).all()) == 1
        if not unmoved:
            raise FencedError(
                f"{batch.stage} offsets of {topic}[{partition}] moved past {expected}"
            )


def load_offsets(conn: Connection, stage: str) -> dict[TopicPartitionKey, int]:
    stmt = select(consumer_offsets).where(consumer_offsets.c.stage == stage)
    return {(r["topic"], r["partition"]): r["next_offset"] for r in conn.execute(stmt).mappings()}


def load_state(conn: Connection, stage: str, prefix: str = "") -> dict[str, Any]:
    """The stage's state rows, optionally only those whose key starts with ``prefix``."""
    stmt = select(stage_state).where(stage_state.c.stage == stage)
    if prefix:
        stmt = stmt.where(stage_state.c.key.startswith(prefix, autoescape=True))
    return {r["key"]: r["value"] for r in conn.execute(stmt).mappings()}


def move_state_rows(
    rows: Mapping[str, Any], partition_of: Callable[[str], int | None]
) -> tuple[dict[str, Any], dict[int, set[int]]]:
    """A stage's state rows, each saved under its partition's prefix (``<partition>/<row>``),
    moved to ``partition_of(row)``: the partition that owns the row now (None: it stays).

    Returns the rows and, per partition that now holds moved or kept rows, the partitions they
    come from (itself included). Rows without a partition prefix stay as they are."""
    moved: dict[str, Any] = {}
    sources: dict[int, set[int]] = {}
    for name, value in rows.items():
        prefix, slash, row = name.partition("/")
        target = partition_of(row) if slash and prefix.isdigit() else None
        if target is None:
            moved[name] = value
            continue
        moved[f"{target}/{row}"] = value
        sources.setdefault(target, set()).add(int(prefix))
    return moved, sources


def claim(conn: Connection, stage: str, partitions: list[TopicPartitionKey], owner: str) -> None:
    """Make ``owner`` the one member whose fenced commits apply to these partitions."""
    rows = [
        {"stage": stage, "topic": topic, "partition": partition, "owner": owner}
        for topic, partition in partitions
    ]
    if rows:
        upsert(conn, partition_owners, rows, ["stage", "topic", "partition"])


def _check_owner(conn: Connection, batch: Commit) -> None:
    """``FencedError`` unless every expected partition is still claimed by ``batch.owner``."""
    assert batch.expected is not None
    for topic, partition in batch.expected:
        # An update to the same value, not a read: it locks the row (PostgreSQL), so a claim
        # cannot slip in between this check and the end of the transaction.
        stmt = (
            partition_owners.update()
            .where(
                partition_owners.c.stage == batch.stage,
                partition_owners.c.topic == topic,
                partition_owners.c.partition == partition,
                partition_owners.c.owner == batch.owner,
            )
            .values(owner=batch.owner)
            .returning(partition_owners.c.partition)
        )
        if len(conn.execute(stmt).all()) != 1:
            raise FencedError(f"{batch.stage}: {topic}[{partition}] is claimed by another member")
