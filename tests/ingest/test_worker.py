"""`finsent ingest poll` as a process against loopback feeds and a real broker: real feed items
reach news.raw once, hostile feeds become dead letters with source and reason, after a
kill -9 and restart nothing is sent twice, and a broker down for two minutes mid-polling
loses nothing and duplicates nothing. In process: a story that breaks normalization is its own
dead letter, and normalizing one source's batch never holds up another's delivery."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from support.feed_server import (
    RSS_TYPE,
    FeedServer,
    Handler,
    RecordedRequest,
    Route,
    billion_laughs,
    fixture_bytes,
    fixture_route,
    item,
    rss,
)
from support.stages import StageProcesses, read_topic, wait_until

from finsent.app.kafka_local import LocalKafka
from finsent.core.records import DeadLetter, NewsItem, decode
from finsent.core.settings import Settings
from finsent.ingest import worker
from finsent.ingest.admit import IngestConfig
from finsent.ingest.raw import RawStory
from finsent.ingest.worker import IngestSink
from finsent.runtime.kafka_io import ensure_topics


def read_all(settings: Settings, topic: str) -> list[bytes]:
    return [record.value for record in read_topic(settings, topic)]


@pytest.mark.kafka
@pytest.mark.slow
def test_poll_worker_end_to_end(
    pipeline_settings: Settings, stages: StageProcesses, tmp_path
) -> None:
    fixture_bytes("cnbc")  # skips without the shared datasets
    settings = pipeline_settings
    ensure_topics(settings)
    with FeedServer() as server:
        cnbc = server.add("/cnbc.xml", fixture_route("cnbc"))
        bomb = server.add("/bomb.xml", Route(body=billion_laughs()))
        down = server.add("/down.xml", Route(status=503, body=b"busy"))
        sources = tmp_path / "sources.yaml"
        sources.write_text(
            "sources:\n"
            + "".join(
                f"  - {{name: {name}, url: '{url}', kind: rss, interval_seconds: 10,"
                " allow_private_network: true}\n"
                for name, url in (("cnbc", cnbc), ("bomb", bomb), ("down", down))
            )
        )
        stages.start("poll", "ingest", "poll", "--sources", str(sources))

        def items() -> list[NewsItem]:
            return [decode(NewsItem, v) for v in read_all(settings, "news.raw")]

        wait_until(lambda: len(items()) >= 30, 60, "the 30 CNBC stories on news.raw")
        first = items()
        assert len(first) == 30 and len({i.id for i in first}) == 30
        assert all(i.source == "cnbc" and i.title and i.url for i in first)

        def letters() -> list[DeadLetter]:
            return [decode(DeadLetter, v) for v in read_all(settings, "news.dlq")]

        wait_until(lambda: {d.source for d in letters()} >= {"bomb", "down"}, 30, "dead letters")
        reasons = {d.source: d.reason for d in letters()}
        assert "XML bomb" in reasons["bomb"] and reasons["down"] == "HTTP 503"
        assert all(d.stage == "ingest" for d in letters())

        # kill -9, then a restart: the dedup memory and the 304 path keep news.raw unchanged.
        stages.procs["poll"].send_signal(signal.SIGKILL)
        stages.procs["poll"].wait(10)
        server.add("/cnbc.xml", fixture_route("cnbc", conditional=False))  # no 304 this time
        restarted = stages.start("poll2", "ingest", "poll", "--sources", str(sources))
        wait_until(lambda: len(server.hits("/cnbc.xml")) >= 2, 30, "a second CNBC fetch")
        wait_until(lambda: "cnbc: 0 new, 30 duplicates" in stages.log("poll2"), 30, "the repoll")
        assert Counter(i.id for i in items()) == Counter(i.id for i in first)
        restarted.terminate()
        assert restarted.wait(30) == 0


class GrowingFeed:
    """A live feed: each fetch first publishes ``per_fetch`` new stories (until frozen), then
    serves every story published so far. ``served`` is what any fetch may have handed out."""

    def __init__(self, name: str, per_fetch: int = 3) -> None:
        self.name = name
        self.per_fetch = per_fetch
        self.frozen = threading.Event()
        self.served: list[str] = []  # story URLs, in publishing order
        self._items: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, handler: Handler, request: RecordedRequest) -> None:
        with self._lock:
            if not self.frozen.is_set():
                pub = format_datetime(datetime.now(UTC), usegmt=True)
                for _ in range(self.per_fetch):
                    n = len(self.served)
                    url = f"http://news.test/{self.name}/{n}"
                    self.served.append(url)
                    self._items.append(item(f"{self.name} desk report number {n}", url, pub))
            body = rss("".join(self._items))
        handler.respond(200, body, RSS_TYPE)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_broker_down_for_two_minutes_during_live_polling_loses_and_duplicates_nothing(
    pipeline_settings: Settings, stages: StageProcesses, kafka_broker: LocalKafka, tmp_path
) -> None:
    settings = pipeline_settings
    ensure_topics(settings)
    feeds = [GrowingFeed("wire-a"), GrowingFeed("wire-b")]
    with FeedServer() as server:
        sources = tmp_path / "sources.yaml"
        sources.write_text(
            "sources:\n"
            + "".join(
                f"  - {{name: {feed.name}, url: '{server.add(f'/{feed.name}.xml', Route(handler=feed))}',"
                " kind: rss, interval_seconds: 10, allow_private_network: true}\n"
                for feed in feeds
            )
        )
        stages.start("poll", "ingest", "poll", "--sources", str(sources))

        def urls() -> Counter[str]:
            return Counter(decode(NewsItem, v).url for v in read_all(settings, "news.raw"))

        def polls(feed: GrowingFeed) -> int:
            return len(re.findall(rf"{feed.name}: \d+ new", stages.log("poll")))

        # Live: each feed delivered twice (new stories and the earlier ones as duplicates).
        wait_until(
            lambda: all(polls(f) >= 2 for f in feeds), 60, "two polls of each feed", 0.5,
            context=stages.tails,
        )  # fmt: skip
        before = sum(len(f.served) for f in feeds)
        kafka_broker.stop()
        try:
            time.sleep(120)  # the outage itself; the feeds keep publishing meanwhile
            during = sum(len(f.served) for f in feeds)
        finally:
            kafka_broker.start()  # the session's broker: serving again before the test ends

        # Back: wait for a delivered poll of each feed, then stop publishing.
        after = {f.name: polls(f) for f in feeds}
        wait_until(
            lambda: all(polls(f) > after[f.name] for f in feeds), 240, "a poll after the outage",
            1, context=stages.tails,
        )  # fmt: skip
        for feed in feeds:
            feed.frozen.set()
        # A whole fetch after the freeze finds nothing new: everything served is on news.raw.
        wait_until(
            lambda: all(
                f"{f.name}: 0 new, {len(f.served)} duplicates" in stages.log("poll") for f in feeds
            ),
            240,
            "a poll of each frozen feed that finds nothing new",
            1,
            context=stages.tails,
        )
        served = Counter(url for feed in feeds for url in feed.served)
        got = urls()
        assert got == served, (
            f"lost {sorted(served - got)}, duplicated {sorted(u for u, n in got.items() if n > 1)}"
        )
        assert during > before  # stories were published during the outage too
        poller = stages.procs["poll"]
        poller.terminate()
        assert poller.wait(30) == 0


# -- in process ------------------------------------------------------------------------------


class FakeRunner:
    """The runner's source side: dead letters and deliveries, kept in memory."""

    sink_topic = "news.raw"

    def __init__(self) -> None:
        self.dead = self
        self.letters: list[tuple[str, str]] = []  # (source, reason)
        self.delivered: list[str] = []

    def send(self, reason: str, raw: bytes, *, source: str = "", kind: str = "") -> None:
        self.letters.append((source, reason))

    def deliver(self, keyed, *, consumed, commit, stop=None):  # type: ignore[no-untyped-def]
        sent = [item.title for _, item in keyed]
        self.delivered += sent
        return len(sent)


