"""The whole RSS 2023 H1 archive through a real broker: the expected count after dedup, and a
second replay (a restart: a new process state over the same dedup memory) sends nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from support.stages import read_topic

from finsent.core.records import NewsItem, decode
from finsent.core.settings import Settings
from finsent.ingest.dedup import normalize_title
from finsent.ingest.replay import ReplayStats, load, replay
from finsent.model.data import datasets_dir
from finsent.runtime.kafka_io import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
ARCHIVE = datasets_dir() / "rss_link_db_2023_business_h1" / "2023"


def expected_after_dedup(items: list[NewsItem], horizon: timedelta) -> int:
    """The dedup rule, written plainly: a story is dropped when its canonical URL was seen
    before, or its normalized title within `horizon` of the story first seen with it; a
    dropped copy's other key then points at that original too."""
    urls: dict[str, datetime] = {}
    titles: dict[str, datetime] = {}
    kept = 0
    for item in items:  # publish-time order
        url, title = item.url, normalize_title(item.title)
        url_hit = urls.get(url) if url else None
        title_hit = titles.get(title) if title else None
        stale = title_hit is not None and item.published_at - title_hit > horizon
        if stale:
            title_hit = None
        original = url_hit if url_hit is not None else title_hit
        if original is not None:
            if url and url_hit is None:
                urls[url] = original
            if title and title_hit is None and not stale:
                titles[title] = original
            continue
        kept += 1
        if url:
            urls[url] = item.published_at
        if title:
            titles[title] = item.published_at
    return kept


def count_topic(settings: Settings) -> int:
    records = read_topic(settings, "news.raw", 120, max_partition_fetch_bytes=8 * 1024 * 1024)
    return len({decode(NewsItem, record.value).id for record in records})


@pytest.mark.skipif(not ARCHIVE.exists(), reason="needs ../shared/datasets")
def test_archive_replay_sends_each_story_once(pipeline_settings: Settings) -> None:
    settings = pipeline_settings
    ensure_topics(settings, ["news.raw", "news.dlq"])
    items = load(ARCHIVE, "archive", None, ReplayStats(), datetime.now(UTC))
    expected = expected_after_dedup(items, timedelta(hours=settings.dedup_horizon_hours))
    assert 30_000 < expected < len(items) == 32_944  # the archive has real repeats

    first = replay(settings, ARCHIVE, threading.Event(), progress=False)
    assert (first.read, first.dead) == (32_944, 0)
    assert first.sent == expected and first.duplicates == first.read - expected
    assert count_topic(settings) == expected

    again = replay(settings, ARCHIVE, threading.Event(), progress=False)
    assert (again.sent, again.duplicates) == (0, 32_944)
    assert count_topic(settings) == expected
