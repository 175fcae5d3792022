"""`finsent ingest poll` as a process against loopback feeds and a real broker: real feed items
reach news.raw once, hostile feeds become dead letters with source and reason, and after a
kill -9 and restart nothing is sent twice. In process: a story that breaks normalization is its
own dead letter, and normalizing one source's batch never holds up another's delivery."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from datetime import timedelta

import pytest
from support.feed_server import FeedServer, Route, billion_laughs, fixture_bytes, fixture_route
from support.stages import StageProcesses, read_topic, wait_until

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
