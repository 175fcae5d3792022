"""The live ingest worker: poll feeds and APIs → normalize → dedup and novelty → ``news.raw``.

Each poll result is one batch: bad input becomes dead letters (with source and reason), the
rest is normalized, exact duplicates are dropped, repeats get their chain and novelty, and the
stories are sent with the story id as message key, through the same admit-and-send path as a
replay (``finsent.ingest.admit``). The dedup memory is written only after the broker
acknowledged the batch.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from finsent.core.records import NewsItem
from finsent.core.settings import Settings
from finsent.core.stages import stage
from finsent.core.watchlist import NO_WATCHLIST, Watchlist
from finsent.ingest.admit import Admission, IngestConfig
from finsent.ingest.normalize import NormalizeError, normalize
from finsent.ingest.poller import FeedPoller, PollerConfig, reason_kind
from finsent.ingest.raw import IngestError, RawStory
from finsent.runtime import metrics
from finsent.runtime.runner import SourceRunner

log = logging.getLogger(__name__)
STAGE = "ingest"
HEARTBEAT_EVERY_S = 5.0


class IngestSink:
    """Turns raw stories from any source into acknowledged `news.raw` records."""

    def __init__(
        self,
        config: IngestConfig,
        runner: SourceRunner,
        admission: Admission,
        stop: threading.Event | None = None,
    ) -> None:
        self.runner = runner
        self.admission = admission
        self.dead = runner.dead
        self.topic = runner.sink_topic
        self.max_future = config.max_future
        self.watchlist = config.watchlist
        self.counts: Counter[str] = Counter()
        self.dead_by_kind: Counter[str] = Counter()  # e.g. "xml_bomb", "http_503"
        self._lock = threading.Lock()  # poll jobs run on scheduler threads
        # Set on shutdown: a delivery waiting on a broker that is down gives up within seconds.
        self.stop = stop or threading.Event()

    @classmethod
    def kafka(
        cls,
        settings: Settings,
        admission: Admission | None = None,
        stop: threading.Event | None = None,
    ) -> IngestSink:
        """Onto this deployment's ``news.raw``; ``admission`` (default: over this deployment's
        dedup memory) is closed with the sink."""
        config = IngestConfig.from_settings(settings)
        runner = SourceRunner.kafka(settings, stage(STAGE))
        return cls(config, runner, admission or Admission.open(config), stop)

    def __call__(self, source: str, stories: list[RawStory], errors: list[IngestError]) -> None:
        now = datetime.now(UTC)
        # Normalizing is pure and the slow part: done before taking the lock, so one source's
        # hostile batch never holds up another's delivery.
        items, bad = normalize_all(stories, now, self.max_future, self.watchlist)
        with self._lock:
            for error in [*errors, *bad]:
                self._dead(error.reason, error.raw, error.source)
            items.sort(key=lambda item: item.published_at)
            kept, duplicates = self.admission.decide(items, now)
            # A failed delivery raises: the poller backs off and fetches the stories again.
            sent = self.admission.send(self.runner, kept, consumed=len(stories), stop=self.stop)
            dead = len(errors) + len(bad)
            self.counts.update(sent=sent, duplicates=duplicates, dead=dead)
            metrics.DUPLICATES.labels(STAGE).inc(duplicates)
        log.info("%s: %d new, %d duplicates, %d bad", source, sent, duplicates, dead)

    def _dead(self, reason: str, raw: bytes, source: str) -> None:
        kind = reason_kind(reason)
        self.dead.send(reason, raw, source=source, kind=kind)
        self.dead_by_kind[kind] += 1

    def close(self) -> None:
        self.runner.close()
        self.admission.close()


def normalize_all(
    stories: list[RawStory],
    now: datetime,
    max_future: timedelta,
    watchlist: Watchlist = NO_WATCHLIST,
) -> tuple[list[NewsItem], list[IngestError]]:
    """Each story normalized, or its dead letter's error: whatever one story raises costs that
    story, never its source's poll (which would fail the same way on every retry)."""
    items: list[NewsItem] = []
    bad: list[IngestError] = []
    for story in stories:
        try:
            items.append(
                normalize(
                    story, fetched_at=now, now=now, max_future=max_future, watchlist=watchlist
                )
            )
        except NormalizeError as exc:
            bad.append(IngestError(story.source, exc.reason, story.raw))
        except Exception as exc:
            log.exception("%s: a story could not be normalized", story.source)
            reason = f"internal error: {type(exc).__name__}: {exc}"[:500]
            bad.append(IngestError(story.source, reason, story.raw))
    return items, bad


def run_poller(
    settings: Settings,
    stop: threading.Event,
    sources_path: str | Path | None = None,
    admission: Admission | None = None,
) -> Counter[str]:
    """Poll every configured source until `stop` is set; returns the totals.

    ``admission``: the ingest stage's logic (default: this deployment's), closed at the end.
    The entry point of live ingest: it builds the stage's configs from the settings."""
    sink = IngestSink.kafka(settings, admission, stop)
    metrics.serve(settings, STAGE)
    poller_config = PollerConfig.from_settings(settings, watchlist=sink.watchlist)
    poller = FeedPoller.from_config(poller_config, sink, sources_path)
    names = ", ".join(source.name for source in poller.sources)
    log.info("polling %d sources into %s: %s", len(poller.sources), sink.topic, names)
    poller.start()
    try:
        # /healthz: alive while the scheduler that runs the polls is (a source's own interval
        # may be many minutes, too long to wait for a poll as the heartbeat).
        while True:
            if poller.scheduler.running:
                metrics.beat(STAGE)
            if stop.wait(HEARTBEAT_EVERY_S):
                break
    finally:
        poller.shutdown()
        sink.close()
    log.info(
        "ingest stopped: %s; dead letters by kind %s", dict(sink.counts), dict(sink.dead_by_kind)
    )
    return sink.counts
