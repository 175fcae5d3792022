"""The ingest stage's one admit-and-send path (polling and replay alike), without a broker:
the runner's source side over the test kit's sink. The dedup memory is written only after the
broker acknowledged the stories."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka.errors import KafkaTimeoutError
from support.records import news_item

from finsent.core.records import NewsItem
from finsent.core.settings import Settings
from finsent.core.stages import stage
from finsent.core.watchlist import WatchlistError
from finsent.ingest.admit import Admission, IngestConfig
from finsent.ingest.raw import IngestError, RawStory
from finsent.ingest.worker import IngestSink
from finsent.runtime.runner import SourceRunner
from finsent.runtime.testing import CollectingSink, MemoryDeadLetters

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def story(n: int) -> NewsItem:
    return news_item(
        id=f"https://news.test/{n}",
        title=f"Harbor Trust Bank story number {n}",
        url=f"https://news.test/{n}",
        published_at=NOW,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(store_url=f"sqlite:///{tmp_path / 'store.db'}", cache_dir=tmp_path)


@pytest.fixture
def config(settings: Settings) -> IngestConfig:
    return IngestConfig.from_settings(settings)


def runner(sink: CollectingSink) -> SourceRunner:
    return SourceRunner(
        stage("ingest"), producer=sink, dead=MemoryDeadLetters("ingest"), sink_topic="news.raw"
    )


def test_admitted_stories_are_sent_keyed_by_id_then_remembered(config: IngestConfig) -> None:
    admission = Admission.open(config, NOW)
    sink = CollectingSink()
    items = [story(1), story(2), story(1)]  # a repeat within the batch

    kept, duplicates = admission.decide(items, NOW)
    sent = admission.send(runner(sink), kept, consumed=len(items))

    assert (sent, duplicates) == (2, 1)
    assert [key for key, _ in sink.records("news.raw", NewsItem)] == [story(1).id, story(2).id]
    assert admission.tracker.store.count() > 0  # remembered: a later poll drops them
    admission.close()
    again = Admission.open(config, NOW)
    assert again.decide([story(1)], NOW) == ([], 1)
    again.close()


def test_a_failed_delivery_remembers_nothing(config: IngestConfig) -> None:
    admission = Admission.open(config, NOW)
    sink = CollectingSink()
    sink.fail(1)
    kept, _ = admission.decide([story(1)], NOW)

    with pytest.raises(KafkaTimeoutError):
        admission.send(runner(sink), kept, consumed=1)

    assert admission.tracker.store.count() == 0  # so the next poll sends it again
    admission.close()


def test_a_stopped_send_remembers_nothing(config: IngestConfig) -> None:
    admission = Admission.open(config, NOW)
    stop = threading.Event()
    stop.set()
    kept, _ = admission.decide([story(1)], NOW)

    admission.send(runner(CollectingSink()), kept, consumed=1, stop=stop)

    assert admission.tracker.store.count() == 0
    admission.close()


def test_a_poll_result_becomes_records_and_dead_letters_by_kind(config: IngestConfig) -> None:
    sink = CollectingSink()
    ingest = IngestSink(config, runner(sink), Admission.open(config, NOW))
    good = RawStory(source="wire", title="Bank shares fall", url="https://news.test/a")
    untitled = RawStory(source="wire", title="", url="https://news.test/b", raw=b"<item/>")

    ingest("wire", [good, untitled], [IngestError("wire", "HTTP 503", b"busy")])

    [(key, item)] = sink.records("news.raw", NewsItem)
    assert (key, item.title) == (item.id, "Bank shares fall")
    dead = ingest.dead
    assert isinstance(dead, MemoryDeadLetters)
    assert [(d.source, d.reason) for d in dead.letters] == [
        ("wire", "HTTP 503"),
        ("wire", dead.letters[1].reason),
    ]
    assert "title" in dead.letters[1].reason
    assert ingest.dead_by_kind["http_503"] == 1
    assert ingest.counts == {"sent": 1, "duplicates": 0, "dead": 2}
    ingest.close()
    assert sink.closed


def test_the_dedup_memory_is_pruned_by_the_retention_at_most_hourly(settings: Settings) -> None:
    config = IngestConfig.from_settings(settings.model_copy(update={"retention_days": 3}))
    admission = Admission.open(config, NOW)
    kept, _ = admission.decide([story(1)], NOW)
    admission.send(runner(CollectingSink()), kept, consumed=1)
    remembered = admission.tracker.store.count()
    assert remembered > 0

    later = NOW + timedelta(days=3, minutes=1)  # first seen over the retention ago
    admission.decide([], later - timedelta(minutes=30))  # not yet past it: kept
    assert admission.tracker.store.count() == remembered
    admission.decide([], later)  # past it, but pruned at most hourly
    assert admission.tracker.store.count() == remembered
    admission.decide([], later + timedelta(minutes=31))
    assert admission.tracker.store.count() == 0
    admission.close()


def test_a_poll_whose_delivery_failed_is_sent_whole_by_the_next_poll(config: IngestConfig) -> None:
    sink = CollectingSink()
    ingest = IngestSink(config, runner(sink), Admission.open(config, NOW))
    stories = [
        RawStory(source="wire", title=f"Harbor Trust Bank story number {n}", url=story(n).url)
        for n in range(5)
    ]
    sink.fail(1)  # the broker is down for this poll

    with pytest.raises(KafkaTimeoutError):
        ingest("wire", stories, [])
    ingest("wire", stories, [])  # the broker is back: the poller fetches the stories again

    assert len(sink.records("news.raw", NewsItem)) == 5
    assert ingest.counts == {"sent": 5, "duplicates": 0, "dead": 0}
    ingest.close()


def test_a_failed_delivery_forgets_its_near_duplicate_chains(config: IngestConfig) -> None:
    admission = Admission.open(config, NOW)
    sink = CollectingSink()
    sink.fail(1)
    first = news_item(id="a", title="Harbor Trust Bank halts withdrawals", url="https://a.test/1")
    kept, _ = admission.decide([first], NOW)
    with pytest.raises(KafkaTimeoutError):
        admission.send(runner(sink), kept, consumed=1)

    # A rewrite of the lost story is new again, not a repeat of a story nobody received.
    rewrite = news_item(
        id="b", title="Harbor Trust Bank halts all withdrawals", url="https://b.test/1"
    )
    [item], _ = admission.decide([rewrite], NOW)
    assert (item.chain_id, item.novelty) == ("b", 100.0)
    admission.close()


def test_the_watchlist_reaches_the_tagger_through_the_stage_config(
    settings: Settings, tmp_path: Path
) -> None:
    watchlist = tmp_path / "watchlist.yaml"
    watchlist.write_text("companies:\n  - {ticker: ACME, name: Acme Corp}\n", encoding="utf-8")
    config = IngestConfig.from_settings(settings.model_copy(update={"watchlist_file": watchlist}))
    assert config.watchlist.tickers == ("ACME",)
    sink = CollectingSink()
    ingest = IngestSink(config, runner(sink), Admission.open(config, NOW))

    ingest("wire", [RawStory(source="wire", title="Acme shares plunge", url="https://a.test/")], [])

    [(_, item)] = sink.records("news.raw", NewsItem)
    assert item.tickers == ("ACME",)
    ingest.close()


def test_a_bad_watchlist_stops_the_stage_config_with_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    watchlist = tmp_path / "watchlist.yaml"
    watchlist.write_text("companies:\n  - {ticker: 'not a ticker'}\n", encoding="utf-8")
    with pytest.raises(WatchlistError, match=r"companies\[0\] \(ticker 'not a ticker'\)"):
        IngestConfig.from_settings(settings.model_copy(update={"watchlist_file": watchlist}))
