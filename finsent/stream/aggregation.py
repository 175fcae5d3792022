"""The aggregation stage: ``news.keyed`` → event-time windows → ``sentiment.windows`` and the store.

One ``WindowEngine`` per owned partition of ``news.keyed``, so each partition has its own
watermark: a lagging partition never makes another partition's stories late. A key lives in one
partition, so all of its windows live in one engine.

Exactly-once effect: open-window state, closed windows, the late-news audit and the consumed
offsets are written in one store transaction (fenced against a member that lost the partition;
``Checkpoint.STORE``, see ``finsent.runtime.runner``); on (re)assignment the engine is rebuilt
from the store and the consumer seeks to its offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from finsent.core.durations import WindowSpec
from finsent.core.records import KeyedPoint, WindowStat, encode
from finsent.runtime import metrics
from finsent.runtime.kafka_io import DeadLetterSink
from finsent.runtime.runner import Message, Partition
from finsent.runtime.store import Commit, Store, move_state_rows
from finsent.stream.windows import Late, Output, WindowEngine

if TYPE_CHECKING:
    from finsent.core.settings import Settings

log = logging.getLogger(__name__)
STAGE = "aggregator"


@dataclass(frozen=True)
class AggregatorConfig:
    """The aggregator's windows and when it emits them."""

    windows: tuple[WindowSpec, ...]
    grace: timedelta  # the watermark: the largest event time seen, minus this
    allowed_lateness: timedelta  # after closing, late news restates a window this long
    idle_close: timedelta | None  # None: windows close on event time only
    # "updates": also running figures of open windows, at most every ``update_every``
    emit: Literal["updates", "final"]
    update_every: timedelta
    top_n: int  # headlines kept per window

    @classmethod
    def from_settings(cls, settings: Settings) -> AggregatorConfig:
        idle = settings.idle_close_seconds
        return cls(
            windows=settings.window_specs,
            grace=timedelta(seconds=settings.grace_seconds),
            allowed_lateness=timedelta(seconds=settings.allowed_lateness_seconds),
            idle_close=timedelta(seconds=idle) if idle > 0 else None,
            emit=settings.window_emit,
            update_every=timedelta(seconds=settings.window_update_seconds),
            top_n=settings.top_headlines,
        )


def make_engine(config: AggregatorConfig) -> WindowEngine:
    return WindowEngine(
        specs=config.windows,
        grace=config.grace,
        allowed_lateness=config.allowed_lateness,
        top_n=config.top_n,
        idle_close=config.idle_close,
    )


def _prefix(partition: Partition) -> str:
    return f"{partition[1]}/"


def repartition_state(
    rows: Mapping[str, Any], partition_of: Callable[[str], int]
) -> dict[str, Any]:
    """The aggregator's state rows once news.keyed has more partitions: every window of a
    series, with the story ids it counted, moves to the partition ``partition_of`` its series
    key now goes to, so that partition's owner carries its open windows on.

    A partition's watermark becomes the latest of its own and those of the partitions its
    windows come from: a moved window that is already behind it closes with the next story
    there, and a story for a window closed by it is restated or late as any other there.
    """
    moved, sources = move_state_rows(
        rows,
        lambda row: None if (key := WindowEngine.series_of(row)) is None else partition_of(key),
    )
    for target, parts in sources.items():
        clocks = [rows[c] for p in parts | {target} if (c := f"{p}/{WindowEngine.CLOCK}") in rows]
        if clocks:
            moved[f"{target}/{WindowEngine.CLOCK}"] = WindowEngine.latest_clock(clocks)
    return moved


def _late_row(late: Late, action: str, version: int, now: datetime) -> dict[str, Any]:
    return {
        "item_id": late.point.id,
        "key": late.key,
        "window_start": late.window_start,
        "window_end": late.window_end,
        "action": action,
        "version": version,
        "published_at": late.point.published_at,
        "title": late.point.title,
        "seen_at": now,
    }


