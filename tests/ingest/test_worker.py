"""`finsent ingest poll` as a process against loopback feeds and a real broker: real feed items
reach news.raw once, hostile feeds become dead letters with source and reason, and after a
kill -9 and restart nothing is sent twice."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from support.feed_server import FeedServer, Route, billion_laughs, fixture_bytes, fixture_route
from support.stages import StageProcesses, read_topic, wait_until

from finsent.core.records import DeadLetter, NewsItem, decode
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def read_all(settings: Settings, topic: str) -> list[bytes]:
    return [record.value for record in read_topic(settings, topic)]


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
                f"  - {{name: {name}, url: '{url}', kind: rss, interval_seconds: 10}}\n"
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
