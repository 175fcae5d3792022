"""The ingest stage's logic, one for live polling and replay: dedup and novelty at the ingest
edge, then the admitted stories onto ``news.raw`` through the runner's source side
(``finsent.runtime.runner.SourceRunner``), which owns the send, dead-letter and metrics path.

Verdicts are decided before sending and remembered only after the broker acknowledged the
stories: a crash in between re-sends (the aggregator counts each id once) rather than losing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from finsent.core.records import NewsItem
from finsent.core.watchlist import NO_WATCHLIST, Watchlist, load_watchlist
from finsent.ingest.dedup import NoveltyConfig, NoveltyTracker, SeenStore, apply_verdict
from finsent.runtime.runner import SourceRunner

if TYPE_CHECKING:
    from finsent.core.settings import Settings


@dataclass(frozen=True)
class IngestConfig:
    """What the ingest stage's logic takes from the settings, polling and replay alike."""

    state_url: str  # the dedup memory's database
    dedup_horizon: timedelta  # near-duplicate and same-title horizon
    max_future: timedelta  # publish times further ahead than this are rejected
    retention: timedelta | None = None  # dedup memory first seen longer ago is pruned
    watchlist: Watchlist = NO_WATCHLIST  # the analyst's companies, tagged at normalization
    dedup_max_indexed: int = 100_000  # stories the near-duplicate index holds at most

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestConfig:
        """Reads the watchlist file, if the settings name one (``WatchlistError`` if bad)."""
        return cls(
            state_url=settings.ingest_database_url,
            dedup_horizon=timedelta(hours=settings.dedup_horizon_hours),
            max_future=timedelta(minutes=settings.max_future_minutes),
            retention=timedelta(days=settings.retention_days) if settings.retention_days else None,
            watchlist=load_watchlist(settings.watchlist_file),
            dedup_max_indexed=settings.dedup_max_indexed,
        )


def novelty_tracker(config: IngestConfig, now: datetime | None = None) -> NoveltyTracker:
    """The tracker for this deployment's dedup memory, with its recent stories restored."""
    store = SeenStore(config.state_url)
    novelty = NoveltyConfig(horizon=config.dedup_horizon, max_indexed=config.dedup_max_indexed)
    return NoveltyTracker.restore(store, now or datetime.now(UTC), novelty)


def admit(
    tracker: NoveltyTracker, items: Sequence[NewsItem], now: datetime
) -> tuple[list[NewsItem], int]:
    """The items to send, with chain id and novelty set, and how many were exact duplicates.

    Call `tracker.commit()` once the kept items are acknowledged by the broker.
    """
    verdicts = tracker.decide_batch(items, now)
    kept = [
        apply_verdict(item, verdict)
        for item, verdict in zip(items, verdicts, strict=True)
        if verdict.kind != "duplicate"
    ]
    return kept, len(items) - len(kept)


class Admission:
    """Decides which normalized stories go on, then sends them and remembers the verdicts."""

    def __init__(self, tracker: NoveltyTracker, retention: timedelta | None = None) -> None:
        self.tracker = tracker
        # Never below the horizon: the tracker needs that much to restore its chains.
        self.retention = max(retention, tracker.config.horizon) if retention else None
        self.next_prune: datetime | None = None
        self._decided_at: datetime | None = None  # the "now" of the verdicts not yet remembered

    @classmethod
    def open(cls, config: IngestConfig, now: datetime | None = None) -> Admission:
        """Over this deployment's dedup memory (``close`` closes it)."""
        return cls(novelty_tracker(config, now), config.retention)

    def decide(self, items: Sequence[NewsItem], now: datetime) -> tuple[list[NewsItem], int]:
        """The stories to send (in order, chained, with novelty) and the exact duplicates'
        number; nothing is remembered until ``send`` has them acknowledged."""
        self._prune(now)
        self._decided_at = now
        try:
            return admit(self.tracker, items, now)
        except BaseException:
            self.tracker.rollback(now)
            raise

    def _prune(self, now: datetime) -> None:
        """Forget what was first seen over the retention ago, at most hourly."""
        if self.retention is None or (self.next_prune is not None and now < self.next_prune):
            return
        self.next_prune = now + timedelta(hours=1)
        self.tracker.prune(now, keep=self.retention)

    def send(
        self,
        runner: SourceRunner,
        kept: Iterable[NewsItem],
        *,
        consumed: int,
        stop: threading.Event | None = None,
    ) -> int:
        """Send ``kept`` (keyed by story id, so a redelivered story lands in one partition),
        wait for the broker, then remember the verdicts, unless ``stop`` was set meanwhile.
        Returns how many were sent; a failed delivery raises, remembering nothing.

        Verdicts not remembered are dropped, so the next poll decides those stories afresh:
        kept, they would make every story of the lost poll a duplicate of itself."""
        keyed = ((item.id, item) for item in kept)
        try:
            return runner.deliver(keyed, consumed=consumed, commit=self.tracker.commit, stop=stop)
        finally:
            if self.tracker.pending:
                self.tracker.rollback(self._decided_at or datetime.now(UTC))

    def close(self) -> None:
        self.tracker.store.close()
