"""The router stage: ``news.scored`` → the store's scored items, and ``news.keyed`` per series.

Keyed repartition: each scored story fans out into one point per series key (overall, topic,
ticker, source). The Kafka key is the series key, so one aggregator owns all of a key's windows
however many aggregators run.

The scorer is at-least-once. Scored items are upserted by id in the same store transaction as the
router's offsets (``Checkpoint.STORE``, see ``finsent.runtime.runner``), and a story already
stored is not fanned out again; the aggregator still counts each id once per window, for the
rare replay of a router batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from finsent.core.records import KeyedPoint, ScoredItem
from finsent.runtime import metrics
from finsent.runtime.kafka_io import DeadLetterSink
from finsent.runtime.runner import Message, Partition
from finsent.runtime.store import Commit, Store
from finsent.stream.windows import fan_out

log = logging.getLogger(__name__)
STAGE = "router"


def route(items: list[ScoredItem]) -> list[tuple[str, KeyedPoint]]:
    """One record per (story, series), in story order.

    Not grouped by key: a partition's watermark is the largest event time it has seen, so
    grouping a batch by key would put a key's early stories behind another key's later ones
    and make them late. In story order, a partition sees event time as ingest produced it.
    """
    return [(key, KeyedPoint(key=key, point=point)) for s in items for key, point in fan_out(s)]


class Router:
    """Stores each new scored story and fans it out by series key."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def assigned(self, partitions: list[Partition]) -> None:
        pass  # stateless beyond the store

    def revoked(self, partitions: list[Partition]) -> None:
        pass

    def process(
        self, batch: Sequence[Message[ScoredItem]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[tuple[str, KeyedPoint]], Commit | None]:
        if not batch:
            return [], None
        items = [message.value for message in batch]
        unique = {s.item.id: s for s in reversed(items)}  # the first copy of each id wins
        stored = self._existing_ids(unique)
        fresh = [s for s in items if unique.get(s.item.id) is s and s.item.id not in stored]
        if len(items) > len(fresh):
            metrics.DUPLICATES.labels(STAGE).inc(len(items) - len(fresh))
        return route(fresh), Commit(stage=STAGE, scored=fresh)

    @retry(
        retry=retry_if_exception_type(OperationalError),
        wait=wait_exponential(multiplier=0.2, max=10),
        stop=stop_after_delay(240),  # under the group's max poll interval
        reraise=True,
    )
    def _existing_ids(self, ids: Iterable[str]) -> set[str]:
        return self.store.existing_ids(ids)
