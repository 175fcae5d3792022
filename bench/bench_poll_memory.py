"""Memory of the live ingest worker while it polls 50 feeds against a loopback server.

Starts a local Kafka broker and an HTTP server with 50 RSS feeds of 30 items each; every feed
publishes one new story every fifth poll (as busy real feeds do) and answers the rest with
its full body (no 304), so each poll parses, normalizes and dedups 30 items. The worker
(`FeedPoller` + `IngestSink`, the code `finsent ingest poll` runs) polls each feed every
`--interval` seconds for `--minutes`. Prints the resident set size every 15 s, the median of
the second and of the last minute, and their ratio (the reference is the same process's own
second minute, after start-up and the first full fetch of every feed).

    .venv/bin/python bench/bench_poll_memory.py [--minutes 10] [--feeds 50] [--interval 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from finsent.app.kafka_local import LocalKafka  # noqa: E402
from finsent.app.ports import free_port  # noqa: E402
from finsent.core.settings import Settings  # noqa: E402
from finsent.ingest.poller import FeedPoller, PollerConfig  # noqa: E402
from finsent.ingest.worker import IngestSink  # noqa: E402
from finsent.runtime.kafka_io import ensure_topics  # noqa: E402


def _feed_server_module():
    """The loopback feed server of the test suite (tests/support is not installed)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support import feed_server

    return feed_server


feed_server = _feed_server_module()
FeedServer, Route, RSS_TYPE = feed_server.FeedServer, feed_server.Route, feed_server.RSS_TYPE


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ChangingFeed:
    """A feed that gains one story every `every` requests and keeps its newest 30."""

    def __init__(self, number: int, every: int = 5) -> None:
        self.number, self.every, self.requests = number, every, 0
        self.lock = threading.Lock()

    def body(self) -> bytes:
        with self.lock:
            self.requests += 1
            newest = 30 + self.requests // self.every
        t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
        items = "".join(
            f"<item><title>Feed {self.number} company report {k}: margins widen in unit {k % 13}"
            f"</title><link>https://news.test/{self.number}/{k}</link>"
            f"<pubDate>{format_datetime(t0 + timedelta(minutes=k))}</pubDate></item>"
            for k in range(newest - 30, newest)
        )
        return (
            f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Feed {self.number}</title>{items}</channel></rss>"
        ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--feeds", type=int, default=50)
    parser.add_argument("--interval", type=int, default=10)
    args = parser.parse_args()
    print(machine_line(), flush=True)

    with tempfile.TemporaryDirectory() as tmp, FeedServer() as server:
        work = Path(tmp)
        settings = Settings(
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            cache_dir=work / "cache",
            store_url=f"sqlite:///{work / 'store.db'}",
        )
        broker = LocalKafka(settings, home=work / "broker")
        broker.start()
        try:
            ensure_topics(settings, ["news.raw", "news.dlq"])
            lines = ["sources:"]
            for n in range(args.feeds):
                feed = ChangingFeed(n)

                def handler(h, _request, feed=feed) -> None:
                    h.respond(200, feed.body(), RSS_TYPE)

                url = server.add(f"/feed{n}.xml", Route(handler=handler))
                lines.append(
                    f"  - {{name: feed{n}, url: '{url}', kind: rss, "
                    f"interval_seconds: {args.interval}, allow_private_network: true}}"
                )
            sources = work / "sources.yaml"
            sources.write_text("\n".join(lines) + "\n")

            sink = IngestSink.kafka(settings)
            poller = FeedPoller.from_config(PollerConfig.from_settings(settings), sink, sources)
            poller.start()
            samples: list[tuple[float, float]] = []
            started = time.monotonic()
            try:
                while (elapsed := time.monotonic() - started) < args.minutes * 60:
                    samples.append((elapsed, rss_mb()))
                    print(
                        f"{elapsed / 60:5.1f} min  RSS {samples[-1][1]:7.1f} MB  "
                        f"sent {sink.counts['sent']:6}  duplicates {sink.counts['duplicates']}",
                        flush=True,
                    )
                    time.sleep(15)
                samples.append((time.monotonic() - started, rss_mb()))
            finally:
                poller.shutdown()
                sink.close()
            # The reference is minute 2: the first minute holds imports and the first full
            # fetch of every feed, which any long-running worker pays once.
            first = statistics.median(m for t, m in samples if 60 <= t <= 120)
            last = statistics.median(m for t, m in samples if t >= samples[-1][0] - 60)
            fetches = sum(c["fetches"] for c in poller.counters().values())
            print(
                f"{args.feeds} feeds, {fetches} fetches, {sink.counts['sent']} stories sent, "
                f"{sink.counts['duplicates']} duplicates dropped"
            )
            print(
                f"RSS second minute {first:.1f} MB, last minute {last:.1f} MB, "
                f"ratio {last / first:.3f}"
            )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