class PassAdmission:
    def decide(self, items, now):  # type: ignore[no-untyped-def]
        return list(items), 0

    def send(self, runner, kept, *, consumed, stop=None):  # type: ignore[no-untyped-def]
        return runner.deliver(((i.id, i) for i in kept), consumed=consumed, commit=None)


def sink() -> tuple[IngestSink, FakeRunner]:
    config = IngestConfig(
        state_url="", dedup_horizon=timedelta(hours=1), max_future=timedelta(hours=6)
    )
    runner = FakeRunner()
    return IngestSink(config, runner, PassAdmission()), runner  # type: ignore[arg-type]


def test_a_story_that_breaks_normalize_is_its_own_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = worker.normalize

    def buggy(story: RawStory, **kwargs: object) -> NewsItem:
        if story.title == "trips a bug":
            raise RecursionError("deep")
        return real(story, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "normalize", buggy)
    ingest, runner = sink()
    ingest("wire", [RawStory("wire", "trips a bug"), RawStory("wire", "Fed holds rates")], [])
    assert runner.delivered == ["Fed holds rates"]
    assert runner.letters == [("wire", "internal error: RecursionError: deep")]


def test_normalizing_one_source_does_not_hold_up_another(monkeypatch: pytest.MonkeyPatch) -> None:
    real = worker.normalize
    slow_started, release = threading.Event(), threading.Event()

    def slow_for_a(story: RawStory, **kwargs: object) -> NewsItem:
        if story.source == "a":
            slow_started.set()
            release.wait(10)
        return real(story, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "normalize", slow_for_a)
    ingest, runner = sink()
    first = threading.Thread(target=ingest, args=("a", [RawStory("a", "Slow story")], []))
    first.start()
    try:
        assert slow_started.wait(10)
        second = threading.Thread(target=ingest, args=("b", [RawStory("b", "Fast story")], []))
        second.start()
        second.join(2)
        assert not second.is_alive() and runner.delivered == ["Fast story"]
    finally:
        release.set()
        first.join(10)
    assert runner.delivered == ["Fast story", "Slow story"]


