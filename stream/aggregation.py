"""The aggregation stage: ``news.scored`` → event-time windows → ``sentiment.windows`` and the store.

Exactly-once effect: open-window state, scored items, closed windows and the consumed offsets are
written in one store transaction; on restart the consumer seeks to the stored offsets.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from finsent.kafka_io import DeadLetters, decode_or_dead
from finsent.records import ScoredItem, WindowStat, encode
from finsent.settings import Settings
from finsent.stage import run_transactional_stage
from finsent.store import Commit, Store
from stream.windows import TumblingWindows

log = logging.getLogger(__name__)
STAGE = "aggregator"


def make_windows(settings: Settings) -> TumblingWindows:
    idle = settings.idle_close_seconds
    return TumblingWindows(
        size=timedelta(seconds=settings.window_seconds),
        grace=timedelta(seconds=settings.grace_seconds),
        top_n=settings.top_headlines,
        idle_close=timedelta(seconds=idle) if idle > 0 else None,
    )


def _warn_if_several_partitions(assigned: list) -> None:
    if len(assigned) > 1:
        log.warning(
            "assigned %d partitions: the watermark is shared, so stories from a lagging partition "
            "may count as late; run one partition until per-partition watermarks land",
            len(assigned),
        )


def run_aggregator(settings: Settings, stop: threading.Event) -> None:
    store = Store(settings.database_url)
    windows = make_windows(settings)
    windows.restore(store.load_state(STAGE))

    def process(batch: list, now: datetime, dead: DeadLetters) -> tuple[list, Commit | None]:
        scored: list[ScoredItem] = []
        closed: list[WindowStat] = []
        for record in batch:
            item = decode_or_dead(ScoredItem, record, dead)
            if item is None:
                continue
            out = windows.add(item, now)
            for late in out.late:
                reason = f"late: window of {late.item.published_at.isoformat()} already closed"
                dead.send(reason, encode(late), record)
            if not out.late and not out.duplicate:
                scored.append(item)
            closed.extend(out.closed)
        closed.extend(windows.advance(now))
        if not batch and not closed:
            return [], None
        put, delete = windows.take_changes()
        commit = Commit(
            stage=STAGE, scored=scored, windows=closed, state_put=put, state_delete=delete
        )
        return [(w.key, w) for w in closed], commit

    log.info("aggregator: %ss windows, %ss grace", settings.window_seconds, settings.grace_seconds)
    emitted = run_transactional_stage(
        settings,
        stage=STAGE,
        source="news.scored",
        sink="sentiment.windows",
        store=store,
        process=process,
        stop=stop,
        max_batch=settings.batch_max_size * 4,
        on_assign=_warn_if_several_partitions,
    )
    log.info("aggregator stopped after emitting %d windows", emitted)
