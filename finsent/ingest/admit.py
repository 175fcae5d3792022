"""Dedup and novelty at the ingest edge, shared by replay and live polling.

Verdicts are decided before sending and remembered only after the broker acknowledged the
stories: a crash in between re-sends (the aggregator counts each id once) rather than losing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from finsent.core.records import NewsItem
from finsent.core.settings import Settings
from finsent.ingest.dedup import NoveltyConfig, NoveltyTracker, SeenStore, apply_verdict


def novelty_tracker(settings: Settings, now: datetime | None = None) -> NoveltyTracker:
    """The tracker for this deployment's dedup memory, with its recent stories restored."""
    store = SeenStore(settings.ingest_database_url)
    config = NoveltyConfig(horizon=timedelta(hours=settings.dedup_horizon_hours))
    return NoveltyTracker.restore(store, now or datetime.now(UTC), config)


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