def test_live_polling_beats_while_its_scheduler_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """/healthz of `finsent ingest poll`: the beat comes from the scheduler being alive, not
    from a poll, whose interval may be many minutes."""
    from finsent.runtime import metrics

    class ClosingRunner(FakeRunner):
        def close(self) -> None:
            pass

    class ClosingAdmission(PassAdmission):
        def close(self) -> None:
            pass

    config = IngestConfig(
        state_url="", dedup_horizon=timedelta(hours=1), max_future=timedelta(hours=6)
    )
    ingest = IngestSink(config, ClosingRunner(), ClosingAdmission())  # type: ignore[arg-type]
    monkeypatch.setattr(IngestSink, "kafka", classmethod(lambda cls, *args: ingest))
    heartbeats = metrics.Heartbeats()
    monkeypatch.setattr(metrics, "HEARTBEATS", heartbeats)
    monkeypatch.setattr(worker, "HEARTBEAT_EVERY_S", 0.01)
    sources = tmp_path / "sources.yaml"
    # Nothing listens there: each poll fails fast, and the heartbeat does not depend on it.
    sources.write_text(
        "sources:\n"
        "  - {name: quiet, url: 'http://127.0.0.1:9/feed.xml', kind: rss,\n"
        "     interval_seconds: 3600, allow_private_network: true}\n"
    )
    stop = threading.Event()
    settings = Settings(metrics_port=None)
    done = threading.Thread(
        target=worker.run_poller, args=(settings, stop, sources, ingest.admission)
    )
    done.start()
    try:
        wait_until(lambda: heartbeats.health("ingest").ok, 10, "a heartbeat from ingest poll")
    finally:
        stop.set()
        done.join(10)
    assert not done.is_alive()