class Aggregator:
    """One window engine per owned partition; emits closed windows (and running updates)."""

    def __init__(self, config: AggregatorConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.engines: dict[Partition, WindowEngine] = {}
        self.last_updates: datetime | None = None
        self.no_lag: set[Partition] = set()  # told by the runner before each batch

    @property
    def watches_lag(self) -> bool:
        return self.config.idle_close is not None

    def caught_up(self, partitions: set[Partition]) -> None:
        self.no_lag = set(partitions)

    def assigned(self, partitions: list[Partition]) -> None:
        for part in partitions:
            engine = make_engine(self.config)
            engine.restore(
                {
                    k.removeprefix(_prefix(part)): v
                    for k, v in self.store.load_state(STAGE, _prefix(part)).items()
                }
            )
            self.engines[part] = engine
        if partitions:
            log.info("aggregator owns partitions %s", sorted(p for _, p in self.engines))

    def revoked(self, partitions: list[Partition]) -> None:
        for part in partitions:
            self.engines.pop(part, None)

    def process(
        self, batch: Sequence[Message[KeyedPoint]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[tuple[str, WindowStat]], Commit | None]:
        late_rows: list[dict[str, Any]] = []
        out = Output()  # the whole batch's: closes in order, restatements, late points
        for record in batch:
            keyed = record.value
            part = (record.topic, record.partition)
            engine = self.engines.get(part)
            if engine is None:  # the rebalance callback loads it first; be safe
                self.assigned([part])
                engine = self.engines[part]
            late_before = len(out.late)
            engine.add(keyed.key, keyed.point, now, out)
            for late in out.late[late_before:]:
                reason = (
                    f"late: {late.key} window {late.window_start.isoformat()}–"
                    f"{late.window_end.isoformat()} closed beyond the allowed lateness"
                )
                dead.send(reason, encode(late.point), record, kind="late")
        emitted = out.emitted
        duplicates = out.duplicates
        for late, stat in out.restated:
            late_rows.append(_late_row(late, "restated", stat.version, now))
        late_rows.extend(_late_row(late, "too_late", 0, now) for late in out.late)
        for part, engine in self.engines.items():
            emitted.extend(engine.advance(now, caught_up=part in self.no_lag))
        self._count(emitted, late_rows, duplicates)
        if self.config.emit == "updates" and (
            self.last_updates is None or now - self.last_updates >= self.config.update_every
        ):
            updates = [u for engine in self.engines.values() for u in engine.updates(now)]
            metrics.WINDOW_EMITS.labels(STAGE, "update").inc(len(updates))
            emitted.extend(updates)
            self.last_updates = now
        if not batch and not emitted:
            return [], None
        return [(w.key, w) for w in emitted], self._commit(emitted, late_rows)

    def close_all(self, now: datetime) -> tuple[list[tuple[str, WindowStat]], Commit | None]:
        """End of input (a backtest's drained feed): close every open window it owns."""
        emitted = [w for engine in self.engines.values() for w in engine.close_all(now)]
        if not emitted:
            return [], None
        self._count(emitted, [], 0)
        return [(w.key, w) for w in emitted], self._commit(emitted, [])

    def _commit(self, emitted: list[WindowStat], late_rows: list[dict[str, Any]]) -> Commit:
        put: dict[str, Any] = {}
        delete: set[str] = set()
        for part, engine in self.engines.items():
            engine_put, engine_delete = engine.take_changes()
            prefix = _prefix(part)
            put.update({prefix + k: v for k, v in engine_put.items()})
            delete.update(prefix + k for k in engine_delete)
        return Commit(
            stage=STAGE, windows=emitted, late=late_rows, state_put=put, state_delete=delete
        )

    @staticmethod
    def _count(emitted: list[WindowStat], late_rows: list[dict[str, Any]], duplicates: int) -> None:
        finals = sum(1 for w in emitted if w.version == 1)
        metrics.WINDOW_EMITS.labels(STAGE, "final").inc(finals)
        metrics.WINDOW_EMITS.labels(STAGE, "restatement").inc(
            sum(1 for w in emitted if w.version > 1)
        )
        metrics.RESTATED.labels(STAGE).inc(sum(1 for r in late_rows if r["action"] == "restated"))
        metrics.LATE.labels(STAGE).inc(sum(1 for r in late_rows if r["action"] == "too_late"))
        if duplicates:
            metrics.DUPLICATES.labels(STAGE).inc(duplicates)
